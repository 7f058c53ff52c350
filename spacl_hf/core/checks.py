"""Argument checks shared by the core: every error names the argument and what was expected."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor


def check_tensor(
    name: str,
    value: object,
    *,
    ndim: int,
    floating: bool = False,
    dtype: torch.dtype | None = None,
    finite: bool = False,
) -> Tensor:
    """Return ``value`` after checking that it is a tensor of rank ``ndim`` (and dtype, finiteness)."""
    if not isinstance(value, Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}.")
    if value.ndim != ndim:
        raise ValueError(f"`{name}` must have {ndim} dimensions, got shape {tuple(value.shape)}.")
    if floating and not value.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor, got dtype {value.dtype}.")
    if dtype is not None and value.dtype != dtype:
        raise ValueError(f"`{name}` must have dtype {dtype}, got {value.dtype}.")
    # one cheap reduction first (NaN and inf propagate into the sum); the exact check only if it is non-finite
    if finite and not bool(torch.isfinite(value.sum())) and not bool(torch.isfinite(value).all()):
        raise ValueError(f"`{name}` contains NaN or inf values; embeddings must be finite.")
    return value


def check_shape(name: str, value: Tensor, expected: tuple[int, ...], meaning: str) -> None:
    """Raise if ``value.shape`` differs from ``expected``; ``meaning`` spells the expected layout."""
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"`{name}` must have shape {meaning} = {tuple(expected)}, got {tuple(value.shape)}.")


def check_mask(name: str, value: Tensor | None, expected: tuple[int, ...], meaning: str) -> Tensor | None:
    """``None``, or a bool tensor of shape ``expected`` (``meaning`` spells the layout in the error)."""
    if value is None:
        return None
    check_tensor(name, value, ndim=len(expected), dtype=torch.bool)
    check_shape(name, value, expected, meaning)
    return value


def check_ids(name: str, value: Tensor | None, expected: tuple[int, ...], meaning: str) -> Tensor | None:
    """``None``, or an integer tensor of shape ``expected`` (labels, content ids)."""
    if value is None:
        return None
    check_tensor(name, value, ndim=len(expected))
    if value.is_floating_point() or value.dtype == torch.bool:
        raise ValueError(f"`{name}` must be an integer tensor, got dtype {value.dtype}.")
    check_shape(name, value, expected, meaning)
    return value


def check_positive_float(name: str, value: object) -> float:
    """A finite real number > 0 (bools refused), as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"`{name}` must be a finite positive number, got {value!r}.")
    return float(value)


# Logits are cos / temperature <= 1 / temperature, and masked logits sit at -1e9: below this bound a masked
# logit could outweigh a real one, and float32 loses the logits' precision (1e-40 even gives NaN).
MIN_TEMPERATURE = 1e-4


def check_temperature(name: str, value: object) -> float:
    """A finite number >= :data:`MIN_TEMPERATURE`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not value >= MIN_TEMPERATURE
    ):
        raise ValueError(f"`{name}` must be a finite number >= {MIN_TEMPERATURE:g}, got {value!r}.")
    return float(value)


def check_fraction(name: str, value: object) -> float:
    """A number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"`{name}` must be a number in (0, 1], got {value!r}.")
    return float(value)


def check_int(name: str, value: object, minimum: int) -> int:
    """An integer >= ``minimum`` (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    """Exactly True or False (no truthy stand-ins)."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
    return str(value)


def at_least_float32(tensor: Tensor) -> Tensor:
    """Upcast half precision to float32 (logits and softmax need it); keep float32 and float64 as they are."""
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()
