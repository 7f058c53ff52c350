"""Counter-based noise: Gaussian draws that are a pure function of (seed, counter, position).

A random generator object cannot live inside a ``torch.compile`` graph or a CUDA graph, and a CPU draw copied to an
accelerator stalls the host every step. Hashing ``(seed, counter, index)`` with integer tensor ops (splitmix64's
finaliser) gives reproducible noise on any device: every process that holds the same counter draws the same values,
and a resumed run continues exactly from the saved counter.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# splitmix64's constants as signed int64 (two's complement of the unsigned ones); int64 products wrap, as a hash wants
GOLDEN = 0x9E3779B97F4A7C15 - 2**64
MIX_1 = 0xBF58476D1CE4E5B9 - 2**64
MIX_2 = 0x94D049BB133111EB - 2**64
_COUNTER_STRIDE = 0x632BE59BD9B4E019  # < 2**63: already a valid int64


def _wrap(value: int) -> int:
    """A Python int reduced to int64's range the way int64 arithmetic wraps."""
    return (value + 2**63) % 2**64 - 2**63


def _shift_right(z: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic: it would copy the sign bit down, and the xor that
    follows would then clear the sign bit of every output)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def mix64(z: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 tensors, bit for bit (two's complement wraps as uint64 does)."""
    z = (z ^ _shift_right(z, 30)) * MIX_1
    z = (z ^ _shift_right(z, 27)) * MIX_2
    return z ^ _shift_right(z, 31)


def counter_uniform(seed: int, counter: Tensor, count: int) -> Tensor:
    """``count`` float32 uniforms in (0, 1) drawn at ``counter`` (an int64 0-dim tensor, on the output's device).

    Examples:
        >>> counter = torch.zeros((), dtype=torch.int64)
        >>> a, b = counter_uniform(0, counter, 4), counter_uniform(0, counter + 1, 4)
        >>> bool((a > 0).all() and (a < 1).all()), torch.equal(a, counter_uniform(0, counter, 4)), torch.equal(a, b)
        (True, True, False)
    """
    index = torch.arange(count, device=counter.device, dtype=torch.int64)
    z = mix64(index * GOLDEN + (counter * _COUNTER_STRIDE + _wrap(seed * GOLDEN)))
    top = ((z >> 40) & 0xFFFFFF).to(torch.float32)  # the 24 best-mixed bits: exact in float32
    return (top + 0.5) * (1.0 / 2**24)


def counter_normal(seed: int, counter: Tensor, rows: int, cols: int) -> Tensor:
    """``[rows, cols]`` standard normal float32 draws at ``counter`` (inverse CDF of :func:`counter_uniform`).

    Examples:
        >>> z = counter_normal(0, torch.zeros((), dtype=torch.int64), 1000, 8)
        >>> abs(float(z.mean())) < 0.05, abs(float(z.std()) - 1) < 0.05
        (True, True)
    """
    uniform = counter_uniform(seed, counter, rows * cols)
    return torch.erfinv(uniform * 2.0 - 1.0).mul_(math.sqrt(2.0)).view(rows, cols)
