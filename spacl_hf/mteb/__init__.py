"""MTEB integration: evaluate SPACL-trained encoders offline (local STS files) or on MTEB tasks."""

from .evaluation import evaluate_files, evaluate_model
from .models import load_encoder, mteb_model, weights_revision
from .tasks import local_sts_task, sibling_retrieval_task, sts_task_from_pairs

__all__ = [
    "evaluate_files",
    "evaluate_model",
    "load_encoder",
    "local_sts_task",
    "mteb_model",
    "sibling_retrieval_task",
    "sts_task_from_pairs",
    "weights_revision",
]
