"""ATen ops dispatched and host-device syncs per SPACL training step, on CPU, deterministic.

A training step on a GPU is launch-bound when a loss dispatches hundreds of small ops, and it stalls whenever the
host reads a device value (``.item()``, ``bool(tensor)``, ``nonzero``, boolean-mask indexing, ``unique``). Both
are properties of the code, not of the device, so they are counted here on CPU with one ``TorchDispatchMode``:
every ATen op that reaches a kernel in forward + backward, and among them the ops that would make the host wait for
a CUDA device (:data:`SYNC_OPS`, plus ``aten.index`` with a boolean index). A regression is then visible without a
GPU; ``tests/test_dispatch_bounds.py`` asserts upper bounds on the default text-pair step.

Rows (B = 256 unless ``--batch``): ``MultipleNegativesRankingLoss``'s arithmetic (the baseline), and ``SPACLLoss``'s
core path (``spacl_from_columns``, as ``SPACLLoss.compute_loss_from_embeddings`` calls it, with token content ids)
with its defaults, without the generator, and with every component off; for text pairs ``[B, 2, 384]``, text
triplets ``[B, 3, 384]`` and image views ``[B, 4, 128]`` (labels-free, dynamic anchor on, with plain InfoNCE as the
baseline there). Each row is counted on a normal training step (no statistics) after the generator's warm-up, and
again on a logging step (statistics and input checks on).

    python benchmarks/dispatch_count.py            # writes benchmarks/results/dispatch_count.{json,md}
    python benchmarks/dispatch_count.py --output /tmp/dispatch.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from spacl_hf.core import AdversarialNegativeGenerator, ColumnLayout, SPACLCriterion, spacl_from_columns

RESULTS = Path(__file__).resolve().parent / "results" / "dispatch_count.json"

# Ops whose result the host must read from the device (a CUDA stream sync): scalar reads, data-dependent shapes.
SYNC_OPS = frozenset(
    {
        "aten._local_scalar_dense.default",  # .item(), float(t), bool(t), int(t)
        "aten.is_nonzero.default",
        "aten.nonzero.default",
        "aten.masked_select.default",
        "aten._unique2.default",
        "aten.unique_dim.default",
        "aten.unique_consecutive.default",
        "aten.repeat_interleave.Tensor",  # without output_size its length is data-dependent
    }
)


class DispatchCounter(TorchDispatchMode):
    """Counts every ATen op dispatched inside it, and those that sync the host with the device.

    Example:
        >>> with DispatchCounter() as counter:
        ...     _ = torch.ones(3).sum().item()
        >>> counter.ops, counter.syncs
        (3, 1)
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()
        self.sync_ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        self.by_op[name] += 1
        if name in SYNC_OPS or (name.startswith("aten.index.Tensor") and _has_bool_index(args)):
            self.sync_ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def ops(self) -> int:
        return sum(self.by_op.values())

    @property
    def syncs(self) -> int:
        return sum(self.sync_ops.values())


def _has_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


def count_step(step: Callable[[], torch.Tensor]) -> DispatchCounter:
    """Ops and syncs of one ``step()`` (which returns a loss) and its backward."""
    with DispatchCounter() as counter:
        step().backward()
    return counter


