"""Train a tiny dropout-free encoder for a few steps with SPACL; run by the multi-process tests both as one
process (batch 2B) and under `accelerate launch --num_processes 2` (batch B per process).

    python tests/mp_worker.py {trainer|st} MODEL_DIR OUT_DIR PER_DEVICE_BATCH
"""

import os
import sys

import torch
from datasets import Dataset

mode, model_dir, out_dir, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rank = int(os.environ.get("RANK", "0"))
texts = [f"sentence {i} is about subject {i % 7} with detail {i % 3}" for i in range(32)]
common = dict(
    output_dir=os.path.join(out_dir, "run"), max_steps=3, per_device_train_batch_size=batch, learning_rate=1e-3,
    report_to="none", save_strategy="no", logging_steps=1, use_cpu=True, seed=0, dataloader_drop_last=True,
    ddp_find_unused_parameters=True,
)  # fmt: skip

if mode == "trainer":
    from transformers import AutoModel, AutoTokenizer

    from spacl_hf.trainer import SPACLDataCollator, SPACLTrainer, SPACLTrainingArguments

    dataset = Dataset.from_dict(
        {"anchor": texts, "positive": [t + " indeed" for t in texts], "negative": ["not " + t for t in texts]}
    )
    model = AutoModel.from_pretrained(model_dir)
    args = SPACLTrainingArguments(**common, spacl_generator_warmup_steps=1, spacl_dynamic_anchor=True)
    trainer = SPACLTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=SPACLDataCollator(AutoTokenizer.from_pretrained(model_dir), max_length=32),
    )
    generator = trainer.criterion.generator
else:
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from spacl_hf import SPACLLoss

    dataset = Dataset.from_dict({"anchor": texts, "positive": [t + " indeed" for t in texts]})
    transformer = Transformer(model_dir, max_seq_length=32)
    model = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")], device="cpu"
    )
    loss = SPACLLoss(model, generator_warmup_steps=1, gather_across_devices=True, num_views=2)
    trainer = SentenceTransformerTrainer(
        model=model, args=SentenceTransformerTrainingArguments(**common), train_dataset=dataset, loss=loss
    )
    generator = loss.generator

trainer.train()
unwrapped = trainer.model
torch.save(
    {
        "weights": {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()},
        "generator": {k: v.detach().cpu() for k, v in generator.state_dict().items() if torch.is_tensor(v)},
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    },
    os.path.join(out_dir, f"rank{rank}.pt"),
)
