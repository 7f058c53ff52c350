"""Multi-view text: sentence embeddings trained on Flickr30k caption groups (5 captions of one image), where
SPACL's dynamic anchor and farthest-point positives have real choices.

Every method fine-tunes the packaged all-MiniLM-L6-v2 on the same Flickr30k training images in the same seeded
order, for the same steps, encoding the same number of texts per step (``texts_per_step``; MNRL-style pair losses
then see 2.5x the images of 5-view SPACL):

- SPACL V=5 / V=3: ``SPACLLoss`` on ``group_views`` rows (``view_0 .. view_{V-1}``, seeded random captions).
- SupCon: supervised contrastive with the image as label, every caption of the 5 a view.
- MNRL / symmetric MNRL / GIST (guide: the frozen start model): one sibling pair per image (seeded).

Training captions that occur in an evaluation set (STS-B dev and train, CxC, Flickr30k validation / test, COCO
val2017; normalised text) are dropped first, and images left with fewer than 5 captions are left out for every
method; the report gives the counts.

Evaluation: caption-to-sibling retrieval (mAP, MRR, R@1/5/10) on Flickr30k validation (selection) and test, and on
the first 1,000 COCO val2017 images (out of domain; 1,000 of 5,000 to fit the machine), CxC test (Spearman, as
STS) and STS-B dev.

    python benchmarks/multiview_text_quality.py spread   # SPACL V=5 and MNRL, seeds 0-2, validation: the seed spread
    python benchmarks/multiview_text_quality.py sweep    # seed 0: temperature x lr per method, validation only
    python benchmarks/multiview_text_quality.py final    # each method's choice, seeds 0-2, both budgets; ablation
    python benchmarks/multiview_text_quality.py long     # SPACL V=5, MNRL, symmetric MNRL at 150 steps (5x), seeds 0-2
    python benchmarks/multiview_text_quality.py report   # results/multiview_text_quality.{json,md,png}
    python benchmarks/multiview_text_quality.py --quick  # smoke run: 3 steps, SPACL V=5 and MNRL

Selection (``sweep``, seed 0): each method's temperature x lr by the mean of Flickr30k validation mAP and STS-B dev
Spearman, the two selection sets the plan names; the test splits are read only by ``final``. Two budgets: equal texts
encoded per step (60; the targets' budget) and equal images per step (12 = SPACL V=5's; the pair losses then encode
24 texts), both at each method's choice from the equal-texts sweep. ``long`` reruns the three closest methods at
their 30-step choices for 150 steps (not re-swept at that length).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from image_quality import supcon_loss
from ood_quality import fresh_model
from results_io import mean_std, pct, pyplot, write_report
from run_store import RunStore
from sweep import by_configuration, grid, run_all, stored_best, value

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2)
BUDGET = {"steps": 30, "texts_per_step": 60, "lr": 5e-5, "temperature": 0.05, "max_seq_length": 48}
METHODS = {
    "base model (no training)": {"method": "base"},
    "SPACL V=5": {"method": "SPACL", "num_views": 5},
    "SPACL V=3": {"method": "SPACL", "num_views": 3},
    "SupCon V=5": {"method": "SupCon", "num_views": 5},
    "MNRL": {"method": "MNRL"},
    "MNRL symmetric": {"method": "MNRL symmetric"},
    "GIST": {"method": "GIST"},
}
# the two components the multi-view setting is for (inert on pairs); screening and the generator were ablated on pairs
ABLATIONS = {"SPACL V=5 w/o dynamic anchor": "dynamic_anchor", "SPACL V=5 w/o farthest-point": "farthest_point"}
ABLATION_SEEDS = (0, 1, 2)
SWEEP = {"temperature": [0.05, 0.1], "lr": [5e-5, 1.5e-4]}
SELECTION_METRIC = "scores.selection"  # mean of Flickr30k validation mAP and STS-B dev Spearman
# the seed spread on validation at the starting settings (temperature 0.05, lr 5e-5), before reading any gap
SPREAD = ("SPACL V=5", "MNRL")
# a 5x longer run of SPACL and its two closest peers at their choices: do methods separate with more training?
LONG_STEPS = 150
LONG = ("SPACL V=5", "MNRL", "MNRL symmetric")
# equal images per step: the pair losses take SPACL V=5's 12 images, i.e. 24 texts instead of 60
EQUAL_IMAGES = {"MNRL (equal images)": "MNRL", "MNRL symmetric (equal images)": "MNRL symmetric",
                "GIST (equal images)": "GIST"}  # fmt: skip
ACTIVITY = ("anchor_not_first_view", "positives_reordered", "positive_spread", "screened_weight_fraction",
            "kept_negative_fraction", "generated_weight_fraction")  # fmt: skip


def settings_for(name: str, **overrides: Any) -> dict[str, Any]:
    settings = {"study": "multiview_text", **BUDGET, **METHODS[name], "final": True}
    if settings["method"] == "SPACL":
        settings.update(dynamic_anchor=True, farthest_point=True, screening=True, adversarial=True, num_positives=2)
    settings.update(overrides)
    return settings


# --- data -------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def evaluation_sets() -> dict[str, Any]:
    from spacl_hf.captions import load_coco_captions, load_cxc, load_flickr30k
    from spacl_hf.common.data_files import find_data_dir, read_sts

    root = find_data_dir()
    coco = load_coco_captions()
    first_images = set(list(dict.fromkeys(coco["image"]))[:1000])
    return {
        "flickr_validation": load_flickr30k("validation"),
        "flickr_test": load_flickr30k("test"),
        "coco_1000": coco.filter(lambda row: row["image"] in first_images),
        "coco_all": coco,
        "cxc_validation": load_cxc("validation"),
        "cxc_test": load_cxc("test"),
        "stsb_dev": read_sts(root / "stsb" / "stsb-dev.tsv"),
        "stsb_train": read_sts(root / "stsb" / "stsb-train.tsv"),
    }


@lru_cache(maxsize=1)
def training_images() -> tuple[Any, dict[str, int]]:
    """Flickr30k train without evaluation text, images with all 5 captions left: (dataset, counts)."""
    from spacl_hf.captions import drop_overlapping, load_flickr30k

    sets = evaluation_sets()
    banned = [*sets["flickr_validation"]["caption"], *sets["flickr_test"]["caption"], *sets["coco_all"]["caption"]]
    for name in ("cxc_validation", "cxc_test"):
        banned += [*sets[name]["sentence1"], *sets[name]["sentence2"]]
    for name in ("stsb_dev", "stsb_train"):
        banned += [*sets[name][0], *sets[name][1]]
    train = load_flickr30k("train")
    kept, dropped = drop_overlapping(train, "caption", banned)
    per_image: dict[str, int] = {}
    for image in kept["image"]:
        per_image[image] = per_image.get(image, 0) + 1
    complete = {image for image, count in per_image.items() if count == 5}
    kept = kept.filter(lambda row: row["image"] in complete)
    counts = {"captions": len(train), "captions_dropped_overlap": dropped, "images": len(set(train["image"])),
              "images_left_out_incomplete": len(set(train["image"])) - len(complete)}  # fmt: skip
    return kept, counts


def image_order(seed: int) -> list[str]:
    images = sorted(set(training_images()[0]["image"]))
    random.Random(seed).shuffle(images)
    return images


def training_rows(settings: dict[str, Any]):
    """The method's training dataset, one row per batch item, in the seeded image order (no shuffling later)."""
    from datasets import Dataset

    from spacl_hf.captions import group_views

    captions, _ = training_images()
    method, seed, steps, texts = settings["method"], settings["seed"], settings["steps"], settings["texts_per_step"]
    views = settings.get("num_views", 2)
    images = image_order(seed)[: steps * (texts // views)]
    chosen = set(images)
    subset = captions.filter(lambda row: row["image"] in chosen)
    grouped = group_views(subset, "image", "caption", num_views=views, seed=seed)
    position = {image: i for i, image in enumerate(images)}
    grouped = grouped.sort("image").map(lambda row: {"order": position[row["image"]]}).sort("order")
    if method == "SPACL":
        return grouped.remove_columns(["image", "order"]), texts // views
    if method == "SupCon":  # views as rows with the image as label (SupConViews below stacks them back)
        labels = list(range(len(grouped)))
        return Dataset.from_dict({**{f"view_{v}": grouped[f"view_{v}"] for v in range(views)}, "label": labels}), texts // views
    return Dataset.from_dict({"anchor": grouped["view_0"], "positive": grouped["view_1"]}), texts // 2


class SupConViews(torch.nn.Module):
    """SupCon over V caption views of each image (label = image): every other caption of the image is a positive."""

    def __init__(self, model, temperature: float, num_views: int) -> None:
        super().__init__()
        self.model, self.temperature, self.num_views = model, temperature, num_views

    def forward(self, sentence_features, labels):
        views = torch.stack([self.model(f)["sentence_embedding"] for f in sentence_features], dim=1)
        return supcon_loss(views, labels, self.temperature)


# --- one run ----------------------------------------------------------------------------------------------------
def make_loss(settings: dict[str, Any], model):
    from sentence_transformers.sentence_transformer import losses

    from spacl_hf import SPACLLoss

    method, temperature = settings["method"], settings["temperature"]
    if method == "SPACL":
        loss = SPACLLoss(model, temperature=temperature, num_positive_columns=settings["num_views"] - 1,
                         num_positives=settings["num_positives"],
                         dynamic_anchor=settings["dynamic_anchor"], farthest_point=settings["farthest_point"],
                         screening=settings["screening"], adversarial_negatives=settings["adversarial"],
                         generator_warmup_steps=max(1, settings["steps"] // 4))  # fmt: skip
        loss.statistics_every_step = True
        return loss
    if method == "SupCon":
        return SupConViews(model, temperature, settings["num_views"])
    if method == "MNRL":
        return losses.MultipleNegativesRankingLoss(model, scale=1 / temperature)
    if method == "MNRL symmetric":
        return losses.MultipleNegativesSymmetricRankingLoss(model, scale=1 / temperature)
    guide = fresh_model(0, settings["max_seq_length"])
    return losses.GISTEmbedLoss(model, guide, temperature=temperature)


def scores(model, final: bool) -> dict[str, Any]:
    from spacl_hf.captions import evaluate_retrieval, evaluate_similarity
    from spacl_hf.ood import encoder_of

    sets, encode = evaluation_sets(), encoder_of(model, batch_size=64)
    first, second, gold = sets["stsb_dev"]
    from datasets import Dataset

    stsb = Dataset.from_dict({"sentence1": first, "sentence2": second, "score": gold})
    result = {"stsb_dev": evaluate_similarity(encode, stsb)}
    if not final:  # the sweep: validation only
        result["flickr_validation"] = evaluate_retrieval(encode, sets["flickr_validation"])
        result["selection"] = (result["flickr_validation"]["map"] + result["stsb_dev"]) / 2
    else:
        result["flickr_test"] = evaluate_retrieval(encode, sets["flickr_test"])
        result["coco_1000"] = evaluate_retrieval(encode, sets["coco_1000"])
        result["cxc_test"] = evaluate_similarity(encode, sets["cxc_test"])
    return result


def in_order(dataset: Any, batch_size: int, drop_last: bool = True, **_: Any):
    """Batches in the dataset's row order: every method takes the images in the same seeded order."""
    return torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(len(dataset))), batch_size, drop_last)


def train_and_score(settings: dict[str, Any]) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    model = fresh_model(settings["seed"], settings["max_seq_length"])
    if settings["method"] == "base":
        return {"scores": scores(model, settings["final"]), "step_seconds": 0.0}
    train, batch = training_rows(settings)
    loss = make_loss(settings, model)
    with tempfile.TemporaryDirectory() as output_dir:
        args = SentenceTransformerTrainingArguments(
            output_dir=output_dir, max_steps=settings["steps"], per_device_train_batch_size=batch,
            learning_rate=settings["lr"], warmup_steps=max(1, settings["steps"] // 10), lr_scheduler_type="linear",
            batch_sampler=in_order, seed=settings["seed"], report_to="none", save_strategy="no",
            disable_tqdm=True, use_cpu=True,
        )  # fmt: skip
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    result = {"scores": scores(model, settings["final"]), "step_seconds": seconds / settings["steps"],
              "images_per_step": batch}
    if hasattr(loss, "pop_statistics"):
        result["activity"] = {k: round(v, 4) for k, v in loss.pop_statistics().items()}
    return result


def describe(record: dict[str, Any]) -> str:
    s, r = record["settings"], record["result"]["scores"]
    split = "flickr_test" if "flickr_test" in r else "flickr_validation"
    return (f"{s['method']} V={s.get('num_views', '-')} seed {s['seed']}: {split} mAP "
            f"{100 * r[split]['map']:.2f}, STS-B dev {100 * r['stsb_dev']:.2f}")  # fmt: skip


# --- the phases -------------------------------------------------------------------------------------------------
def sweep_configurations(name: str) -> list[dict[str, Any]]:
    """Seed 0, validation only: temperature x lr (``SWEEP``) for one method."""
    return [settings_for(name, final=False, **c) for c in grid({}, **SWEEP)]


def chosen(store: RunStore, name: str) -> dict[str, Any]:
    """The method's final settings: its sweep choice by ``SELECTION_METRIC`` (exits if the sweep is incomplete)."""
    return {**stored_best(store, sweep_configurations(name), 1, SELECTION_METRIC)[0], "final": True}


def final_configurations(store: RunStore) -> list[tuple[str, dict[str, Any], tuple[int, ...]]]:
    """(row, settings, seeds): base, each method at equal texts, the pair losses at equal images, the ablation."""
    picks = {name: chosen(store, name) for name in METHODS if name != "base model (no training)"}
    rows = [("base model (no training)", settings_for("base model (no training)"), (0,))]
    rows += [(name, settings, SEEDS) for name, settings in picks.items()]
    rows += [(name, {**picks[method], "texts_per_step": 24}, SEEDS) for name, method in EQUAL_IMAGES.items()]
    rows += [(name, {**picks["SPACL V=5"], option: False}, ABLATION_SEEDS) for name, option in ABLATIONS.items()]
    rows += [(f"{name} ({LONG_STEPS} steps)", {**picks[name], "steps": LONG_STEPS}, SEEDS) for name in LONG]
    return rows


def run_spread(store: RunStore) -> None:
    run_all(store, [settings_for(name, final=False) for name in SPREAD], SEEDS, train_and_score, describe)


def spread_table(store: RunStore) -> list[dict[str, Any]]:
    records = [r for name in SPREAD for s in SEEDS if (r := store.load({**settings_for(name, final=False), "seed": s}))]
    found = []
    for metric in ("scores.flickr_validation.map", "scores.stsb_dev", SELECTION_METRIC):
        for row in by_configuration(records, metric):
            found.append({"method": row["configuration"]["method"], "num_views": row["configuration"].get("num_views"),
                          "metric": metric.removeprefix("scores."), "seeds": row["seeds"], "mean": row["mean"],
                          "std": row["std"]})  # fmt: skip
    return found


def run_sweep(store: RunStore) -> None:
    base = settings_for("base model (no training)", final=False)  # where the methods start, on validation
    configurations = [base] + [c for name in METHODS if name != "base model (no training)"
                               for c in sweep_configurations(name)]  # fmt: skip
    run_all(store, configurations, [0], train_and_score, describe)


def run_final(store: RunStore, long: bool = False) -> None:
    """Every final row but the long ones (``long=False``), or only the long ones."""
    rows = [row for row in final_configurations(store) if (row[1]["steps"] == LONG_STEPS) == long]
    for seed in SEEDS:  # seed by seed: a sitting that stops early holds paired seeds of every row
        run_all(store, [settings for _, settings, seeds in rows if seed in seeds], [seed], train_and_score, describe)


# --- report -----------------------------------------------------------------------------------------------------
def rows(store: RunStore) -> list[dict[str, Any]]:
    found = []
    for name, settings, seeds in final_configurations(store):
        runs = [r for r in (store.load({**settings, "seed": s}) for s in seeds) if r]
        if not runs:
            continue
        get = lambda r, *path: value(r, "scores." + ".".join(path))  # noqa: E731
        trained = settings["method"] != "base"  # the base row carries the budget's keys but trains nothing
        row = {"name": name, "seeds": [r["settings"]["seed"] for r in runs], "lr": settings["lr"] if trained else None,
               "temperature": settings["temperature"] if trained else None, "steps": settings["steps"],
               "texts_per_step": settings["texts_per_step"] if trained else None,
               "step_seconds": mean_std([r["result"]["step_seconds"] for r in runs])}  # fmt: skip
        for split in ("flickr_test", "coco_1000"):
            row[split] = {m: mean_std([get(r, split, m) for r in runs])
                          for m in ("map", "mrr", "recall_at_1", "recall_at_5", "recall_at_10")}  # fmt: skip
        for split in ("stsb_dev", "cxc_test"):
            row[split] = mean_std([get(r, split) for r in runs])
        row["per_seed"] = {r["settings"]["seed"]: {"flickr_test_map": get(r, "flickr_test", "map"),
                                                   "stsb_dev": get(r, "stsb_dev"), "cxc_test": get(r, "cxc_test")}
                           for r in runs}  # fmt: skip
        activity = [r["result"]["activity"] for r in runs if "activity" in r["result"]]
        if activity:
            row["activity"] = {k: sum(a[k] for a in activity) / len(activity) for k in activity[0]}
        found.append(row)
    return found


def paired_gaps(table: list[dict[str, Any]], reference: str, others: list[str]) -> dict[str, dict[str, Any]]:
    """``reference`` minus each of ``others``, paired by seed: Flickr test mAP, STS-B dev, CxC test."""
    by_name = {r["name"]: r for r in table}
    if reference not in by_name:
        return {}
    base, gaps = by_name[reference]["per_seed"], {}
    for name in others:
        if name not in by_name:
            continue
        seeds = sorted(set(base) & set(by_name[name]["per_seed"]))
        gaps[name] = {"seeds": seeds, **{metric: mean_std([base[s][metric] - by_name[name]["per_seed"][s][metric]
                                                          for s in seeds])
                                         for metric in ("flickr_test_map", "stsb_dev", "cxc_test")}}  # fmt: skip
    return gaps


def sweep_table(store: RunStore) -> list[dict[str, Any]]:
    """Every stored sweep run (seed 0, validation) with the method's choice marked (once its sweep is complete)."""
    found = []
    for name in (n for n in METHODS if n != "base model (no training)"):
        configurations = sweep_configurations(name)
        records = [r for c in configurations if (r := store.load({**c, "seed": 0}))]
        pick = chosen(store, name) if len(records) == len(configurations) else None  # the one rule that chooses
        for record in records:
            settings = record["settings"]
            configuration = {k: v for k, v in settings.items() if k != "seed"}
            found.append({"name": name, "temperature": settings["temperature"], "lr": settings["lr"],
                          "flickr_validation_map": value(record, "scores.flickr_validation.map"),
                          "stsb_dev": value(record, "scores.stsb_dev"), "selection": value(record, SELECTION_METRIC),
                          "chosen": {**configuration, "final": True} == pick})  # fmt: skip
    base = store.load({**settings_for("base model (no training)", final=False), "seed": 0})
    if base:
        found.append({"name": "base model (no training)", "temperature": None, "lr": None, "chosen": False,
                      "flickr_validation_map": value(base, "scores.flickr_validation.map"),
                      "stsb_dev": value(base, "scores.stsb_dev"), "selection": value(base, SELECTION_METRIC)})  # fmt: skip
    return found


def report(store: RunStore, prefix: Path) -> None:
    table = rows(store)
    _, counts = training_images()
    peers = [n for n in [*METHODS, *EQUAL_IMAGES] if n not in ("SPACL V=5", "base model (no training)")]
    long_peers = [f"{name} ({LONG_STEPS} steps)" for name in LONG[1:]]
    result = {"command": "python benchmarks/multiview_text_quality.py spread && ... sweep && ... final && ... long "
                         "&& ... report",
              "budget": {k: v for k, v in BUDGET.items() if k not in ("lr", "temperature")}, "sweep_grid": SWEEP,
              "selection": "mean of Flickr30k validation mAP and STS-B dev Spearman (test splits unread)",
              "training_data": counts, "spread": spread_table(store), "sweep": sweep_table(store), "rows": table,
              "spacl_v5_minus_peer": paired_gaps(table, "SPACL V=5", peers),
              "spacl_v5_minus_ablation": paired_gaps(table, "SPACL V=5", list(ABLATIONS)),
              "spacl_v5_minus_peer_long": paired_gaps(table, f"SPACL V=5 ({LONG_STEPS} steps)", long_peers)}  # fmt: skip
    text = markdown(result)
    write_report(result, prefix, text)
    if table:
        plot(table, Path(f"{prefix}.png"))
    print(text)


def markdown(result: dict[str, Any]) -> str:
    b, c = result["budget"], result["training_data"]
    lines = [f"`python benchmarks/multiview_text_quality.py` `spread`, `sweep`, `final`, `long`, then `report`: "
             "all-MiniLM-L6-v2, "
             f"{b['steps']} steps; equal texts: {b['texts_per_step']} texts per step (SPACL V=5: 12 images; V=3: 20; "
             "pair losses: 30), equal images: 12 images per step (pair losses: 24 texts); Flickr30k train: "
             f"{c['captions_dropped_overlap']} of {c['captions']} captions dropped as evaluation text, "
             f"{c['images_left_out_incomplete']} of {c['images']} images left out (fewer than 5 captions left). "
             f"Temperature and lr per method chosen on seed 0 by the {result['selection']}. Mean ± std over seeds "
             "(%); retrieval = caption-to-sibling.", "",
             "| method | texts/step | temp. | lr | seeds | Flickr test mAP | Flickr test MRR | Flickr test R@1 | "
             "COCO-1k mAP | CxC test | STS-B dev | s/step |", "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["rows"]:
        setting = (f"{r['texts_per_step']} | {r['temperature']} | {r['lr']:g}" if r["lr"] is not None
                   else "- | - | -")  # fmt: skip
        lines.append(f"| {r['name']} | {setting} | {len(r['seeds'])} | {pct(r['flickr_test']['map'])} | "
                     f"{pct(r['flickr_test']['mrr'])} | {pct(r['flickr_test']['recall_at_1'])} | "
                     f"{pct(r['coco_1000']['map'])} | {pct(r['cxc_test'])} | {pct(r['stsb_dev'])} | "
                     f"{r['step_seconds']['mean']:.2f} |")  # fmt: skip
    for key, title in (("spacl_v5_minus_peer", "SPACL V=5 minus each peer"),
                       ("spacl_v5_minus_ablation", "SPACL V=5 minus each ablated variant"),
                       ("spacl_v5_minus_peer_long", f"At {LONG_STEPS} steps, SPACL V=5 minus each peer")):  # fmt: skip
        if result[key]:
            lines += ["", f"{title}, paired by seed (points):", ""]
            lines += [f"- {peer} ({len(g['seeds'])} seeds): Flickr test mAP {pct(g['flickr_test_map'])}, STS-B dev "
                      f"{pct(g['stsb_dev'])}, CxC test {pct(g['cxc_test'])}" for peer, g in result[key].items()]  # fmt: skip
    active = [r for r in result["rows"] if "activity" in r]
    if active:
        keys = [k for k in ACTIVITY if k in active[0]["activity"]]
        lines += ["", "**SPACL activity** (means over training steps and seeds):", "",
                  "| run | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]  # fmt: skip
        lines += [f"| {r['name']} | " + " | ".join(f"{r['activity'].get(k, 0.0):.3f}" for k in keys) + " |"
                  for r in active]  # fmt: skip
    if result["spread"]:
        lines += ["", "**Seed spread** on validation at temperature 0.05, lr 5e-5 (mean ± std over seeds, %):", ""]
        lines += [f"- {r['method']}{' V=' + str(r['num_views']) if r['num_views'] else ''}, {r['metric']} "
                  f"(seeds {r['seeds']}): {pct(r)}" for r in result["spread"]]  # fmt: skip
    if result["sweep"]:
        lines += ["", "**Sweep** (seed 0, validation only; ✓ = the method's choice):", "",
                  "| method | temp. | lr | Flickr val mAP | STS-B dev | selection | chosen |", "|---|---:|---:|---:|---:|---:|---|"]
        for r in result["sweep"]:
            setting = f"{r['temperature']} | {r['lr']:g}" if r["lr"] is not None else "- | -"
            lines.append(f"| {r['name']} | {setting} | {100 * r['flickr_validation_map']:.2f} | "
                         f"{100 * r['stsb_dev']:.2f} | {100 * r['selection']:.2f} | {'✓' if r['chosen'] else ''} |")
    return "\n".join(lines)


def plot(table: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, label) in zip(axes, (("flickr_test", "Flickr30k test mAP (%)"), ("stsb_dev", "STS-B dev Spearman (%)"))):
        for i, r in enumerate(table):
            stat = r[key]["map"] if key == "flickr_test" else r[key]
            ax.errorbar(i, 100 * stat["mean"], yerr=100 * stat["std"], fmt="o", capsize=4)
            if r["lr"] is None:  # the start model: a trained method below this line lost ground
                ax.axhline(100 * stat["mean"], color="gray", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(table)), [r["name"] for r in table], rotation=40, ha="right", fontsize=7)
        ax.set_ylabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", nargs="?", choices=["spread", "sweep", "final", "long", "report"], default="report")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 3 steps, SPACL V=5 and MNRL, no final sets.")
    parser.add_argument("--output-prefix", type=Path, default=RESULTS / "multiview_text_quality")
    args = parser.parse_args()
    if args.quick:
        BUDGET["steps"] = 3
        with tempfile.TemporaryDirectory() as folder:
            store = RunStore("multiview_quick", root=Path(folder))
            runs = [settings_for(n, final=False) for n in ("SPACL V=5", "MNRL")]
            run_all(store, runs, [0], train_and_score, describe)
        return
    store = RunStore("multiview_text")
    if args.phase == "spread":
        run_spread(store)
    elif args.phase == "sweep":
        run_sweep(store)
    elif args.phase in ("final", "long"):
        run_final(store, long=args.phase == "long")
    report(store, args.output_prefix)


if __name__ == "__main__":
    main()
