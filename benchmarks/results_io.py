"""What the quality benchmarks share: mean ± std over seeds, writing a report (JSON + Markdown), a headless pyplot.

Benchmarks run as scripts (``python benchmarks/<name>.py``), so this folder is on ``sys.path`` and they import it as
``results_io``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def mean_std(values: list[float]) -> dict[str, float]:
    """``{"mean", "std"}`` over seeds (sample standard deviation; 0 for a single seed)."""
    values = list(values)
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def write_report(report: dict, prefix: Path, table: str) -> None:
    """``<prefix>.json`` (the full report) and ``<prefix>.md`` (its README table), creating the folder."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    prefix.with_suffix(".md").write_text(table + "\n")


def pyplot():
    """matplotlib.pyplot on the Agg backend (benchmarks run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pct(stat: dict[str, float]) -> str:
    """A ``{"mean", "std"}`` fraction as ``"12.34 ± 0.56"`` (percent or points x 100)."""
    return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"


def activity_cells(activity: dict[str, float], keys) -> str:
    """Markdown cells of SPACL's activity statistics ``keys`` (``-`` where a run has none)."""
    return " | ".join(f"{activity[k]:.2f}" if k in activity else "-" for k in keys)
