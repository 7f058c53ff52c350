"""From encoded input columns (anchor, positives, negatives, or one labelled column) to SPACL views."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .criterion import SPACLCriterion

ACCEPTED_FORMATS = (
    "(anchor, positive) pairs; "
    "(anchor, positive, negative_1, ..., negative_n) with num_positive_columns=1; "
    "(anchor, positive_1, ..., positive_k[, negative_1, ...]) with num_positive_columns=k; "
    "or a single text column with an integer `label` column (same label = positive)"
)


@dataclass(frozen=True)
class ColumnLayout:
    """How a batch's encoded columns map onto SPACL: ``anchor_views`` encodings of the anchor column (extra ones
    are dropout views), then ``positive_columns`` positive columns, then ``negative_columns`` negative columns;
    ``uses_labels`` for one labelled column (same label = positive); ``interchangeable`` when every column is a
    view of the same input (image augmentations), so no column is a query side.

    Args:
        anchor_views: encodings of the anchor column.
        positive_columns: positive columns after it.
        negative_columns: negative columns after those.
        uses_labels: one labelled column, positives by label.
        interchangeable: the views are augmentations of one input (images): every view of another sample is a
            negative under ``candidate_views="auto"`` and the dynamic anchor defaults to on.

    Raises:
        ValueError: from :meth:`for_batch`, when a batch matches none of :data:`ACCEPTED_FORMATS`.

    Examples:
        >>> layout = ColumnLayout.for_batch(num_columns=3, has_labels=False)  # (anchor, positive, negative)
        >>> layout.pool_size, layout.num_columns, layout.negative_columns
        (2, 3, 1)
    """

    anchor_views: int
    positive_columns: int
    negative_columns: int
    uses_labels: bool
    interchangeable: bool = False

    @classmethod
    def for_batch(
        cls, num_columns: int, has_labels: bool, num_positive_columns: int = 1, anchor_views: int = 1, source: str = ""
    ) -> ColumnLayout:
        """The layout of a batch with ``num_columns`` input columns, with or without a label column.

        Raises:
            ValueError: when the columns match none of :data:`ACCEPTED_FORMATS`; ``source`` describes the batch.
        """
        if has_labels and num_columns == 1:
            return cls(anchor_views, 0, 0, uses_labels=True)
        if not has_labels and num_columns >= 1 + num_positive_columns:
            return cls(anchor_views, num_positive_columns, num_columns - 1 - num_positive_columns, uses_labels=False)
        labels = "a label/score column" if has_labels else "no labels"
        raise ValueError(
            f"{source or 'The batch'} has {num_columns} text column(s) and {labels}, with num_positive_columns="
            f"{num_positive_columns}. Accepted formats: {ACCEPTED_FORMATS}."
        )

    @property
    def pool_size(self) -> int:
        return self.anchor_views + self.positive_columns

    @property
    def num_columns(self) -> int:
        return self.pool_size + self.negative_columns


def spacl_from_columns(
    criterion: SPACLCriterion,
    embeddings: Tensor,
    layout: ColumnLayout,
    labels: Tensor | None = None,
    content_ids: Tensor | None = None,
    dynamic_anchor: bool | None = None,
    return_stats: bool = True,
    update_generator: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """SPACL loss and statistics of column-major embeddings.

    The criterion's ``candidate_views`` decides which views of other samples are negatives: ``"columns"``, other
    samples' anchor-side encodings are not (the MultipleNegativesRankingLoss convention); ``"all"``, every view
    is; ``"auto"``, ``"all"`` for the labelled format and interchangeable views (a single labelled column would
    otherwise have no negative at all) and ``"columns"`` for text columns.

    Args:
        criterion: the configured :class:`SPACLCriterion`.
        embeddings: one row of embeddings per encoded column, anchor column ``anchor_views`` times first.
        layout: the columns' roles.
        labels: integer labels in the labelled format.
        content_ids: one id per text per encoded column, for duplicate masking.
        dynamic_anchor: ``None`` means on for the labelled format and interchangeable views (every view is the
            same input) and off for columns (the anchor stays on the query side of asymmetric pairs).
        return_stats: compute the activity statistics (an empty dict otherwise: a trainer asks on logging steps).
        update_generator: let this call update the adversarial generator (see :meth:`SPACLCriterion.forward`).

    Shape:
        - embeddings: ``[K, B, D]``, K = ``layout.num_columns``; content_ids: ``[K, B]``; labels: ``[B]``

    Raises:
        ValueError: when the number of columns does not match the layout.

    Examples:
        >>> columns = torch.randn(2, 8, 16)  # (anchor, positive) embeddings of 8 pairs
        >>> loss, stats = spacl_from_columns(SPACLCriterion(), columns, ColumnLayout(1, 1, 0, uses_labels=False))
        >>> loss.ndim, 0 < float(stats["kept_negative_fraction"]) <= 1
        (0, True)
    """
    if embeddings.ndim != 3 or embeddings.shape[0] != layout.num_columns:
        raise ValueError(
            f"`embeddings` must be [K={layout.num_columns}, B, D] for {layout}, got {tuple(embeddings.shape)}."
        )
    pool = layout.pool_size
    views = embeddings[:pool].transpose(0, 1)
    negatives = embeddings[pool:].transpose(0, 1) if layout.negative_columns else None
    view_ids = negative_ids = None
    if content_ids is not None:
        view_ids = content_ids[:pool].T
        negative_ids = content_ids[pool:].T if layout.negative_columns else None
    candidate_view_mask = None
    same_input = layout.uses_labels or layout.interchangeable
    if same_input:
        use_dynamic_anchor = True if dynamic_anchor is None else dynamic_anchor
    else:
        use_dynamic_anchor = bool(dynamic_anchor)
    candidate_views = criterion.candidate_views
    if candidate_views == "columns" or (candidate_views == "auto" and not same_input):
        # a tuple of Python bools: the criterion builds its mask once per batch shape
        candidate_view_mask = tuple(v >= layout.anchor_views for v in range(pool))
    result = criterion(
        views,
        labels=labels if layout.uses_labels else None,
        negatives=negatives,
        view_ids=view_ids,
        negative_ids=negative_ids,
        dynamic_anchor=use_dynamic_anchor,
        candidate_view_mask=candidate_view_mask,
        return_stats=return_stats,
        update_generator=update_generator,
    )
    return result if return_stats else (result, {})


class RunningStatistics:
    """Sums of SPACL's per-step statistics, kept as tensors (no device sync per step) until read.

    Examples:
        >>> running = RunningStatistics()
        >>> running.add({"kept_negative_fraction": torch.tensor(0.5)})
        >>> running.add({"kept_negative_fraction": torch.tensor(0.25)})
        >>> running.pop(), running.pop()
        ({'kept_negative_fraction': 0.375}, {})
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.steps = 0

    def add(self, stats: dict[str, Tensor]) -> None:
        for name, value in stats.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value.to(self.sums[name].device) if name in self.sums else value
        self.steps += 1

    def pop(self) -> dict[str, float]:
        """Means since the last call, then reset; empty when nothing was added."""
        steps, sums = self.steps, self.sums
        self.sums, self.steps = {}, 0
        return {name: float(total) / steps for name, total in sums.items()} if steps else {}
