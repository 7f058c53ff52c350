"""``SPACLCriterion``: the SPACL configuration as an ``nn.Module``, from a batch of views to the loss.

The forward pass runs the specification's stages in order, each a small function below: the candidate bank
(every view of every sample of every process), 3.1 the dynamic anchor, 3.2 the hard positives, 3.4 the
candidate negatives, 3.3 the generated negatives, then 3.4 screening and the loss of section 4
(:func:`~spacl_hf.core.loss.infonce_unchecked`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .anchor import hardest_view_unchecked
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
from .loss import infonce_unchecked
from .positives import farthest_point_unchecked, ordered_select
from .screening import SCREENING_WEIGHTS

CANDIDATE_VIEWS = ("auto", "all", "columns")
POSITIVE_POOLS = ("labels", "views", "views+labels")
ANCHOR_MODES = ("one", "every_view")


def _pick(views: Tensor, index: Tensor) -> Tensor:
    """``views[b, index[b, j]]`` for every ``b, j`` as ``[B, J, D]``, through a one-hot batched matmul."""
    one_hot = torch.zeros(*index.shape, views.shape[1], dtype=views.dtype, device=views.device)
    one_hot.scatter_(2, index[..., None], 1.0)
    return torch.bmm(one_hot, views)


def content_hash(rows: Tensor) -> Tensor:
    """An int64 id per row, equal for bit-identical rows (a random linear hash of the float bits).

    Distinct rows collide with probability about 2**-64 per pair; identical rows always share the id.
    """
    bits = rows.detach().contiguous()
    bits = bits.view(torch.int64 if bits.dtype == torch.float64 else torch.int32).to(torch.int64)
    weights = (
        torch.randint(-(2**62), 2**62, (rows.shape[1],), generator=torch.Generator().manual_seed(rows.shape[1])).to(
            rows.device
        )
        | 1
    )  # odd multipliers; int64 overflow wraps, which is what a hash wants
    return (bits * weights).sum(dim=1)


@dataclass
class _Bank:
    """Every view of every sample of every process, flattened sample-major, with who owns each row."""

    views: Tensor  # [B, V, D] this process's unit views
    rows: Tensor  # [B] global row of each local sample
    flat: Tensor  # [W*B*V, D]
    valid: Tensor  # [W*B*V]
    owner: Tensor  # [W*B*V] global sample of each row
    column: Tensor  # [W*B*V] view index of each row
    same_label: Tensor | None  # [B, W*B*V]: the row's sample shares this sample's label


@dataclass
class _Positives:
    embeddings: Tensor  # [B, P, D]
    valid: Tensor  # [B, P]
    flat: Tensor  # [B, P] rows of the bank
    stats: dict[str, Tensor]  # activity statistics, only when asked for


def build_bank(views: Tensor, view_mask: Tensor, labels: Tensor | None, gathered: Callable, offset: int) -> _Bank:
    """The candidate bank, gathered (with gradients) from every process."""
    batch, num_views, dim = views.shape
    device = views.device
    all_views = gathered(views)
    total = all_views.shape[0]
    owner = torch.arange(total, device=device).repeat_interleave(num_views)
    same_label = None
    if labels is not None:
        all_labels = gathered(labels.to(torch.long))
        same_label = labels.to(torch.long)[:, None] == all_labels[owner][None, :]
    return _Bank(
        views=views,
        rows=torch.arange(batch, device=device) + offset,
        flat=all_views.reshape(total * num_views, dim),
        valid=gathered(view_mask).reshape(-1),
        owner=owner,
        column=torch.arange(num_views, device=device).repeat(total),
        same_label=same_label,
    )


def select_anchor_views(views: Tensor, view_mask: Tensor, dynamic: bool) -> Tensor:
    """3.1: each sample's anchor view, the hardest one (``dynamic``) or the first valid one. ``[B]``."""
    if dynamic:
        return hardest_view_unchecked(views, view_mask)
    return view_mask.to(torch.uint8).argmax(dim=1)


