"""A TrainerCallback that measures embedding health on a fixed probe batch every N steps."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from spacl_hf.common.training_logs import insert_first, merge_into_log
from spacl_hf.core import relative_screen
from spacl_hf.core.checks import check_fraction, check_int, check_positive_float
from spacl_hf.core.diagnostics import alignment, effective_rank, uniformity

from .collapse import collapse_report

Probe = Callable[[nn.Module], Tensor]


def probe_diagnostics(
    views: Tensor, temperature: float = 0.05, screening_mass: float = 0.95, max_lp_anchors: int = 32
) -> dict[str, float]:
    """Health of one probe batch of ``[B, 2, D]`` views (anchor, positive).

    Returns alignment, uniformity, effective rank (absolute and relative to ``min(B, D)``) of the anchors, and the
    collapse report: for each anchor, its positive against the other samples' positives that screening keeps.

    Args:
        views: (anchor, positive) embeddings of a probe batch.
        temperature: the SPACL temperature (screening and the weighted negative mean).
        screening_mass: the screening mass used to decide the kept negatives.
        max_lp_anchors: the convex-hull check (one LP each) runs on at most this many anchors.

    Shape:
        - views: ``[B, 2, D]``, B >= 2

    Examples:
        >>> views = torch.randn(16, 2, 8)
        >>> report = probe_diagnostics(views)
        >>> sorted(report)[:3], 0 <= report["fraction_at_risk"] <= 1
        (['alignment', 'effective_rank', 'fraction_at_risk'], True)
    """
    anchors, positives = F.normalize(views[:, 0].float(), dim=-1), F.normalize(views[:, 1].float(), dim=-1)
    batch = anchors.shape[0]
    others = ~torch.eye(batch, dtype=torch.bool)
    keep = relative_screen(anchors @ positives.T / temperature, screening_mass, 1, others)
    negatives = positives[None].expand(batch, -1, -1)
    rows = slice(0, min(batch, max_lp_anchors))
    report = collapse_report(positives[rows], negatives[rows], keep[rows], temperature)
    rank = float(effective_rank(anchors))
    return {
        "alignment": float(alignment(anchors, positives)),
        "uniformity": float(uniformity(anchors)),
        "effective_rank": rank,
        "relative_rank": rank / min(batch, anchors.shape[1]),
        "kept_negative_fraction": float(keep.sum() / others.sum()),
        **report,
    }


class SPACLDiagnosticsCallback(TrainerCallback):
    """Every ``every_n_steps`` steps, embed a fixed probe batch and log its health (``diagnostics/*``).

    Logged: alignment and uniformity (Wang & Isola), effective rank and rank relative to ``min(B, D)``, the
    kept-negative fraction, and the paper's collapse measures (parallelism of the weighted negative mean with the
    positive, fraction of anchors whose positive direction lies in the hull of their kept negatives, fraction at
    risk). Warns once when the fraction at risk exceeds ``collapse_threshold`` or the relative rank falls below
    ``rank_threshold``. Use :meth:`attach` to run before the reporting callbacks (TensorBoard, W&B).

    Args:
        probe: ``probe(model) -> [B, 2, D]`` embeddings of (anchor, positive) pairs, called without gradients.
        every_n_steps: how often to measure.
        temperature: the SPACL temperature used for the weighted negative mean and screening.
        collapse_threshold: warn when more than this fraction of anchors is at risk.
        rank_threshold: warn when the effective rank falls below this fraction of ``min(B, D)``.

    Raises:
        ValueError: on out-of-range settings.

    Examples:
        >>> probe = sentence_transformer_probe(dev_anchors[:64], dev_positives[:64])  # doctest: +SKIP
        >>> SPACLDiagnosticsCallback(probe, every_n_steps=50).attach(trainer)  # doctest: +SKIP
    """

    def __init__(
        self,
        probe: Probe,
        every_n_steps: int = 50,
        temperature: float = 0.05,
        collapse_threshold: float = 0.5,
        rank_threshold: float = 0.1,
    ) -> None:
        if not callable(probe):
            raise ValueError("`probe` must be a callable model -> [B, 2, D] embeddings.")
        self.probe = probe
        self.every_n_steps = check_int("every_n_steps", every_n_steps, 1)
        self.temperature = check_positive_float("temperature", temperature)
        self.collapse_threshold = check_fraction("collapse_threshold", collapse_threshold)
        self.rank_threshold = check_fraction("rank_threshold", rank_threshold)
        self.pending: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self._warned: set[str] = set()

    @classmethod
    def attach(cls, trainer: Trainer, probe: Probe, **kwargs: Any) -> SPACLDiagnosticsCallback:
        """Create the callback and put it first in ``trainer``'s callbacks, ahead of the reporting ones."""
        return insert_first(trainer, cls(probe, **kwargs))

    def measure(self, model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                views = self.probe(model)
        finally:
            model.train(was_training)
        if views.ndim != 3 or views.shape[1] != 2:
            raise ValueError(f"`probe` must return [B, 2, D] embeddings, got shape {tuple(views.shape)}.")
        result = probe_diagnostics(views.detach().cpu(), self.temperature)
        self._warn(result)
        return result

    def _warn(self, result: dict[str, float]) -> None:
        if result["fraction_at_risk"] > self.collapse_threshold and "collapse" not in self._warned:
            self._warned.add("collapse")
            warnings.warn(
                f"SPACL diagnostics: {result['fraction_at_risk']:.0%} of probe anchors meet the collapse condition "
                "(positive direction inside the hull of their kept negatives, weighted mean nearly parallel).",
                stacklevel=2,
            )
        if result["relative_rank"] < self.rank_threshold and "rank" not in self._warned:
            self._warned.add("rank")
            warnings.warn(
                f"SPACL diagnostics: effective rank {result['effective_rank']:.1f} is "
                f"{result['relative_rank']:.0%} of the possible; the embeddings are collapsing onto few directions.",
                stacklevel=2,
            )

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs: Any
    ) -> None:
        if model is None or state.global_step % self.every_n_steps != 0:
            return
        result = self.measure(model)
        self.pending = {f"diagnostics/{k}": round(v, 4) for k, v in result.items()}
        self.history.append({"step": state.global_step, **result})

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs is None or not self.pending or "loss" not in logs:
            return
        merge_into_log(logs, state, self.pending)
        self.pending = {}


def sentence_transformer_probe(anchors: list[str], positives: list[str]) -> Probe:
    """A probe for SentenceTransformer models: embeds fixed (anchor, positive) texts.

    Args:
        anchors: probe anchor texts.
        positives: their positives, same length.

    Raises:
        ValueError: when the lists differ in length or hold fewer than 2 texts.

    Examples:
        >>> probe = sentence_transformer_probe(["a cat", "a car"], ["a kitten", "an auto"])
        >>> probe(model).shape  # doctest: +SKIP
        torch.Size([2, 2, 384])
    """
    if len(anchors) != len(positives) or len(anchors) < 2:
        raise ValueError("`anchors` and `positives` must be lists of the same length, at least 2.")

    def probe(model: nn.Module) -> Tensor:
        a = model.encode(anchors, convert_to_tensor=True, show_progress_bar=False)
        p = model.encode(positives, convert_to_tensor=True, show_progress_bar=False)
        return torch.stack([a, p], dim=1)

    return probe
