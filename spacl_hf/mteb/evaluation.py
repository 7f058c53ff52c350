"""Evaluate an encoder on local STS files and named MTEB tasks, returning (and writing) the main scores."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import mteb
from mteb.abstasks.abstask import AbsTask
from sentence_transformers import SentenceTransformer

from .models import mteb_model
from .tasks import local_sts_task


def evaluate_model(
    model: SentenceTransformer,
    tasks: Sequence[AbsTask],
    name: str | None = None,
    cache: mteb.ResultCache | None = None,
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> dict[str, float]:
    """Main score of each task (for STS: cosine Spearman), keyed by task name.

    Args:
        model: the encoder.
        tasks: MTEB task instances (e.g. from :func:`local_sts_task` or ``mteb.get_tasks``).
        name: ``organization/model`` for MTEB's metadata; the revision is derived from the weights.
        cache: MTEB's result cache; ``None`` keeps nothing on disk.
        batch_size: encoding batch size.
        show_progress_bar: MTEB's progress bars.

    Raises:
        Exception: whatever ``mteb.evaluate`` raises (e.g. a task that cannot load its data offline).

    Examples:
        >>> task = local_sts_task("../shared/data/stsb/stsb-dev.tsv", name="STSB-dev")  # doctest: +SKIP
        >>> evaluate_model(SentenceTransformer(path), [task], cache=None)  # doctest: +SKIP
        {'STSB-dev': 0.8672...}
    """
    result = mteb.evaluate(
        mteb_model(model, name),
        list(tasks),
        cache=cache,
        overwrite_strategy="always",
        show_progress_bar=show_progress_bar,
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress_bar},
    )
    return {task_result.task_name: float(task_result.get_score()) for task_result in result.task_results}


def evaluate_files(
    model: SentenceTransformer,
    sts_files: Sequence[str | Path] = (),
    task_names: Sequence[str] = (),
    output: str | Path | None = None,
    **kwargs,
) -> dict[str, float]:
    """:func:`evaluate_model` on local STS files and named MTEB tasks; writes the scores as JSON to ``output``.

    Args:
        model: the encoder.
        sts_files: local STS TSV files (see :func:`local_sts_task`).
        task_names: MTEB task names (their data must be reachable or cached).
        output: a JSON file for the scores (its folder is created); ``None`` writes nothing.
        **kwargs (Any): passed to :func:`evaluate_model` (name, cache, batch_size, show_progress_bar).

    Raises:
        ValueError: when neither a file nor a task name is given.
        FileNotFoundError: for a missing STS file.

    Examples:
        >>> evaluate_files(model, ["../shared/data/stsb/stsb-dev.tsv"], output="out/mteb.json")  # doctest: +SKIP
        {'LocalSTS-stsb-dev': 0.8672...}

    The same from the shell: ``python -m spacl_hf.mteb MODEL_DIR --sts-file FILE --output out/mteb.json``.
    """
    tasks: list[AbsTask] = [local_sts_task(path) for path in sts_files]
    if task_names:
        tasks += list(mteb.get_tasks(tasks=list(task_names)))
    if not tasks:
        raise ValueError("Give at least one local STS file or MTEB task name to evaluate on.")
    scores = evaluate_model(model, tasks, **kwargs)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(scores, indent=2) + "\n")
    return scores