def select_positives(
    bank: _Bank,
    anchors: Tensor,
    anchor_view: Tensor,
    view_mask: Tensor,
    pool: str,
    k: int,
    farthest: bool,
    with_stats: bool = False,
) -> _Positives:
    """3.2: ``k`` hard positives per anchor from its pool, by farthest-point selection or in pool order.

    ``pool``: ``"views"`` the sample's own views (the paper); ``"labels"`` own views and same-label samples'
    views alike; ``"views+labels"`` own views first, then same-label samples. Without labels every pool is the
    sample's own views. ``with_stats`` adds ``positives_reordered`` (share of anchors whose farthest-point picks
    differ from the ordered picks) and ``own_view_positives`` (share of picks that are the sample's own views).
    """
    batch, num_views, _ = bank.views.shape
    device = anchors.device
    local = torch.arange(batch, device=device)
    own_views_only = bank.same_label is None or pool == "views"
    if own_views_only:
        candidates, candidate = bank.views, view_mask.clone()
        candidate[local, anchor_view] = False
        own = priority = preferred = None
    else:
        candidates, own = bank.flat, bank.owner[None, :] == bank.rows[:, None]
        candidate = bank.same_label & bank.valid[None, :]
        candidate[local, bank.rows * num_views + anchor_view] = False
        # ordered: own views first, then same-label samples in batch order
        priority = torch.arange(bank.flat.shape[0], device=device)[None, :] + bank.flat.shape[0] * ~own
        preferred = own if pool == "views+labels" else None

    def ordered() -> tuple[Tensor, Tensor]:
        return ordered_select(candidate, k, priority)

    index, valid = farthest_point_unchecked(anchors, candidates, k, candidate, preferred) if farthest else ordered()
    if own_views_only:
        embeddings, flat = _pick(bank.views, index), bank.rows[:, None] * num_views + index
    else:
        embeddings, flat = bank.flat[index], index
    stats: dict[str, Tensor] = {}
    if with_stats:
        reordered = _changed(index, valid, *ordered()) if farthest else torch.zeros((), device=device)
        stats["positives_reordered"] = reordered
        own_picked = valid if own is None else own.gather(1, index) & valid
        stats["own_view_positives"] = own_picked.sum() / valid.sum().clamp(min=1)
    return _Positives(embeddings, valid, flat, stats)


@torch.no_grad()
def _changed(index: Tensor, valid: Tensor, other_index: Tensor, other_valid: Tensor) -> Tensor:
    """Share of rows whose sets of valid picks differ."""
    a = torch.where(valid, index, -1).sort(dim=1).values
    b = torch.where(other_valid, other_index, -1).sort(dim=1).values
    return (a != b).any(dim=1).float().mean()


def _candidate_view_rows(bank: _Bank, candidate_views: str, candidate_view_mask: Tensor | None) -> Tensor:
    """``[W*B*V]``: which bank rows may be negatives by their view index."""
    if candidate_view_mask is not None:
        return candidate_view_mask[bank.column]
    if candidate_views == "columns":
        return bank.column != 0
    return torch.ones_like(bank.valid)


