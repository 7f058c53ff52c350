"""PerClassBatchSampler: every batch holds distinct classes with exactly `per_class` samples each; epochs differ;
it plugs into SentenceTransformerTrainer (batch_sampler=...) and SPACLTrainer (spacl_samples_per_label)."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch

from spacl_hf.common.samplers import PerClassBatchSampler, per_class_batch_sampler


def uneven_labels(num_classes: int = 12, seed: int = 0) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(3, 20, (num_classes,), generator=generator).tolist()
    labels = [label for label, size in enumerate(sizes) for _ in range(size)]
    order = torch.randperm(len(labels), generator=generator).tolist()
    return [labels[i] for i in order]


@pytest.mark.parametrize("per_class, batch_size", [(2, 8), (3, 12), (4, 16)])
def test_batches_hold_distinct_classes_with_per_class_samples_each(per_class, batch_size):
    labels = uneven_labels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class smaller than per_class is left out with a warning (tested below)
        sampler = PerClassBatchSampler(labels, batch_size, per_class, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    used = [i for batch in batches for i in batch]
    for batch in batches:
        counts = Counter(labels[i] for i in batch)
        assert len(batch) == batch_size
        assert set(counts.values()) == {per_class} and len(counts) == batch_size // per_class
    # every whole chunk of every class is used: each class with per_class samples or more shows all but its
    # remainder (len % per_class) each epoch; only the fillers of the last batches repeat samples
    distinct_per_class = Counter(labels[i] for i in set(used))
    for label, count in Counter(labels).items():
        if count >= per_class:
            assert distinct_per_class[label] >= count // per_class * per_class, label
    repeats = len(used) - len(set(used))
    assert repeats < len(used) // 4


def test_deterministic_per_seed_and_epoch_and_different_across_epochs():
    labels = uneven_labels()
    a, b = PerClassBatchSampler(labels, 8, 2, seed=3), PerClassBatchSampler(labels, 8, 2, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(PerClassBatchSampler(labels, 8, 2, seed=4)) != first


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="`per_class`"):
        PerClassBatchSampler([0, 0, 1, 1], 4, 1)
    with pytest.raises(ValueError, match="multiple of `per_class`"):
        PerClassBatchSampler([0, 0, 1, 1], 5, 2)
    with pytest.raises(ValueError, match="one class"):
        PerClassBatchSampler([0, 0, 1, 1], 2, 2)
    with pytest.raises(ValueError, match="integers"):
        PerClassBatchSampler(["a", "a", "b", "b"], 4, 2)
    with pytest.raises(ValueError, match="Only 1 classes"), pytest.warns(UserWarning, match="fewer"):
        PerClassBatchSampler([0, 0, 1], 4, 2)
    with pytest.warns(UserWarning, match="1 classes have fewer"):
        PerClassBatchSampler([0, 0, 1, 1, 2], 4, 2)


def test_sentence_transformers_trainer_uses_it(tiny_st_model, tmp_path):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from spacl_hf import SPACLLoss

    labels = [i % 4 for i in range(32)]
    dataset = Dataset.from_dict({"text": [f"query {i} of intent {i % 4}" for i in range(32)], "label": labels})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, report_to="none", use_cpu=True,
        batch_sampler=per_class_batch_sampler(4), save_strategy="no",
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(model=tiny_st_model, args=args, train_dataset=dataset,
                                         loss=SPACLLoss(tiny_st_model, adversarial_negatives=False))  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    assert sorted(Counter(batch["label"].tolist()).values()) == [4, 4]
    trainer.train()
    assert trainer.state.global_step == 2


def test_spacl_trainer_uses_it(tiny_encoder_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoModel, AutoTokenizer

    from spacl_hf import SPACLDataCollator, SPACLTrainer, SPACLTrainingArguments

    dataset = Dataset.from_dict({"text": [f"query {i} of intent {i % 4}" for i in range(32)],
                                 "label": [i % 4 for i in range(32)]})  # fmt: skip
    args = SPACLTrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, report_to="none", use_cpu=True,
        save_strategy="no", spacl_samples_per_label=4, spacl_adversarial_negatives=False,
    )  # fmt: skip
    collator = SPACLDataCollator(AutoTokenizer.from_pretrained(tiny_encoder_dir))
    trainer = SPACLTrainer(model=AutoModel.from_pretrained(tiny_encoder_dir), args=args, train_dataset=dataset,
                           data_collator=collator)  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    assert sorted(Counter(batch["labels"].tolist()).values()) == [4, 4]
    trainer.train()
    assert trainer.state.global_step == 2
    with pytest.raises(ValueError, match="multiple of `spacl_samples_per_label`"):
        SPACLTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=6, spacl_samples_per_label=4)
