"""``SPACLCriterion``: the SPACL configuration as an ``nn.Module``, from a batch of views to the loss.

The forward pass runs the specification's stages in order, each a small function below or in :mod:`.bank`: the
candidate bank (every view of every sample of every process), 3.1 the dynamic anchor, 3.2 the hard positives, 3.4 the
candidate negatives, 3.3 the generated negatives, then 3.4 screening and the loss of section 4
(:func:`~spacl_hf.core.loss.infonce_from_logits`).

The hot path is lean: one similarity matmul serves the positives and every negative, what shapes alone decide is
cached, masks replace data-dependent indexing, and nothing is read back from the device outside a statistics call
(no ``.item()``, ``bool(tensor)``, ``nonzero`` or ``unique``), so a step is a fixed sequence of kernels that
``torch.compile`` can take as one graph. Input checks that need a device read (finiteness) run on the first call and
on every call with statistics; statistics and warnings likewise.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .anchor import hardest_view_unchecked
from .bank import (
    Bank,
    ShapeFacts,
    bank_ids,
    build_bank,
    candidate_negatives,
    content_hash,
    mask_duplicate_negatives,
    static_candidate_mask,
)
from .checks import (
    at_least_float32,
    check_bool,
    check_choice,
    check_fraction,
    check_ids,
    check_int,
    check_mask,
    check_temperature,
    check_tensor,
)
from .citation import SPACL_CITATION
from .dist import Gather, TorchDistributedGather
from .generator import AdversarialNegativeGenerator
from .loss import _statistics, infonce_from_logits
from .positives import farthest_point_unchecked, ordered_select
from .screening import SCREENING_WEIGHTS, screen_unchecked

__all__ = ["SPACLCriterion", "content_hash"]

CANDIDATE_VIEWS = ("auto", "all", "columns")
POSITIVE_POOLS = ("labels", "views", "views+labels")
ANCHOR_MODES = ("one", "every_view")


def _pick(views: Tensor, index: Tensor) -> Tensor:
    """``views[b, index[b, j]]`` for every ``b, j`` as ``[B, J, D]``, through a one-hot batched matmul."""
    one_hot = torch.zeros(*index.shape, views.shape[1], dtype=views.dtype, device=views.device)
    one_hot.scatter_(2, index[..., None], 1.0)
    return torch.bmm(one_hot, views)


@dataclass
class _Positives:
    rows: Tensor  # [B, P] rows of the bank
    valid: Tensor | None  # [B, P]; None when every slot is real (known from shapes)
    stats: dict[str, Tensor]  # activity statistics, only when asked for


def select_anchor_views(views: Tensor, view_mask: Tensor | None, dynamic: bool) -> Tensor | int:
    """3.1: each sample's anchor view ``[B]``, the hardest one (``dynamic``) or the first valid one; the plain
    ``int`` 0 when that is known from the shapes (no dynamic anchor, no missing view)."""
    if dynamic:
        valid = view_mask if view_mask is not None else torch.ones(views.shape[:2], dtype=torch.bool,
                                                                   device=views.device)  # fmt: skip
        return hardest_view_unchecked(views, valid)
    if view_mask is None:
        return 0
    return view_mask.to(torch.uint8).argmax(dim=1)


def anchor_embeddings(views: Tensor, anchor_view: Tensor | int) -> Tensor:
    """The anchors ``[B, D]``; a one-hot bmm picks per-sample views (its backward is a bmm, far cheaper than the
    index_put of advanced indexing)."""
    if isinstance(anchor_view, int):
        return views[:, anchor_view]
    return _pick(views, anchor_view[:, None])[:, 0]


def _other_views(anchor_view: Tensor | int, num_views: int, device: torch.device) -> Tensor:
    """The views of each sample other than its anchor, in order: ``[V-1]`` or ``[B, V-1]``."""
    slots = torch.arange(num_views - 1, device=device)
    if isinstance(anchor_view, int):
        return slots + (slots >= anchor_view)
    return slots[None, :] + (slots[None, :] >= anchor_view[:, None])


def select_positives(
    bank: Bank,
    anchors: Tensor,
    anchor_view: Tensor | int,
    view_mask: Tensor | None,
    pool: str,
    k: int,
    farthest: bool,
    with_stats: bool = False,
) -> _Positives:
    """3.2: ``k`` hard positives per anchor from its pool, by farthest-point selection or in pool order.

    ``pool``: ``"views"`` the sample's own views (the paper); ``"labels"`` own views and same-label samples'
    views alike; ``"views+labels"`` own views first, then same-label samples. Without labels every pool is the
    sample's own views. When the pool is every other view of the sample and holds at most ``k`` (two views, or
    three with ``k = 2``), every view is picked whatever the order: no selection runs. ``with_stats`` adds
    ``positives_reordered`` (share of anchors whose farthest-point picks differ from the ordered picks) and
    ``own_view_positives`` (share of picks that are the sample's own views).
    """
    batch, num_views, _ = bank.views.shape
    device = anchors.device
    rows = bank.rows
    own_views_only = bank.same_label is None or pool == "views"
    if own_views_only and view_mask is None and num_views - 1 <= k:
        others = _other_views(anchor_view, num_views, device)
        stats = {}
        if with_stats:  # every own view is picked, by either rule
            stats = {"positives_reordered": torch.zeros((), device=device),
                     "own_view_positives": torch.ones((), device=device)}  # fmt: skip
        return _Positives(rows[:, None] * num_views + others, None, stats)
    local = torch.arange(batch, device=device)
    if own_views_only:
        candidates = bank.views
        candidate = view_mask.clone() if view_mask is not None else torch.ones(batch, num_views, dtype=torch.bool,
                                                                               device=device)  # fmt: skip
        candidate[local, anchor_view] = False
        own = priority = preferred = None
    else:
        candidates, own = bank.flat, ~bank.facts.other_sample
        candidate = bank.same_label if bank.valid is None else bank.same_label & bank.valid[None, :]
        candidate = candidate.clone()
        candidate[local, rows * num_views + anchor_view] = False
        # ordered: own views first, then same-label samples in batch order
        priority = torch.arange(bank.flat.shape[0], device=device)[None, :] + bank.flat.shape[0] * ~own
        preferred = own if pool == "views+labels" else None

    def ordered() -> tuple[Tensor, Tensor]:
        return ordered_select(candidate, k, priority)

    index, valid = farthest_point_unchecked(anchors, candidates, k, candidate, preferred) if farthest else ordered()
    flat = rows[:, None] * num_views + index if own_views_only else index
    stats: dict[str, Tensor] = {}
    if with_stats:
        reordered = _changed(index, valid, *ordered()) if farthest else torch.zeros((), device=device)
        stats["positives_reordered"] = reordered
        own_picked = valid if own is None else own.gather(1, index) & valid
        stats["own_view_positives"] = own_picked.sum() / valid.sum().clamp(min=1)
    if own_views_only and view_mask is None and num_views - 1 >= k:
        valid = None  # k of at least k own views: every pick is real, known from shapes (no read-back later)
    return _Positives(flat, valid, stats)


@torch.no_grad()
def _changed(index: Tensor, valid: Tensor, other_index: Tensor, other_valid: Tensor) -> Tensor:
    """Share of rows whose sets of valid picks differ."""
    a = torch.where(valid, index, -1).sort(dim=1).values
    b = torch.where(other_valid, other_index, -1).sort(dim=1).values
    return (a != b).any(dim=1).float().mean()


def generated_negatives(
    generator: AdversarialNegativeGenerator,
    anchors: Tensor,
    positives: _Positives,
    bank: Bank,
    gathered: Callable,
    offset: int,
    world_size: int,
    update: bool,
    with_stats: bool,
) -> tuple[Tensor, dict[str, Tensor]]:
    """3.3: generated hard negatives of each anchor (detached, ``[B, G, D]``) and the generator's update.

    The generator is conditioned on the anchor and learns from (anchor, selected hard positive) pairs of the
    whole gathered batch, with a shared seed; after the update every process takes rank 0's weights and Adam
    moments (one all-gather), so the generator stays identical on every process bit for bit. The false-negative
    guard and the warm-up (:meth:`~AdversarialNegativeGenerator.active_mask`) are applied as masks with the logits
    (:meth:`SPACLCriterion._anchor_loss`): generated points exist from the first step, and count from the end of
    the warm-up, with no branch on a device value.
    """
    batch = anchors.shape[0]
    source = gathered(anchors.detach())
    generated = generator.generate_unchecked(source)[offset : offset + batch]
    stats: dict[str, Tensor] = {}
    if update:
        real = gathered(bank.flat.detach()[positives.rows])  # [W*B, P, D]
        pair_source = source[:, None].expand_as(real)
        weight = None if positives.valid is None else gathered(positives.valid).reshape(-1)
        # a batch without any real pair has nothing to learn from; the check reads the device, and is needed only
        # where validity varies (labels, missing views): the default pools are full by construction
        if weight is None or bool(weight.any()):
            dim = real.shape[-1]
            stats = generator.update_unchecked(
                real.reshape(-1, dim), pair_source.reshape(-1, dim), weight, with_stats=with_stats
            )
            if world_size > 1:
                generator.copy_state_from_first_rank(gathered)
    return generated, stats


class SPACLCriterion(nn.Module):
    """SnaPhArd Contrast Learning on a batch of views: tensors in, loss out.

    Every sample owns a pool of ``V`` views (augmentations; for text the anchor, positive and extra positive
    columns, or dropout re-encodings). Per sample the criterion

    1. picks the **dynamic anchor**, the view farthest on average from the others (``dynamic_anchor``);
    2. picks ``num_positives`` **hard positives** by farthest-point selection from its ``positive_pool``
       (``farthest_point``);
    3. adds **generated hard negatives** from an :class:`AdversarialNegativeGenerator` (``generator``);
    4. **screens** the candidate negatives (views of other samples, negative columns, ``extra_negatives``,
       generated ones; minus same-label samples and duplicates of the anchor's positives) down to the shortest
       most-similar set holding ``screening_mass`` of their weight (``screening``, ``screening_weight``);

    and returns the multi-positive InfoNCE of :func:`spacl_loss`. With two views, one positive, and anchor,
    generator and screening off, it equals one-directional NT-Xent (``candidate_views="all"``) or
    MultipleNegativesRankingLoss with ``scale = 1 / temperature`` (``candidate_views="columns"``).

    With two views per sample the dynamic anchor is a tie and farthest-point selection has one candidate: both
    are inert by construction (the statistics show it). Use ``V >= 4`` views, several positive columns, or
    labelled batches with several samples per class for them to act.

    Args:
        temperature: logits are ``cos / temperature`` (0.05 for text, 0.1 for images are good starts); finite
            and at least ``1e-4`` (below it masked logits would leak and float32 loses the logits).
        num_positives: hard positives per anchor, ``lambda_P`` (paper: 2; accuracy drops past 4).
        screening_mass: share of the candidates' weight that screening keeps, ``lambda_Q`` (paper: 0.95).
        min_negatives: screening keeps at least this many negatives per anchor.
        dynamic_anchor: use the hardest view as anchor; ``False`` uses view 0 (the first valid view).
        farthest_point: farthest-point positives; ``False`` takes candidates in their given order.
        screening: relative-threshold screening; ``False`` keeps every candidate negative.
        generator: adversarial negative generator, or ``None`` for no generated negatives.
        candidate_views: which views of other samples are negatives: ``"all"`` (SimCLR convention),
            ``"columns"`` (all but view 0, the anchor column: MultipleNegativesRankingLoss convention) or
            ``"auto"`` (the default; ``"all"`` here, since a views tensor has no columns: the column front ends
            resolve it per batch, see :func:`~spacl_hf.core.spacl_from_columns`).
        positive_pool: where hard positives come from when ``labels`` are given: ``"labels"`` (own views and
            same-label samples' views alike, SupCon style; the default, as before this option existed),
            ``"views"`` (only the sample's own views, the paper) or ``"views+labels"`` (own views first, then
            same-label samples). Same-label samples are never negatives either way. Which one wins is decided
            on validation data by the quality benchmarks.
        screening_weight: ``"softmax"`` (weight ``exp(cos / tau)``: gentle, moves each anchor's loss by at most
            ``-ln(screening_mass)``) or ``"similarity"`` (raw cosines, the paper's formula: aggressive). The
            default stays ``"softmax"`` until the quality studies have measured which wins on validation data.
        mask_duplicates: candidates identical to the anchor or one of its positives are not negatives
            (by ``view_ids`` / ``negative_ids`` when given, else by exact equality of the embeddings; an anchor
            whose every candidate equals it, a collapse, keeps them, with a warning).
        gather_across_devices: gather candidates from every process, with gradients, under
            ``torch.distributed``.
        anchor_mode: ``"one"`` (the paper: one anchor per sample, the dynamic one or view 0) or ``"every_view"``
            (*ours*: every view of a sample is an anchor in turn, each with its own hard positives, generated
            negatives and screening; the loss is the mean over all of them, as SimCLR's NT-Xent and SupCon use
            every view). With ``"every_view"`` the dynamic anchor has nothing to choose (its statistic reads 0)
            and the loss costs about ``V`` times the one-anchor loss (still small next to the encoder).

    Statistics (``return_stats=True``; 0-dim detached tensors, means over the batch unless said otherwise):
        - ``anchor_not_first_view``: share of anchors that are not view 0 (the dynamic anchor acted).
        - ``positives_reordered``: share of anchors whose farthest-point picks differ from the ordered picks.
        - ``own_view_positives``: share of selected positives that are the sample's own views.
        - ``kept_negative_fraction`` / ``kept_negatives_per_anchor``: what screening kept.
        - ``screened_weight_fraction``: share of the candidates' softmax weight that screening removed.
        - ``anchors_without_negatives``: share of anchors with no candidate negative (they carry no loss; a
          warning says why, once).
        - ``hardest_negative_cosine``: median over anchors of the most similar real candidate's cosine.
        - ``generated_anchor_cosine``: median cosine of generated negatives to their anchor (before the guard);
          ``generated_guard_kept_fraction``: share the guard kept; ``generated_weight_fraction``: share of the
          kept negatives' softmax weight that generated ones hold; ``generated_negatives_per_anchor``.
        - ``nonpositive_similarity_total``: share of anchors whose candidates' raw cosines sum to <= 0; under
          ``screening_weight="similarity"`` they keep only ``min_negatives`` (the paper's rule read literally).
        - ``mean_positive_similarity``, ``mean_negative_similarity``, ``positive_spread``,
          ``positives_per_anchor``, ``anchors_with_positive``; the generator's losses and scores.

    Shape:
        - views: ``[B, V, D]``; view_mask: ``[B, V]``; labels: ``[B]``
        - negatives: ``[B, N, D]``; negative_mask: ``[B, N]``; view_ids: ``[B, V]``; negative_ids: ``[B, N]``
        - extra_negatives: ``[M, D]``
        - output: scalar loss, or ``(loss, stats)`` with ``return_stats=True``

    Raises:
        ValueError: on an invalid setting (the message names it and the accepted values) or malformed inputs.

    Examples:
        >>> criterion = SPACLCriterion(temperature=0.1, screening_weight="similarity")
        >>> views = torch.randn(16, 4, 32, requires_grad=True)
        >>> loss, stats = criterion(views, return_stats=True)
        >>> loss.backward()
        >>> bool(stats["kept_negative_fraction"] < 1)
        True

    References:
        SnaPhArd Contrast Learning (SPACL), ICLR 2026, https://openreview.net/forum?id=4cZvjp8Iwk
    """

    citation = SPACL_CITATION

    def __init__(
        self,
        temperature: float = 0.05,
        num_positives: int = 2,
        screening_mass: float = 0.95,
        min_negatives: int = 1,
        dynamic_anchor: bool = True,
        farthest_point: bool = True,
        screening: bool = True,
        generator: AdversarialNegativeGenerator | None = None,
        candidate_views: str = "auto",
        positive_pool: str = "labels",
        screening_weight: str = "softmax",
        mask_duplicates: bool = True,
        gather_across_devices: bool = False,
        anchor_mode: str = "one",
    ) -> None:
        super().__init__()
        self.temperature = check_temperature("temperature", temperature)
        self.num_positives = check_int("num_positives", num_positives, 1)
        self.screening_mass = check_fraction("screening_mass", screening_mass)
        self.min_negatives = check_int("min_negatives", min_negatives, 0)
        self.dynamic_anchor = check_bool("dynamic_anchor", dynamic_anchor)
        self.farthest_point = check_bool("farthest_point", farthest_point)
        self.screening = check_bool("screening", screening)
        if generator is not None and not isinstance(generator, AdversarialNegativeGenerator):
            raise ValueError(
                f"`generator` must be an AdversarialNegativeGenerator or None, got {type(generator).__name__}."
            )
        self.generator = generator
        # one generator per truncated size (Matryoshka), made on first use: see generator_for
        self.truncated_generators = nn.ModuleDict()
        self.candidate_views = check_choice("candidate_views", candidate_views, CANDIDATE_VIEWS)
        self.positive_pool = check_choice("positive_pool", positive_pool, POSITIVE_POOLS)
        self.screening_weight = check_choice("screening_weight", screening_weight, SCREENING_WEIGHTS)
        self.mask_duplicates = check_bool("mask_duplicates", mask_duplicates)
        self.gather_across_devices = check_bool("gather_across_devices", gather_across_devices)
        self.anchor_mode = check_choice("anchor_mode", anchor_mode, ANCHOR_MODES)
        self._warned: set[str] = set()
        self._diagnosed = False  # finiteness checks and warnings ran once (they read the device)
        self._facts_cache: dict[tuple, ShapeFacts] = {}  # shape-only tensors, per batch shape
        self._mask_cache: dict[tuple, Tensor] = {}

    def generator_for(self, embedding_dim: int) -> AdversarialNegativeGenerator | None:
        """The adversarial generator of embeddings of ``embedding_dim`` features.

        ``generator`` itself at its own size. Truncated embeddings (``MatryoshkaLoss`` scores the leading 64 of 384
        features, renormalised) get a generator of their own, made on first use with the same settings: the
        full-size generator cannot take them, and negatives generated at full size and truncated would be hard for
        the full geometry, not for the truncated one. The extra generators are small (two MLPs each) and train
        only on their own size's batches.

        Args:
            embedding_dim: the size of the embeddings being scored.

        Raises:
            ValueError: for a size larger than the generator's.

        Examples:
            >>> criterion = SPACLCriterion(generator=AdversarialNegativeGenerator(64))
            >>> criterion.generator_for(16).embedding_dim, criterion.generator_for(64) is criterion.generator
            (16, True)
        """
        if self.generator is None or embedding_dim == self.generator.embedding_dim:
            return self.generator
        if embedding_dim > self.generator.embedding_dim:
            raise ValueError(
                f"Embeddings of {embedding_dim} features exceed the generator's {self.generator.embedding_dim}."
            )
        key = str(embedding_dim)
        if key not in self.truncated_generators:
            device = next(self.generator.parameters()).device
            self.truncated_generators[key] = self.generator.for_dimension(embedding_dim).to(device)
        return self.truncated_generators[key]

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "num_positives": self.num_positives,
            "screening_mass": self.screening_mass,
            "screening_weight": self.screening_weight,
            "min_negatives": self.min_negatives,
            "dynamic_anchor": self.dynamic_anchor,
            "farthest_point": self.farthest_point,
            "screening": self.screening,
            "generator": None if self.generator is None else self.generator.get_config_dict(),
            "candidate_views": self.candidate_views,
            "positive_pool": self.positive_pool,
            "mask_duplicates": self.mask_duplicates,
            "gather_across_devices": self.gather_across_devices,
            "anchor_mode": self.anchor_mode,
        }

    def forward(
        self,
        views: Tensor,
        view_mask: Tensor | None = None,
        labels: Tensor | None = None,
        negatives: Tensor | None = None,
        negative_mask: Tensor | None = None,
        view_ids: Tensor | None = None,
        negative_ids: Tensor | None = None,
        extra_negatives: Tensor | None = None,
        dynamic_anchor: bool | None = None,
        candidate_view_mask: Tensor | Sequence[bool] | None = None,
        gather: Gather | None = None,
        return_stats: bool = False,
        update_generator: bool = True,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Compute the SPACL loss of a batch (see the class docstring for shapes).

        Shapes, dtypes and settings are checked on every call (no device read). Finiteness of the embeddings needs
        one, so it is checked on the first call and on every call with ``return_stats`` (a trainer's logging steps);
        the warnings about anchors without positives or negatives likewise. In between, a NaN embedding shows as a
        NaN loss.

        Args:
            candidate_view_mask: ``[V]`` bool, which views of other samples are candidate negatives for this
                call, overriding ``candidate_views`` (e.g. exclude an anchor column encoded several times). A tuple
                of Python bools is the cheap form: its mask is built once per batch shape.
            dynamic_anchor: override the configured anchor choice for this call (e.g. keep the query side
                as anchor for asymmetric data).
            gather: process group to gather candidates over; defaults to ``torch.distributed`` when
                ``gather_across_devices`` is set, else none.
            return_stats: also return a dict of detached statistics.
            update_generator: let this call update the adversarial generator (in training, with gradients). A
                wrapper that scores one batch several times with embeddings of one size (``AdaptiveLayerLoss``'s
                layers, the reverse direction) passes ``False`` to the extra calls: one update per training step.
        """
        # value checks read the device: on the first call and with statistics, never inside a torch.compile trace
        diagnose = (return_stats or not self._diagnosed) and not torch.compiler.is_compiling()
        check_tensor("views", views, ndim=3, floating=True, finite=diagnose)
        batch, num_views, dim = views.shape
        if batch == 0 or num_views == 0:
            raise ValueError(f"`views` must hold at least one sample and one view, got shape {tuple(views.shape)}.")
        check_mask("view_mask", view_mask, (batch, num_views), "[B, V]")
        if labels is not None:
            check_ids("labels", labels, (batch,), "[B]")
        if num_views < 2 and (labels is None or self.positive_pool == "views"):
            raise ValueError(
                "SPACL needs positives: pass `views` with at least 2 views per sample ([B, V>=2, D]) "
                "or `labels` with positive_pool 'labels' / 'views+labels' so that same-label samples are positives; "
                f"got views {tuple(views.shape)}, labels {'given' if labels is not None else 'none'} and "
                f"positive_pool={self.positive_pool!r}."
            )
        if negatives is not None:
            check_tensor("negatives", negatives, ndim=3, floating=True, finite=diagnose)
            if negatives.shape[0] != batch or negatives.shape[2] != dim:
                raise ValueError(f"`negatives` must be [B={batch}, N, D={dim}], got {tuple(negatives.shape)}.")
            check_mask("negative_mask", negative_mask, tuple(negatives.shape[:2]), "[B, N]")
            check_ids("negative_ids", negative_ids, tuple(negatives.shape[:2]), "[B, N]")
        elif negative_mask is not None or negative_ids is not None:
            raise ValueError("`negative_mask` / `negative_ids` were given without `negatives`.")
        check_ids("view_ids", view_ids, (batch, num_views), "[B, V]")
        candidate_columns, candidate_view_mask = self._candidate_columns(candidate_view_mask, num_views)
        if extra_negatives is not None:
            check_tensor("extra_negatives", extra_negatives, ndim=2, floating=True, finite=diagnose)
            if extra_negatives.shape[1] != dim:
                raise ValueError(f"`extra_negatives` must be [M, {dim}], got {tuple(extra_negatives.shape)}.")
        if gather is None and self.gather_across_devices:
            gather = TorchDistributedGather()
        use_dynamic_anchor = (
            self.dynamic_anchor if dynamic_anchor is None else check_bool("dynamic_anchor", dynamic_anchor)
        )

        with torch.autocast(device_type=views.device.type, enabled=False):
            loss, stats = self._compute(
                views, view_mask, labels, negatives, negative_mask, view_ids, negative_ids, extra_negatives,
                use_dynamic_anchor, candidate_columns, candidate_view_mask, gather, return_stats, diagnose,
                update_generator,
            )  # fmt: skip
        self._diagnosed = True
        return (loss, stats) if return_stats else loss

    def _candidate_columns(
        self, candidate_view_mask: Tensor | Sequence[bool] | None, num_views: int
    ) -> tuple[tuple[bool, ...], Tensor | None]:
        """Which view indices of other samples are negatives: a shape-only tuple (cached masks) and, for a mask
        given as a tensor, that tensor (applied per call)."""
        if isinstance(candidate_view_mask, Tensor):
            check_mask("candidate_view_mask", candidate_view_mask, (num_views,), "[V]")
            return (True,) * num_views, candidate_view_mask
        if candidate_view_mask is not None:
            columns = tuple(candidate_view_mask)
            if len(columns) != num_views or not all(isinstance(c, bool) for c in columns):
                raise ValueError(
                    f"`candidate_view_mask` must be a bool tensor or a sequence of {num_views} bools ([V]), got "
                    f"{candidate_view_mask!r}."
                )
            return columns, None
        if self.candidate_views == "columns":
            return tuple(v != 0 for v in range(num_views)), None
        return (True,) * num_views, None

    def _shape_facts(self, batch: int, num_views: int, world: int, offset: int, device: torch.device) -> ShapeFacts:
        key = (batch, num_views, world, offset, str(device))
        facts = self._facts_cache.get(key)
        if facts is None:
            if len(self._facts_cache) >= 16:  # ragged last batches and evaluation sizes: keep it bounded
                self._facts_cache.clear()
                self._mask_cache.clear()
            facts = self._facts_cache[key] = ShapeFacts.build(batch, num_views, world, offset, device)
        return facts

    def _static_mask(self, facts: ShapeFacts, key: tuple, columns: tuple[bool, ...]) -> Tensor:
        mask = self._mask_cache.get((key, columns))
        if mask is None:
            mask = self._mask_cache[(key, columns)] = static_candidate_mask(facts, columns)
        return mask

    def _compute(
        self,
        views: Tensor,
        view_mask: Tensor | None,
        labels: Tensor | None,
        negatives: Tensor | None,
        negative_mask: Tensor | None,
        view_ids: Tensor | None,
        negative_ids: Tensor | None,
        extra_negatives: Tensor | None,
        use_dynamic_anchor: bool,
        candidate_columns: tuple[bool, ...],
        candidate_view_mask: Tensor | None,
        gather: Gather | None,
        return_stats: bool,
        diagnose: bool,
        update_generator: bool = True,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        batch, num_views, _ = views.shape
        device = views.device
        world = 1 if gather is None else gather.world_size
        offset = 0 if gather is None else gather.rank * batch

        def gathered(tensor: Tensor) -> Tensor:
            if world == 1:
                return tensor
            if tensor.dtype == torch.bool:  # not every backend gathers bool
                return gather(tensor.to(torch.uint8)).bool()
            return gather(tensor)

        views = F.normalize(at_least_float32(views), dim=-1)
        facts = self._shape_facts(batch, num_views, world, offset, device)
        bank = build_bank(views, view_mask, labels, gathered, facts)

        # 3.4 candidate negatives: every anchor of a sample shares them (the duplicates of its anchor and positives
        # are masked per anchor below)
        base_mask = self._static_mask(facts, (batch, num_views, world, offset, str(device)), candidate_columns)
        shared_bank, shared_mask = candidate_negatives(
            bank, base_mask, candidate_view_mask, negatives, negative_mask, extra_negatives, gathered
        )
        ids = None
        if self.mask_duplicates:
            ids = bank_ids(shared_bank, view_ids, negative_ids, negatives, extra_negatives, gathered)

        # 3.1 anchors and 3.2 hard positives: one anchor per sample (the paper) or every view in turn (ours)
        selections = []
        for anchor_view in self._anchor_choices(views, view_mask, use_dynamic_anchor):
            anchors = anchor_embeddings(views, anchor_view)
            positives = select_positives(
                bank, anchors, anchor_view, view_mask, self.positive_pool, self.num_positives, self.farthest_point,
                with_stats=return_stats,
            )  # fmt: skip
            if view_mask is not None:  # a missing view anchors nothing
                if isinstance(anchor_view, int):
                    anchor_valid = view_mask[:, anchor_view : anchor_view + 1]
                else:
                    anchor_valid = view_mask.gather(1, anchor_view[:, None])
                valid = positives.valid if positives.valid is not None else torch.ones_like(positives.rows, dtype=bool)
                positives.valid = valid & anchor_valid
            selections.append((anchor_view, anchors, positives))
        # the mean over every anchor with a positive, of this process or, gathered, of all (W x B == 1 x W*B)
        if all(p.valid is None for _, _, p in selections):
            normalizer: Tensor | float = float(batch * len(selections))  # every anchor has one: known from shapes
        else:
            has_positive = torch.stack(
                [p.valid.any(dim=1) if p.valid is not None else torch.ones(batch, dtype=torch.bool, device=device)
                 for _, _, p in selections]
            )  # fmt: skip
            normalizer = has_positive.sum().clamp(min=1)
            if world > 1:
                normalizer = gathered(has_positive.reshape(-1)).sum().clamp(min=1) / world

        loss, per_anchor_stats = None, []
        for index, (anchor_view, anchors, positives) in enumerate(selections):
            part, stats = self._anchor_loss(
                anchors, anchor_view, positives, bank, shared_bank, shared_mask, ids, view_ids is None,
                normalizer, gathered, offset, world, update_generator=update_generator and index == 0, return_stats=return_stats,
                diagnose=diagnose,
            )  # fmt: skip
            loss = part if loss is None else loss + part
            per_anchor_stats.append(stats)
        if not return_stats:
            return loss, {}
        if len(per_anchor_stats) == 1:
            return loss, per_anchor_stats[0]
        stats = {k: torch.stack([s[k] for s in per_anchor_stats if k in s]).float().mean() for k in per_anchor_stats[0]}
        stats["anchor_not_first_view"] = torch.zeros((), device=views.device)  # every view anchors: no choice made
        return loss, stats

    def _anchor_choices(self, views: Tensor, view_mask: Tensor | None, use_dynamic_anchor: bool) -> list:
        """3.1: the anchor view of each sample (``[B]``, or an ``int`` for all), once (dynamic or view 0) or every
        view in turn."""
        if self.anchor_mode == "every_view":
            return list(range(views.shape[1]))
        return [select_anchor_views(views, view_mask, use_dynamic_anchor)]

    def _anchor_loss(
        self,
        anchors: Tensor,
        anchor_view: Tensor | int,
        positives: _Positives,
        bank: Bank,
        shared_bank: Tensor,
        shared_mask: Tensor,
        ids: Tensor | None,
        by_content: bool,
        normalizer: Tensor | float,
        gathered: Callable,
        offset: int,
        world_size: int,
        update_generator: bool,
        return_stats: bool,
        diagnose: bool,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """3.4 duplicates, 3.3 generated negatives, 3.4 screening and section 4 for one anchor per sample; the
        summed per-anchor losses are divided by ``normalizer`` (every anchor of the batch)."""
        num_views = bank.views.shape[1]
        collapsed: Tensor | None = None
        if ids is not None:
            anchor_row = (bank.rows * num_views + anchor_view)[:, None]
            key_rows = torch.cat([anchor_row, positives.rows], dim=1)
            key_valid = None
            if positives.valid is not None:
                key_valid = torch.cat([torch.ones_like(positives.valid[:, :1]), positives.valid], dim=1)
            shared_mask, collapsed = mask_duplicate_negatives(shared_mask, ids, key_rows, key_valid, by_content)

        # one similarity matmul: the positives are rows of the bank, so their logits are entries of it
        scaled = anchors / self.temperature  # fold the temperature into the [B, D] side, not the [B, C] logits
        logits = scaled @ shared_bank.T
        positive_logits = logits.gather(1, positives.rows)

        # 3.3 generated hard negatives (decided on detached inputs; identical on every process)
        negative_logits, candidate = logits, shared_mask
        generator_stats: dict[str, Tensor] = {}
        generator = self.generator_for(anchors.shape[-1])
        num_generated = 0
        if generator is not None:
            update = update_generator and self.training and torch.is_grad_enabled()
            generated, generator_stats = generated_negatives(
                generator, anchors, positives, bank, gathered, offset, world_size, update, return_stats
            )
            if generated.shape[1] > 0:
                num_generated = generated.shape[1]
                generated_logits = torch.einsum("bd,bgd->bg", scaled, generated)
                guard = self._false_negative_guard(generated_logits, positive_logits.detach(), positives.valid)
                guard = guard & generator.active_mask()  # nothing during warm-up
                negative_logits = torch.cat([logits, generated_logits], dim=1)
                candidate = torch.cat([shared_mask, guard], dim=1)
                if return_stats:
                    generator_stats["generated_anchor_cosine"] = (generated_logits.detach() * self.temperature).median()
                    generator_stats["generated_guard_kept_fraction"] = guard.float().mean()
        if diagnose:
            self._warn_if_starved(shared_mask, candidate[:, shared_mask.shape[1] :], positives.valid, collapsed)

        # 3.4 screening + section 4: the multi-positive InfoNCE over what is kept
        if self.screening:
            keep = screen_unchecked(negative_logits, self.screening_mass, self.min_negatives, candidate,
                                    self.screening_weight)  # fmt: skip
        else:
            keep = candidate
        has_positive = None if positives.valid is None else positives.valid.any(dim=1)
        loss = infonce_from_logits(positive_logits, positives.valid, negative_logits, keep, has_positive, normalizer)
        if not return_stats:
            return loss, {}
        valid = positives.valid if positives.valid is not None else torch.ones_like(positives.rows, dtype=torch.bool)
        stats = _statistics(
            anchors.detach(), bank.flat.detach()[positives.rows], valid, negative_logits.detach(), self.temperature,
            candidate, keep, valid.any(dim=1), num_generated,
        )  # fmt: skip
        stats["anchor_not_first_view"] = (
            torch.zeros((), device=anchors.device) if isinstance(anchor_view, int) else (anchor_view != 0).float().mean()
        )
        # anchors whose candidates' raw cosines sum to <= 0: "similarity" screening keeps only min_negatives there
        cosine_total = (negative_logits.detach() * candidate).sum(dim=1)
        stats["nonpositive_similarity_total"] = ((cosine_total <= 0) & candidate.any(dim=1)).float().mean()
        stats.update(positives.stats)
        stats["generated_negatives_per_anchor"] = (
            candidate[:, shared_mask.shape[1] :].float().sum(1).mean()
            if num_generated
            else torch.zeros((), device=anchors.device)
        )
        if "anchor_negative_weight_fraction" in stats:
            stats["generated_weight_fraction"] = stats.pop("anchor_negative_weight_fraction")
        stats.update(generator_stats)
        return loss, stats

    @staticmethod
    def _false_negative_guard(generated_logits: Tensor, positive_logits: Tensor, positive_valid: Tensor | None) -> Tensor:
        """3.3 guard: a generated point more similar to its anchor than the anchor's least similar selected positive
        is dropped. ``[B, G]`` bool."""
        if positive_valid is not None:
            positive_logits = positive_logits.masked_fill(~positive_valid, float("inf"))
        weakest_positive = positive_logits.min(dim=1, keepdim=True).values
        return generated_logits.detach() <= weakest_positive

    def _warn_if_starved(
        self, shared_mask: Tensor, generated_mask: Tensor, positive_valid: Tensor | None, collapsed: Tensor | None
    ) -> None:
        """Warn (once per reason) when anchors have no positive, no candidate negative, or only collapsed ones.

        Runs on the first call and on calls with statistics (it reads the device)."""
        if collapsed is not None and "collapsed" not in self._warned and bool(collapsed.any()):
            self._warned.add("collapsed")
            warnings.warn(
                f"SPACL: for {int(collapsed.sum())} of {len(collapsed)} anchors every candidate negative has exactly "
                "the anchor's (or a positive's) embedding: the embeddings look collapsed. They are kept as negatives "
                "so the loss shows it. Pass content ids (view_ids) if these are real duplicate inputs.",
                stacklevel=6,
            )
        has_positive = None if positive_valid is None else positive_valid.any(dim=1)
        if has_positive is not None and "no_positive" not in self._warned and not bool(has_positive.any()):
            self._warned.add("no_positive")
            warnings.warn(
                f"SPACL: none of the {len(has_positive)} anchors in this batch has a positive, so the loss is 0 and "
                "nothing is learned from it (statistic `anchors_with_positive`). Causes: labelled batches in which "
                "every label occurs once (random batches of a many-class set) with one view per sample. Fix: "
                "per-label batches (PerClassBatchSampler / spacl_samples_per_label), or several views per sample.",
                stacklevel=6,
            )
        if "starved" in self._warned:
            return
        has_negative = shared_mask.any(dim=1) | generated_mask.any(dim=1)
        starved = ~has_negative if has_positive is None else has_positive & ~has_negative
        if bool(starved.any()):
            self._warned.add("starved")
            warnings.warn(
                f"SPACL: {int(starved.sum())} of {len(starved)} anchors have no candidate negative in this batch, so "
                "they carry no loss (statistic `anchors_without_negatives`). Causes: a batch of one sample or of one "
                "label, candidate_views='columns' with a single column, or every other input a duplicate. Fix: "
                "larger batches with several labels per batch, candidate_views='all' (or 'auto') for labelled or "
                "single-column data, or negative columns.",
                stacklevel=6,
            )
