"""Rerun stored study runs with the current code and compare their scores with the stored ones.

A change that should not move any quality figure (a faster loss with the same math) is checked by recomputing a
stored final run from its settings and putting the two side by side. Nothing is written to the run store; the
comparison goes to ``benchmarks/results/rerun_check.json`` (one entry per study and run key, replaced on rerun).

    python benchmarks/rerun_check.py sts 720cfa9d47f9e4fa       # STS final, SPACL, seed 0 (~8 min on 2 cores)
    python benchmarks/rerun_check.py image 09f822c5431b6f88     # Fashion-MNIST final, SPACL supervised (~4 min)
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_store import RunStore  # noqa: E402

RESULTS = HERE / "results" / "rerun_check.json"
STUDIES = {"sts": "sts_quality", "image": "image_quality", "ood": "ood_quality"}


def scores_of(result: dict[str, Any]) -> dict[str, float]:
    """The numeric quality figures of a stored result (flattened one level), without timings and activity."""
    skip = {"steps", "step_seconds", "peak_memory_mb", "activity", "seconds"}
    flat: dict[str, float] = {}
    for name, value in result.items():
        if name in skip:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
        elif isinstance(value, dict):
            flat.update({f"{name}/{k}": float(v) for k, v in value.items() if isinstance(v, (int, float))})
    return flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("key", help="the stored run's key (its file name without .json)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    path = RunStore(args.study).folder / f"{args.key}.json"
    if not path.is_file():
        raise SystemExit(f"No stored run {path}: give the key of a file in {path.parent}.")
    stored = json.loads(path.read_text())
    module = importlib.import_module(STUDIES[args.study])
    started = time.perf_counter()
    print(f"rerunning {args.study}/{args.key}: {stored['settings']}", file=sys.stderr)
    result = module.train_and_score(stored["settings"])
    seconds = time.perf_counter() - started
    before, after = scores_of(stored["result"]), scores_of(result)
    entry = {
        "study": args.study,
        "key": args.key,
        "settings": stored["settings"],
        "stored": {"commit_time": stored.get("finished"), "scores": before,
                   "step_seconds": stored["result"].get("step_seconds")},  # fmt: skip
        "rerun": {"scores": after, "step_seconds": result.get("step_seconds"), "seconds": round(seconds, 1),
                  "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           cwd=HERE).stdout.strip()},  # fmt: skip
        "difference": {name: after[name] - before[name] for name in before if name in after},
        "command": f"python benchmarks/rerun_check.py {args.study} {args.key}",
    }
    report = json.loads(args.output.read_text()) if args.output.is_file() else {"runs": []}
    report["runs"] = [r for r in report["runs"] if (r["study"], r["key"]) != (args.study, args.key)] + [entry]
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for name, difference in entry["difference"].items():
        print(f"{name}: stored {before[name]:.6f}, rerun {after[name]:.6f}, difference {difference:+.6f}")


if __name__ == "__main__":
    main()
