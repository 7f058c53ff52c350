"""Relative-threshold screening of trivial negatives (SPACL component 4)."""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import check_choice, check_fraction, check_int, check_mask, check_tensor

SCREENING_WEIGHTS = ("softmax", "similarity")

# Logits screened per chunk of anchors: bounds the sort's temporaries (a few copies of the chunk) whatever the
# batch size. The result does not depend on it (every row is screened on its own); each chunk is a fixed handful of
# kernels, so on a GPU the chunks are large (B = 4096 with two views is one chunk, [16384, 32768] is eight).
_CPU_CHUNK_ELEMENTS = 2**22
_ACCELERATOR_CHUNK_ELEMENTS = 2**26
# Subtracted from invalid candidates: far below any logit, and exp() of it is exactly 0.
_FAR = 1e30


@torch.no_grad()
def relative_screen(
    logits: Tensor, mass: float = 0.95, min_keep: int = 1, mask: Tensor | None = None, weight: str = "softmax"
) -> Tensor:
    """Keep the shortest most-similar prefix of candidates that holds at least ``mass`` of their total weight.

    Per row, with the valid candidates sorted by logit, the kept set is the smallest top prefix whose share of
    the valid candidates' total weight reaches ``mass`` (and at least ``min_keep`` candidates, when that many
    exist). Candidates tied with the last kept one are kept too, so every kept candidate is at least as similar
    as every dropped one and the result does not depend on the order of ties. No gradient flows through it.

    The weight of a candidate (``weight``):

    - ``"softmax"``: ``exp(logit)``. Gentle: the dropped candidates hold at most ``1 - mass`` of the softmax
      mass, so the InfoNCE loss of a row moves by at most ``-ln(mass)`` (0.051 nats at 0.95).
    - ``"similarity"``: the raw logit (cosine / temperature; the temperature cancels), the paper's formula read
      literally. Prefix sums of signed cosines are not monotone, so when a row's total is > 0 the kept prefix
      is the shortest whose cumulative sum reaches ``mass * total`` (it exists: the prefix sums peak at or
      above the total); when the total is <= 0 only the ``min_keep`` most similar are kept (the specification's
      rule, kept: no measurement has argued for another). That case is common on spread-out embeddings: 41% of the
      anchors of the self-supervised and 59% of the labelled 4-view digits batch of
      ``benchmarks/component_activity.py`` (statistic ``nonpositive_similarity_total``). Aggressive.

    Computed exactly by one sort of each row and a cumulative sum: a fixed sequence of kernels with no host-device
    sync and no data-dependent shape, so it runs inside ``torch.compile`` graphs and CUDA graphs. (A bisection that
    brackets the threshold needs a host read per round to size its last step; measured on 2 CPU cores it was also
    slower than the sort, 19.9 vs 13.3 ms at ``[512, 1024]``.)

    Args:
        logits: similarity to the anchor divided by the temperature.
        mass: share of the total weight to keep, in (0, 1]; ``1`` keeps every valid candidate.
            The paper's ``lambda_Q``, default 0.95.
        min_keep: always keep at least this many of the most similar valid candidates.
        mask: ``True`` where a candidate is valid; invalid ones are never kept.
        weight: ``"softmax"`` or ``"similarity"`` (see above).

    Shape:
        - logits: ``[B, N]``
        - mask: ``[B, N]``
        - output: ``[B, N]`` bool keep-mask

    Raises:
        ValueError: on a wrong rank, dtype, shape, NaN or +inf logits (-inf marks a missing candidate, as
            ``mask`` does), or an out-of-range ``mass`` / ``min_keep`` /
            ``weight``.

    Examples:
        >>> logits = torch.tensor([[10.0, 9.0, 0.0, -5.0]])
        >>> relative_screen(logits, mass=0.95)
        tensor([[ True,  True, False, False]])
        >>> relative_screen(torch.tensor([[0.9, 0.5, 0.1, 0.05]]), mass=0.8, weight="similarity")
        tensor([[ True,  True, False, False]])

    References:
        SnaPhArd Contrast Learning (SPACL), ICLR 2026, "relative threshold".
    """
    check_tensor("logits", logits, ndim=2, floating=True)
    if bool(torch.isnan(logits).any()):
        raise ValueError("`logits` contains NaN values.")
    if bool(torch.isposinf(logits).any()):
        # +inf has infinite weight: nothing else could be kept, and "similarity" would keep nothing at all
        raise ValueError("`logits` contains +inf values; pass finite logits and mark missing candidates in `mask`.")
    mass = check_fraction("mass", mass)
    min_keep = check_int("min_keep", min_keep, 0)
    check_mask("mask", mask, tuple(logits.shape), "[B, N]")
    weight = check_choice("weight", weight, SCREENING_WEIGHTS)
    valid = torch.isfinite(logits) if mask is None else mask & torch.isfinite(logits)
    return screen_unchecked(logits, mass, min_keep, valid, weight)


