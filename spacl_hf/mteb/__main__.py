"""Evaluate a saved model with MTEB, offline on local STS files or on named MTEB tasks.

    python -m spacl_hf.mteb --model outputs/train_sts/final --sts-file ../shared/data/stsb/stsb-dev.tsv \\
        --output outputs/mteb_scores.json
    python -m spacl_hf.mteb --model my_spacl_trainer_output --pooling mean --task STS12   # needs the Hub for data
"""

from __future__ import annotations

import argparse
import json

from .evaluation import evaluate_files
from .models import load_encoder


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Parse ``argv``, evaluate, print and return the scores (``{task name: main score}``)."""
    parser = argparse.ArgumentParser(prog="python -m spacl_hf.mteb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--model", required=True, help="Saved sentence-transformers or Hugging Face encoder folder.")
    parser.add_argument("--pooling", default="mean", choices=["mean", "cls"], help="For plain encoder folders.")
    parser.add_argument("--sts-file", action="append", default=[], help="Local STS TSV (repeatable).")
    parser.add_argument("--task", action="append", default=[], help="MTEB task name (repeatable).")
    parser.add_argument("--name", default=None, help="organization/model name for the results.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--output", default=None, help="Write the scores here as JSON.")
    args = parser.parse_args(argv)
    model = load_encoder(args.model, args.pooling, args.max_seq_length)
    scores = evaluate_files(model, args.sts_file, args.task, args.output, name=args.name, batch_size=args.batch_size)
    print(json.dumps(scores, indent=2))
    return scores


if __name__ == "__main__":
    main()
