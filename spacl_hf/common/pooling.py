"""From an encoder's outputs to one embedding per input, and an encoder wrapper with pooling and a projection head
(torch only; used by the Trainer and the vision integration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


def pool_embeddings(outputs: Any, attention_mask: Tensor | None, pooling: str) -> Tensor:
    """``[N, D]`` embeddings from ``AutoModel`` outputs.

    Args:
        outputs: the model's output (``last_hidden_state`` and, for ``"pooler"``, ``pooler_output``).
        attention_mask: ``[N, L]`` for text; ``None`` for images.
        pooling: ``"mean"`` (masked mean over tokens; spatial mean for ``[N, C, H, W]`` feature maps), ``"cls"``
            (first token) or ``"pooler"`` (the model's pooled output, flattened).

    Raises:
        ValueError: on an unknown pooling, or ``"pooler"`` for a model without ``pooler_output``.

    Shape:
        - ``last_hidden_state``: ``[N, L, H]`` (tokens) or ``[N, C, h, w]`` (feature maps)
        - output: ``[N, H]`` or ``[N, C]``

    Examples:
        >>> from types import SimpleNamespace
        >>> hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]]])  # 1 text, 3 tokens (last one padding)
        >>> pool_embeddings(SimpleNamespace(last_hidden_state=hidden), torch.tensor([[1, 1, 0]]), "mean")
        tensor([[2., 1.]])
    """
    embeddings = getattr(outputs, "embeddings", None)
    if isinstance(embeddings, Tensor):  # an EmbeddingModel already pooled (and projected)
        return embeddings
    if pooling == "pooler":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            raise ValueError(
                "`pooling='pooler'` (--spacl_pooling) needs a model with `pooler_output`; use 'mean' or 'cls'."
            )
        return pooled.flatten(1)
    hidden = outputs.last_hidden_state
    if hidden.ndim == 4:  # convolutional feature map [N, C, H, W]
        if pooling != "mean":
            raise ValueError(
                f"`pooling='{pooling}'` (--spacl_pooling) does not apply to a feature map; use 'mean' or 'pooler'."
            )
        return hidden.mean(dim=(2, 3))
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        if attention_mask is None:
            return hidden.mean(dim=1)
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"`pooling` (--spacl_pooling) must be 'mean', 'cls' or 'pooler', got {pooling!r}.")


def embedding_dim_of(model: torch.nn.Module) -> int | None:
    """The embedding size an encoder's pooled output will have, from its config, when the config says."""
    if isinstance(getattr(model, "embedding_dim", None), int):
        return model.embedding_dim
    config = getattr(model, "config", None)
    for name in ("projection_dim", "hidden_size"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    sizes = getattr(config, "hidden_sizes", None)  # ResNet / ConvNeXt
    if isinstance(sizes, (list, tuple)) and sizes:
        return int(sizes[-1])
    return None


@dataclass
class EmbeddingOutput:
    """What :class:`EmbeddingModel` returns: pooled (and projected) embeddings ``[N, D]``."""

    embeddings: Tensor


class EmbeddingModel(nn.Module):
    """An ``AutoModel`` encoder with pooling and an optional projection head, for :class:`SPACLTrainer`.

    Args:
        backbone: the encoder (text or vision).
        pooling: ``"mean"``, ``"cls"`` or ``"pooler"`` (see :func:`pool_embeddings`).
        projection_dim: add a 2-layer MLP head (SimCLR style) to this size; ``None`` for no head.

    Shape:
        - output: ``EmbeddingOutput(embeddings=[N, D])``, D = ``projection_dim`` or the backbone's size.

    Raises:
        ValueError: for a ``projection_dim`` when the backbone's config does not tell its hidden size.

    Examples:
        >>> from transformers import AutoModel, ResNetConfig  # doctest: +SKIP
        >>> config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])  # doctest: +SKIP
        >>> model = EmbeddingModel(AutoModel.from_config(config), pooling="pooler", projection_dim=32)  # doctest: +SKIP
        >>> model(pixel_values=torch.rand(2, 3, 32, 32)).embeddings.shape  # doctest: +SKIP
        torch.Size([2, 32])
    """

    def __init__(self, backbone: nn.Module, pooling: str = "mean", projection_dim: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.config = getattr(backbone, "config", None)
        backbone_dim = embedding_dim_of(backbone)
        if projection_dim is not None and backbone_dim is None:
            raise ValueError("`projection_dim` needs a backbone whose config tells its hidden size.")
        self.head = (
            None
            if projection_dim is None
            else nn.Sequential(
                nn.Linear(backbone_dim, backbone_dim), nn.ReLU(), nn.Linear(backbone_dim, projection_dim)
            )
        )
        self.embedding_dim = projection_dim or backbone_dim

    def features(self, **inputs: Any) -> Tensor:
        """Pooled backbone output before the projection head (what kNN / linear probes usually read)."""
        return pool_embeddings(self.backbone(**inputs), inputs.get("attention_mask"), self.pooling)

    def forward(self, **inputs: Any) -> EmbeddingOutput:
        embeddings = self.features(**inputs)
        return EmbeddingOutput(self.head(embeddings) if self.head is not None else embeddings)
