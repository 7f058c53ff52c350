"""The benchmarks' shared pieces (run store, sweep helper) and smoke runs of the scripts, so that they do not rot
between full runs: the image benchmark on scikit-learn's digits, the GPU check with --tiny on CPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_image_quality_quick_runs_on_digits_and_writes_its_figures(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    prefix = tmp_path / "image_quality"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "image_quality.py"), "--quick", "--dataset", "digits", "--steps", "3",
        "--methods", "SPACL supervised", "SupCon", "cross-entropy", "--output-prefix", str(prefix),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={"MPLBACKEND": "Agg",
                            "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(prefix.with_suffix(".json").read_text())
    assert [row["name"] for row in report["final"]] == ["SPACL supervised", "SupCon", "cross-entropy"]
    for row in report["final"]:
        assert all(0 < row["scores"][s]["mean"] <= 1 for s in ("knn@20", "knn@200", "linear_probe"))
        assert row["step_seconds"]["mean"] > 0 and row["peak_memory_mb"] > 0
    # with 4 views SPACL's dynamic anchor and farthest-point selection have something to choose, and act
    activity = report["final"][0]["activity"]
    assert activity["anchor_not_first_view"] > 0 and activity["positives_reordered"] > 0
    assert "activity" not in report["final"][1]
    for suffix in (".md", ".png", "_tsne.png", "_confusion.png"):
        assert Path(f"{prefix}{suffix}").stat().st_size > 0
    assert "| digits | SPACL supervised |" in prefix.with_suffix(".md").read_text()


def test_image_study_chooses_on_validation_and_reads_test_only_in_final(tmp_path, monkeypatch):
    """The phases with a made-up score: the sweep's choice is the best 3-seed validation mean, no run before
    `final` reads the test split, and `final` runs exactly the chosen settings, their ablations and 2-view rows."""
    import image_quality
    from run_store import RunStore

    computed = []

    def fake_score(settings):  # prefers temperature 0.2 and similarity screening; later seeds score a bit higher
        computed.append(settings)
        score = 0.8 - abs(settings.get("temperature", 0.2) - 0.2) + 0.001 * settings["seed"]
        score += 0.02 * (settings.get("screening_weight") == "similarity") - 0.01 * (settings.get("num_positives") == 3)
        score -= 0.03 * (settings.get("screening") is False)  # removing screening costs 3 points
        scores = {"knn@20": score, "knn@200": score - 0.02, "linear_probe": score + 0.01}
        result = {"validation": scores, "step_seconds": 0.1, "peak_memory_mb": 1.0}
        if settings["test"]:
            result["test"] = {name: figure - 0.01 for name, figure in scores.items()}
        return result

    monkeypatch.setattr(image_quality, "train_and_score", fake_score)
    store = RunStore("image", root=tmp_path)
    with pytest.raises(SystemExit, match="sweep runs are missing"):
        image_quality.final_configurations(store)
    image_quality.run_phase("spread", store)
    image_quality.run_phase("sweep", store)
    assert computed and not any(s["test"] for s in computed)
    chosen = image_quality.chosen(store, "SPACL supervised")
    assert chosen["temperature"] == 0.2 and chosen["screening_weight"] == "similarity"
    assert chosen["num_positives"] != 3 and not chosen["test"]
    assert image_quality.chosen(store, "SupCon")["temperature"] == 0.2
    before = len(computed)
    image_quality.run_phase("final", store)
    finals = computed[before:]
    assert all(s["test"] for s in finals) and {s["seed"] for s in finals} == set(image_quality.SEEDS)
    names = [name for name, _ in image_quality.final_configurations(store)]
    assert len(finals) == len(names) * len(image_quality.SEEDS)
    assert "SPACL self-supervised w/o screening" in names and "SimCLR, 2 views" in names
    image_quality.run_phase("final", store)  # a second sitting computes nothing
    assert len(computed) == before + len(finals)
    result = image_quality.report(store, tmp_path / "report" / "image_quality")
    assert result["chosen"]["SPACL supervised"].startswith("num_views=4, screening_weight=similarity")
    assert len(result["final"]) == len(names)
    kinds = [p["kind"] for p in result["paired"]]
    assert kinds.count("peer") == 4 and kinds.count("ablation") == 2 * len(image_quality.ABLATIONS)
    table = (tmp_path / "report" / "image_quality.md").read_text()
    assert "| fashion_mnist | SPACL supervised w/o screening |" in table
    assert "- SPACL self-supervised - SPACL self-supervised w/o screening 3.00 ± 0.00" in table
    assert "- SPACL supervised - SPACL supervised w/o farthest-point 0.00 ± 0.00" in table


def test_image_study_choice_counts_every_setting_with_three_validation_seeds(tmp_path, monkeypatch):
    """A setting with 3 stored seeds (the defaults, from `spread`) is chosen over the two best single-seed settings
    when its 3-seed validation mean is higher, though its own seed 0 ranked below theirs."""
    import image_quality
    from run_store import RunStore

    def fake_score(settings):  # seed 0 favours temperature 0.5, the other seeds temperature 0.1 (the default)
        favourite = 0.5 if settings["seed"] == 0 else 0.1
        score = 0.8 - 0.1 * abs(settings.get("temperature", 0.1) - favourite)
        return {"validation": {"knn@20": score}, "step_seconds": 0.1, "peak_memory_mb": 1.0}

    monkeypatch.setattr(image_quality, "train_and_score", fake_score)
    store = RunStore("image", root=tmp_path)
    image_quality.run_phase("spread", store)
    image_quality.run_all(store, image_quality.first_stage(), [0], fake_score)
    with pytest.raises(SystemExit, match="3-seed validation runs"):
        image_quality.chosen(store, "SimCLR")  # the single-seed stage ran, not the 3-seed one
    image_quality.run_phase("sweep", store)
    top = image_quality.stored_best(store, image_quality.candidates(store, "SimCLR"), 2, "validation.knn@20")
    assert [c["temperature"] for c in top] == [0.5, 0.2]
    assert image_quality.chosen(store, "SimCLR")["temperature"] == 0.1


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
    report = gpu_check.main(["--tiny", "--device", "cpu", "--model", arch, "--output-prefix", str(prefix),
                             "--profile"])  # fmt: skip
    assert report["correctness"]["passed"] and report["model"] == "random weights from " + arch
    methods = {"infonce", "spacl_softmax", "spacl_similarity", "spacl_softmax_generator", "spacl_similarity_generator"}
    assert {r["method"] for r in report["loss_only"]} == methods
    assert {(r["batch_size"], r["dtype"]) for r in report["loss_only"]} == {(16, "fp32"), (64, "fp32"),
                                                                            (16, "bf16"), (64, "bf16")}  # fmt: skip
    assert [r["loss"] for r in report["training"]] == ["MNRL", "SPACL", "SPACL, no generator", "SPACL, all parts off",
                                                       "CachedMNRL", "CachedSPACL"]  # fmt: skip
    assert all(r["median_ms"] > 0 for r in report["loss_only"] + report["training"])
    assert json.loads(prefix.with_suffix(".json").read_text())["correctness"]["passed"]
    assert "passed" in prefix.with_suffix(".md").read_text()
    profiled = (tmp_path / "gpu_check_profile.md").read_text()  # where the time goes: loss alone, then a step
    calls = [int(line.split(": ")[1]) for line in profiled.splitlines() if line.startswith("aten op calls: ")]
    assert len(calls) == 2 and 0 < calls[0] < calls[1]
    assert "SPACL loss alone" in profiled and "SPACLLoss training step" in profiled and "aten::mm" in profiled
    # a budget too small for anything after the first case: the rest is skipped and said so
    small = gpu_check.main(["--tiny", "--device", "cpu", "--skip-training", "--budget-seconds", "1e-9",
                            "--output-prefix", str(tmp_path / "small")])  # fmt: skip
    assert small["loss_only"] == [] and len(small["skipped"]) == 4
    assert "Skipped to stay inside the budget" in (tmp_path / "small.md").read_text()
    # without --output-prefix a CPU run refuses to touch the committed GPU figures
    committed = gpu_check.RESULTS / "gpu_check.json"
    before = committed.read_bytes() if committed.exists() else None
    with pytest.raises(SystemExit, match="needs --output-prefix"):
        gpu_check.main(["--tiny", "--device", "cpu", "--skip-training"])
    assert (committed.read_bytes() if committed.exists() else None) == before


def test_sts_study_chooses_on_dev_and_scores_held_out_pairs_only_in_final(tmp_path, monkeypatch):
    """The STS study's phases with a made-up score: SPACL's choice is its best 3-seed dev mean, the held-out pairs
    are scored only by `final`, which runs the chosen SPACL, every peer, the ablation and the Cached pair."""
    import sts_quality
    from run_store import RunStore

    computed = []

    def fake_score(settings):  # prefers temperature 0.1 and similarity screening
        computed.append(settings)
        score = 0.87 - abs(settings["temperature"] - 0.1) + 0.01 * (settings.get("screening_weight") == "similarity")
        step_seconds = settings["batch_size"] / 64  # the Cached pair's larger batch takes longer steps
        result = {"dev": score + 0.001 * settings["seed"], "steps": 152, "step_seconds": step_seconds,
                  "peak_memory_mb": 1.0}  # fmt: skip
        if settings["final"]:
            result["held_out"] = score - 0.05
        return result

    monkeypatch.setattr(sts_quality, "train_and_score", fake_score)
    store = RunStore("sts", root=tmp_path)
    for phase in ("spread", "sweep"):
        sts_quality.run_phase(phase, store)
    assert computed and not any(s["final"] for s in computed)
    chosen = sts_quality.chosen_spacl(store)
    assert chosen["temperature"] == 0.1 and chosen["screening_weight"] == "similarity"
    before = len(computed)
    sts_quality.run_phase("final", store)
    names = [name for name, _ in sts_quality.final_configurations(store)]
    assert len(computed) - before == len(names) * len(sts_quality.SEEDS) and all(s["final"] for s in computed[before:])
    # seed by seed (an early stop leaves paired seeds), and in each seed the two ablations whose components cannot
    # act on triplets last, so an early stop loses only them
    final_runs = computed[before:]
    assert [s["seed"] for s in final_runs] == sorted(s["seed"] for s in final_runs)
    for seed in sts_quality.SEEDS:
        runs = [s for s in final_runs if s["seed"] == seed]
        acts = [s.get("dynamic_anchor", True) and s.get("farthest_point", True) for s in runs]
        assert acts == [True] * (len(names) - len(sts_quality.RUN_LAST)) + [False] * len(sts_quality.RUN_LAST)
    cached = dict(sts_quality.final_configurations(store))["CachedSPACL"]
    assert cached["batch_size"] == 256 and cached["temperature"] == 0.1 and cached["method"] == "CachedSPACL"
    result = sts_quality.report(store, tmp_path / "report" / "sts_quality", start=0.8672)
    assert [row["name"] for row in result["final"]] == names and result["final"][0]["held_out"]["mean"] > 0
    assert "| SPACL w/o screening |" in (tmp_path / "report" / "sts_quality.md").read_text()
    gaps = {row["name"]: row.get("max_seed_gap_to_spacl") for row in result["final"]}
    # the fake score ignores screening, so that ablation equals SPACL seed by seed (other seeds differ by 0.001)
    assert gaps["SPACL w/o screening"] == {"dev": 0.0, "held_out": 0.0} and gaps["MNRL"] is None
    report_text = (tmp_path / "report" / "sts_quality.md").read_text()
    assert "SPACL w/o screening dev 0 (equal), held out 0 (equal)" in report_text
    ratios = {row["name"]: row["step_time_vs_mnrl"] for row in result["final"]}
    assert ratios["MNRL"] == ratios["CachedSPACL"] == 1.0  # CachedSPACL against CachedMNRL, not against MNRL


def test_run_store_keeps_a_diverged_run_names_a_truncated_file_and_writes_private_temporaries(tmp_path, monkeypatch):
    from run_store import RunStore

    store = RunStore("sts", root=tmp_path)
    settings = {"method": "SPACL", "seed": 0}
    # a run whose loss diverged is stored (NaN marked as null and named), not lost after its compute
    record = store.run(settings, lambda s: {"dev": float("nan"), "held_out": {"a": float("inf"), "b": 0.5}})
    assert record["result"] == {"dev": None, "held_out": {"a": None, "b": 0.5}}
    assert record["non_finite"] == ["dev", "held_out.a"]
    assert store.load(settings)["non_finite"] == ["dev", "held_out.a"]
    # a truncated file is named in the error
    store.path(settings).write_text('{"key": "abc", "sett')
    with pytest.raises(ValueError, match=str(store.path(settings).name) + ".*truncated"):
        store.load(settings)
    with pytest.raises(ValueError, match="truncated"):
        store.records()
    # each save writes its own temporary file: two processes saving one run cannot collide on a name
    names = []
    original = Path.write_text

    def spy(self, text, *args, **kwargs):
        names.append(self.name)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", spy)
    other = {"method": "MNRL", "seed": 1}
    store.save(other, {"dev": 0.1}, 1.0)
    store.save(other, {"dev": 0.1}, 1.0)
    temporaries = [n for n in names if n.endswith(".tmp")]
    assert len(temporaries) == 2 and temporaries[0] != temporaries[1]
    assert not list(store.folder.glob("*.tmp"))


def test_multiview_study_chooses_on_validation_and_reads_test_only_in_final(tmp_path, monkeypatch):
    """The caption study's phases with a made-up score: each method's choice is its best seed-0 validation
    selection score, test sets are scored only by `final` / `long`, the equal-images rows encode 24 texts, and the
    report marks the choices and pairs SPACL with every peer seed by seed."""
    import multiview_text_quality as study
    from run_store import RunStore

    computed = []

    def fake_score(settings):  # SPACL prefers temperature 0.05, every other method 0.1; everyone prefers lr 5e-5
        computed.append(settings)
        liked = 0.05 if settings["method"] == "SPACL" else 0.1
        value = 0.5 - 100 * abs(settings.get("lr", 5e-5) - 5e-5) - 0.01 * (settings.get("temperature", liked) != liked)
        value += 0.001 * settings["seed"] + 0.002 * (settings.get("num_views") == 5)
        if not settings["final"]:
            scores = {"stsb_dev": value, "flickr_validation": {"map": value}, "selection": value}
        else:
            retrieval = {m: value for m in ("map", "mrr", "recall_at_1", "recall_at_5", "recall_at_10")}
            scores = {"stsb_dev": value, "cxc_test": value, "flickr_test": retrieval, "coco_1000": retrieval}
        return {"scores": scores, "step_seconds": 1.0}

    monkeypatch.setattr(study, "train_and_score", fake_score)
    monkeypatch.setattr(study, "training_images", lambda: (None, {"captions": 10, "captions_dropped_overlap": 1,
                                                                    "images": 2, "images_left_out_incomplete": 0}))
    store = RunStore("multiview_text", root=tmp_path)
    with pytest.raises(SystemExit, match="sweep"):
        study.run_final(store)  # no choice without the sweep
    study.run_spread(store)
    study.run_sweep(store)
    assert computed and not any(s["final"] for s in computed)
    assert study.chosen(store, "SPACL V=5")["temperature"] == 0.05 and study.chosen(store, "MNRL")["temperature"] == 0.1
    before = len(computed)
    study.run_final(store)
    final_runs = computed[before:]
    assert all(s["final"] for s in final_runs) and not any(s["steps"] == study.LONG_STEPS for s in final_runs)
    assert [s["seed"] for s in final_runs] == sorted(s["seed"] for s in final_runs)  # seed by seed
    equal_images = [s for s in final_runs if s["texts_per_step"] == 24]
    assert {s["method"] for s in equal_images} == {"MNRL", "MNRL symmetric", "GIST"}
    assert all(s["temperature"] == 0.1 for s in equal_images)  # the equal-texts choice
    before = len(computed)
    study.run_final(store, long=True)
    assert {s["steps"] for s in computed[before:]} == {study.LONG_STEPS} and len(computed[before:]) == 3 * len(study.SEEDS)
    study.report(store, tmp_path / "report" / "multiview")
    report = json.loads((tmp_path / "report" / "multiview.json").read_text())
    gaps = report["spacl_v5_minus_peer"]
    assert gaps["MNRL"]["flickr_test_map"]["mean"] == pytest.approx(0.002)  # the V=5 bonus, paired over 3 seeds
    assert gaps["MNRL"]["seeds"] == [0, 1, 2] and "MNRL (equal images)" in gaps
    assert report["spacl_v5_minus_ablation"]["SPACL V=5 w/o dynamic anchor"]["stsb_dev"]["mean"] == pytest.approx(0.0)
    long_gap = report["spacl_v5_minus_peer_long"]["MNRL (150 steps)"]  # the long rows are paired with each other
    assert long_gap["seeds"] == [0, 1, 2] and long_gap["flickr_test_map"]["mean"] == pytest.approx(0.002)
    text = (tmp_path / "report" / "multiview.md").read_text()
    assert "| SPACL V=5 | 0.05 | 5e-05 | 50.20 | 50.20 | 50.20 | ✓ |" in text
    assert sum(line.endswith("| ✓ |") for line in text.splitlines()) == len(study.METHODS) - 1
    assert "| MNRL (150 steps) | 60 | 0.1 | 5e-05 | 3 |" in text
