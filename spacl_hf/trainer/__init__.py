"""transformers integration: ``SPACLTrainer``, its training arguments, collator and embedding model."""

from spacl_hf.common.pooling import EmbeddingModel, pool_embeddings

from .arguments import SPACLTrainingArguments
from .collator import SPACLDataCollator
from .trainer import SPACLTrainer

__all__ = ["EmbeddingModel", "SPACLDataCollator", "SPACLTrainer", "SPACLTrainingArguments", "pool_embeddings"]
