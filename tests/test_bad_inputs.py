"""Bad inputs and faults a careful user runs into: each gets a clear error (or warning) naming what is wrong.

Rules (CONTRIBUTING.md): explicit paths never fall back; readers never skip rows silently; ``torch.load`` only
with ``weights_only=True``; a run that trained nothing is not a success; validate before loading anything.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
from datasets import Dataset  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from spacl_hf import SPACLDataCollator, SPACLTrainer, SPACLTrainingArguments  # noqa: E402
from spacl_hf.common.data_files import find_data_dir, read_sts, read_tsv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [f"sentence number {i} about topic {i % 5}" for i in range(16)]


def make_trainer(tiny_encoder_dir, tmp_path, **overrides) -> SPACLTrainer:
    settings = dict(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-3, report_to="none",
        save_strategy="no", logging_steps=1, use_cpu=True, seed=0, spacl_generator_warmup_steps=1,
    )  # fmt: skip
    settings.update(overrides)
    dataset = Dataset.from_dict({"anchor": TEXTS, "positive": [t + " indeed" for t in TEXTS]})
    return SPACLTrainer(
        model=AutoModel.from_pretrained(tiny_encoder_dir), args=SPACLTrainingArguments(**settings),
        train_dataset=dataset, eval_dataset=dataset,
        data_collator=SPACLDataCollator(AutoTokenizer.from_pretrained(tiny_encoder_dir), max_length=32),
    )  # fmt: skip


# 1. resuming never runs code from a checkpoint, and a broken file is named
class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_crafted_generator_checkpoint_does_not_execute(tiny_encoder_dir, tmp_path):
    trainer = make_trainer(tiny_encoder_dir, tmp_path / "out")
    marker = tmp_path / "executed.txt"
    path = tmp_path / "spacl_generator.pt"
    with open(path, "wb") as handle:
        pickle.dump({"generator": _Exploit(str(marker))}, handle)
    with pytest.raises(ValueError, match=r"spacl_generator\.pt is not a valid SPACL generator checkpoint"):
        trainer._load_generator_state(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", None], ids=["empty", "truncated", "no-key"])
def test_broken_generator_checkpoint_names_the_file(tiny_encoder_dir, tmp_path, content):
    trainer = make_trainer(tiny_encoder_dir, tmp_path / "out")
    path = tmp_path / "spacl_generator.pt"
    if content is None:
        torch.save({"something": torch.zeros(1)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=str(path).replace(".", r"\.")):
        trainer._load_generator_state(str(path))


def test_a_generator_checkpoint_of_another_size_names_the_file(tiny_encoder_dir, tmp_path):
    from spacl_hf import AdversarialNegativeGenerator

    trainer = make_trainer(tiny_encoder_dir, tmp_path / "out")
    path = tmp_path / "spacl_generator.pt"
    torch.save({"generator": AdversarialNegativeGenerator(7).state_dict()}, path)  # another embedding size
    with pytest.raises(ValueError, match=r"spacl_generator\.pt holds a generator that does not fit"):
        trainer._load_generator_state(str(path))


def test_resuming_with_a_new_generator_lr_applies_it_and_warns(tiny_encoder_dir, tmp_path):
    old = make_trainer(tiny_encoder_dir, tmp_path / "a", spacl_generator_lr=1e-4)
    path = tmp_path / "spacl_generator.pt"
    torch.save(old.extra_state(), path)
    new = make_trainer(tiny_encoder_dir, tmp_path / "b", spacl_generator_lr=1e-3)
    with pytest.warns(UserWarning, match="spacl_generator_lr=0.001"):
        new._load_generator_state(str(path))
    generator = new.criterion.generator
    assert all(g["lr"] == 1e-3 for o in (generator.generator_optimizer, generator.discriminator_optimizer)
               for g in o.param_groups)  # fmt: skip


# 2. an explicit data folder never falls back
def test_explicit_data_folder_that_does_not_exist_raises(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="/no/such/dir"):
        find_data_dir("/no/such/dir")
    monkeypatch.setenv("SPACL_DATA_DIR", "/no/such/env/dir")
    with pytest.raises(FileNotFoundError, match="SPACL_DATA_DIR"):
        find_data_dir()
    monkeypatch.delenv("SPACL_DATA_DIR")
    from spacl_hf.ood import load_clinc150

    with pytest.raises(FileNotFoundError, match="/no/such/dir"):
        load_clinc150("/no/such/dir")


# 3. the collator reads columns as SPACLLoss does, and fails instead of guessing
@pytest.mark.parametrize(
    "row, message",
    [
        ({"id": 7, "anchor": "a", "positive": "b"}, "Column 'id' holds int"),
        ({"anchor": "a", "positive": "b", "score": 0.0}, "Column 'score' holds float"),
        ({"anchor": None, "positive": "b"}, "Column 'anchor' holds NoneType"),
        ({"text": "a", "label": "greeting"}, "integer class labels.*Map them to integers"),
        ({"text": "a", "label": 0.5}, "integer class labels"),
    ],
)
def test_collator_rejects_ambiguous_or_non_text_columns(tiny_encoder_dir, row, message):
    collator = SPACLDataCollator(AutoTokenizer.from_pretrained(tiny_encoder_dir))
    other = {k: (v if not isinstance(v, str) else v + "x") for k, v in row.items()}
    with pytest.raises(ValueError, match=message):
        collator([row, other])


def test_trainer_without_spacl_collator_says_which_to_use(tiny_encoder_dir, tmp_path):
    with pytest.raises(ValueError, match="SPACLDataCollator"):
        SPACLTrainer(model=AutoModel.from_pretrained(tiny_encoder_dir),
                     args=SPACLTrainingArguments(str(tmp_path), report_to="none", use_cpu=True),
                     train_dataset=Dataset.from_dict({"anchor": TEXTS, "positive": TEXTS}))  # fmt: skip


# 4. eval_loss exists and drives load_best_model_at_end
def test_evaluate_reports_eval_loss_and_best_model_selection_works(tiny_encoder_dir, tmp_path):
    trainer = make_trainer(
        tiny_encoder_dir, tmp_path / "out", max_steps=4, eval_strategy="steps", eval_steps=2, save_strategy="steps",
        save_steps=2, load_best_model_at_end=True, metric_for_best_model="loss", per_device_eval_batch_size=8,
    )  # fmt: skip
    steps_before = trainer.criterion.generator.steps
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and metrics["eval_loss"] > 0
    assert trainer.criterion.generator.steps == steps_before  # evaluation does not train the GAN
    trainer.train()
    assert trainer.state.best_metric is not None and trainer.state.best_model_checkpoint is not None


# 5. readers name the file and the line
def test_readers_reject_short_rows_and_bad_scores(tmp_path):
    path = tmp_path / "sts.tsv"
    path.write_text("sentence1\tsentence2\tscore\na\tb\t1.0\nonly two\tfields\nc\td\t2.0\n")
    with pytest.raises(ValueError, match=r"sts\.tsv, line 3: 2 TAB-separated fields"):
        read_tsv(path, ("sentence1", "sentence2", "score"))
    path.write_text("sentence1\tsentence2\tscore\na\tb\t1.0\nc\td\tnan\n")
    with pytest.raises(ValueError, match=r"sts\.tsv, line 3: score 'nan' is not a finite number"):
        read_sts(path)
    path.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        read_sts(path)


@pytest.mark.parametrize(
    "content, message",
    [("", "is empty"), ("sentence1\tsentence2\tscore\na\tb\t1.0\n", "1 pair"),
     ("sentence1\tsentence2\tscore\na\tb\t1.0\nc\td\t1.0\n", "constant scores")],  # fmt: skip
    ids=["empty", "one-row", "constant"],
)
def test_mteb_local_task_rejects_files_without_a_correlation(tmp_path, content, message):
    pytest.importorskip("mteb")
    from spacl_hf.mteb import local_sts_task

    path = tmp_path / "sts.tsv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        local_sts_task(path)


# 6. the flagship fails before loading anything
def _train_sts():
    spec = importlib.util.spec_from_file_location("train_sts", ROOT / "examples" / "train_sts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_sts"] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max_train_samples", "-5"], "--max_train_samples"),
        (["--temperature", "0"], "--temperature"),
        (["--data_dir", "/no/such/dir"], "/no/such/dir"),
        (["--push_to_hub", "--hub_model_id", "user/x"], "needs a token"),
    ],
)
def test_train_sts_fails_fast_on_bad_arguments(tmp_path, monkeypatch, extra, message):
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    start = time.perf_counter()
    with pytest.raises(SystemExit, match=message):
        _train_sts().main(["--output_dir", str(tmp_path / "out"), "--report_to", "none"] + extra)
    assert time.perf_counter() - start < 5  # before any model is loaded


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_train_sts_fails_fast_on_unwritable_output(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SystemExit, match="not writable"):
        _train_sts().main(["--output_dir", str(locked / "out"), "--report_to", "none"])


def test_train_sts_fails_fast_on_an_output_path_that_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match="not writable"):
        _train_sts().main(["--output_dir", str(blocker / "out"), "--report_to", "none"])


# 7. smaller ones
def test_mahalanobis_on_one_example_per_class_warns():
    from spacl_hf.ood.scorers import MahalanobisScorer

    with pytest.warns(UserWarning, match="one example per class"):
        MahalanobisScorer().fit(torch.randn(4, 8), torch.arange(4))


@pytest.mark.parametrize(
    "name, message",
    [("someone/no-such-model", "cannot be reached"), ("/no/such/model", "is not a folder")],
)
def test_train_sts_model_that_cannot_be_found_fails_at_once(tmp_path, monkeypatch, name, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without network; hub_reachable() says no
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    start = time.perf_counter()
    with pytest.raises(SystemExit, match=message):
        _train_sts().main(["--model_name_or_path", name, "--output_dir", str(tmp_path / "out"), "--report_to", "none"])
    assert time.perf_counter() - start < 5  # no retries against the Hub
    assert not (tmp_path / "out" / "scores.json").exists()


def test_ood_metrics_leave_nothing_in_the_home_cache(tmp_path):
    """evaluate copies a module loaded by path into ~/.cache/huggingface and writes lock files there: the shipped
    metrics keep both in a private temporary folder."""
    import subprocess

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_"))} | {"HOME": str(home)}
    code = (
        "from spacl_hf.ood import load_metric\n"
        "print(load_metric('ood_detection').compute(scores=[0.1, 0.9], references=[0, 1])['auroc'])\n"
        "print(load_metric('open_intent').compute(predictions=[0, -1], references=[0, -1])['macro_f1'])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1.0", "1.0"]
    assert [p.relative_to(home) for p in home.rglob("*")] == []


def test_string_labels_get_a_clear_error_before_the_first_batch(tiny_st_model, tmp_path):
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from spacl_hf import SPACLLoggingCallback, SPACLLoss

    dataset = Dataset.from_dict({"text": TEXTS[:8], "label": ["a", "b"] * 4})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8, report_to="none", use_cpu=True
    )
    loss = SPACLLoss(tiny_st_model)
    trainer = SentenceTransformerTrainer(model=tiny_st_model, args=args, train_dataset=dataset, loss=loss)
    SPACLLoggingCallback.attach(trainer, loss)
    with pytest.raises(ValueError, match=r"'label' column holds strings.*class_encode_column"):
        trainer.train()
    # the remedy the message gives trains
    trainer.train_dataset = dataset.class_encode_column("label")
    trainer.train()
    assert trainer.state.global_step == 1


def test_the_generator_is_in_the_checkpoint_before_older_checkpoints_are_deleted(tiny_encoder_dir, tmp_path,
                                                                                 monkeypatch):  # fmt: skip
    """With save_total_limit=1 the Trainer deletes the previous checkpoint inside its save: by then the new one
    must already hold the generator, or an interrupt there would leave no checkpoint that can resume."""
    import transformers.trainer as trainer_module

    seen = []
    real_rotate = trainer_module.rotate_checkpoints

    def rotate(output_dir, **kwargs):
        newest = max(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        seen.append((newest.name, (newest / "spacl_generator.pt").is_file()))
        return real_rotate(output_dir=output_dir, **kwargs)

    monkeypatch.setattr(trainer_module, "rotate_checkpoints", rotate)
    trainer = make_trainer(tiny_encoder_dir, tmp_path, max_steps=2, save_strategy="steps", save_steps=1,
                           save_total_limit=1)  # fmt: skip
    trainer.train()
    assert seen == [("checkpoint-1", True), ("checkpoint-2", True)]
    assert [p.name for p in tmp_path.glob("checkpoint-*")] == ["checkpoint-2"]
