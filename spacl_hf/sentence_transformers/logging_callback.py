"""Put SPACL's statistics and the generator's losses into the trainer's logs, and check the training data's labels
before the first batch."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from typing import Any

import torch

from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from spacl_hf.common.training_logs import insert_first, merge_into_log, will_log_step


LABEL_COLUMNS = ("label", "labels", "score", "scores")  # the columns sentence-transformers reads as labels
GENERATOR_STATE_NAME = "spacl_generator.pt"  # the adversarial generators, beside each checkpoint's model


def save_generator_state(loss: Any, folder: str) -> str | None:
    """Write ``loss``'s adversarial generators (full size and every truncated size, with their Adam state, noise
    counter and step count) into ``folder`` atomically (a temporary file, then a rename). ``None`` without one."""
    criterion = getattr(loss, "criterion", None)
    if criterion is None or criterion.generator is None:
        return None
    state = {
        "truncated_dims": sorted(int(dim) for dim in criterion.truncated_generators),
        "generators": {key: module.state_dict() for key, module in _generators(criterion).items()},
    }
    path = os.path.join(folder, GENERATOR_STATE_NAME)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".spacl_generator.", suffix=".tmp")
    os.close(handle)
    torch.save(state, temporary)
    os.replace(temporary, path)  # a save interrupted here leaves the previous file or none, never half a file
    return path


def load_generator_state(loss: Any, path: str) -> None:
    """Restore what :func:`save_generator_state` wrote (tensors and plain containers only: ``weights_only=True``).

    Raises:
        ValueError: naming ``path``, for a file that is not such a state or whose generators do not fit the loss.
    """
    criterion = loss.criterion
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for dim in state["truncated_dims"]:
            criterion.generator_for(int(dim))  # made on first use: make them now, so their state has a home
        generators = _generators(criterion)
        if set(state["generators"]) != set(generators):
            raise KeyError(f"generators {sorted(state['generators'])} vs the loss's {sorted(generators)}")
        for key, module in generators.items():
            module.load_state_dict(state["generators"][key])
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{path} is not a SPACL generator state that fits this loss (corrupted, truncated, or written with other "
            f"settings): {type(error).__name__}: {error}"
        ) from None


def _generators(criterion: Any) -> dict[str, Any]:
    found = {"full": criterion.generator}
    found.update({f"dim_{key}": module for key, module in criterion.truncated_generators.items()})
    return found


def check_label_columns(dataset: Any) -> None:
    """Raise a clear error when a label column of ``dataset`` (a ``datasets.Dataset``) holds strings.

    SPACLLoss's single-column format takes integer class labels; sentence-transformers reads the columns in
    :data:`LABEL_COLUMNS` as labels and stacks them into a tensor.

    Args:
        dataset: the training data; anything without ``features`` (an iterable dataset, a list) is not checked.

    Raises:
        ValueError: naming the column, when its feature is a string ``Value``.

    Examples:
        >>> from datasets import Dataset
        >>> check_label_columns(Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}))  # integers: fine
    """
    features = getattr(dataset, "features", None)
    if not features:
        return
    for column in LABEL_COLUMNS:
        feature = features.get(column)
        if getattr(feature, "dtype", None) in ("string", "large_string"):
            raise ValueError(
                f"The training data's {column!r} column holds strings; SPACLLoss needs integer class labels. Map "
                f"them to ids first, e.g. `dataset = dataset.class_encode_column({column!r})` (a ClassLabel column)."
            )


def describe_wrapped_loss(model: Any, loss: Any) -> bool:
    """Put ``loss``'s configuration into ``model``'s card where a wrapper names it only by class.

    ``MatryoshkaLoss``, ``Matryoshka2dLoss`` and ``AdaptiveLayerLoss`` describe their inner loss as
    ``"loss": "SPACLLoss"`` in the model card, so SPACL's settings (temperature, screening, generator, ...) would be
    missing; this writes ``"loss": "SPACLLoss(temperature=0.05, ...)"`` there instead, as sentence-transformers does
    for a loss given as a module.

    Args:
        model: the SentenceTransformer being trained (anything without ``model_card_data`` is left alone).
        loss: the SPACL loss inside the wrapper (anything with ``get_config_dict``).

    Returns:
        Whether a card entry was completed.

    Examples:
        >>> describe_wrapped_loss(None, None)  # nothing to describe
        False
    """
    card = getattr(model, "model_card_data", None)
    if card is None or not hasattr(loss, "get_config_dict"):
        return False
    name = type(loss).__name__
    described = name + "(" + ", ".join(f"{k}={v!r}" for k, v in loss.get_config_dict().items()) + ")"
    completed = False
    for dataset in [*getattr(card, "train_datasets", []), *getattr(card, "eval_datasets", [])]:
        entry = dataset.get("loss") if isinstance(dataset, dict) else None
        code = entry.get("config_code") if isinstance(entry, dict) else None
        if isinstance(code, str) and f'"loss": "{name}"' in code:
            entry["config_code"] = code.replace(f'"loss": "{name}"', f'"loss": {json.dumps(described)}')
            completed = True
    return completed


class SPACLLoggingCallback(TrainerCallback):
    """Adds a SPACL loss's statistics to every training log.

    Statistics cost ops and device reads, so the loss computes them only on the steps the trainer will log (the
    callback tells it, :func:`~spacl_hf.common.training_logs.will_log_step`): a log shows the logged step's values,
    not a mean over the interval (set ``loss.statistics_every_step = True`` for that). Each time the trainer logs
    the training loss, the callback reads (and resets) the loss's recorded statistics (kept-negative fraction, positive spread, generator and discriminator losses, ...) and adds
    them, prefixed with ``spacl/``, to the log: to ``state.log_history`` and to the ``logs`` that the
    callbacks after this one receive. Use :meth:`attach` so that it runs before the reporting callbacks
    (TensorBoard, W&B, ...), which the trainer places ahead of user callbacks. When training starts it checks
    that the training data's label columns hold integers (:func:`check_label_columns`), so string labels get a
    clear error instead of sentence-transformers' "too many dimensions 'str'", and, when the loss is wrapped in
    ``MatryoshkaLoss`` / ``AdaptiveLayerLoss``, writes SPACL's settings into the model card
    (:func:`describe_wrapped_loss`). It also saves the loss's adversarial generators (every Matryoshka size) into
    each checkpoint (``spacl_generator.pt``) and restores them when training resumes from one.

    Args:
        loss: a :class:`SPACLLoss` or :class:`CachedSPACLLoss` (anything with ``pop_statistics()``).

    Raises:
        ValueError: when ``loss`` has no ``pop_statistics()``.

    Examples:
        >>> SPACLLoggingCallback.attach(trainer, loss)  # doctest: +SKIP
    """

    def __init__(self, loss: Any) -> None:
        if not hasattr(loss, "pop_statistics"):
            raise ValueError(f"`loss` must provide pop_statistics() (a SPACLLoss), got {type(loss).__name__}.")
        self.loss = loss

    @classmethod
    def attach(cls, trainer: Trainer, loss: Any) -> SPACLLoggingCallback:
        """Create the callback and put it first in ``trainer``'s callbacks, ahead of the reporting ones."""
        return insert_first(trainer, cls(loss))

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        self._restore_generator(args, state)
        # sentence-transformers' collator turns labels into a tensor and fails on strings with
        # "too many dimensions 'str'", which does not say what to do: say it before the first batch.
        check_label_columns(getattr(train_dataloader, "dataset", None))
        describe_wrapped_loss(kwargs.get("model"), self.loss)

    def _restore_generator(self, args: TrainingArguments, state: TrainerState) -> None:
        """On resume (the trainer loaded a checkpoint's state: ``global_step > 0``), load the generators saved with
        that checkpoint, so the adversary continues where it was instead of starting over."""
        criterion = getattr(self.loss, "criterion", None)
        if state.global_step == 0 or criterion is None or criterion.generator is None:
            return
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        path = os.path.join(folder, GENERATOR_STATE_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Resuming at step {state.global_step}, but {path} is missing: the checkpoint was written without "
                "SPACLLoggingCallback attached, or its save was interrupted before the generator was written. "
                "Resume from an earlier complete checkpoint, or train with adversarial_negatives=False."
            )
        load_generator_state(self.loss, path)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if not state.is_world_process_zero:  # identical on every process: rank 0 writes it
            return
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if os.path.isdir(folder):
            save_generator_state(self.loss, folder)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if hasattr(self.loss, "statistics_due"):
            self.loss.statistics_due = will_log_step(args, state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if hasattr(self.loss, "statistics_due"):
            self.loss.statistics_due = False

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs is None or "loss" not in logs:
            return
        stats = {f"spacl/{name}": round(value, 4) for name, value in self.loss.pop_statistics().items()}
        merge_into_log(logs, state, stats)
