"""Vision integration: a plain-torch view pipeline, image datasets, a small CNN (any Hugging Face vision backbone goes
through :class:`spacl_hf.common.pooling.EmbeddingModel`), a collator for SPACLTrainer and frozen-embedding
evaluation."""

from .collator import ImageViewCollator
from .datasets import load_digits_dataset, load_fashion_mnist, load_image_folder
from .evaluation import embed_images, knn_accuracy, knn_predict, linear_probe_accuracy
from .models import SmallCNN
from .views import ViewPipeline

__all__ = [
    "ImageViewCollator",
    "SmallCNN",
    "ViewPipeline",
    "embed_images",
    "knn_accuracy",
    "knn_predict",
    "linear_probe_accuracy",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_image_folder",
]
