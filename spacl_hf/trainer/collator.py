"""``SPACLDataCollator``: rows of a ``datasets.Dataset`` to one tokenized batch laid out for SPACL."""

from __future__ import annotations

from collections.abc import Sequence
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from spacl_hf.common.content_ids import token_content_ids
from spacl_hf.core import ACCEPTED_FORMATS, ColumnLayout
from spacl_hf.core.checks import check_int

logger = logging.getLogger(__name__)


@dataclass
class SPACLDataCollator:
    """Tokenize the text columns of a batch and lay them out as SPACL views.

    All texts go through the encoder in one forward pass, column-major: the anchor column ``num_views`` times
    (dropout makes each encoding differ), then the positive columns, then the negative columns. The batch
    carries ``spacl_layout`` (a :class:`~spacl_hf.core.ColumnLayout`) and
    ``spacl_content_ids`` (one id per text, for duplicate masking), which :class:`SPACLTrainer` reads.

    Args:
        tokenizer: the encoder's tokenizer.
        text_columns: the text columns in order (anchor first); ``None`` takes every column but
            ``label_column``, each of which must then hold text (as SPACLLoss reads a dataset: an ``id`` or float
            ``score`` column is an error, not a silent anchor, negative or dropped label). A metadata column that
            holds strings (``source``, ``dataset``) cannot be told from text: it would be read as a negative
            column, so the first batch logs which column plays which role whenever there are negative columns.
        num_positive_columns: columns after the anchor that are positives; the rest are negatives.
        label_column: integer class labels for the single-column format.
        num_views: encodings of the anchor column (extra ones are dropout views).
        max_length: truncation length.

    Raises:
        ValueError: on a batch whose columns match none of the accepted formats, a text column holding something
            other than text (``None`` included; row and column named), or labels that are not integers.

    Shape:
        - output ``input_ids`` / ``attention_mask``: ``[C * B, L]`` for C encoded columns of B rows
        - output ``labels``: ``[B]`` in the label format

    Examples:
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
    _roles_logged: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("num_positive_columns", self.num_positive_columns, 1)
        check_int("num_views", self.num_views, 1)
        check_int("max_length", self.max_length, 1)

    def text_columns_of(self, rows: list[dict[str, Any]]) -> list[str]:
        """The text columns of a batch, checked: every value of every one is a string."""
        if self.text_columns is not None:
            columns = list(self.text_columns)
        else:
            columns = [name for name in rows[0] if name != self.label_column]
        for name in columns:
            for index, row in enumerate(rows):
                if name not in row:
                    raise ValueError(f"Row {index} of the batch has no column {name!r} (columns: {list(row)}).")
                if not isinstance(row[name], str):
                    raise ValueError(
                        f"Column {name!r} holds {type(row[name]).__name__} {row[name]!r} in row {index} of the batch, "
                        f"not text. SPACLDataCollator reads every column but {self.label_column!r} as text: pass "
                        f"`text_columns=[...]`, drop the column (dataset.remove_columns), or name the integer class "
                        f"label column `label_column`. Accepted formats: {ACCEPTED_FORMATS}."
                    )
        return columns

    def labels_of(self, rows: list[dict[str, Any]]) -> torch.Tensor:
        """The integer class labels of a batch, ``[B]``."""
        values = [row.get(self.label_column) for row in rows]
        error = f"`{self.label_column}` must hold integer class labels"
        if any(isinstance(value, str) for value in values):
            raise ValueError(f"{error}, got strings. Map them to integers (or cast the column to datasets.ClassLabel).")
        try:
            labels = torch.tensor(values)
        except (TypeError, ValueError, RuntimeError) as failure:
            raise ValueError(f"{error}, got {values[:4]!r}...: {failure}") from None
        if labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"{error}, got {labels.dtype} values of shape {tuple(labels.shape)}.")
        return labels

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ValueError("SPACLDataCollator got an empty batch.")
        columns = self.text_columns_of(rows)
        has_labels = self.label_column in rows[0]
        layout = ColumnLayout.for_batch(
            len(columns), has_labels, self.num_positive_columns, self.num_views, source=f"Text columns {columns}"
        )
        if not self._roles_logged and self.text_columns is None and layout.negative_columns:
            self._roles_logged = True
            positives = columns[1 : 1 + layout.positive_columns]
            logger.warning(
                "SPACLDataCollator reads column %r as anchor, %s as positives and %s as negatives. A metadata column "
                "holding strings (e.g. 'source') would be trained on as negative text: pass `text_columns=[...]` or "
                "remove it (dataset.remove_columns).", columns[0], positives, columns[1 + len(positives):],
            )  # fmt: skip
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
            out["labels"] = self.labels_of(rows)
        return out
