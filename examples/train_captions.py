"""Sentence embeddings from caption groups: five captions of one Flickr30k image are five views of one item, so
SPACL's dynamic anchor and farthest-point hard positives choose among real alternatives. Prints caption-to-sibling
retrieval on Flickr30k validation (mAP, R@1) and STS-B dev Spearman before and after training.

    python examples/train_captions.py                        # 5 views, 12 images (60 captions) per step, 30 steps
    python examples/train_captions.py --num_views 3          # 3 of the 5 captions per image, drawn per image
    accelerate launch examples/train_captions.py --max_steps 200

The recipe is SPACL V=5's choice in `benchmarks/multiview_text_quality.py` (temperature 0.05, lr 5e-5, chosen on
Flickr30k validation mAP and STS-B dev from temperature {0.05, 0.1} x lr {5e-5, 1.5e-4}; 60 texts per step);
the README's multi-view section gives its figures against MNRL, symmetric MNRL, GIST and SupCon. Training captions
that occur in the evaluation sets (Flickr30k validation / test, STS-B) are dropped first and the count printed.
Flickr30k is for research use only; it is read from ``--data_dir`` (default ``../shared/data``), never shipped.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sts import DEFAULT_MODEL, resolve_model  # noqa: E402  (the same model resolution as the flagship)


@dataclass
class CaptionArguments:
    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={"help": "Hub id or local folder."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder with flickr30k/ and stsb/."})
    num_views: int = field(default=5, metadata={"help": "Captions per image in a batch (2-5)."})
    texts_per_step: int = field(default=60, metadata={"help": "Captions encoded per step (a multiple of num_views)."})
    max_train_images: int | None = field(default=None, metadata={"help": "Train on at most this many images."})
    max_eval_images: int | None = field(default=None, metadata={"help": "Evaluate on the first N validation images."})
    max_seq_length: int = field(default=48, metadata={"help": "Truncate captions to this many tokens."})
    temperature: float = field(default=0.05, metadata={"help": "SPACL temperature."})
    num_positives: int = field(default=2, metadata={"help": "Hard positives per anchor (of the other views)."})
    generator_warmup_steps: int = field(default=8, metadata={"help": "Steps before generated negatives are used."})


def training_defaults() -> dict[str, object]:
    return dict(output_dir="outputs/train_captions", learning_rate=5e-5, warmup_steps=3, max_steps=30,
                logging_steps=10, save_strategy="no", report_to="none", seed=0)  # fmt: skip


def validate_before_loading(args: CaptionArguments, training) -> None:
    from spacl_hf.core.checks import check_int, check_temperature

    try:
        check_int("--num_views", args.num_views, 2)
        if args.num_views > 5:
            raise ValueError(f"`--num_views` must be at most 5 (Flickr30k has 5 captions per image), got {args.num_views}.")
        check_int("--texts_per_step", args.texts_per_step, 2 * args.num_views)
        if args.texts_per_step % args.num_views:
            raise ValueError(f"`--texts_per_step` {args.texts_per_step} must be a multiple of --num_views {args.num_views}.")
        check_int("--max_seq_length", args.max_seq_length, 1)
        check_temperature("--temperature", args.temperature)
        check_int("--num_positives", args.num_positives, 1)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    Path(training.output_dir).mkdir(parents=True, exist_ok=True)


def scores(model, validation, stsb) -> dict[str, float]:
    from spacl_hf.captions import evaluate_retrieval, evaluate_similarity
    from spacl_hf.ood import encoder_of

    encode = encoder_of(model, batch_size=64)
    retrieval = evaluate_retrieval(encode, validation)
    return {"flickr_validation_map": retrieval["map"], "flickr_validation_recall_at_1": retrieval["recall_at_1"],
            "stsb_dev_spearman": evaluate_similarity(encode, stsb)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, object]:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from spacl_hf import SPACLLoggingCallback, SPACLLoss, group_views
    from spacl_hf.captions import drop_overlapping, load_flickr30k
    from spacl_hf.common.data_files import find_data_dir, read_sts

    parser = HfArgumentParser((CaptionArguments, SentenceTransformerTrainingArguments))
    parser.set_defaults(**training_defaults())
    args, training = parser.parse_args_into_dataclasses(args=argv)
    validate_before_loading(args, training)
    training.per_device_train_batch_size = args.texts_per_step // args.num_views  # images per step
    torch.manual_seed(training.seed)

    root = find_data_dir(args.data_dir)
    validation, test = load_flickr30k("validation", root), load_flickr30k("test", root)
    if args.max_eval_images:
        validation = validation.select(range(min(5 * args.max_eval_images, len(validation))))
    first, second, gold = read_sts(root / "stsb" / "stsb-dev.tsv")
    stsb = Dataset.from_dict({"sentence1": first, "sentence2": second, "score": gold})
    captions = load_flickr30k("train", root)
    if args.max_train_images:
        captions = captions.select(range(min(5 * args.max_train_images, len(captions))))
    captions, dropped = drop_overlapping(captions, "caption", [*validation["caption"], *test["caption"], *first, *second])
    train = group_views(captions, "image", "caption", args.num_views, seed=training.seed, short_groups="drop")
    train = train.remove_columns("image")

    model = SentenceTransformer(resolve_model(args.model_name_or_path), device=str(training.device))
    model.max_seq_length = args.max_seq_length
    before = scores(model, validation, stsb)
    loss = SPACLLoss(model, temperature=args.temperature, num_positive_columns=args.num_views - 1,
                     num_positives=min(args.num_positives, args.num_views - 1), dynamic_anchor=True,
                     generator_warmup_steps=args.generator_warmup_steps, generator_seed=training.seed)  # fmt: skip
    trainer = SentenceTransformerTrainer(model=model, args=training, train_dataset=train, loss=loss)
    SPACLLoggingCallback.attach(trainer, loss)
    trainer.train()
    after = scores(model, validation, stsb)
    result = {"train_images": len(train), "train_captions_dropped_as_evaluation_text": dropped,
              "steps": trainer.state.global_step, "before": before, "after": after}  # fmt: skip
    if trainer.is_world_process_zero():
        output = Path(training.output_dir)
        model.save_pretrained(str(output / "final"))
        (output / "scores.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"\n{len(train)} images x {args.num_views} captions; {dropped} training captions dropped as evaluation text")
        for key in before:
            print(f"  {key:32s} {100 * before[key]:6.2f} -> {100 * after[key]:6.2f}")
        print(f"model, model card and scores.json in {output}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
