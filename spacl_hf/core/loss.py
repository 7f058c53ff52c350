"""Multi-positive InfoNCE over the kept positives and the screened negatives (the SPACL objective)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import (
    at_least_float32,
    check_choice,
    check_fraction,
    check_int,
    check_mask,
    check_temperature,
    check_tensor,
)
from .screening import SCREENING_WEIGHTS, screen_unchecked

# A finite stand-in for -inf: exp() of it is exactly 0 in float32, and fully masked rows stay NaN-free.
_MASKED = -1e9


def spacl_loss(
    anchors: Tensor,
    positives: Tensor,
    positive_mask: Tensor | None = None,
    shared_negatives: Tensor | None = None,
    shared_negative_mask: Tensor | None = None,
    anchor_negatives: Tensor | None = None,
    anchor_negative_mask: Tensor | None = None,
    temperature: float = 0.05,
    mass: float = 0.95,
    min_negatives: int = 1,
    screening: bool = True,
    normalizer: float | Tensor | None = None,
    screening_weight: str = "softmax",
) -> tuple[Tensor, dict[str, Tensor]]:
    """SPACL loss: multi-positive InfoNCE over the kept positives and the screened candidate negatives.

    For anchor ``a_i`` with positives ``P_i`` and kept negatives ``Q_i``::

        loss_i = logsumexp({a_i.p / t : p in P_i} + {a_i.n / t : n in Q_i}) - logsumexp({a_i.p / t : p in P_i})

    Candidate negatives are the shared ones (in-batch views, negative columns, a memory queue; masked per
    anchor) and the per-anchor ones (e.g. generated negatives). With ``screening`` they are reduced by
    :func:`relative_screen` to the shortest most-similar set holding ``mass`` of their total weight
    (``screening_weight``: softmax weight or, as in the paper, raw similarity).
    Screening carries no gradient; the loss does, through anchors, positives and kept negatives. Logits are
    computed in float32 even under autocast. Anchors without a valid positive carry no loss.

    Args:
        anchors: anchor embeddings (normalised here).
        positives: the selected positives of each anchor.
        positive_mask: ``True`` for real positives (selection may find fewer than ``P``).
        shared_negatives: candidates shared by all anchors.
        shared_negative_mask: which shared candidates are negatives of which anchor.
        anchor_negatives: candidates that belong to one anchor.
        anchor_negative_mask: which per-anchor candidates are valid.
        temperature: logits are ``cos / temperature``.
        mass: screening mass ``lambda_Q`` in (0, 1].
        min_negatives: screening keeps at least this many negatives per anchor (when that many exist).
        screening: ``False`` keeps every valid candidate (plain multi-positive InfoNCE).
        normalizer: divide the summed per-anchor losses by this instead of the local count of anchors with a
            positive (data parallelism passes ``global count / world size`` so every rank averages alike).
        screening_weight: ``"softmax"`` or ``"similarity"``, see :func:`relative_screen`.

    Shape:
        - anchors: ``[B, D]``; positives: ``[B, P, D]``; positive_mask: ``[B, P]``
        - shared_negatives: ``[C, D]``; shared_negative_mask: ``[B, C]``
        - anchor_negatives: ``[B, N, D]``; anchor_negative_mask: ``[B, N]``
        - output: ``(loss [], stats)``, stats being 0-dim detached tensors.

    Raises:
        ValueError: on wrong ranks, shapes, dtypes, non-finite embeddings or out-of-range settings.

    Examples:
        >>> a = torch.randn(8, 16)
        >>> loss, stats = spacl_loss(a, a[:, None] + 0.1 * torch.randn(8, 1, 16), shared_negatives=a,
        ...                          shared_negative_mask=~torch.eye(8, dtype=torch.bool))
        >>> loss.ndim, "kept_negative_fraction" in stats
        (0, True)

    References:
        SnaPhArd Contrast Learning (SPACL), ICLR 2026.
    """
    temperature = check_temperature("temperature", temperature)
    mass = check_fraction("mass", mass)
    screening_weight = check_choice("screening_weight", screening_weight, SCREENING_WEIGHTS)
    min_negatives = check_int("min_negatives", min_negatives, 0)
    check_tensor("anchors", anchors, ndim=2, floating=True, finite=True)
    batch, dim = anchors.shape
    check_tensor("positives", positives, ndim=3, floating=True, finite=True)
    if positives.shape[0] != batch or positives.shape[2] != dim:
        raise ValueError(f"`positives` must have shape [B={batch}, P, D={dim}], got {tuple(positives.shape)}.")
    num_pos = positives.shape[1]
    check_mask("positive_mask", positive_mask, (batch, num_pos), "[B, P]")

    device = anchors.device
    with torch.autocast(device_type=device.type, enabled=False):
        anchors = F.normalize(at_least_float32(anchors), dim=-1)
        positives = F.normalize(positives.to(anchors.dtype), dim=-1)
        if positive_mask is None:
            positive_mask = torch.ones(batch, num_pos, dtype=torch.bool, device=device)
        if shared_negatives is not None:
            check_tensor("shared_negatives", shared_negatives, ndim=2, floating=True, finite=True)
            if shared_negatives.shape[1] != dim:
                raise ValueError(f"`shared_negatives` must be [C, {dim}], got {tuple(shared_negatives.shape)}.")
            num_shared = shared_negatives.shape[0]
            check_mask("shared_negative_mask", shared_negative_mask, (batch, num_shared), "[B, C]")
            shared_negatives = F.normalize(shared_negatives.to(anchors.dtype), dim=-1)
            if shared_negative_mask is None:
                shared_negative_mask = torch.ones(batch, num_shared, dtype=torch.bool, device=device)
        elif shared_negative_mask is not None:
            raise ValueError("`shared_negative_mask` was given without `shared_negatives`.")
        if anchor_negatives is not None:
            check_tensor("anchor_negatives", anchor_negatives, ndim=3, floating=True, finite=True)
            if anchor_negatives.shape[0] != batch or anchor_negatives.shape[2] != dim:
                raise ValueError(
                    f"`anchor_negatives` must be [B={batch}, N, D={dim}], got {tuple(anchor_negatives.shape)}."
                )
            shape = tuple(anchor_negatives.shape[:2])
            check_mask("anchor_negative_mask", anchor_negative_mask, shape, "[B, N]")
            anchor_negatives = F.normalize(anchor_negatives.to(anchors.dtype), dim=-1)
            if anchor_negative_mask is None:
                anchor_negative_mask = torch.ones(shape, dtype=torch.bool, device=device)
        elif anchor_negative_mask is not None:
            raise ValueError("`anchor_negative_mask` was given without `anchor_negatives`.")
        return infonce_unchecked(
            anchors, positives, positive_mask, shared_negatives, shared_negative_mask, anchor_negatives,
            anchor_negative_mask, temperature, mass, min_negatives, screening, normalizer, with_stats=True,
            screening_weight=screening_weight,
        )  # fmt: skip


def infonce_unchecked(
    anchors: Tensor,
    positives: Tensor,
    positive_mask: Tensor,
    shared_negatives: Tensor | None,
    shared_negative_mask: Tensor | None,
    anchor_negatives: Tensor | None,
    anchor_negative_mask: Tensor | None,
    temperature: float,
    mass: float,
    min_negatives: int,
    screening: bool,
    normalizer: float | Tensor | None,
    with_stats: bool,
    screening_weight: str = "softmax",
) -> tuple[Tensor, dict[str, Tensor]]:
    """:func:`spacl_loss` on unit-norm float32/float64 inputs with boolean masks, without argument checks."""
    batch = anchors.shape[0]
    scaled = anchors / temperature  # fold the temperature into the [B, D] side, not the [B, C] logits
    parts, masks = [], []
    if shared_negatives is not None:
        parts.append(scaled @ shared_negatives.T)
        masks.append(shared_negative_mask)
    if anchor_negatives is not None:
        parts.append(torch.einsum("bd,bnd->bn", scaled, anchor_negatives))
        masks.append(anchor_negative_mask)
    if len(parts) == 1:
        negatives, candidate = parts[0], masks[0]
    elif parts:
        negatives, candidate = torch.cat(parts, dim=1), torch.cat(masks, dim=1)
    else:
        negatives = scaled.new_zeros(batch, 0)
        candidate = torch.zeros(batch, 0, dtype=torch.bool, device=anchors.device)
    keep = screen_unchecked(negatives, mass, min_negatives, candidate, screening_weight) if screening else candidate
    pos_logits = torch.einsum("bd,bpd->bp", scaled, positives)
    has_positive = positive_mask.any(dim=1)
    loss = infonce_from_logits(pos_logits, positive_mask, negatives, keep, has_positive, normalizer)
    if not with_stats:
        return loss, {}
    num_anchor_negatives = 0 if anchor_negatives is None else anchor_negatives.shape[1]
    stats = _statistics(
        anchors, positives, positive_mask, negatives.detach(), temperature, candidate, keep, has_positive,
        num_anchor_negatives,
    )  # fmt: skip
    return loss, stats


def infonce_from_logits(
    positive_logits: Tensor,
    positive_mask: Tensor | None,
    negative_logits: Tensor,
    keep: Tensor,
    has_positive: Tensor | None,
    normalizer: float | Tensor | None,
) -> Tensor:
    """Section 4 on logits: the mean over anchors with a positive of
    ``logsumexp(positives + kept negatives) - logsumexp(positives)``.

    ``positive_mask`` / ``has_positive`` ``None`` mean every positive is real (known from shapes: fewer ops).

    Shape:
        - positive_logits: ``[B, P]``; positive_mask: ``[B, P]``; negative_logits, keep: ``[B, N]``;
          has_positive: ``[B]``; output: scalar
    """
    # arithmetic masking (faster than masked_fill on CPU); masked logits get exactly zero softmax weight
    if positive_mask is not None:
        positive_logits = positive_logits + (~positive_mask) * _MASKED
    pos_lse = torch.logsumexp(positive_logits, dim=1)
    if negative_logits.shape[1] > 0:
        neg_lse = torch.logsumexp(negative_logits + (~keep) * _MASKED, dim=1)
        per_anchor = torch.logaddexp(pos_lse, neg_lse) - pos_lse
    else:
        per_anchor = pos_lse * 0.0  # nothing to contrast: zero loss that still has a graph
    if has_positive is None:
        return per_anchor.sum() / (len(per_anchor) if normalizer is None else normalizer)
    if normalizer is None:
        normalizer = has_positive.sum().clamp(min=1)
    return torch.where(has_positive, per_anchor, 0.0).sum() / normalizer


@torch.no_grad()
def _statistics(
    anchors: Tensor,
    positives: Tensor,
    positive_mask: Tensor,
    negative_logits: Tensor,
    temperature: float,
    candidate: Tensor,
    keep: Tensor,
    has_positive: Tensor,
    num_anchor_negatives: int,
) -> dict[str, Tensor]:
    """Detached summaries for logging: what screening kept and removed, and how spread the positives are."""
    rows = has_positive.float()
    pos_cos = torch.einsum("bd,bpd->bp", anchors, positives.detach())
    # positive spread: mean pairwise cosine distance inside {anchor} + selected positives
    group = torch.cat([anchors.detach()[:, None], positives.detach()], dim=1)
    group_mask = torch.cat([has_positive[:, None], positive_mask], dim=1)
    pair = group_mask[:, :, None] & group_mask[:, None, :]
    pair &= ~torch.eye(group.shape[1], dtype=torch.bool, device=group.device)
    distance = (1.0 - group @ group.transpose(1, 2)) * pair

    def mean(values: Tensor, mask: Tensor) -> Tensor:
        return (values * mask).sum() / mask.sum().clamp(min=1)

    # softmax weight of each candidate negative within its anchor's candidates (0 where not a candidate)
    weight = torch.softmax(negative_logits + (~candidate) * _MASKED, dim=1) * candidate
    with_candidates = candidate.any(dim=1) & has_positive
    kept_weight = (weight * keep).sum(dim=1)
    stats = {
        "kept_negative_fraction": keep.sum() / candidate.sum().clamp(min=1),
        "kept_negatives_per_anchor": mean(keep.sum(1).float(), rows),
        "screened_weight_fraction": mean(1.0 - kept_weight, with_candidates.float()),
        "anchors_without_negatives": mean((~candidate.any(dim=1)).float(), rows),
        "mean_positive_similarity": mean(pos_cos, positive_mask),
        "mean_negative_similarity": mean(negative_logits * temperature, keep),
        "positive_spread": distance.sum() / pair.sum().clamp(min=1),
        "positives_per_anchor": mean(positive_mask.sum(1).float(), rows),
        "anchors_with_positive": has_positive.float().mean(),
    }
    real = candidate[:, : candidate.shape[1] - num_anchor_negatives]
    if real.shape[1] > 0:
        hardest = (negative_logits[:, : real.shape[1]] + (~real) * _MASKED).max(dim=1).values * temperature
        has_real = real.any(dim=1) & has_positive
        # median over anchors with a real candidate, without boolean indexing: the others sort to the end as NaN
        stats["hardest_negative_cosine"] = torch.where(has_real, hardest, torch.nan).nanmedian().nan_to_num(0.0)
    if num_anchor_negatives:  # share of the kept negatives' softmax weight held by the per-anchor negatives
        own = (weight * keep)[:, -num_anchor_negatives:].sum(dim=1)
        stats["anchor_negative_weight_fraction"] = mean(own / kept_weight.clamp(min=1e-30), with_candidates.float())
    return stats
