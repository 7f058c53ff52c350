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
