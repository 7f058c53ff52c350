"""Open-intent classification: in-scope accuracy, OOD F1 and macro F1 (an `evaluate` metric module).

Load it by path (works offline): ``evaluate.load(spacl_hf.ood.metric_path("open_intent"))``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Quality of an open-intent classifier that predicts one of the known intents or "out-of-distribution" (OOD).

- ``in_scope_accuracy``: accuracy on the in-scope (known-intent) samples; predicting OOD for one is an error.
- ``ood_recall``: fraction of OOD samples predicted OOD.
- ``ood_f1``: F1 of the OOD class.
- ``known_macro_f1``: macro F1 over the known intents that occur in `references`.
- ``macro_f1``: macro F1 over those known intents plus the OOD class (each class weighs the same).
- ``accuracy``: overall accuracy.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted intent id, or `ood_label`.
    references (`list` of `int`): true intent id, or `ood_label`.
    ood_label (`int`, default -1): the id that means out-of-distribution.
Returns:
    in_scope_accuracy, ood_recall, ood_f1, known_macro_f1, macro_f1, accuracy (`float` each).
Examples:
    >>> from spacl_hf.ood import load_metric  # evaluate.load(path of this file)
    >>> metric = load_metric("open_intent")
    >>> metric.compute(predictions=[0, 1, -1, -1], references=[0, 1, -1, 1])["in_scope_accuracy"]
    0.6666666666666666
"""

_CITATION = """
@inproceedings{larson2019evaluation,
  title={An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction},
  author={Larson, Stefan and others},
  booktitle={EMNLP-IJCNLP},
  year={2019}
}
"""


def f1_per_class(predictions: np.ndarray, references: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """F1 of each class in `classes` (0 where it is neither predicted nor present, as scikit-learn reports)."""
    true_positive = np.array([np.sum((predictions == c) & (references == c)) for c in classes], dtype=np.float64)
    predicted = np.array([np.sum(predictions == c) for c in classes], dtype=np.float64)
    actual = np.array([np.sum(references == c) for c in classes], dtype=np.float64)
    denominator = predicted + actual
    return np.divide(2 * true_positive, denominator, out=np.zeros_like(denominator), where=denominator > 0)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class OpenIntent(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, ood_label=-1):
        predictions, references = np.asarray(predictions), np.asarray(references)
        inside, ood = references != ood_label, references == ood_label
        known = np.unique(references[inside])
        known_f1 = f1_per_class(predictions, references, known)
        ood_f1 = f1_per_class(predictions, references, np.array([ood_label]))[0]
        return {
            "in_scope_accuracy": float((predictions[inside] == references[inside]).mean()) if inside.any() else 0.0,
            "ood_recall": float((predictions[ood] == ood_label).mean()) if ood.any() else 0.0,
            "ood_f1": float(ood_f1),
            "known_macro_f1": float(known_f1.mean()) if len(known) else 0.0,
            "macro_f1": float(np.r_[known_f1, ood_f1].mean()),
            "accuracy": float((predictions == references).mean()),
        }
