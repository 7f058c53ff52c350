"""SPACLLoss / CachedSPACLLoss with sentence-transformers, on tiny random models built in the tests."""

import copy

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sentence_transformers")
from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments  # noqa: E402
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss  # noqa: E402

from spacl_hf import CachedSPACLLoss, SPACLLoggingCallback, SPACLLoss  # noqa: E402
from spacl_hf.common.content_ids import token_content_ids  # noqa: E402

SENTENCES = [
    "a man is playing a guitar", "a woman is slicing an onion", "the cat sleeps on the sofa",
    "children play football in the park", "a plane takes off at dawn", "he reads a book by the window",
    "the chef cooks pasta", "two dogs run on the beach", "rain falls on the city", "a boy rides a bicycle",
    "she paints a landscape", "the train arrives late", "students listen to a lecture", "a bird sings at noon",
    "the market is crowded", "an old man feeds pigeons",
]  # fmt: skip


def paraphrase(text: str) -> str:
    return "indeed " + text


def contradiction(text: str) -> str:
    return "nobody says " + text


def features(model, texts):
    return model.preprocess(texts)


def train(model, loss, dataset, steps=2, batch_size=8, tmp_path=None, callbacks=None, **kwargs):
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=1e-3,
        report_to="none", save_strategy="no", logging_steps=1, use_cpu=True, seed=0, **kwargs,
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    for callback in callbacks or []:
        callback.attach(trainer, loss)
    trainer.train()
    return trainer


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before, model):
    return any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


FORMATS = {
    "pairs": (dict(), lambda: Dataset.from_dict({"anchor": SENTENCES, "positive": [paraphrase(s) for s in SENTENCES]})),
    "triplets-2neg": (
        dict(),
        lambda: Dataset.from_dict(
            {
                "anchor": SENTENCES,
                "positive": [paraphrase(s) for s in SENTENCES],
                "negative_1": [contradiction(s) for s in SENTENCES],
                "negative_2": SENTENCES[1:] + SENTENCES[:1],
            }
        ),
    ),
    "multi-positive": (
        dict(num_positive_columns=2),
        lambda: Dataset.from_dict(
            {
                "anchor": SENTENCES,
                "positive_1": [paraphrase(s) for s in SENTENCES],
                "positive_2": [s + "!" for s in SENTENCES],
            }
        ),
    ),
    "labels": (dict(num_views=2), lambda: Dataset.from_dict({"text": SENTENCES, "label": [i % 4 for i in range(16)]})),
    "dropout-views": (
        dict(num_views=3, dynamic_anchor=True),
        lambda: Dataset.from_dict({"anchor": SENTENCES, "positive": [paraphrase(s) for s in SENTENCES]}),
    ),
}


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("cached", [False, True])
def test_every_format_trains_with_the_trainer(name, cached, tiny_st_model, tmp_path):
    kwargs, make_dataset = FORMATS[name]
    loss_cls = CachedSPACLLoss if cached else SPACLLoss
    extra = dict(mini_batch_size=3) if cached else {}
    loss = loss_cls(tiny_st_model, generator_warmup_steps=0, **kwargs, **extra)
    before = snapshot(tiny_st_model)
    trainer = train(tiny_st_model, loss, make_dataset(), tmp_path=tmp_path)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert changed(before, tiny_st_model)
    assert loss.generator.steps == 2  # the GAN made one update per training step


def test_model_fit_trains(tiny_st_model, tmp_path):
    from sentence_transformers import InputExample
    from torch.utils.data import DataLoader

    examples = [InputExample(texts=[s, paraphrase(s)]) for s in SENTENCES]
    loader = DataLoader(examples, batch_size=8, shuffle=True)
    loss = SPACLLoss(tiny_st_model, generator_warmup_steps=0)
    before = snapshot(tiny_st_model)
    tiny_st_model.fit(train_objectives=[(loader, loss)], epochs=1, show_progress_bar=False)
    assert changed(before, tiny_st_model) and loss.generator.steps == 2


def test_reduces_to_multiple_negatives_ranking_loss(tiny_st_model_no_dropout):
    model = tiny_st_model_no_dropout
    anchors, positives, negatives = SENTENCES[:8], [paraphrase(s) for s in SENTENCES[:8]], SENTENCES[8:]
    spacl = SPACLLoss(model, num_positives=1, farthest_point=False, screening=False, adversarial_negatives=False)
    mnrl = MultipleNegativesRankingLoss(model, scale=20.0)
    for columns in ([anchors, positives], [anchors, positives, negatives]):
        feats = [features(model, c) for c in columns]
        ours = spacl(feats, None)
        theirs = mnrl([features(model, c) for c in columns], None)
        assert torch.allclose(ours, theirs, atol=1e-6)


def test_duplicate_texts_are_masked_by_content_not_position(tiny_st_model_no_dropout):
    model = tiny_st_model_no_dropout
    anchors = SENTENCES[:6]
    positives = [paraphrase(s) for s in SENTENCES[:6]]
    positives[4] = positives[1]  # sample 4's positive is the same text as sample 1's
    loss = SPACLLoss(model, num_positives=1, farthest_point=False, screening=False, adversarial_negatives=False)
    ours = loss([features(model, anchors), features(model, positives)], None)
    with torch.no_grad():
        a = F.normalize(model.encode(anchors, convert_to_tensor=True), dim=-1)
        p = F.normalize(model.encode(positives, convert_to_tensor=True), dim=-1)
    logits = a @ p.T / 0.05
    logits[1, 4] = logits[4, 1] = float("-inf")  # never each other's negative
    expected = F.cross_entropy(logits, torch.arange(6))
    assert torch.allclose(ours, expected, atol=1e-5)


