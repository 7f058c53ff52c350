"""Batches of augmented image views laid out for SPACLTrainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from spacl_hf.core import ColumnLayout

from .views import ViewPipeline


@dataclass
class ImageViewCollator:
    """Stack ``pixel_values``, make ``pipeline.num_views`` views per image, lay them out column-major.

    View 0 is the anchor column and the other views are its positive columns; with ``supervised`` the labels go
    along (same label = positive candidates), otherwise only the views of the same image are positives. The
    layout marks the views as interchangeable, so ``spacl_candidate_views="auto"`` (the default) makes every view
    of every other image a candidate negative (SimCLR convention) and the dynamic anchor defaults to on.

    Args:
        pipeline: the augmentation.
        supervised: pass the ``label`` column to SPACL.
        label_column: name of the label column.

    Shape:
        - rows' ``pixel_values``: ``[C, H, W]`` each
        - output ``pixel_values``: ``[V * B, C, H, W]`` (column-major), ``labels``: ``[B]`` when ``supervised``

    Examples:
        >>> collator = ImageViewCollator(ViewPipeline(num_views=2, seed=0), supervised=True)
        >>> batch = collator([{"pixel_values": torch.rand(1, 28, 28), "label": i % 3} for i in range(4)])
        >>> batch["pixel_values"].shape, batch["labels"].tolist()
        (torch.Size([8, 1, 28, 28]), [0, 1, 2, 0])
    """

    pipeline: ViewPipeline
    supervised: bool = True
    label_column: str = "label"

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        images = torch.stack([torch.as_tensor(row["pixel_values"], dtype=torch.float32) for row in rows])
        views = self.pipeline(images)  # [B, V, C, H, W]
        num_views = views.shape[1]
        batch: dict[str, Any] = {
            "pixel_values": views.transpose(0, 1).flatten(0, 1),  # column-major: all view 0, then all view 1, ...
            "spacl_layout": ColumnLayout(1, num_views - 1, 0, uses_labels=self.supervised, interchangeable=True),
        }
        if self.supervised:
            batch["labels"] = torch.tensor([int(row[self.label_column]) for row in rows])
        return batch
