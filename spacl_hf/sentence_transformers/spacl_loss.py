"""``SPACLLoss``: SnaPhArd Contrast Learning as a sentence-transformers loss."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn

from spacl_hf.common.content_ids import token_content_ids
from spacl_hf.core import (
    ACCEPTED_FORMATS,
    SPACL_CITATION,
    AdversarialNegativeGenerator,
    ColumnLayout,
    RunningStatistics,
    SPACLCriterion,
    spacl_from_columns,
)
from spacl_hf.core.checks import check_bool, check_int, check_positive_float


DIRECTIONS = ("query_to_doc", "doc_to_query")


def check_directions(directions: Sequence[str]) -> tuple[str, ...]:
    """``directions`` as a tuple, checked: a subset of :data:`DIRECTIONS` that holds ``"query_to_doc"``."""
    if not isinstance(directions, (list, tuple)) or not all(isinstance(d, str) for d in directions):
        raise ValueError(f"`directions` must be a sequence of names from {DIRECTIONS}, got {directions!r}.")
    directions = tuple(dict.fromkeys(directions))
    if "query_to_doc" not in directions or not set(directions) <= set(DIRECTIONS):
        raise ValueError(f"`directions` must hold 'query_to_doc' and only names from {DIRECTIONS}, got {directions!r}.")
    return directions


def adaptive_layer_pass(model: Any) -> bool:
    """Whether ``model`` is being scored by ``AdaptiveLayerLoss`` on an earlier layer's cached embeddings (its
    ``TransformerDecorator`` then has a ``layer_idx``): that call repeats the step's batch."""
    try:
        first = model[0]
    except (TypeError, IndexError, KeyError):
        return False
    return getattr(getattr(first, "forward", None), "layer_idx", None) is not None


def inside_adaptive_layer_loss(model: Any) -> bool:
    """Whether ``AdaptiveLayerLoss`` (or ``Matryoshka2dLoss``) has decorated ``model``'s transformer this step."""
    try:
        first = model[0]
    except (TypeError, IndexError, KeyError):
        return False
    return type(getattr(first, "forward", None)).__name__ == "TransformerDecorator"


