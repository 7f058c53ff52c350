"""Diagnostics on constructed geometries whose answer is known."""

import math

import pytest
import torch

from spacl_hf.core.diagnostics import alignment, effective_rank, negative_mean_parallelism, uniformity

scipy = pytest.importorskip("scipy")
from spacl_hf.diagnostics import collapse_report, positive_multiple_in_hull  # noqa: E402


def test_hull_check_on_known_planar_geometries():
    p = torch.tensor([1.0, 0.0])
    # symmetric around p: their midpoint (1, 0) is p itself -> collapse possible
    assert positive_multiple_in_hull(p, torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
    # symmetric around -p: only a negative multiple of p is in the hull -> no collapse
    assert not positive_multiple_in_hull(p, torch.tensor([[-1.0, 1.0], [-1.0, -1.0]]))
    # all on one side of the p-axis: no multiple of p at all
    assert not positive_multiple_in_hull(p, torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    # 3-D: a triangle pierced by the p-axis
    p3 = torch.tensor([0.0, 0.0, 1.0])
    triangle = torch.tensor([[1.0, 0.0, 1.0], [-1.0, 1.0, 1.0], [-1.0, -1.0, 1.0]])
    assert positive_multiple_in_hull(p3, triangle)
    assert not positive_multiple_in_hull(p3, triangle * torch.tensor([1.0, 1.0, -1.0]))


def test_parallelism_is_one_for_symmetric_negatives_and_minus_one_for_opposite_ones():
    p = torch.tensor([[1.0, 0.0, 0.0]])
    around = torch.tensor([[[0.8, 0.6, 0.0], [0.8, -0.6, 0.0]]])
    opposite = torch.tensor([[[-0.8, 0.6, 0.0], [-0.8, -0.6, 0.0]]])
    assert negative_mean_parallelism(p, around).item() == pytest.approx(1.0, abs=1e-6)
    assert negative_mean_parallelism(p, opposite).item() == pytest.approx(-1.0, abs=1e-6)
    # masking one negative away leaves the other: cos(p, (0.8, 0.6)) = 0.8
    mask = torch.tensor([[True, False]])
    assert negative_mean_parallelism(p, around, mask).item() == pytest.approx(0.8, abs=1e-6)
    assert math.isnan(negative_mean_parallelism(p, around, torch.tensor([[False, False]])).item())


def test_collapse_report_counts_anchors_at_risk():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    negatives = torch.tensor([[[1.0, 1.0], [1.0, -1.0]], [[-1.0, 1.0], [-1.0, -1.0]]])
    report = collapse_report(p, negatives, temperature=0.5)
    assert report["fraction_in_hull"] == 0.5 and report["fraction_at_risk"] == 0.5
    assert report["mean_parallelism"] == pytest.approx(0.0, abs=1e-6)  # +1 and -1


def test_effective_rank_full_and_collapsed():
    g = torch.Generator().manual_seed(0)
    full = torch.randn(512, 16, generator=g)
    line = torch.randn(512, 1, generator=g) * torch.randn(1, 16, generator=g)
    assert effective_rank(full) > 14  # isotropic: close to the dimension
    assert effective_rank(line) < 1.01  # everything on one line
    two = torch.cat([torch.randn(256, 2, generator=g), torch.zeros(256, 14)], dim=1)
    assert 1.8 < effective_rank(two) < 2.01


def test_alignment_and_uniformity_on_known_sets():
    x = torch.nn.functional.normalize(torch.randn(64, 8), dim=-1)
    assert alignment(x, x) == pytest.approx(0.0, abs=1e-7)
    assert alignment(x, -x) == pytest.approx(4.0, abs=1e-5)  # ||x - (-x)||^2 = 4 on the unit sphere
    same = torch.ones(10, 8)
    assert uniformity(same) == pytest.approx(0.0, abs=1e-6)  # every distance 0: log mean exp(0) = 0
    spread = torch.nn.functional.normalize(torch.randn(256, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    assert uniformity(spread) < uniformity(same) - 1.0
    with pytest.raises(ValueError, match="at least 2 rows"):
        uniformity(torch.ones(1, 3))


def test_probe_diagnostics_flags_a_collapsed_batch_and_passes_a_healthy_one():
    from spacl_hf.diagnostics import SPACLDiagnosticsCallback

    g = torch.Generator().manual_seed(0)
    healthy = torch.randn(32, 2, 64, generator=g)
    healthy[:, 1] = healthy[:, 0] + 0.1 * torch.randn(32, 64, generator=g)
    direction = torch.randn(64, generator=g)
    collapsed = direction + 1e-3 * torch.randn(32, 2, 64, generator=g)  # every embedding on one line
    callback = SPACLDiagnosticsCallback(probe=lambda model: collapsed, rank_threshold=0.2)
    model = torch.nn.Linear(1, 1)
    with pytest.warns(UserWarning, match="effective rank"):
        bad = callback.measure(model)
    good = SPACLDiagnosticsCallback(probe=lambda model: healthy).measure(model)
    assert bad["relative_rank"] < 0.2 < good["relative_rank"]
    assert good["alignment"] < 0.1 and good["uniformity"] < bad["uniformity"]
    with pytest.raises(ValueError, match=r"\[B, 2, D\]"):
        SPACLDiagnosticsCallback(probe=lambda model: torch.zeros(4, 3, 8)).measure(model)
    with pytest.raises(ValueError, match="`every_n_steps`"):
        SPACLDiagnosticsCallback(probe=lambda model: healthy, every_n_steps=0)


def test_callback_logs_diagnostics_during_training(tiny_st_model, tmp_path):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from spacl_hf import SPACLLoss
    from spacl_hf.diagnostics import SPACLDiagnosticsCallback, sentence_transformer_probe

    texts = [f"sentence {i} about topic {i % 5}" for i in range(16)]
    dataset = Dataset.from_dict({"anchor": texts, "positive": [t + " indeed" for t in texts]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, report_to="none", save_strategy="no",
        logging_steps=1, use_cpu=True,
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(
        model=tiny_st_model, args=args, train_dataset=dataset, loss=SPACLLoss(tiny_st_model, generator_warmup_steps=0)
    )
    callback = SPACLDiagnosticsCallback.attach(
        trainer, sentence_transformer_probe(texts[:8], [t + " indeed" for t in texts[:8]]), every_n_steps=1
    )
    trainer.train()
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert all("diagnostics/effective_rank" in e and "diagnostics/fraction_at_risk" in e for e in logged)
    assert len(callback.history) == 2
