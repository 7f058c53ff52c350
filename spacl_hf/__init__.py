"""spacl_hf: SnaPhArd Contrast Learning (SPACL, ICLR 2026) for the Hugging Face ecosystem.

``spacl_hf.core`` is pure PyTorch. The integrations (``SPACLLoss`` for sentence-transformers, ...) are
imported lazily on first access, so ``import spacl_hf`` never imports transformers or sentence-transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

from .core import (
    SPACL_CITATION,
    AdversarialNegativeGenerator,
    SPACLCriterion,
    dynamic_anchor,
    farthest_point_select,
    relative_screen,
    spacl_loss,
)

__version__ = "0.2.0.dev0"

# public name -> module that defines it; each integration module imports its own library on first use
_LAZY = {
    "SPACLLoss": "spacl_hf.sentence_transformers",
    "CachedSPACLLoss": "spacl_hf.sentence_transformers",
    "SPACLLoggingCallback": "spacl_hf.sentence_transformers",
    "SPACLTrainer": "spacl_hf.trainer",
    "SPACLTrainingArguments": "spacl_hf.trainer",
    "SPACLDataCollator": "spacl_hf.trainer",
    "EmbeddingModel": "spacl_hf.trainer",
    "PerClassBatchSampler": "spacl_hf.common.samplers",
    "per_class_batch_sampler": "spacl_hf.common.samplers",
    "group_views": "spacl_hf.captions",
}

__all__ = [
    "SPACL_CITATION",
    "AdversarialNegativeGenerator",
    "SPACLCriterion",
    "dynamic_anchor",
    "farthest_point_select",
    "relative_screen",
    "spacl_loss",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spacl_hf' has no attribute {name!r}")
