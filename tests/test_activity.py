"""Every SPACL component must act: on a realistic batch, switching one off changes the embedding gradient.

Batch: 64 scikit-learn digits x 4 augmented views through a small CNN that was first trained for 150 plain
NT-Xent steps on other digits (a random network's geometry is meaningless: its negatives sit closer than its
positives). Measured gradient cosines, full SPACL vs one component off (tau 0.2, similarity screening):
dynamic anchor 0.39 / 0.45 (self-supervised / labels), farthest-point 0.82 / 0.85, screening 0.92 / 0.87,
generator (16 per anchor, 300 updates) 0.996 / 0.987. Softmax-weight screening: 0.9997 (it can move a loss by
at most -ln(0.95)); that is why the paper's similarity weight exists as an option.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sklearn")

from spacl_hf.core import AdversarialNegativeGenerator, SPACLCriterion  # noqa: E402


def _encoder() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.Tanh(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, 32),
    )  # fmt: skip


@pytest.fixture(scope="module")
def digits_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(embeddings [64, 4, 32], embeddings of 2 views [64, 2, 32], labels [64]) from a briefly trained CNN."""
    from sklearn.datasets import load_digits

    from spacl_hf.vision import ViewPipeline

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    torch.manual_seed(0)
    encoder = _encoder()
    optimizer = torch.optim.Adam(encoder.parameters(), 1e-3)
    nt_xent = SPACLCriterion(temperature=0.2, num_positives=1, dynamic_anchor=False, farthest_point=False,
                             screening=False)  # fmt: skip
    pipeline, order = ViewPipeline(num_views=2, seed=1), torch.Generator().manual_seed(0)
    for _ in range(150):  # train on digits 64.. only: the measured batch is held out
        rows = torch.randperm(len(images) - 64, generator=order)[:128] + 64
        views = pipeline(images[rows])
        loss = nt_xent(encoder((views.flatten(0, 1) - 0.3) * 3).view(128, 2, -1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        four = encoder((ViewPipeline(num_views=4, seed=0)(images[:64]).flatten(0, 1) - 0.3) * 3).view(64, 4, -1)
    return four, four[:, :2].clone(), torch.tensor(digits.target[:64])


def embedding_gradient(criterion: SPACLCriterion, embeddings: torch.Tensor, labels) -> torch.Tensor:
    leaf = embeddings.clone().requires_grad_()
    criterion(leaf, labels=labels).backward()
    return leaf.grad.flatten()


def gradient_cosine(full: SPACLCriterion, ablated: SPACLCriterion, embeddings, labels) -> float:
    full.eval(), ablated.eval()
    a, b = embedding_gradient(full, embeddings, labels), embedding_gradient(ablated, embeddings, labels)
    return float(F.cosine_similarity(a, b, dim=0))


SETTINGS = dict(temperature=0.2, screening_weight="similarity")


@pytest.mark.parametrize("supervised", [False, True], ids=["self-supervised", "labels"])
@pytest.mark.parametrize(
    "component, switch_off, bound",
    [
        ("dynamic anchor", dict(dynamic_anchor=False), 0.6),
        ("farthest point", dict(farthest_point=False), 0.95),
        ("screening", dict(screening=False), 0.97),
    ],
)
def test_switching_a_component_off_changes_the_gradient(digits_batch, supervised, component, switch_off, bound):
    four, _, labels = digits_batch
    labels = labels if supervised else None
    pool = dict(positive_pool="views+labels") if supervised else {}
    cosine = gradient_cosine(
        SPACLCriterion(**SETTINGS, **pool), SPACLCriterion(**SETTINGS, **pool, **switch_off), four, labels
    )
    assert cosine < bound, f"{component} is (nearly) inert: gradient cosine {cosine:.4f}"


@pytest.mark.parametrize("supervised, bound", [(False, 0.999), (True, 0.995)], ids=["self-supervised", "labels"])
def test_generated_negatives_change_the_gradient(digits_batch, supervised, bound):
    four, _, labels = digits_batch
    labels = labels if supervised else None
    pool = dict(positive_pool="views+labels") if supervised else {}
    generator = AdversarialNegativeGenerator(32, num_generated=16, warmup_steps=0, seed=0)
    full = SPACLCriterion(**SETTINGS, **pool, generator=generator).train()
    for _ in range(300):  # the GAN learns on the side (no encoder here: the embeddings are fixed)
        full(four, labels=labels)
    _, stats = full.eval()(four, labels=labels, return_stats=True)
    assert stats["generated_weight_fraction"] > 0.02 and stats["generated_negatives_per_anchor"] > 1
    cosine = gradient_cosine(full, SPACLCriterion(**SETTINGS, **pool), four, labels)
    assert cosine < bound, f"generated negatives are (nearly) inert: gradient cosine {cosine:.5f}"


def test_softmax_screening_is_measurably_gentle(digits_batch):
    """Not a goal but a fact the docs state: softmax-weight screening barely moves the gradient."""
    four, _, _ = digits_batch
    settings = dict(temperature=0.2, screening_weight="softmax")
    cosine = gradient_cosine(SPACLCriterion(**settings), SPACLCriterion(**settings, screening=False), four, None)
    _, stats = SPACLCriterion(**settings)(four, return_stats=True)
    assert stats["screened_weight_fraction"] <= 0.05 + 1e-6 and cosine > 0.99


@pytest.mark.parametrize("component", ["dynamic_anchor", "farthest_point"])
def test_two_views_leave_anchor_and_farthest_point_inert_and_the_stats_say_so(digits_batch, component):
    _, two, _ = digits_batch
    full = SPACLCriterion(**SETTINGS)
    _, stats = full(two, return_stats=True)
    assert stats["anchor_not_first_view"] == 0.0 and stats["positives_reordered"] == 0.0
    cosine = gradient_cosine(full, SPACLCriterion(**SETTINGS, **{component: False}), two, None)
    assert cosine > 1 - 1e-6  # inert by construction, and reported as such above
