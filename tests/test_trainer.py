"""SPACLTrainer on a tiny random encoder: formats, arguments, logging, outputs and exact resume."""

import math

import pytest
import torch

pytest.importorskip("transformers")
from datasets import Dataset  # noqa: E402
from transformers import AutoModel, AutoTokenizer, HfArgumentParser, TrainerCallback  # noqa: E402

from spacl_hf.common.pooling import pool_embeddings  # noqa: E402
from spacl_hf.trainer import EmbeddingModel, SPACLDataCollator, SPACLTrainer, SPACLTrainingArguments  # noqa: E402

TEXTS = [f"sentence {i} talks about subject {i % 5} in style {i % 3}" for i in range(24)]


def datasets():
    return {
        "pairs": (dict(), Dataset.from_dict({"anchor": TEXTS, "positive": [t + " indeed" for t in TEXTS]})),
        "triplets": (
            dict(),
            Dataset.from_dict(
                {"anchor": TEXTS, "positive": [t + " indeed" for t in TEXTS], "negative": ["not " + t for t in TEXTS]}
            ),
        ),
        "multi-positive": (
            dict(num_positive_columns=2),
            Dataset.from_dict({"anchor": TEXTS, "p1": [t + " indeed" for t in TEXTS], "p2": [t + "!" for t in TEXTS]}),
        ),
        "labels": (dict(num_views=2), Dataset.from_dict({"text": TEXTS, "label": [i % 4 for i in range(24)]})),
        "dropout-views": (
            dict(num_views=3),
            Dataset.from_dict({"anchor": TEXTS, "positive": [t + " ok" for t in TEXTS]}),
        ),
    }


def make_args(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-3, report_to="none",
        save_strategy="no", logging_steps=1, use_cpu=True, seed=0, spacl_generator_warmup_steps=1,
    )  # fmt: skip
    settings.update(overrides)
    return SPACLTrainingArguments(**settings)


@pytest.mark.parametrize("name", list(datasets()))
def test_each_format_trains_and_logs_statistics(name, tiny_encoder_dir, tmp_path):
    collator_kwargs, dataset = datasets()[name]
    model = AutoModel.from_pretrained(tiny_encoder_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = SPACLTrainer(
        model=model, args=make_args(tmp_path), train_dataset=dataset,
        data_collator=SPACLDataCollator(tokenizer, max_length=32, **collator_kwargs),
    )  # fmt: skip
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logged) == 2 and all("spacl/kept_negative_fraction" in e for e in logged)
    assert "spacl/generator_loss" in logged[-1]
    assert trainer.criterion.generator.steps == 2


def test_embedding_model_with_projection_head_trains(tiny_encoder_dir, tmp_path):
    _, dataset = datasets()["pairs"]
    model = EmbeddingModel(AutoModel.from_pretrained(tiny_encoder_dir), pooling="mean", projection_dim=16)
    head_before = model.head[-1].weight.clone()
    trainer = SPACLTrainer(
        model=model, args=make_args(tmp_path), train_dataset=dataset,
        data_collator=SPACLDataCollator(AutoTokenizer.from_pretrained(tiny_encoder_dir), max_length=32),
    )  # fmt: skip
    trainer.train()
    assert not torch.equal(head_before, model.head[-1].weight)
    assert trainer.criterion.generator.embedding_dim == 16


def test_compute_loss_returns_embeddings_for_evaluation(tiny_encoder_dir, tmp_path):
    _, dataset = datasets()["pairs"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    collator = SPACLDataCollator(tokenizer, max_length=32)
    trainer = SPACLTrainer(model=AutoModel.from_pretrained(tiny_encoder_dir), args=make_args(tmp_path),
                           train_dataset=dataset, data_collator=collator)  # fmt: skip
    batch = collator([dataset[i] for i in range(6)])
    loss, outputs = trainer.compute_loss(trainer.model, batch, return_outputs=True)
    assert loss.ndim == 0 and outputs["embeddings"].shape == (6, 32)
    with pytest.raises(ValueError, match="spacl_layout"):
        trainer.compute_loss(trainer.model, {k: v for k, v in batch.items() if k != "spacl_layout"})


def test_arguments_parse_from_the_command_line_and_name_bad_values(tmp_path):
    parser = HfArgumentParser(SPACLTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--spacl_temperature",
            "0.1",
            "--spacl_dynamic_anchor",
            "true",
            "--spacl_candidate_views",
            "all",
            "--spacl_anchor_mode",
            "every_view",
            "--use_cpu",
            "true",
        ]  # fmt: skip
    )
    assert args.spacl_temperature == 0.1 and args.spacl_dynamic_anchor and args.spacl_candidate_views == "all"
    assert args.build_criterion(embedding_dim=8).anchor_mode == "every_view"
    assert args.remove_unused_columns is False and args.dataloader_drop_last is True
    help_text = parser.format_help()
    assert "--spacl_screening_mass" in help_text and "lambda_Q" in help_text
    for flag, value, name in [
        ("--spacl_temperature", "0", "spacl_temperature"),
        ("--spacl_screening_mass", "1.5", "spacl_screening_mass"),
        ("--spacl_generator_lr", "-1", "spacl_generator_lr"),
        ("--spacl_num_positives", "0", "spacl_num_positives"),
    ]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), flag, value])


