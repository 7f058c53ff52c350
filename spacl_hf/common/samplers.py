"""Batches with several samples of each class, so that SPACL's dynamic anchor and farthest-point selection have
choices (plain torch: usable from any trainer).

With ``per_class = m``, every batch holds ``batch_size / m`` distinct classes with exactly ``m`` samples each (the
"P x K" sampling of metric learning). Random batches of a many-class data set (CLINC150: 150 intents) hold mostly
one sample per class, and sentence-transformers' ``GROUP_BY_LABEL`` holds two: an anchor then has one same-class
partner, and there is nothing for a selection step to choose.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

LABEL_COLUMNS = ("label", "labels")


class PerClassBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size // per_class`` distinct classes with ``per_class`` samples each.

    Each epoch shuffles every class's indices and cuts them into chunks of ``per_class`` (a class's last, shorter
    chunk is left out that epoch; another one next epoch). Batches then draw distinct classes with probability
    proportional to their remaining chunks, so large classes are not exhausted last. When fewer than
    ``batch_size // per_class`` classes have chunks left (imbalanced labels: one large class outlasts the rest), each
    batch takes the remaining classes' chunks and fills up with fresh random chunks of other classes (drawn again,
    so small classes repeat): the epoch ends when every class's chunks were used once, so every sample of a class
    with ``per_class`` samples or more is seen each epoch (before: labels 1000/4/4/4 at batch 8 used 24 of the
    1,012 samples). Deterministic in ``(seed, epoch)``;
    :meth:`set_epoch` is called by sentence-transformers and by :class:`SPACLTrainer`.

    Args:
        labels: one integer class label per sample.
        batch_size: samples per batch; a multiple of ``per_class`` with at least two classes per batch.
        per_class: samples of each class in a batch (>= 2).
        seed: base seed of the shuffles.

    Raises:
        ValueError: for a batch size that is not a multiple of ``per_class`` or holds fewer than two classes, for
            ``per_class < 2``, for a non-integer label, or when fewer than two batches' worth of classes
            have ``per_class`` samples.

    Examples:
        >>> sampler = PerClassBatchSampler([0, 0, 1, 1, 2, 2, 3, 3], batch_size=4, per_class=2, seed=0)
        >>> [sorted(batch) for batch in sampler]  # doctest: +SKIP
        [[0, 1, 6, 7], [2, 3, 4, 5]]
    """

    def __init__(self, labels: Sequence[int], batch_size: int, per_class: int, seed: int = 0) -> None:
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 2:
            raise ValueError(f"`per_class` must be an integer >= 2 (same-class partners per batch), got {per_class!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size % per_class:
            raise ValueError(f"`batch_size` must be a multiple of `per_class`={per_class}, got {batch_size!r}.")
        if batch_size // per_class < 2:
            raise ValueError(f"`batch_size`={batch_size} holds one class of {per_class}: a batch needs negatives.")
        by_class: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            if hasattr(label, "ndim") and getattr(label, "ndim") == 0 and hasattr(label, "item"):
                label = label.item()  # a numpy or torch scalar: its Python value (np.int64(0) -> 0)
            if isinstance(label, bool) or not isinstance(label, numbers.Integral):
                raise ValueError(f"`labels` must be integers, got {label!r} at index {index}.")
            by_class.setdefault(int(label), []).append(index)
        self.by_class = [indices for _, indices in sorted(by_class.items()) if len(indices) >= per_class]
        if small := {label: len(i) for label, i in by_class.items() if len(i) < per_class}:
            warnings.warn(
                f"{len(small)} classes have fewer than `per_class`={per_class} samples and never appear in a batch "
                f"({sum(small.values())} samples left out), e.g. {dict(list(small.items())[:5])}.",
                stacklevel=2,
            )
        self.classes_per_batch = batch_size // per_class
        if len(self.by_class) < self.classes_per_batch:
            raise ValueError(
                f"Only {len(self.by_class)} classes have at least `per_class`={per_class} samples; a batch of "
                f"{batch_size} needs {self.classes_per_batch}."
            )
        self.batch_size, self.per_class, self.seed, self.epoch = batch_size, per_class, seed, 0
        self._cached: tuple[int, list[list[int]]] | None = None  # (epoch, its batches): len() then iter() draw once

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffles of ``epoch`` (a new order every epoch)."""
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        chunks: list[list[list[int]]] = []
        for indices in self.by_class:
            order = torch.randperm(len(indices), generator=generator).tolist()
            shuffled = [indices[i] for i in order]
            whole = len(shuffled) // self.per_class * self.per_class
            chunks.append([shuffled[i : i + self.per_class] for i in range(0, whole, self.per_class)])
        remaining = torch.tensor([len(c) for c in chunks], dtype=torch.float64)
        batches = []
        while int((remaining > 0).sum()) > 0:
            active = int((remaining > 0).sum())
            if active >= self.classes_per_batch:
                picked = torch.multinomial(remaining, self.classes_per_batch, replacement=False, generator=generator)
                fillers: list[int] = []
            else:  # the last classes with chunks, plus fresh chunks of others so the batch keeps its classes
                picked = torch.nonzero(remaining > 0).flatten()
                others = (remaining <= 0).to(torch.float64)
                fillers = torch.multinomial(others, self.classes_per_batch - active, replacement=False,
                                            generator=generator).tolist()  # fmt: skip
            batch = []
            for cls in picked.tolist():
                batch += chunks[cls][int(remaining[cls]) - 1]
                remaining[cls] -= 1
            for cls in fillers:
                indices = self.by_class[cls]
                draw = torch.randperm(len(indices), generator=generator)[: self.per_class].tolist()
                batch += [indices[i] for i in draw]
            order = torch.randperm(len(batch), generator=generator).tolist()  # classes mixed inside the batch
            batches.append([batch[i] for i in order])
        return batches

    def _epoch_batches(self) -> list[list[int]]:
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self._batches())
        return self._cached[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._epoch_batches())

    def __len__(self) -> int:
        return len(self._epoch_batches())


def per_class_batch_sampler(per_class: int, label_column: str | None = None) -> Callable[..., PerClassBatchSampler]:
    """A ``batch_sampler`` for ``SentenceTransformerTrainingArguments`` that builds a :class:`PerClassBatchSampler`.

    Args:
        per_class: samples of each class per batch.
        label_column: the dataset's label column; ``None`` looks for ``label`` then ``labels``.

    Raises:
        ValueError: (when the trainer calls it) for a dataset without the label column.

    Examples:
        >>> from sentence_transformers import SentenceTransformerTrainingArguments  # doctest: +SKIP
        >>> args = SentenceTransformerTrainingArguments(  # doctest: +SKIP
        ...     output_dir="out", per_device_train_batch_size=64, batch_sampler=per_class_batch_sampler(4))
    """

    def build(dataset: Any, batch_size: int, drop_last: bool = True, valid_label_columns: Any = None,
              generator: Any = None, seed: int = 0) -> PerClassBatchSampler:  # fmt: skip
        columns = getattr(dataset, "column_names", None) or []
        column = label_column or next((c for c in LABEL_COLUMNS if c in columns), None)
        if column is None or column not in columns:
            raise ValueError(
                f"per_class_batch_sampler needs a label column ({label_column or ' or '.join(LABEL_COLUMNS)}); "
                f"the dataset has {columns}."
            )
        return PerClassBatchSampler(list(dataset[column]), batch_size, per_class, seed)

    return build
