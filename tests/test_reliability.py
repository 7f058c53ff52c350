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


@pytest.mark.parametrize("bad", [None, 5, {"query_to_doc": 1}, "query_to_doc"])
def test_directions_must_be_a_list_of_names(bad):
    from spacl_hf.sentence_transformers.spacl_loss import check_directions

    with pytest.raises(ValueError, match="`directions` must be a sequence of names"):
        check_directions(bad)


def test_an_explicit_empty_data_dir_is_an_error_not_the_default_data():
    from spacl_hf.common.data_files import find_data_dir

    with pytest.raises(FileNotFoundError, match="no fallback"):
        find_data_dir("")


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--directions", "doc_to_query"], "must hold 'query_to_doc'"),
        (["--directions", "bogus"], "must hold 'query_to_doc'"),
        (["--directions", "query_to_doc", "doc_to_query", "--num_views", "2"], "needs --num_views 1"),
        (["--cached_mini_batch_size", "0"], "--cached_mini_batch_size"),
        (["--max_seq_length", "0"], "--max_seq_length"),
        (["--data_dir", ""], "no fallback"),
    ],
)
def test_train_sts_rejects_bad_arguments_before_loading_anything(tmp_path, monkeypatch, extra, match):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import train_sts

    def no_model(name):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(train_sts, "resolve_model", no_model)
    with pytest.raises(SystemExit, match=match):
        train_sts.main(["--output_dir", str(tmp_path / "out"), *extra])


def test_train_sts_does_not_overwrite_an_earlier_run(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import train_sts

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "scores.json").write_text("{}")
    monkeypatch.setattr(train_sts, "resolve_model", lambda name: (_ for _ in ()).throw(AssertionError("loaded")))
    with pytest.raises(SystemExit, match="already holds an earlier run"):
        train_sts.main(["--output_dir", str(tmp_path / "out")])
    assert (tmp_path / "out" / "scores.json").read_text() == "{}"


def test_per_class_sampler_covers_every_sample_of_imbalanced_classes():
    from spacl_hf.common.samplers import PerClassBatchSampler

    labels = [0] * 1000 + [1] * 4 + [2] * 4 + [3] * 4
    sampler = PerClassBatchSampler(labels, batch_size=8, per_class=4, seed=0)
    batches = list(sampler)
    seen = {i for b in batches for i in b}
    assert seen == set(range(len(labels)))  # was 24 of 1,012
    assert len(batches) == len(sampler) == 250
    for batch in batches:  # every batch still holds 2 classes with 4 samples each
        counts = {}
        for i in batch:
            counts[labels[i]] = counts.get(labels[i], 0) + 1
        assert sorted(counts.values()) == [4, 4]


def test_train_intent_ood_rejects_a_bad_temperature_and_an_unwritable_folder_before_loading(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import train_intent_ood

    monkeypatch.setattr(train_intent_ood, "load_splits", lambda data: (_ for _ in ()).throw(AssertionError("loaded")))
    with pytest.raises(SystemExit, match="--temperature"):
        train_intent_ood.main(["--output_dir", str(tmp_path / "out"), "--temperature", "0"])
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit, match="not writable"):
        train_intent_ood.main(["--output_dir", str(blocker / "out")])


def test_a_bad_generator_lr_is_named_as_the_user_wrote_it(tiny_st_model):
    from spacl_hf import SPACLLoss

    with pytest.raises(ValueError, match="`generator_lr`"):
        SPACLLoss(tiny_st_model, generator_lr=-1.0)


def test_similarity_screening_keeps_min_negatives_where_the_cosines_sum_to_nonpositive():
    """The specification's rule (3.4), and the statistic that says how often it applies."""
    anchor = torch.tensor([1.0, 0.0, 0.0])
    positive = torch.tensor([0.9, 0.1, 0.0])
    others = torch.tensor([[-0.2, 1.0, 0.0], [-0.5, 0.0, 1.0], [-0.9, 0.3, 0.0], [0.1, 0.0, 1.0]])
    views = torch.stack([torch.stack([anchor, positive])] + [torch.stack([o, o]) for o in others])
    for min_negatives in (1, 2):
        criterion = SPACLCriterion(temperature=0.5, screening_weight="similarity", dynamic_anchor=False,
                                   min_negatives=min_negatives, screening_mass=0.95)  # fmt: skip
        _, stats = criterion(views, return_stats=True)
        # sample 0's candidates: cosines sum to < 0, so only its min_negatives most similar stay
        keep = relative_screen(
            (torch.nn.functional.normalize(anchor, dim=0) @ torch.nn.functional.normalize(
                others.repeat_interleave(2, 0), dim=1).T)[None], 0.95, min_negatives, weight="similarity")
        # the most similar sample (index 3: two identical views, rows 6 and 7) only, ties kept, for 1 and 2
        assert keep[0].nonzero().flatten().tolist() == [6, 7]
        assert 0 < float(stats["nonpositive_similarity_total"]) <= 1


def test_the_collator_says_which_column_is_read_as_negative_text(tiny_encoder_dir, caplog):
    """A string metadata column ('source') cannot be told from text: the first batch names every column's role."""
    import logging

    from transformers import AutoTokenizer

    from spacl_hf import SPACLDataCollator

    collator = SPACLDataCollator(AutoTokenizer.from_pretrained(tiny_encoder_dir))
    rows = [{"anchor": f"q {i}", "positive": f"p {i}", "source": "nli"} for i in range(4)]
    with caplog.at_level(logging.WARNING, logger="spacl_hf.trainer.collator"):
        batch = collator(rows)
        collator(rows)
    assert batch["spacl_layout"].negative_columns == 1
    assert caplog.text.count("as negatives") == 1 and "['source']" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spacl_hf.trainer.collator"):
        SPACLDataCollator(AutoTokenizer.from_pretrained(tiny_encoder_dir), text_columns=["anchor", "positive"])(rows)
    assert "as negatives" not in caplog.text
