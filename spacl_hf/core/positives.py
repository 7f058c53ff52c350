"""Hard positives by greedy farthest-point selection (SPACL component 2), and its ordered fallback."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import at_least_float32, check_int, check_mask, check_tensor


def _pad(indices: Tensor, valid: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Right-pad to ``k`` columns with invalid slots when fewer than ``k`` candidates exist."""
    missing = k - indices.shape[1]
    if missing > 0:
        indices = F.pad(indices, (0, missing), value=0)
        valid = F.pad(valid, (0, missing), value=False)
    return indices, valid


def _check_candidates(anchors: Tensor, candidates: Tensor, candidate_mask: Tensor | None) -> Tensor:
    check_tensor("anchors", anchors, ndim=2, floating=True, finite=True)
    batch, dim = anchors.shape
    if candidates.ndim not in (2, 3):
        raise ValueError(
            f"`candidates` must be shared [C, D] or per-anchor [B, C, D], got shape {tuple(candidates.shape)}."
        )
    check_tensor("candidates", candidates, ndim=candidates.ndim, floating=True, finite=True)
    if candidates.shape[-1] != dim or (candidates.ndim == 3 and candidates.shape[0] != batch):
        raise ValueError(
            f"`candidates` must be [C, {dim}] or [{batch}, C, {dim}] to match `anchors` {tuple(anchors.shape)}, "
            f"got {tuple(candidates.shape)}."
        )
    num_candidates = candidates.shape[-2]
    check_mask("candidate_mask", candidate_mask, (batch, num_candidates), "[B, C]")
    if candidate_mask is None:
        return torch.ones(batch, num_candidates, dtype=torch.bool, device=anchors.device)
    return candidate_mask


def _similarity(points: Tensor, candidates: Tensor) -> Tensor:
    """Cosine of each row's point ``[B, D]`` to shared ``[C, D]`` or per-row ``[B, C, D]`` unit candidates."""
    if candidates.ndim == 2:
        return points @ candidates.T
    return torch.einsum("bd,bcd->bc", points, candidates)


@torch.no_grad()
def farthest_point_select(
    anchors: Tensor, candidates: Tensor, k: int, candidate_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Greedy farthest-point selection of ``k`` hard positives per anchor.

    The selected set starts as ``{anchor}``; each step adds the valid, not yet chosen candidate whose cosine
    distance ``1 - cos`` to its nearest member of the set is largest (ties: lowest index). The result spreads
    the positives around the anchor instead of taking near-duplicates. No gradient flows through selection.

    Args:
        anchors: anchor embeddings (normalised here).
        candidates: shared candidates for every anchor, or one candidate list per anchor.
        k: number of positives to pick (``lambda_P``; the paper's default is 2).
        candidate_mask: ``True`` where a candidate may be picked for that anchor (own views, same-label samples).

    Shape:
        - anchors: ``[B, D]``
        - candidates: ``[C, D]`` or ``[B, C, D]``
        - candidate_mask: ``[B, C]``
        - output: ``(indices [B, k] int64 into C, valid [B, k] bool)``; slots past the available count are invalid.

    Raises:
        ValueError: on wrong ranks, shapes, dtypes, non-finite values, or ``k < 1``.

    Examples:
        >>> anchors = torch.randn(4, 8)
        >>> own_views = torch.randn(4, 3, 8)
        >>> idx, ok = farthest_point_select(anchors, own_views, k=2)
        >>> idx.shape, bool(ok.all())
        (torch.Size([4, 2]), True)

    References:
        SnaPhArd Contrast Learning (SPACL), ICLR 2026, "farthest point iteration".
    """
    k = check_int("k", k, 1)
    available = _check_candidates(anchors, candidates, candidate_mask)
    anchors = F.normalize(at_least_float32(anchors), dim=-1)
    candidates = F.normalize(candidates.to(anchors.dtype), dim=-1)
    return farthest_point_unchecked(anchors, candidates, k, available)


@torch.no_grad()
def farthest_point_unchecked(
    anchors: Tensor, candidates: Tensor, k: int, available: Tensor, preferred: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`farthest_point_select` on unit-norm inputs with a boolean mask, without argument checks.

    ``preferred`` (``[B, C]`` bool) puts a tier first: while a preferred candidate is available it wins over
    every other (farthest first within the tier); the others fill the remaining slots, still by distance to
    everything chosen so far. SPACL's ``positive_pool="views+labels"`` prefers the sample's own views.
    """
    available = available.clone()
    # cosine distances lie in [0, 2]: a bonus of 4 ranks every preferred candidate above every other
    bonus = None if preferred is None else preferred.to(anchors.dtype) * 4.0
    batch = anchors.shape[0]
    rows = torch.arange(batch, device=anchors.device)
    min_distance = 1.0 - _similarity(anchors, candidates)
    steps = min(k, candidates.shape[-2])
    indices = torch.zeros(batch, steps, dtype=torch.long, device=anchors.device)
    valid = torch.zeros(batch, steps, dtype=torch.bool, device=anchors.device)
    for step in range(steps):  # k is small (lambda_P); every step is vectorised over the batch
        score = min_distance if bonus is None else min_distance + bonus
        score = score.masked_fill(~available, float("-inf"))
        chosen = score.argmax(dim=1)
        indices[:, step] = chosen
        valid[:, step] = available[rows, chosen]
        available[rows, chosen] = False
        if step + 1 < steps:
            picked = candidates[chosen] if candidates.ndim == 2 else candidates[rows, chosen]
            min_distance = torch.minimum(min_distance, 1.0 - _similarity(picked, candidates))
    return _pad(indices, valid, k)


@torch.no_grad()
def ordered_select(candidate_mask: Tensor, k: int, priority: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The first ``k`` valid candidates in their given order: SPACL's positives with farthest-point selection off.

    Args:
        candidate_mask: ``True`` where a candidate may be picked.
        k: number of positives.
        priority: smaller comes first; defaults to the candidate index. Must be distinct within a row.

    Shape:
        - candidate_mask: ``[B, C]``
        - priority: ``[B, C]`` or ``[C]``
        - output: ``(indices [B, k], valid [B, k])``

    Raises:
        ValueError: on a wrong shape or dtype, or ``k < 1``.

    Examples:
        >>> indices, valid = ordered_select(torch.tensor([[False, True, True, True], [True, False, False, False]]), 2)
        >>> valid.tolist(), indices[valid].tolist()  # indices of invalid slots are arbitrary
        ([[True, True], [True, False]], [1, 2, 0])
    """
    k = check_int("k", k, 1)
    check_tensor("candidate_mask", candidate_mask, ndim=2, dtype=torch.bool)
    batch, num_candidates = candidate_mask.shape
    if priority is None:
        priority = torch.arange(num_candidates, device=candidate_mask.device)
    key = priority.to(torch.float64).expand(batch, num_candidates)
    key = key.masked_fill(~candidate_mask, float("inf"))
    steps = min(k, num_candidates)
    smallest, indices = torch.topk(key, steps, dim=1, largest=False, sorted=True)
    return _pad(indices, torch.isfinite(smallest), k)
