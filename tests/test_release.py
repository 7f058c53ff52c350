"""What a user installs and reads first: the wheel and sdist (package and metric files, no data), a fresh
environment that trains with the installed wheel, the documentation site (strict build) and the README front page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, "README.md is a front page: at most 250 lines (details go to docs/)"
    assert not re.search(r"\b[Ii]ssues? \d+|\(#\d+\)|\bissue #?\d+", text), "README.md names an issue number"
    # the two commands come first
    head = "\n".join(text.splitlines()[:30])
    assert "scripts/setup_env.sh && .venv/bin/accelerate launch" in head and "python -m pytest" in head


def test_docs_build_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    for page in ("index.html", "reference/core/index.html", "studies/stackoverflow/index.html",
                 "guides/multiview-text/index.html", "results/sts_quality.png"):  # fmt: skip
        assert (tmp_path / "site" / page).is_file(), page
    reference = (tmp_path / "site" / "reference" / "core" / "index.html").read_text()
    assert "SPACLCriterion" in reference and "farthest_point_select" in reference


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_environment_and_trains(tmp_path, tiny_encoder_dir):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=300)  # fmt: skip
    wheel, sdist = next(dist.glob("*.whl")), next(dist.glob("*.tar.gz"))
    twine = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
                           capture_output=True, text=True)  # fmt: skip
    assert twine.returncode == 0, twine.stdout + twine.stderr
    names = zipfile.ZipFile(wheel).namelist()
    assert "spacl_hf/ood/metrics/open_intent/open_intent.py" in names
    assert all(n.startswith(("spacl_hf/", "spacl_hf-")) for n in names), [n for n in names if not n.startswith("spacl")]
    members = tarfile.open(sdist).getnames()
    assert not [m for m in members if re.search(r"/(benchmarks|notebooks|tests|docs|examples)/|\.(tsv|csv|gz|png|json)$", m)]

    # a fresh environment: the wheel installed with pip, the heavy dependencies (torch, sentence-transformers) taken
    # from this environment through a .pth file placed after the new site-packages
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    python = env / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(site, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   timeout=300)  # fmt: skip
    script = f"""
import spacl_hf, torch
assert spacl_hf.__file__.startswith({str(env)!r}), spacl_hf.__file__
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from spacl_hf import SPACLLoss
from spacl_hf.ood import load_metric
model = SentenceTransformer({tiny_encoder_dir!r}, device="cpu")
data = Dataset.from_dict({{"anchor": [f"query {{i}}" for i in range(16)], "positive": [f"answer {{i}}" for i in range(16)]}})
args = SentenceTransformerTrainingArguments(output_dir={str(tmp_path / 'out')!r}, max_steps=2, per_device_train_batch_size=8,
                                            report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True)
trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=SPACLLoss(model, generator_warmup_steps=0))
trainer.train()
assert trainer.state.global_step == 2
assert load_metric("open_intent").compute(predictions=[0, -1], references=[0, -1])["accuracy"] == 1.0
print("trained", spacl_hf.__version__)
"""
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "trained" in result.stdout
