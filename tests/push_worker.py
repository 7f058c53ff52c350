"""Run in a subprocess whose HF_ENDPOINT points at the loopback stand-in: train a tiny model with SPACLLoss,
then push it with ``model.push_to_hub`` or with the trainer's ``push_to_hub=True``."""

import sys

from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

from spacl_hf import SPACLLoss

model_dir, output_dir, mode, repo_id = sys.argv[1:5]
transformer = Transformer(model_dir, max_seq_length=32)
model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")], device="cpu")
texts = [f"sentence number {i} about topic {i % 5}" for i in range(16)]
dataset = Dataset.from_dict({"anchor": texts, "positive": [t + " indeed" for t in texts]})
loss = SPACLLoss(model, generator_warmup_steps=0)
args = SentenceTransformerTrainingArguments(
    output_dir=output_dir, max_steps=2, per_device_train_batch_size=8, report_to="none", save_strategy="no",
    use_cpu=True, push_to_hub=(mode == "trainer"), hub_model_id=repo_id if mode == "trainer" else None,
    hub_token="hf_fake_token_for_the_loopback_server",
)  # fmt: skip
trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
trainer.train()
if mode == "trainer":
    trainer.push_to_hub()
else:
    model.push_to_hub(repo_id, token="hf_fake_token_for_the_loopback_server", replace_model_card=True)
print("pushed")
