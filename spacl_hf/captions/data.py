"""Caption sets with several captions per image: Flickr30k (Multi30k's English captions and image split) and COCO
val2017 with Crisscrossed Captions (CxC) similarity ratings; plus the overlap filter that keeps evaluation text
out of training.

Every loader returns one row per caption (``image``, ``caption``); :func:`~spacl_hf.captions.group_views` turns them
into ``view_0 .. view_{V-1}`` rows. Flickr30k is for research use only: it is read from the local data folder and
never shipped.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections.abc import Iterable
from pathlib import Path

from datasets import Dataset

from spacl_hf.common.data_files import find_data_dir

FLICKR30K_SPLITS = {"train": "train", "validation": "val", "test": "test_2016"}
CXC_SPLITS = {"validation": "sts_val.csv", "test": "sts_test.csv"}


def _folder(data_dir: str | Path | None, name: str) -> Path:
    root = find_data_dir(data_dir)
    folder = root / name if root is not None else None
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"{name}/ not found in the data folder ({root}); pass `data_dir` or set SPACL_DATA_DIR.")
    return folder


def _need(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found.")
    return path


def load_flickr30k(split: str = "train", data_dir: str | Path | None = None) -> Dataset:
    """Flickr30k captions (Young et al., 2014) in Multi30k's split (Elliott et al., 2016): train 29,000 / validation
    1,014 / test 1,000 images x 5 captions.

    Line i of ``raw/<split>.<k>.en.gz`` (k = 1..5) describes the image on line i of
    ``image_splits/<split>_images.txt``; caption k is ordered by length (k = 1 longest), so shuffle views
    (:func:`group_views` does).

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"`` (Multi30k's ``test_2016``).
        data_dir: the folder holding ``flickr30k/`` (default ``../shared/data`` or ``$SPACL_DATA_DIR``).

    Returns:
        ``Dataset`` with ``image`` (file name), ``caption`` and ``caption_index`` (k - 1), image-major.

    Raises:
        ValueError: on an unknown split or files whose line counts disagree (the message names the file).
        FileNotFoundError: when a file is missing.

    Examples:
        >>> len(load_flickr30k("validation"))  # doctest: +SKIP
        5070
    """
    if split not in FLICKR30K_SPLITS:
        raise ValueError(f"`split` must be one of {list(FLICKR30K_SPLITS)}, got {split!r}.")
    folder, name = _folder(data_dir, "flickr30k"), FLICKR30K_SPLITS[split]
    images = _need(folder / "image_splits" / f"{name}_images.txt").read_text(encoding="utf-8").splitlines()
    captions = []
    for k in range(1, 6):
        path = _need(folder / "raw" / f"{name}.{k}.en.gz")
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        if len(lines) != len(images):
            raise ValueError(f"{path} has {len(lines)} captions, {name}_images.txt {len(images)} images.")
        for line, text in enumerate(lines, 1):
            if not text.strip():
                raise ValueError(f"{path}:{line}: empty caption.")
        captions.append(lines)
    rows = {"image": [], "caption": [], "caption_index": []}
    for i, image in enumerate(images):
        for k in range(5):
            rows["image"].append(image)
            rows["caption"].append(captions[k][i].strip())
            rows["caption_index"].append(k)
    return Dataset.from_dict(rows)


def load_coco_captions(data_dir: str | Path | None = None) -> Dataset:
    """COCO val2017 captions (Lin et al., 2014; Chen et al., 2015): 5,000 images, 25,014 captions (4,987 images
    with 5, 12 with 6, 1 with 7), CC BY 4.0. Out of domain for Flickr30k.

    Args:
        data_dir: the folder holding ``coco/`` (default ``../shared/data`` or ``$SPACL_DATA_DIR``).

    Returns:
        ``Dataset`` with ``image`` (COCO image id), ``caption_id`` (the annotation id CxC refers to), ``caption``;
        in the file's order.

    Raises:
        FileNotFoundError: when ``coco/captions_val2017.json`` is missing.
        ValueError: when an annotation lacks a field or has an empty caption (naming its position).

    Examples:
        >>> coco = load_coco_captions()  # doctest: +SKIP
        >>> len(coco), len(set(coco["image"]))  # doctest: +SKIP
        (25014, 5000)
    """
    path = _need(_folder(data_dir, "coco") / "captions_val2017.json")
    annotations = json.loads(path.read_text(encoding="utf-8"))["annotations"]
    rows = {"image": [], "caption_id": [], "caption": []}
    for position, entry in enumerate(annotations):
        if not {"image_id", "id", "caption"} <= set(entry) or not str(entry["caption"]).strip():
            raise ValueError(f"{path}: annotation {position} lacks image_id / id / a non-empty caption: {entry!r}.")
        rows["image"].append(int(entry["image_id"]))
        rows["caption_id"].append(int(entry["id"]))
        rows["caption"].append(str(entry["caption"]).strip())
    return Dataset.from_dict(rows)


def load_cxc(split: str = "validation", data_dir: str | Path | None = None) -> Dataset:
    """Crisscrossed Captions (Parekh et al., 2021) caption-caption similarity on COCO, as an STS task: the rows
    whose two captions are both in COCO val2017 (validation 3,309, test 3,222 pairs).

    Rows of the CSV whose ids are not in val2017 (the rest of COCO 2014) cannot be turned into text here; they are
    counted, not silently lost: the returned dataset's ``info.description`` says how many were left out.

    Args:
        split: ``"validation"`` (``sts_val.csv``) or ``"test"`` (``sts_test.csv``).

    Returns:
        ``Dataset`` with ``sentence1``, ``sentence2``, ``score`` (``agg_score`` 0-5), ``sampling_method``.

    Raises:
        ValueError: on an unknown split or a malformed row (naming the file and line).

    Examples:
        >>> len(load_cxc("test"))  # doctest: +SKIP
        3222
    """
    if split not in CXC_SPLITS:
        raise ValueError(f"`split` must be one of {list(CXC_SPLITS)}, got {split!r}.")
    path = _need(_folder(data_dir, "coco") / "cxc" / CXC_SPLITS[split])
    coco = load_coco_captions(data_dir)
    captions = dict(zip(coco["caption_id"], coco["caption"]))
    rows = {"sentence1": [], "sentence2": [], "score": [], "sampling_method": []}
    outside = 0
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for line, row in enumerate(reader, start=2):
            try:
                first, second = (int(row[c].rsplit(":", 1)[1]) for c in ("caption1", "caption2"))
                score = float(row["agg_score"])
            except (KeyError, IndexError, ValueError, AttributeError) as error:
                raise ValueError(f"{path}:{line}: expected caption ids 'COCO_val2014:sentid:<id>' and a numeric "
                                 f"agg_score, got {row!r} ({error}).") from error  # fmt: skip
            if first not in captions or second not in captions:
                outside += 1
                continue
            rows["sentence1"].append(captions[first])
            rows["sentence2"].append(captions[second])
            rows["score"].append(score)
            rows["sampling_method"].append(row["sampling_method"])
    dataset = Dataset.from_dict(rows)
    dataset.info.description = f"CxC {split}: {len(dataset)} pairs in COCO val2017; {outside} pairs outside it left out."
    return dataset


def normalize_text(text: str) -> str:
    """Lower case, letters and digits only, single spaces: the key of the overlap filter.

    Args:
        text: any string.

    Examples:
        >>> normalize_text("A Dog, running!")
        'a dog running'
    """
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def drop_overlapping(dataset: Dataset, text_column: str, evaluation_texts: Iterable[str]) -> tuple[Dataset, int]:
    """``dataset`` without the rows whose text (normalised: :func:`normalize_text`) occurs in ``evaluation_texts``,
    and how many rows were dropped; train on the first so no evaluation sentence was seen in training.

    Args:
        dataset: the training rows.
        text_column: the column compared.
        evaluation_texts: every sentence of the evaluation sets.

    Raises:
        ValueError: when ``text_column`` is not a column of ``dataset``.

    Examples:
        >>> rows = Dataset.from_dict({"caption": ["A dog runs.", "A cat sleeps."]})
        >>> kept, dropped = drop_overlapping(rows, "caption", ["a dog  runs"])
        >>> list(kept["caption"]), dropped
        (['A cat sleeps.'], 1)
    """
    if text_column not in dataset.column_names:
        raise ValueError(f"`text_column` {text_column!r} is not a column of the dataset; it has {dataset.column_names}.")
    banned = {normalize_text(t) for t in evaluation_texts}
    keep = [i for i, text in enumerate(dataset[text_column]) if normalize_text(text) not in banned]
    return dataset.select(keep), len(dataset) - len(keep)
