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
STS) and STS-B dev. No setting is chosen here (see below), so validation is not scored; ``--quick`` scores it.

    python benchmarks/multiview_text_quality.py final    # base model + every method, seeds 0-2; ablation
    python benchmarks/multiview_text_quality.py report   # results/multiview_text_quality.{json,md,png}
    python benchmarks/multiview_text_quality.py --quick  # smoke run: 3 steps, SPACL V=5 and MNRL

This sitting could afford one budget and no temperature sweep: every contrastive method uses temperature 0.05 (MNRL's
default scale 20), lr 5e-5; the equal-images budget of the plan was not run.
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
from sweep import run_all, value

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
ABLATION_SEEDS = (0, 1)
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
    if not final:  # the smoke run: validation only
        result["flickr_validation"] = evaluate_retrieval(encode, sets["flickr_validation"])
    if final:
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


# --- report -----------------------------------------------------------------------------------------------------
def rows(store: RunStore) -> list[dict[str, Any]]:
    found = []
    for name, settings, seeds in [(n, settings_for(n), SEEDS) for n in METHODS if "base" not in n] + [
            ("base model (no training)", settings_for("base model (no training)"), (0,))] + [
            (n, settings_for("SPACL V=5", **{o: False}), ABLATION_SEEDS) for n, o in ABLATIONS.items()]:  # fmt: skip
        runs = [r for r in (store.load({**settings, "seed": s}) for s in seeds) if r]
        if not runs:
            continue
        get = lambda r, *path: value(r, "scores." + ".".join(path))  # noqa: E731
        row = {"name": name, "seeds": [r["settings"]["seed"] for r in runs],
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


def paired_gaps(table: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spacl = next((r for r in table if r["name"] == "SPACL V=5"), None)
    gaps = {}
    for peer in table:
        if spacl is None or peer["name"] in ("SPACL V=5", "base model (no training)") or peer["name"].startswith("SPACL V=5 w/o"):
            continue
        seeds = sorted(set(spacl["per_seed"]) & set(peer["per_seed"]))
        gaps[peer["name"]] = {metric: mean_std([spacl["per_seed"][s][metric] - peer["per_seed"][s][metric] for s in seeds])
                              for metric in ("flickr_test_map", "stsb_dev", "cxc_test")}  # fmt: skip
    return gaps


def report(store: RunStore, prefix: Path) -> None:
    table = rows(store)
    _, counts = training_images()
    result = {"command": "python benchmarks/multiview_text_quality.py final && ... report", "budget": BUDGET,
              "training_data": counts, "rows": table, "spacl_v5_minus_peer": paired_gaps(table)}  # fmt: skip
    text = markdown(result)
    write_report(result, prefix, text)
    if table:
        plot(table, Path(f"{prefix}.png"))
    print(text)


def markdown(result: dict[str, Any]) -> str:
    b, c = result["budget"], result["training_data"]
    lines = [f"`python benchmarks/multiview_text_quality.py final` then `report`: all-MiniLM-L6-v2, {b['steps']} steps "
             f"of {b['texts_per_step']} texts (SPACL V=5: 12 images; V=3: 20; pair losses: 30), lr {b['lr']:g}, "
             f"temperature {b['temperature']}; Flickr30k train: {c['captions_dropped_overlap']} of {c['captions']} "
             f"captions dropped as evaluation text, {c['images_left_out_incomplete']} of {c['images']} images left "
             "out (fewer than 5 captions left). Mean ± std over seeds (%); retrieval = caption-to-sibling.", "",
             "| method | seeds | Flickr test mAP | Flickr test MRR | Flickr test R@1 | COCO-1k mAP | CxC test | "
             "STS-B dev | s/step |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {len(r['seeds'])} | {pct(r['flickr_test']['map'])} | "
                     f"{pct(r['flickr_test']['mrr'])} | {pct(r['flickr_test']['recall_at_1'])} | "
                     f"{pct(r['coco_1000']['map'])} | {pct(r['cxc_test'])} | {pct(r['stsb_dev'])} | "
                     f"{r['step_seconds']['mean']:.2f} |")  # fmt: skip
    if result["spacl_v5_minus_peer"]:
        lines += ["", "SPACL V=5 minus each peer, paired by seed (points):", ""]
        lines += [f"- {peer}: Flickr test mAP {pct(g['flickr_test_map'])}, STS-B dev {pct(g['stsb_dev'])}, CxC test "
                  f"{pct(g['cxc_test'])}" for peer, g in result["spacl_v5_minus_peer"].items()]  # fmt: skip
    active = [r for r in result["rows"] if "activity" in r]
    if active:
        keys = [k for k in ACTIVITY if k in active[0]["activity"]]
        lines += ["", "**SPACL activity** (means over training steps and seeds):", "",
                  "| run | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]  # fmt: skip
        lines += [f"| {r['name']} | " + " | ".join(f"{r['activity'].get(k, 0.0):.3f}" for k in keys) + " |"
                  for r in active]  # fmt: skip
    return "\n".join(lines)


def plot(table: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, label) in zip(axes, (("flickr_test", "Flickr30k test mAP (%)"), ("stsb_dev", "STS-B dev Spearman (%)"))):
        for i, r in enumerate(table):
            stat = r[key]["map"] if key == "flickr_test" else r[key]
            ax.errorbar(i, 100 * stat["mean"], yerr=100 * stat["std"], fmt="o", capsize=4)
        ax.set_xticks(range(len(table)), [r["name"] for r in table], rotation=40, ha="right", fontsize=7)
        ax.set_ylabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", nargs="?", choices=["final", "report"], default="report")
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
    if args.phase == "final":
        run_all(store, [settings_for("base model (no training)")], [0], train_and_score, describe)  # no seed in it
        main_rows = [settings_for(n) for n in METHODS if n != "base model (no training)"]
        ablation = [settings_for("SPACL V=5", **{o: False}) for o in ABLATIONS.values()]
        for seed in SEEDS:  # seed by seed, the ablation inside: a sitting that stops early holds paired seeds of all
            run_all(store, main_rows, [seed], train_and_score, describe)
            if seed in ABLATION_SEEDS:
                run_all(store, ablation, [seed], train_and_score, describe)
    report(store, args.output_prefix)


if __name__ == "__main__":
    main()
