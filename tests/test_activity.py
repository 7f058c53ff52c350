"""Every SPACL component must act: on a realistic batch, switching one off changes the embedding gradient.

The figures are those of ``benchmarks/component_activity.py`` (computed once here by the same functions; its
docstring says how the batch is made, ``benchmarks/results/component_activity.md`` holds the last run). Measured
gradient cosines, full SPACL vs one component off (tau 0.2, similarity screening, self-supervised / labels):
dynamic anchor 0.39 / 0.45, farthest-point 0.82 / 0.85, screening 0.92 / 0.87, generator (16 per anchor, 300
updates) 0.996 / 0.987. Softmax-weight screening: 0.9997 (it can move a loss by at most -ln(0.95)). Each bound sits
just above its figure, so a component that turns inert fails here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import component_activity  # noqa: E402

from spacl_hf.core import SPACLCriterion  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    """(embeddings, rows): the held-out digits batch and the benchmark's rows for it (4 views self-supervised,
    4 views with labels, 2 views)."""
    embeddings = component_activity.digits_embeddings()
    return embeddings, component_activity.digits_rows(*embeddings)


@pytest.mark.parametrize("row", [0, 1], ids=["self-supervised", "labels"])
@pytest.mark.parametrize("component, bound", [("dynamic anchor", 0.6), ("farthest point", 0.95), ("screening", 0.97)])
def test_switching_a_component_off_changes_the_gradient(digits, row, component, bound):
    cosine = digits[1][row]["gradient_cosine"][component]
    assert cosine < bound, f"{component} is (nearly) inert: gradient cosine {cosine:.4f}"


@pytest.mark.parametrize("row, bound", [(0, 0.999), (1, 0.995)], ids=["self-supervised", "labels"])
def test_generated_negatives_change_the_gradient(digits, row, bound):
    measured = digits[1][row]
    assert measured["activity"]["generated_weight_fraction"] > 0.02
    assert measured["activity"]["generated_negatives_per_anchor"] > 1
    cosine = measured["gradient_cosine"]["generator"]
    assert cosine < bound, f"generated negatives are (nearly) inert: gradient cosine {cosine:.5f}"


def test_softmax_screening_is_measurably_gentle(digits):
    """Not a goal but a fact the docs state: softmax-weight screening barely moves the gradient."""
    (four, _, _), rows = digits
    _, stats = SPACLCriterion(temperature=0.2, screening_weight="softmax")(four, return_stats=True)
    assert stats["screened_weight_fraction"] <= 0.05 + 1e-6 and rows[0]["gradient_cosine"]["screening (softmax)"] > 0.99


def test_two_views_leave_anchor_and_farthest_point_inert_and_the_stats_say_so(digits):
    two_views = digits[1][2]
    assert two_views["activity"]["anchor_not_first_view"] == 0.0 and two_views["activity"]["positives_reordered"] == 0.0
    for component in ("dynamic anchor", "farthest point"):
        assert two_views["gradient_cosine"][component] > 1 - 1e-4  # inert by construction (rounded to 4 places)


def test_the_benchmark_table_names_every_component(digits):
    table = component_activity.markdown({"rows": digits[1]})
    assert "| digits 64 x 4 views, labels | 0.2 |" in table
    assert table.count("\n| digits") == 3 and "generated_weight_fraction" in table
