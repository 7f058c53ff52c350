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
    """Cosine kNN accuracy with temperature-weighted votes (each neighbour votes ``exp(cos / temperature)``).

    Shape: embeddings ``[N, D]``, labels ``[N]``. Returns ``{"knn@20": accuracy, ...}``.
    """
    _check_split("train", train_embeddings, train_labels)
    _check_split("test", test_embeddings, test_labels)
    temperature = check_positive_float("temperature", temperature)
    ks = [check_int("k", value, 1) for value in k]
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    train = F.normalize(train_embeddings.float(), dim=-1)
    correct = {value: 0 for value in ks}
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
            correct[value] += int((votes.argmax(dim=1) == test_labels[start : start + batch_size]).sum())
    return {f"knn@{value}": correct[value] / test_embeddings.shape[0] for value in ks}


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
    """Accuracy of a logistic-regression probe trained on frozen, standardised embeddings (full-batch Adam)."""
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
