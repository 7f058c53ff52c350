"""Forward+backward time and peak memory of the SPACL loss against plain InfoNCE, side by side.

Random unit embeddings (D = 384), B in 32, 128, 512, 2048 and V in 2, 4. Methods:

- ``infonce``: hand-written one-directional InfoNCE (anchor view 0, positive view 1, every view of the other
  samples as negatives), the baseline;
- ``spacl_full``: dynamic anchor, 2 farthest-point positives, generated negatives, screening (softmax weight);
- ``selection_screening``: the same without the generator;
- ``anchor_only`` / ``positives_only`` / ``screening_only`` / ``generator_only``: one component at a time;
- ``*_similarity``: the same rows with ``screening_weight="similarity"`` (the paper's raw-cosine rule).

Every method runs on the same embeddings, interleaved, several repeats; the medians and the ratios to InfoNCE
go to ``benchmarks/results/loss_speed.json`` and a Markdown table on stdout.

    python benchmarks/loss_speed.py            # full grid
    python benchmarks/loss_speed.py --quick    # B in 32, 512; 3 repeats
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import peak_memory_bytes  # noqa: E402

from spacl_hf.core import AdversarialNegativeGenerator, SPACLCriterion  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "loss_speed.json"


def infonce(views: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    batch, num_views, dim = views.shape
    z = F.normalize(views, dim=-1)
    logits = z[:, 0] @ z.reshape(-1, dim).T / temperature
    own = torch.arange(batch, device=views.device)[:, None] * num_views + torch.arange(num_views, device=views.device)
    target = own[:, 1]
    drop = torch.zeros_like(logits, dtype=torch.bool)
    drop.scatter_(1, own[:, [0, *range(2, num_views)]], True)  # own anchor and own extra views are not negatives
    return F.cross_entropy(logits.masked_fill(drop, float("-inf")), target)


def make_methods(dim: int, device: torch.device) -> dict[str, object]:
    def criterion(**kwargs) -> SPACLCriterion:
        base = dict(temperature=0.05, num_positives=2, dynamic_anchor=False, farthest_point=False, screening=False)
        base.update(kwargs)
        return SPACLCriterion(**base).to(device)

    def generator() -> AdversarialNegativeGenerator:
        return AdversarialNegativeGenerator(dim, warmup_steps=0).to(device)

    return {
        "infonce": infonce,
        "spacl_full": criterion(dynamic_anchor=True, farthest_point=True, screening=True, generator=generator()),
        "spacl_full_similarity": criterion(
            dynamic_anchor=True, farthest_point=True, screening=True, generator=generator(),
            screening_weight="similarity",
        ),  # fmt: skip
        "selection_screening": criterion(dynamic_anchor=True, farthest_point=True, screening=True),
        "selection_screening_similarity": criterion(
            dynamic_anchor=True, farthest_point=True, screening=True, screening_weight="similarity"
        ),
        "anchor_only": criterion(dynamic_anchor=True),
        "positives_only": criterion(farthest_point=True),
        "screening_only": criterion(screening=True),
        "screening_only_similarity": criterion(screening=True, screening_weight="similarity"),
        "generator_only": criterion(generator=generator()),
    }


def step(method, base: torch.Tensor) -> None:
    views = base.clone().requires_grad_(True)
    loss = method(views)
    loss.backward()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="B in 32 and 512 only, 3 repeats")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = torch.device(args.device)
    batch_sizes = [32, 512] if args.quick else [32, 128, 512, 2048]
    repeats = 3 if args.quick else args.repeats
    dim = 384
    torch.manual_seed(0)
    methods = make_methods(dim, device)

    rows = []
    for num_views in (2, 4):
        for batch in batch_sizes:
            base = F.normalize(torch.randn(batch, num_views, dim, device=device), dim=-1)
            times: dict[str, list[float]] = {name: [] for name in methods}
            for method in methods.values():  # warm-up
                step(method, base)
            for _ in range(repeats):  # interleaved, so drift hits every method alike
                for name, method in methods.items():
                    synchronize(device)
                    start = time.perf_counter()
                    step(method, base)
                    synchronize(device)
                    times[name].append(time.perf_counter() - start)
            memory = {
                name: peak_memory_bytes(lambda m=method, x=base: step(m, x), device) for name, method in methods.items()
            }
            base_time = statistics.median(times["infonce"])
            for name in methods:
                median = statistics.median(times[name])
                rows.append(
                    {
                        "batch_size": batch,
                        "num_views": num_views,
                        "method": name,
                        "median_ms": round(median * 1e3, 3),
                        "time_ratio": round(median / base_time, 3),
                        "peak_mib": round(memory[name] / 2**20, 3),
                        "memory_ratio": round(memory[name] / max(1, memory["infonce"]), 3),
                    }
                )
            print(f"done B={batch} V={num_views}", file=sys.stderr)

    report = {
        "command": "python benchmarks/loss_speed.py" + (" --quick" if args.quick else ""),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "embedding_dim": dim,
        "repeats": repeats,
        "memory_measure": "peak live tensor bytes during forward+backward (CUDA: max_memory_allocated)",
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(rows))


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| B | V | method | median ms | time / InfoNCE | peak MiB | memory / InfoNCE |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch_size']} | {r['num_views']} | {r['method']} | {r['median_ms']:.2f} | "
            f"{r['time_ratio']:.2f}x | {r['peak_mib']:.2f} | {r['memory_ratio']:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
