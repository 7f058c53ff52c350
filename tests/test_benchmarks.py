"""The benchmarks' shared pieces (run store, sweep helper) and smoke runs of the scripts, so that they do not rot
between full runs: the image benchmark on scikit-learn's digits, the GPU check with --tiny on CPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_image_quality_runs_on_digits_and_writes_its_figures(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    prefix = tmp_path / "image_quality"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "image_quality.py"), "--dataset", "digits", "--quick", "--steps", "2",
        "--methods", "SPACL supervised", "SupCon", "cross-entropy", "--output-prefix", str(prefix),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={"MPLBACKEND": "Agg",
                            "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(prefix.with_suffix(".json").read_text())
    assert [row["method"] for row in report["summary"]] == ["SPACL supervised", "SupCon", "cross-entropy"]
    for row in report["summary"]:
        assert 0 < row["knn@20"]["mean"] <= 1 and 0 < row["linear_probe"]["mean"] <= 1
    assert report["summary"][1]["step_time_vs_supcon"] == pytest.approx(1.0)
    for suffix in (".md", ".png", "_tsne.png", "_confusion.png"):
        assert Path(f"{prefix}{suffix}").stat().st_size > 0
    assert "| SPACL supervised |" in prefix.with_suffix(".md").read_text()


def test_run_store_skips_stored_runs_and_rejects_mismatched_files(tmp_path):
    from run_store import RunStore, settings_key
    from sweep import best, by_configuration, grid, run_all

    assert settings_key({"a": 1, "b": 2}) == settings_key({"b": 2, "a": 1}) != settings_key({"a": 1, "b": 3})
    store, calls = RunStore("study", root=tmp_path), []

    def compute(settings):
        calls.append(settings)
        return {"validation": {"score": settings["lr"] * 10 + settings["seed"] / 100}}

    configurations = grid({"method": "x"}, lr=[0.1, 0.2])
    first = run_all(store, configurations, [0, 1], compute)
    assert len(calls) == 4 and len(list((tmp_path / "study").glob("*.json"))) == 4
    again = run_all(store, configurations, [0, 1, 2], compute)  # a later sitting: only the new seed runs
    assert len(calls) == 6 and [r["result"] for r in again[:2]] == [r["result"] for r in first[:2]]
    rows = by_configuration(again, "validation.score")
    top = best(rows)[0]
    assert top["configuration"] == {"method": "x", "lr": 0.2} and top["seeds"] == [0, 1, 2]
    assert top["mean"] == pytest.approx(2.01) and top["std"] == pytest.approx(0.01)
    path = store.path({"method": "x", "lr": 0.1, "seed": 0})
    record = json.loads(path.read_text())
    record["settings"]["lr"] = 0.3  # a hand-edited file is never silently reused
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="differ from the requested"):
        store.load({"method": "x", "lr": 0.1, "seed": 0})


def test_gpu_check_tiny_runs_on_cpu_and_its_budget_guard_skips(tiny_encoder_dir, tmp_path):
    import gpu_check

    prefix = tmp_path / "gpu_check"
    # as on a GPU machine that cannot receive weights: config and tokenizer only, rebuilt with random weights
    gpu_check.export_architecture(tiny_encoder_dir, tmp_path / "arch")
    assert not list((tmp_path / "arch").glob("*.safetensors"))
    arch = str(tmp_path / "arch")
    report = gpu_check.main(["--tiny", "--device", "cpu", "--model", arch, "--output-prefix", str(prefix)])
    assert report["correctness"]["passed"] and report["model"] == "random weights from " + arch
    methods = {"infonce", "spacl_softmax", "spacl_similarity", "spacl_softmax_generator", "spacl_similarity_generator"}
    assert {r["method"] for r in report["loss_only"]} == methods
    assert {(r["batch_size"], r["dtype"]) for r in report["loss_only"]} == {(16, "fp32"), (64, "fp32"),
                                                                            (16, "bf16"), (64, "bf16")}  # fmt: skip
    assert [r["loss"] for r in report["training"]] == ["MNRL", "SPACL", "CachedMNRL", "CachedSPACL"]
    assert all(r["median_ms"] > 0 for r in report["loss_only"] + report["training"])
    assert json.loads(prefix.with_suffix(".json").read_text())["correctness"]["passed"]
    assert "passed" in prefix.with_suffix(".md").read_text()
    # a budget too small for anything after the first case: the rest is skipped and said so
    small = gpu_check.main(["--tiny", "--device", "cpu", "--skip-training", "--budget-seconds", "1e-9",
                            "--output-prefix", str(tmp_path / "small")])  # fmt: skip
    assert small["loss_only"] == [] and len(small["skipped"]) == 4
    assert "Skipped to stay inside the budget" in (tmp_path / "small.md").read_text()
