"""MTEB tasks read from local files, so evaluation needs no Hub access."""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from mteb.abstasks.retrieval import AbsTaskRetrieval
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
    return sts_task_from_pairs(sentence1, sentence2, scores, name or f"LocalSTS-{path.stem}", min_score, max_score,
                               language, source=path, revision=file_revision(path))  # fmt: skip


def sts_task_from_pairs(
    sentence1: Sequence[str],
    sentence2: Sequence[str],
    scores: Sequence[float],
    name: str,
    min_score: float | None = None,
    max_score: float | None = None,
    language: str = "eng-Latn",
    source: str | Path | None = None,
    revision: str | None = None,
) -> AbsTaskSTS:
    """An MTEB STS task over pairs held in memory (e.g. Crisscrossed Captions from ``spacl_hf.captions.load_cxc``).

    Args:
        sentence1: the first sentence of each pair.
        sentence2: the second sentence of each pair.
        scores: the human similarity of each pair (any range).
        name: task name in results.
        min_score: the low end of the score range; default the pairs' own minimum.
        max_score: the high end of the score range; default the pairs' own maximum.
        language: the texts' language code for MTEB.
        source: where the pairs were read (named in errors and the task's metadata).
        revision: the data's version for MTEB's cache; default a hash of the pairs (:func:`content_revision`).

    Returns:
        a task instance whose single split is ``test``; its main score is ``cosine_spearman``.

    Raises:
        ValueError: for lists of different lengths, fewer than 2 pairs or constant scores.

    Examples:
        >>> cxc = load_cxc("test")  # doctest: +SKIP
        >>> task = sts_task_from_pairs(cxc["sentence1"], cxc["sentence2"], cxc["score"], "CxC-test")  # doctest: +SKIP
    """
    where = str(source) if source is not None else f"pairs of {name!r}"
    sentence1, sentence2, scores = list(sentence1), list(sentence2), [float(s) for s in scores]
    if not len(sentence1) == len(sentence2) == len(scores):
        raise ValueError(f"{where}: `sentence1` ({len(sentence1)}), `sentence2` ({len(sentence2)}) and `scores` "
                         f"({len(scores)}) must have one entry per pair.")  # fmt: skip
    if len(scores) < 2:
        raise ValueError(f"{where} holds {len(scores)} pair(s): a Spearman correlation needs at least 2.")
    low = min(scores) if min_score is None else min_score
    high = max(scores) if max_score is None else max_score
    if len(set(scores)) < 2 or not low < high:
        raise ValueError(
            f"{where}: every score is {scores[0]:g} (or min_score >= max_score): a correlation with constant scores "
            "is undefined."
        )
    revision = revision or content_revision([*sentence1, *sentence2, *map(repr, scores)])
    metadata = _metadata(name, f"STS pairs from {Path(source).name if source else 'memory'}.", source, revision,
                         "STS", "cosine_spearman", language)  # fmt: skip

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        self.dataset = DatasetDict(
            {"test": Dataset.from_dict({"sentence1": sentence1, "sentence2": sentence2, "score": scores})}
        )
        self.data_loaded = True

    task_class = type(
        name.replace("-", "_"),
        (AbsTaskSTS,),
        {"metadata": metadata, "min_score": low, "max_score": high, "load_data": load_data},
    )
    return task_class()


def sibling_retrieval_task(
    texts: Sequence[str], groups: Sequence[Hashable], name: str, language: str = "eng-Latn"
) -> AbsTaskRetrieval:
    """An MTEB retrieval task for caption-to-sibling retrieval: every text is a query and a document; the relevant
    documents of a query are the other texts of its group (the other captions of its image); a query never
    retrieves itself (MTEB's ``ignore_identical_ids``).

    MTEB scores the top 1,000 documents per query: its ``map_at_1000`` / ``mrr_at_1000`` equal
    ``spacl_hf.captions.sibling_retrieval``'s ``map`` / ``mrr`` when every sibling ranks within the first 1,000 (always
    on splits of at most 1,001 texts); its ``hit_rate_at_k`` is that function's ``recall_at_k``.

    Args:
        texts: one text per row.
        groups: the group (image) of each row; every group needs at least two rows.
        name: task name in results.
        language: the texts' language code for MTEB.

    Returns:
        a task instance whose single split is ``test``; its main score is ``map_at_1000``.

    Raises:
        ValueError: for lists of different lengths or a group of one row.

    Examples:
        >>> flickr = load_flickr30k("test")  # doctest: +SKIP
        >>> task = sibling_retrieval_task(flickr["caption"], flickr["image"], "Flickr30k-siblings")  # doctest: +SKIP
    """
    texts, groups = list(texts), list(groups)
    if len(texts) != len(groups):
        raise ValueError(f"`texts` ({len(texts)}) and `groups` ({len(groups)}) must have one entry per row.")
    members: dict[Hashable, list[str]] = {}
    ids = [str(i) for i in range(len(texts))]
    for row_id, group in zip(ids, groups):
        members.setdefault(group, []).append(row_id)
    lonely = [g for g, rows in members.items() if len(rows) < 2][:3]
    if lonely:
        raise ValueError(f"groups {lonely} hold one row: a query needs at least one sibling.")
    relevant = {row_id: {other: 1 for other in members[group] if other != row_id} for row_id, group in zip(ids, groups)}
    metadata = _metadata(name, "Caption-to-sibling retrieval over texts held in memory.", None,
                         content_revision([*texts, *map(repr, groups)]), "Retrieval", "map_at_1000", language)  # fmt: skip

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        rows = Dataset.from_dict({"id": ids, "text": texts})
        self.dataset = {"default": {"test": {"corpus": rows, "queries": rows, "relevant_docs": relevant,
                                             "top_ranked": None}}}  # fmt: skip
        self.data_loaded = True

    task_class = type(name.replace("-", "_"), (AbsTaskRetrieval,),
                      {"metadata": metadata, "ignore_identical_ids": True, "load_data": load_data})  # fmt: skip
    return task_class()


def content_revision(parts: Sequence[str]) -> str:
    """A short hash of in-memory task content (the role :func:`file_revision` plays for files)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _metadata(name: str, description: str, source: str | Path | None, revision: str, task_type: str,
              main_score: str, language: str) -> TaskMetadata:  # fmt: skip
    return TaskMetadata(
        name=name,
        description=description,
        reference=None,
        dataset={"path": str(source) if source is not None else f"memory/{name}", "revision": revision},
        type=task_type,
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=[language],
        main_score=main_score,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation=None,
    )
