"""OOD detection: AUROC and FPR at 95% TPR from out-of-distribution scores (an `evaluate` metric module).

Load it by path (works offline): ``evaluate.load(spacl_hf.ood.metric_path("ood_detection"))``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Threshold-free quality of an out-of-distribution (OOD) score, where a higher score means "more likely OOD".

- ``auroc``: area under the ROC curve with OOD as the positive class (the probability that a random OOD sample
  scores higher than a random in-distribution one; ties count half).
- ``fpr_at_95_tpr``: with in-distribution as the positive class and the threshold that accepts (score at or below
  it) 95% of the in-distribution samples, the fraction of OOD samples that are accepted too. Lower is better.
"""

_KWARGS_DESCRIPTION = """
Args:
    scores (`list` of `float`): OOD score per sample, higher = more out-of-distribution.
    references (`list` of `int`): 1 for an OOD sample, 0 for an in-distribution one.
    tpr (`float`, default 0.95): the in-distribution acceptance rate for the FPR.
Returns:
    auroc (`float`), fpr_at_95_tpr (`float`; the key follows `tpr`, e.g. `fpr_at_90_tpr`).
Examples:
    >>> from spacl_hf.ood import load_metric  # evaluate.load(path of this file)
    >>> metric = load_metric("ood_detection")
    >>> metric.compute(scores=[0.1, 0.2, 0.9, 0.8], references=[0, 0, 1, 1])
    {'auroc': 1.0, 'fpr_at_95_tpr': 0.0}
"""

_CITATION = """
@inproceedings{hendrycks2017baseline,
  title={A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural Networks},
  author={Hendrycks, Dan and Gimpel, Kevin},
  booktitle={ICLR},
  year={2017}
}
"""


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)]
    mean_rank = (first + last + 1) / 2.0  # mean of the 1-based positions first+1 .. last
    ranks = np.empty(len(values))
    ranks[order] = mean_rank[group]
    return ranks


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class OodDetection(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"scores": datasets.Value("float64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, scores, references, tpr=0.95):
        scores, references = np.asarray(scores, dtype=np.float64), np.asarray(references)
        if not set(np.unique(references).tolist()) <= {0, 1}:
            raise ValueError("`references` must be 1 (OOD) or 0 (in-distribution).")
        if not 0 < tpr <= 1:
            raise ValueError(f"`tpr` must be in (0, 1], got {tpr!r}.")
        if not np.isfinite(scores).all():
            raise ValueError("`scores` must be finite.")
        ood, inside = scores[references == 1], scores[references == 0]
        if len(ood) == 0 or len(inside) == 0:
            raise ValueError("`references` must hold both OOD (1) and in-distribution (0) samples.")
        ranks = average_ranks(scores)
        auroc = (ranks[references == 1].sum() - len(ood) * (len(ood) + 1) / 2) / (len(ood) * len(inside))
        # the smallest threshold that accepts at least `tpr` of the in-distribution samples
        threshold = np.sort(inside)[int(np.ceil(tpr * len(inside))) - 1]
        fpr = float((ood <= threshold).mean())
        return {"auroc": float(auroc), f"fpr_at_{round(100 * tpr)}_tpr": fpr}
