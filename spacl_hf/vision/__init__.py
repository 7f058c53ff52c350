"""Vision integration (work in progress, issue 6): plain-torch view pipeline, image datasets, frozen-embedding
evaluation."""

from .collator import ImageViewCollator
from .datasets import load_digits_dataset, load_fashion_mnist, load_image_folder
from .evaluation import knn_accuracy, linear_probe_accuracy
from .models import SmallCNN
from .views import ViewPipeline

__all__ = [
    "ImageViewCollator",
    "SmallCNN",
    "ViewPipeline",
    "knn_accuracy",
    "linear_probe_accuracy",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_image_folder",
]
