"""Adversarially generated hard negatives in embedding space (SPACL component 3)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_int, check_positive_float, check_tensor


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.LeakyReLU(0.2), nn.Linear(hidden_dim, out_dim))


class AdversarialNegativeGenerator(nn.Module):
    """A small GAN in embedding space whose generator makes negatives that look like the hard positives.

    ``G(src, noise)`` maps the detached embedding of a sample's original view plus Gaussian noise to a unit
    vector; ``D`` scores embeddings. :meth:`update` trains ``D`` to tell the selected hard positives (real)
    from generated points (fake) and ``G`` to fool ``D`` (non-saturating loss), one Adam step each, with its
    own optimizers and on detached inputs: the encoder's gradients are never touched. :meth:`generate` returns
    detached negatives, and nothing until ``warmup_steps`` updates have been made.

    Everything random (initial weights, noise) comes from ``seed``, so every data-parallel rank that feeds
    the same gathered inputs holds the same generator. The optimizer state, the noise generator's state and
    the step count are part of :meth:`state_dict`, so a resumed run continues exactly.

    Args:
        embedding_dim: dimension ``D`` of the embeddings.
        num_generated: negatives generated per anchor.
        hidden_dim: width of the generator and discriminator MLPs.
        noise_dim: dimension of the Gaussian noise.
        lr: Adam learning rate of both networks.
        betas: Adam betas.
        warmup_steps: updates before generated negatives are used.
        seed: seed of the initial weights and of the noise.
        update_rows: at most this many real and source rows per update, drawn with the seeded noise generator
            (so every process draws the same ones); keeps the GAN's cost flat in the batch size.

    Shape:
        - :meth:`generate`: ``src [B, D]`` -> ``[B, num_generated, D]`` (``[B, 0, D]`` during warm-up)
        - :meth:`update`: ``real [M, D]``, ``src [B, D]`` -> dict of float losses

    Raises:
        ValueError: on an out-of-range argument, or inputs of the wrong shape / non-finite values.

    Example:
        >>> gen = AdversarialNegativeGenerator(embedding_dim=16, warmup_steps=0)
        >>> src = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
        >>> gen.update(real=src, src=src)["generator_loss"] > 0
        True
        >>> gen.generate(src).shape
        torch.Size([4, 1, 16])
    """

    def __init__(
        self,
        embedding_dim: int,
        num_generated: int = 1,
        hidden_dim: int = 128,
        noise_dim: int = 32,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        warmup_steps: int = 100,
        seed: int = 0,
        update_rows: int = 256,
    ) -> None:
        super().__init__()
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1)
        self.num_generated = check_int("num_generated", num_generated, 1)
        self.hidden_dim = check_int("hidden_dim", hidden_dim, 1)
        self.noise_dim = check_int("noise_dim", noise_dim, 1)
        self.lr = check_positive_float("lr", lr)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"`betas` must be two numbers in [0, 1), got {betas!r}.")
        self.betas = (float(betas[0]), float(betas[1]))
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0)
        self.seed = check_int("seed", seed, 0)
        self.update_rows = check_int("update_rows", update_rows, 1)

        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global RNG
            torch.manual_seed(self.seed)
            self.generator = _mlp(embedding_dim + noise_dim, hidden_dim, embedding_dim)
            self.discriminator = _mlp(embedding_dim, hidden_dim, 1)
        self.generator_optimizer = torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=self.betas)
        self.discriminator_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas)
        self.noise = torch.Generator().manual_seed(self.seed)  # CPU noise: the same on every device
        self.steps = 0

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "embedding_dim": self.embedding_dim,
            "num_generated": self.num_generated,
            "hidden_dim": self.hidden_dim,
            "noise_dim": self.noise_dim,
            "lr": self.lr,
            "betas": self.betas,
            "warmup_steps": self.warmup_steps,
            "seed": self.seed,
            "update_rows": self.update_rows,
        }

    @property
    def active(self) -> bool:
        """Whether warm-up is over and :meth:`generate` returns negatives."""
        return self.steps >= self.warmup_steps

    def _check_src(self, name: str, value: Tensor) -> None:
        check_tensor(name, value, ndim=2, floating=True, finite=True)
        if value.shape[1] != self.embedding_dim:
            raise ValueError(f"`{name}` must be [N, {self.embedding_dim}], got {tuple(value.shape)}.")

    def _param_device(self) -> torch.device:
        return next(self.parameters()).device

    def _fake(self, src: Tensor, per_source: int) -> Tensor:
        """``per_source`` generated unit vectors per source row, ``[B * per_source, D]`` (row-major)."""
        src = F.normalize(src.detach().float(), dim=-1).to(self._param_device())
        noise = torch.randn(src.shape[0] * per_source, self.noise_dim, generator=self.noise).to(src.device)
        inputs = torch.cat([src.repeat_interleave(per_source, dim=0), noise], dim=1)
        return F.normalize(self.generator(inputs), dim=-1)

    def _subsample(self, rows: Tensor) -> Tensor:
        if rows.shape[0] <= self.update_rows:
            return rows
        chosen = torch.randperm(rows.shape[0], generator=self.noise)[: self.update_rows]
        return rows[chosen.to(rows.device)]

    @torch.no_grad()
    def generate(self, src: Tensor) -> Tensor:
        """Generated negatives for each source embedding, detached; none during warm-up."""
        self._check_src("src", src)
        if not self.active:
            return src.new_zeros(src.shape[0], 0, src.shape[1])
        with torch.autocast(device_type=src.device.type, enabled=False):
            fake = self._fake(src, self.num_generated)
        return fake.view(src.shape[0], self.num_generated, -1).to(device=src.device, dtype=src.dtype)

    def update(self, real: Tensor, src: Tensor) -> dict[str, float]:
        """One discriminator step and one generator step on detached inputs; returns their losses."""
        self._check_src("real", real)
        self._check_src("src", src)
        device = self._param_device()
        real, src = self._subsample(real), self._subsample(src)
        with torch.enable_grad(), torch.autocast(device_type=device.type, enabled=False):
            real = F.normalize(real.detach().float(), dim=-1).to(device)
            fake = self._fake(src, 1)
            real_score = self.discriminator(real)
            fake_score = self.discriminator(fake.detach())
            disc_loss = F.binary_cross_entropy_with_logits(
                real_score, torch.ones_like(real_score)
            ) + F.binary_cross_entropy_with_logits(fake_score, torch.zeros_like(fake_score))
            self.discriminator_optimizer.zero_grad(set_to_none=True)
            disc_loss.backward()
            self.discriminator_optimizer.step()

            fool_score = self.discriminator(fake)
            gen_loss = F.binary_cross_entropy_with_logits(fool_score, torch.ones_like(fool_score))
            self.generator_optimizer.zero_grad(set_to_none=True)
            gen_loss.backward()
            self.generator_optimizer.step()
            # the generator step also left gradients on D; clear both so nothing leaks into other optimizers
            self.generator_optimizer.zero_grad(set_to_none=True)
            self.discriminator_optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        return {
            "generator_loss": float(gen_loss.detach()),
            "discriminator_loss": float(disc_loss.detach()),
            "discriminator_real_score": float(torch.sigmoid(real_score.detach()).mean()),
            "discriminator_fake_score": float(torch.sigmoid(fake_score.detach()).mean()),
        }

    def get_extra_state(self) -> dict[str, Any]:
        # Carried inside state_dict(), so a checkpoint of any parent module resumes the GAN exactly.
        return {
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "noise": self.noise.get_state(),
            "steps": self.steps,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        self.noise.set_state(state["noise"])
        self.steps = int(state["steps"])
