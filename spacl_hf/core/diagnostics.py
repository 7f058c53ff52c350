"""Embedding-health measures from the paper's theory and the literature, torch only.

- :func:`negative_mean_parallelism`: SPACL's collapse condition. With one positive ``p``, the optimum collapses onto
  the positive exactly when the softmax-weighted mean of the negatives (weights ``softmax_j <n_j, p> / t``) is
  parallel to ``p``; the cosine between the two says how close an anchor is to that.
- :func:`alignment` and :func:`uniformity` (Wang & Isola, 2020).
- :func:`effective_rank` (Roy & Vetterli, 2007; as RankMe, Garrido et al., 2023): ``exp`` of the entropy of the
  normalised singular values of the (uncentred) embeddings; far below the dimension means dimensional collapse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_positive_float, check_tensor


@torch.no_grad()
def negative_mean_parallelism(
    positives: Tensor, negatives: Tensor, negative_mask: Tensor | None = None, temperature: float = 0.05
) -> Tensor:
    """Cosine between each positive and the softmax-weighted mean of its (kept) negatives.

    Args:
        positives: one positive per anchor (normalised here).
        negatives: the negatives of each anchor (normalised here).
        negative_mask: ``True`` for the negatives to use (e.g. the screened ones).
        temperature: weights are ``softmax_j(<n_j, p> / temperature)``.

    Shape:
        - positives: ``[B, D]``; negatives: ``[B, N, D]``; negative_mask: ``[B, N]``
        - output: ``[B]`` in ``[-1, 1]``; ``nan`` for an anchor without negatives. ``1`` is the collapse condition.

    Raises:
        ValueError: on wrong ranks or shapes.
    """
    check_tensor("positives", positives, ndim=2, floating=True, finite=True)
    check_tensor("negatives", negatives, ndim=3, floating=True, finite=True)
    temperature = check_positive_float("temperature", temperature)
    if negatives.shape[0] != positives.shape[0] or negatives.shape[2] != positives.shape[1]:
        raise ValueError(
            f"`negatives` must be [B={positives.shape[0]}, N, D={positives.shape[1]}], got {tuple(negatives.shape)}."
        )
    p = F.normalize(positives.double(), dim=-1)
    n = F.normalize(negatives.double(), dim=-1)
    logits = torch.einsum("bd,bnd->bn", p, n) / temperature
    if negative_mask is not None:
        logits = logits.masked_fill(~negative_mask, float("-inf"))
    weights = torch.softmax(logits, dim=1)  # nan for a row with nothing kept
    mean = torch.einsum("bn,bnd->bd", weights, n)
    return F.cosine_similarity(mean, p, dim=-1).float()


@torch.no_grad()
def alignment(x: Tensor, y: Tensor, alpha: float = 2.0) -> Tensor:
    """Mean ``||x_i - y_i||^alpha`` over positive pairs of unit embeddings (lower is better aligned).

    Shape: ``x``, ``y``: ``[B, D]``; output: scalar.
    """
    check_tensor("x", x, ndim=2, floating=True, finite=True)
    check_tensor("y", y, ndim=2, floating=True, finite=True)
    if x.shape != y.shape:
        raise ValueError(f"`x` and `y` must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
    x, y = F.normalize(x.float(), dim=-1), F.normalize(y.float(), dim=-1)
    return (x - y).norm(dim=1).pow(alpha).mean()


@torch.no_grad()
def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    """``log mean exp(-t ||x_i - x_j||^2)`` over distinct pairs of unit embeddings (lower is more uniform).

    Shape: ``x``: ``[B, D]`` with ``B >= 2``; output: scalar.
    """
    check_tensor("x", x, ndim=2, floating=True, finite=True)
    if x.shape[0] < 2:
        raise ValueError(f"`x` needs at least 2 rows for pairwise distances, got {x.shape[0]}.")
    x = F.normalize(x.float(), dim=-1)
    squared = torch.pdist(x).pow(2)
    return torch.logsumexp(-t * squared, dim=0) - torch.log(torch.tensor(float(squared.numel())))


@torch.no_grad()
def effective_rank(x: Tensor) -> Tensor:
    """``exp(entropy(s / sum(s)))`` of the singular values ``s`` of the embeddings (RankMe, Garrido et al., 2023).

    Between 1 (every embedding on one line) and ``min(B, D)`` (spread over every direction). Not centred: a batch
    collapsed onto one point plus small isotropic noise must read as rank 1, and centring would remove the point.

    Shape: ``x``: ``[B, D]``; output: scalar.
    """
    check_tensor("x", x, ndim=2, floating=True, finite=True)
    singular = torch.linalg.svdvals(x.double())
    total = singular.sum()
    if total <= 0:
        return torch.tensor(1.0)
    p = singular / total
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).float()
