"""Out-of-distribution intent detection: CLINC150 / Banking77 open-intent splits, OOD scorers on embeddings
(centroid cosine, kNN, Mahalanobis), thresholds chosen on validation, and `evaluate` metric modules loaded by path.

Train the encoder with :class:`spacl_hf.SPACLLoss` on the ``(text, label)`` training split (same intent = positive
candidates); see ``examples/train_intent_ood.py``.
"""

from .data import (
    OOD_LABEL,
    OpenIntentSplits,
    choose_known_intents,
    draw_known_classes,
    load_banking77,
    load_clinc150,
    load_stackoverflow,
    per_class_subset,
)
from .evaluation import (
    METRIC_NAMES,
    encoder_of,
    evaluate_known_only,
    evaluate_open_intent,
    evaluate_splits,
    load_metric,
    metric_path,
)
from .scorers import (
    CentroidCosineScorer,
    MaxSoftmaxScorer,
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
    "MaxSoftmaxScorer",
    "KNNScorer",
    "MahalanobisScorer",
    "OODScorer",
    "OpenIntentSplits",
    "choose_known_intents",
    "choose_threshold",
    "draw_known_classes",
    "default_scorers",
    "encoder_of",
    "evaluate_known_only",
    "evaluate_open_intent",
    "evaluate_splits",
    "load_banking77",
    "load_clinc150",
    "load_stackoverflow",
    "load_metric",
    "metric_path",
    "per_class_subset",
]
