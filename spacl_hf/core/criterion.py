"""``SPACLCriterion``: the SPACL configuration as an ``nn.Module``, from a batch of views to the loss."""

from __future__ import annotations

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
    check_positive_float,
    check_tensor,
)
from .citation import SPACL_CITATION
from .dist import Gather, TorchDistributedGather
from .generator import AdversarialNegativeGenerator
from .loss import infonce_unchecked
from .positives import farthest_point_unchecked, ordered_select

CANDIDATE_VIEWS = ("all", "columns")


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


class SPACLCriterion(nn.Module):
    """SnaPhArd Contrast Learning on a batch of views: tensors in, loss out.

    Every sample owns a pool of ``V`` views (augmentations; for text the anchor, positive and extra positive
    columns, or dropout re-encodings). Per sample the criterion

    1. picks the **dynamic anchor**, the view farthest on average from the others (``dynamic_anchor``);
    2. picks ``num_positives`` **hard positives** by farthest-point selection from the other views, and from
       the views of same-label samples when ``labels`` are given (``farthest_point``);
    3. adds **generated hard negatives** from an :class:`AdversarialNegativeGenerator` (``generator``);
    4. **screens** the candidate negatives (views of other samples, negative columns, ``extra_negatives``,
       generated ones; minus same-label samples and duplicates of the anchor's positives) down to the shortest
       most-similar set holding ``screening_mass`` of their softmax weight (``screening``);

    and returns the multi-positive InfoNCE of :func:`spacl_loss`. With two views, one positive, and anchor,
    generator and screening off, it equals one-directional NT-Xent (``candidate_views="all"``) or
    MultipleNegativesRankingLoss with ``scale = 1 / temperature`` (``candidate_views="columns"``).

    Args:
        temperature: logits are ``cos / temperature`` (0.05 for text, 0.1 for images are good starts).
        num_positives: hard positives per anchor, ``lambda_P`` (paper: 2; accuracy drops past 4).
        screening_mass: share of the negatives' softmax weight that screening keeps, ``lambda_Q`` (paper: 0.95).
        min_negatives: screening keeps at least this many negatives per anchor.
        dynamic_anchor: use the hardest view as anchor; ``False`` uses view 0 (the first valid view).
        farthest_point: farthest-point positives; ``False`` takes candidates in their given order.
        screening: relative-threshold screening; ``False`` keeps every candidate negative.
        generator: adversarial negative generator, or ``None`` for no generated negatives.
        candidate_views: which views of other samples are negatives: ``"all"`` (SimCLR convention) or
            ``"columns"`` (all but view 0, the anchor column: MultipleNegativesRankingLoss convention).
        label_positives: with ``labels``, same-label samples' views are positive candidates (SupCon style);
            they are never negatives either way.
        mask_duplicates: candidates identical to the anchor or one of its positives are not negatives
            (by ``view_ids`` / ``negative_ids`` when given, else by exact equality of the embeddings).
        gather_across_devices: gather candidates from every process, with gradients, under
            ``torch.distributed``.

    Shape:
        - views: ``[B, V, D]``; view_mask: ``[B, V]``; labels: ``[B]``
        - negatives: ``[B, N, D]``; negative_mask: ``[B, N]``; view_ids: ``[B, V]``; negative_ids: ``[B, N]``
        - extra_negatives: ``[M, D]``
        - output: scalar loss, or ``(loss, stats)`` with ``return_stats=True``

    Raises:
        ValueError: on an invalid setting (the message names it) or malformed inputs.

    Example:
        >>> criterion = SPACLCriterion(temperature=0.1)
        >>> views = torch.randn(16, 4, 32, requires_grad=True)
        >>> loss = criterion(views)
        >>> loss.backward()

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
        candidate_views: str = "all",
        label_positives: bool = True,
        mask_duplicates: bool = True,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_positive_float("temperature", temperature)
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
        self.candidate_views = check_choice("candidate_views", candidate_views, CANDIDATE_VIEWS)
        self.label_positives = check_bool("label_positives", label_positives)
        self.mask_duplicates = check_bool("mask_duplicates", mask_duplicates)
        self.gather_across_devices = check_bool("gather_across_devices", gather_across_devices)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "num_positives": self.num_positives,
            "screening_mass": self.screening_mass,
            "min_negatives": self.min_negatives,
            "dynamic_anchor": self.dynamic_anchor,
            "farthest_point": self.farthest_point,
            "screening": self.screening,
            "generator": None if self.generator is None else self.generator.get_config_dict(),
            "candidate_views": self.candidate_views,
            "label_positives": self.label_positives,
            "mask_duplicates": self.mask_duplicates,
            "gather_across_devices": self.gather_across_devices,
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
        elif num_views < 2:
            raise ValueError(
                "SPACL needs positives: pass `views` with at least 2 views per sample ([B, V>=2, D]) "
                f"or `labels` so that same-label samples are positives; got views {tuple(views.shape)} and no labels."
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
        batch, num_views, dim = views.shape
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
        rows = torch.arange(batch, device=device)
        global_rows = rows + offset

        # 1. anchors (selection carries no gradient; the chosen embeddings do)
        if use_dynamic_anchor:
            anchor_view = hardest_view_unchecked(views, view_mask)
        else:
            anchor_view = view_mask.to(torch.uint8).argmax(dim=1)  # first valid view
        # pick by one-hot bmm: its backward is a bmm, far cheaper than the index_put of advanced indexing
        anchors = _pick(views, anchor_view[:, None])[:, 0]

        # the candidate bank: every view of every sample of every process, flattened sample-major
        all_views = gathered(views)
        all_view_mask = gathered(view_mask)
        total = all_views.shape[0]
        bank = all_views.reshape(total * num_views, dim)
        bank_valid = all_view_mask.reshape(-1)
        owner = torch.arange(total, device=device).repeat_interleave(num_views)
        column = torch.arange(num_views, device=device).repeat(total)
        anchor_flat = global_rows * num_views + anchor_view
        if labels is not None:
            all_labels = gathered(labels.to(torch.long))
            same_label = labels.to(torch.long)[:, None] == all_labels[owner][None, :]

        # 2. hard positives
        if labels is not None and self.label_positives:
            candidate = same_label & bank_valid[None, :]
            candidate[rows, anchor_flat] = False
            if self.farthest_point:
                pos_index, pos_valid = farthest_point_unchecked(anchors, bank, self.num_positives, candidate)
            else:  # own views first, then same-label samples in batch order
                flat = torch.arange(bank.shape[0], device=device)
                priority = flat[None, :] + bank.shape[0] * (owner[None, :] != global_rows[:, None])
                pos_index, pos_valid = ordered_select(candidate, self.num_positives, priority)
            positives = bank[pos_index]
            pos_flat = pos_index
        else:
            candidate = view_mask.clone()
            candidate[rows, anchor_view] = False
            if self.farthest_point:
                pos_index, pos_valid = farthest_point_unchecked(anchors, views, self.num_positives, candidate)
            else:
                pos_index, pos_valid = ordered_select(candidate, self.num_positives)
            positives = _pick(views, pos_index)
            pos_flat = global_rows[:, None] * num_views + pos_index

        # 4a. candidate negatives: other samples' views (and negative columns, extra negatives)
        negative_of = bank_valid[None, :] & (owner[None, :] != global_rows[:, None])
        if labels is not None:
            negative_of &= ~same_label
        if candidate_view_mask is not None:
            negative_of &= candidate_view_mask[column][None, :]
        elif self.candidate_views == "columns":
            negative_of &= (column != 0)[None, :]
        shared, shared_mask = [bank], [negative_of]
        if negatives is not None:
            all_negatives = gathered(F.normalize(negatives.to(views.dtype), dim=-1))
            shared.append(all_negatives.reshape(-1, dim))
            column_valid = torch.ones(all_negatives.shape[:2], dtype=torch.bool, device=device)
            if negative_mask is not None:
                column_valid = gathered(negative_mask)
            shared_mask.append(column_valid.reshape(1, -1).expand(batch, -1))
        if extra_negatives is not None:
            shared.append(F.normalize(extra_negatives.to(views.dtype), dim=-1))
            shared_mask.append(torch.ones(batch, extra_negatives.shape[0], dtype=torch.bool, device=device))
        # no copy of the bank when there is nothing to append (the common case)
        shared_bank = shared[0] if len(shared) == 1 else torch.cat(shared)
        shared_mask = shared_mask[0] if len(shared_mask) == 1 else torch.cat(shared_mask, dim=1)
        if self.mask_duplicates:
            bank_ids = self._bank_ids(shared_bank, view_ids, negative_ids, negatives, extra_negatives, gathered)
            if bool(bank_ids.unique().numel() < bank_ids.numel()):  # nothing to mask in a duplicate-free bank
                keys = torch.cat([anchor_flat[:, None], pos_flat], dim=1)
                key_valid = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=device), pos_valid], dim=1)
                key_ids = bank_ids[keys]
                key_ids = torch.where(key_valid, key_ids, key_ids[:, :1])  # a missing positive repeats the anchor
                for j in range(keys.shape[1]):  # 1 + num_positives columns, each vectorised over the batch
                    shared_mask &= bank_ids[None, :] != key_ids[:, j : j + 1]

        # 3. generated hard negatives (decided on detached inputs; identical on every process)
        generated = generated_mask = None
        generator_stats: dict[str, float] = {}
        if self.generator is not None:
            source = all_views[:, 0].detach()
            fake = self.generator.generate(source)[offset : offset + batch]
            if fake.shape[1] > 0:
                fake_cos = torch.einsum("bd,bgd->bg", anchors.detach(), fake)
                pos_cos = torch.einsum("bd,bpd->bp", anchors.detach(), positives.detach())
                weakest_positive = pos_cos.masked_fill(~pos_valid, float("inf")).min(dim=1).values
                # false-negative guard: nothing generated may be closer to the anchor than its farthest positive
                generated, generated_mask = fake, fake_cos <= weakest_positive[:, None]
            if self.training and torch.is_grad_enabled():
                real_all = gathered(positives.detach())
                real_valid = gathered(pos_valid)
                if bool(real_valid.any()):
                    generator_stats = self.generator.update(real_all[real_valid], source)

        # 4b + loss: screening and the multi-positive InfoNCE
        has_positive = pos_valid.any(dim=1)
        normalizer = None
        if world > 1:  # average over the global batch, so W processes x B equal 1 process x W*B
            normalizer = gathered(has_positive).sum().clamp(min=1) / world
        loss, stats = infonce_unchecked(
            anchors, positives, pos_valid, shared_bank, shared_mask, generated, generated_mask,
            self.temperature, self.screening_mass, self.min_negatives, self.screening, normalizer,
            with_stats=return_stats,
        )  # fmt: skip
        if not return_stats:
            return loss
        stats["generated_negatives_per_anchor"] = (
            generated_mask.float().sum(1).mean() if generated_mask is not None else torch.zeros((), device=device)
        )
        stats["anchor_not_first_view"] = (anchor_view != 0).float().mean()
        for name, value in generator_stats.items():
            stats[name] = torch.tensor(value)
        return loss, stats

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
