"""The notebooks run end to end (as their paired percent scripts), and each .ipynb matches its script."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
# small but real runs: enough steps to exercise every cell
STEPS = {"01_quickstart": "4", "02_what_spacl_selects": "0", "03_images": "20"}


def test_every_notebook_has_a_script():
    assert [p.stem for p in SCRIPTS] == ["01_quickstart", "02_what_spacl_selects", "03_images"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_ipynb_is_generated_from_its_script_with_cleared_outputs(script):
    notebook = jupytext.read(script.with_suffix(".ipynb"))
    paired = jupytext.read(script)
    assert [c.source for c in notebook.cells] == [c.source for c in paired.cells], (
        f"{script.with_suffix('.ipynb').name} is out of date: run `jupytext --to ipynb notebooks/{script.name}`"
    )
    assert all(not getattr(c, "outputs", None) for c in notebook.cells), "commit notebooks with cleared outputs"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_notebook_runs(script, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "SPACL_NOTEBOOK_STEPS": STEPS[script.stem]}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    if script.stem == "01_quickstart":
        assert "STS-B dev Spearman: before" in result.stdout
    if script.stem == "03_images":
        assert "kNN (k=20, cosine) test accuracy" in result.stdout