def mnrl(columns: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """MultipleNegativesRankingLoss' arithmetic on ``[K, B, D]`` columns (anchor vs. every other column)."""
    anchors = F.normalize(columns[0], dim=-1)
    candidates = F.normalize(columns[1:].reshape(-1, columns.shape[-1]), dim=-1)
    scores = anchors @ candidates.T / temperature
    return F.cross_entropy(scores, torch.arange(len(anchors)))


def infonce(views: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """One-directional InfoNCE on ``[B, V, D]`` views: view 0 anchors, view 1 is the positive, every other view of
    every other sample a negative."""
    batch, num_views, dim = views.shape
    z = F.normalize(views, dim=-1)
    logits = z[:, 0] @ z.reshape(-1, dim).T / temperature
    own = torch.arange(batch)[:, None] * num_views + torch.arange(num_views)
    drop = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, own[:, [0, *range(2, num_views)]], True)
    return F.cross_entropy(logits.masked_fill(drop, float("-inf")), own[:, 1])


def spacl_variant(name: str, dim: int, temperature: float) -> SPACLCriterion:
    """The criterion ``SPACLLoss`` builds with its defaults (``"defaults"``), without generator, or all off."""
    if name == "every component off":
        return SPACLCriterion(temperature, num_positives=1, farthest_point=False, screening=False, dynamic_anchor=False)
    generator = AdversarialNegativeGenerator(dim, warmup_steps=1) if name == "defaults" else None
    return SPACLCriterion(temperature, dynamic_anchor=False, generator=generator)


def measure(batch: int, seed: int = 0) -> list[dict]:
    rows = []
    inputs = {
        "text pairs": (2, 384, False),
        "text triplets": (3, 384, False),
        "image views": (4, 128, True),
    }
    for input_name, (num_columns, dim, images) in inputs.items():
        generator = torch.Generator().manual_seed(seed)
        base = torch.randn(num_columns, batch, dim, generator=generator)
        ids = torch.randint(0, 2**62, (num_columns, batch), generator=generator)
        if images:
            layout = ColumnLayout(num_columns, 0, 0, uses_labels=False, interchangeable=True)
            temperature, baseline_name = 0.1, "InfoNCE"
        else:
            layout = ColumnLayout.for_batch(num_columns, has_labels=False)
            temperature, baseline_name = 0.05, "MNRL"

        def baseline_step() -> torch.Tensor:
            x = base.clone().requires_grad_(True)
            return infonce(x.transpose(0, 1), temperature) if images else mnrl(x, temperature)

        counter = count_step(baseline_step)
        rows.append(_row(input_name, baseline_name, "training", counter))
        for variant in ("defaults", "no generator", "every component off"):
            criterion = spacl_variant(variant, dim, temperature).train()

            def spacl_step(with_stats: bool, criterion=criterion) -> torch.Tensor:
                x = base.clone().requires_grad_(True)
                content_ids = None if images else ids
                loss, _ = spacl_from_columns(criterion, x, layout, content_ids=content_ids, return_stats=with_stats)
                return loss

            for _ in range(3):  # past the first call's checks and the generator's warm-up
                spacl_step(False).backward()
            rows.append(_row(input_name, f"SPACL {variant}", "training", count_step(lambda: spacl_step(False))))
            rows.append(_row(input_name, f"SPACL {variant}", "logging", count_step(lambda: spacl_step(True))))
    return rows


def _row(input_name: str, method: str, step: str, counter: DispatchCounter) -> dict:
    return {
        "input": input_name,
        "method": method,
        "step": step,
        "ops": counter.ops,
        "syncs": counter.syncs,
        "sync_ops": dict(counter.sync_ops),
    }


def markdown_table(rows: list[dict]) -> str:
    lines = ["| input | method | step | ATen ops | host syncs |", "|---|---|---|---:|---:|"]
    lines += [f"| {r['input']} | {r['method']} | {r['step']} | {r['ops']} | {r['syncs']} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON path; the Markdown table goes beside it")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = measure(args.batch)
    report = {
        "command": "python benchmarks/dispatch_count.py" + (f" --batch {args.batch}" if args.batch != 256 else ""),
        "torch": torch.__version__,
        "batch_size": args.batch,
        "counted": "ATen ops reaching a kernel in forward + backward (one TorchDispatchMode); syncs: " + ", ".join(
            sorted(SYNC_OPS)) + ", aten.index with a boolean index",
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(rows)
    args.output.with_suffix(".md").write_text(f"# Dispatch count\n\n`{report['command']}`\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    sys.exit(main())
