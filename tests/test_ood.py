"""Out-of-distribution intent detection: metric modules against scikit-learn, scorers against brute force,
thresholds, the CLINC150 / Banking77 loaders and an end-to-end run on constructed embeddings."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("evaluate")
sklearn_metrics = pytest.importorskip("sklearn.metrics")

from spacl_hf.common.data_files import find_data_dir  # noqa: E402
from spacl_hf.ood import (  # noqa: E402
    OOD_LABEL,
    CentroidCosineScorer,
    KNNScorer,
    MahalanobisScorer,
    choose_known_intents,
    choose_threshold,
    evaluate_open_intent,
    load_banking77,
    load_clinc150,
    load_metric,
    metric_path,
)

needs_data = pytest.mark.skipif(find_data_dir() is None, reason="../shared/data is not here")


@pytest.fixture(autouse=True)
def _module_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ood_detection_metric_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    references = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(size=500) + references, 1)  # rounding makes ties
    result = load_metric("ood_detection").compute(scores=scores.tolist(), references=references.tolist())
    assert result["auroc"] == pytest.approx(sklearn_metrics.roc_auc_score(references, scores), abs=1e-12)
    # in-distribution positive, accepted when the score is at or below the threshold
    fpr, tpr, _ = sklearn_metrics.roc_curve(1 - references, -scores, drop_intermediate=False)
    assert result["fpr_at_95_tpr"] == pytest.approx(fpr[np.searchsorted(tpr, 0.95, side="left")], abs=1e-12)


def test_ood_detection_metric_extremes_and_errors():
    metric = load_metric("ood_detection")
    assert metric.compute(scores=[0.0, 1.0], references=[0, 1]) == {"auroc": 1.0, "fpr_at_95_tpr": 0.0}
    assert metric.compute(scores=[1.0, 0.0], references=[0, 1]) == {"auroc": 0.0, "fpr_at_95_tpr": 1.0}
    with pytest.raises(ValueError, match="both OOD"):
        metric.compute(scores=[0.1, 0.2], references=[0, 0])
    with pytest.raises(ValueError, match="references"):
        metric.compute(scores=[0.1, 0.2], references=[0, 2])


@pytest.mark.parametrize("seed", [0, 1])
def test_open_intent_metric_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    references = rng.integers(-1, 6, 400)
    predictions = np.where(rng.random(400) < 0.6, references, rng.integers(-1, 7, 400))  # 6 is never a reference
    result = load_metric("open_intent").compute(predictions=predictions.tolist(), references=references.tolist())
    inside = references != -1
    known = sorted(set(references[inside].tolist()))
    f1 = dict(zip([*known, -1], sklearn_metrics.f1_score(references, predictions, labels=[*known, -1], average=None,
                                                         zero_division=0)))  # fmt: skip
    assert result["in_scope_accuracy"] == pytest.approx(np.mean(predictions[inside] == references[inside]))
    assert result["ood_recall"] == pytest.approx(np.mean(predictions[~inside] == -1))
    assert result["ood_f1"] == pytest.approx(f1[-1])
    assert result["known_macro_f1"] == pytest.approx(np.mean([f1[k] for k in known]))
    assert result["macro_f1"] == pytest.approx(
        sklearn_metrics.f1_score(references, predictions, labels=[*known, -1], average="macro", zero_division=0)
    )
    assert result["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(references, predictions))


def test_metric_path_names_the_choices():
    assert metric_path("open_intent").endswith("open_intent.py")
    with pytest.raises(ValueError, match="ood_detection"):
        metric_path("accuracy")


def _clusters(seed=0, classes=4, per_class=30, dim=8, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3
    labels = torch.arange(classes).repeat_interleave(per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels, centres


def test_centroid_scorer_matches_a_loop():
    x, labels, _ = _clusters()
    queries = torch.randn(20, 8, generator=torch.Generator().manual_seed(5))
    scores, predicted = CentroidCosineScorer().fit(x, labels).score_and_predict(queries)
    for i, q in enumerate(queries.double()):
        sims = [torch.nn.functional.cosine_similarity(q, x[labels == c].double().div(
            x[labels == c].double().norm(dim=1, keepdim=True)).mean(0), dim=0) for c in range(4)]  # fmt: skip
        assert scores[i] == pytest.approx(-max(sims).item(), abs=1e-9)
        assert predicted[i] == int(np.argmax([s.item() for s in sims]))


def test_knn_scorer_matches_brute_force():
    x, labels, _ = _clusters(per_class=10)
    queries = torch.randn(15, 8, generator=torch.Generator().manual_seed(6))
    scorer = KNNScorer(k=5, batch_size=4).fit(x, labels)
    scores, predicted = scorer.score_and_predict(queries)
    normed = torch.nn.functional.normalize(x.double(), dim=1)
    for i, q in enumerate(torch.nn.functional.normalize(queries.double(), dim=1)):
        sims = normed @ q
        order = sims.argsort(descending=True)[:5]
        assert scores[i] == pytest.approx(-sims[order[-1]].item(), abs=1e-9)
        counts = torch.bincount(labels[order], minlength=4)
        winners = torch.nonzero(counts == counts.max()).flatten().tolist()
        nearest_winner = next(int(labels[j]) for j in order if int(labels[j]) in winners)
        assert predicted[i] == nearest_winner
    # a 2-2 tie goes to the class of the nearest neighbour, not to the smaller class id
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.5], [0.0, 1.0], [0.5, 0.9]])
    with pytest.warns(UserWarning, match="k <= 2"):
        tie = KNNScorer(k=4).fit(bank, torch.tensor([0, 0, 1, 1])).predict(torch.tensor([[0.1, 1.0]]))
    assert tie.tolist() == [1]


@pytest.mark.parametrize("normalize", [True, False])
def test_mahalanobis_scorer_matches_numpy(normalize):
    x, labels, _ = _clusters(per_class=25)
    queries = torch.randn(10, 8, generator=torch.Generator().manual_seed(7))
    scores, predicted = MahalanobisScorer(shrinkage=0.2, normalize=normalize).fit(x, labels).score_and_predict(queries)
    xn, qn = x.double().numpy(), queries.double().numpy()
    if normalize:
        xn = xn / np.linalg.norm(xn, axis=1, keepdims=True)
        qn = qn / np.linalg.norm(qn, axis=1, keepdims=True)
    means = np.stack([xn[labels.numpy() == c].mean(0) for c in range(4)])
    centred = xn - means[labels.numpy()]
    cov = centred.T @ centred / len(xn)
    cov = 0.8 * cov + 0.2 * np.trace(cov) / 8 * np.eye(8)
    inv = np.linalg.inv(cov)
    distances = np.array([[(q - m) @ inv @ (q - m) for m in means] for q in qn])
    np.testing.assert_allclose(scores.numpy(), distances.min(1), rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(predicted.numpy(), distances.argmin(1))


def test_scorers_check_their_inputs():
    x, labels, _ = _clusters()
    with pytest.raises(RuntimeError, match="not fitted"):
        KNNScorer().score(x)
    with pytest.raises(ValueError, match="empty"):
        CentroidCosineScorer().fit(x, torch.where(labels == 1, 2, labels))
    with pytest.raises(ValueError, match="OOD label"):
        CentroidCosineScorer().fit(x, torch.where(labels == 1, -1, labels))
    with pytest.raises(ValueError, match="dimension"):
        CentroidCosineScorer().fit(x, labels).score(x[:, :4])
    with pytest.raises(ValueError, match="k"):
        KNNScorer(k=0)
    with pytest.raises(ValueError, match="shrinkage"):
        MahalanobisScorer(shrinkage=2.0)


def test_tpr_threshold_keeps_the_requested_share_of_known_queries():
    scores = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    is_ood = torch.zeros(1000, dtype=torch.bool)
    threshold = choose_threshold(scores, is_ood, strategy="tpr", target_tpr=0.9)
    kept = (scores <= threshold).float().mean()
    assert 0.9 <= kept < 0.9 + 1.5 / 1000


def test_macro_f1_threshold_is_the_best_candidate_and_separates_separable_data():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (300,), generator=g)
    is_ood = torch.rand(300, generator=g) < 0.3
    scores = torch.where(is_ood, 1 + torch.rand(300, generator=g), torch.rand(300, generator=g))
    threshold = choose_threshold(scores, is_ood, labels, labels, strategy="macro_f1")
    assert ((scores > threshold) == is_ood).all()
    with pytest.raises(ValueError, match="macro_f1"):
        choose_threshold(scores, torch.zeros(300, dtype=torch.bool), labels, labels, strategy="macro_f1")
    with pytest.raises(ValueError, match="strategy"):
        choose_threshold(scores, is_ood, strategy="best")
    with pytest.raises(ValueError, match="target_tpr"):
        choose_threshold(scores, is_ood, strategy="tpr", target_tpr=1.5)


def test_evaluate_open_intent_on_constructed_embeddings():
    x, labels, centres = _clusters(classes=5, per_class=40)
    known = labels < 4  # class 4 is never trained on: it is the OOD class
    g = torch.Generator().manual_seed(3)

    def split(n):
        y = torch.randint(0, 5, (n,), generator=g)
        return centres[y] + 0.3 * torch.randn(n, 8, generator=g), torch.where(y == 4, OOD_LABEL, y)

    val_x, val_y = split(200)
    test_x, test_y = split(300)
    results = evaluate_open_intent(x[known], labels[known], val_x, val_y, test_x, test_y, return_scores=True)
    assert set(results) == {"centroid_cosine", "knn", "mahalanobis"}
    for metrics in results.values():
        assert metrics["auroc"] > 0.99 and metrics["in_scope_accuracy"] > 0.95 and metrics["macro_f1"] > 0.95
        assert metrics["test_scores"].shape == (300,)
    # random embeddings: no better than chance
    noise = torch.randn(300, 8, generator=g)
    chance = evaluate_open_intent(x[known], labels[known], val_x, val_y, noise, test_y)
    assert all(abs(m["auroc"] - 0.5) < 0.15 for m in chance.values())


def test_known_intent_draw_is_seeded():
    intents = [f"intent_{i}" for i in range(77)]
    a, b = choose_known_intents(intents, 0.25, seed=0), choose_known_intents(intents, 0.25, seed=1)
    assert len(a) == 19 and a == choose_known_intents(intents, 0.25, seed=0) and a != b
    assert a == [i for i in intents if i in set(a)]  # original order
    with pytest.raises(ValueError, match="known_ratio"):
        choose_known_intents(intents, 1.5, seed=0)


@needs_data
def test_clinc150_loader():
    full = load_clinc150()
    assert (len(full.train), len(full.validation), len(full.test)) == (15000, 3100, 5500)
    assert sum(label == OOD_LABEL for label in full.test["label"]) == 1000
    assert full.train.features["label"].names == full.known_intents and len(full.known_intents) == 150
    half = load_clinc150(known_ratio=0.5, seed=3)
    assert len(half.known_intents) == 75 and len(half.train) == 7500
    assert set(half.train["intent"]) == set(half.known_intents)
    ood_intents = {i for i, y in zip(half.test["intent"], half.test["label"]) if y == OOD_LABEL}
    assert ood_intents.isdisjoint(half.known_intents) and "oos" in ood_intents
    for row in half.test.select(range(0, 5500, 97)):
        assert row["label"] == OOD_LABEL or half.known_intents[row["label"]] == row["intent"]


@needs_data
def test_banking77_loader_holds_out_validation_and_unknown_intents():
    splits = load_banking77(known_ratio=0.75, seed=2)
    assert len(splits.known_intents) == round(0.75 * 77)
    assert set(splits.train["text"]).isdisjoint(splits.validation["text"])
    assert set(splits.train["intent"]) == set(splits.known_intents)
    assert any(label == OOD_LABEL for label in splits.validation["label"])
    assert len(splits.test) == 3080 and splits.name == "banking77-75%"
    again = load_banking77(known_ratio=0.75, seed=2)
    assert again.validation["text"] == splits.validation["text"]


def test_loaders_say_where_the_data_should_be(tmp_path):
    with pytest.raises(FileNotFoundError, match="clinc150"):
        load_clinc150(tmp_path)
    with pytest.raises(ValueError, match="validation_fraction"):
        load_banking77(tmp_path, validation_fraction=1.5)


@needs_data
@pytest.mark.parametrize("dataset, task", [("banking77", "banking77-25%"), ("stackoverflow", "stackoverflow-25%")])
def test_train_intent_ood_example_runs(dataset, task, tiny_encoder_dir, tmp_path):
    from test_examples import load_example

    module = load_example("train_intent_ood")
    scores = module.main([
        "--model_name_or_path", tiny_encoder_dir, "--dataset", dataset, "--known_ratio", "0.25",
        "--max_steps", "2", "--per_device_train_batch_size", "8", "--max_train_samples", "200",
        "--max_eval_samples", "120", "--bank_per_intent", "5", "--generator_warmup_steps", "0",
        "--output_dir", str(tmp_path), "--use_cpu", "true",
    ])  # fmt: skip
    assert scores["steps"] == 2 and scores["task"] == task
    for metrics in scores["after"].values():
        assert 0 <= metrics["auroc"] <= 1 and 0 <= metrics["macro_f1"] <= 1
    assert json.loads((tmp_path / "scores.json").read_text()) == scores
    assert "SPACLLoss" in (tmp_path / "final" / "README.md").read_text()


def test_evaluate_splits_embeds_each_split_and_subsets_the_bank():
    from datasets import Dataset

    from spacl_hf.ood import OpenIntentSplits, evaluate_splits, per_class_subset

    x, labels, centres = _clusters(classes=3, per_class=20)
    train = Dataset.from_dict({"text": [f"t{i}" for i in range(60)], "label": labels.tolist()})
    vectors = {f"t{i}": x[i] for i in range(60)}
    g = torch.Generator().manual_seed(4)
    for name, n in (("v", 40), ("s", 50)):  # class 2 plays the unseen intent in validation and test
        y = torch.randint(0, 3, (n,), generator=g)
        for i in range(n):
            vectors[f"{name}{i}"] = centres[y[i]] + 0.3 * torch.randn(8, generator=g)
        vectors[f"{name}_labels"] = torch.where(y == 2, OOD_LABEL, y)
    split = lambda name, n: Dataset.from_dict(  # noqa: E731
        {"text": [f"{name}{i}" for i in range(n)], "label": vectors[f"{name}_labels"].tolist()}
    )
    known = train.filter(lambda row: row["label"] < 2)
    splits = OpenIntentSplits(known, split("v", 40), split("s", 50), ["a", "b"], "toy")
    seen = []

    def encode(texts):
        seen.append(len(texts))
        return torch.stack([vectors[t] for t in texts])

    bank = per_class_subset(known, 12, seed=1)
    assert sorted(bank["label"]) == [0] * 12 + [1] * 12
    assert per_class_subset(known, 12, seed=1)["text"] == bank["text"] and per_class_subset(known, None) is known
    results = evaluate_splits(encode, splits, bank)
    assert seen == [24, 40, 50]  # bank, validation, test: each embedded once for all scorers
    assert all(metrics["auroc"] > 0.95 for metrics in results.values())
    with pytest.raises(ValueError, match="per_class"):
        per_class_subset(known, 0)
    with pytest.warns(UserWarning, match="k <= 5"):  # a 10th neighbour outside a 5-example class
        KNNScorer(k=10).fit(x[:10], torch.tensor([0] * 5 + [1] * 5))
