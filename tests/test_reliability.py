"""Reliability fixes: silent wrong results turned into right results or clear messages (the core and shared pieces)."""

import warnings

import pytest
import torch

from spacl_hf.core import SPACLCriterion, relative_screen
from spacl_hf.core.bank import content_hash


def test_label_batches_without_any_positive_warn_instead_of_training_silently_at_zero():
    criterion = SPACLCriterion(temperature=0.1)
    with pytest.warns(UserWarning, match="none of the 8 anchors in this batch has a positive"):
        loss = criterion(torch.randn(8, 1, 16), labels=torch.arange(8))
    assert float(loss) == 0.0  # the loss is what it is; the warning says why


def test_content_hash_tells_a_vector_from_its_negation():
    # a linear hash of the bits gave u and -u the same id for an even dimension (the sign bits cancel mod 2**64)
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        rows = torch.randn(64, 8, generator=g, dtype=dtype)
        assert not (content_hash(rows) == content_hash(-rows)).any()
        assert torch.equal(content_hash(rows), content_hash(rows.clone()))
    # and a real negative that is the anchor's negation is no longer masked as a duplicate
    anchor = torch.nn.functional.normalize(torch.randn(1, 8, dtype=torch.float64), dim=-1)
    views = torch.stack([torch.cat([anchor, anchor * 0.9 + 0.1]), torch.cat([-anchor, -anchor])], dim=0)
    _, stats = SPACLCriterion(temperature=0.5, screening=False)(views, return_stats=True)
    assert float(stats["kept_negatives_per_anchor"]) == 2.0  # both views of the other sample are negatives


@pytest.mark.parametrize("weight", ["softmax", "similarity"])
def test_relative_screen_rejects_positive_infinity_and_treats_negative_infinity_as_missing(weight):
    with pytest.raises(ValueError, match=r"\+inf"):
        relative_screen(torch.tensor([[float("inf"), 0.5, 0.1]]), weight=weight)
    keep = relative_screen(torch.tensor([[0.9, float("-inf"), 0.5, 0.4]]), mass=0.9, weight=weight)
    assert not bool(keep[0, 1]) and bool(keep[0, 0])  # -inf is a missing candidate: never kept, never a NaN


def test_per_class_sampler_takes_numpy_and_torch_integer_labels():
    np = pytest.importorskip("numpy")
    from spacl_hf.common.samplers import PerClassBatchSampler

    plain = [0, 0, 1, 1, 2, 2, 3, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for labels in (np.array(plain), torch.tensor(plain), [np.int64(x) for x in plain]):
            batches = list(PerClassBatchSampler(labels, batch_size=4, per_class=2, seed=0))
            assert sorted(i for b in batches for i in b) == list(range(8))
    with pytest.raises(ValueError, match="must be integers"):
        PerClassBatchSampler([0.5, 1.5, 0.5, 1.5], batch_size=4, per_class=2)
