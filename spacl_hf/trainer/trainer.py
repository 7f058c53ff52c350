"""``SPACLTrainer``: a ``transformers.Trainer`` that trains a plain Hugging Face encoder with SPACL."""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from spacl_hf.common.pooling import embedding_dim_of, pool_embeddings
from spacl_hf.common.samplers import LABEL_COLUMNS, PerClassBatchSampler
from spacl_hf.common.training_logs import will_log_step
from spacl_hf.core import ColumnLayout, RunningStatistics, SPACLCriterion, spacl_from_columns

from .arguments import SPACLTrainingArguments

GENERATOR_STATE_NAME = "spacl_generator.pt"


class SPACLTrainer(Trainer):
    """Train any ``AutoModel`` encoder (text or vision) with SPACL over in-batch embeddings.

    Only :meth:`compute_loss` is overridden (plus a thin :meth:`train` that restores the generator on resume,
    :meth:`log` that adds SPACL's statistics and :meth:`get_train_dataloader` for ``spacl_samples_per_label``): the batch from :class:`SPACLDataCollator` is embedded in one
    forward pass, pooled (``args.spacl_pooling``), laid out as views, and scored by
    :class:`~spacl_hf.core.SPACLCriterion`. For a projection head, wrap the encoder in :class:`EmbeddingModel`
    (the head is then part of the model: trained, checkpointed and synchronised across processes with it).
    Under ``accelerate launch`` / ``torchrun`` the candidates of every process are gathered with gradients.
    The adversarial generator's state is saved in every checkpoint and restored by
    ``train(resume_from_checkpoint=...)``. SPACL's statistics are added to the training logs (``spacl/...``); they
    are computed on the logged steps only (the logged step's values).

    Args:
        model: an encoder loaded with ``AutoModel``, or an :class:`EmbeddingModel`.
        args: :class:`SPACLTrainingArguments`.
        **kwargs: everything else ``transformers.Trainer`` takes (datasets, data_collator, callbacks, ...).

    Raises:
        ValueError: when ``args`` is not a :class:`SPACLTrainingArguments`, on an invalid SPACL setting, and in
            training on a batch without ``spacl_layout`` (use :class:`SPACLDataCollator`).

    Examples:
        >>> trainer = SPACLTrainer(model=AutoModel.from_pretrained(path), args=SPACLTrainingArguments("out"),
        ...                        train_dataset=pairs, data_collator=SPACLDataCollator(tokenizer))  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: SPACLTrainingArguments | None = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            args = SPACLTrainingArguments(output_dir="spacl_trainer_output")
        if not isinstance(args, SPACLTrainingArguments):
            raise ValueError(f"`args` must be SPACLTrainingArguments, got {type(args).__name__}.")
        if kwargs.get("data_collator") is None:
            raise ValueError(
                "SPACLTrainer needs a collator that lays out SPACL views: `data_collator=SPACLDataCollator(tokenizer)` "
                "for text or `spacl_hf.vision.ImageViewCollator(ViewPipeline(...))` for images."
            )
        super().__init__(model=model, args=args, **kwargs)
        # SPACL averages over anchors itself and ignores `num_items_in_batch`; with False the Trainer divides the
        # loss by the gradient-accumulation steps, which is the right scaling for a per-micro-batch mean.
        self.model_accepts_loss_kwargs = False
        self.criterion: SPACLCriterion = args.build_criterion(embedding_dim_of(self.model)).to(self.args.device)
        self.statistics = RunningStatistics()

    def get_train_dataloader(self) -> DataLoader:
        """The Trainer's loader, or per-label batches (:class:`~spacl_hf.common.samplers.PerClassBatchSampler`)
        when ``args.spacl_samples_per_label`` is set; each process then draws its own batches."""
        per_label = self.args.spacl_samples_per_label
        if per_label is None:
            return super().get_train_dataloader()
        columns = getattr(self.train_dataset, "column_names", None) or []
        column = next((c for c in LABEL_COLUMNS if c in columns), None)
        if column is None:
            raise ValueError(f"`spacl_samples_per_label` needs a 'label' or 'labels' column; the data has {columns}.")
        sampler = PerClassBatchSampler(list(self.train_dataset[column]), self._train_batch_size, per_label,
                                       seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)  # fmt: skip
        loader = DataLoader(
            self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory,
        )  # fmt: skip
        return self.accelerator.prepare(loader)

    # --- model pieces ------------------------------------------------------------------------------------------
    def embed(self, model: nn.Module, inputs: dict[str, Any]) -> Tensor:
        """Pooled embeddings ``[N, D]`` of every row of a collated batch."""
        model_inputs = {k: v for k, v in inputs.items() if not k.startswith("spacl_") and k != "labels"}
        outputs = model(**model_inputs)
        return pool_embeddings(outputs, model_inputs.get("attention_mask"), self.args.spacl_pooling)

    # --- the loss ----------------------------------------------------------------------------------------------
    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        layout: ColumnLayout | None = inputs.get("spacl_layout")
        if not isinstance(layout, ColumnLayout):
            raise ValueError(
                "The batch has no `spacl_layout`: use SPACLDataCollator (or a collator that lays out SPACL views)."
            )
        embeddings = self.embed(model, inputs)
        columns = embeddings.view(layout.num_columns, -1, embeddings.shape[-1])  # column-major
        content_ids = inputs.get("spacl_content_ids") if self.criterion.mask_duplicates else None
        # statistics cost ops and device reads: only on the steps that will be logged
        record = model.training and torch.is_grad_enabled() and will_log_step(self.args, self.state)
        loss, stats = spacl_from_columns(
            self.criterion,
            columns,
            layout,
            labels=inputs.get("labels"),
            content_ids=content_ids,
            dynamic_anchor=self.args.spacl_dynamic_anchor,  # None: on for labels / images, off for columns
            return_stats=record,
        )
        if record:
            self.statistics.add(stats)
        if return_outputs:
            return loss, {"embeddings": columns[0].detach()}
        return loss

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor | Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """The SPACL loss of an evaluation batch, so ``evaluate()`` reports ``eval_loss`` (and
        ``metric_for_best_model="loss"`` works). No gradient: the generator is not updated and no training
        statistic is recorded."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs = {**logs, **{f"spacl/{k}": round(v, 4) for k, v in self.statistics.pop().items()}}
        super().log(logs, start_time)

    # --- the generator's state in checkpoints ------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """``Trainer.train``, restoring the adversarial generator's state when resuming from a checkpoint."""
        if resume_from_checkpoint and self.criterion.generator is not None:
            folder = resume_from_checkpoint
            if folder is True:
                folder = get_last_checkpoint(self.args.output_dir)
                if folder is None:
                    raise ValueError(f"No checkpoint found in output_dir {self.args.output_dir!r} to resume from.")
            path = os.path.join(folder, GENERATOR_STATE_NAME)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{path} is missing, so the adversarial generator cannot resume: the save was interrupted before "
                    "the generator was written (it is written with the optimizer and RNG state, before trainer_state.json), "
                    "the checkpoint was saved with save_only_model=True, or it was not written by SPACLTrainer with a "
                    "generator. Resume from an earlier complete checkpoint, or set "
                    "spacl_adversarial_negatives=False."
                )
            self._load_generator_state(path)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _load_generator_state(self, path: str) -> None:
        """Restore the generator from ``path`` (tensors and plain containers only: ``weights_only=True``)."""
        try:
            state = torch.load(path, map_location=self.args.device, weights_only=True)
            generator_state = state["generator"]
        except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"{path} is not a valid SPACL generator checkpoint (corrupted, truncated, or not written by "
                f"SPACLTrainer; only tensors and plain containers are loaded): {type(error).__name__}: {error}"
            ) from None
        try:
            self.criterion.generator.load_state_dict(generator_state)  # applies a changed lr, with a warning
        except (RuntimeError, KeyError, ValueError) as error:  # e.g. another embedding size or hidden width
            raise ValueError(
                f"{path} holds a generator that does not fit this run's (other embedding size or generator "
                f"settings): {type(error).__name__}: {str(error)[:300]}"
            ) from None

    def _save_rng_state(self, output_dir: str | None) -> None:
        """The Trainer's RNG state, then the generator: both inside ``_save_checkpoint``, before the Trainer deletes
        older checkpoints (``save_total_limit``), so an interrupted save never leaves only an incomplete one."""
        super()._save_rng_state(output_dir)
        extra = self.extra_state()
        if output_dir is None or not extra or not self.is_world_process_zero():  # identical on every process
            return
        handle, temporary = tempfile.mkstemp(dir=output_dir, prefix=".spacl_generator.", suffix=".tmp")
        os.close(handle)  # atomically: a temporary file, then a rename
        torch.save(extra, temporary)
        os.replace(temporary, os.path.join(output_dir, GENERATOR_STATE_NAME))

    def extra_state(self) -> dict[str, Any]:
        """What a checkpoint needs beyond the Trainer's own files: the adversarial generator."""
        return {} if self.criterion.generator is None else {"generator": self.criterion.generator.state_dict()}
