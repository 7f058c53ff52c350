"""Print the README's benchmark tables from benchmarks/results/*.json (no figure is typed by hand).

python benchmarks/report.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def loss_speed(report: dict) -> str:
    lines = [
        f"`{report['command']}` ({report['device']}, {report['threads']} threads, torch {report['torch']}, "
        f"D = {report['embedding_dim']}, median of {report['repeats']}; memory: {report['memory_measure']})",
        "",
        "| B | V | InfoNCE ms | full SPACL | selection + screening | anchor | positives | screening | generator "
        "| full (similarity) | sel. + scr. (similarity) | screening (similarity) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = report["rows"]
    keys = sorted({(r["batch_size"], r["num_views"]) for r in rows}, key=lambda k: (k[1], k[0]))
    order = ["spacl_full", "selection_screening", "anchor_only", "positives_only", "screening_only", "generator_only",
             "spacl_full_similarity", "selection_screening_similarity", "screening_only_similarity"]  # fmt: skip
    for batch, views in keys:
        by_method = {r["method"]: r for r in rows if r["batch_size"] == batch and r["num_views"] == views}
        cells = [
            f"{by_method[m]['time_ratio']:.2f}x / {by_method[m]['memory_ratio']:.2f}x" if m in by_method else "-"
            for m in order
        ]
        lines.append(f"| {batch} | {views} | {by_method['infonce']['median_ms']:.1f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Cells: time / peak memory, relative to InfoNCE on the same embeddings in the same run.")
    return "\n".join(lines)


def cached_memory(report: dict) -> str:
    lines = [
        f"`{report['command']}` ({report['device']}, {report['threads']} threads; {report['model']})",
        "",
        "| batch | CachedMNRL step s | CachedSPACL step s | CachedMNRL peak MiB | CachedSPACL peak MiB |",
        "|---:|---:|---:|---:|---:|",
    ]
    batches = sorted({r["batch_size"] for r in report["rows"]})
    for batch in batches:
        by_loss = {r["loss"]: r for r in report["rows"] if r["batch_size"] == batch}
        lines.append(
            f"| {batch} | {by_loss['CachedMNRL']['median_step_s']:.2f} | "
            f"{by_loss['CachedSPACL']['median_step_s']:.2f} | "
            f"{by_loss['CachedMNRL']['peak_mib']:.1f} | {by_loss['CachedSPACL']['peak_mib']:.1f} |"
        )
    summary = report["summary"]
    lines.append("")
    lines.append(
        f"CachedSPACL peak at batch {batches[-1]} / batch {batches[0]}: "
        f"{summary['spacl_peak_ratio_largest_vs_smallest_batch']:.2f}x; step time vs CachedMNRL: "
        + ", ".join(f"{b}: {r:.2f}x" for b, r in summary["spacl_vs_mnrl_step_time"].items())
    )
    return "\n".join(lines)


def main() -> None:
    for name, render in (("loss_speed", loss_speed), ("cached_memory", cached_memory)):
        path = RESULTS / f"{name}.json"
        if path.is_file():
            print(f"### {name}\n\n{render(json.loads(path.read_text()))}\n")


if __name__ == "__main__":
    main()
