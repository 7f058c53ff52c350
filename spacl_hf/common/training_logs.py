"""Helpers for callbacks that add values to a Trainer's logs (duck-typed: no transformers import)."""

from __future__ import annotations

from typing import Any


def insert_first(trainer: Any, callback: Any) -> Any:
    """Put ``callback`` first in ``trainer``'s callbacks: the Trainer places reporting callbacks (TensorBoard, W&B)
    ahead of user callbacks, and values added to the logs later would not reach them."""
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback


def merge_into_log(logs: dict[str, float], state: Any, values: dict[str, float]) -> None:
    """Add ``values`` to the ``logs`` the next callbacks receive and to the trainer's ``state.log_history`` entry of
    this step (the Trainer appended a copy of the logs to the history before calling the callbacks)."""
    logs.update(values)
    if state.log_history and state.log_history[-1].get("step") == state.global_step:
        state.log_history[-1].update(values)


def will_log_step(args: Any, state: Any) -> bool:
    """Whether the Trainer will log the training loss after the optimizer step now running (``state.global_step``
    counts the finished ones), so that a loss computes its statistics on that step only.

    Mirrors ``transformers``' ``DefaultFlowCallback``: every ``logging_steps`` steps, and the first one with
    ``logging_first_step``. With ``logging_strategy="epoch"`` every step counts (the log is the epoch's mean); with
    ``"no"`` none does.

    Examples:
        >>> from types import SimpleNamespace as NS
        >>> args = NS(logging_strategy="steps", logging_first_step=False)
        >>> [will_log_step(args, NS(global_step=g, logging_steps=10)) for g in (8, 9, 10)]
        [False, True, False]
    """
    strategy = str(getattr(getattr(args, "logging_strategy", "steps"), "value", getattr(args, "logging_strategy", "")))
    if strategy == "no":
        return False
    if strategy != "steps":
        return True
    step = state.global_step + 1
    every = getattr(state, "logging_steps", None) or getattr(args, "logging_steps", 1) or 1
    return step % max(1, int(every)) == 0 or (step == 1 and bool(getattr(args, "logging_first_step", False)))
