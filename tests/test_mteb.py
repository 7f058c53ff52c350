"""The MTEB adapter: local STS task, model metadata, scores against scipy, and the command line."""

import json
import random

import pytest
import torch

pytest.importorskip("mteb")
from scipy.stats import spearmanr  # noqa: E402

from spacl_hf.mteb import evaluate_model, load_encoder, local_sts_task, mteb_model, weights_revision  # noqa: E402
from spacl_hf.mteb.__main__ import main as cli_main  # noqa: E402

WORDS = "cat dog bird car tree house river city music book game light road sun rain".split()


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb_cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


@pytest.fixture
def sts_file(tmp_path):
    rng = random.Random(0)
    lines = ["sentence1\tsentence2\tscore"]
    for _ in range(50):
        a = " ".join(rng.sample(WORDS, 4))
        b = " ".join(rng.sample(WORDS, 4))
        lines.append(f"{a}\t{b}\t{rng.uniform(0, 10):.3f}")  # a 0-10 range: any range is accepted
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_local_sts_task_matches_scipy_spearman(tiny_st_model, sts_file):
    task = local_sts_task(sts_file)
    assert task.metadata.name == "LocalSTS-pairs" and task.min_score < task.max_score
    scores = evaluate_model(tiny_st_model, [task], cache=None, show_progress_bar=False)
    rows = [line.split("\t") for line in sts_file.read_text().splitlines()[1:]]
    a = tiny_st_model.encode([r[0] for r in rows], convert_to_tensor=True)
    b = tiny_st_model.encode([r[1] for r in rows], convert_to_tensor=True)
    cosine = torch.nn.functional.cosine_similarity(a, b).numpy()
    expected = spearmanr(cosine, [float(r[2]) for r in rows]).statistic
    assert scores["LocalSTS-pairs"] == pytest.approx(expected, abs=1e-6)


def test_model_metadata_name_and_weight_revision(tiny_st_model):
    wrapped = mteb_model(tiny_st_model, "spacl/tiny")
    assert wrapped.mteb_model_meta.name == "spacl/tiny"
    before = wrapped.mteb_model_meta.revision
    assert before == weights_revision(tiny_st_model) and len(before) == 12
    with torch.no_grad():
        next(tiny_st_model.parameters()).add_(1e-3)
    assert weights_revision(tiny_st_model) != before  # a new checkpoint never reuses cached results
    assert mteb_model(tiny_st_model, "plainname").mteb_model_meta.name == "local/plainname"


def test_command_line_evaluates_a_saved_model_and_writes_json(tiny_encoder_dir, sts_file, tmp_path):
    # a plain Hugging Face encoder folder (as SPACLTrainer saves) gets mean pooling on top
    output = tmp_path / "scores.json"
    scores = cli_main(["--model", tiny_encoder_dir, "--sts-file", str(sts_file), "--output", str(output)])
    assert json.loads(output.read_text()) == scores and -1 <= scores["LocalSTS-pairs"] <= 1
    reloaded = load_encoder(tiny_encoder_dir)
    assert evaluate_model(reloaded, [local_sts_task(sts_file)], show_progress_bar=False) == pytest.approx(scores)


def test_bad_inputs_are_named(tmp_path, tiny_st_model):
    with pytest.raises(FileNotFoundError):
        local_sts_task(tmp_path / "missing.tsv")
    with pytest.raises(FileNotFoundError, match="`model`"):
        load_encoder(tmp_path / "nope")
    with pytest.raises(ValueError, match="at least one"):
        from spacl_hf.mteb import evaluate_files

        evaluate_files(tiny_st_model)
