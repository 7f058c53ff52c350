"""Out-of-distribution intent detection: CLINC150 / Banking77 open-intent splits, OOD scorers on embeddings
(centroid cosine, kNN, Mahalanobis), thresholds chosen on validation, and `evaluate` metric modules loaded by path.

Train the encoder with :class:`spacl_hf.SPACLLoss` on the ``(text, label)`` training split (same intent = positive
candidates); see ``examples/train_intent_ood.py``.
"""

from .data import OOD_LABEL, OpenIntentSplits, choose_known_intents, load_banking77, load_clinc150, per_class_subset
from .evaluation import METRIC_NAMES, encoder_of, evaluate_open_intent, evaluate_splits, load_metric, metric_path
from .scorers import (
    CentroidCosineScorer,
    KNNScorer,
    MahalanobisScorer,
    OODScorer,
    choose_threshold,
    default_scorers,
)

__all__ = [
    "METRIC_NAMES",
    "OOD_LABEL",
    "CentroidCosineScorer",
    "KNNScorer",
    "MahalanobisScorer",
    "OODScorer",
    "OpenIntentSplits",
    "choose_known_intents",
    "choose_threshold",
    "default_scorers",
    "encoder_of",
    "evaluate_open_intent",
    "evaluate_splits",
    "load_banking77",
    "load_clinc150",
    "load_metric",
    "metric_path",
    "per_class_subset",
]
