"""SPACL inside sentence-transformers' loss modifiers (MatryoshkaLoss, Matryoshka2dLoss, AdaptiveLayerLoss), the
symmetric `directions`, and the hard-negative mining recipe (issue 16)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sentence_transformers")
from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer  # noqa: E402
from sentence_transformers import SentenceTransformerTrainingArguments  # noqa: E402
from sentence_transformers.sentence_transformer.losses import (  # noqa: E402
    AdaptiveLayerLoss,
    Matryoshka2dLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
)

from spacl_hf import AdversarialNegativeGenerator, CachedSPACLLoss, SPACLCriterion, SPACLLoggingCallback  # noqa: E402
from spacl_hf import SPACLLoss  # noqa: E402

from test_sentence_transformers import SENTENCES  # noqa: E402  (the same sentences)
PAIRS = {"anchor": SENTENCES, "positive": ["indeed " + s for s in SENTENCES]}


def trainer_for(model, loss, tmp_path, dataset=None, steps=2) -> SentenceTransformerTrainer:
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3,
        report_to="none", save_strategy="no", use_cpu=True, seed=0,
    )  # fmt: skip
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset or Dataset.from_dict(PAIRS),
                                      loss=loss)  # fmt: skip


def test_criterion_gives_truncated_embeddings_a_generator_of_their_own():
    criterion = SPACLCriterion(generator=AdversarialNegativeGenerator(32, warmup_steps=0)).train()
    views = F.normalize(torch.randn(8, 2, 32), dim=-1)
    criterion(views)
    criterion(F.normalize(views[..., :16], dim=-1))
    small = criterion.generator_for(16)
    assert small is not criterion.generator and small.embedding_dim == 16
    assert criterion.generator.steps == 1 and small.steps == 1  # each trained on its own size only
    assert small.get_config_dict() == {**criterion.generator.get_config_dict(), "embedding_dim": 16}
    assert "truncated_generators.16.generator.0.weight" in criterion.state_dict()
    with pytest.raises(ValueError, match="exceed the generator's 32"):
        criterion.generator_for(64)


def cached(model):
    return CachedSPACLLoss(model, mini_batch_size=4, generator_warmup_steps=0)


def plain(model):
    return SPACLLoss(model, generator_warmup_steps=0)


COMBINATIONS = {
    "Matryoshka(SPACL)": (plain, lambda model, inner: MatryoshkaLoss(model, inner, [32, 16, 8]), [16, 8]),
    "Matryoshka(CachedSPACL)": (cached, lambda model, inner: MatryoshkaLoss(model, inner, [32, 16, 8]), [16, 8]),
    "Matryoshka2d(SPACL)": (plain, lambda model, inner: Matryoshka2dLoss(model, inner, [32, 8]), [8]),
    "AdaptiveLayer(SPACL)": (plain, lambda model, inner: AdaptiveLayerLoss(model, inner), []),
}


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_spacl_trains_and_saves_inside_loss_modifiers(name, tiny_st_model, tmp_path):
    make_inner, wrap, truncated = COMBINATIONS[name]
    inner = make_inner(tiny_st_model)
    trainer = trainer_for(tiny_st_model, wrap(tiny_st_model, inner), tmp_path)
    SPACLLoggingCallback.attach(trainer, inner)
    before = {k: v.clone() for k, v in tiny_st_model.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in tiny_st_model.state_dict().items())
    # one generator update per training step (AdaptiveLayerLoss's layer passes used to add one each), and each
    # truncated size has its own generator, updated once per step too
    sizes = [inner.generator] + [inner.criterion.generator_for(dim) for dim in truncated]
    if name.startswith("Matryoshka2d"):  # 2DMSE samples one dimension a step: one update a step in all
        assert sum(g.steps for g in sizes) == 2
    else:
        assert [g.steps for g in sizes] == [2] * len(sizes)
    assert sorted(int(k) for k in inner.criterion.truncated_generators) == sorted(truncated)
    tiny_st_model.save(str(tmp_path / "model"))
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"{type(inner).__name__}(temperature=0.05" in card  # SPACL's settings, not only its class name
    if truncated:
        assert '"matryoshka_dims"' in card
    reloaded = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert torch.allclose(reloaded.encode(SENTENCES[:2], convert_to_tensor=True),
                          tiny_st_model.encode(SENTENCES[:2], convert_to_tensor=True), atol=1e-5)  # fmt: skip


def test_symmetric_directions_reduce_to_symmetric_mnrl(tiny_st_model_no_dropout):
    model = tiny_st_model_no_dropout
    spacl = SPACLLoss(model, num_positives=1, farthest_point=False, screening=False, adversarial_negatives=False,
                      directions=("query_to_doc", "doc_to_query"))  # fmt: skip
    mnrl = MultipleNegativesRankingLoss(model, scale=20.0, directions=("query_to_doc", "doc_to_query"),
                                        partition_mode="per_direction")  # fmt: skip
    columns = [SENTENCES[:8], PAIRS["positive"][:8]]
    ours = spacl([model.preprocess(c) for c in columns], None)
    theirs = mnrl([model.preprocess(c) for c in columns], None)
    assert torch.allclose(ours, theirs, atol=1e-6)
    one_way = SPACLLoss(model, num_positives=1, farthest_point=False, screening=False, adversarial_negatives=False)
    assert not torch.allclose(ours, one_way([model.preprocess(c) for c in columns], None), atol=1e-4)


def test_symmetric_directions_with_screening_screen_each_direction(tiny_st_model_no_dropout):
    """With screening on, the symmetric loss is the mean of the two one-way SPACL losses on swapped columns."""
    model = tiny_st_model_no_dropout
    options = dict(num_positives=1, adversarial_negatives=False, screening_mass=0.5)
    symmetric = SPACLLoss(model, directions=("query_to_doc", "doc_to_query"), **options)
    forward = SPACLLoss(model, **options)
    queries, docs = model.preprocess(SENTENCES[:8]), model.preprocess(PAIRS["positive"][:8])
    expected = (forward([queries, docs], None) + forward([docs, queries], None)) / 2
    assert torch.allclose(symmetric([queries, docs], None), expected, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(directions=("doc_to_query",)), "must hold 'query_to_doc'"),
        (dict(directions=("query_to_doc", "query_to_query")), "only names from"),
        (dict(directions="query_to_doc"), "a sequence of names"),
        (dict(directions=("query_to_doc", "doc_to_query"), num_views=2), "needs num_views=1"),
    ],
)
def test_bad_directions_are_named(tiny_st_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SPACLLoss(tiny_st_model, **kwargs)


def test_mined_hard_negatives_train_with_spacl(tiny_st_model, tmp_path):
    """The README's recipe: mine_hard_negatives -> n-tuples (anchor, positive, negative_1..N) -> SPACLLoss."""
    from sentence_transformers.util import mine_hard_negatives

    mined = mine_hard_negatives(Dataset.from_dict(PAIRS), tiny_st_model, num_negatives=2, output_format="n-tuple",
                                verbose=False)  # fmt: skip
    assert mined.column_names == ["anchor", "positive", "negative_1", "negative_2"] and len(mined) > 0
    loss = SPACLLoss(tiny_st_model, generator_warmup_steps=0)
    trainer = trainer_for(tiny_st_model, loss, tmp_path, dataset=mined)
    trainer.train()
    assert trainer.state.global_step == 2 and loss.generator.steps == 2


