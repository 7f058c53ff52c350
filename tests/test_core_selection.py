"""Anchor choice, farthest-point positives and screening against the loop references in reference.py."""

import math

import pytest
import torch
from reference import ref_anchor, ref_farthest, ref_screen, ref_screen_similarity

from spacl_hf.core import dynamic_anchor, farthest_point_select, ordered_select, relative_screen, view_hardness


@pytest.mark.parametrize("seed", range(5))
def test_dynamic_anchor_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    views = torch.randn(12, 5, 8, generator=g)
    mask = torch.rand(12, 5, generator=g) > 0.3
    mask[:, 0] = True
    assert dynamic_anchor(views).tolist() == ref_anchor(views)
    assert dynamic_anchor(views, mask).tolist() == ref_anchor(views, mask)


def test_dynamic_anchor_two_views_is_view_zero_and_picks_the_outlier():
    views = torch.randn(6, 2, 4)
    assert dynamic_anchor(views).tolist() == [0] * 6
    # three views close together, one far away: the far one is the hardest
    base = torch.tensor([1.0, 0.0, 0.0])
    pool = torch.stack([base, base + 0.01, base - 0.01 * torch.tensor([0, 1.0, 0]), torch.tensor([0.0, 1.0, 0.0])])
    assert dynamic_anchor(pool[None]).item() == 3


def test_view_hardness_masks_missing_views():
    views = torch.randn(3, 4, 5)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False], [True] * 4])
    hardness = view_hardness(views, mask)
    assert torch.isinf(hardness[~mask]).all() and (hardness[~mask] < 0).all()
    assert hardness[1, 0] == 0  # one valid view: nothing to be far from
    assert dynamic_anchor(views, mask)[1] == 0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shared", [True, False])
def test_farthest_point_matches_brute_force(seed, shared):
    g = torch.Generator().manual_seed(seed)
    batch, num_cand, k = 7, 9, 3
    anchors = torch.randn(batch, 6, generator=g)
    cands = torch.randn(num_cand, 6, generator=g) if shared else torch.randn(batch, num_cand, 6, generator=g)
    allowed = torch.rand(batch, num_cand, generator=g) > 0.4
    idx, valid = farthest_point_select(anchors, cands, k, allowed)
    for b in range(batch):
        row = cands if shared else cands[b]
        expected = ref_farthest(anchors[b], list(row), allowed[b].tolist(), k)
        got = [int(i) for i, ok in zip(idx[b], valid[b]) if ok]
        assert got == expected
        assert valid[b].tolist() == [True] * len(expected) + [False] * (k - len(expected))


def test_farthest_point_prefers_spread_over_near_duplicates():
    anchor = torch.tensor([[1.0, 0.0]])
    near = [math.radians(10), math.radians(12)]
    cands = torch.tensor([[math.cos(a), math.sin(a)] for a in near] + [[0.0, 1.0], [0.0, -1.0]])
    idx, _ = farthest_point_select(anchor, cands, 2)
    assert set(idx[0].tolist()) == {2, 3}


def test_farthest_point_returns_fewer_when_fewer_exist_and_checks_arguments():
    idx, valid = farthest_point_select(torch.randn(2, 4), torch.randn(2, 1, 4), 3)
    assert idx.shape == (2, 3) and valid.tolist() == [[True, False, False]] * 2
    with pytest.raises(ValueError, match="`k`"):
        farthest_point_select(torch.randn(2, 4), torch.randn(3, 4), 0)
    with pytest.raises(ValueError, match="`candidates`"):
        farthest_point_select(torch.randn(2, 4), torch.randn(3, 5), 1)
    with pytest.raises(ValueError, match="`candidate_mask`"):
        farthest_point_select(torch.randn(2, 4), torch.randn(3, 4), 1, torch.ones(2, 3))


def test_ordered_select_takes_first_valid_by_priority():
    mask = torch.tensor([[False, True, True, True], [True, False, False, False]])
    idx, valid = ordered_select(mask, 2)
    assert idx[0].tolist() == [1, 2] and valid.tolist() == [[True, True], [True, False]]
    idx, _ = ordered_select(mask, 2, priority=torch.tensor([3, 2, 1, 0]))
    assert idx[0].tolist() == [3, 2]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mass", [0.5, 0.9, 0.95, 0.999])
