"""The SPACL paper's text benchmark: StackOverflow open intent detection at 25% and 75% known classes.

Protocol (``spacl_hf.ood.load_stackoverflow``, the ADB / TEXTOIR one): seed s draws the known classes (the shipped
lists for seeds 0-9); train and dev hold known classes only; test holds all 6,000 titles with every unknown class
as one open class. No open example is read before the final table: each OOD scorer is fitted on known-class
training titles and its threshold keeps 95% of the known-class dev titles (``evaluate_known_only``); the same rule
for every method. Metrics from the (K+1) x (K+1) confusion matrix through the shipped ``open_intent`` module:
F1-OOD (``ood_f1``), F1-IND (``known_macro_f1``), F1 over K+1 (``macro_f1``), accuracy.

Every method fine-tunes the packaged all-MiniLM-L6-v2 (the literature uses bert-base-uncased, not available
offline) on the same known-class titles with the same steps, texts per step, schedule and seeds:

- SPACL: ``SPACLLoss`` on (text, label), per-class batches (``PerClassBatchSampler``), optional dropout views.
- SupCon: supervised contrastive loss on the same batches and views.
- MNRL: MultipleNegativesRankingLoss on (title, another title of its class) pairs; half as many pairs as the
  others have titles, so every method encodes the same number of texts per step.
- cross-entropy: a linear classifier on the embedding; scored by maximum softmax probability (MSP) as well as by
  the embedding scorers.

The budget: the paper trains 20 epochs at batch 8 (7,500 steps at 25%, 22,500 at 75%); a step of MiniLM at batch 8
costs about 0.33 s on this machine's 2 cores, so one run at that budget would take 41 min (2 h at 75%) and the
study (40 final runs) days. ``--budget paper`` runs it for a machine that can; the committed tables use the
``cpu`` budget below, and say so.

    python benchmarks/stackoverflow_quality.py sweep    # seed 0, 25%: temperature x lr per method, views for SPACL
    python benchmarks/stackoverflow_quality.py final    # chosen settings, seeds 0-4, 25% and 75%; the SPACL ablation
    python benchmarks/stackoverflow_quality.py report   # results/stackoverflow_quality.{json,md,png} from the store
    python benchmarks/stackoverflow_quality.py --quick  # smoke run: 4 steps, SPACL and SupCon, a temporary store

Selection: the known-class dev accuracy of the centroid-cosine scorer at 25%, seed 0 (``sweep``); ``final`` reads
the choice from the stored sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from ood_quality import CrossEntropyHeadLoss, SupConLoss, fresh_model, same_intent_pairs
from results_io import mean_std, pct, pyplot, write_report
from run_store import RunStore
from sweep import by_configuration, grid, run_all, runs_of, stored_best, value

RESULTS = Path(__file__).resolve().parent / "results"
SCORERS = ("centroid_cosine", "knn", "mahalanobis")
SELECTION_METRIC = "validation.centroid_cosine.accuracy"
SEEDS = (0, 1, 2, 3, 4)
ABLATION_SEEDS = (0, 1, 2)  # the ablation's 12 runs fit the sitting; the main table has 5 seeds
RATIOS = (0.25, 0.75)
BUDGETS = {
    # 48 steps of 32 titles: half an epoch at 25% (1,536 of 3,000 titles), a sixth at 75%
    "cpu": {"steps": 48, "batch_size": 32, "max_seq_length": 45, "bank_per_class": 100},
    "paper": {"epochs": 20, "batch_size": 8, "max_seq_length": 45, "bank_per_class": None},
}
BUDGET = dict(BUDGETS["cpu"])
SPACL_DEFAULTS = {
    "per_class": 8, "num_views": 1, "temperature": 0.05, "lr": 1e-4, "screening_weight": "softmax",
    "screening_mass": 0.95, "num_positives": 2, "dynamic_anchor": True, "farthest_point": True, "screening": True,
    "adversarial": True,
}  # fmt: skip
ABLATIONS = {"w/o dynamic anchor": "dynamic_anchor", "w/o farthest-point": "farthest_point",
             "w/o screening": "screening", "w/o adversarial negatives": "adversarial"}  # fmt: skip
ACTIVITY = ("anchor_not_first_view", "positives_reordered", "screened_weight_fraction", "kept_negative_fraction",
            "generated_weight_fraction", "generated_guard_kept_fraction", "nonpositive_similarity_total")  # fmt: skip
METHODS = ("SPACL", "SupCon", "MNRL", "cross-entropy")


def settings_for(method: str, ratio: float, **overrides: Any) -> dict[str, Any]:
    """One configuration: the shared budget plus the options ``method`` reads."""
    settings: dict[str, Any] = {"task": "stackoverflow", "known_ratio": ratio, "method": method, **BUDGET,
                                "lr": 1e-4, "final": False}  # fmt: skip
    if method == "SPACL":
        settings.update(SPACL_DEFAULTS)
    elif method == "SupCon":
        settings.update(per_class=8, num_views=1, temperature=0.05)
    elif method == "MNRL":
        settings.update(temperature=0.05)
    unknown = set(overrides) - set(settings)
    if unknown:
        raise ValueError(f"{method} does not read {sorted(unknown)}.")
    settings.update(overrides)
    return settings


# --- one run ----------------------------------------------------------------------------------------------------
def make_loss(settings: dict[str, Any], model, num_labels: int, warmup: int):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from spacl_hf import SPACLLoss

    method = settings["method"]
    if method == "SPACL":
        loss = SPACLLoss(
            model, temperature=settings["temperature"], num_positives=settings["num_positives"],
            num_views=settings["num_views"], screening_mass=settings["screening_mass"],
            screening_weight=settings["screening_weight"], dynamic_anchor=settings["dynamic_anchor"],
            farthest_point=settings["farthest_point"], screening=settings["screening"],
            adversarial_negatives=settings["adversarial"], generator_warmup_steps=warmup,
        )  # fmt: skip
        loss.statistics_every_step = True  # activity: means over the steps (split at the generator's warm-up)
        return loss
    if method == "SupCon":
        return SupConLoss(model, settings["temperature"], settings["num_views"])
    if method == "MNRL":
        return MultipleNegativesRankingLoss(model, scale=1 / settings["temperature"])
    return CrossEntropyHeadLoss(model, num_labels)


def total_steps(settings: dict[str, Any], train_rows: int) -> int:
    if "steps" in settings:
        return settings["steps"]
    return settings["epochs"] * (train_rows // settings["batch_size"])


def train_and_score(settings: dict[str, Any]) -> dict[str, Any]:
    """Train one model; known-class dev scores, and the test table only when ``settings["final"]``."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    from spacl_hf import per_class_batch_sampler
    from spacl_hf.ood import (MaxSoftmaxScorer, default_scorers, encoder_of, evaluate_known_only,
                              load_stackoverflow, per_class_subset)  # fmt: skip

    seed = settings["seed"]
    splits = load_stackoverflow(known_ratio=settings["known_ratio"], seed=seed)
    bank = per_class_subset(splits.train, settings["bank_per_class"], seed)
    model = fresh_model(seed, settings["max_seq_length"])
    steps = total_steps(settings, len(splits.train))
    warmup = max(1, steps // 4)
    if settings["method"] == "MNRL":  # half as many pairs: the same texts per step as the others
        train, sampler, batch = same_intent_pairs(splits.train, seed), "no_duplicates", settings["batch_size"] // 2
    else:
        train, batch = splits.train.remove_columns("intent"), settings["batch_size"]
        sampler = per_class_batch_sampler(settings["per_class"]) if "per_class" in settings else "batch_sampler"
    loss = make_loss(settings, model, len(splits.known_intents), warmup)
    warmup_activity: dict[str, float] = {}

    class SplitActivityAtWarmup(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup and hasattr(loss, "pop_statistics"):
                warmup_activity.update(loss.pop_statistics())

    with tempfile.TemporaryDirectory() as output_dir:
        training = SentenceTransformerTrainingArguments(
            output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch, learning_rate=settings["lr"],
            warmup_steps=max(1, steps // 10), lr_scheduler_type="linear", batch_sampler=sampler, seed=seed,
            data_seed=seed, report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True,
        )  # fmt: skip
        trainer = SentenceTransformerTrainer(model=model, args=training, train_dataset=train, loss=loss,
                                             callbacks=[SplitActivityAtWarmup()])  # fmt: skip
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    scorers = default_scorers()
    if settings["method"] == "cross-entropy":
        scorers.append(MaxSoftmaxScorer(loss.classifier))
    results = evaluate_known_only(encoder_of(model, batch_size=64), splits, scorers, bank, final=settings["final"])
    result: dict[str, Any] = {
        "steps": steps,
        "step_seconds": seconds / steps,
        "validation": {name: r["validation"] for name, r in results.items()},
    }
    if settings["final"]:
        result["test"] = {name: r["test"] for name, r in results.items()}
    if hasattr(loss, "pop_statistics"):
        result["activity_warmup"] = {k: round(v, 4) for k, v in warmup_activity.items()}
        result["activity"] = {k: round(v, 4) for k, v in loss.pop_statistics().items()}  # after the warm-up
    return result


def describe(record: dict[str, Any]) -> str:
    s, r = record["settings"], record["result"]
    shown = options_text(s)
    text = f"{s['method']} {round(100 * s['known_ratio'])}% seed {s['seed']} ({shown}): dev acc " \
           f"{100 * value(record, SELECTION_METRIC):.2f}"  # fmt: skip
    if "test" in r:
        text += f", test F1-OOD {100 * r['test']['centroid_cosine']['ood_f1']:.2f}"
    return text + f" ({r['step_seconds']:.2f} s/step)"


def options_text(configuration: dict[str, Any]) -> str:
    skip = (*BUDGET, "task", "known_ratio", "method", "final", "seed", "epochs", "steps")
    reference = SPACL_DEFAULTS if configuration["method"] == "SPACL" else {}
    shown = {k: v for k, v in configuration.items() if k not in skip and reference.get(k, object()) != v}
    for always in ("temperature", "lr", "num_views"):
        if always in configuration:
            shown[always] = configuration[always]
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(shown.items()))


# --- the phases -------------------------------------------------------------------------------------------------
def sweep_configurations() -> list[dict[str, Any]]:
    """Seed 0, 25%: temperature x lr for the contrastive methods, lr for cross-entropy, 2 dropout views for SPACL
    and SupCon at their default temperature (the dynamic anchor has a choice only with views)."""
    rows = []
    for method in ("SPACL", "SupCon", "MNRL"):
        rows += [settings_for(method, 0.25, **c) for c in grid({}, temperature=[0.05, 0.1], lr=[5e-5, 1e-4])]
    rows += [settings_for("cross-entropy", 0.25, lr=lr) for lr in (5e-5, 1e-4, 3e-4)]
    rows += [settings_for(method, 0.25, num_views=2) for method in ("SPACL", "SupCon")]
    return rows


def chosen(store: RunStore, method: str) -> dict[str, Any]:
    candidates = [c for c in sweep_configurations() if c["method"] == method]
    return stored_best(store, candidates, 1, SELECTION_METRIC)[0]


def final_configurations(store: RunStore) -> list[tuple[str, dict[str, Any]]]:
    """(row, settings): each method's choice at 25% and 75%, then the SPACL ablation at 25%."""
    picks = {method: chosen(store, method) for method in METHODS}
    rows = [(m, {**picks[m], "known_ratio": r, "final": True}) for r in RATIOS for m in METHODS]
    rows += [(name, {**picks["SPACL"], option: False, "final": True}) for name, option in ABLATIONS.items()]
    return rows


def run_phase(phase: str, store: RunStore) -> None:
    if phase == "sweep":
        run_all(store, sweep_configurations(), [0], train_and_score, describe)
    elif phase == "final":
        rows = final_configurations(store)
        main = [c for n, c in rows if not n.startswith("w/o")]
        run_all(store, main, SEEDS, train_and_score, describe, seed_major=True)
        ablation = [c for n, c in rows if n.startswith("w/o")]
        run_all(store, ablation, ABLATION_SEEDS, train_and_score, describe, seed_major=True)


# --- the report -------------------------------------------------------------------------------------------------
def summary(store: RunStore, name: str, configuration: dict[str, Any]) -> dict[str, Any] | None:
    runs = [r for r in (store.load({**configuration, "seed": s}) for s in SEEDS) if r is not None]
    if not runs:
        return None
    row: dict[str, Any] = {"name": name, "configuration": configuration, "seeds": [r["settings"]["seed"] for r in runs]}
    scorers = [s for s in (*SCORERS, "max_softmax") if s in runs[0]["result"]["test"]]
    row["test"] = {s: {m: mean_std([r["result"]["test"][s][m] for r in runs])
                       for m in ("ood_f1", "known_macro_f1", "macro_f1", "accuracy", "auroc")} for s in scorers}  # fmt: skip
    row["per_seed_ood_f1"] = [r["result"]["test"]["centroid_cosine"]["ood_f1"] for r in runs]
    row["step_seconds"] = mean_std([r["result"]["step_seconds"] for r in runs])
    for part in ("activity", "activity_warmup"):
        found = [r["result"][part] for r in runs if r["result"].get(part)]
        if found:
            row[part] = {k: sum(a.get(k, 0.0) for a in found) / len(found) for k in found[0]}
    return row


def paired(store: RunStore, a: dict[str, Any], b: dict[str, Any], scorer: str = "centroid_cosine") -> dict | None:
    pairs = [(store.load({**a, "seed": s}), store.load({**b, "seed": s})) for s in SEEDS]
    pairs = [(x, y) for x, y in pairs if x and y]
    if not pairs:
        return None
    return {"seeds": len(pairs), **mean_std([x["result"]["test"][scorer]["ood_f1"] - y["result"]["test"][scorer]["ood_f1"]
                                             for x, y in pairs])}  # fmt: skip


def report(store: RunStore, prefix: Path) -> None:
    records = [r for r in store.records() if not r["settings"]["final"]]
    sweep = sorted(by_configuration(records, SELECTION_METRIC), key=lambda r: (r["configuration"]["method"], -r["mean"]))
    try:
        names = final_configurations(store)
    except (SystemExit, IndexError, KeyError):
        names = []
    final = [row for row in (summary(store, n, c) for n, c in names) if row]
    gaps = {}
    for ratio in RATIOS:
        mine = {n: c for n, c in names if c["known_ratio"] == ratio and not n.startswith("w/o")}
        if "SPACL" in mine:
            gaps[f"{round(100 * ratio)}%"] = {peer: paired(store, mine["SPACL"], mine[peer])
                                              for peer in METHODS[1:] if peer in mine}  # fmt: skip
    spacl_25 = next((c for n, c in names if n == "SPACL" and c["known_ratio"] == 0.25), None)
    ablation = {n: paired(store, spacl_25, c) for n, c in names if n.startswith("w/o")} if spacl_25 else {}
    result = {
        "command": "python benchmarks/stackoverflow_quality.py sweep|final|report",
        "start_model": "all-MiniLM-L6-v2 (packaged); the published figures use bert-base-uncased",
        "budget": BUDGET,
        "decision_rule": "scorers fitted on known-class training titles; threshold keeps 95% of known-class dev titles",
        "selection": f"{SELECTION_METRIC} at 25%, seed 0 (dev, known classes only; the test split is read only by `final`)",
        "sweep": sweep,
        "final": final,
        "paired_ood_f1": gaps,
        "ablation_spacl_minus_variant": ablation,
        "published": {"ADB": [90.88, 73.86], "DA-ADB": [92.65, 74.55], "KNNCL": [89.59, 72.81], "SPACL (paper)": [96.72, 76.39]},
    }
    table = markdown(result)
    write_report(result, prefix, table)
    if final:
        plot(final, Path(f"{prefix}.png"))
    print(table)


def markdown(result: dict[str, Any]) -> str:
    b = result["budget"]
    budget = (f"{b['steps']} steps of {b['batch_size']} titles" if "steps" in b else
              f"{b['epochs']} epochs at batch {b['batch_size']}")  # fmt: skip
    lines = [f"`{result['command']}`: {budget}, max_seq_length {b['max_seq_length']}, linear schedule, 10% warm-up; "
             f"start model {result['start_model']}. Open-class rule: {result['decision_rule']}. "
             f"Selection: {result['selection']}.", "",
             "**Sweep** (dev accuracy of the centroid classifier on known classes, 25%, seed 0):", "",
             "| method | settings | dev accuracy |", "|---|---|---:|"]  # fmt: skip
    lines += [f"| {r['configuration']['method']} | {options_text(r['configuration'])} | {100 * r['mean']:.2f} |"
              for r in result["sweep"]]  # fmt: skip
    if result["final"]:
        lines += ["", "**Test** (all 6,000 titles; mean ± std over the seeds counted, from 0 up, %; centroid-cosine "
                  "scorer unless named):", "",
                  "| known | method | settings | seeds | F1-OOD | F1-IND | F1 (K+1) | accuracy | AUROC | F1-OOD kNN | "
                  "F1-OOD Mahalanobis | F1-OOD MSP | s/step |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in result["final"]:
            t, c = r["test"], r["test"]["centroid_cosine"]
            msp = pct(t["max_softmax"]["ood_f1"]) if "max_softmax" in t else "-"
            lines.append(f"| {round(100 * r['configuration']['known_ratio'])}% | {r['name']} | "
                         f"{options_text(r['configuration'])} | {len(r['seeds'])} | {pct(c['ood_f1'])} | {pct(c['known_macro_f1'])} | "
                         f"{pct(c['macro_f1'])} | {pct(c['accuracy'])} | {pct(c['auroc'])} | {pct(t['knn']['ood_f1'])} | "
                         f"{pct(t['mahalanobis']['ood_f1'])} | {msp} | {r['step_seconds']['mean']:.2f} |")  # fmt: skip
        lines += ["", "SPACL minus each peer, F1-OOD paired by seed (points, centroid cosine):", ""]
        for ratio, peers in result["paired_ood_f1"].items():
            lines.append(f"- {ratio}: " + "; ".join(f"{p} {100 * g['mean']:+.2f} ± {100 * g['std']:.2f} ({g['seeds']} seeds)"
                                                     for p, g in peers.items() if g))  # fmt: skip
        if result["ablation_spacl_minus_variant"]:
            lines += ["", "Ablation at 25%: SPACL minus each variant, F1-OOD paired by seed (points; the variants ran on "
                      f"seeds {ABLATION_SEEDS[0]}-{ABLATION_SEEDS[-1]}):", ""]  # fmt: skip
            lines += [f"- {n}: {100 * g['mean']:+.2f} ± {100 * g['std']:.2f} ({g['seeds']} seeds)"
                      for n, g in result["ablation_spacl_minus_variant"].items() if g]  # fmt: skip
        active = [r for r in result["final"] if "activity" in r]
        if active:
            keys = [k for k in ACTIVITY if k in active[0]["activity"]]
            lines += ["", "**SPACL activity** after the generator's warm-up (means over steps and seeds; the warm-up "
                      "quarter in the JSON):", "", "| known | run | " + " | ".join(keys) + " |",
                      "|---|---|" + "---:|" * len(keys)]  # fmt: skip
            lines += [f"| {round(100 * r['configuration']['known_ratio'])}% | {r['name']} | "
                      + " | ".join(f"{r['activity'].get(k, 0.0):.3f}" for k in keys) + " |" for r in active]  # fmt: skip
        p = result["published"]
        lines += ["", "Published F1-OOD (bert-base-uncased, 10 seeds, the paper's budget; other backbone, other code, "
                  "for orientation only): " + "; ".join(f"{k} {v[0]:.2f} / {v[1]:.2f}" for k, v in p.items())
                  + " (25% / 75%)."]  # fmt: skip
    return "\n".join(lines)


def plot(final: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, ratio in zip(axes, RATIOS):
        rows = [r for r in final if r["configuration"]["known_ratio"] == ratio]
        for i, r in enumerate(rows):
            ax.scatter([i] * len(r["per_seed_ood_f1"]), [100 * v for v in r["per_seed_ood_f1"]], color="gray", s=12)
            ax.errorbar(i, 100 * r["test"]["centroid_cosine"]["ood_f1"]["mean"],
                        yerr=100 * r["test"]["centroid_cosine"]["ood_f1"]["std"], fmt="o", color="C0", capsize=4)  # fmt: skip
        ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=35, ha="right", fontsize=8)
        ax.set_title(f"StackOverflow, {round(100 * ratio)}% known classes")
        ax.set_ylabel("test F1-OOD (%), centroid cosine")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", nargs="?", choices=["sweep", "final", "report"], default="report")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 4 steps, 1 seed, a temporary store.")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu",
                        help="'paper' = 20 epochs at batch 8 (a GPU's work); its runs go to their own store.")
    parser.add_argument("--output-prefix", type=Path, default=None)
    args = parser.parse_args()
    BUDGET.clear()
    BUDGET.update(BUDGETS[args.budget])
    if args.quick:
        BUDGET.update(steps=4, bank_per_class=10)
        BUDGET.pop("epochs", None)
        with tempfile.TemporaryDirectory() as folder:
            store = RunStore("stackoverflow_quick", root=Path(folder))
            configurations = [settings_for(m, 0.25, final=True) for m in ("SPACL", "SupCon")]
            for record in run_all(store, configurations, [0], train_and_score, describe):
                print(f"{record['settings']['method']}: test F1-OOD {100 * value(record, 'test.centroid_cosine.ood_f1'):.2f}")
        return
    suffix = "" if args.budget == "cpu" else f"_{args.budget}"
    store = RunStore(f"stackoverflow{suffix}")
    if args.phase != "report":
        run_phase(args.phase, store)
    report(store, args.output_prefix or RESULTS / f"stackoverflow_quality{suffix}")


if __name__ == "__main__":
    main()
