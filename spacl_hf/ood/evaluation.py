"""Open-intent evaluation on embeddings: fit each OOD scorer on the training embeddings, choose its threshold on
validation, report the `evaluate` metric modules shipped with spacl_hf on test."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import evaluate
from evaluate.loading import evaluation_module_factory, import_main_class, init_dynamic_modules
import torch
from torch import Tensor

from .data import OOD_LABEL, OpenIntentSplits
from .scorers import OODScorer, choose_threshold, default_scorers

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
METRIC_NAMES = ("ood_detection", "open_intent")


def metric_path(name: str) -> str:
    """Path of a metric module shipped with spacl_hf, for ``evaluate.load(path)`` (no Hub access needed).

    Args:
        name: ``"ood_detection"`` (AUROC, FPR at 95% TPR) or ``"open_intent"`` (in-scope accuracy, OOD F1,
            macro F1).

    Raises:
        ValueError: for a name not in :data:`METRIC_NAMES`.

    Examples:
        >>> metric_path("ood_detection").endswith("ood_detection.py")
        True
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"`name` must be one of {METRIC_NAMES}, got {name!r}.")
    return str(METRICS_DIR / name / f"{name}.py")


@lru_cache(maxsize=1)
def _scratch_dir() -> Path:
    """One private folder per process for evaluate's copied module and its lock files, removed at exit, so
    nothing is left under the user's cache (``~/.cache/huggingface``)."""
    folder = Path(tempfile.mkdtemp(prefix="spacl_hf_metrics_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def load_metric(name: str) -> evaluate.EvaluationModule:
    """The shipped metric module ``name`` loaded by path, as ``evaluate.load(metric_path(name))`` does, but with
    its importable copy in a private temporary folder and its state in memory: no lock or Arrow files are
    written to the user's cache.

    Args:
        name: see :func:`metric_path`.

    Raises:
        ValueError: for an unknown name.

    Examples:
        >>> load_metric("ood_detection").compute(scores=[0.5, 0.9, 0.4], references=[0, 1, 1])
        {'auroc': 0.5, 'fpr_at_95_tpr': 0.5}
    """
    path = metric_path(name)
    scratch = _scratch_dir()
    # A package name of our own, so the copy never shadows evaluate's default `evaluate_modules` package.
    modules = init_dynamic_modules("spacl_hf_evaluate_modules", hf_modules_cache=scratch)
    module = evaluation_module_factory(path, module_type="metric", dynamic_modules_path=modules)
    metric = import_main_class(module.module_path)(
        keep_in_memory=True, cache_dir=str(scratch / "state"), hash=module.hash
    )
    metric.download_and_prepare()
    return metric


def evaluate_open_intent(
    train_embeddings: Tensor,
    train_labels: Tensor,
    validation_embeddings: Tensor,
    validation_labels: Tensor,
    test_embeddings: Tensor,
    test_labels: Tensor,
    scorers: list[OODScorer] | None = None,
    threshold_strategy: str = "auto",
    return_scores: bool = False,
) -> dict[str, dict[str, Any]]:
    """Metrics of each OOD scorer; labels are known intents ``0 .. K-1`` and :data:`OOD_LABEL` for OOD queries.

    The threshold is chosen on the validation split only (see :func:`choose_threshold`); test data is only scored.

    Args:
        train_embeddings: known intents only ``[N, D]``, ``[N]``.
        train_labels: see ``train_embeddings``.
        validation_embeddings: ``[V, D]``, ``[V]``.
        validation_labels: see ``validation_embeddings``.
        test_embeddings: ``[T, D]``, ``[T]``.
        test_labels: see ``test_embeddings``.
        scorers: default :func:`default_scorers` (centroid cosine, kNN, Mahalanobis).
        threshold_strategy: passed to :func:`choose_threshold`.
        return_scores: also return each scorer's test scores (``"test_scores"``) for ROC curves.

    Returns:
        ``{scorer.name: {"auroc", "fpr_at_95_tpr", "in_scope_accuracy", "ood_recall", "ood_f1", "known_macro_f1",
        "macro_f1", "accuracy", "threshold"}}``.

    Raises:
        ValueError: when the test split lacks OOD or in-distribution queries, or on bad shapes.

    Shape:
        - embeddings: ``[N, D]`` / ``[V, D]`` / ``[T, D]``; labels: ``[N]`` / ``[V]`` / ``[T]``

    Examples:
        >>> splits = load_clinc150()  # doctest: +SKIP
        >>> encode = lambda ds: model.encode(ds["text"], convert_to_tensor=True).cpu()  # doctest: +SKIP
        >>> label = lambda ds: torch.tensor(ds["label"])  # doctest: +SKIP
        >>> results = evaluate_open_intent(encode(splits.train), label(splits.train), encode(splits.validation),
        ...     label(splits.validation), encode(splits.test), label(splits.test))  # doctest: +SKIP
        >>> results["centroid_cosine"]["auroc"]  # doctest: +SKIP
        0.95...
    """
    test_is_ood = test_labels == OOD_LABEL
    if not bool(test_is_ood.any()) or bool(test_is_ood.all()):
        raise ValueError("`test_labels` must hold both known intents and OOD queries (label -1).")
    detection, classification = load_metric("ood_detection"), load_metric("open_intent")
    results: dict[str, dict[str, Any]] = {}
    for scorer in scorers if scorers is not None else default_scorers():
        scorer.fit(train_embeddings, train_labels)
        val_scores, val_predictions = scorer.score_and_predict(validation_embeddings)
        threshold = choose_threshold(
            val_scores, validation_labels == OOD_LABEL, val_predictions, validation_labels, threshold_strategy
        )
        scores, predictions = scorer.score_and_predict(test_embeddings)
        final = torch.where(scores > threshold, torch.full_like(predictions, OOD_LABEL), predictions)
        metrics = detection.compute(scores=scores.tolist(), references=test_is_ood.long().tolist())
        metrics.update(classification.compute(predictions=final.tolist(), references=test_labels.tolist()))
        metrics["threshold"] = threshold
        if return_scores:
            metrics["test_scores"] = scores
        results[scorer.name] = metrics
    return results


def encoder_of(model: Any, batch_size: int = 256, show_progress_bar: bool = False) -> Callable[[list[str]], Tensor]:
    """``texts -> [N, D]`` float32 CPU embeddings from a model with a sentence-transformers ``encode`` method
    (duck-typed: this module does not import sentence-transformers), for :func:`evaluate_splits`.

    Args:
        model: e.g. a ``SentenceTransformer``.
        batch_size: encoding batch size.
        show_progress_bar: the model's own progress bar.

    Shape:
        - output: ``encode(texts) -> [len(texts), D]``

    Raises:
        ValueError: for a model without ``encode``.

    Examples:
        >>> encode = encoder_of(SentenceTransformer(path))  # doctest: +SKIP
        >>> encode(["book a table", "what is my balance"]).shape  # doctest: +SKIP
        torch.Size([2, 384])
    """
    if not callable(getattr(model, "encode", None)):
        raise ValueError(f"`model` must have an `encode(texts, ...)` method, got {type(model).__name__}.")

    def encode(texts: list[str]) -> Tensor:
        embeddings = model.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                                  show_progress_bar=show_progress_bar)  # fmt: skip
        return embeddings.float().cpu()

    return encode


def evaluate_splits(
    encode: Callable[[list[str]], Tensor],
    splits: OpenIntentSplits,
    bank: Any | None = None,
    scorers: list[OODScorer] | None = None,
    threshold_strategy: str = "auto",
    return_scores: bool = False,
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_open_intent` on the texts of an :class:`OpenIntentSplits`, embedded by ``encode``.

    Args:
        encode: texts -> embeddings, e.g. :func:`encoder_of` ``(model)``.
        splits: the task.
        bank: the training rows the scorers are fitted on (default ``splits.train``; see
            :func:`~spacl_hf.ood.per_class_subset` for a cheaper subset).
        scorers: as :func:`evaluate_open_intent`.
        threshold_strategy: see ``scorers``.
        return_scores: see ``scorers``.

    Shape:
        - ``encode(texts)``: ``[len(texts), D]``

    Raises:
        ValueError: as :func:`evaluate_open_intent`.

    Examples:
        >>> evaluate_splits(encoder_of(model), load_clinc150())["knn"]["auroc"]  # doctest: +SKIP
        0.95...
    """
    bank = splits.train if bank is None else bank
    parts = [(encode(list(part["text"])), torch.tensor(list(part["label"]))) for part in (bank, splits.validation,
                                                                                      splits.test)]  # fmt: skip
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = parts
    return evaluate_open_intent(train_x, train_y, val_x, val_y, test_x, test_y, scorers, threshold_strategy,
                                return_scores)  # fmt: skip


def evaluate_known_only(
    encode: Callable[[list[str]], Tensor],
    splits: OpenIntentSplits,
    scorers: list[OODScorer] | None = None,
    bank: Any | None = None,
    target_tpr: float = 0.95,
    final: bool = False,
) -> dict[str, dict[str, Any]]:
    """Open intent detection when no open example may be seen before test (StackOverflow's protocol: train and
    validation hold known classes only).

    The rule, the same for every embedding method: each scorer is fitted on the known-class training rows
    (``bank``); its threshold keeps ``target_tpr`` of the known-class validation rows (a query scoring above it
    is open). Validation therefore reports only known-class quality (accuracy with and without the rejection);
    ``splits.test`` is not read at all unless ``final`` is true.

    Args:
        encode: texts -> embeddings, e.g. :func:`encoder_of` ``(model)``.
        splits: train and validation of known classes only; test with the open class as :data:`OOD_LABEL`.
        scorers: default :func:`default_scorers` (centroid cosine, kNN, Mahalanobis).
        bank: the training rows the scorers are fitted on (default ``splits.train``).
        target_tpr: share of known-class validation queries the threshold accepts.
        final: also score the test split (the final table only).

    Shape:
        - ``encode(texts)``: ``[len(texts), D]``

    Returns:
        ``{scorer.name: {"validation": {"accuracy", "accepted_accuracy", "threshold"}, "test": {...}}}``; the test
        part (``final`` only) holds ``ood_f1`` (F1-OOD), ``known_macro_f1`` (F1-IND), ``macro_f1`` (F1 over K+1),
        ``accuracy``, ``in_scope_accuracy``, ``ood_recall``, ``auroc`` and ``fpr_at_95_tpr``.

    Raises:
        ValueError: when the validation split holds open rows (it would leak them into the rule).

    Examples:
        >>> results = evaluate_known_only(encoder_of(model), load_stackoverflow(), final=True)  # doctest: +SKIP
        >>> results["centroid_cosine"]["test"]["ood_f1"]  # doctest: +SKIP
        0.83...
    """
    validation_labels = torch.tensor(list(splits.validation["label"]))
    if bool((validation_labels == OOD_LABEL).any()):
        raise ValueError("`splits.validation` holds open (OOD) rows; this protocol sees known classes only before test.")
    bank = splits.train if bank is None else bank
    bank_x, bank_y = encode(list(bank["text"])), torch.tensor(list(bank["label"]))
    validation_x = encode(list(splits.validation["text"]))
    test_x = test_y = None
    if final:
        test_x, test_y = encode(list(splits.test["text"])), torch.tensor(list(splits.test["label"]))
    detection, classification = (load_metric("ood_detection"), load_metric("open_intent")) if final else (None, None)
    results: dict[str, dict[str, Any]] = {}
    for scorer in scorers if scorers is not None else default_scorers():
        scorer.fit(bank_x, bank_y)
        scores, predictions = scorer.score_and_predict(validation_x)
        threshold = choose_threshold(scores, torch.zeros_like(validation_labels, dtype=torch.bool), strategy="tpr",
                                     target_tpr=target_tpr)  # fmt: skip
        correct = predictions == validation_labels
        entry: dict[str, Any] = {"validation": {
            "accuracy": float(correct.double().mean()),
            "accepted_accuracy": float((correct & (scores <= threshold)).double().mean()),
            "threshold": threshold,
        }}  # fmt: skip
        if final:
            scores, predictions = scorer.score_and_predict(test_x)
            decided = torch.where(scores > threshold, torch.full_like(predictions, OOD_LABEL), predictions)
            metrics = detection.compute(scores=scores.tolist(), references=(test_y == OOD_LABEL).long().tolist())
            metrics.update(classification.compute(predictions=decided.tolist(), references=test_y.tolist()))
            entry["test"] = metrics
        results[scorer.name] = entry
    return results
