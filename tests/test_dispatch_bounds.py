"""The loss's cost as code: ATen ops and host-device syncs per training step (counted on CPU, deterministic), and
``torch.compile`` taking the default path as one graph. Timings live in ``benchmarks/``; these counts are exact.
"""

import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from dispatch_count import DispatchCounter, count_step, mnrl, spacl_variant  # noqa: E402

from spacl_hf.core import AdversarialNegativeGenerator, ColumnLayout, SPACLCriterion, spacl_from_columns  # noqa: E402

# A little above what the lean path reaches (benchmarks/results/dispatch_count.md): a regression trips them.
BOUNDS = {"defaults": 330, "no generator": 145, "every component off": 115}


def text_pair_step(variant: str, with_stats: bool = False):
    torch.manual_seed(0)
    base, ids = torch.randn(2, 256, 384), torch.randint(0, 2**62, (2, 256))
    layout = ColumnLayout.for_batch(2, has_labels=False)
    criterion = spacl_variant(variant, 384, 0.05).train()

    def step():
        columns = base.clone().requires_grad_(True)
        return spacl_from_columns(criterion, columns, layout, content_ids=ids, return_stats=with_stats)[0]

    for _ in range(3):  # past the first call's checks and the generator's warm-up
        step().backward()
    return step


@pytest.mark.parametrize("variant", list(BOUNDS))
def test_text_pair_training_step_has_no_host_sync_and_bounded_ops(variant):
    counter = count_step(text_pair_step(variant))
    assert counter.syncs == 0, counter.sync_ops
    assert counter.ops <= BOUNDS[variant], counter.ops
    # and every component off stays close to MultipleNegativesRankingLoss' own arithmetic
    if variant == "every component off":
        base = torch.randn(2, 256, 384)
        assert counter.ops <= 1.75 * count_step(lambda: mnrl(base.clone().requires_grad_(True))).ops


def test_the_counter_sees_syncs_and_statistics_steps_read_the_device():
    # the counter can fail: a boolean-mask index and an .item() are syncs
    with DispatchCounter() as counter:
        x = torch.randn(8)
        _ = x[x > 0]
        _ = x.sum().item()
    assert counter.syncs == 2
    # a logging step computes statistics and checks finiteness: that is where reads belong
    assert count_step(text_pair_step("defaults", with_stats=True)).syncs > 0


def test_statistics_are_computed_only_when_asked():
    criterion = SPACLCriterion(temperature=0.1)
    views = torch.randn(16, 2, 8)
    assert isinstance(criterion(views), torch.Tensor)
    loss, stats = criterion(views, return_stats=True)
    assert "kept_negative_fraction" in stats
    _, none = spacl_from_columns(criterion, views.transpose(0, 1), ColumnLayout(1, 1, 0, False), return_stats=False)
    assert none == {}


def test_finiteness_is_checked_on_the_first_call_and_on_statistics_calls():
    criterion = SPACLCriterion(temperature=0.1)
    bad = torch.randn(8, 2, 4)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`views` contains NaN"):
        criterion(bad)
    criterion(torch.randn(8, 2, 4))  # the first call ran: later training steps read nothing back
    assert torch.isnan(criterion(bad))  # a NaN shows as a NaN loss...
    with pytest.raises(ValueError, match="`views` contains NaN"):  # ...and is named on the next logging step
        criterion(bad, return_stats=True)


@pytest.mark.parametrize("anchor_mode", ["one", "every_view"])
def test_criterion_compiles_as_one_graph_without_the_generator(anchor_mode):
    criterion = SPACLCriterion(temperature=0.1, anchor_mode=anchor_mode)
    views = torch.randn(16, 4, 8, requires_grad=True)
    criterion(views)  # the first call's checks run eagerly
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explained = torch._dynamo.explain(criterion)(views)
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]
    # and the column front end on text pairs (SPACLLoss's path) too, with fullgraph=True on the eager backend
    layout = ColumnLayout.for_batch(2, has_labels=False)
    columns, ids = torch.randn(2, 16, 8, requires_grad=True), torch.randint(0, 2**62, (2, 16))
    pairs = SPACLCriterion(temperature=0.05, dynamic_anchor=False)
    expected = spacl_from_columns(pairs, columns, layout, content_ids=ids, return_stats=False)[0]
    compiled = torch.compile(
        lambda c: spacl_from_columns(pairs, c, layout, content_ids=ids, return_stats=False)[0],
        backend="eager", fullgraph=True,
    )  # fmt: skip
    torch.testing.assert_close(compiled(columns), expected)


def test_criterion_with_the_generator_compiles_as_one_graph_and_still_trains_it():
    """Closed-form GAN gradients, counter-based noise and tensor counters: the generator's update traces too."""
    criterion = SPACLCriterion(temperature=0.1, generator=AdversarialNegativeGenerator(8, warmup_steps=1)).train()
    views = torch.randn(16, 2, 8, requires_grad=True)
    criterion(views).backward()  # the first call's checks; ends the warm-up
    steps = criterion.generator.steps
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explained = torch._dynamo.explain(criterion)(views)
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]
    assert criterion.generator.steps == steps + 1  # the traced call still made one update
    compiled = torch.compile(criterion, backend="eager", fullgraph=True)
    compiled(views).backward()
    compiled(views).backward()
    assert criterion.generator.steps == steps + 3


def test_the_documented_compile_recipe_for_spacl_loss(tiny_st_model_no_dropout):
    """docs/guides/choosing-settings.md: `loss.criterion.compile()` compiles SPACLLoss' criterion in place."""
    pytest.importorskip("sentence_transformers")
    from spacl_hf import SPACLLoss

    features = [tiny_st_model_no_dropout.tokenize([f"text {i} {c}" for i in range(8)]) for c in ("a", "b")]
    plain = SPACLLoss(tiny_st_model_no_dropout, generator_warmup_steps=0, adversarial_negatives=False)
    expected = plain(features, labels=None)
    compiled = SPACLLoss(tiny_st_model_no_dropout, generator_warmup_steps=0, adversarial_negatives=False)
    compiled.criterion.compile(backend="eager", fullgraph=True)
    for _ in range(2):
        loss = compiled(features, labels=None)
        loss.backward()
    torch.testing.assert_close(loss, expected)
