"""StackOverflow open intent detection: the literature's protocol (known classes, splits, quoting), the metrics
from a hand-computed confusion matrix, and a decision rule that reads no open row before the final table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("evaluate")

import torch  # noqa: E402

from spacl_hf.common.data_files import find_data_dir  # noqa: E402
from spacl_hf.ood import (  # noqa: E402
    OOD_LABEL,
    CentroidCosineScorer,
    MaxSoftmaxScorer,
    OpenIntentSplits,
    draw_known_classes,
    evaluate_known_only,
    load_metric,
    load_stackoverflow,
)

DATA = find_data_dir()
needs_data = pytest.mark.skipif(DATA is None or not (DATA / "stackoverflow").is_dir(), reason="no ../shared/data")


@needs_data
def test_the_shipped_known_class_lists_are_the_protocols_numpy_draw():
    lists = json.loads((DATA / "stackoverflow" / "known_classes_seeds0-9.json").read_text())["lists"]
    labels = sorted({line.split("\t")[1].strip() for line in (DATA / "stackoverflow" / "dev.tsv").read_text().splitlines()[1:]})
    assert len(lists) == 20 and len(labels) == 20
    for key, listed in lists.items():
        ratio, seed = key.split("/seed")
        assert draw_known_classes(labels, float(ratio), int(seed)) == listed, key
    for seed in range(10):  # the protocol's permutation: 25% is the head of 75%
        assert lists[f"0.75/seed{seed}"][:5] == lists[f"0.25/seed{seed}"]


@needs_data
@pytest.mark.parametrize("ratio, known, train, dev, known_test", [(0.25, 5, 3000, 500, 1500), (0.75, 15, 9000, 1500, 4500)])
def test_splits_follow_the_protocol(ratio, known, train, dev, known_test):
    splits = load_stackoverflow(known_ratio=ratio, seed=3)
    assert len(splits.known_intents) == known and splits.name == f"stackoverflow-{round(100 * ratio)}%"
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (train, dev, 6000)
    assert OOD_LABEL not in set(splits.train["label"]) | set(splits.validation["label"])
    test_labels = list(splits.test["label"])
    assert sum(label != OOD_LABEL for label in test_labels) == known_test
    # labels number the known classes in drawing order; every unknown class is the one open label
    for intent, label in zip(splits.test["intent"], test_labels):
        assert label == (splits.known_intents.index(intent) if intent in splits.known_intents else OOD_LABEL)
    # quotes stay literal (csv.QUOTE_NONE), as the protocol's readers keep them
    assert any('""' in text for text in splits.test["text"])


@needs_data
def test_a_seed_outside_the_shipped_lists_is_drawn_as_the_protocol_draws_it():
    splits = load_stackoverflow(known_ratio=0.25, seed=12)
    labels = sorted(set(splits.test["intent"]))
    assert splits.known_intents == draw_known_classes(labels, 0.25, 12)


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(DATA / "stackoverflow", tmp_path / "stackoverflow")
    return tmp_path


@needs_data
def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="known_ratio"):
        load_stackoverflow(known_ratio=1.0)
    with pytest.raises(ValueError, match="known_ratio"):
        load_stackoverflow(known_ratio=0)
    with pytest.raises(ValueError, match="seed"):
        load_stackoverflow(seed=-1)
    with pytest.raises(FileNotFoundError, match="stackoverflow"):
        load_stackoverflow(data_dir=tmp_path)  # an explicit folder never falls back to ../shared/data
    root = _copy(tmp_path)
    dev = root / "stackoverflow" / "dev.tsv"
    lines = dev.read_text().splitlines()
    dev.write_text("\n".join(lines[:7] + ["a title without a label"] + lines[7:]) + "\n")
    with pytest.raises(ValueError, match=r"dev\.tsv, line 8"):
        load_stackoverflow(data_dir=root)
    shutil.copy(DATA / "stackoverflow" / "dev.tsv", dev)
    lists = root / "stackoverflow" / "known_classes_seeds0-9.json"
    content = json.loads(lists.read_text())
    content["lists"]["0.25/seed0"] = content["lists"]["0.25/seed1"]
    lists.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="protocol's draw"):
        load_stackoverflow(data_dir=root, seed=0)


def test_metrics_match_a_hand_computed_confusion_matrix():
    # 2 known classes (0, 1) + open (-1); rows = truth, columns = prediction, order [0, 1, open]:
    #   truth 0: 3 -> 0, 1 -> 1, 1 -> open;  truth 1: 0 -> 0, 2 -> 1, 2 -> open;  truth open: 1 -> 0, 0 -> 1, 4 -> open
    references = [0] * 5 + [1] * 4 + [-1] * 5
    predictions = [0, 0, 0, 1, -1] + [1, 1, -1, -1] + [0, -1, -1, -1, -1]
    confusion = torch.zeros(3, 3)
    index = {0: 0, 1: 1, -1: 2}
    for t, p in zip(references, predictions):
        confusion[index[t], index[p]] += 1
    assert confusion.tolist() == [[3, 1, 1], [0, 2, 2], [1, 0, 4]]
    f1 = [2 * confusion[c, c] / (confusion[c].sum() + confusion[:, c].sum()) for c in range(3)]  # 6/9, 4/7, 8/12
    metrics = load_metric("open_intent").compute(predictions=predictions, references=references)
    assert metrics["ood_f1"] == pytest.approx(float(f1[2]))  # F1-OOD
    assert metrics["known_macro_f1"] == pytest.approx(float((f1[0] + f1[1]) / 2))  # F1-IND
    assert metrics["macro_f1"] == pytest.approx(float(sum(f1) / 3))  # F1 over K + 1
    assert metrics["accuracy"] == pytest.approx(float(confusion.trace() / confusion.sum()))


class _Unreadable:
    """A test split that fails on any use: the decision rule must not touch it before `final`."""

    def __getitem__(self, key):
        raise AssertionError("the test split was read before the final table")

    def __len__(self):
        raise AssertionError("the test split was read before the final table")


def _toy_splits(test) -> OpenIntentSplits:
    from datasets import Dataset

    known = {"apple pie": 0, "apple tart": 0, "car engine": 1, "car wheel": 1}
    train = Dataset.from_dict({"text": list(known), "label": list(known.values())})
    validation = Dataset.from_dict({"text": ["apple jam", "car door"], "label": [0, 1]})
    return OpenIntentSplits(train, validation, test, ["fruit", "car"], "toy")


def _encode(texts):  # a bag of first letters: "a..." near class 0, "c..." near class 1, anything else far
    return torch.tensor([[t.startswith("apple"), t.startswith("car"), not t.startswith(("apple", "car"))]
                         for t in texts], dtype=torch.float32) + 0.01  # fmt: skip


def test_the_decision_rule_reads_no_open_row_before_final():
    from datasets import Dataset

    results = evaluate_known_only(_encode, _toy_splits(_Unreadable()), scorers=[CentroidCosineScorer()])
    assert set(results["centroid_cosine"]) == {"validation"}
    assert results["centroid_cosine"]["validation"]["accuracy"] == 1.0
    test = Dataset.from_dict({"text": ["apple cake", "car seat", "zebra", "moon"], "label": [0, 1, -1, -1]})
    final = evaluate_known_only(_encode, _toy_splits(test), scorers=[CentroidCosineScorer()], target_tpr=1.0,
                                final=True)["centroid_cosine"]["test"]  # fmt: skip
    assert final["ood_f1"] == 1.0 and final["accuracy"] == 1.0 and final["auroc"] == 1.0
    with pytest.raises(ValueError, match="open"):
        evaluate_known_only(_encode, _toy_splits(test).__class__(test, test, test, ["a", "b"], "leaky"))


def test_max_softmax_scorer_is_minus_the_largest_class_probability():
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 3)
    x, labels = torch.randn(9, 4), torch.tensor([0, 1, 2] * 3)
    scorer = MaxSoftmaxScorer(head).fit(x, labels)
    probabilities = torch.softmax(head(x).double(), dim=1)
    scores, predictions = scorer.score_and_predict(x)
    torch.testing.assert_close(scores, -probabilities.max(dim=1).values.detach())
    assert torch.equal(predictions, probabilities.argmax(dim=1))
    with pytest.raises(ValueError, match="logits"):
        MaxSoftmaxScorer(torch.nn.Linear(4, 2)).fit(x, labels)