@torch.no_grad()
def screen_unchecked(logits: Tensor, mass: float, min_keep: int, valid: Tensor, weight: str = "softmax") -> Tensor:
    """:func:`relative_screen` on finite logits with a given validity mask, without argument checks.

    Sync-free: a fixed sequence of kernels whatever the values. Anchors are screened in chunks (at most
    ``_CPU_CHUNK_ELEMENTS`` / ``_ACCELERATOR_CHUNK_ELEMENTS`` logits each) so that the sort's temporaries stay
    bounded; the chunking depends on shapes only.
    """
    # softmax weights are all > 0, so the whole mass needs every candidate; signed cosines reach their total
    # before the negative tail, so "similarity" still screens at mass 1
    if (mass >= 1.0 and weight == "softmax") or logits.shape[1] == 0:
        return valid
    chunk_elements = _CPU_CHUNK_ELEMENTS if logits.device.type == "cpu" else _ACCELERATOR_CHUNK_ELEMENTS
    rows = max(1, chunk_elements // logits.shape[1])
    if logits.shape[0] <= rows:
        return _screen_rows(logits, mass, min_keep, valid, weight)
    return torch.cat(
        [
            _screen_rows(logits[i : i + rows], mass, min_keep, valid[i : i + rows], weight)
            for i in range(0, len(logits), rows)
        ]
    )


def _screen_rows(logits: Tensor, mass: float, min_keep: int, valid: Tensor, weight_kind: str) -> Tensor:
    """The keep-mask of every row: sort, running weight, the first prefix that reaches the target."""
    scores = logits.detach()
    scores = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    scores = torch.where(valid, scores, -_FAR)  # invalid candidates (-inf ones too) sink below every valid one
    ordered = scores.sort(dim=1, descending=True).values
    if weight_kind == "softmax":
        top = ordered[:, :1]
        top = top * (top > -_FAR / 2)  # rows with nothing valid: any finite shift will do
        weight = torch.exp(ordered - top)  # exactly 0 for invalid candidates
        running = weight.cumsum(dim=1)
        target = mass * running[:, -1:]
    else:
        # Signed weights: the running sum rises over the positive logits, then falls. With a positive total the
        # first crossing of mass * total lies among the positive logits; a total <= 0 keeps only min_keep (below).
        signed = ordered * (ordered > -_FAR / 2)  # invalid candidates weigh 0
        running = signed.cumsum(dim=1)
        target = mass * running[:, -1:]
    # the last kept candidate is the first whose running weight reaches the target; rounding that leaves the
    # total a hair short of it still ends at the last valid candidate, never in the invalid padding
    last_kept = (running < target).sum(dim=1, keepdim=True)
    last_valid = (valid.sum(dim=1, keepdim=True) - 1).clamp(min=0)
    threshold = ordered.gather(1, torch.minimum(last_kept, last_valid))
    if weight_kind == "similarity":  # a total <= 0 has no prefix to keep: only the min_keep most similar
        threshold = torch.where(target > 0, threshold, torch.inf)
    if min_keep > 0:  # the min_keep-th most similar (invalid padding when fewer exist: then every valid one)
        threshold = torch.minimum(threshold, ordered[:, min(min_keep, ordered.shape[1]) - 1 :][:, :1])
    return valid & (scores >= threshold)