def test_collator_rejects_unknown_formats(tiny_encoder_dir):
    collator = SPACLDataCollator(AutoTokenizer.from_pretrained(tiny_encoder_dir), num_positive_columns=2)
    with pytest.raises(ValueError, match="Accepted formats"):
        collator([{"anchor": "a", "positive": "b"}])
    with pytest.raises(ValueError, match="integer class labels"):
        SPACLDataCollator(AutoTokenizer.from_pretrained(tiny_encoder_dir))([{"text": "a", "label": 0.5}])


def test_pooling_on_text_and_feature_maps():
    class Out:
        pass

    out = Out()
    out.last_hidden_state = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pool_embeddings(out, mask, "mean"), torch.tensor([[2.0, 2.0]]))
    assert torch.equal(pool_embeddings(out, mask, "cls"), torch.tensor([[1.0, 1.0]]))
    out.last_hidden_state = torch.ones(2, 5, 3, 3)
    assert pool_embeddings(out, None, "mean").shape == (2, 5)
    with pytest.raises(ValueError, match="pooler"):
        pool_embeddings(out, None, "pooler")


class StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_interrupted_and_resumed_run_matches_uninterrupted(tiny_encoder_dir, tmp_path):
    _, dataset = datasets()["triplets"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)

    def run(output_dir, callbacks=(), resume=None):
        torch.manual_seed(0)
        model = AutoModel.from_pretrained(tiny_encoder_dir)
        args = make_args(output_dir, max_steps=4, save_strategy="steps", save_steps=2, per_device_train_batch_size=6)
        trainer = SPACLTrainer(model=model, args=args, train_dataset=dataset, callbacks=list(callbacks),
                               data_collator=SPACLDataCollator(tokenizer, max_length=32))  # fmt: skip
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    interrupted = run(tmp_path / "split", callbacks=[StopAt(2)])
    assert interrupted.state.global_step == 2 and (tmp_path / "split" / "checkpoint-2" / "spacl_generator.pt").is_file()
    resumed = run(tmp_path / "split", resume=True)
    assert resumed.state.global_step == 4
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    for (name, a), (_, b) in zip(
        full.criterion.generator.state_dict().items(), resumed.criterion.generator.state_dict().items()
    ):
        if torch.is_tensor(a):
            assert torch.allclose(a, b, atol=1e-6), name
    assert full.criterion.generator.steps == resumed.criterion.generator.steps == 4


class NoisyViewsCollator:
    """Two noisy views per image, column-major, self-supervised: what a vision view pipeline produces."""

    def __call__(self, rows):
        from spacl_hf.core import ColumnLayout

        images = torch.stack([torch.tensor(r["pixels"], dtype=torch.float32) for r in rows])
        g = torch.Generator().manual_seed(len(rows))
        views = [images + 0.1 * torch.randn(images.shape, generator=g) for _ in range(2)]
        return {"pixel_values": torch.cat(views), "spacl_layout": ColumnLayout(2, 0, 0, uses_labels=False)}


@pytest.mark.parametrize(
    "family, pooling", [("vit", "pooler"), ("vit", "cls"), ("resnet", "pooler"), ("resnet", "mean")]
)
def test_vision_encoders_train_on_pixel_views(family, pooling, tmp_path):
    from transformers import ResNetConfig, ViTConfig

    torch.manual_seed(0)
    if family == "vit":
        config = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64)  # fmt: skip
    else:
        config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
    model = AutoModel.from_config(config)
    images = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    dataset = Dataset.from_dict({"pixels": images.tolist()})
    args = make_args(tmp_path, spacl_candidate_views="all", spacl_dynamic_anchor=True, spacl_pooling=pooling,
                     spacl_temperature=0.1)  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = SPACLTrainer(model=model, args=args, train_dataset=dataset, data_collator=NoisyViewsCollator())
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert all(math.isfinite(e["loss"]) for e in logged) and all(e["spacl/kept_negative_fraction"] > 0 for e in logged)
