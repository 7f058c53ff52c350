"""Content ids for texts in a batch, from their token ids: the same text gives the same id in any column."""

from __future__ import annotations

import torch
from torch import Tensor


def token_content_ids(features: dict[str, Tensor]) -> Tensor | None:
    """An int64 id per row of a tokenized column, equal for rows with the same non-padding tokens.

    A random linear hash of ``(token id + 1) * position weight`` over the attended positions: padding does not
    enter, so a text padded to different lengths in different columns keeps its id. ``None`` for inputs
    without ``input_ids`` (e.g. images), where the core falls back to equality of the embeddings.
    """
    input_ids = features.get("input_ids")
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
        return None
    mask = features.get("attention_mask")
    tokens = input_ids.to(torch.int64) + 1
    if isinstance(mask, Tensor) and mask.shape == input_ids.shape:
        tokens = tokens * mask.to(torch.int64)
    weights = torch.randint(-(2**62), 2**62, (tokens.shape[1],), generator=torch.Generator().manual_seed(0)) | 1
    return (tokens * weights.to(tokens.device)).sum(dim=1)  # int64 overflow wraps, as a hash should
