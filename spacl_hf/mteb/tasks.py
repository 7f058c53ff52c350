"""MTEB tasks read from local files, so evaluation needs no Hub access."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata

from spacl_hf.common.data_files import read_sts


def file_revision(path: Path) -> str:
    """A short content hash: results of two versions of a file never share a cache entry."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def local_sts_task(
    path: str | Path,
    name: str | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
    language: str = "eng-Latn",
) -> AbsTaskSTS:
    """An MTEB STS task over a local TSV with columns ``sentence1``, ``sentence2``, ``score`` (any score range).

    Args:
        path: the TSV file (header row, TAB separated, no quoting).
        name: task name in results; default ``LocalSTS-<file stem>``.
        min_score: the low end of the score range; default the file's own minimum.
        max_score: the high end of the score range; default the file's own maximum.
        language: the texts' language code for MTEB.

    Returns:
        a task instance whose single split is ``test``; its main score is ``cosine_spearman``.

    Raises:
        FileNotFoundError / ValueError: for a missing file, missing columns, a short row or a bad score (file and
            line named), fewer than 2 pairs, or constant scores.

    Examples:
        >>> task = local_sts_task("../shared/data/stsb/stsb-dev.tsv", name="STSB-dev")  # doctest: +SKIP
        >>> mteb.evaluate(mteb_model(model), [task], cache=None)  # doctest: +SKIP
    """
    path = Path(path)
    sentence1, sentence2, scores = read_sts(path)
    if len(scores) < 2:
        raise ValueError(f"{path} holds {len(scores)} pair(s): a Spearman correlation needs at least 2.")
    low = min(scores) if min_score is None else min_score
    high = max(scores) if max_score is None else max_score
    if len(set(scores)) < 2 or not low < high:
        raise ValueError(
            f"{path}: every score is {scores[0]:g} (or min_score >= max_score): a correlation with constant scores "
            "is undefined."
        )
    task_name = name or f"LocalSTS-{path.stem}"
    metadata = TaskMetadata(
        name=task_name,
        description=f"STS pairs read from the local file {path.name}.",
        reference=None,
        dataset={"path": str(path), "revision": file_revision(path)},
        type="STS",
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=[language],
        main_score="cosine_spearman",
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation=None,
    )

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        self.dataset = DatasetDict(
            {"test": Dataset.from_dict({"sentence1": sentence1, "sentence2": sentence2, "score": scores})}
        )
        self.data_loaded = True

    task_class = type(
        task_name.replace("-", "_"),
        (AbsTaskSTS,),
        {"metadata": metadata, "min_score": low, "max_score": high, "load_data": load_data},
    )
    return task_class()