def test_token_content_ids_ignore_padding_and_column():
    short = {"input_ids": torch.tensor([[101, 7, 8, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    padded = {
        "input_ids": torch.tensor([[101, 7, 8, 102, 0, 0], [101, 9, 102, 0, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]]),
    }
    ids_short, ids_padded = token_content_ids(short), token_content_ids(padded)
    assert ids_short[0] == ids_padded[0] and ids_padded[0] != ids_padded[1]
    assert token_content_ids({"pixel_values": torch.zeros(1, 3, 4, 4)}) is None


@pytest.mark.parametrize(
    "columns, labels, kwargs, match",
    [
        (1, None, {}, "1 text column"),
        (2, torch.tensor([0.5, 0.2]), {}, "label/score column"),
        (1, torch.tensor([0.5, 0.2]), {}, "integer class labels"),
        (2, None, dict(num_positive_columns=2), "num_positive_columns=2"),
    ],
)
def test_wrong_columns_get_an_error_listing_the_formats(tiny_st_model, columns, labels, kwargs, match):
    loss = SPACLLoss(tiny_st_model, adversarial_negatives=False, **kwargs)
    feats = [features(tiny_st_model, SENTENCES[:2]) for _ in range(columns)]
    with pytest.raises(ValueError, match=match) as error:
        loss(feats, labels)
    assert "Accepted formats" in str(error.value)


def test_bad_settings_name_the_argument(tiny_st_model):
    with pytest.raises(ValueError, match="`temperature`"):
        SPACLLoss(tiny_st_model, temperature=0)
    with pytest.raises(ValueError, match="`num_views`"):
        SPACLLoss(tiny_st_model, num_views=0)
    with pytest.raises(ValueError, match="`mini_batch_size`"):
        CachedSPACLLoss(tiny_st_model, mini_batch_size=0)


@pytest.mark.parametrize("name", ["pairs", "triplets-2neg", "labels", "dropout-views"])
def test_cached_equals_uncached_loss_and_gradients(name, tiny_st_model_no_dropout):
    kwargs, make_dataset = FORMATS[name]
    data = make_dataset()[:12]
    model_a = tiny_st_model_no_dropout
    model_b = copy.deepcopy(model_a)
    settings = dict(generator_warmup_steps=0, num_generated=2, **kwargs)
    plain = SPACLLoss(model_a, **settings)
    cached = CachedSPACLLoss(model_b, mini_batch_size=5, **settings)
    text_columns = [c for c in data if c != "label"]
    labels = torch.tensor(data["label"]) if "label" in data else None
    loss_a = plain([features(model_a, data[c]) for c in text_columns], labels)
    loss_a.backward()
    loss_b = cached([features(model_b, data[c]) for c in text_columns], labels)
    loss_b.backward()
    assert torch.allclose(loss_a, loss_b, atol=1e-5)
    for (name_a, p_a), (_, p_b) in zip(model_a.named_parameters(), model_b.named_parameters()):
        if p_a.grad is None:
            assert p_b.grad is None
            continue
        assert torch.allclose(p_a.grad, p_b.grad, atol=1e-5), name_a
    # the generators made the same update from the same embeddings
    for t_a, t_b in zip(plain.generator.state_dict().values(), cached.generator.state_dict().values()):
        if torch.is_tensor(t_a):
            assert torch.allclose(t_a, t_b, atol=1e-6)


def test_statistics_reach_the_trainer_logs(tiny_st_model, tmp_path):
    loss = SPACLLoss(tiny_st_model, generator_warmup_steps=0)
    _, make_dataset = FORMATS["triplets-2neg"]
    trainer = train(tiny_st_model, loss, make_dataset(), steps=2, tmp_path=tmp_path, callbacks=[SPACLLoggingCallback])
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert 0 < entry["spacl/kept_negative_fraction"] <= 1
        assert "spacl/generator_loss" in entry and "spacl/discriminator_loss" in entry
        assert "spacl/positive_spread" in entry
    assert loss.pop_statistics() == {}  # the callback consumed them


def test_config_and_citation_for_the_model_card(tiny_st_model):
    loss = CachedSPACLLoss(tiny_st_model, mini_batch_size=4, temperature=0.1, num_positives=3)
    config = loss.get_config_dict()
    assert config["temperature"] == 0.1 and config["num_positives"] == 3 and config["mini_batch_size"] == 4
    assert "SnaPhArd" in loss.citation and "2101.06983" in loss.citation
    assert "spacl" in tiny_st_model.model_card_data.tags


def test_saved_model_card_names_spacl_and_reloads_identically(tiny_st_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    loss = SPACLLoss(tiny_st_model, generator_warmup_steps=0, temperature=0.07)
    _, make_dataset = FORMATS["pairs"]
    train(tiny_st_model, loss, make_dataset(), steps=2, tmp_path=tmp_path / "run")
    tiny_st_model.save_pretrained(str(tmp_path / "saved"))
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "SPACLLoss" in card and "SnaPhArd Contrast Learning" in card
    assert '"temperature": 0.07' in card and '"screening_mass": 0.95' in card
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    texts = SENTENCES[:5]
    assert torch.allclose(
        tiny_st_model.encode(texts, convert_to_tensor=True), reloaded.encode(texts, convert_to_tensor=True), atol=1e-6
    )
