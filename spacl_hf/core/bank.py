"""The candidate bank: every view of every sample of every process, and which rows are whose negatives (3.4).

What depends on shapes alone (who owns each row, which column it is, which rows are another sample's) is built once
per batch shape and reused (:class:`ShapeFacts`): a training step then dispatches only the ops its values need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .counter_noise import GOLDEN, mix64


def content_hash(rows: Tensor) -> Tensor:
    """An int64 id per row, equal for bit-identical rows (a random hash of the float bits).

    Each element's bits are mixed non-linearly before the weighted sum: a purely linear hash maps ``u`` and ``-u``
    (sign bits flipped in an even number of elements) to the same id. Distinct rows collide with probability about
    2**-64 per pair; identical rows always share the id.

    Examples:
        >>> u = torch.randn(2, 8, dtype=torch.float64)
        >>> bool(content_hash(u)[0] != content_hash(-u)[0]), bool(content_hash(u.clone())[0] == content_hash(u)[0])
        (True, True)
    """
    bits = rows.detach().contiguous()
    bits = bits.view(torch.int64 if bits.dtype == torch.float64 else torch.int32).to(torch.int64)
    first, second = _odd_multipliers(rows.shape[1], rows.device)
    mixed = bits * first  # odd multipliers; int64 overflow wraps, which is what a hash wants
    mixed = (mixed ^ (mixed >> 29)) * second  # the shift carries high bits (the sign) down: no longer linear
    return mixed.sum(dim=1)


def _odd_multipliers(count: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Two rows of ``count`` pseudo-random odd int64 multipliers, a pure function of the position (no random
    generator object, so it traces into a ``torch.compile`` graph)."""
    z = mix64(torch.arange(1, 2 * count + 1, device=device, dtype=torch.int64) * GOLDEN) | 1
    return z[:count], z[count:]


@dataclass(frozen=True)
class ShapeFacts:
    """What a batch's shape alone decides, built once per shape (and device) and reused.

    ``owner`` / ``column``: the global sample and view index of every bank row ``[W*B*V]``; ``rows``: the global
    index of each local sample ``[B]``; ``other_sample``: ``[B, W*B*V]``, the row belongs to another sample.
    """

    rows: Tensor
    owner: Tensor
    column: Tensor
    other_sample: Tensor

    @classmethod
    def build(cls, batch: int, num_views: int, world: int, offset: int, device: torch.device) -> ShapeFacts:
        total = world * batch
        owner = torch.arange(total, device=device).repeat_interleave(num_views, output_size=total * num_views)
        rows = torch.arange(batch, device=device) + offset
        return cls(
            rows=rows,
            owner=owner,
            column=torch.arange(num_views, device=device).repeat(total),
            other_sample=owner[None, :] != rows[:, None],
        )


@dataclass
class Bank:
    """Every view of every sample of every process, flattened sample-major, with who owns each row."""

    views: Tensor  # [B, V, D] this process's unit views
    flat: Tensor  # [W*B*V, D]
    valid: Tensor | None  # [W*B*V]; None when every view exists
    same_label: Tensor | None  # [B, W*B*V]: the row's sample shares this sample's label
    facts: ShapeFacts

    @property
    def rows(self) -> Tensor:
        return self.facts.rows


def build_bank(
    views: Tensor, view_mask: Tensor | None, labels: Tensor | None, gathered: Callable, facts: ShapeFacts
) -> Bank:
    """The candidate bank, gathered (with gradients) from every process."""
    all_views = gathered(views)
    same_label = None
    if labels is not None:
        all_labels = gathered(labels.to(torch.long))
        same_label = labels.to(torch.long)[:, None] == all_labels[facts.owner][None, :]
    return Bank(
        views=views,
        flat=all_views.reshape(-1, views.shape[-1]),
        valid=None if view_mask is None else gathered(view_mask).reshape(-1),
        same_label=same_label,
        facts=facts,
    )


def static_candidate_mask(facts: ShapeFacts, candidate_columns: tuple[bool, ...]) -> Tensor:
    """``[B, W*B*V]``: rows of another sample whose view index may be a negative (shape-only, so cached)."""
    allowed = torch.tensor(candidate_columns, device=facts.column.device)[facts.column]
    return facts.other_sample & allowed[None, :]


