"""Images: SPACL against SupCon, SimCLR and cross-entropy, chosen on validation, with the paper's ablation (issue 12).

Every method trains the same SmallCNN (same initialisation per seed) on the same shuffled batches of images and the
same augmented views (``ViewPipeline``, same seed), with the same Adam one-cycle schedule, learning rate, steps and
batch size in images. The score is read on the frozen backbone features (before the projection head): cosine kNN
accuracy (k = 20 and 200, temperature-weighted votes) against the training images, and a linear probe.

Fashion-MNIST's training set is split once (a fixed permutation) into 55,000 training and 5,000 validation images.
**Every choice is made on validation kNN@20; the test split is read only by the ``final`` phase**, which takes its
settings from the stored validation runs. The study runs in phases; every run is one file in
``results/runs/image/`` (keyed by its settings) and is skipped when present, so it resumes across sittings:

    python benchmarks/image_quality.py spread   # seed spread at the budget: every method at its defaults, 3 seeds
    python benchmarks/image_quality.py sweep    # temperatures and SPACL's options, 1 seed; the best with 3 seeds
    python benchmarks/image_quality.py final    # chosen settings, 3 seeds, test split; ablation; V = 2; digits
    python benchmarks/image_quality.py report   # results/image_quality.{json,md} and the plots from the store
    python benchmarks/image_quality.py --quick  # smoke run: 4 methods, 1 seed, 30 steps, a temporary store

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist``; ``--dataset digits`` (scikit-learn, no
download) works for ``--quick`` too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from memory import peak_memory_bytes
from results_io import activity_cells, mean_std, pct, pyplot, write_report
from run_store import RunStore
from sweep import by_configuration, chosen_on_seeds, grid, run_all, runs_of, stored_best, value

RESULTS = Path(__file__).resolve().parent / "results"
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
SELECTION_METRIC = "validation.knn@20"
SEEDS = (0, 1, 2)
SCORES = ("knn@20", "knn@200", "linear_probe")
SPLIT_SEED = 0  # the fixed permutation that carves the validation images out of the training set

# The budget, the same for every method: 400 steps of 128 images x 4 views (0.85 of a Fashion-MNIST epoch; about
# 2 minutes a run on 2 CPU cores). The seed spread measured at it is in the report (`spread`).
BUDGET = {"steps": 400, "batch_size": 128, "num_views": 4, "lr": 3e-3, "width": 32, "embedding_dim": 64}
VALIDATION_SIZE = {"fashion_mnist": 5000, "digits": 300}
METHODS = ("SPACL supervised", "SPACL self-supervised", "SupCon", "SimCLR", "cross-entropy")
SPACL_DEFAULTS = {
    "temperature": 0.1, "num_positives": 2, "screening_weight": "softmax", "screening_mass": 0.95,
    "generator_steps": 1, "dynamic_anchor": True, "farthest_point": True, "screening": True, "adversarial": True,
}  # fmt: skip
ABLATIONS = {"w/o dynamic anchor": "dynamic_anchor", "w/o farthest-point": "farthest_point",
             "w/o screening": "screening", "w/o adversarial negatives": "adversarial"}  # fmt: skip
# SPACL's activity statistics in the tables, with their short column names
ACTIVITY_KEYS = {"anchor_not_first_view": "anchor moved", "positives_reordered": "FP reordered",
                 "own_view_positives": "own-view pos.", "screened_weight_fraction": "screened weight",
                 "kept_negative_fraction": "kept neg.", "generated_guard_kept_fraction": "gen. guard kept",
                 "generated_weight_fraction": "gen. weight"}  # fmt: skip


def settings_for(method: str, dataset: str = "fashion_mnist", **overrides: Any) -> dict[str, Any]:
    """The settings of one configuration: the shared budget plus only the options ``method`` reads."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    settings: dict[str, Any] = {"dataset": dataset, "method": method, **BUDGET, "test": False}
    if method.startswith("SPACL"):
        settings.update(SPACL_DEFAULTS)
        if method == "SPACL supervised":
            settings["positive_pool"] = "labels"
    elif method in ("SupCon", "SimCLR"):
        settings["temperature"] = 0.1
    # options added after runs were stored: absent means the default, so the stored runs keep their keys
    optional = {"anchor_mode"} if method.startswith("SPACL") else set()
    unknown = set(overrides) - set(settings) - optional
    if unknown:
        raise ValueError(f"{method} does not read {sorted(unknown)}.")
    settings.update(overrides)
    return settings


