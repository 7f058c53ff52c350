"""Image datasets as ``datasets.Dataset``: Fashion-MNIST from its IDX files, scikit-learn's digits, image folders."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from datasets import Array3D, ClassLabel, Dataset, Features, load_dataset

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(folder: Path, stem: str) -> np.ndarray:
    """An IDX file (gzipped or not): the magic number's last byte is the rank, then one big-endian size per axis."""
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as handle:
                data = handle.read()
            rank = data[3]
            shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)
    raise FileNotFoundError(
        f"{stem}(.gz) is not in {folder}. Install Fashion-MNIST with `apt-get install dataset-fashion-mnist` "
        "(files under /usr/share/datasets/fashion-mnist/) or pass `folder` holding the four IDX files."
    )


def _image_dataset(images: np.ndarray, labels: np.ndarray, names: list[str]) -> Dataset:
    features = Features(
        {"pixel_values": Array3D(shape=images.shape[1:], dtype="float32"), "label": ClassLabel(names=names)}
    )
    return Dataset.from_dict({"pixel_values": images, "label": labels.astype(np.int64)}, features=features)


def load_fashion_mnist(
    split: str = "train", folder: str | Path = FASHION_MNIST_DIR, limit: int | None = None
) -> Dataset:
    """Fashion-MNIST ``split`` (``"train"``: 60000, ``"test"``: 10000) with ``pixel_values`` ``[1, 28, 28]`` in [0, 1].

    Args:
        split: ``"train"`` or ``"test"``.
        folder: the folder holding the four IDX gzip files (default: the Debian package's).
        limit: keep the first ``limit`` images.

    Examples:
        >>> test = load_fashion_mnist("test")  # doctest: +SKIP
        >>> len(test), test.features["label"].names[:2]  # doctest: +SKIP
        (10000, ['T-shirt/top', 'Trouser'])

    Raises:
        ValueError: for an unknown split.
        FileNotFoundError: when the IDX files are missing (the message says how to install them).
    """
    if split not in _IDX_FILES:
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    image_stem, label_stem = _IDX_FILES[split]
    images = _read_idx(Path(folder), image_stem)[:limit]
    labels = _read_idx(Path(folder), label_stem)[:limit]
    return _image_dataset((images[:, None] / 255.0).astype(np.float32), labels, FASHION_MNIST_CLASSES)


def load_digits_dataset() -> Dataset:
    """scikit-learn's 1797 8x8 digits (no download), ``pixel_values`` ``[1, 8, 8]`` in [0, 1].

    Examples:
        >>> digits = load_digits_dataset()
        >>> len(digits), digits.features["label"].num_classes
        (1797, 10)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[:, None] / 16.0).astype(np.float32)
    return _image_dataset(images, digits.target, [str(i) for i in range(10)])


def load_image_folder(folder: str | Path, split: str = "train") -> Dataset:
    """Images in class sub-folders (``folder/<class>/<image>``) via the ``imagefolder`` builder; columns ``image``
    (PIL, needs pillow) and ``label``.

    Args:
        folder: the root folder; each sub-folder is a class.
        split: the split name the ``imagefolder`` builder gives the data.

    Examples:
        >>> dataset = load_image_folder("my_images")  # my_images/cats/*.png, my_images/dogs/*.png  # doctest: +SKIP
        >>> dataset.features["label"].names  # doctest: +SKIP
        ['cats', 'dogs']

    Raises:
        FileNotFoundError: when ``folder`` does not exist.
    """
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"`folder` {str(folder)!r} does not exist.")
    return load_dataset("imagefolder", data_dir=str(folder), split=split)