def candidate_negatives(
    bank: Bank,
    base_mask: Tensor,
    candidate_view_mask: Tensor | None,
    negatives: Tensor | None,
    negative_mask: Tensor | None,
    extra_negatives: Tensor | None,
    gathered: Callable,
) -> tuple[Tensor, Tensor]:
    """3.4 (candidates): other samples' views (minus same-label samples), negative columns, extra negatives.

    ``base_mask`` is :func:`static_candidate_mask`; a ``candidate_view_mask`` tensor, missing views and labels
    narrow it. Returns the shared candidate rows ``[C, D]`` and which of them are candidates of which anchor
    ``[B, C]``.
    """
    batch, _, dim = bank.views.shape
    device = bank.views.device
    negative_of = base_mask
    if candidate_view_mask is not None:
        negative_of = negative_of & candidate_view_mask[bank.facts.column][None, :]
    if bank.valid is not None:
        negative_of = negative_of & bank.valid[None, :]
    if bank.same_label is not None:
        negative_of = negative_of & ~bank.same_label
    shared, shared_mask = [bank.flat], [negative_of]
    if negatives is not None:
        all_negatives = gathered(F.normalize(negatives.to(bank.views.dtype), dim=-1))
        shared.append(all_negatives.reshape(-1, dim))
        if negative_mask is None:
            shared_mask.append(torch.ones(batch, all_negatives.shape[0] * all_negatives.shape[1], dtype=torch.bool,
                                          device=device))  # fmt: skip
        else:
            shared_mask.append(gathered(negative_mask).reshape(1, -1).expand(batch, -1))
    if extra_negatives is not None:
        shared.append(F.normalize(extra_negatives.to(bank.views.dtype), dim=-1))
        shared_mask.append(torch.ones(batch, extra_negatives.shape[0], dtype=torch.bool, device=device))
    # no copy of the bank when there is nothing to append (the common case)
    if len(shared) == 1:
        return shared[0], shared_mask[0]
    return torch.cat(shared), torch.cat(shared_mask, dim=1)


def bank_ids(
    shared_bank: Tensor,
    view_ids: Tensor | None,
    negative_ids: Tensor | None,
    negatives: Tensor | None,
    extra_negatives: Tensor | None,
    gathered: Callable,
) -> Tensor:
    """One id per shared candidate row ``[C]``; equal ids mean the same content."""
    if view_ids is None:
        # no content ids given: rows with identical embeddings are the same content
        return content_hash(shared_bank)
    parts = [gathered(view_ids.to(torch.long)).reshape(-1)]
    num_extra = 0 if extra_negatives is None else extra_negatives.shape[0]
    num_negative_rows = shared_bank.shape[0] - parts[0].numel() - num_extra
    if num_negative_rows + num_extra:
        # rows without a content id get ids below every user id, so they never equal another row
        fresh = torch.iinfo(torch.long).min + torch.arange(num_negative_rows + num_extra, device=shared_bank.device)
        if negatives is not None:
            parts.append(
                gathered(negative_ids.to(torch.long)).reshape(-1)
                if negative_ids is not None
                else fresh[:num_negative_rows]
            )
        if num_extra:
            parts.append(fresh[num_negative_rows:])
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def mask_duplicate_negatives(
    candidates: Tensor, ids: Tensor, key_rows: Tensor, key_valid: Tensor | None, by_content: bool
) -> tuple[Tensor, Tensor | None]:
    """3.4 (duplicates): a candidate with the id of the anchor or one of its positives is no negative.

    ``key_rows`` ``[B, K]`` are the bank rows of each anchor (column 0) and its positives; ``key_valid`` marks the
    real ones (``None``: all). With ``by_content`` (no ids given: identical embeddings are taken for identical
    inputs) an anchor whose every candidate would go keeps them: every embedding equal to the anchor's is a collapse,
    not a duplicate input, and the loss must say so instead of reading 0. Returns the mask and a ``[B]`` flag of
    those anchors (``None`` with ids). Sync-free: the masking is computed whether or not the bank has duplicates.
    """
    key_ids = ids[key_rows]
    if key_valid is not None:
        key_ids = torch.where(key_valid, key_ids, key_ids[:, :1])  # a missing positive repeats the anchor
    duplicate = ids[None, :] == key_ids[:, :1]
    for j in range(1, key_ids.shape[1]):  # 1 + num_positives columns, each vectorised over the batch
        duplicate = duplicate | (ids[None, :] == key_ids[:, j : j + 1])
    masked = candidates & ~duplicate
    if not by_content:
        return masked, None
    restored = candidates.any(dim=1) & ~masked.any(dim=1)
    return torch.where(restored[:, None], candidates, masked), restored
