"""The adversarial negative generator: it learns, it is deterministic, it never touches the encoder."""

import copy
import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from spacl_hf.core import AdversarialNegativeGenerator, SPACLCriterion


def toy_cluster(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = F.normalize(torch.ones(8), dim=0)
    return F.normalize(centre + 0.2 * torch.randn(n, 8, generator=g), dim=-1)


def toy_pairs(n: int, seed: int, spread: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sources on the sphere and one hard positive each, at cosine ~0.86 to its source."""
    g = torch.Generator().manual_seed(seed)
    src = F.normalize(torch.randn(n, 16, generator=g), dim=-1)
    noise = F.normalize(torch.randn(n, 16, generator=g), dim=-1)
    return src, F.normalize(src + spread * noise, dim=-1)


def test_generator_is_residual_conditional_and_learns_the_positives_distance():
    gen = AdversarialNegativeGenerator(16, hidden_dim=64, noise_dim=8, lr=1e-3, warmup_steps=0, seed=0)
    src, positives = toy_pairs(512, 0)
    positive_cos = float((src * positives).sum(-1).mean())  # 0.86
    start = float((gen.generate(src)[:, 0] * src).sum(-1).mean())
    assert start > 0.95  # residual with a small h: a generated point starts next to its own source
    order = torch.Generator().manual_seed(1)
    late = []
    for step in range(600):
        rows = torch.randperm(512, generator=order)[:128]
        last = gen.update(positives[rows], src[rows])
        if step >= 100:
            late.append(last["generator_source_cosine"])
    fake = gen.generate(src)[:, 0]
    # G moved its points out to the positives' distance: the GAN oscillates around it (periods of ~150 steps), so
    # average 500 steps past the first 100 (seeds 0-2: 0.852, 0.851, 0.850 against 0.860)
    assert abs(sum(late) / len(late) - positive_cos) < 0.03, (sum(late) / len(late), positive_cos)
    # conditioned: a generated point is close to its own source, not to the others (unconditional G: both ~0.6)
    own, others = float((fake * src).sum(-1).mean()), float((fake @ src.T).mean())
    assert own > 0.6 and own - others > 0.5, (own, others)
    # and at the end the discriminator can no longer tell them from the positives (the GAN's equilibrium)
    assert abs(last["discriminator_real_score"] - last["discriminator_fake_score"]) < 0.05, last
    assert abs(last["generator_loss"] - math.log(2)) < 0.1, last


def test_discriminator_separates_when_generator_is_frozen():
    gen = AdversarialNegativeGenerator(16, hidden_dim=64, lr=2e-3, warmup_steps=0)
    gen.generator_optimizer.param_groups[0]["lr"] = 0.0  # freeze G: D alone must learn to separate
    src, positives = toy_pairs(128, 0, spread=1.5)  # positives at cosine ~0.55, G's points at ~0.99
    for _ in range(150):
        losses = gen.update(positives, src)
    assert losses["discriminator_real_score"] > 0.8 and losses["discriminator_fake_score"] < 0.2
    # the diagnostic reads the same D: one probability per pair, high for positives, low for G's points
    real, fake = gen.real_probability(src, positives), gen.real_probability(src, gen.generate(src)[:, 0])
    assert real.shape == fake.shape == (128,) and real.mean() > 0.8 and fake.mean() < 0.2
    with pytest.raises(ValueError, match="`candidate` must have one row per row of `src`"):
        gen.real_probability(src, positives[:5])


def test_generator_steps_runs_that_many_updates_per_call():
    src, positives = toy_pairs(32, 0)
    one = AdversarialNegativeGenerator(16, warmup_steps=0, seed=3)
    three = AdversarialNegativeGenerator(16, warmup_steps=0, seed=3, generator_steps=3)
    for _ in range(3):
        one.update(positives, src)
    three.update(positives, src)
    # same seed, same pairs: three steps in one call equal three calls of one step (noise drawn alike)
    assert three.steps == 1 and one.steps == 3
    for p, q in zip(one.parameters(), three.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    with pytest.raises(ValueError, match="`generator_steps`"):
        AdversarialNegativeGenerator(16, generator_steps=0)
    with pytest.raises(ValueError, match="aligned pairs"):
        one.update(positives, src[:5])


def test_generator_is_deterministic_under_a_seed_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = AdversarialNegativeGenerator(8, warmup_steps=0, seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b = AdversarialNegativeGenerator(8, warmup_steps=0, seed=7)
    c = AdversarialNegativeGenerator(8, warmup_steps=0, seed=8)
    src = toy_cluster(16, 3)
    for _ in range(3):
        a.update(src.flip(0), src), b.update(src.flip(0), src)
    assert torch.equal(a.generate(src), b.generate(src))
    assert not torch.equal(a.generate(src), c.generate(src))


def test_warmup_and_state_dict_resume():
    gen = AdversarialNegativeGenerator(8, warmup_steps=2, seed=0)
    src = toy_cluster(4, 0)
    assert gen.generate(src).shape == (4, 0, 8)
    gen.update(src, src)
    assert not gen.active
    gen.update(src, src)
    assert gen.active and gen.generate(src).shape == (4, 1, 8)
    # resume: a copy restored from a saved state continues exactly like the original
    buffer = io.BytesIO()
    torch.save(gen.state_dict(), buffer)
    buffer.seek(0)
    restored = AdversarialNegativeGenerator(8, warmup_steps=2, seed=99)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    assert restored.steps == gen.steps
    for _ in range(3):
        assert gen.update(src, src) == restored.update(src, src)
    assert torch.equal(gen.generate(src), restored.generate(src))


def test_resuming_with_a_new_lr_applies_it_and_warns():
    old = AdversarialNegativeGenerator(8, lr=1e-4, warmup_steps=0)
    src = toy_cluster(4, 0)
    old.update(src.flip(0), src)
    new = AdversarialNegativeGenerator(8, lr=1e-3, warmup_steps=0)
    with pytest.warns(UserWarning, match="lr=0.001.*ran at 0.0001"):
        new.load_state_dict(old.state_dict())
    for optimizer in (new.generator_optimizer, new.discriminator_optimizer):
        assert all(group["lr"] == 1e-3 for group in optimizer.param_groups)
    assert new.steps == 1  # the rest of the state is restored
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same lr resumes silently
        AdversarialNegativeGenerator(8, lr=1e-4, warmup_steps=0).load_state_dict(old.state_dict())


def test_generator_update_does_not_change_encoder_gradients():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(8, 8)
    x = torch.randn(16, 3, 8)
    with_gen = SPACLCriterion(temperature=0.1, generator=AdversarialNegativeGenerator(8, warmup_steps=5))
    without = SPACLCriterion(temperature=0.1)
    with_gen.train()
    encoder_copy = copy.deepcopy(encoder)
    with_gen(encoder(x)).backward()  # warm-up: the GAN trains but contributes no negatives
    without(encoder_copy(x)).backward()
    for p, q in zip(encoder.parameters(), encoder_copy.parameters()):
        assert torch.equal(p.grad, q.grad)
    assert with_gen.generator.steps == 1
    # and no encoder-side gradient reached the GAN's parameters
    assert all(p.grad is None for p in with_gen.generator.parameters())


def test_generated_negatives_join_screening_with_false_negative_guard():
    torch.manual_seed(0)
    gen = AdversarialNegativeGenerator(8, warmup_steps=0, num_generated=4)
    criterion = SPACLCriterion(temperature=0.1, generator=gen)
    views = torch.randn(32, 3, 8)
    loss, stats = criterion(views, return_stats=True)
    assert torch.isfinite(loss)
    assert 0 <= stats["generated_negatives_per_anchor"] <= 4
    assert "generator_loss" in stats and "discriminator_loss" in stats
    # evaluation (no grad) uses the generator but does not train it
    steps = gen.steps
    with torch.no_grad():
        criterion(views)
    assert gen.steps == steps


def test_generator_argument_checks():
    with pytest.raises(ValueError, match="`embedding_dim`"):
        AdversarialNegativeGenerator(0)
    with pytest.raises(ValueError, match="`betas`"):
        AdversarialNegativeGenerator(8, betas=(0.5, 1.0))
    with pytest.raises(ValueError, match="`src`"):
        AdversarialNegativeGenerator(8, warmup_steps=0).generate(torch.randn(3, 5))


class FixedGenerator(AdversarialNegativeGenerator):
    """Generates a known point: the source itself (a false negative) or its opposite (a true one)."""

    def __init__(self, sign: float):
        super().__init__(8, warmup_steps=0)
        self.sign = sign

    def generate_unchecked(self, src):  # what the criterion calls (generate() checks, then calls it)
        return self.sign * F.normalize(src, dim=-1)[:, None]


@pytest.mark.parametrize("sign, expected", [(1.0, 0.0), (-1.0, 1.0)])
def test_false_negative_guard_drops_points_closer_than_the_farthest_positive(sign, expected):
    views = torch.randn(8, 2, 8, generator=torch.Generator().manual_seed(0))
    criterion = SPACLCriterion(dynamic_anchor=False, generator=FixedGenerator(sign))
    criterion.eval()
    _, stats = criterion(views, return_stats=True)
    assert stats["generated_negatives_per_anchor"] == expected


def test_copy_state_from_first_rank_takes_rank_zeros_weights_and_moments():
    src, real = toy_pairs(12, 0)
    first, other = AdversarialNegativeGenerator(16, seed=0), AdversarialNegativeGenerator(16, seed=0)
    first.update(real, src), other.update(real.flip(0), src)  # same noise, different updates and moments

    def flat(gen):
        return torch.cat([t.reshape(-1) for t in gen._synchronized_tensors()])

    assert not torch.equal(flat(other), flat(first))
    untouched = copy.deepcopy(other)
    other.copy_state_from_first_rank(lambda t: t)  # one process: the gather returns its input
    assert torch.equal(flat(other), flat(untouched))
    other.copy_state_from_first_rank(lambda t: torch.cat([flat(first), t]))  # this is rank 1 of 2
    for mine, theirs in zip(other.state_dict().values(), first.state_dict().values(), strict=True):
        if torch.is_tensor(mine):
            assert torch.equal(mine, theirs)
    for name in ("generator_optimizer", "discriminator_optimizer"):
        states = [getattr(g, name).state_dict()["state"] for g in (other, first)]
        for index, moments in states[1].items():
            assert torch.equal(states[0][index]["exp_avg"], moments["exp_avg"])
            assert torch.equal(states[0][index]["exp_avg_sq"], moments["exp_avg_sq"])
    # from here both ranks make the same update
    assert other.update(real, src) == first.update(real, src)
    assert torch.equal(flat(other), flat(first))


def autograd_update(gen: AdversarialNegativeGenerator, real: torch.Tensor, src: torch.Tensor, noise: torch.Tensor):
    """The GAN step written with autograd and torch.optim.Adam (the implementation before the closed form)."""
    d_opt = torch.optim.Adam(gen.discriminator.parameters(), lr=gen.lr, betas=gen.betas)
    g_opt = torch.optim.Adam(gen.generator.parameters(), lr=gen.lr, betas=gen.betas)
    fake = F.normalize(src + gen.generator(torch.cat([src, noise], 1)), dim=-1)
    real_score, fake_score = gen._score(src, real), gen._score(src, fake.detach())
    d_loss = F.binary_cross_entropy_with_logits(real_score, torch.ones_like(real_score)) + \
        F.binary_cross_entropy_with_logits(fake_score, torch.zeros_like(fake_score))
    d_opt.zero_grad()
    d_loss.backward()
    d_opt.step()
    fool = gen._score(src, fake)
    g_loss = F.binary_cross_entropy_with_logits(fool, torch.ones_like(fool))
    g_opt.zero_grad()
    g_loss.backward()
    g_opt.step()


def test_closed_form_update_equals_autograd_and_adam():
    src, real = toy_pairs(24, 3)
    closed = AdversarialNegativeGenerator(16, hidden_dim=32, noise_dim=8, warmup_steps=0, lr=1e-3, seed=5)
    reference = copy.deepcopy(closed)
    noise = reference._noise(24).clone()  # the same counter-based draw the closed form makes
    closed.update(real, src)
    autograd_update(reference, real, src, noise)
    for p, q in zip(closed.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    start = AdversarialNegativeGenerator(16, hidden_dim=32, noise_dim=8, warmup_steps=0, lr=1e-3, seed=5)
    moved = max(float((p - q).abs().max()) for p, q in zip(closed.parameters(), start.parameters()))
    assert moved > 1e-4  # the step did something (lr 1e-3 Adam moves every weight by about lr)
