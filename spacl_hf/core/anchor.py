"""Dynamic anchor: each sample's hardest view becomes its anchor (SPACL component 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import at_least_float32, check_mask, check_tensor


def view_hardness(views: Tensor, view_mask: Tensor | None = None) -> Tensor:
    """Mean cosine distance of each view to the other valid views of its own pool.

    Args:
        views: embeddings of every view of every sample (normalised here).
        view_mask: ``True`` where a view exists; all views exist when ``None``.

    Shape:
        - views: ``[B, V, D]``
        - view_mask: ``[B, V]``
        - output: ``[B, V]``; ``-inf`` for missing views, ``0`` for a view with no valid partner.

    Raises:
        ValueError: on a wrong rank, dtype, shape or non-finite values.

    Examples:
        >>> views = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # the third view is the odd one out
        >>> view_hardness(views)
        tensor([[0.5000, 0.5000, 1.0000]])
    """
    check_tensor("views", views, ndim=3, floating=True, finite=True)
    batch, num_views, _ = views.shape
    check_mask("view_mask", view_mask, (batch, num_views), "[B, V]")
    valid = torch.ones(batch, num_views, dtype=torch.bool, device=views.device) if view_mask is None else view_mask
    return hardness_unchecked(F.normalize(at_least_float32(views.detach()), dim=-1), valid)


@torch.no_grad()
def hardness_unchecked(unit_views: Tensor, valid: Tensor) -> Tensor:
    """:func:`view_hardness` on unit-norm views with a validity mask, without argument checks."""
    num_views = unit_views.shape[1]
    sim = unit_views @ unit_views.transpose(1, 2)
    sim = (sim + sim.transpose(1, 2)) / 2  # exact symmetry: equal views get equal hardness
    pair = valid[:, :, None] & valid[:, None, :]
    pair &= ~torch.eye(num_views, dtype=torch.bool, device=unit_views.device)
    distance_sum = ((1.0 - sim) * pair).sum(-1)
    hardness = distance_sum / pair.sum(-1).clamp(min=1)
    return hardness.masked_fill(~valid, float("-inf"))


def hardest_view_unchecked(unit_views: Tensor, valid: Tensor) -> Tensor:
    """:func:`dynamic_anchor` on unit-norm views with a validity mask, without argument checks."""
    return hardness_unchecked(unit_views, valid).nan_to_num(neginf=-1.0).argmax(dim=1)


def dynamic_anchor(views: Tensor, view_mask: Tensor | None = None) -> Tensor:
    """Index of each sample's hardest view: the one farthest, on average, from the other views of its pool.

    Ties go to the lowest index, so with two views (equal hardness) the anchor is view 0. Samples whose views
    are all missing get index 0 (they carry no loss).

    Args:
        views: embeddings ``[B, V, D]`` (normalised here).
        view_mask: ``[B, V]``, ``True`` where a view exists.

    Shape:
        - output: ``[B]`` (int64)

    Raises:
        ValueError: on a wrong rank, dtype, shape or non-finite values.

    Examples:
        >>> views = torch.nn.functional.normalize(torch.randn(8, 4, 16), dim=-1)
        >>> dynamic_anchor(views).shape
        torch.Size([8])

    References:
        SnaPhArd Contrast Learning (SPACL), ICLR 2026, "dynamic anchor".
    """
    return view_hardness(views, view_mask).nan_to_num(neginf=-1.0).argmax(dim=1)
