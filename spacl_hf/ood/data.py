"""CLINC150 and Banking77 as open-intent (out-of-distribution) splits, returned as ``datasets.Dataset``.

Protocol: a seeded random ``known_ratio`` of the intents is *known*; the model trains on their training queries
only. Queries of the other intents (and CLINC150's out-of-scope queries) are out-of-distribution (OOD) in the
validation and test splits, labelled :data:`OOD_LABEL`. Training queries of unknown intents are never used.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Value

from spacl_hf.common.data_files import find_data_dir, read_tsv

OOD_LABEL = -1
"""Label of out-of-distribution queries in the validation and test splits."""


@dataclass
class OpenIntentSplits:
    """Train / validation / test of an open-intent task.

    Attributes:
        train: known intents only; columns ``text``, ``label`` (0 .. K-1), ``intent``.
        validation: known + OOD queries; ``label`` is :data:`OOD_LABEL` for OOD. Choose thresholds here.
        test: known + OOD queries, same columns. Report here only.
        known_intents: the K known intent names, index = label.
        name: e.g. ``"clinc150"`` or ``"banking77-50%"``.

    Examples:
        >>> splits = load_banking77(known_ratio=0.25, seed=0)  # doctest: +SKIP
        >>> splits  # doctest: +SKIP
        OpenIntentSplits(banking77-25%: 19 known intents, train 2226, validation 1003 (...), test 3080 (...))
    """

    train: Dataset
    validation: Dataset
    test: Dataset
    known_intents: list[str]
    name: str

    def __repr__(self) -> str:
        return (
            f"OpenIntentSplits({self.name}: {len(self.known_intents)} known intents, train {len(self.train)}, "
            f"validation {len(self.validation)} ({_ood_count(self.validation)} OOD), "
            f"test {len(self.test)} ({_ood_count(self.test)} OOD))"
        )


def _ood_count(dataset: Dataset) -> int:
    return sum(1 for label in dataset["label"] if label == OOD_LABEL)


def _check_ratio(known_ratio: float) -> float:
    if isinstance(known_ratio, bool) or not isinstance(known_ratio, (int, float)) or not 0 < known_ratio <= 1:
        raise ValueError(f"`known_ratio` must be a fraction in (0, 1] (e.g. 0.25, 0.5, 0.75), got {known_ratio!r}.")
    return float(known_ratio)


def choose_known_intents(intents: list[str], known_ratio: float, seed: int) -> list[str]:
    """A seeded random ``known_ratio`` of ``intents`` (rounded, at least 2), in the original order.

    Args:
        intents: all intent names.
        known_ratio: fraction in (0, 1].
        seed: the draw's seed (independent of the global RNG).

    Raises:
        ValueError: on a ``known_ratio`` outside (0, 1].

    Examples:
        >>> choose_known_intents(["a", "b", "c", "d"], 0.5, seed=0)
        ['b', 'd']
    """
    known_ratio = _check_ratio(known_ratio)
    count = max(2, round(known_ratio * len(intents)))
    chosen = set(random.Random(seed).sample(sorted(intents), min(count, len(intents))))
    return [intent for intent in intents if intent in chosen]


def _to_dataset(rows: list[tuple[str, str]], known: dict[str, int], keep_unknown: bool) -> Dataset:
    """Known intents as ids; unknown ones as OOD (``keep_unknown``) or dropped. Train splits (no OOD) get a
    ClassLabel so that intent names travel with the data."""
    texts, labels, intents = [], [], []
    for text, intent in rows:
        label = known.get(intent, OOD_LABEL)
        if label == OOD_LABEL and not keep_unknown:
            continue
        texts.append(text)
        labels.append(label)
        intents.append(intent)
    label_feature = Value("int64") if keep_unknown else ClassLabel(names=list(known))
    features = Features({"text": Value("string"), "label": label_feature, "intent": Value("string")})
    return Dataset.from_dict({"text": texts, "label": labels, "intent": intents}, features=features)


def _splits(train, validation, test, intents, known_ratio, seed, name) -> OpenIntentSplits:
    known_intents = choose_known_intents(intents, known_ratio, seed) if known_ratio < 1 else list(intents)
    known = {intent: index for index, intent in enumerate(known_intents)}
    return OpenIntentSplits(
        train=_to_dataset(train, known, keep_unknown=False),
        validation=_to_dataset(validation, known, keep_unknown=True),
        test=_to_dataset(test, known, keep_unknown=True),
        known_intents=known_intents,
        name=name,
    )


def _folder(data_dir: str | Path | None, name: str, needed: tuple[str, ...]) -> Path:
    root = find_data_dir(data_dir)
    folder = (root / name) if root is not None else None
    if folder is None or not all((folder / f).is_file() for f in needed):
        raise FileNotFoundError(
            f"{name} not found: expected {', '.join(needed)} in <data_dir>/{name}/ (the project's ../shared/data); "
            "pass `data_dir` or set SPACL_DATA_DIR."
        )
    return folder


def load_clinc150(
    data_dir: str | Path | None = None, known_ratio: float = 1.0, seed: int = 0, use_oos_train: bool = False
) -> OpenIntentSplits:
    """CLINC150 (Larson et al., 2019; ``clinc150/data_full.json``): 150 intents, 100 / 20 / 30 queries each for
    train / val / test, plus 100 / 100 / 1000 out-of-scope queries.

    Args:
        data_dir: the folder holding ``clinc150/`` (default: ``../shared/data`` or ``$SPACL_DATA_DIR``).
        known_ratio: fraction of the 150 intents that are known; 1.0 (default) is the standard out-of-scope task,
            below 1 the other intents join the out-of-scope queries as OOD.
        seed: which intents are known.
        use_oos_train: append the 100 out-of-scope training queries to the validation split (they are never
            trained on).

    Returns:
        :class:`OpenIntentSplits` (full task: train 15000, validation 3100, test 5500).

    Raises:
        FileNotFoundError: when the data file is missing.
        ValueError: on a ``known_ratio`` outside (0, 1].

    Examples:
        >>> splits = load_clinc150()  # doctest: +SKIP
        >>> splits.test.filter(lambda row: row["label"] == OOD_LABEL).num_rows  # doctest: +SKIP
        1000
    """
    known_ratio = _check_ratio(known_ratio)
    folder = _folder(data_dir, "clinc150", ("data_full.json",))
    data = json.loads((folder / "data_full.json").read_text(encoding="utf-8"))
    intents = list(dict.fromkeys(intent for _, intent in data["train"]))
    validation = data["val"] + data["oos_val"] + (data["oos_train"] if use_oos_train else [])
    name = "clinc150" if known_ratio == 1 else f"clinc150-{round(100 * known_ratio)}%"
    return _splits(data["train"], validation, data["test"] + data["oos_test"], intents, known_ratio, seed, name)


def load_banking77(
    data_dir: str | Path | None = None, known_ratio: float = 0.5, seed: int = 0, validation_fraction: float = 0.1
) -> OpenIntentSplits:
    """Banking77 (Casanueva et al., 2020; ``banking77/train.csv``, ``test.csv``) in the open-intent protocol.

    A seeded ``validation_fraction`` of each intent's training queries becomes the validation split (Banking77 has
    none); then a seeded ``known_ratio`` of the 77 intents is known, the rest are OOD in validation and test.

    Args:
        data_dir: the folder holding ``banking77/``.
        known_ratio: 0.25, 0.5 or 0.75 in the usual protocol.
        seed: which intents are known and which queries are held out.
        validation_fraction: share of each intent's training queries held out for validation.

    Returns:
        :class:`OpenIntentSplits` named ``banking77-<percent>%``.

    Raises:
        FileNotFoundError: when the data files are missing.
        ValueError: on a ``known_ratio`` outside (0, 1] or a ``validation_fraction`` outside (0, 1).

    Examples:
        >>> splits = load_banking77(known_ratio=0.75, seed=1)  # doctest: +SKIP
        >>> len(splits.known_intents), splits.name  # doctest: +SKIP
        (58, 'banking77-75%')
    """
    known_ratio = _check_ratio(known_ratio)
    if not 0 < validation_fraction < 1:
        raise ValueError(f"`validation_fraction` must be in (0, 1), got {validation_fraction!r}.")
    folder = _folder(data_dir, "banking77", ("train.csv", "test.csv"))

    def read(path: Path) -> list[tuple[str, str]]:
        with path.open(encoding="utf-8", newline="") as handle:
            return [(row["text"], row["category"]) for row in csv.DictReader(handle)]

    train_rows, test_rows = read(folder / "train.csv"), read(folder / "test.csv")
    intents = list(dict.fromkeys(intent for _, intent in train_rows))
    by_intent: dict[str, list[tuple[str, str]]] = {intent: [] for intent in intents}
    for row in train_rows:
        by_intent[row[1]].append(row)
    rng = random.Random(seed)
    train, validation = [], []
    for intent in intents:
        rows = by_intent[intent][:]
        rng.shuffle(rows)
        held_out = max(1, round(validation_fraction * len(rows)))
        validation += rows[:held_out]
        train += rows[held_out:]
    name = f"banking77-{round(100 * known_ratio)}%"
    return _splits(train, validation, test_rows, intents, known_ratio, seed, name)


def per_class_subset(dataset: Dataset, per_class: int | None, seed: int = 0, label_column: str = "label") -> Dataset:
    """At most ``per_class`` seeded random rows of each label (all rows when ``None``), in the original order: the
    training queries an OOD scorer is fitted on, when encoding the whole training split costs too much.

    Args:
        dataset: a split with an integer ``label_column``.
        per_class: rows kept per label; ``None`` keeps the dataset as it is.
        seed: which rows are kept.
        label_column: the label column.

    Raises:
        ValueError: on a ``per_class`` below 1.

    Examples:
        >>> rows = Dataset.from_dict({"text": list("abcdef"), "label": [0, 0, 0, 1, 1, 2]})
        >>> list(per_class_subset(rows, 2, seed=0)["label"])
        [0, 0, 1, 1, 2]
    """
    if per_class is None:
        return dataset
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"`per_class` must be an integer >= 1 or None, got {per_class!r}.")
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(dataset[label_column]):
        by_label.setdefault(label, []).append(index)
    keep = sorted(i for rows in by_label.values() for i in rng.sample(rows, min(per_class, len(rows))))
    return dataset.select(keep)


STACKOVERFLOW_FILES = ("train.tsv", "dev.tsv", "test.tsv", "known_classes_seeds0-9.json")
STACKOVERFLOW_CLASSES = 20


def draw_known_classes(labels: list[str], known_ratio: float, seed: int) -> list[str]:
    """The known classes of the open-intent literature's protocol (ADB, TEXTOIR, DA-ADB, MOGB): the code seeds
    numpy's global generator with ``seed`` and draws ``round(len(labels) * known_ratio)`` of the sorted labels
    without replacement. A fresh legacy ``RandomState(seed)`` makes the same draw without touching global state.

    Args:
        labels: every class name (sorted here).
        known_ratio: fraction in (0, 1).
        seed: the protocol's seed.

    Returns:
        The known classes in drawing order (the order the protocol numbers them in).

    Examples:
        >>> draw_known_classes([f"c{i}" for i in range(4)], 0.5, seed=0)
        ['c2', 'c3']
    """
    import numpy as np

    count = round(len(labels) * _check_ratio(known_ratio))
    return [str(c) for c in np.random.RandomState(seed).choice(sorted(labels), count, replace=False)]


def load_stackoverflow(data_dir: str | Path | None = None, known_ratio: float = 0.25, seed: int = 0) -> OpenIntentSplits:
    """StackOverflow open intent detection (Xu et al., 2015; splits of ADB / TEXTOIR): 20 tag classes of question
    titles, 12,000 / 2,000 / 6,000 rows, in the literature's protocol exactly.

    - Known classes: the shipped list of ``known_classes_seeds0-9.json`` for ``(known_ratio, seed)``; other
      ratios and seeds are drawn as the protocol's code draws them (:func:`draw_known_classes`).
    - ``train`` and ``validation`` (the ``dev.tsv`` rows) hold known classes only: no open example is seen before
      test. ``test`` holds all 6,000 rows, every unknown class relabelled :data:`OOD_LABEL`.
    - Files are read with ``quoting=csv.QUOTE_NONE`` (titles keep their literal quotes), as the protocol's code reads
      them; a row without exactly a text and a label is an error naming the file and line.

    Args:
        data_dir: the folder holding ``stackoverflow/`` (default: ``../shared/data`` or ``$SPACL_DATA_DIR``); an
            explicit folder never falls back to the default.
        known_ratio: 0.25 or 0.75 in the published tables (5 or 15 known classes); any fraction in (0, 1) works.
        seed: 0-9 in the published tables (means over the ten).

    Returns:
        :class:`OpenIntentSplits` named ``stackoverflow-<percent>%``; labels 0 .. K-1 follow the drawing order.

    Raises:
        FileNotFoundError: when a file is missing.
        ValueError: on a ``known_ratio`` outside (0, 1), a bad row, or a shipped list that disagrees with the draw.

    Examples:
        >>> splits = load_stackoverflow(known_ratio=0.25, seed=0)  # doctest: +SKIP
        >>> splits  # doctest: +SKIP
        OpenIntentSplits(stackoverflow-25%: 5 known intents, train 3000, validation 500 (0 OOD), test 6000 (4500 OOD))
    """
    known_ratio = _check_ratio(known_ratio)
    if known_ratio == 1:
        raise ValueError("`known_ratio` must be below 1 for open intent detection (0.25 or 0.75 in the literature).")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}.")
    folder = _folder(data_dir, "stackoverflow", STACKOVERFLOW_FILES)
    splits = {name: _read_labelled_tsv(folder / f"{name}.tsv") for name in ("train", "dev", "test")}
    labels = sorted({label for _, label in splits["train"]})
    if len(labels) != STACKOVERFLOW_CLASSES:
        raise ValueError(f"{folder / 'train.tsv'} holds {len(labels)} classes, expected {STACKOVERFLOW_CLASSES}.")
    drawn = draw_known_classes(labels, known_ratio, seed)
    shipped = json.loads((folder / "known_classes_seeds0-9.json").read_text(encoding="utf-8"))["lists"]
    listed = shipped.get(f"{known_ratio:g}/seed{seed}")
    if listed is not None and listed != drawn:
        raise ValueError(
            f"{folder / 'known_classes_seeds0-9.json'} lists {listed} for ratio {known_ratio:g} seed {seed}, but the "
            f"protocol's draw gives {drawn}: the file or numpy's legacy generator changed."
        )
    known = {label: index for index, label in enumerate(drawn)}
    return OpenIntentSplits(
        train=_to_dataset(splits["train"], known, keep_unknown=False),
        validation=_to_dataset(splits["dev"], known, keep_unknown=False),
        test=_to_dataset(splits["test"], known, keep_unknown=True),
        known_intents=drawn,
        name=f"stackoverflow-{round(100 * known_ratio)}%",
    )


def _read_labelled_tsv(path: Path) -> list[tuple[str, str]]:
    """(text, label) rows of a ``text<TAB>label`` file (:func:`read_tsv`: no quote handling, file and line named on a
    short row); an empty text or label is an error too."""
    rows = read_tsv(path, ("text", "label"))
    for line, row in enumerate(rows, start=2):  # QUOTE_NONE: one record per line after the header
        if not row["text"] or not row["label"]:
            raise ValueError(f"{path}, line {line}: expected a non-empty text and label, got {row!r}.")
    return [(row["text"], row["label"]) for row in rows]
