"""``SPACLTrainingArguments``: ``TrainingArguments`` plus every SPACL setting, for HfArgumentParser and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from spacl_hf.core import AdversarialNegativeGenerator, SPACLCriterion
from spacl_hf.core.checks import check_bool, check_choice, check_int
from spacl_hf.core.criterion import ANCHOR_MODES, CANDIDATE_VIEWS, POSITIVE_POOLS
from spacl_hf.core.screening import SCREENING_WEIGHTS

POOLING_CHOICES = ("mean", "cls", "pooler")
# core argument names whose command-line name differs (after the `spacl_` prefix)
_CORE_TO_ARGUMENT = {"lr": "generator_lr", "warmup_steps": "generator_warmup_steps", "seed": "generator_seed"}


@dataclass
class SPACLTrainingArguments(TrainingArguments):
    """Training arguments for :class:`SPACLTrainer`. Every SPACL field starts with ``spacl_`` on the command line.

    Scaling rule under data parallelism: each process embeds ``per_device_train_batch_size`` samples, and with
    ``spacl_gather_across_devices`` every anchor sees the candidates of all processes, so SPACL screens among
    ``num_processes x per_device_train_batch_size`` samples, exactly as one process with that batch size would.
    Gradient accumulation adds no negatives: each micro-batch is contrasted on its own. Keep ``dataloader_drop_last``
    on so that every process contributes a full batch to the gather.

    Fields:
        spacl_*: the :class:`~spacl_hf.core.SPACLCriterion` settings (temperature, num_positives, screening_mass,
            screening_weight, min_negatives, dynamic_anchor, farthest_point, screening, candidate_views,
            positive_pool, mask_duplicates, gather_across_devices, anchor_mode), the generator's (adversarial_negatives,
            num_generated, generator_warmup_steps, generator_lr, generator_seed, generator_steps) and
            ``spacl_pooling`` (``mean``, ``cls`` or ``pooler``); every
            ``transformers.TrainingArguments`` field as well. ``--help`` of a script using HfArgumentParser lists
            them with their help texts.

    Raises:
        ValueError: on an invalid SPACL setting (named in the message), when the arguments are created.

    Examples:
        >>> args = SPACLTrainingArguments("outputs/run", spacl_temperature=0.1, report_to="none")  # doctest: +SKIP
        >>> args.build_criterion(embedding_dim=384).temperature  # doctest: +SKIP
        0.1
    """

    spacl_temperature: float = field(
        default=0.05, metadata={"help": "Logits are cos / temperature (0.05 text, 0.1 images)."}
    )
    spacl_num_positives: int = field(default=2, metadata={"help": "Hard positives per anchor (lambda_P, paper: 2)."})
    spacl_screening_mass: float = field(
        default=0.95,
        metadata={"help": "Share of the negatives' softmax weight kept by screening (lambda_Q, paper: 0.95)."},
    )
    spacl_screening_weight: str = field(
        default="softmax",
        metadata={
            "help": "Weight screening sums: 'softmax' (exp(cos / tau), gentle: moves each loss by at most "
            "-ln(screening_mass)) or 'similarity' (raw cosines, the paper's formula: aggressive).",
            "choices": list(SCREENING_WEIGHTS),
        },
    )
    spacl_min_negatives: int = field(default=1, metadata={"help": "Screening keeps at least this many negatives."})
    spacl_dynamic_anchor: bool | None = field(
        default=None,
        metadata={
            "help": "Use each sample's hardest view as anchor. Default: on for labelled data and images (every view "
            "is the same input), off for text columns. Leave off for asymmetric pairs (query -> document)."
        },
    )
    spacl_farthest_point: bool = field(default=True, metadata={"help": "Farthest-point selection of hard positives."})
    spacl_screening: bool = field(default=True, metadata={"help": "Relative-threshold screening of trivial negatives."})
    spacl_adversarial_negatives: bool = field(default=True, metadata={"help": "Add GAN-generated hard negatives."})
    spacl_num_generated: int = field(default=1, metadata={"help": "Generated negatives per anchor."})
    spacl_generator_warmup_steps: int = field(
        default=100, metadata={"help": "Steps before generated negatives are used."}
    )
    spacl_generator_lr: float = field(
        default=1e-4, metadata={"help": "Adam learning rate of the generator and discriminator."}
    )
    spacl_generator_seed: int = field(
        default=0, metadata={"help": "Seed of the generator (identical on every process)."}
    )
    spacl_generator_steps: int = field(
        default=1, metadata={"help": "Generator and discriminator updates per training step."}
    )
    spacl_candidate_views: str = field(
        default="auto",
        metadata={
            "help": "Which views of other samples are negatives: 'columns' (positive and negative columns, the "
            "MultipleNegativesRankingLoss convention), 'all' (every view, SimCLR) or 'auto' (the default: 'all' "
            "for labelled data and images, 'columns' for text columns).",
            "choices": list(CANDIDATE_VIEWS),
        },
    )
    spacl_positive_pool: str = field(
        default="labels",
        metadata={
            "help": "Where hard positives come from with labels: 'labels' (own and same-label samples' views alike), "
            "'views' (own views only, the paper) or 'views+labels' (own views first, then same-label samples).",
            "choices": list(POSITIVE_POOLS),
        },
    )
    spacl_mask_duplicates: bool = field(
        default=True, metadata={"help": "Identical inputs are never each other's negatives."}
    )
    spacl_anchor_mode: str = field(
        default="one",
        metadata={
            "help": "'one' anchor per sample (the paper: the dynamic anchor or view 0) or 'every_view' (ours: every "
            "view is an anchor in turn, as SimCLR and SupCon; the dynamic anchor then has nothing to choose).",
            "choices": list(ANCHOR_MODES),
        },
    )
    spacl_gather_across_devices: bool = field(
        default=True, metadata={"help": "Gather candidates from every process, with gradients (no-op on one process)."}
    )
    spacl_pooling: str = field(
        default="mean",
        metadata={
            "help": "Sentence/image embedding from the encoder: 'mean' (attention-masked mean of the last hidden "
            "state), 'cls' (first token) or 'pooler' (the model's pooled output, e.g. vision backbones).",
            "choices": list(POOLING_CHOICES),
        },
    )
    spacl_samples_per_label: int | None = field(
        default=None,
        metadata={
            "help": "Labelled data: batches of batch_size / k labels with k samples each (PerClassBatchSampler), so "
            "the dynamic anchor and farthest-point selection have choices. None: the Trainer's random batches."
        },
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep the dataset's columns: SPACLDataCollator reads them (must stay False)."}
    )
    dataloader_drop_last: bool = field(
        default=True, metadata={"help": "Full batches on every process, so the gathered candidate set is complete."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("spacl_pooling", self.spacl_pooling, POOLING_CHOICES)
        if self.spacl_dynamic_anchor is not None:
            check_bool("spacl_dynamic_anchor", self.spacl_dynamic_anchor)
        check_bool("spacl_adversarial_negatives", self.spacl_adversarial_negatives)
        check_int("spacl_generator_warmup_steps", self.spacl_generator_warmup_steps, 0)
        if self.spacl_samples_per_label is not None:
            check_int("spacl_samples_per_label", self.spacl_samples_per_label, 2)
            if self.per_device_train_batch_size % self.spacl_samples_per_label:
                raise ValueError(
                    f"`per_device_train_batch_size`={self.per_device_train_batch_size} must be a multiple of "
                    f"`spacl_samples_per_label`={self.spacl_samples_per_label}."
                )
        if self.remove_unused_columns:
            raise ValueError(
                "`remove_unused_columns` must be False for SPACLTrainer: its collator reads the text columns."
            )
        try:  # the core validates; the message then names the command-line argument
            self.build_criterion(embedding_dim=8)
        except ValueError as error:
            message = str(error)
            if message.startswith("`"):
                core_name = message[1 : message.index("`", 1)]
                message = f"`spacl_{_CORE_TO_ARGUMENT.get(core_name, core_name)}`" + message[len(core_name) + 2 :]
            raise ValueError(message) from None

    def criterion_kwargs(self) -> dict[str, Any]:
        return dict(
            temperature=self.spacl_temperature,
            num_positives=self.spacl_num_positives,
            screening_mass=self.spacl_screening_mass,
            screening_weight=self.spacl_screening_weight,
            min_negatives=self.spacl_min_negatives,
            dynamic_anchor=bool(self.spacl_dynamic_anchor),  # per batch, see SPACLTrainer.compute_loss
            farthest_point=self.spacl_farthest_point,
            screening=self.spacl_screening,
            candidate_views=self.spacl_candidate_views,
            positive_pool=self.spacl_positive_pool,
            mask_duplicates=self.spacl_mask_duplicates,
            gather_across_devices=self.spacl_gather_across_devices,
            anchor_mode=self.spacl_anchor_mode,
        )

    def build_criterion(self, embedding_dim: int | None) -> SPACLCriterion:
        """The configured criterion; ``embedding_dim`` sizes the adversarial generator (needed only with it).

        Raises:
            ValueError: on an invalid setting, or no ``embedding_dim`` while adversarial negatives are on.
        """
        generator = None
        if self.spacl_adversarial_negatives:
            if embedding_dim is None:
                raise ValueError(
                    "`spacl_adversarial_negatives` needs the embedding size: wrap the model in "
                    "EmbeddingModel(..., projection_dim=...) or use a model whose config tells its hidden size."
                )
            generator = AdversarialNegativeGenerator(
                embedding_dim,
                num_generated=self.spacl_num_generated,
                lr=self.spacl_generator_lr,
                warmup_steps=self.spacl_generator_warmup_steps,
                seed=self.spacl_generator_seed,
                generator_steps=self.spacl_generator_steps,
            )
        return SPACLCriterion(generator=generator, **self.criterion_kwargs())
