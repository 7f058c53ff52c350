"""``CachedSPACLLoss``: SPACL with GradCache, for batches larger than memory."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from torch import Tensor

from spacl_hf.core import ColumnLayout
from spacl_hf.core.checks import check_int

from .spacl_loss import SPACLLoss, inside_adaptive_layer_loss

GRADCACHE_CITATION = """
@misc{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},
    year={2021},
    eprint={2101.06983},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}
"""


class CachedSPACLLoss(CachedLossMixin, SPACLLoss):
    def __init__(
        self,
        model: SentenceTransformer,
        mini_batch_size: int = 32,
        show_progress_bar: bool = False,
        **spacl_kwargs: Any,
    ) -> None:
        """
        :class:`SPACLLoss` with GradCache (Gao et al., 2021): the batch is embedded in mini-batches without
        gradients, the anchor choice, hard positives, generated negatives and screening are decided once on
        the whole batch's embeddings, the loss is back-propagated to the embeddings, and the cached embedding
        gradients are then replayed mini-batch by mini-batch (with the same dropout masks). Memory is bounded
        by ``mini_batch_size`` instead of the batch size, so SPACL can screen among thousands of candidates.

        Args:
            model: SentenceTransformer model.
            mini_batch_size: rows embedded at once; bounds the activation memory, not the result.
            show_progress_bar: show a progress bar over the mini-batches.
            **spacl_kwargs: every argument of :class:`SPACLLoss` (temperature, num_positives, ...).

        Raises:
            ValueError: as :class:`SPACLLoss`, and for a ``mini_batch_size`` below 1.
            RuntimeError: when ``calculate_loss`` is called directly instead of through ``forward``.

        References:
            - SnaPhArd Contrast Learning, ICLR 2026: https://openreview.net/forum?id=4cZvjp8Iwk
            - Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup:
              https://huggingface.co/papers/2101.06983

        Requirements:
            The data formats of :class:`SPACLLoss`.

        Inputs:
            +-------------------------------------------------------+-----------------+
            | Texts                                                 | Labels          |
            +=======================================================+=================+
            | (anchor, positive[, positives..., negatives...])      | none            |
            +-------------------------------------------------------+-----------------+
            | single text column                                    | class (int)     |
            +-------------------------------------------------------+-----------------+

        Recommendations:
            - Large ``per_device_train_batch_size`` with a small ``mini_batch_size``; ``BatchSamplers.NO_DUPLICATES``.

        Relations:
            - Same loss and gradients as :class:`SPACLLoss` (dropout aside), a little slower per step.
            - The SPACL counterpart of :class:`CachedMultipleNegativesRankingLoss`.

        Examples:
            ::

                from spacl_hf import CachedSPACLLoss

                loss = CachedSPACLLoss(model, mini_batch_size=32)
                trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss,
                                                     args=SentenceTransformerTrainingArguments(
                                                         output_dir="out", per_device_train_batch_size=512))
                trainer.train()
        """
        SPACLLoss.__init__(self, model, **spacl_kwargs)
        self.mini_batch_size = check_int("mini_batch_size", mini_batch_size, 1)
        self.show_progress_bar = bool(show_progress_bar)
        self._batch: tuple[Tensor | None, list[Tensor] | None, ColumnLayout] | None = None

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        if inside_adaptive_layer_loss(self.model):
            raise ValueError(
                "CachedSPACLLoss cannot run inside AdaptiveLayerLoss or Matryoshka2dLoss: their layer passes need "
                "every layer's embeddings of the whole batch, which the cached mini-batch passes do not keep "
                "(sentence-transformers' cached losses have the same limit). Use SPACLLoss inside them, or "
                "MatryoshkaLoss(CachedSPACLLoss(...)) for truncated dimensions alone."
            )
        sentence_features = list(sentence_features)
        layout = self.layout(len(sentence_features), labels)
        # content ids before any forward pass: modules may edit the features in place while embedding
        self._batch = (labels, self.content_ids(sentence_features), layout)
        columns = [sentence_features[0]] * self.num_views + sentence_features[1:]
        try:
            return self.forward_cached(columns, labels)
        finally:
            self._batch = None

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """SPACL on the cached embeddings of the whole batch (called once per step by the GradCache pass)."""
        if self._batch is None:
            raise RuntimeError("CachedSPACLLoss.calculate_loss is called from forward(); call the loss itself.")
        labels, content_ids, layout = self._batch
        embeddings = [torch.cat(column) for column in reps]
        loss = self.compute_loss_from_embeddings(embeddings, labels, content_ids, layout)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        return {**SPACLLoss.get_config_dict(self), "mini_batch_size": self.mini_batch_size}

    @property
    def citation(self) -> str:
        return SPACLLoss.citation.fget(self) + GRADCACHE_CITATION
