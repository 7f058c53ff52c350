"""The SPACL loss: exact reductions, the loop reference, gradients, masking and edge cases."""

import math

import pytest
import torch
import torch.nn.functional as F
from reference import ref_spacl

from spacl_hf.core import SPACLCriterion, spacl_loss


def plain_criterion(**overrides) -> SPACLCriterion:
    """SPACL with every component off: the setting that must reduce to InfoNCE."""
    settings = dict(num_positives=1, dynamic_anchor=False, farthest_point=False, screening=False)
    settings.update(overrides)
    return SPACLCriterion(**settings)


def hand_infonce(anchors, positives, temperature):
    """MNRL-style InfoNCE: anchor i against every positive j, target j = i."""
    a, p = F.normalize(anchors, dim=-1), F.normalize(positives, dim=-1)
    logits = a @ p.T / temperature
    return F.cross_entropy(logits, torch.arange(len(a)))


def hand_ntxent_one_direction(anchors, positives, temperature):
    """NT-Xent with only the first view as anchor: candidates are all 2B views except the anchor itself."""
    z = F.normalize(torch.cat([anchors, positives]), dim=-1)
    batch = len(anchors)
    logits = z[:batch] @ z.T / temperature
    logits[torch.arange(batch), torch.arange(batch)] = float("-inf")
    return F.cross_entropy(logits, torch.arange(batch) + batch)


@pytest.mark.parametrize("temperature", [0.05, 0.1, 1.0])
def test_reduction_to_infonce_and_ntxent(temperature):
    g = torch.Generator().manual_seed(1)
    a, p = torch.randn(32, 24, generator=g), torch.randn(32, 24, generator=g)
    views = torch.stack([a, p], dim=1)
    columns = plain_criterion(temperature=temperature, candidate_views="columns")(views)
    assert torch.allclose(columns, hand_infonce(a, p, temperature), atol=1e-6, rtol=1e-6)
    every = plain_criterion(temperature=temperature, candidate_views="all")(views)
    assert torch.allclose(every, hand_ntxent_one_direction(a, p, temperature), atol=1e-6, rtol=1e-6)


def hand_ntxent_symmetric(views, temperature):
    """SimCLR's NT-Xent as published: each of the 2B views is an anchor, its positive the other view of its image,
    its negatives the other 2B - 2 views; the mean over the 2B anchors."""
    batch = views.shape[0]
    z = F.normalize(torch.cat([views[:, 0], views[:, 1]]), dim=-1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(batch) + batch, torch.arange(batch)])
    return F.cross_entropy(logits, targets)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_every_view_anchors_reduce_to_symmetric_ntxent(temperature):
    views = torch.randn(24, 2, 16, generator=torch.Generator().manual_seed(3), requires_grad=True)
    ours = plain_criterion(temperature=temperature, candidate_views="all", anchor_mode="every_view")(views)
    expected = hand_ntxent_symmetric(views, temperature)
    assert torch.allclose(ours, expected, atol=1e-6, rtol=1e-6)
    ours_grad, expected_grad = (torch.autograd.grad(x, views)[0] for x in (ours, expected))
    assert torch.allclose(ours_grad, expected_grad, atol=1e-6)


def test_every_view_anchors_skip_missing_views_and_report_no_anchor_choice():
    g = torch.Generator().manual_seed(4)
    views, labels = torch.randn(12, 4, 16, generator=g).double(), torch.randint(0, 3, (12,), generator=g)
    criterion = SPACLCriterion(temperature=0.2, anchor_mode="every_view")
    mask = torch.ones(12, 4, dtype=torch.bool)
    mask[:, 3] = False  # a view that no sample has: the same as three views
    masked, stats = criterion(views, view_mask=mask, labels=labels, return_stats=True)
    assert torch.allclose(masked, criterion(views[:, :3], labels=labels), atol=1e-10)
    assert float(stats["anchor_not_first_view"]) == 0 and float(stats["positives_reordered"]) > 0
    one = SPACLCriterion(temperature=0.2)(views, labels=labels)
    assert not torch.allclose(criterion(views, labels=labels), one)  # the option changes the loss


