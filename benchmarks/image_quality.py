"""SPACL against SupCon, SimCLR and cross-entropy on Fashion-MNIST, with SPACL's ablations.

Every method trains the same SmallCNN (same initialisation per seed) on the same shuffled batches and the same
augmented views (ViewPipeline, same seed), with the same optimizer, learning rate, steps and temperature. The score
is read on the frozen backbone features (before the projection head): cosine kNN accuracy (k = 20 and 200,
temperature-weighted votes) against the training set, and a linear probe, on the test split; mean and standard
deviation over the seeds. No setting was tuned on the test split: every method runs at the defaults below.

    python benchmarks/image_quality.py            # 9 methods x 3 seeds (about 40 minutes on 2 CPU cores)
    python benchmarks/image_quality.py --quick    # 4 methods, 1 seed, 30 steps (about 2 minutes)
    python benchmarks/image_quality.py --dataset digits --quick   # no data package needed

Fashion-MNIST comes from the Debian package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist).
Writes benchmarks/results/image_quality.json, .md, .png (accuracies), _tsne.png and _confusion.png.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from results_io import mean_std, pyplot, write_report

RESULTS = Path(__file__).resolve().parent / "results"

ALL_METHODS = [
    "SPACL supervised",
    "SPACL self-supervised",
    "SupCon",
    "SimCLR (NT-Xent)",
    "cross-entropy",
    "SPACL w/o dynamic anchor",
    "SPACL w/o farthest-point",
    "SPACL w/o generated negatives",
    "SPACL w/o screening",
]
QUICK_METHODS = ["SPACL supervised", "SPACL self-supervised", "SupCon", "SimCLR (NT-Xent)"]


def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) over all ``B * V`` views.

    Shape: embeddings ``[B, V, D]``, labels ``[B]``.
    """
    batch, views, _ = embeddings.shape
    z = F.normalize(embeddings.flatten(0, 1), dim=-1)  # row i = sample i // V, view i % V
    view_labels = labels.repeat_interleave(views)
    logits = z @ z.T / temperature
    self_mask = torch.eye(batch * views, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    positives = (view_labels[:, None] == view_labels[None, :]) & ~self_mask
    return -(log_prob.masked_fill(~positives, 0).sum(1) / positives.sum(1)).mean()


def nt_xent_loss(embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: the positives of a view are the other views of its image; everything else is negative."""
    return supcon_loss(embeddings, torch.arange(embeddings.shape[0], device=embeddings.device), temperature)


def spacl_criterion(
    method: str, embedding_dim: int, temperature: float, warmup: int, seed: int, num_positives: int = 2
):
    from spacl_hf.core import AdversarialNegativeGenerator, SPACLCriterion

    use_generator = method != "SPACL w/o generated negatives"
    generator = AdversarialNegativeGenerator(embedding_dim, warmup_steps=warmup, seed=seed) if use_generator else None
    return SPACLCriterion(
        temperature=temperature,
        num_positives=num_positives,
        candidate_views="all",
        dynamic_anchor=method != "SPACL w/o dynamic anchor",
        farthest_point=method != "SPACL w/o farthest-point",
        screening=method != "SPACL w/o screening",
        generator=generator,
    )


def train_one(method: str, seed: int, train_images, train_labels, args) -> tuple[torch.nn.Module, float]:
    from spacl_hf.vision import SmallCNN, ViewPipeline

    torch.manual_seed(seed)
    model = SmallCNN(in_channels=train_images.shape[1], width=args.width, embedding_dim=args.embedding_dim)
    classifier = torch.nn.Linear(4 * args.width, int(train_labels.max()) + 1)  # only cross-entropy uses it
    criterion = None
    if method.startswith("SPACL"):
        warmup = max(1, args.steps // 5)
        criterion = spacl_criterion(method, args.embedding_dim, args.temperature, warmup, seed, args.num_positives)
    parameters = list(model.parameters()) + (list(classifier.parameters()) if method == "cross-entropy" else [])
    optimizer = torch.optim.Adam(parameters, lr=args.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.learning_rate, total_steps=args.steps)
    pipeline = ViewPipeline(num_views=args.num_views, seed=seed)
    order = torch.Generator().manual_seed(seed)
    permutation = torch.randperm(len(train_images), generator=order)
    position = 0
    model.train()
    started = time.perf_counter()
    for _ in range(args.steps):
        if position + args.batch_size > len(permutation):
            permutation, position = torch.randperm(len(train_images), generator=order), 0
        index = permutation[position : position + args.batch_size]
        position += args.batch_size
        views = pipeline(train_images[index])  # [B, V, C, H, W]
        labels = train_labels[index]
        flat = views.flatten(0, 1)
        if method == "cross-entropy":
            loss = F.cross_entropy(classifier(model.features(flat)), labels.repeat_interleave(args.num_views))
        else:
            embeddings = model(flat).embeddings.unflatten(0, views.shape[:2])  # [B, V, D]
            if method == "SupCon":
                loss = supcon_loss(embeddings, labels, args.temperature)
            elif method == "SimCLR (NT-Xent)":
                loss = nt_xent_loss(embeddings, args.temperature)
            else:
                loss = criterion(embeddings, labels=None if method == "SPACL self-supervised" else labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model, (time.perf_counter() - started) / args.steps


def main() -> None:
    from spacl_hf.vision import (
        embed_images,
        knn_predict,
        linear_probe_accuracy,
        load_digits_dataset,
        load_fashion_mnist,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "digits"])
    parser.add_argument("--data-folder", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--methods", nargs="+", default=None, choices=ALL_METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-views", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--num-positives", type=int, default=2, help="SPACL's hard positives per anchor (sweeps).")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--output-prefix", type=Path, default=RESULTS / "image_quality")
    args = parser.parse_args()
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.steps = args.steps or (30 if args.quick else 250)
    methods = args.methods or (QUICK_METHODS if args.quick else ALL_METHODS)

    if args.dataset == "digits":
        split = load_digits_dataset().train_test_split(test_size=397, seed=0)
        train, test = split["train"], split["test"]
    else:
        train = load_fashion_mnist("train", args.data_folder)
        test = load_fashion_mnist("test", args.data_folder)
    class_names = train.features["label"].names
    train_rows, test_rows = train.with_format("torch")[:], test.with_format("torch")[:]
    train_images, train_labels = train_rows["pixel_values"].float(), train_rows["label"].long()
    test_images, test_labels = test_rows["pixel_values"].float(), test_rows["label"].long()

    runs, kept = [], {}
    for seed in args.seeds:
        for method in methods:
            model, step_seconds = train_one(method, seed, train_images, train_labels, args)
            bank, queries = embed_images(model, train_images), embed_images(model, test_images)
            predictions = knn_predict(bank, train_labels, queries, k=(20, 200), show_progress_bar=False)
            probe = linear_probe_accuracy(bank, train_labels, queries, test_labels, show_progress_bar=False)
            run = {
                "method": method,
                "seed": seed,
                "knn@20": float((predictions[20] == test_labels).float().mean()),
                "knn@200": float((predictions[200] == test_labels).float().mean()),
                "linear_probe": probe,
                "step_seconds": step_seconds,
            }
            runs.append(run)
            if seed == args.seeds[0]:
                kept[method] = (queries, predictions[20])
            print(
                f"seed {seed} {method:30s} kNN@20 {run['knn@20']:.4f} kNN@200 {run['knn@200']:.4f} "
                f"probe {probe:.4f} ({step_seconds:.3f} s/step)",
                file=sys.stderr,
            )

    report = {
        "command": " ".join(["python benchmarks/image_quality.py", *sys.argv[1:]]),
        "dataset": f"{args.dataset} (train {len(train)}, test {len(test)})",
        "encoder": f"SmallCNN(width={args.width}, embedding_dim={args.embedding_dim}); scores on backbone features",
        "augmentation": "ViewPipeline defaults: random resized crop 0.5-1, flip, brightness/contrast 0.4",
        "seeds": args.seeds,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "num_views": args.num_views,
        "learning_rate": args.learning_rate,
        "schedule": "Adam, one-cycle",
        "temperature": args.temperature,
        "spacl_settings": {
            "num_positives": args.num_positives,
            "screening_mass": 0.95,
            "candidate_views": "all",
            "generator_warmup_steps": max(1, args.steps // 5),
        },
        "summary": summarize(runs, methods),
        "runs": runs,
        "device": "cpu",
        "threads": torch.get_num_threads(),
    }
    prefix = args.output_prefix
    table = markdown(report)
    write_report(report, prefix, table)
    plot_bars(report, prefix.with_suffix(".png"))
    pictured = [m for m in ("SPACL supervised", "SupCon", "SPACL self-supervised", "SimCLR (NT-Xent)") if m in kept]
    plot_tsne({m: kept[m][0] for m in pictured}, test_labels, class_names, Path(f"{prefix}_tsne.png"))
    if "SPACL supervised" in kept:
        plot_confusion(kept["SPACL supervised"][1], test_labels, class_names, Path(f"{prefix}_confusion.png"))
    print(table)


def summarize(runs: list[dict], methods: list[str]) -> list[dict]:
    reference = [r["step_seconds"] for r in runs if r["method"] == "SupCon"]
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        row: dict = {"method": method}
        for key in ("knn@20", "knn@200", "linear_probe"):
            row[key] = mean_std([r[key] for r in mine])
        times = [r["step_seconds"] for r in mine]
        row["step_time_vs_supcon"] = statistics.median(times) / statistics.median(reference) if reference else None
        rows.append(row)
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"`{report['command']}`: {report['dataset']}, {report['encoder']}, {report['steps']} steps, batch "
        f"{report['batch_size']} x {report['num_views']} views, lr {report['learning_rate']:g}, temperature "
        f"{report['temperature']:g}, seeds {report['seeds']}",
        "",
        "| method | kNN@20 | kNN@200 | linear probe | step time vs SupCon |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["summary"]:
        cells = [
            f"{100 * row[k]['mean']:.2f} ± {100 * row[k]['std']:.2f}" for k in ("knn@20", "knn@200", "linear_probe")
        ]
        ratio = f"{row['step_time_vs_supcon']:.2f}x" if row["step_time_vs_supcon"] else "n/a"
        lines.append(f"| {row['method']} | " + " | ".join(cells) + f" | {ratio} |")
    lines.append("")
    lines.append("Test accuracy in % (mean ± std over seeds).")
    return "\n".join(lines)


def plot_bars(report: dict, path: Path) -> None:
    plt = pyplot()
    rows = report["summary"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.8), sharey=True)
    names = [r["method"] for r in rows][::-1]
    colors = ["tab:orange" if n.startswith("SPACL") else "tab:blue" for n in names]
    for ax, key, title in zip(axes, ("knn@20", "linear_probe"), ("kNN@20", "linear probe")):
        means = [100 * r[key]["mean"] for r in rows][::-1]
        stds = [100 * r[key]["std"] for r in rows][::-1]
        ax.barh(names, means, xerr=stds, color=colors, capsize=3)
        ax.set_xlim(min(m - s for m, s in zip(means, stds)) - 1, max(m + s for m, s in zip(means, stds)) + 1)
        ax.set_xlabel(f"test {title} accuracy % (mean ± std)")
    fig.suptitle(f"{report['dataset']}: {report['steps']} steps, seeds {report['seeds']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tsne(features: dict[str, torch.Tensor], labels: torch.Tensor, names: list[str], path: Path) -> None:
    from sklearn.manifold import TSNE

    plt = pyplot()
    subset = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:2000]
    fig, axes = plt.subplots(1, len(features), figsize=(4.5 * len(features), 4.8), squeeze=False)
    for ax, (method, values) in zip(axes[0], features.items()):
        points = TSNE(init="pca", random_state=0, perplexity=30).fit_transform(
            F.normalize(values[subset], dim=-1).numpy()
        )
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels[subset].numpy(), cmap="tab10", s=3)
        ax.set_title(method)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(scatter.legend_elements()[0], names, loc="lower center", ncol=min(len(names), 10), fontsize=8)
    fig.suptitle("t-SNE of 2000 test embeddings (backbone features, seed 0)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(predictions: torch.Tensor, labels: torch.Tensor, names: list[str], path: Path) -> None:
    plt = pyplot()
    count = len(names)
    matrix = torch.zeros(count, count, dtype=torch.long)
    matrix.index_put_((labels, predictions), torch.ones_like(labels), accumulate=True)
    rates = matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(count), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(count), names, fontsize=8)
    for i in range(count):
        for j in range(count):
            if matrix[i, j]:
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, f"{100 * rates[i, j]:.0f}", ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("kNN@20 prediction")
    ax.set_ylabel("true class")
    ax.set_title("SPACL supervised, test split, seed 0 (row %)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