def test_relative_screen_matches_brute_force(seed, mass):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(9, 30, generator=g) * 5
    valid = torch.rand(9, 30, generator=g) > 0.2
    valid[0] = False  # a row with nothing to keep
    for min_keep in (0, 1, 4):
        keep = relative_screen(logits, mass, min_keep, valid)
        for r in range(9):
            expected = ref_screen(logits[r].double().tolist(), mass, min_keep, valid[r].tolist())
            assert set(torch.nonzero(keep[r]).flatten().tolist()) == expected


def test_relative_screen_invariants():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 50, generator=g) * 3
    keep = relative_screen(logits, 0.9)
    weights = torch.softmax(logits.double(), dim=1)
    for r in range(16):
        kept, dropped = logits[r][keep[r]], logits[r][~keep[r]]
        assert kept.min() >= (dropped.max() if dropped.numel() else -math.inf)
        assert weights[r][keep[r]].sum() >= 0.9 - 1e-9
        # shortest: without its least similar member the kept set would fall short of the mass
        least = torch.argmin(logits[r].masked_fill(~keep[r], math.inf))
        assert weights[r][keep[r]].sum() - weights[r][least] < 0.9
    assert relative_screen(logits, 1.0).all()
    # softmax weight does not change when every logit moves by a constant
    assert torch.equal(relative_screen(logits + 7.0, 0.9), keep)


def test_relative_screen_ties_and_errors():
    tied = torch.zeros(1, 10)
    assert relative_screen(tied, 0.3).all()  # every candidate ties with the last kept one
    with pytest.raises(ValueError, match="`mass`"):
        relative_screen(tied, 0.0)
    with pytest.raises(ValueError, match="`mass`"):
        relative_screen(tied, 1.5)
    with pytest.raises(ValueError, match="`min_keep`"):
        relative_screen(tied, 0.5, min_keep=-1)
    with pytest.raises(ValueError, match="NaN"):
        relative_screen(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="`logits`"):
        relative_screen(torch.zeros(10))
    with pytest.raises(ValueError, match="`mask`"):
        relative_screen(tied, 0.5, mask=torch.ones(1, 10))


@pytest.mark.parametrize("seed", range(3))
def test_relative_screen_at_scale_matches_float64(seed):
    """Many anchors, thousands of candidates, several chunks: float32 may differ from float64 only at
    near-ties, by at most one candidate in a handful of anchors (never a whole row)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(700, 3000, generator=g) * 3
    valid = torch.rand(700, 3000, generator=g) > 0.05
    exact = relative_screen(logits.double(), 0.95, 1, valid)
    for candidate in (relative_screen(logits, 0.95, 1, valid), relative_screen(logits[:37], 0.95, 1, valid[:37])):
        rows = len(candidate)
        differing = (candidate != exact[:rows]).sum(dim=1)
        assert int(differing.max()) <= 1 and int((differing > 0).sum()) <= 3
    # the float64 result is the loop reference's on a sample of rows
    for r in range(0, 700, 97):
        expected = ref_screen(logits[r].double().tolist(), 0.95, 1, valid[r].tolist())
        assert set(torch.nonzero(exact[r]).flatten().tolist()) == expected


@pytest.mark.parametrize("weight", ["softmax", "similarity"])
def test_relative_screen_does_not_depend_on_the_chunk_size(monkeypatch, weight):
    """A GPU screens in one large chunk where the CPU takes many small ones: the keep-mask must be the same."""
    import spacl_hf.core.screening as screening

    g = torch.Generator().manual_seed(7)
    logits = torch.randn(300, 2000, generator=g) * 3
    valid = torch.rand(300, 2000, generator=g) > 0.05
    monkeypatch.setattr(screening, "_CPU_CHUNK_ELEMENTS", 2000 * 50)  # six chunks
    chunked = relative_screen(logits, 0.9, 2, valid, weight=weight)
    monkeypatch.setattr(screening, "_CPU_CHUNK_ELEMENTS", screening._ACCELERATOR_CHUNK_ELEMENTS)
    whole = relative_screen(logits, 0.9, 2, valid, weight=weight)
    monkeypatch.setattr(screening, "_CPU_CHUNK_ELEMENTS", 2000 * 7)  # 7 rows a chunk: a ragged last chunk
    ragged = relative_screen(logits, 0.9, 2, valid, weight=weight)
    assert torch.equal(chunked, whole) and torch.equal(chunked, ragged)
    assert 0 < int(chunked.sum()) < int(valid.sum())  # it screened something


def test_relative_screen_with_massive_ties_stays_exact():
    """Heavy exact ties: every candidate tied with the last kept one is kept, as the loop reference does."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randint(0, 3, (20, 400), generator=g).float() * 0.5  # three distinct values, heavy ties
    keep = relative_screen(logits, 0.9)
    for r in range(20):
        expected = ref_screen(logits[r].double().tolist(), 0.9, 1, [True] * 400)
        assert set(torch.nonzero(keep[r]).flatten().tolist()) == expected


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mass", [0.5, 0.8, 0.95, 1.0])
@pytest.mark.parametrize("min_keep", [0, 1, 3])
def test_similarity_screening_matches_brute_force(seed, mass, min_keep):
    g = torch.Generator().manual_seed(seed)
    cosines = torch.rand(24, 40, generator=g) * 2 - 1  # signed cosines: many rows mix both signs
    cosines[0] -= 0.8  # a row whose total is <= 0: only the min_keep most similar survive
    cosines[1] = 0.0  # a row whose total is exactly 0
    cosines[2, ::2] = cosines[2, 1::2]  # ties
    cosines[3] = cosines[3].abs() * 0.1  # small positive cosines only
    valid = torch.rand(24, 40, generator=g) > 0.2
    valid[4] = False  # nothing valid
    valid[5, 1:] = False  # one candidate
    for temperature in (1.0, 0.05):  # the temperature cancels out of the rule
        keep = relative_screen(cosines / temperature, mass, min_keep, valid, weight="similarity")
        for r in range(24):
            expected = ref_screen_similarity(cosines[r].double().tolist(), mass, min_keep, valid[r].tolist())
            assert set(torch.nonzero(keep[r]).flatten().tolist()) == expected, (r, temperature)
    # row 0 exercises the total <= 0 branch: exactly the min_keep most similar survive (its cosines have no ties)
    assert float((cosines[0] * valid[0]).sum()) <= 0
    assert int(keep[0].sum()) == min(min_keep, int(valid[0].sum()))


