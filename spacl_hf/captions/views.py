"""Items with several views of one thing (captions of an image, paraphrases of a question) as the columns
``view_0 .. view_{V-1}`` that :class:`~spacl_hf.SPACLLoss` reads as V views of one sample.

SPACL's dynamic anchor (spec 3.1) and farthest-point positives (3.2) choose among a sample's views; with two views
they have nothing to choose. Grouped text gives them real choices.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Hashable

from datasets import Dataset

logger = logging.getLogger(__name__)

SHORT_GROUPS = ("error", "drop", "pad")


def _item_rng(seed: int, epoch: int, group: Hashable) -> random.Random:
    """A generator of its own per (seed, epoch, group): the draw of one item does not depend on the others, on the
    row order or on the process (str hashes are salted per process, so a digest is used)."""
    digest = hashlib.sha256(f"{seed}\x00{epoch}\x00{group!r}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def group_views(
    dataset: Dataset,
    group_column: str,
    text_column: str,
    num_views: int,
    seed: int = 0,
    epoch: int = 0,
    short_groups: str = "error",
) -> Dataset:
    """One row per group with ``num_views`` of its texts in random order, as columns ``view_0 .. view_{V-1}``.

    Each group's views are a seeded random draw of ``num_views`` of its texts, in random order (no view position
    follows the input order: Flickr30k's caption k, for one, is ordered by length). The draw depends on
    ``(seed, epoch, group)`` only: pass the epoch number to draw new views (a new subset when the group holds
    more than ``num_views``) for another epoch.

    Args:
        dataset: one row per text, with ``group_column`` (the item: image id, question id) and ``text_column``.
        group_column: column naming the group of each text; groups come out in order of first appearance.
        text_column: column of the texts.
        num_views: views per output row (>= 2).
        seed: the draw's seed.
        epoch: the epoch the draw is for.
        short_groups: what to do with groups of fewer than ``num_views`` texts: ``"error"`` (default: name the
            first one), ``"drop"`` (leave them out, logging how many) or ``"pad"`` (repeat randomly chosen texts
            of the group, logging how many groups; a repeated view is then both anchor candidate and positive).

    Returns:
        A ``Dataset`` with ``group_column`` and ``view_0 .. view_{V-1}``.

    Raises:
        ValueError: on a missing column, ``num_views < 2``, an unknown ``short_groups``, or a short group under
            ``"error"``.

    Examples:
        >>> rows = Dataset.from_dict({"image": [1, 1, 1, 2, 2, 2], "caption": list("abcdef")})
        >>> grouped = group_views(rows, "image", "caption", num_views=2, seed=0)
        >>> grouped.column_names, len(grouped)
        (['image', 'view_0', 'view_1'], 2)
    """
    for name, column in (("group_column", group_column), ("text_column", text_column)):
        if column not in dataset.column_names:
            raise ValueError(f"`{name}` {column!r} is not a column of the dataset; it has {dataset.column_names}.")
    if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 2:
        raise ValueError(f"`num_views` must be an integer >= 2, got {num_views!r}.")
    if short_groups not in SHORT_GROUPS:
        raise ValueError(f"`short_groups` must be one of {SHORT_GROUPS}, got {short_groups!r}.")
    groups: dict[Hashable, list[str]] = {}
    for group, text in zip(dataset[group_column], dataset[text_column]):
        if not isinstance(text, str) or not text:
            raise ValueError(f"`{text_column}` holds {text!r} in group {group!r}; expected non-empty strings.")
        groups.setdefault(group, []).append(text)
    short = [group for group, texts in groups.items() if len(texts) < num_views]
    if short and short_groups == "error":
        raise ValueError(
            f"{len(short)} groups have fewer than {num_views} texts (first: {short[0]!r} with "
            f"{len(groups[short[0]])}); pass short_groups='drop' or 'pad', or fewer `num_views`."
        )
    if short:
        logger.warning("group_views: %s %d of %d groups with fewer than %d texts.",
                       "dropped" if short_groups == "drop" else "padded", len(short), len(groups), num_views)  # fmt: skip
    columns: dict[str, list] = {group_column: [], **{f"view_{v}": [] for v in range(num_views)}}
    for group, texts in groups.items():
        if len(texts) < num_views and short_groups == "drop":
            continue
        rng = _item_rng(seed, epoch, group)
        views = rng.sample(texts, min(num_views, len(texts)))
        if len(views) < num_views:  # "pad": repeats, then a new order so that no position marks them
            views += [rng.choice(texts) for _ in range(num_views - len(views))]
            rng.shuffle(views)
        columns[group_column].append(group)
        for v, text in enumerate(views):
            columns[f"view_{v}"].append(text)
    return Dataset.from_dict(columns)