def candidate_negatives(
    bank: _Bank,
    candidate_views: str,
    candidate_view_mask: Tensor | None,
    negatives: Tensor | None,
    negative_mask: Tensor | None,
    extra_negatives: Tensor | None,
    gathered: Callable,
) -> tuple[Tensor, Tensor]:
    """3.4 (candidates): other samples' views (minus same-label samples), negative columns, extra negatives.

    Returns the shared candidate rows ``[C, D]`` and which of them are candidates of which anchor ``[B, C]``.
    """
    batch, _, dim = bank.views.shape
    device = bank.views.device
    negative_of = (bank.valid & _candidate_view_rows(bank, candidate_views, candidate_view_mask))[None, :]
    negative_of = negative_of & (bank.owner[None, :] != bank.rows[:, None])
    if bank.same_label is not None:
        negative_of &= ~bank.same_label
    shared, shared_mask = [bank.flat], [negative_of]
    if negatives is not None:
        all_negatives = gathered(F.normalize(negatives.to(bank.views.dtype), dim=-1))
        shared.append(all_negatives.reshape(-1, dim))
        column_valid = torch.ones(all_negatives.shape[:2], dtype=torch.bool, device=device)
        if negative_mask is not None:
            column_valid = gathered(negative_mask)
        shared_mask.append(column_valid.reshape(1, -1).expand(batch, -1))
    if extra_negatives is not None:
        shared.append(F.normalize(extra_negatives.to(bank.views.dtype), dim=-1))
        shared_mask.append(torch.ones(batch, extra_negatives.shape[0], dtype=torch.bool, device=device))
    # no copy of the bank when there is nothing to append (the common case)
    if len(shared) == 1:
        return shared[0], shared_mask[0]
    return torch.cat(shared), torch.cat(shared_mask, dim=1)


def mask_duplicate_negatives(
    candidates: Tensor, bank_ids: Tensor, anchor_flat: Tensor, positives: _Positives, by_content: bool
) -> tuple[Tensor, Tensor | None]:
    """3.4 (duplicates): a candidate with the id of the anchor or one of its positives is no negative.

    With ``by_content`` (no ids given: identical embeddings are taken for identical inputs) an anchor whose every
    candidate would go keeps them: every embedding equal to the anchor's is a collapse, not a duplicate input,
    and the loss must say so instead of reading 0. Returns the mask and a ``[B]`` flag of those anchors (``None``
    when nothing can be restored: ids given, or a duplicate-free bank).
    """
    if not bool(bank_ids.unique().numel() < bank_ids.numel()):  # nothing to mask in a duplicate-free bank
        return candidates, None
    keys = torch.cat([anchor_flat[:, None], positives.flat], dim=1)
    key_valid = torch.cat([torch.ones_like(positives.valid[:, :1]), positives.valid], dim=1)
    key_ids = bank_ids[keys]
    key_ids = torch.where(key_valid, key_ids, key_ids[:, :1])  # a missing positive repeats the anchor
    masked = candidates.clone()
    for j in range(keys.shape[1]):  # 1 + num_positives columns, each vectorised over the batch
        masked &= bank_ids[None, :] != key_ids[:, j : j + 1]
    if not by_content:
        return masked, None
    restored = candidates.any(dim=1) & ~masked.any(dim=1)
    return torch.where(restored[:, None], candidates, masked), restored


