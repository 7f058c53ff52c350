"""The paper's no-collapse condition as a linear program: is a positive multiple of the positive inside the convex
hull of the (kept) negatives? If not, the InfoNCE optimum cannot collapse onto the positive."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linprog
from torch import Tensor

from spacl_hf.core.checks import check_tensor
from spacl_hf.core.diagnostics import negative_mean_parallelism


def positive_multiple_in_hull(positive: Tensor, negatives: Tensor, tolerance: float = 1e-7) -> bool:
    """Whether ``c * positive`` lies in the convex hull of ``negatives`` for some ``c > 0``.

    Solves ``max c  s.t.  negatives^T lambda = c * positive,  sum(lambda) = 1,  lambda >= 0,  c >= 0`` with HiGHS.

    Args:
        positive: ``[D]``.
        negatives: ``[N, D]``, ``N >= 1``.
        tolerance: ``c`` above this counts as a positive multiple.

    Raises:
        ValueError: on wrong shapes or no negatives.

    Shape:
        - positive: ``[D]``; negatives: ``[N, D]``

    Examples:
        >>> negatives = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # the hull crosses the x axis at (1, 0)
        >>> positive_multiple_in_hull(torch.tensor([1.0, 0.0]), negatives)
        True
        >>> positive_multiple_in_hull(torch.tensor([-1.0, 0.0]), negatives)
        False
    """
    check_tensor("positive", positive, ndim=1, floating=True, finite=True)
    check_tensor("negatives", negatives, ndim=2, floating=True, finite=True)
    if negatives.shape[0] == 0 or negatives.shape[1] != positive.shape[0]:
        raise ValueError(f"`negatives` must be [N >= 1, {positive.shape[0]}], got {tuple(negatives.shape)}.")
    p = positive.detach().double().cpu().numpy()
    n = negatives.detach().double().cpu().numpy()
    count = n.shape[0]
    # variables: lambda_1..lambda_N, c; minimise -c
    objective = np.zeros(count + 1)
    objective[-1] = -1.0
    equalities = np.zeros((p.shape[0] + 1, count + 1))
    equalities[:-1, :count] = n.T
    equalities[:-1, -1] = -p
    equalities[-1, :count] = 1.0
    right = np.zeros(p.shape[0] + 1)
    right[-1] = 1.0
    result = linprog(objective, A_eq=equalities, b_eq=right, bounds=[(0, None)] * (count + 1), method="highs")
    return bool(result.status == 0 and -result.fun > tolerance)


def collapse_report(
    positives: Tensor, negatives: Tensor, negative_mask: Tensor | None = None, temperature: float = 0.05
) -> dict[str, float]:
    """Per batch: how close anchors are to SPACL's collapse condition.

    Args:
        positives: ``[B, D]``, one positive per anchor.
        negatives: ``[B, N, D]``, candidate negatives per anchor.
        negative_mask: ``[B, N]``, the kept (e.g. screened) negatives.
        temperature: softmax temperature of the weighted negative mean.

    Returns:
        ``mean_parallelism`` (cosine of the weighted negative mean with the positive, averaged),
        ``fraction_in_hull`` (anchors for which a positive multiple of the positive is in the hull of their
        negatives: the collapse is possible) and ``fraction_at_risk`` (in the hull and parallelism above 0.9).

    Raises:
        ValueError: on wrong shapes (from the hull check and the parallelism).

    Shape:
        - positives: ``[B, D]``; negatives: ``[B, N, D]``; negative_mask: ``[B, N]``

    Examples:
        >>> positives = torch.tensor([[1.0, 0.0]])
        >>> around = torch.tensor([[[1.0, 0.1], [1.0, -0.1]]])  # negatives on both sides of the positive
        >>> collapse_report(positives, around)["fraction_at_risk"]
        1.0
    """
    parallel = negative_mean_parallelism(positives, negatives, negative_mask, temperature)
    in_hull = []
    for i in range(positives.shape[0]):  # one small LP per anchor; diagnostics run every N steps, not every step
        kept = negatives[i] if negative_mask is None else negatives[i][negative_mask[i]]
        in_hull.append(kept.shape[0] > 0 and positive_multiple_in_hull(positives[i], kept))
    hull = torch.tensor(in_hull, dtype=torch.bool)
    valid = ~torch.isnan(parallel)
    return {
        "mean_parallelism": float(parallel[valid].mean()) if bool(valid.any()) else float("nan"),
        "fraction_in_hull": float(hull.float().mean()),
        "fraction_at_risk": float((hull & valid & (parallel.nan_to_num(0.0) > 0.9)).float().mean()),
    }
