"""Relative-threshold screening of trivial negatives (SPACL component 4)."""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import check_fraction, check_int, check_mask, check_tensor


@torch.no_grad()
def relative_screen(
    logits: Tensor, mass: float = 0.95, min_keep: int = 1, mask: Tensor | None = None
) -> Tensor:
    """Keep the shortest most-similar prefix of candidates that holds at least ``mass`` of their softmax weight.

    Per row, the valid candidates are sorted by logit; the kept set is the smallest top prefix whose share of
    ``sum(exp(logit))`` over the valid candidates reaches ``mass`` (and at least ``min_keep`` candidates, when
    that many exist). Candidates tied with the last kept one are kept too, so every kept candidate is at least
    as similar as every dropped one and the result does not depend on the order of ties. The weights are the
    softmax of the logits, not the raw cosines, because cosines can be negative. No gradient flows through it.

    Args:
        logits: similarity to the anchor divided by the temperature.
        mass: share of the total weight to keep, in (0, 1]; ``1`` keeps every valid candidate.
            The paper's ``lambda_Q``, default 0.95.
        min_keep: always keep at least this many of the most similar valid candidates.
        mask: ``True`` where a candidate is valid; invalid ones are never kept.

    Shape:
        - logits: ``[B, N]``
        - mask: ``[B, N]``
        - output: ``[B, N]`` bool keep-mask

    Raises:
        ValueError: on a wrong rank, dtype, shape, NaN logits, or an out-of-range ``mass`` / ``min_keep``.

    Example:
        >>> logits = torch.tensor([[10.0, 9.0, 0.0, -5.0]])
        >>> relative_screen(logits, mass=0.95)
        tensor([[ True,  True, False, False]])

    References:
        SnaPhArd Contrast Learning (SPACL), ICLR 2026, "relative threshold".
    """
    check_tensor("logits", logits, ndim=2, floating=True)
    if bool(torch.isnan(logits).any()):
        raise ValueError("`logits` contains NaN values.")
    mass = check_fraction("mass", mass)
    min_keep = check_int("min_keep", min_keep, 0)
    valid = torch.ones_like(logits, dtype=torch.bool) if mask is None else check_mask("mask", mask, tuple(logits.shape), "[B, N]")
    valid = valid & torch.isfinite(logits)
    if logits.shape[1] == 0:
        return valid
    if mass >= 1.0:
        return valid

    scores = logits.detach().double().masked_fill(~valid, float("-inf"))
    sorted_scores, _ = torch.sort(scores, dim=1, descending=True)
    num_valid = valid.sum(dim=1, keepdim=True)
    # softmax over the valid candidates, accumulated from the most similar one down
    log_total = torch.logsumexp(sorted_scores, dim=1, keepdim=True)
    weights = torch.exp(sorted_scores - log_total).nan_to_num(nan=0.0)
    mass_before = torch.cumsum(weights, dim=1) - weights  # weight of the strictly more similar candidates
    # keep position j while the prefix before it holds less than `mass`: the one that crosses it is kept
    count = (mass_before < mass).sum(dim=1, keepdim=True)
    count = torch.clamp(count, min=min_keep)
    count = torch.minimum(count, num_valid)
    threshold = sorted_scores.gather(1, (count - 1).clamp(min=0))
    keep = valid & (scores >= threshold) & (count > 0)
    return keep
