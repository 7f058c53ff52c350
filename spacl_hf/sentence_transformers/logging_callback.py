"""Put SPACL's statistics and the generator's losses into the trainer's logs."""

from __future__ import annotations

from typing import Any

from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from spacl_hf.common.training_logs import insert_first, merge_into_log


class SPACLLoggingCallback(TrainerCallback):
    """Adds the running means of a SPACL loss's statistics to every training log.

    Each time the trainer logs the training loss, the callback reads (and resets) the loss's accumulated
    statistics (kept-negative fraction, positive spread, generator and discriminator losses, ...) and adds
    them, prefixed with ``spacl/``, to the log: to ``state.log_history`` and to the ``logs`` that the
    callbacks after this one receive. Use :meth:`attach` so that it runs before the reporting callbacks
    (TensorBoard, W&B, ...), which the trainer places ahead of user callbacks.

    Args:
        loss: a :class:`SPACLLoss` or :class:`CachedSPACLLoss` (anything with ``pop_statistics()``).

    Raises:
        ValueError: when ``loss`` has no ``pop_statistics()``.

    Example:
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
