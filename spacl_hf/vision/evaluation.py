"""Frozen-embedding evaluation: weighted kNN and a linear probe, in torch, with progress bars."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from spacl_hf.core.checks import check_int, check_positive_float, check_tensor


def _check_split(name: str, embeddings: Tensor, labels: Tensor) -> None:
    check_tensor(f"{name}_embeddings", embeddings, ndim=2, floating=True, finite=True)
    check_tensor(f"{name}_labels", labels, ndim=1)
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"`{name}_labels` has {labels.shape[0]} rows, `{name}_embeddings` {embeddings.shape[0]}.")


@torch.no_grad()
def embed_images(model: torch.nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """Frozen features of ``images`` from ``model.features`` (the pre-head output of :class:`SmallCNN` and
    ``EmbeddingModel``), in eval mode, without gradients, block by block on the model's device; returned on CPU.

    Args:
        model: an image encoder with a ``features(pixel_values=...)`` method.
        images: the images.
        batch_size: images per forward pass.

    Shape:
        - images: ``[N, C, H, W]``
        - output: ``[N, D]``

    Raises:
        ValueError: for a model without ``features`` or a non-positive ``batch_size``.

    Examples:
        >>> from spacl_hf.vision import SmallCNN
        >>> embed_images(SmallCNN(width=4), torch.rand(5, 1, 8, 8), batch_size=2).shape
        torch.Size([5, 16])
    """
    if not callable(getattr(model, "features", None)):
        raise ValueError(f"`model` must have a `features(pixel_values=...)` method, got {type(model).__name__}.")
    batch_size = check_int("batch_size", batch_size, 1)
    model.eval()
    device = next(model.parameters()).device
    blocks = [model.features(pixel_values=images[i : i + batch_size].to(device)).cpu()
              for i in range(0, len(images), batch_size)]  # fmt: skip
    return torch.cat(blocks)


@torch.no_grad()
def knn_predict(
    train_embeddings: Tensor,
    train_labels: Tensor,
    test_embeddings: Tensor,
    k: Sequence[int] = (20, 200),
    temperature: float = 0.07,
    batch_size: int = 512,
    num_classes: int | None = None,
    show_progress_bar: bool = True,
) -> dict[int, Tensor]:
    """Cosine kNN predictions with temperature-weighted votes (each neighbour votes ``exp(cos / temperature)``).

    Args:
        train_embeddings: the memory bank.
        train_labels: see ``train_embeddings``.
        test_embeddings: the queries.
        k: neighbour counts to predict with (capped at the bank's size).
        temperature: vote temperature (0.07 as in InstDisc / SupCon's kNN monitor).
        batch_size: queries per similarity block.
        num_classes: number of classes (default: the largest train label + 1).
        show_progress_bar: tqdm over the query blocks.

    Shape:
        - embeddings: ``[N, D]``, labels ``[N]``
        - output: ``{k: predictions [M]}``

    Raises:
        ValueError: on mismatched shapes, non-integer labels or a non-positive ``k`` / ``temperature``.

    Examples:
        >>> bank = torch.eye(3)
        >>> knn_predict(bank, torch.tensor([0, 1, 2]), bank + 0.1, k=(1,), show_progress_bar=False)[1]
        tensor([0, 1, 2])
    """
    _check_split("train", train_embeddings, train_labels)
    if test_embeddings.dim() != 2 or test_embeddings.shape[1] != train_embeddings.shape[1]:
        raise ValueError(
            f"`test_embeddings` must be [M, {train_embeddings.shape[1]}] like the train embeddings, "
            f"got {tuple(test_embeddings.shape)}."
        )
    temperature = check_positive_float("temperature", temperature)
    ks = [check_int("k", value, 1) for value in k]
    num_classes = int(train_labels.max()) + 1 if num_classes is None else check_int("num_classes", num_classes, 1)
    train = F.normalize(train_embeddings.float(), dim=-1)
    predictions: dict[int, list[Tensor]] = {value: [] for value in ks}
    largest = min(max(ks), train.shape[0])
    for start in tqdm(range(0, test_embeddings.shape[0], batch_size), desc="kNN", disable=not show_progress_bar):
        query = F.normalize(test_embeddings[start : start + batch_size].float(), dim=-1)
        similarity, index = (query @ train.T).topk(largest, dim=1)
        votes_weight = (similarity / temperature).exp()
        neighbour_labels = train_labels[index]
        for value in ks:
            kk = min(value, largest)
            votes = torch.zeros(query.shape[0], num_classes)
            votes.scatter_add_(1, neighbour_labels[:, :kk], votes_weight[:, :kk])
            predictions[value].append(votes.argmax(dim=1))
    return {value: torch.cat(parts) for value, parts in predictions.items()}


def knn_accuracy(
    train_embeddings: Tensor,
    train_labels: Tensor,
    test_embeddings: Tensor,
    test_labels: Tensor,
    k: Sequence[int] = (20, 200),
    temperature: float = 0.07,
    batch_size: int = 512,
    show_progress_bar: bool = True,
) -> dict[str, float]:
    """Cosine kNN accuracy with temperature-weighted votes (see :func:`knn_predict`).

    Args:
        train_embeddings: the memory bank (e.g. the training set's frozen embeddings).
        train_labels: see ``train_embeddings``.
        test_embeddings: the queries and their true labels.
        test_labels: see ``test_embeddings``.
        k: neighbour counts (20 and 200 as in the instance-discrimination literature).
        temperature: vote temperature.
        batch_size: queries per similarity block.
        show_progress_bar: tqdm over the query blocks.

    Shape: embeddings ``[N, D]``, labels ``[N]``. Returns ``{"knn@20": accuracy, ...}``.

    Raises:
        ValueError: on mismatched shapes or non-integer labels.

    Examples:
        >>> bank = torch.eye(3)
        >>> labels = torch.tensor([0, 1, 2])
        >>> knn_accuracy(bank, labels, bank, labels, k=(1,), show_progress_bar=False)
        {'knn@1': 1.0}
    """
    _check_split("test", test_embeddings, test_labels)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    predictions = knn_predict(train_embeddings, train_labels, test_embeddings, k, temperature, batch_size,
                              num_classes, show_progress_bar)  # fmt: skip
    return {f"knn@{value}": float((pred == test_labels).float().mean()) for value, pred in predictions.items()}


def linear_probe_accuracy(
    train_embeddings: Tensor,
    train_labels: Tensor,
    test_embeddings: Tensor,
    test_labels: Tensor,
    epochs: int = 100,
    learning_rate: float = 0.1,
    weight_decay: float = 1e-4,
    seed: int = 0,
    show_progress_bar: bool = True,
) -> float:
    """Accuracy of a logistic-regression probe trained on frozen, standardised embeddings (full-batch Adam).

    Args:
        train_embeddings: what the probe is fitted on.
        train_labels: see ``train_embeddings``.
        test_embeddings: what it is scored on (standardised with the training statistics).
        test_labels: see ``test_embeddings``.
        epochs: full-batch Adam steps.
        learning_rate: Adam's learning rate.
        weight_decay: L2 penalty.
        seed: initialisation of the probe.
        show_progress_bar: tqdm over the epochs.

    Shape:
        - embeddings: ``[N, D]``, labels ``[N]``

    Raises:
        ValueError: on mismatched shapes, non-finite embeddings or ``epochs`` < 1.

    Examples:
        >>> x = torch.tensor([[0.0], [0.1], [1.0], [1.1]])
        >>> linear_probe_accuracy(x, torch.tensor([0, 0, 1, 1]), x, torch.tensor([0, 0, 1, 1]),
        ...                       show_progress_bar=False)
        1.0
    """
    _check_split("train", train_embeddings, train_labels)
    _check_split("test", test_embeddings, test_labels)
    epochs = check_int("epochs", epochs, 1)
    mean, std = train_embeddings.float().mean(0), train_embeddings.float().std(0).clamp(min=1e-6)
    x_train, x_test = (train_embeddings.float() - mean) / std, (test_embeddings.float() - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(x_train.shape[1], num_classes, generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=learning_rate, weight_decay=weight_decay)
    for _ in tqdm(range(epochs), desc="linear probe", disable=not show_progress_bar):
        optimizer.zero_grad()
        F.cross_entropy(x_train @ weight + bias, train_labels).backward()
        optimizer.step()
    with torch.no_grad():
        return float(((x_test @ weight + bias).argmax(dim=1) == test_labels).float().mean())