def test_reduction_to_sentence_transformers_mnrl():
    st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
    g = torch.Generator().manual_seed(2)
    a, p, n = (torch.randn(16, 32, generator=g) for _ in range(3))
    temperature = 0.05
    mnrl = st_losses.MultipleNegativesRankingLoss(model=None, scale=1 / temperature)
    # pairs
    ours = plain_criterion(temperature=temperature, candidate_views="columns")(torch.stack([a, p], 1))
    assert torch.allclose(ours, mnrl.compute_loss_from_embeddings([a, p], None), atol=1e-6)
    # triplets: the negative column is a shared candidate for every anchor, as in MNRL
    ours = plain_criterion(temperature=temperature, candidate_views="columns")(
        torch.stack([a, p], 1), negatives=n[:, None]
    )
    assert torch.allclose(ours, mnrl.compute_loss_from_embeddings([a, p, n], None), atol=1e-6)


# a criterion setting for every key the configs below may name, with the criterion's / reference's defaults
_DEFAULTS = dict(dynamic_anchor=True, farthest_point=True, screening=True, candidate_views="all",
                 screening_weight="softmax", positive_pool="labels", anchor_mode="one")  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "config",
    [
        dict(),
        dict(dynamic_anchor=False),
        dict(farthest_point=False),
        dict(screening=False),
        dict(candidate_views="columns"),
        dict(labels=4),
        dict(labels=4, farthest_point=False),
        dict(negatives=True, mass=0.8),
        dict(screening_weight="similarity"),
        dict(screening_weight="similarity", mass=0.5, candidate_views="columns"),
        dict(screening_weight="similarity", labels=3),
        dict(screening_weight="similarity", negatives=True, mass=0.8),
        dict(labels=3, positive_pool="views"),
        dict(labels=3, positive_pool="views+labels"),
        dict(labels=3, positive_pool="views+labels", k=4),
        dict(labels=3, positive_pool="views+labels", farthest_point=False),
        dict(anchor_mode="every_view"),
        dict(anchor_mode="every_view", labels=3, screening_weight="similarity"),
        dict(anchor_mode="every_view", labels=3, positive_pool="views", negatives=True, mass=0.8),
    ],
    ids=[
        "full", "no-anchor", "no-fps", "no-screen", "columns", "labels", "labels-ordered", "negatives", "sim",
        "sim-columns", "sim-labels", "sim-negatives", "pool-views", "pool-both", "pool-both-k4", "pool-both-ord",
        "every-view", "every-view-sim-labels", "every-view-pool-views-negatives",
    ],  # fmt: skip
)
def test_criterion_matches_loop_reference(seed, config):
    g = torch.Generator().manual_seed(seed)
    views = torch.randn(10, 4, 16, generator=g)
    labels = torch.randint(0, config["labels"], (10,), generator=g) if config.get("labels") else None
    negatives = torch.randn(10, 2, 16, generator=g) if config.get("negatives") else None
    mass, temperature, k = config.get("mass", 0.95), 0.2, config.get("k", 2)
    settings = {name: config.get(name, default) for name, default in _DEFAULTS.items()}
    criterion = SPACLCriterion(temperature=temperature, num_positives=k, screening_mass=mass, **settings)
    ours = criterion(views.double(), labels=labels, negatives=None if negatives is None else negatives.double())
    expected = ref_spacl(
        views, temperature, k, mass, labels=labels, negatives=negatives, dynamic=settings["dynamic_anchor"],
        farthest=settings["farthest_point"], screening=settings["screening"],
        candidate_views=settings["candidate_views"], screening_weight=settings["screening_weight"],
        positive_pool=settings["positive_pool"], anchor_mode=settings["anchor_mode"],
    )  # fmt: skip
    assert abs(float(ours) - expected) < 1e-4


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    views = torch.randn(6, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    negatives = torch.randn(6, 1, 5, generator=g, dtype=torch.float64, requires_grad=True)
    criterion = SPACLCriterion(temperature=0.3, screening_mass=0.9)
    # selection and screening are piecewise constant: gradcheck checks the loss on the chosen sets
    assert torch.autograd.gradcheck(lambda v, n: criterion(v, negatives=n), (views, negatives), eps=1e-6, atol=1e-5)


def test_label_masking_same_label_is_never_a_negative():
    g = torch.Generator().manual_seed(4)
    views = torch.randn(8, 2, 6, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    criterion = SPACLCriterion(temperature=0.1, screening=False, dynamic_anchor=False)
    loss = criterion(views, labels=labels)
    # moving a same-label sample's views changes the positives but moving it must not add a negative term:
    # compare with a reference that drops other-label samples one by one
    assert abs(float(loss) - ref_spacl(views, 0.1, 2, 0.95, labels=labels, dynamic=False, screening=False)) < 1e-5
    # with labels the single-view format works: same-label samples are the positives
    loss1, stats = criterion(views[:, :1], labels=labels, return_stats=True)
    assert torch.isfinite(loss1) and stats["positives_per_anchor"] == 1.0


def test_duplicate_masking_by_content_and_by_ids():
    g = torch.Generator().manual_seed(5)
    a, p = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    p[3] = p[0]  # sample 3's positive is the same text as sample 0's positive
    views = torch.stack([a, p], 1)
    unmasked = plain_criterion(mask_duplicates=False, candidate_views="columns")(views)
    masked = plain_criterion(candidate_views="columns")(views)
    # reference: anchor 0 must not see p[3] (== its positive) as a negative, and anchor 3 not p[0]
    logits = F.normalize(a, dim=-1) @ F.normalize(p, dim=-1).T / 0.05
    logits[0, 3] = logits[3, 0] = float("-inf")
    assert torch.allclose(masked, F.cross_entropy(logits, torch.arange(6)), atol=1e-6)
    assert not torch.allclose(masked, unmasked)
    # ids say the same thing without equal embeddings: slightly perturbed p[3], same text id
    p2 = p.clone()
    p2[3] += 1e-3
    ids = torch.stack([torch.arange(6), torch.tensor([100, 101, 102, 100, 104, 105])], 1)
    by_ids = plain_criterion(candidate_views="columns")(torch.stack([a, p2], 1), view_ids=ids)
    logits2 = F.normalize(a, dim=-1) @ F.normalize(p2, dim=-1).T / 0.05
    logits2[0, 3] = logits2[3, 0] = float("-inf")
    assert torch.allclose(by_ids, F.cross_entropy(logits2, torch.arange(6)), atol=1e-6)


def test_edge_cases():
    criterion = SPACLCriterion()
    # batch of one: only positives, nothing to contrast: loss 0, finite gradient
    one = torch.randn(1, 3, 4, requires_grad=True)
    loss = criterion(one)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(one.grad).all()
    # one view without labels cannot have positives
    with pytest.raises(ValueError, match="at least 2 views"):
        criterion(torch.randn(4, 1, 8))
    # identical embeddings: every negative is a duplicate of the positives -> loss 0, finite
    same = torch.ones(5, 2, 4, requires_grad=True)
    loss = criterion(same)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(same.grad).all()
    # every negative masked by labels: loss 0
    assert criterion(torch.randn(4, 2, 8), labels=torch.zeros(4, dtype=torch.long)).item() == pytest.approx(0.0)
    # a sample whose label appears once has no positive in a one-view batch and carries no loss
    loss, stats = criterion(torch.randn(4, 1, 8), labels=torch.tensor([0, 0, 1, 2]), return_stats=True)
    assert torch.isfinite(loss) and stats["anchors_with_positive"] == 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(views=torch.randn(4, 8)), "`views` must have 3 dimensions"),
        (dict(views=torch.ones(4, 2, 8, dtype=torch.long)), "`views` must be a floating-point"),
        (dict(views=torch.tensor([[[float("nan"), 1.0], [1.0, 0.0]]])), "`views` contains NaN or inf"),
        (dict(views=torch.tensor([[[float("inf"), 1.0], [1.0, 0.0]]])), "`views` contains NaN or inf"),
        (dict(views=torch.randn(4, 2, 8), labels=torch.zeros(3, dtype=torch.long)), "`labels` must have shape"),
        (dict(views=torch.randn(4, 2, 8), labels=torch.zeros(4)), "`labels` must be an integer"),
        (dict(views=torch.randn(4, 2, 8), negatives=torch.randn(4, 1, 7)), "`negatives` must be"),
        (dict(views=torch.randn(4, 2, 8), view_mask=torch.ones(4, 2)), "`view_mask` must have dtype"),
        (dict(views=torch.randn(4, 2, 8), negative_mask=torch.ones(4, 1, dtype=torch.bool)), "without `negatives`"),
        (dict(views=torch.randn(4, 2, 8), extra_negatives=torch.randn(3, 5)), "`extra_negatives` must be"),
    ],
)
def test_bad_inputs_get_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SPACLCriterion()(**kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(temperature=0), "temperature"),
        (dict(temperature=-1), "temperature"),
        (dict(num_positives=0), "num_positives"),
        (dict(num_positives=1.5), "num_positives"),
        (dict(screening_mass=0), "screening_mass"),
        (dict(screening_mass=1.01), "screening_mass"),
        (dict(min_negatives=-1), "min_negatives"),
        (dict(dynamic_anchor="yes"), "dynamic_anchor"),
        (dict(candidate_views="some"), "candidate_views"),
        (dict(generator="gan"), "generator"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        SPACLCriterion(**kwargs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_is_finite_and_close_to_float32(dtype):
    g = torch.Generator().manual_seed(6)
    layer = torch.nn.Linear(16, 16)
    x = torch.randn(32, 3, 16, generator=g)
    criterion = SPACLCriterion(temperature=0.1)
    reference = criterion(layer(x))
    with torch.autocast("cpu", dtype=dtype):
        emb = layer(x)
        assert emb.dtype == dtype
        loss = criterion(emb)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert abs(loss.item() - reference.item()) < 0.05 * abs(reference.item())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_spacl_loss_functional_stats_and_masks():
    g = torch.Generator().manual_seed(7)
    a = torch.randn(8, 12, generator=g)
    pos = torch.randn(8, 2, 12, generator=g)
    pos_mask = torch.tensor([[True, True]] * 7 + [[False, False]])
    shared = torch.randn(20, 12, generator=g)
    loss, stats = spacl_loss(a, pos, pos_mask, shared, temperature=0.1, mass=0.9)
    assert torch.isfinite(loss) and 0 < stats["kept_negative_fraction"] < 1
    assert stats["anchors_with_positive"] == pytest.approx(7 / 8)
    # screening off keeps everything, and the loss can only grow when negatives are added back
    loss_all, stats_all = spacl_loss(a, pos, pos_mask, shared, temperature=0.1, screening=False)
    assert stats_all["kept_negative_fraction"] == 1.0 and loss_all >= loss
    with pytest.raises(ValueError, match="`positives`"):
        spacl_loss(a, pos[:4])
    with pytest.raises(ValueError, match="`shared_negative_mask`"):
        spacl_loss(a, pos, shared_negative_mask=torch.ones(8, 3, dtype=torch.bool))


def test_candidate_view_mask_overrides_the_candidate_convention():
    g = torch.Generator().manual_seed(8)
    views = torch.randn(8, 3, 16, generator=g)
    criterion = plain_criterion(candidate_views="all")
    # only view 1 of other samples as candidates == the columns convention on the first two views... plus
    # view 2 (an extra anchor encoding) excluded: equal to the columns convention on views [0, 1] with view 2 inert
    masked = criterion(views, candidate_view_mask=torch.tensor([False, True, False]))
    columns = plain_criterion(candidate_views="columns")(views[:, :2])
    assert torch.allclose(masked, columns, atol=1e-6)
    with pytest.raises(ValueError, match="`candidate_view_mask`"):
        criterion(views, candidate_view_mask=torch.tensor([True, False]))


def test_column_layout_for_batch_and_spacl_from_columns():
    from spacl_hf.core import ColumnLayout, spacl_from_columns

    assert ColumnLayout.for_batch(1, True, anchor_views=2) == ColumnLayout(2, 0, 0, uses_labels=True)
    assert ColumnLayout.for_batch(4, False, num_positive_columns=2) == ColumnLayout(1, 2, 1, uses_labels=False)
    for columns, labels, positives in [(1, False, 1), (2, True, 1), (2, False, 2)]:
        with pytest.raises(ValueError, match="Accepted formats"):
            ColumnLayout.for_batch(columns, labels, positives)
    # (anchor x2 encodings, positive, negative), column-major: equal to the criterion with the anchor-side
    # encodings excluded from the candidates and the negative column passed as negatives
    g = torch.Generator().manual_seed(9)
    columns = torch.randn(4, 6, 8, generator=g)
    layout = ColumnLayout(2, 1, 1, uses_labels=False)
    criterion = SPACLCriterion(temperature=0.1)
    loss, _ = spacl_from_columns(criterion, columns, layout)
    expected = criterion(
        columns[:3].transpose(0, 1), negatives=columns[3:].transpose(0, 1), dynamic_anchor=False,
        candidate_view_mask=torch.tensor([False, False, True]),
    )  # fmt: skip
    assert torch.allclose(loss, expected)
    with pytest.raises(ValueError, match="K=4"):
        spacl_from_columns(criterion, columns[:3], layout)


@pytest.mark.parametrize("bad", [0.0, 1e-5, 1e-10, 1e-40, float("inf"), float("nan"), -0.1, True, "0.1"])
def test_temperature_must_be_finite_and_not_below_the_masking_bound(bad):
    with pytest.raises(ValueError, match="`temperature`.*finite number >= 0.0001"):
        SPACLCriterion(temperature=bad)
    with pytest.raises(ValueError, match="`temperature`"):
        spacl_loss(torch.randn(4, 8), torch.randn(4, 1, 8), temperature=bad)
    loss = SPACLCriterion(temperature=1e-4, num_positives=1)(torch.randn(8, 2, 16))
    assert torch.isfinite(loss)


def test_new_options_reject_bad_values_naming_the_argument():
    for name, value in [("screening_weight", "cosine"), ("positive_pool", "classes"), ("candidate_views", "none"),
                        ("anchor_mode", "all")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"`{name}` must be one of"):
            SPACLCriterion(**{name: value})
    with pytest.raises(ValueError, match="positive_pool"):  # one view, labels, own-views pool: no positive at all
        SPACLCriterion(positive_pool="views")(torch.randn(4, 1, 8), labels=torch.tensor([0, 0, 1, 1]))


def test_single_labelled_column_has_negatives_under_auto_and_warns_under_columns():
    from spacl_hf.core import ColumnLayout, spacl_from_columns

    g = torch.Generator().manual_seed(0)
    column = torch.randn(1, 12, 16, generator=g)
    labels = torch.arange(12) % 4
    layout = ColumnLayout(1, 0, 0, uses_labels=True)
    loss, stats = spacl_from_columns(SPACLCriterion(temperature=0.1, candidate_views="auto"), column, layout, labels)
    assert loss > 0.1 and stats["anchors_without_negatives"] == 0.0
    with pytest.warns(UserWarning, match="no candidate negative"):
        loss, stats = spacl_from_columns(
            SPACLCriterion(temperature=0.1, candidate_views="columns"), column, layout, labels
        )
    assert loss == 0.0 and stats["anchors_without_negatives"] == 1.0


def test_collapsed_embeddings_without_ids_are_not_a_silent_zero():
    criterion = SPACLCriterion(temperature=0.1, num_positives=1, screening=False)
    same = torch.ones(5, 2, 4, requires_grad=True)
    with pytest.warns(UserWarning, match="collapsed"):
        loss = criterion(same)
    # every logit equal: 1 positive against 8 negatives (the other samples' 2 views) -> log(9)
    assert abs(float(loss) - math.log(9)) < 1e-5
    # with content ids saying they are distinct inputs, nothing is masked either
    ids = torch.arange(10).view(5, 2)
    assert abs(float(criterion(same, view_ids=ids)) - math.log(9)) < 1e-5
    # with ids saying every input is the same text, they are real duplicates: no negative, warned
    criterion_fresh = SPACLCriterion(temperature=0.1, num_positives=1, screening=False)
    with pytest.warns(UserWarning, match="no candidate negative"):
        assert float(criterion_fresh(same, view_ids=torch.zeros(5, 2, dtype=torch.long))) == 0.0


def test_activity_statistics_name_inert_components_with_two_views():
    g = torch.Generator().manual_seed(0)
    criterion = SPACLCriterion(temperature=0.1, screening_weight="similarity")
    _, two = criterion(torch.randn(32, 2, 16, generator=g), return_stats=True)
    assert two["anchor_not_first_view"] == 0.0 and two["positives_reordered"] == 0.0  # inert by construction
    _, four = criterion(torch.randn(32, 4, 16, generator=g), return_stats=True)
    assert four["anchor_not_first_view"] > 0.3 and four["positives_reordered"] > 0.3
    assert 0 < four["screened_weight_fraction"] < 1 and four["kept_negative_fraction"] < 0.9
    assert two["own_view_positives"] == 1.0
    labels = torch.arange(32) % 4
    _, pooled = SPACLCriterion(temperature=0.1)(torch.randn(32, 4, 16, generator=g), labels=labels, return_stats=True)
    _, own_first = SPACLCriterion(temperature=0.1, positive_pool="views+labels")(
        torch.randn(32, 4, 16, generator=g), labels=labels, return_stats=True
    )
    assert own_first["own_view_positives"] == 1.0 and pooled["own_view_positives"] < 0.5
