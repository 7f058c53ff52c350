"""Vision integration (work in progress, issue 6): plain-torch view pipeline, image datasets, frozen-embedding
evaluation."""

from .datasets import load_digits_dataset, load_fashion_mnist, load_image_folder
from .evaluation import knn_accuracy, linear_probe_accuracy
from .views import ViewPipeline

__all__ = [
    "ViewPipeline",
    "knn_accuracy",
    "linear_probe_accuracy",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_image_folder",
]