class SPACLLoss(nn.Module):
    def __init__(
        self,
        model: SentenceTransformer,
        temperature: float = 0.05,
        num_positives: int = 2,
        screening_mass: float = 0.95,
        screening_weight: str = "softmax",
        min_negatives: int = 1,
        num_positive_columns: int = 1,
        num_views: int = 1,
        dynamic_anchor: bool | None = None,
        farthest_point: bool = True,
        screening: bool = True,
        adversarial_negatives: bool = True,
        num_generated: int = 1,
        generator_warmup_steps: int = 100,
        generator_lr: float = 1e-4,
        generator_seed: int = 0,
        generator_steps: int = 1,
        positive_pool: str = "labels",
        candidate_views: str = "auto",
        mask_duplicates: bool = True,
        gather_across_devices: bool = False,
        directions: Sequence[str] = ("query_to_doc",),
    ) -> None:
        """
        SnaPhArd Contrast Learning (SPACL): a contrastive loss that gives weight to hard samples on both sides.
        For every sample it builds a pool of views (the anchor, its positive columns, optional dropout
        re-encodings of the anchor), then

        1. optionally picks the **dynamic anchor**: the view farthest from the rest of its pool;
        2. picks ``num_positives`` **hard positives** by farthest-point selection (from the sample's own views,
           and from same-label samples in the label format);
        3. adds **adversarially generated hard negatives** from a small GAN in embedding space, trained on the
           side with its own optimizer (the encoder's gradients are untouched);
        4. **screens** the candidate negatives (other samples' positive and negative columns, generated ones)
           down to the shortest most-similar set holding ``screening_mass`` of their weight,

        and minimises the multi-positive InfoNCE over what is kept. Texts that occur twice in a batch are never
        each other's negatives (compared by their tokens, not by position).

        Args:
            model: SentenceTransformer model.
            temperature: logits are ``cos / temperature``; ``0.05`` equals MultipleNegativesRankingLoss' scale 20.
            num_positives: hard positives per anchor (``lambda_P``, paper default 2; accuracy drops past 4).
                Capped by what exists: with pairs and ``num_views=1`` there is one positive.
            screening_mass: share of the candidate negatives' weight kept by screening (``lambda_Q``, paper
                default 0.95).
            screening_weight: ``"softmax"`` (``exp(cos / tau)``: gentle, each anchor's loss moves by at most
                ``-ln(screening_mass)``) or ``"similarity"`` (raw cosines, the paper's formula: aggressive). The
                default stays ``"softmax"`` until the quality studies have measured which wins on dev data.
            min_negatives: screening keeps at least this many negatives per anchor.
            num_positive_columns: how many columns after the anchor are positives; the columns after those are
                negatives.
            num_views: how often the anchor column is encoded; with dropout active each encoding differs, and the
                extra ones join the anchor's pool as views (SimCSE-style). ``1`` encodes it once.
            dynamic_anchor: pick the hardest view as anchor. ``None`` (default) turns it on only in the label
                format, where every view is the same text; turn it on for symmetric pairs (STS, NLI,
                paraphrase) and leave it off for asymmetric ones (query -> document), where the anchor must
                stay on the query side.
            farthest_point: farthest-point hard positives; ``False`` takes positives in column order.
            screening: relative-threshold screening of trivial negatives; ``False`` keeps all candidates.
            adversarial_negatives: add generated hard negatives (after ``generator_warmup_steps`` steps).
            num_generated: generated negatives per anchor.
            generator_warmup_steps: training steps before generated negatives are used.
            generator_lr: learning rate of the generator's and discriminator's Adam optimizers.
            generator_seed: seed of the generator's weights and noise (the same on every process).
            generator_steps: generator and discriminator updates per training step.
            positive_pool: in the label format, where hard positives come from: ``"labels"`` (same-label texts,
                with the anchor's dropout views when ``num_views > 1``), ``"views"`` (only the anchor's own
                dropout views; needs ``num_views >= 2``) or ``"views+labels"`` (own views first).
            candidate_views: ``"auto"`` (column data: the positive and negative columns of other samples are
                negatives, as in MultipleNegativesRankingLoss; label format: every view), ``"columns"`` or
                ``"all"`` (other samples' anchors are negatives too).
            mask_duplicates: a text identical to the anchor or one of its positives is never its negative.
            gather_across_devices: gather candidates from every process, with gradients, under multi-process
                training (``accelerate launch``, ``torchrun``); the generator stays identical on every process.
            directions: ``("query_to_doc",)`` (the paper) or ``("query_to_doc", "doc_to_query")``: the symmetric
                loss for pair data, the mean of SPACL from each query to the documents and from each document
                (first positive column) to the queries, each direction with its own selection and screening, as
                ``MultipleNegativesRankingLoss(directions=..., partition_mode="per_direction")``. The reverse
                direction uses the (anchor, first positive) columns only, and needs ``num_views=1`` and
                ``num_positive_columns=1`` without labels. The dynamic anchor does not replace it: it picks one
                anchor per sample, so each sample still contributes one direction per step.

        Raises:
            ValueError: on an invalid setting (named in the message), when ``adversarial_negatives`` is on and the
                model does not tell its embedding dimension, and in ``forward`` on a batch whose columns or labels
                match none of the accepted formats (the message lists them).

        References:
            - SnaPhArd Contrast Learning, ICLR 2026: https://openreview.net/forum?id=4cZvjp8Iwk
            - spacl_hf documentation: the method's specification in ``docs`` and the README.

        Requirements:
            1. (anchor, positive) pairs, optionally with negative columns and/or several positive columns, or
            2. a single text column with integer class labels (string labels: map them to ids first, e.g.
               ``dataset.class_encode_column("label")``; :class:`SPACLLoggingCallback` checks this at the start).

        Inputs:
            +-------------------------------------------------------+-----------------+
            | Texts                                                 | Labels          |
            +=======================================================+=================+
            | (anchor, positive) pairs                              | none            |
            +-------------------------------------------------------+-----------------+
            | (anchor, positive, negative_1, ..., negative_n)       | none            |
            +-------------------------------------------------------+-----------------+
            | (anchor, positive_1, ..., positive_k) with            | none            |
            | ``num_positive_columns=k``                            |                 |
            +-------------------------------------------------------+-----------------+
            | single text column                                    | class (int)     |
            +-------------------------------------------------------+-----------------+

        Recommendations:
            - Use ``BatchSamplers.NO_DUPLICATES`` so that no in-batch negative is a duplicate of an anchor or
              positive (SPACL also masks exact duplicates by content).
            - Larger batches give screening more to choose from; 64 or more works well. Use
              :class:`CachedSPACLLoss` for batches larger than memory.
            - Use :meth:`SPACLLoggingCallback.attach <spacl_hf.sentence_transformers.SPACLLoggingCallback.attach>`
              to see the kept-negative fraction, the positive spread and the generator's losses in the logs.

        Relations:
            - With ``num_positives=1``, ``dynamic_anchor=False``, ``farthest_point=False``, ``screening=False`` and
              ``adversarial_negatives=False`` this loss equals :class:`MultipleNegativesRankingLoss` with
              ``scale = 1 / temperature``.
            - :class:`GISTEmbedLoss` removes false negatives with a guide model; SPACL keeps the hardest
              negatives by a relative threshold on the model's own similarities and guards generated ones.
            - :class:`CachedSPACLLoss` computes the same loss with GradCache for large batches.

        Examples:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer

                from spacl_hf import SPACLLoss

                model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
                train_dataset = Dataset.from_dict({
                    "anchor": ["It's nice weather outside today.", "He drove to work."],
                    "positive": ["It's so sunny.", "He took the car to the office."],
                })
                loss = SPACLLoss(model)

                trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__()
        self.model = model
        self.num_positive_columns = check_int("num_positive_columns", num_positive_columns, 1)
        self.num_views = check_int("num_views", num_views, 1)
        self.dynamic_anchor = None if dynamic_anchor is None else check_bool("dynamic_anchor", dynamic_anchor)
        self.directions = check_directions(directions)
        if "doc_to_query" in self.directions and (self.num_views > 1 or self.num_positive_columns > 1):
            raise ValueError(
                "`directions` with 'doc_to_query' needs num_views=1 and num_positive_columns=1 (the reverse "
                f"direction swaps the anchor and positive columns); got num_views={self.num_views}, "
                f"num_positive_columns={self.num_positive_columns}."
            )
        self.adversarial_negatives = check_bool("adversarial_negatives", adversarial_negatives)
        check_positive_float("generator_lr", generator_lr)  # named as the user wrote it (the generator says `lr`)
        check_int("generator_warmup_steps", generator_warmup_steps, 0)
        check_int("generator_seed", generator_seed, 0)
        generator = None
        if self.adversarial_negatives:
            dim = model.get_embedding_dimension()
            if dim is None:
                raise ValueError("`adversarial_negatives=True` needs a model with a known embedding dimension.")
            generator = AdversarialNegativeGenerator(
                embedding_dim=dim,
                num_generated=num_generated,
                lr=generator_lr,
                warmup_steps=generator_warmup_steps,
                seed=generator_seed,
                generator_steps=generator_steps,
            )
        self.criterion = SPACLCriterion(
            temperature=temperature,
            num_positives=num_positives,
            screening_mass=screening_mass,
            screening_weight=screening_weight,
            min_negatives=min_negatives,
            dynamic_anchor=False,  # decided per batch layout, see `dynamic_anchor`
            farthest_point=farthest_point,
            screening=screening,
            generator=generator,
            candidate_views=candidate_views,  # "auto" is resolved per batch layout by spacl_from_columns
            positive_pool=positive_pool,
            mask_duplicates=mask_duplicates,
            gather_across_devices=gather_across_devices,
        )
        self.statistics = RunningStatistics()
        # Statistics cost ops and device reads: they are computed on the steps the trainer logs (set by
        # SPACLLoggingCallback), or on every training step with `statistics_every_step` (the studies' activity).
        self.statistics_due = False
        self.statistics_every_step = False
        if hasattr(model, "model_card_data"):
            model.model_card_data.add_tags("spacl")

    # --- configuration -------------------------------------------------------------------------------------
    @property
    def temperature(self) -> float:
        return self.criterion.temperature

    @property
    def generator(self) -> AdversarialNegativeGenerator | None:
        return self.criterion.generator

    def get_config_dict(self) -> dict[str, Any]:
        config = self.criterion.get_config_dict()
        generator = config.pop("generator")
        config.update(
            {
                "num_positive_columns": self.num_positive_columns,
                "num_views": self.num_views,
                "dynamic_anchor": self.dynamic_anchor,
                "adversarial_negatives": self.adversarial_negatives,
                "directions": list(self.directions),
            }
        )
        if generator is not None:
            config.update(
                {
                    "num_generated": generator["num_generated"],
                    "generator_warmup_steps": generator["warmup_steps"],
                    "generator_lr": generator["lr"],
                    "generator_seed": generator["seed"],
                    "generator_steps": generator["generator_steps"],
                }
            )
        return config

    @property
    def citation(self) -> str:
        return SPACL_CITATION

    # --- forward: encode, then score -----------------------------------------------------------------------
    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        sentence_features = list(sentence_features)
        layout = self.layout(len(sentence_features), labels)
        columns = [sentence_features[0]] * self.num_views + sentence_features[1:]
        embeddings = embed_columns(self.model, columns)
        content_ids = self.content_ids(sentence_features)
        # AdaptiveLayerLoss scores earlier layers with the same batch: one generator update per step, on the last
        update = not adaptive_layer_pass(self.model)
        return self.compute_loss_from_embeddings(embeddings, labels, content_ids, layout, update_generator=update)

    def layout(self, num_columns: int, labels: Tensor | None) -> ColumnLayout:
        """Check the batch's columns and labels against the accepted formats."""
        if labels is not None and num_columns == 1 and (labels.is_floating_point() or labels.ndim != 1):
            raise ValueError(
                "SPACLLoss takes integer class labels of shape [batch] in the single-column format "
                f"(same label = positive); got dtype {labels.dtype} and shape {tuple(labels.shape)}. "
                f"Accepted formats: {ACCEPTED_FORMATS}."
            )
        return ColumnLayout.for_batch(
            num_columns, labels is not None, self.num_positive_columns, self.num_views, source="SPACLLoss's batch"
        )

    def content_ids(self, sentence_features: list[dict[str, Tensor]]) -> list[Tensor] | None:
        """One content id per text and column; ``None`` when duplicates are not masked or a column is not text."""
        if not self.criterion.mask_duplicates:
            return None
        ids = [token_content_ids(features) for features in sentence_features]
        return None if any(column is None for column in ids) else ids

    def compute_loss_from_embeddings(
        self,
        embeddings: list[Tensor],
        labels: Tensor | None,
        content_ids: list[Tensor] | None = None,
        layout: ColumnLayout | None = None,
        update_generator: bool = True,
    ) -> Tensor:
        """SPACL over embedded columns ``[anchor x num_views, positive columns..., negative columns...]``.

        Args:
            embeddings: one ``[B, D]`` tensor per encoded column (the anchor column ``num_views`` times).
            labels: integer labels ``[B]`` in the single-column format, else ``None``.
            content_ids: one ``[B]`` id tensor per input column (anchor once), for duplicate masking.
            layout: the batch layout; derived from the columns when ``None``.
            update_generator: let this call update the adversarial generator (once per training step).
        """
        if layout is None:
            layout = self.layout(len(embeddings) - self.num_views + 1, labels)
        ids = None
        if content_ids is not None:
            ids = torch.stack([content_ids[0]] * self.num_views + list(content_ids[1:]))
        reverse = "doc_to_query" in self.directions
        if reverse and labels is not None:
            raise ValueError("`directions` with 'doc_to_query' needs column data (anchor, positive, ...), not labels.")
        loss = self._directed_loss(torch.stack(embeddings), layout, labels, ids, update_generator)
        if reverse:
            # the reverse direction: each document (first positive column) against the queries
            swapped = torch.stack([embeddings[1], embeddings[0]])
            swapped_ids = None if ids is None else ids[[1, 0]]
            # the same generator: it learned from this step's pairs in the forward direction already
            loss = (loss + self._directed_loss(swapped, self.layout(2, None), None, swapped_ids, False)) / 2
        return loss

    def _directed_loss(
        self, columns: Tensor, layout: ColumnLayout, labels: Tensor | None, ids: Tensor | None,
        update_generator: bool = True,
    ) -> Tensor:
        record = self.training and torch.is_grad_enabled() and (self.statistics_due or self.statistics_every_step)
        loss, stats = spacl_from_columns(
            self.criterion, columns, layout, labels, ids, dynamic_anchor=self.dynamic_anchor, return_stats=record,
            update_generator=update_generator,
        )
        if record:
            self.statistics.add(stats)
        return loss

    def pop_statistics(self) -> dict[str, float]:
        """Means of the SPACL statistics recorded since the last call, then reset.

        Recorded on the training steps that :class:`SPACLLoggingCallback` marks as logged (``statistics_due``), or
        on every training step when ``statistics_every_step`` is set; empty otherwise (a bare call computes none).
        """
        return self.statistics.pop()
