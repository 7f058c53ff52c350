"""The MTEB adapter: local STS task, model metadata, scores against scipy, and the command line."""

import json
import random

import pytest
import torch

pytest.importorskip("mteb")
from scipy.stats import spearmanr  # noqa: E402

from spacl_hf.mteb import evaluate_model, load_encoder, local_sts_task, mteb_model, weights_revision  # noqa: E402
from spacl_hf.mteb.__main__ import main as cli_main  # noqa: E402

WORDS = "cat dog bird car tree house river city music book game light road sun rain".split()


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb_cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


@pytest.fixture
def sts_file(tmp_path):
    rng = random.Random(0)
    lines = ["sentence1\tsentence2\tscore"]
    for _ in range(50):
        a = " ".join(rng.sample(WORDS, 4))
        b = " ".join(rng.sample(WORDS, 4))
        lines.append(f"{a}\t{b}\t{rng.uniform(0, 10):.3f}")  # a 0-10 range: any range is accepted
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_local_sts_task_matches_scipy_spearman(tiny_st_model, sts_file):
    task = local_sts_task(sts_file)
    assert task.metadata.name == "LocalSTS-pairs" and task.min_score < task.max_score
    scores = evaluate_model(tiny_st_model, [task], cache=None, show_progress_bar=False)
    rows = [line.split("\t") for line in sts_file.read_text().splitlines()[1:]]
    a = tiny_st_model.encode([r[0] for r in rows], convert_to_tensor=True)
    b = tiny_st_model.encode([r[1] for r in rows], convert_to_tensor=True)
    cosine = torch.nn.functional.cosine_similarity(a, b).numpy()
    expected = spearmanr(cosine, [float(r[2]) for r in rows]).statistic
    assert scores["LocalSTS-pairs"] == pytest.approx(expected, abs=1e-6)


def test_model_metadata_name_and_weight_revision(tiny_st_model):
    wrapped = mteb_model(tiny_st_model, "spacl/tiny")
    assert wrapped.mteb_model_meta.name == "spacl/tiny"
    before = wrapped.mteb_model_meta.revision
    assert before == weights_revision(tiny_st_model) and len(before) == 12
    with torch.no_grad():
        next(tiny_st_model.parameters()).add_(1e-3)
    assert weights_revision(tiny_st_model) != before  # a new checkpoint never reuses cached results
    assert mteb_model(tiny_st_model, "plainname").mteb_model_meta.name == "local/plainname"


def test_command_line_evaluates_a_saved_model_and_writes_json(tiny_encoder_dir, sts_file, tmp_path):
    # a plain Hugging Face encoder folder (as SPACLTrainer saves) gets mean pooling on top
    output = tmp_path / "scores.json"
    scores = cli_main(["--model", tiny_encoder_dir, "--sts-file", str(sts_file), "--output", str(output)])
    assert json.loads(output.read_text()) == scores and -1 <= scores["LocalSTS-pairs"] <= 1
    reloaded = load_encoder(tiny_encoder_dir)
    assert evaluate_model(reloaded, [local_sts_task(sts_file)], show_progress_bar=False) == pytest.approx(scores)


def test_bad_inputs_are_named(tmp_path, tiny_st_model):
    with pytest.raises(FileNotFoundError):
        local_sts_task(tmp_path / "missing.tsv")
    with pytest.raises(FileNotFoundError, match="`model`"):
        load_encoder(tmp_path / "nope")
    with pytest.raises(ValueError, match="at least one"):
        from spacl_hf.mteb import evaluate_files

        evaluate_files(tiny_st_model)


def _brute_force_sibling_retrieval(embeddings: torch.Tensor, groups: list[int]) -> dict[str, float]:
    """Query by query: rank every other row by cosine (ties by row order), score against its group's other rows."""
    x = torch.nn.functional.normalize(embeddings.double(), dim=1)
    totals = {"map": 0.0, "mrr": 0.0, "hit_1": 0.0, "hit_5": 0.0}
    for q in range(len(groups)):
        others = sorted((j for j in range(len(groups)) if j != q), key=lambda j: (-float(x[q] @ x[j]), j))
        relevant = [groups[j] == groups[q] for j in others]
        found, precisions = 0, []
        for rank, hit in enumerate(relevant, 1):
            if hit:
                found += 1
                precisions.append(found / rank)
        totals["map"] += sum(precisions) / sum(relevant)
        totals["mrr"] += 1 / (relevant.index(True) + 1)
        totals["hit_1"] += any(relevant[:1])
        totals["hit_5"] += any(relevant[:5])
    return {k: v / len(groups) for k, v in totals.items()}


def test_sibling_retrieval_task_scores_equal_a_brute_force_loop(tiny_st_model):
    import mteb

    from spacl_hf.mteb import sibling_retrieval_task

    rng = random.Random(1)
    texts, groups = [], []
    for group in range(12):  # groups of 2-4 related "captions" sharing two words
        shared = rng.sample(WORDS, 2)
        for _ in range(rng.randint(2, 4)):
            texts.append(" ".join(shared + rng.sample(WORDS, 3)))
            groups.append(group)
    task = sibling_retrieval_task(texts, groups, "TinySiblings")
    result = mteb.evaluate(mteb_model(tiny_st_model), [task], cache=None, overwrite_strategy="always",
                           show_progress_bar=False, encode_kwargs={"show_progress_bar": False})  # fmt: skip
    scores = result.task_results[0].scores["test"][0]
    expected = _brute_force_sibling_retrieval(tiny_st_model.encode(texts, convert_to_tensor=True), groups)
    assert scores["main_score"] == pytest.approx(expected["map"], abs=1e-4)  # MTEB rounds its scores to 5 digits
    assert scores["mrr_at_1000"] == pytest.approx(expected["mrr"], abs=1e-4)
    assert scores["hit_rate_at_1"] == pytest.approx(expected["hit_1"], abs=1e-4)
    assert scores["hit_rate_at_5"] == pytest.approx(expected["hit_5"], abs=1e-4)
    from spacl_hf.captions import sibling_retrieval  # the plain evaluator the caption study uses: the same numbers

    plain = sibling_retrieval(tiny_st_model.encode(texts, convert_to_tensor=True), groups)
    assert (plain["map"], plain["recall_at_5"]) == pytest.approx((scores["main_score"], scores["hit_rate_at_5"]), abs=1e-4)
    with pytest.raises(ValueError, match=r"groups \[99\] hold one row"):
        sibling_retrieval_task(["a", "b", "c"], [1, 1, 99], "Lonely")
    with pytest.raises(ValueError, match="`groups` \\(2\\)"):
        sibling_retrieval_task(["a", "b", "c"], [1, 1], "Short")


def test_sts_task_from_pairs_matches_scipy_spearman(tiny_st_model):
    from spacl_hf.mteb import sts_task_from_pairs

    rng = random.Random(2)
    first = [" ".join(rng.sample(WORDS, 4)) for _ in range(40)]
    second = [" ".join(rng.sample(WORDS, 4)) for _ in range(40)]
    gold = [rng.uniform(0, 5) for _ in range(40)]
    score = evaluate_model(tiny_st_model, [sts_task_from_pairs(first, second, gold, "PairsInMemory")], cache=None,
                           show_progress_bar=False)["PairsInMemory"]  # fmt: skip
    a, b = (tiny_st_model.encode(t, convert_to_tensor=True) for t in (first, second))
    expected = spearmanr(torch.nn.functional.cosine_similarity(a, b).numpy(), gold).statistic
    assert score == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match=r"`scores` \(39\)"):
        sts_task_from_pairs(first, second, gold[:-1], "Mismatch")