# --- the losses -------------------------------------------------------------------------------------------------
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
    """SimCLR's NT-Xent over ``V`` views (multi-view): the positives of a view are the other views of its image."""
    return supcon_loss(embeddings, torch.arange(embeddings.shape[0], device=embeddings.device), temperature)


def spacl_criterion(settings: dict[str, Any], seed: int):
    from spacl_hf.core import AdversarialNegativeGenerator, SPACLCriterion

    generator = None
    if settings["adversarial"]:
        generator = AdversarialNegativeGenerator(
            settings["embedding_dim"], warmup_steps=generator_warmup(settings), seed=seed,
            generator_steps=settings["generator_steps"],
        )  # fmt: skip
    return SPACLCriterion(
        temperature=settings["temperature"],
        num_positives=settings["num_positives"],
        screening_mass=settings["screening_mass"],
        screening_weight=settings["screening_weight"],
        positive_pool=settings.get("positive_pool", "labels"),
        anchor_mode=settings.get("anchor_mode", "one"),
        candidate_views="all",
        dynamic_anchor=settings["dynamic_anchor"],
        farthest_point=settings["farthest_point"],
        screening=settings["screening"],
        generator=generator,
    )


def generator_warmup(settings: dict[str, Any]) -> int:
    return max(1, settings["steps"] // 5)


# --- one run ----------------------------------------------------------------------------------------------------
def load_splits(dataset: str, data_folder: str = FASHION_MNIST) -> dict[str, Any]:
    """Images and labels of the train / validation / test splits; validation is carved from the training set by a
    fixed permutation (the same for every run), so the test split stays unread until the final table."""
    from spacl_hf.vision import load_digits_dataset, load_fashion_mnist

    if dataset == "digits":
        split = load_digits_dataset().train_test_split(test_size=397, seed=0)
        train, test = split["train"], split["test"]
    else:
        train, test = load_fashion_mnist("train", data_folder), load_fashion_mnist("test", data_folder)
    rows, test_rows = train.with_format("torch")[:], test.with_format("torch")[:]
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    held, kept = order[: VALIDATION_SIZE[dataset]], order[VALIDATION_SIZE[dataset] :]
    images, labels = rows["pixel_values"].float(), rows["label"].long()
    return {
        "train": (images[kept], labels[kept]),
        "validation": (images[held], labels[held]),
        "test": (test_rows["pixel_values"].float(), test_rows["label"].long()),
        "class_names": train.features["label"].names,
    }


_SPLITS: dict[str, dict[str, Any]] = {}
DATA_FOLDER = {"fashion_mnist": FASHION_MNIST}  # --data-folder replaces it


def splits_of(dataset: str) -> dict[str, Any]:
    """:func:`load_splits`, loaded once per process (a study runs many models on the same data)."""
    if dataset not in _SPLITS:
        _SPLITS[dataset] = load_splits(dataset, DATA_FOLDER["fashion_mnist"])
    return _SPLITS[dataset]


def train_model(settings: dict[str, Any], train_images, train_labels) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train one SmallCNN as ``settings`` say; returns it with step time, peak memory of a step and SPACL's
    activity statistics (means over steps; the generator's over the steps after its warm-up)."""
    from spacl_hf.vision import SmallCNN, ViewPipeline

    seed, method, steps, batch_size = settings["seed"], settings["method"], settings["steps"], settings["batch_size"]
    torch.manual_seed(seed)
    width, embedding_dim = settings["width"], settings["embedding_dim"]
    model = SmallCNN(in_channels=train_images.shape[1], width=width, embedding_dim=embedding_dim)
    classifier = torch.nn.Linear(4 * settings["width"], int(train_labels.max()) + 1)  # only cross-entropy uses it
    criterion = spacl_criterion(settings, seed) if method.startswith("SPACL") else None
    parameters = list(model.parameters()) + (list(classifier.parameters()) if method == "cross-entropy" else [])
    optimizer = torch.optim.Adam(parameters, lr=settings["lr"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings["lr"], total_steps=steps)
    pipeline = ViewPipeline(num_views=settings["num_views"], seed=seed)
    order = torch.Generator().manual_seed(seed)
    permutation, position = torch.randperm(len(train_images), generator=order), 0
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    timed, peak = 0.0, 0

    def step(index: torch.Tensor, step_number: int) -> None:
        views = pipeline(train_images[index])  # [B, V, C, H, W]
        labels = train_labels[index]
        flat = views.flatten(0, 1)
        if method == "cross-entropy":
            loss = F.cross_entropy(classifier(model.features(flat)), labels.repeat_interleave(views.shape[1]))
        else:
            embeddings = model(flat).embeddings.unflatten(0, views.shape[:2])  # [B, V, D]
            if method == "SupCon":
                loss = supcon_loss(embeddings, labels, settings["temperature"])
            elif method == "SimCLR":
                loss = nt_xent_loss(embeddings, settings["temperature"])
            else:
                loss, stats = criterion(
                    embeddings, labels=labels if method == "SPACL supervised" else None, return_stats=True
                )
                for key, stat in stats.items():
                    if key.startswith("generat") and step_number < generator_warmup(settings):
                        continue  # the generator's figures count once it produces negatives
                    sums[key] = sums.get(key, 0.0) + float(stat)
                    counts[key] = counts.get(key, 0) + 1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()

    model.train()
    for step_number in range(steps):
        if position + batch_size > len(permutation):
            permutation, position = torch.randperm(len(train_images), generator=order), 0
        index = permutation[position : position + batch_size]
        position += batch_size
        if step_number == 1:  # one step under the memory tracker (slower), left out of the timing
            peak = peak_memory_bytes(lambda: step(index, step_number), torch.device("cpu"))
            continue
        started = time.perf_counter()
        step(index, step_number)
        timed += time.perf_counter() - started
    figures = {"step_seconds": timed / max(1, steps - 1), "peak_memory_mb": round(peak / 2**20, 1)}
    if sums:
        figures["activity"] = {k: round(sums[k] / counts[k], 4) for k in sorted(sums)}
    return model, figures


def scores(model, bank, bank_labels, images, labels) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    from spacl_hf.vision import embed_images, knn_predict, linear_probe_accuracy

    queries = embed_images(model, images)
    predictions = knn_predict(bank, bank_labels, queries, k=(20, 200), show_progress_bar=False)
    probe = linear_probe_accuracy(bank, bank_labels, queries, labels, show_progress_bar=False)
    figures = {f"knn@{k}": float((predictions[k] == labels).float().mean()) for k in (20, 200)}
    return {**figures, "linear_probe": probe}, queries, predictions[20]


def train_and_score(settings: dict[str, Any]) -> dict[str, Any]:
    """One run: validation scores always, test scores (and, for seed 0, the plots' data) only when
    ``settings["test"]``."""
    from spacl_hf.vision import embed_images

    splits = splits_of(settings["dataset"])
    train_images, train_labels = splits["train"]
    model, result = train_model(settings, train_images, train_labels)
    bank = embed_images(model, train_images)
    result["validation"], _, _ = scores(model, bank, train_labels, *splits["validation"])
    if settings["test"]:
        test_images, test_labels = splits["test"]
        result["test"], queries, predictions = scores(model, bank, train_labels, test_images, test_labels)
        if settings["seed"] == 0 and all(settings.get(option, True) for option in ABLATIONS.values()):
            result["test_knn20_predictions"] = predictions.tolist()
            result["test_tsne"] = tsne_points(queries)
    return result


def tsne_points(features: torch.Tensor, count: int = 2000) -> list[list[float]]:
    """2-D t-SNE of the first ``count`` rows of a fixed permutation of the test embeddings (for the plot)."""
    from sklearn.manifold import TSNE

    subset = tsne_subset(len(features), count)
    tsne = TSNE(init="pca", random_state=0, perplexity=30)
    points = tsne.fit_transform(F.normalize(features[subset], dim=-1).numpy())
    return [[round(float(x), 2), round(float(y), 2)] for x, y in points]


def tsne_subset(size: int, count: int = 2000) -> torch.Tensor:
    return torch.randperm(size, generator=torch.Generator().manual_seed(0))[:count]


def describe(record: dict[str, Any]) -> str:
    s, r = record["settings"], record["result"]
    shown = options_text(s)
    activity = r.get("activity", {})
    acted = " ".join(f"{k}={activity[k]:.2f}" for k in ACTIVITY_KEYS if k in activity)
    return (f"{s['dataset']} {s['method']} seed {s['seed']} [{shown}]: validation kNN@20 "
            f"{100 * value(record, SELECTION_METRIC):.2f} ({r['step_seconds']:.2f} s/step) {acted}")  # fmt: skip


def options_text(configuration: dict[str, Any]) -> str:
    """The options that differ from the method's defaults, plus the temperature and views (always shown)."""
    method = configuration["method"]
    defaults = settings_for(method, configuration["dataset"])
    shown = {k: v for k, v in configuration.items() if k not in ("seed", "test") and defaults.get(k) != v}
    for always in ("temperature", "num_views"):
        if always in configuration:
            shown[always] = configuration[always]
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))


# --- the phases -------------------------------------------------------------------------------------------------
def spread_configurations() -> list[dict[str, Any]]:
    """Every method at its defaults (temperature 0.1): the seed spread at the budget, on validation."""
    return [settings_for(method) for method in METHODS]


def first_stage() -> list[dict[str, Any]]:
    """Seed 0, validation. The temperature for every contrastive method (0.1 / 0.2 / 0.5); for SPACL crossed with
    the screening weight, since screening acts only where the temperature leaves trivial negatives some weight."""
    rows = []
    for method in ("SPACL supervised", "SPACL self-supervised"):
        rows += [settings_for(method, **c) for c in grid(
            {}, temperature=[0.1, 0.2, 0.5], screening_weight=["softmax", "similarity"])]  # fmt: skip
    for method in ("SupCon", "SimCLR"):
        rows += [settings_for(method, temperature=t) for t in (0.1, 0.2, 0.5)]
    return rows


def second_stage(store: RunStore) -> list[dict[str, Any]]:
    """Seed 0, validation, one option at a time around each SPACL mode's best first-stage setting: every view as an
    anchor (*ours*: SimCLR and SupCon use every view, the paper one anchor per image), supervised the positive pool
    (the sample's own views first, or only them: the paper), the screening mass (0.5, 0.8), the number of positives
    (1, 3) and the generator (off; 8 updates per step)."""
    rows = []
    for method in ("SPACL supervised", "SPACL self-supervised"):
        top = stored_best(store, [c for c in first_stage() if c["method"] == method], 1, SELECTION_METRIC)[0]
        rows.append({**top, "anchor_mode": "every_view"})
        if method == "SPACL supervised":
            rows += [{**top, "positive_pool": pool} for pool in ("views+labels", "views")]
        rows += [{**top, "screening_mass": m} for m in (0.5, 0.8)]
        rows += [{**top, "num_positives": p} for p in (1, 3)]
        rows += [{**top, "adversarial": False}, {**top, "generator_steps": 8}]
    return [r for r in rows if r not in first_stage()]


def candidates(store: RunStore, method: str) -> list[dict[str, Any]]:
    stages = first_stage() + (second_stage(store) if method.startswith("SPACL") else [])
    return [c for c in stages if c["method"] == method]


def chosen(store: RunStore, method: str) -> dict[str, Any]:
    """The method's setting with the best mean validation kNN@20 over 3 seeds among those run with 3 seeds: its two
    best single-seed ones and any other candidate that has 3 seeds stored (its defaults, from `spread`).
    Cross-entropy has nothing to sweep: its defaults."""
    if method == "cross-entropy":
        return settings_for(method)
    return chosen_on_seeds(store, candidates(store, method), 2, SEEDS, SELECTION_METRIC)


def final_configurations(store: RunStore) -> list[tuple[str, dict[str, Any]]]:
    """(row name, settings) of the final table, every one on test: the chosen settings of every method on
    Fashion-MNIST and digits, SPACL's ablation (both modes), and every contrastive method with 2 views."""
    picked = {method: chosen(store, method) for method in METHODS}
    rows = [(method, {**c, "test": True}) for method, c in picked.items()]
    for method in ("SPACL supervised", "SPACL self-supervised"):
        rows += [(f"{method} {name}", {**picked[method], option: False, "test": True})
                 for name, option in ABLATIONS.items()]  # fmt: skip
    rows += [(f"{method}, 2 views", {**picked[method], "num_views": 2, "test": True})
             for method in METHODS if method != "cross-entropy"]  # fmt: skip
    rows += [(method, {**c, "dataset": "digits", "test": True}) for method, c in picked.items()]
    return rows


def run_phase(phase: str, store: RunStore) -> None:
    if phase == "spread":
        run_all(store, spread_configurations(), SEEDS, train_and_score, describe)
    elif phase == "sweep":
        run_all(store, first_stage(), [0], train_and_score, describe)
        run_all(store, second_stage(store), [0], train_and_score, describe)
        for method in ("SPACL supervised", "SPACL self-supervised", "SupCon", "SimCLR"):
            top = stored_best(store, candidates(store, method), 2, SELECTION_METRIC)
            run_all(store, top, SEEDS, train_and_score, describe)
    elif phase == "final":  # digits first: its runs are short, and a sitting cut short still has both data sets
        configurations = [c for _, c in final_configurations(store)]
        configurations.sort(key=lambda c: c["dataset"] != "digits")  # stable: the table's order otherwise
        run_all(store, configurations, SEEDS, train_and_score, describe)


# --- the report -------------------------------------------------------------------------------------------------
def activity_of(row: dict[str, Any]) -> str:
    return activity_cells(row.get("activity", {}), ACTIVITY_KEYS)


def rows_of(records: list[dict[str, Any]], split: str) -> dict[str, dict[str, Any]]:
    """Mean ± std over seeds of every configuration's scores on ``split``, step time, memory and activity."""
    rows = {}
    for row in by_configuration(records, f"{split}.knn@20"):
        mine = runs_of(records, row["configuration"])
        row["settings"] = options_text(row["configuration"])
        row["scores"] = {name: mean_std([value(r, f"{split}.{name}") for r in mine]) for name in SCORES}
        step_seconds = [r["result"]["step_seconds"] for r in mine]  # median: robust to one disturbed run
        row["step_seconds"] = {**mean_std(step_seconds), "median": statistics.median(step_seconds)}
        row["peak_memory_mb"] = statistics.mean(r["result"]["peak_memory_mb"] for r in mine)
        activity = [r["result"]["activity"] for r in mine if "activity" in r["result"]]
        if activity:
            row["activity"] = {k: statistics.mean(a[k] for a in activity if k in a) for k in activity[0]}
        rows[repr(sorted(row["configuration"].items()))] = row
    return rows


def report(store: RunStore, prefix: Path, command: str = "python benchmarks/image_quality.py <phase>") -> dict:
    records = store.records()
    validation = rows_of([r for r in records if not r["settings"]["test"]], "validation")
    spread = [validation[k] for c in spread_configurations() if (k := repr(sorted(c.items()))) in validation]
    sweep = sorted(validation.values(), key=lambda r: (METHODS.index(r["configuration"]["method"]), -r["mean"]))
    try:
        names = final_configurations(store)
    except SystemExit:
        names = []
    tests = rows_of([r for r in records if r["settings"]["test"]], "test")
    final_rows = [{"name": n, **tests[k]} for n, c in names if (k := repr(sorted(c.items()))) in tests]
    result = {
        "command": command,
        "budget": BUDGET,
        "data": "Fashion-MNIST: 55,000 training / 5,000 validation images (fixed split of the training set), "
        "10,000 test; digits: 1,100 / 300 / 397",
        "encoder": "SmallCNN(width=32, embedding_dim=64); scores on the backbone features",
        "augmentation": "ViewPipeline defaults: random resized crop 0.5-1, flip, brightness/contrast 0.4",
        "selection": f"{SELECTION_METRIC} on Fashion-MNIST validation; the test split is read only by `final`",
        "chosen": {n: options_text(c) for n, c in names if n in METHODS and c["dataset"] == "fashion_mnist"},
        "spread": spread,
        "sweep": sweep,
        "final": final_rows,
        "paired": paired_differences(store, names),
    }
    table = markdown(result)
    write_report(result, prefix, table)
    if final_rows:
        plot_bars(final_rows, prefix.with_suffix(".png"))
    pictured = {n: store.load({**c, "seed": 0}) for n, c in names if c["dataset"] == "fashion_mnist"}
    plot_pictures({n: r for n, r in pictured.items() if r is not None}, "fashion_mnist", prefix)
    print(table)
    return result


def plot_pictures(records: dict[str, dict[str, Any]], dataset: str, prefix: Path) -> None:
    """t-SNE of the test embeddings of SPACL and its peers, and SPACL supervised's confusion matrix (seed 0)."""
    pictured = {n: records[n] for n in ("SPACL supervised", "SupCon", "SPACL self-supervised", "SimCLR")
                if n in records and "test_tsne" in records[n]["result"]}  # fmt: skip
    if not pictured:
        return
    splits = splits_of(dataset)
    test_labels = splits["test"][1]
    plot_tsne({n: r["result"]["test_tsne"] for n, r in pictured.items()}, test_labels[tsne_subset(len(test_labels))],
              splits["class_names"], Path(f"{prefix}_tsne.png"))  # fmt: skip
    if "SPACL supervised" in pictured:
        predictions = torch.tensor(pictured["SPACL supervised"]["result"]["test_knn20_predictions"])
        plot_confusion(predictions, test_labels, splits["class_names"], Path(f"{prefix}_confusion.png"))


def paired_differences(store: RunStore, names: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Test kNN@20 differences in points, paired by seed (same seed = same initialisation, batches and views): SPACL
    minus its peer on both data sets (kind "peer"), and SPACL minus SPACL without each component on Fashion-MNIST
    (kind "ablation": positive when the component helps)."""
    lookup = {(n, c["dataset"]): c for n, c in names}
    pairs = [("peer", dataset, mine, peer) for dataset in ("fashion_mnist", "digits")
             for mine, peer in (("SPACL supervised", "SupCon"), ("SPACL self-supervised", "SimCLR"))]  # fmt: skip
    pairs += [("ablation", "fashion_mnist", mode, f"{mode} {name}")
              for mode in ("SPACL supervised", "SPACL self-supervised") for name in ABLATIONS]  # fmt: skip
    rows = []
    for kind, dataset, mine, other in pairs:
        if (mine, dataset) not in lookup or (other, dataset) not in lookup:
            continue
        ours, theirs = lookup[mine, dataset], lookup[other, dataset]
        runs = [(store.load({**ours, "seed": s}), store.load({**theirs, "seed": s})) for s in SEEDS]
        if all(a and b for a, b in runs):
            differences = [value(a, "test.knn@20") - value(b, "test.knn@20") for a, b in runs]
            pair = f"{mine} - {other}"
            rows.append({"kind": kind, "dataset": dataset, "pair": pair, "knn@20": mean_std(differences)})
    return rows


def markdown(result: dict[str, Any]) -> str:
    b = result["budget"]
    lines = [
        f"`{result['command']}`: {result['data']}; {result['encoder']}; {b['steps']} steps, batch {b['batch_size']} "
        f"images x {b['num_views']} views unless said, Adam one-cycle lr {b['lr']:g}. "
        f"Selection: {result['selection']}.",
        "",
        ("Chosen on validation: " + "; ".join(f"{m}: {o}" for m, o in result["chosen"].items()) + ".")
        if result["chosen"] else "The final table waits for the `sweep` and `final` phases.",
        "",
        "**Seed spread** (Fashion-MNIST validation, every method at its defaults, seeds 0-2, %):",
        "",
        "| method | settings | kNN@20 | kNN@200 | linear probe |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {r['configuration']['method']} | {options_text(r['configuration'])} | "
              + " | ".join(pct(r["scores"][s]) for s in SCORES) + " |" for r in result["spread"]]  # fmt: skip
    header = " | ".join(ACTIVITY_KEYS.values())
    lines += ["", "**Validation sweep** (Fashion-MNIST validation kNN@20, %; SPACL's activity: means over steps and "
              "seeds, the generator's after its warm-up):", "",
              f"| method | settings | kNN@20 | seeds | s/step (median) | {header} |",
              "|---|---|---:|---|---:|" + "---:|" * len(ACTIVITY_KEYS)]  # fmt: skip
    lines += [f"| {r['configuration']['method']} | {options_text(r['configuration'])} | {pct(r['scores']['knn@20'])} "
              f"| {r['seeds']} | {r['step_seconds']['median']:.2f} | {activity_of(r)} |"
              for r in result["sweep"]]  # fmt: skip
    if result["final"]:
        lines += ["", "**Final table** (test split, seeds 0-2, mean ± std, %):", "",
                  "| data | method | settings | kNN@20 | kNN@200 | linear probe | s/step (median) | peak MB/step | "
                  f"{header} |", "|---|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(ACTIVITY_KEYS)]  # fmt: skip
        for r in result["final"]:
            c = r["configuration"]
            lines.append(f"| {c['dataset']} | {r['name']} | {options_text(c)} | "
                         + " | ".join(pct(r["scores"][s]) for s in SCORES)
                         + f" | {r['step_seconds']['median']:.2f} | {r['peak_memory_mb']:.0f} | {activity_of(r)} |")
        peers = [p for p in result["paired"] if p["kind"] == "peer"]
        ablation = [p for p in result["paired"] if p["kind"] == "ablation"]
        if peers:
            lines += ["", "SPACL against its peer, paired by seed (test kNN@20, points):", ""]
            lines += [f"- {p['dataset']}: {p['pair']} {pct(p['knn@20'])}" for p in peers]
        if ablation:
            lines += ["", "Ablation, paired by seed (full SPACL minus SPACL without the component, Fashion-MNIST test "
                      "kNN@20, points; positive = the component helps; paper, CIFAR-100: screening 2.9 / 4.2, "
                      "adversarial negatives 1.3 / 1.8, dynamic anchor 1.1 / 1.4, farthest-point 0.7 / 0.9 "
                      "supervised / self-supervised):", ""]  # fmt: skip
            lines += [f"- {p['pair']} {pct(p['knn@20'])}" for p in ablation]
    return "\n".join(lines)


def plot_bars(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    rows = [r for r in rows if r["configuration"]["dataset"] == rows[0]["configuration"]["dataset"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.42 * len(rows) + 1.8), sharey=True)
    names = [r["name"] for r in rows][::-1]
    colors = ["tab:orange" if n.startswith("SPACL") else "tab:blue" for n in names]
    for ax, key, title in zip(axes, ("knn@20", "linear_probe"), ("kNN@20", "linear probe")):
        means = [100 * r["scores"][key]["mean"] for r in rows][::-1]
        stds = [100 * r["scores"][key]["std"] for r in rows][::-1]
        ax.barh(names, means, xerr=stds, color=colors, capsize=3)
        ax.set_xlim(min(m - s for m, s in zip(means, stds)) - 1, max(m + s for m, s in zip(means, stds)) + 1)
        ax.set_xlabel(f"test {title} accuracy % (mean ± std)")
    dataset = rows[0]["configuration"]["dataset"]
    fig.suptitle(f"{dataset} test: {BUDGET['steps']} steps, batch {BUDGET['batch_size']}, seeds 0-2")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tsne(points: dict[str, list[list[float]]], labels: torch.Tensor, names: list[str], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(points), figsize=(4.5 * len(points), 4.8), squeeze=False)
    for ax, (method, xy) in zip(axes[0], points.items()):
        xy = torch.tensor(xy)
        scatter = ax.scatter(xy[:, 0].numpy(), xy[:, 1].numpy(), c=labels[: len(xy)].numpy(), cmap="tab10", s=3)
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


def quick(args: argparse.Namespace) -> None:
    """Smoke run: the chosen methods at their defaults, 1 seed, few steps, validation and test, a temporary store;
    writes the report (with plots) to ``--output-prefix``."""
    BUDGET["steps"] = args.steps or 30
    methods = args.methods or ["SPACL supervised", "SPACL self-supervised", "SupCon", "SimCLR"]
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore("image_quick", root=Path(folder))
        configurations = [settings_for(m, args.dataset, test=True) for m in methods]
        run_all(store, configurations, [0], train_and_score, describe)
        records = store.records()
        rows = rows_of(records, "test")
        final = [{"name": c["method"], **rows[repr(sorted(c.items()))]} for c in configurations]
        result = {"command": " ".join(["python benchmarks/image_quality.py", *sys.argv[1:]]), "budget": BUDGET,
                  "data": args.dataset, "encoder": "SmallCNN", "selection": "none (smoke run)", "chosen": {},
                  "spread": [], "sweep": [], "final": final, "paired": []}  # fmt: skip
        table = markdown(result)
        write_report(result, args.output_prefix, table)
        plot_bars(final, args.output_prefix.with_suffix(".png"))
        plot_pictures({r["settings"]["method"]: r for r in records}, args.dataset, args.output_prefix)
        print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", nargs="?", choices=["spread", "sweep", "final", "report"], default="report")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 30 steps, 1 seed, a temporary store.")
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "digits"],
                        help="Data set of --quick (the study itself runs Fashion-MNIST, then digits in `final`).")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="Methods of --quick.")
    parser.add_argument("--steps", type=int, help="Steps of --quick (default 30).")
    parser.add_argument("--data-folder", default=FASHION_MNIST, help="Folder of the Fashion-MNIST IDX files.")
    parser.add_argument("--output-prefix", type=Path, default=RESULTS / "image_quality")
    args = parser.parse_args()
    DATA_FOLDER["fashion_mnist"] = args.data_folder
    if args.quick:
        quick(args)
        return
    store = RunStore("image")
    if args.phase != "report":
        run_phase(args.phase, store)
    report(store, args.output_prefix, " ".join(["python benchmarks/image_quality.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
