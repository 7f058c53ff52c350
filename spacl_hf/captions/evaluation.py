"""Evaluators for multi-view text: caption-to-sibling retrieval (each caption queries every other caption of its
split; relevant = the other captions of its image) and STS-style similarity (Spearman of cosine vs human score)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

RECALL_AT = (1, 5, 10)


def sibling_retrieval(embeddings: Tensor, groups: Sequence[Any], chunk_size: int = 1024) -> dict[str, float]:
    """Caption-to-sibling retrieval: every row queries all the other rows by cosine similarity; the relevant rows
    are the other rows of its group (the other captions of its image). Queries without a sibling are an error.

    Metrics (means over queries): ``map`` (mean average precision), ``mrr`` (reciprocal rank of the first sibling),
    ``recall_at_k`` for k in 1, 5, 10 (share of queries with a sibling among the k nearest: the hit rate that
    image-text retrieval reports). Ties in similarity are broken by row order.

    Args:
        embeddings: ``[N, D]``.
        groups: ``N`` group ids (hashable).
        chunk_size: queries scored at once (memory ``chunk_size x N``).

    Shape:
        - embeddings: ``[N, D]``; groups: ``N``

    Raises:
        ValueError: on a length mismatch, non-finite embeddings, or a group of one row.

    Examples:
        >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> sibling_retrieval(x, ["a", "a", "b", "b"])["map"]
        1.0
    """
    if embeddings.ndim != 2 or embeddings.shape[0] != len(groups):
        raise ValueError(f"`embeddings` must be [N, D] with N = len(groups) = {len(groups)}, got {tuple(embeddings.shape)}.")
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("`embeddings` holds NaN or inf.")
    index = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    group_ids = torch.tensor([index[g] for g in groups])
    sizes = torch.bincount(group_ids)
    if bool((sizes < 2).any()):
        lonely = [g for g, i in index.items() if sizes[i] < 2][:3]
        raise ValueError(f"groups {lonely} hold one row: a query needs at least one sibling.")
    x = F.normalize(embeddings.double(), dim=1)
    n = x.shape[0]
    totals = {"map": 0.0, "mrr": 0.0, **{f"recall_at_{k}": 0.0 for k in RECALL_AT}}
    for start in range(0, n, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n))
        similarity = x[rows] @ x.T
        similarity[torch.arange(len(rows)), rows] = -torch.inf  # a query never retrieves itself
        order = torch.sort(similarity, dim=1, descending=True, stable=True).indices[:, : n - 1]
        relevant = (group_ids[order] == group_ids[rows, None]).double()  # [q, N-1] in rank order
        ranks = torch.arange(1, n, dtype=torch.float64)
        hits = relevant.cumsum(dim=1)
        totals["map"] += float(((hits / ranks) * relevant).sum(1).div(relevant.sum(1)).sum())
        totals["mrr"] += float((1.0 / (relevant.argmax(dim=1) + 1).double()).sum())
        for k in RECALL_AT:
            totals[f"recall_at_{k}"] += float((relevant[:, :k].sum(1) > 0).double().sum())
    return {name: total / n for name, total in totals.items()}


def similarity_spearman(first: Tensor, second: Tensor, scores: Sequence[float]) -> float:
    """Spearman correlation between the cosine of paired embeddings and human similarity ``scores`` (STS-B, CxC).

    Args:
        first: embeddings of the first sentence of each pair.
        second: embeddings of the second sentence.
        scores: the human similarity of each pair.

    Shape:
        - first, second: ``[N, D]``; scores: ``N``

    Raises:
        ValueError: on mismatched lengths or fewer than two pairs.

    Examples:
        >>> a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
        >>> b = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        >>> similarity_spearman(a, b, [5.0, 2.5, 0.0])
        1.0
    """
    from scipy.stats import spearmanr

    if first.shape != second.shape or first.shape[0] != len(scores) or len(scores) < 2:
        raise ValueError(f"`first` {tuple(first.shape)}, `second` {tuple(second.shape)} and `scores` ({len(scores)}) "
                         "must describe the same N >= 2 pairs.")  # fmt: skip
    cosine = F.cosine_similarity(first.double(), second.double(), dim=1)
    return float(spearmanr(cosine.numpy(), list(scores)).statistic)


def evaluate_retrieval(encode: Callable[[list[str]], Tensor], dataset: Any, group_column: str = "image",
                       text_column: str = "caption") -> dict[str, float]:  # fmt: skip
    """:func:`sibling_retrieval` on a one-row-per-caption dataset embedded by ``encode``.

    Args:
        encode: texts -> embeddings, e.g. ``spacl_hf.ood.encoder_of(model)``.
        dataset: one row per caption with ``group_column`` and ``text_column``.
        group_column: the image (group) of each caption.
        text_column: the caption.

    Shape:
        - ``encode(texts)``: ``[len(texts), D]``

    Examples:
        >>> evaluate_retrieval(encode, load_flickr30k("validation"))["map"]  # doctest: +SKIP
        0.53...
    """
    return sibling_retrieval(encode(list(dataset[text_column])), list(dataset[group_column]))


def evaluate_similarity(encode: Callable[[list[str]], Tensor], dataset: Any) -> float:
    """:func:`similarity_spearman` on a ``sentence1`` / ``sentence2`` / ``score`` dataset; each distinct sentence is
    embedded once.

    Args:
        encode: texts -> embeddings.
        dataset: pairs with ``sentence1``, ``sentence2`` and ``score``.

    Shape:
        - ``encode(texts)``: ``[len(texts), D]``

    Examples:
        >>> evaluate_similarity(encode, load_cxc("test"))  # doctest: +SKIP
        0.7...
    """
    texts = list(dict.fromkeys(list(dataset["sentence1"]) + list(dataset["sentence2"])))
    embedded = encode(texts)
    row = {text: i for i, text in enumerate(texts)}
    first = embedded[[row[t] for t in dataset["sentence1"]]]
    second = embedded[[row[t] for t in dataset["sentence2"]]]
    return similarity_spearman(first, second, list(dataset["score"]))