@pytest.mark.parametrize("seed", range(2))
def test_similarity_screening_at_scale_matches_float64(seed):
    g = torch.Generator().manual_seed(seed)
    cosines = (torch.rand(64, 3000, generator=g) * 1.2 - 0.4).float()
    valid = torch.rand(64, 3000, generator=g) > 0.1
    keep = relative_screen(cosines / 0.05, 0.95, 1, valid, weight="similarity")
    for r in range(0, 64, 7):
        expected = ref_screen_similarity(cosines[r].double().tolist(), 0.95, 1, valid[r].tolist())
        got = set(torch.nonzero(keep[r]).flatten().tolist())
        assert len(got ^ expected) <= 1, r  # float32 vs float64 sums may differ at the very boundary


@pytest.mark.parametrize("temperature", [0.2, 0.5])
def test_similarity_screening_can_remove_real_softmax_weight_softmax_screening_cannot(temperature):
    g = torch.Generator().manual_seed(0)
    cosines = (0.1 + 0.2 * torch.randn(32, 500, generator=g)).clamp(-1, 1)  # like text embeddings' negatives
    logits = cosines / temperature
    weight = torch.softmax(logits, dim=1)
    removed = {
        kind: float((weight * ~relative_screen(logits, 0.95, weight=kind)).sum(1).min())
        for kind in ("softmax", "similarity")
    }
    assert removed["softmax"] <= 0.05 + 1e-6  # by construction: at most 1 - mass of the softmax weight
    assert removed["similarity"] > 0.2, removed  # the paper's rule drops weight that matters at these temperatures
    with pytest.raises(ValueError, match="`weight`"):
        relative_screen(cosines, weight="cosine")


def test_farthest_point_preferred_tier_comes_first():
    from spacl_hf.core.positives import farthest_point_unchecked

    anchors = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=-1)
    candidates = torch.nn.functional.normalize(
        torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), dim=-1
    )
    available = torch.ones(1, 4, dtype=torch.bool)
    preferred = torch.tensor([[True, True, False, False]])
    index, valid = farthest_point_unchecked(anchors, candidates, 3, available, preferred)
    # both preferred ones first (the farther of them first), then the farthest of the rest
    assert index.tolist() == [[1, 0, 2]] and bool(valid.all())
    index, _ = farthest_point_unchecked(anchors, candidates, 3, available)
    assert index.tolist()[0][0] == 2