def generated_negatives(
    generator: AdversarialNegativeGenerator,
    anchors: Tensor,
    positives: _Positives,
    gathered: Callable,
    offset: int,
    world_size: int,
    update: bool,
) -> tuple[Tensor | None, Tensor | None, dict[str, Tensor]]:
    """3.3: generated hard negatives of each anchor (detached) and the generator's update.

    The generator is conditioned on the anchor and learns from (anchor, selected hard positive) pairs of the
    whole gathered batch, with a shared seed; after the update every process takes rank 0's weights and Adam
    moments (one all-gather), so the generator stays identical on every process bit for bit. A generated point
    more similar to its anchor than the anchor's least similar selected positive is dropped (false-negative guard).
    Returns ``(generated [B, G, D], kept [B, G], statistics)``; ``(None, None, ...)`` during warm-up.
    """
    batch = anchors.shape[0]
    source = gathered(anchors.detach())
    fake = generator.generate(source)[offset : offset + batch]
    generated = kept = None
    stats: dict[str, Tensor] = {}
    if fake.shape[1] > 0:
        fake_cos = torch.einsum("bd,bgd->bg", anchors.detach(), fake)
        pos_cos = torch.einsum("bd,bpd->bp", anchors.detach(), positives.embeddings.detach())
        weakest_positive = pos_cos.masked_fill(~positives.valid, float("inf")).min(dim=1).values
        generated, kept = fake, fake_cos <= weakest_positive[:, None]
        stats["generated_anchor_cosine"] = fake_cos.median()
        stats["generated_guard_kept_fraction"] = kept.float().mean()
    if update:
        real = gathered(positives.embeddings.detach())
        real_valid = gathered(positives.valid)
        if bool(real_valid.any()):
            pair_source = source[:, None].expand_as(real)
            for name, value in generator.update(real[real_valid], pair_source[real_valid]).items():
                stats[name] = torch.tensor(value)
            if world_size > 1:
                generator.copy_state_from_first_rank(gathered)
    return generated, kept, stats


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
        - ``mean_positive_similarity``, ``mean_negative_similarity``, ``positive_spread``,
          ``positives_per_anchor``, ``anchors_with_positive``; the generator's losses and scores.

    Shape:
        - views: ``[B, V, D]``; view_mask: ``[B, V]``; labels: ``[B]``
        - negatives: ``[B, N, D]``; negative_mask: ``[B, N]``; view_ids: ``[B, V]``; negative_ids: ``[B, N]``
        - extra_negatives: ``[M, D]``
        - output: scalar loss, or ``(loss, stats)`` with ``return_stats=True``

    Raises:
        ValueError: on an invalid setting (the message names it and the accepted values) or malformed inputs.

    Example:
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

        Example:
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
        candidate_view_mask: Tensor | None = None,
        gather: Gather | None = None,
        return_stats: bool = False,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Compute the SPACL loss of a batch (see the class docstring for shapes).

        Args:
            candidate_view_mask: ``[V]`` bool, which views of other samples are candidate negatives for this
                call, overriding ``candidate_views`` (e.g. exclude an anchor column encoded several times).
            dynamic_anchor: override the configured anchor choice for this call (e.g. keep the query side
                as anchor for asymmetric data).
            gather: process group to gather candidates over; defaults to ``torch.distributed`` when
                ``gather_across_devices`` is set, else none.
            return_stats: also return a dict of detached statistics.
        """
        check_tensor("views", views, ndim=3, floating=True, finite=True)
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
            check_tensor("negatives", negatives, ndim=3, floating=True, finite=True)
            if negatives.shape[0] != batch or negatives.shape[2] != dim:
                raise ValueError(f"`negatives` must be [B={batch}, N, D={dim}], got {tuple(negatives.shape)}.")
            check_mask("negative_mask", negative_mask, tuple(negatives.shape[:2]), "[B, N]")
            check_ids("negative_ids", negative_ids, tuple(negatives.shape[:2]), "[B, N]")
        elif negative_mask is not None or negative_ids is not None:
            raise ValueError("`negative_mask` / `negative_ids` were given without `negatives`.")
        check_ids("view_ids", view_ids, (batch, num_views), "[B, V]")
        check_mask("candidate_view_mask", candidate_view_mask, (num_views,), "[V]")
        if extra_negatives is not None:
            check_tensor("extra_negatives", extra_negatives, ndim=2, floating=True, finite=True)
            if extra_negatives.shape[1] != dim:
                raise ValueError(f"`extra_negatives` must be [M, {dim}], got {tuple(extra_negatives.shape)}.")
        if gather is None and self.gather_across_devices:
            gather = TorchDistributedGather()
        use_dynamic_anchor = (
            self.dynamic_anchor if dynamic_anchor is None else check_bool("dynamic_anchor", dynamic_anchor)
        )

        with torch.autocast(device_type=views.device.type, enabled=False):
            return self._compute(
                views, view_mask, labels, negatives, negative_mask, view_ids, negative_ids,
                extra_negatives, use_dynamic_anchor, candidate_view_mask, gather, return_stats,
            )  # fmt: skip

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
        candidate_view_mask: Tensor | None,
        gather: Gather | None,
        return_stats: bool,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
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
        if view_mask is None:
            view_mask = torch.ones(batch, num_views, dtype=torch.bool, device=device)
        bank = build_bank(views, view_mask, labels, gathered, offset)

        # 3.4 candidate negatives: every anchor of a sample shares them (the duplicates of its anchor and positives
        # are masked per anchor below)
        shared_bank, shared_mask = candidate_negatives(
            bank, self.candidate_views, candidate_view_mask, negatives, negative_mask, extra_negatives, gathered
        )
        bank_ids = None
        if self.mask_duplicates:
            bank_ids = self._bank_ids(shared_bank, view_ids, negative_ids, negatives, extra_negatives, gathered)

        # 3.1 anchors and 3.2 hard positives: one anchor per sample (the paper) or every view in turn (ours)
        selections = []
        for anchor_view in self._anchor_choices(views, view_mask, use_dynamic_anchor):
            # selection carries no gradient; the chosen embeddings do (a one-hot bmm picks them, whose backward is a
            # bmm, far cheaper than the index_put of advanced indexing)
            anchors = _pick(views, anchor_view[:, None])[:, 0]
            positives = select_positives(
                bank, anchors, anchor_view, view_mask, self.positive_pool, self.num_positives, self.farthest_point,
                with_stats=return_stats,
            )  # fmt: skip
            # a missing view anchors nothing
            positives.valid = positives.valid & view_mask.gather(1, anchor_view[:, None])
            selections.append((anchor_view, anchors, positives))
        # the mean over every anchor with a positive, of this process or, gathered, of all (W x B == 1 x W*B)
        has_positive = torch.stack([p.valid.any(dim=1) for _, _, p in selections])
        normalizer = has_positive.sum().clamp(min=1)
        if world > 1:
            normalizer = gathered(has_positive.reshape(-1)).sum().clamp(min=1) / world

        loss, per_anchor_stats = 0.0, []
        for index, (anchor_view, anchors, positives) in enumerate(selections):
            part, stats = self._anchor_loss(
                anchors, anchor_view, positives, bank, shared_bank, shared_mask, bank_ids, view_ids is None,
                normalizer, gathered, offset, world, update_generator=index == 0, return_stats=return_stats,
            )  # fmt: skip
            loss = loss + part
            per_anchor_stats.append(stats)
        if not return_stats:
            return loss
        if len(per_anchor_stats) == 1:
            return loss, per_anchor_stats[0]
        stats = {k: torch.stack([s[k] for s in per_anchor_stats if k in s]).float().mean() for k in per_anchor_stats[0]}
        stats["anchor_not_first_view"] = torch.zeros((), device=views.device)  # every view anchors: no choice made
        return loss, stats

    def _anchor_choices(self, views: Tensor, view_mask: Tensor, use_dynamic_anchor: bool) -> list[Tensor]:
        """3.1: the anchor view of each sample ``[B]``, once (dynamic or view 0) or every view in turn."""
        if self.anchor_mode == "every_view":
            batch, num_views, _ = views.shape
            return [torch.full((batch,), v, dtype=torch.long, device=views.device) for v in range(num_views)]
        return [select_anchor_views(views, view_mask, use_dynamic_anchor)]

    def _anchor_loss(
        self,
        anchors: Tensor,
        anchor_view: Tensor,
        positives: _Positives,
        bank: _Bank,
        shared_bank: Tensor,
        shared_mask: Tensor,
        bank_ids: Tensor | None,
        by_content: bool,
        normalizer: Tensor,
        gathered: Callable,
        offset: int,
        world_size: int,
        update_generator: bool,
        return_stats: bool,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """3.4 duplicates, 3.3 generated negatives, 3.4 screening and section 4 for one anchor per sample; the
        summed per-anchor losses are divided by ``normalizer`` (every anchor of the batch)."""
        num_views = bank.views.shape[1]
        collapsed: Tensor | None = None
        if bank_ids is not None:
            anchor_flat = bank.rows * num_views + anchor_view
            shared_mask, collapsed = mask_duplicate_negatives(
                shared_mask, bank_ids, anchor_flat, positives, by_content=by_content
            )
        # 3.3 generated hard negatives (decided on detached inputs; identical on every process)
        generated = generated_mask = None
        generator_stats: dict[str, Tensor] = {}
        generator = self.generator_for(anchors.shape[-1])
        if generator is not None:
            update = update_generator and self.training and torch.is_grad_enabled()
            generated, generated_mask, generator_stats = generated_negatives(
                generator, anchors, positives, gathered, offset, world_size, update
            )
        self._warn_if_starved(shared_mask, generated_mask, positives.valid, collapsed)

        # 3.4 screening + section 4: the multi-positive InfoNCE over what is kept
        loss, stats = infonce_unchecked(
            anchors, positives.embeddings, positives.valid, shared_bank, shared_mask, generated, generated_mask,
            self.temperature, self.screening_mass, self.min_negatives, self.screening, normalizer,
            with_stats=return_stats, screening_weight=self.screening_weight,
        )  # fmt: skip
        if not return_stats:
            return loss, {}
        stats["anchor_not_first_view"] = (anchor_view != 0).float().mean()
        stats.update(positives.stats)
        stats["generated_negatives_per_anchor"] = (
            generated_mask.float().sum(1).mean()
            if generated_mask is not None
            else torch.zeros((), device=anchors.device)
        )
        if "anchor_negative_weight_fraction" in stats:
            stats["generated_weight_fraction"] = stats.pop("anchor_negative_weight_fraction")
        stats.update(generator_stats)
        return loss, stats

    def _warn_if_starved(
        self, shared_mask: Tensor, generated_mask: Tensor | None, positive_valid: Tensor, collapsed: Tensor | None
    ) -> None:
        """Warn (once per reason) when anchors have no candidate negative, or only collapsed ones."""
        if collapsed is not None and "collapsed" not in self._warned and bool(collapsed.any()):
            self._warned.add("collapsed")
            warnings.warn(
                f"SPACL: for {int(collapsed.sum())} of {len(collapsed)} anchors every candidate negative has exactly "
                "the anchor's (or a positive's) embedding: the embeddings look collapsed. They are kept as negatives "
                "so the loss shows it. Pass content ids (view_ids) if these are real duplicate inputs.",
                stacklevel=6,
            )
        if "starved" in self._warned:
            return
        has_negative = shared_mask.any(dim=1)
        if generated_mask is not None:
            has_negative |= generated_mask.any(dim=1)
        starved = positive_valid.any(dim=1) & ~has_negative
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

    @staticmethod
    def _bank_ids(
        shared_bank: Tensor,
        view_ids: Tensor | None,
        negative_ids: Tensor | None,
        negatives: Tensor | None,
        extra_negatives: Tensor | None,
        gathered,
    ) -> Tensor:
        """One id per bank row; equal ids mean the same content."""
        if view_ids is None:
            # no content ids given: rows with identical embeddings are the same content
            return content_hash(shared_bank)
        parts = [gathered(view_ids.to(torch.long)).reshape(-1)]
        num_extra = 0 if extra_negatives is None else extra_negatives.shape[0]
        num_negative_rows = shared_bank.shape[0] - parts[0].numel() - num_extra
        # rows without a content id get ids below every user id, so they never equal another row
        fresh = torch.iinfo(torch.long).min + torch.arange(num_negative_rows + num_extra, device=shared_bank.device)
        if negatives is not None:
            parts.append(
                gathered(negative_ids.to(torch.long)).reshape(-1)
                if negative_ids is not None
                else fresh[:num_negative_rows]
            )
        parts.append(fresh[num_negative_rows:])
        return torch.cat(parts)
