"""Relative-threshold screening of trivial negatives (SPACL component 4)."""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import check_choice, check_fraction, check_int, check_mask, check_tensor

SCREENING_WEIGHTS = ("softmax", "similarity")

# Bisection brackets the threshold before the bracket is resolved exactly by a topk. Each step is one cheap pass
# over the logits and halves the bracket in logit space; the topk's cost grows fast with the bracket's width, so
# steps continue (in small blocks) until every anchor's bracket holds at most _MAX_BRACKET candidates.
_FIRST_STEPS = 8
_MORE_STEPS = 2
_MAX_BRACKET = 16
_MAX_STEPS = 40
# Logits screened per chunk of anchors. On CPU about 1 MiB of float32, so the bisection's passes stay in cache:
# measured fastest at B = 512 to 2048. On a GPU every pass is a few kernel launches whatever its size, and 1 MiB
# chunks made the loss 37-214x InfoNCE's time at B = 4096-16384 on an H200 (benchmarks/results/gpu_check.md at
# commit 07b1084): there a chunk is 256 MiB, so B = 4096 with two views is one chunk and [16384, 32768] is eight.
_CPU_CHUNK_ELEMENTS = 2**18
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
      above the total); when the total is <= 0 only the ``min_keep`` most similar are kept. Aggressive.

    The result is that of a full sort, computed without one: the threshold is bracketed by bisection in logit
    space and the candidates left inside the bracket are ordered exactly (a sort of ``[B, N]`` costs more than
    the similarity matmul on CPU).

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
        ValueError: on a wrong rank, dtype, shape, NaN logits, or an out-of-range ``mass`` / ``min_keep`` /
            ``weight``.

    Example:
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
    mass = check_fraction("mass", mass)
    min_keep = check_int("min_keep", min_keep, 0)
    check_mask("mask", mask, tuple(logits.shape), "[B, N]")
    weight = check_choice("weight", weight, SCREENING_WEIGHTS)
    valid = torch.isfinite(logits) if mask is None else mask & torch.isfinite(logits)
    return screen_unchecked(logits, mass, min_keep, valid, weight)


@torch.no_grad()
def screen_unchecked(logits: Tensor, mass: float, min_keep: int, valid: Tensor, weight: str = "softmax") -> Tensor:
    """:func:`relative_screen` on finite logits with a given validity mask, without argument checks.

    Anchors are screened in chunks (about 1 MiB of logits on CPU, 256 MiB on an accelerator): on CPU the passes
    over a chunk stay in cache, on a GPU the kernel launches stay few, and the temporaries stay bounded whatever
    the batch size.
    """
    # softmax weights are all > 0, so the whole mass needs every candidate; signed cosines reach their total
    # before the negative tail, so "similarity" still screens at mass 1
    if (mass >= 1.0 and weight == "softmax") or logits.shape[1] == 0:
        return valid
    chunk_elements = _CPU_CHUNK_ELEMENTS if logits.device.type == "cpu" else _ACCELERATOR_CHUNK_ELEMENTS
    rows = max(1, chunk_elements // logits.shape[1])
    if logits.shape[0] <= rows:
        return _screen_chunk(logits, mass, min_keep, valid, weight)
    return torch.cat(
        [
            _screen_chunk(logits[i : i + rows], mass, min_keep, valid[i : i + rows], weight)
            for i in range(0, len(logits), rows)
        ]
    )


def _weight(scores: Tensor, weight_kind: str, top: Tensor) -> Tensor:
    """A candidate's screening weight: softmax weight up to the anchor's constant, or its clamped logit (the
    positive part of the signed weight, which is what the bisection needs; see :func:`_screen_chunk`)."""
    return torch.exp(scores - top) if weight_kind == "softmax" else scores.clamp(min=0)


def _screen_chunk(logits: Tensor, mass: float, min_keep: int, valid: Tensor, weight_kind: str) -> Tensor:
    # Work on [N, B]: per-anchor values then broadcast along the outer axis, which CPU kernels vectorise
    # (broadcasting a [B, 1] column along the contiguous axis is several times slower).
    scores = logits.detach().T
    scores = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    invalid = (~valid).T.to(scores.dtype)  # one bool->float conversion, reused
    # arithmetic masking: on CPU it is several times faster than masked_fill / where
    scores = scores.add(invalid, alpha=-_FAR).contiguous()  # a scalar alpha: no host-to-device copy
    top = scores.max(dim=0, keepdim=True).values
    top = top * (top > -_FAR / 2)  # rows with nothing valid: any finite shift will do
    weight = _weight(scores, weight_kind, top)  # exactly 0 where invalid
    if weight_kind == "softmax":
        target = mass * weight.sum(dim=0, keepdim=True)
    else:
        # Signed weights: the cumulative sum rises over the positive logits, then falls. With a positive total the
        # first crossing of mass * total lies among the positive logits, where the clamped weights are the real
        # ones and grow monotonically: the same bisection finds it. A total <= 0 keeps only min_keep (below).
        target = mass * (scores * (1 - invalid)).sum(dim=0, keepdim=True)  # the valid logits' signed total

    # Invariant: weight(> low) >= target > weight(> high), so the threshold (the largest logit v whose
    # weight(>= v) reaches the target) lies in (low, high]. Any lower bound of the valid logits serves as
    # `low`; the unmasked minimum is one and needs no masking pass.
    low = logits.detach().T.min(dim=0, keepdim=True).values.to(scores.dtype) - 1.0
    high = top + 1.0
    weight_high = torch.zeros_like(target)
    steps = 0
    while True:
        for _ in range(_FIRST_STEPS if steps == 0 else _MORE_STEPS):
            middle = (low + high) / 2
            # (scores - middle).sign().clamp(min=0) is the float mask of scores > middle without a bool->float copy
            above = (scores - middle).sign_().clamp_(min=0)
            weight_middle = above.mul_(weight).sum(dim=0, keepdim=True)
            enough = weight_middle >= target
            low = torch.where(enough, middle, low)
            high = torch.where(enough, high, middle)
            weight_high = torch.where(enough, weight_high, weight_middle)
            steps += 1
        inside = (scores > low) & (scores <= high)
        inside_count = inside.sum(dim=0, keepdim=True)
        width = max(1, int(inside_count.max()))
        # a narrow bracket makes the final topk cheap; ties that bisection cannot split stop at _MAX_STEPS
        if width <= _MAX_BRACKET or steps >= _MAX_STEPS:
            break

    # Order the few candidates inside the bracket; the last kept is the first whose running weight reaches target.
    bracket, _ = torch.topk(torch.where(inside, scores, -_FAR), width, dim=0)
    running = weight_high + torch.cumsum(_weight(bracket, weight_kind, top), dim=0)
    # If rounding leaves the running sum a hair short of the target, the threshold is still the lowest
    # candidate inside this anchor's bracket (never the padding past it, which would keep everything).
    last_kept = torch.minimum((running < target).sum(dim=0, keepdim=True), (inside_count - 1).clamp(min=0))
    threshold = bracket.gather(0, last_kept)
    if weight_kind == "similarity":  # a total <= 0 has no prefix to keep: only the min_keep most similar
        threshold = torch.where(target > 0, threshold, torch.full_like(threshold, float("inf")))
    if min_keep == 1:
        threshold = torch.minimum(threshold, scores.max(dim=0, keepdim=True).values)
    elif min_keep > 1:
        kth_best = torch.topk(scores, min(min_keep, scores.shape[0]), dim=0).values[-1:]
        threshold = torch.minimum(threshold, kth_best)
    return valid & (logits.detach() >= threshold.T.to(logits.dtype))
