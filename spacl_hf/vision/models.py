"""Image encoders for SPACL: a small CNN for small images, or any Hugging Face vision backbone via EmbeddingModel."""

from __future__ import annotations

from torch import Tensor, nn

from spacl_hf.common.pooling import EmbeddingOutput
from spacl_hf.core.checks import check_int


class SmallCNN(nn.Module):
    """A 3-block CNN for small images (8x8 to 64x64) with a SimCLR-style projection head.

    Args:
        in_channels: image channels.
        width: channels of the first block (doubled per block).
        embedding_dim: output size of the projection head.

    Shape:
        - pixel_values: ``[N, C, H, W]``
        - output: ``EmbeddingOutput(embeddings=[N, embedding_dim])``
        - ``features(pixel_values)``: the pre-head ``[N, 4 * width]``

    Raises:
        ValueError: on a non-positive ``in_channels``, ``width`` or ``embedding_dim``.

    Examples:
        >>> import torch
        >>> model = SmallCNN(in_channels=1, width=8, embedding_dim=16)
        >>> model(torch.rand(4, 1, 28, 28)).embeddings.shape, model.features(torch.rand(4, 1, 28, 28)).shape
        (torch.Size([4, 16]), torch.Size([4, 32]))
    """

    def __init__(self, in_channels: int = 1, width: int = 32, embedding_dim: int = 64) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels, 1)
        width = check_int("width", width, 1)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1)

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        self.body = nn.Sequential(
            block(in_channels, width), nn.MaxPool2d(2, ceil_mode=True),
            block(width, 2 * width), nn.MaxPool2d(2, ceil_mode=True),
            block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Linear(4 * width, 4 * width), nn.ReLU(), nn.Linear(4 * width, embedding_dim))

    def features(self, pixel_values: Tensor) -> Tensor:
        """Backbone features before the projection head (what kNN / linear probes usually read)."""
        return self.body(pixel_values)

    def forward(self, pixel_values: Tensor, **_: object) -> EmbeddingOutput:
        return EmbeddingOutput(self.head(self.features(pixel_values)))