@pytest.mark.parametrize("wrap", [lambda m, inner: AdaptiveLayerLoss(m, inner),
                                  lambda m, inner: Matryoshka2dLoss(m, inner, [32, 8])], ids=["adaptive", "2d"])
def test_cached_spacl_inside_layer_wrappers_is_refused_with_a_clear_message(wrap, tiny_st_model, tmp_path):
    inner = cached(tiny_st_model)
    trainer = trainer_for(tiny_st_model, wrap(tiny_st_model, inner), tmp_path)
    with pytest.raises(ValueError, match="CachedSPACLLoss cannot run inside AdaptiveLayerLoss"):
        trainer.train()


def test_symmetric_directions_update_the_generator_once_per_step(tiny_st_model, tmp_path):
    loss = SPACLLoss(tiny_st_model, generator_warmup_steps=0, directions=("query_to_doc", "doc_to_query"))
    trainer = trainer_for(tiny_st_model, loss, tmp_path)
    trainer.train()
    assert trainer.state.global_step == 2 and loss.generator.steps == 2


def _checkpointing_run(model_dir, output, matryoshka: bool, resume: str | None = None, steps: int = 4):
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformer = Transformer(model_dir, max_seq_length=32)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")],
                                device="cpu")  # fmt: skip
    inner = SPACLLoss(model, generator_warmup_steps=0)
    loss = MatryoshkaLoss(model, inner, [32, 16]) if matryoshka else inner
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3, report_to="none",
        save_strategy="steps", save_steps=2, use_cpu=True, seed=0, data_seed=0,
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(PAIRS), loss=loss)
    SPACLLoggingCallback.attach(trainer, inner)
    trainer.train(resume_from_checkpoint=resume)
    return inner


@pytest.mark.parametrize("matryoshka", [False, True], ids=["plain", "matryoshka"])
def test_resuming_a_sentence_transformers_checkpoint_resumes_the_generators(tiny_encoder_dir_no_dropout, tmp_path,
                                                                            matryoshka):  # fmt: skip
    whole = _checkpointing_run(tiny_encoder_dir_no_dropout, tmp_path / "whole", matryoshka)
    checkpoint = tmp_path / "whole" / "checkpoint-2"
    assert (checkpoint / "spacl_generator.pt").is_file()
    resumed = _checkpointing_run(tiny_encoder_dir_no_dropout, tmp_path / "whole", matryoshka, resume=str(checkpoint))
    generators = lambda loss: {"full": loss.generator, **dict(loss.criterion.truncated_generators)}  # noqa: E731
    assert {k: g.steps for k, g in generators(resumed).items()} == {k: g.steps for k, g in generators(whole).items()}
    assert all(g.steps == 4 for g in generators(resumed).values())  # was 2 each: restarted from scratch
    for key, generator in generators(whole).items():
        for p, q in zip(generator.parameters(), generators(resumed)[key].parameters()):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


def test_resuming_without_the_generator_file_names_the_cause(tiny_encoder_dir_no_dropout, tmp_path):
    _checkpointing_run(tiny_encoder_dir_no_dropout, tmp_path / "run", False)
    checkpoint = tmp_path / "run" / "checkpoint-2"
    (checkpoint / "spacl_generator.pt").unlink()  # as if the save was interrupted after the trainer's files
    with pytest.raises(FileNotFoundError, match="save was interrupted before the generator was written"):
        _checkpointing_run(tiny_encoder_dir_no_dropout, tmp_path / "run", False, resume=str(checkpoint))
