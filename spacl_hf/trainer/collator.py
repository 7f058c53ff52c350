"""``SPACLDataCollator``: rows of a ``datasets.Dataset`` to one tokenized batch laid out for SPACL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from spacl_hf.common.content_ids import token_content_ids
from spacl_hf.core import ColumnLayout
from spacl_hf.core.checks import check_int


@dataclass
class SPACLDataCollator:
    """Tokenize the text columns of a batch and lay them out as SPACL views.

    All texts go through the encoder in one forward pass, column-major: the anchor column ``num_views`` times
    (dropout makes each encoding differ), then the positive columns, then the negative columns. The batch
    carries ``spacl_layout`` (a :class:`~spacl_hf.core.ColumnLayout`) and
    ``spacl_content_ids`` (one id per text, for duplicate masking), which :class:`SPACLTrainer` reads.

    Args:
        tokenizer: the encoder's tokenizer.
        text_columns: the text columns in order (anchor first); ``None`` takes every string column.
        num_positive_columns: columns after the anchor that are positives; the rest are negatives.
        label_column: integer class labels for the single-column format.
        num_views: encodings of the anchor column (extra ones are dropout views).
        max_length: truncation length.

    Raises:
        ValueError: on a batch whose columns match none of the accepted formats.

    Shape:
        - output ``input_ids`` / ``attention_mask``: ``[C * B, L]`` for C encoded columns of B rows
        - output ``labels``: ``[B]`` in the label format

    Example:
        >>> collator = SPACLDataCollator(tokenizer, max_length=64)  # doctest: +SKIP
        >>> batch = collator([{"anchor": "a cat", "positive": "a kitten"}, {"anchor": "a car", "positive": "an auto"}])
        ... # doctest: +SKIP
        >>> batch["spacl_layout"]  # doctest: +SKIP
        ColumnLayout(num_anchor_views=1, num_positive_columns=1, num_negative_columns=0, uses_labels=False)
    """

    tokenizer: Any
    text_columns: Sequence[str] | None = None
    num_positive_columns: int = 1
    label_column: str = "label"
    num_views: int = 1
    max_length: int = 128

    def __post_init__(self) -> None:
        check_int("num_positive_columns", self.num_positive_columns, 1)
        check_int("num_views", self.num_views, 1)
        check_int("max_length", self.max_length, 1)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        columns = (
            list(self.text_columns)
            if self.text_columns is not None
            else [name for name, value in rows[0].items() if isinstance(value, str)]
        )
        has_labels = self.label_column in rows[0]
        layout = ColumnLayout.for_batch(
            len(columns), has_labels, self.num_positive_columns, self.num_views, source=f"Text columns {columns}"
        )
        texts = [[row[name] for row in rows] for name in columns]
        encoded = self.tokenizer(
            [text for column in texts for text in column],
            padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
        )  # fmt: skip
        batch = len(rows)
        ids = token_content_ids(encoded).view(len(columns), batch)
        # the anchor column is tokenized once and repeated: same tokens, fresh dropout in the forward pass
        order = [0] * self.num_views + list(range(1, len(columns)))
        index = torch.tensor([c * batch + r for c in order for r in range(batch)])
        out: dict[str, Any] = {key: value[index] for key, value in encoded.items()}
        out["spacl_content_ids"] = ids[order]
        out["spacl_layout"] = layout
        if has_labels:
            labels = torch.tensor([row[self.label_column] for row in rows])
            if labels.is_floating_point():
                raise ValueError(f"`{self.label_column}` must hold integer class labels, got floats.")
            out["labels"] = labels
        return out
