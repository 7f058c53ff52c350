"""The image benchmark end to end on scikit-learn's digits, so that the script does not rot between full runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
