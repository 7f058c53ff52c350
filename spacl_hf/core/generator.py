"""Adversarially generated hard negatives in embedding space (SPACL component 3)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_int, check_positive_float, check_tensor
from .counter_noise import counter_normal, counter_uniform

_SLOPE = 0.2  # LeakyReLU's negative slope in both networks


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.LeakyReLU(_SLOPE), nn.Linear(hidden_dim, out_dim))


def mlp_forward(mlp: nn.Sequential, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """``Linear -> LeakyReLU -> Linear`` on ``x [M, in]``, with what :func:`mlp_backward` needs."""
    first, last = mlp[0], mlp[2]
    pre = torch.addmm(first.bias, x, first.weight.t())
    hidden = F.leaky_relu(pre, _SLOPE)
    return torch.addmm(last.bias, hidden, last.weight.t()), (x, pre, hidden)


def mlp_backward(
    mlp: nn.Sequential, saved: tuple[Tensor, Tensor, Tensor], grad_out: Tensor, params: bool = True,
    inputs: bool = False,
) -> tuple[list[Tensor] | None, Tensor | None]:
    """The closed-form backward of :func:`mlp_forward`: gradients of the four parameters (weight, bias, weight,
    bias; ``params``) and of the input (``inputs``) given ``grad_out [M, out]``. A handful of matmuls, no autograd
    graph: the GAN's update is then a fixed sequence of kernels (tested against autograd)."""
    x, pre, hidden = saved
    first, last = mlp[0], mlp[2]
    grad_pre = torch.ops.aten.leaky_relu_backward(grad_out @ last.weight, pre, _SLOPE, False)
    grad_x = grad_pre @ first.weight if inputs else None
    if not params:
        return None, grad_x
    grads = [grad_pre.t() @ x, grad_pre.sum(0), grad_out.t() @ hidden, grad_out.sum(0)]
    return grads, grad_x


def adam_step(optimizer: torch.optim.Adam, grads: list[Tensor]) -> None:
    """One step of ``optimizer`` (a fused, single-group Adam) with explicit gradients: its own state, its own
    hyper-parameters (a changed ``lr`` applies), two kernels. The state is Adam's, so ``state_dict()`` and resume
    are Adam's too."""
    group = optimizer.param_groups[0]
    params = group["params"]
    states = [optimizer.state[p] for p in params]
    if not states[0]:  # Adam's own lazy initial state
        for param, state in zip(params, states):
            state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    steps = [state["step"] for state in states]
    torch._foreach_add_(steps, 1)
    beta1, beta2 = group["betas"]
    torch._fused_adam_(
        params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [], steps,
        lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
        amsgrad=False, maximize=False,
    )  # fmt: skip


class AdversarialNegativeGenerator(nn.Module):
    """A small conditional GAN in embedding space whose generator makes negatives that look like hard positives.

    ``G`` is residual and conditioned on its source: ``G(src, noise) = normalize(src + h([src, noise]))``, with
    the last layer of ``h`` scaled by ``init_scale`` so that a generated point starts next to its own sample
    (not in a random direction). ``D`` is conditioned on the source too: it scores pairs ``(src, x)`` from the
    features ``[src, x, src * x]``; a pair is real when ``x`` is a selected hard positive of ``src`` and fake
    when ``x = G(src, .)``. :meth:`update` makes ``generator_steps`` Adam steps of ``D`` then ``G``
    (non-saturating loss) with their own optimizers on detached inputs, so the encoder's gradients are never
    touched. :meth:`generate` returns detached negatives, and nothing until ``warmup_steps`` updates (training
    steps) have been made. An unconditional ``D`` with a non-residual ``G`` let ``G`` ignore its input: its
    points were no closer to their own source than to other samples and carried ~1e-4 of the softmax weight.

    Everything random (initial weights, noise) comes from ``seed``, so every data-parallel rank that feeds
    the same gathered inputs draws the same noise and starts from the same generator. The noise is counter-based
    (:mod:`~spacl_hf.core.counter_noise`): drawn on the generator's device, with no generator object, so the whole
    update is a fixed sequence of kernels with closed-form gradients (no autograd graph, no host read) that
    ``torch.compile`` can trace. Float results are not
    bit-reproducible across processes (threaded BLAS reductions differ under load), so after each update the
    criterion copies the first rank's weights and Adam moments to the others (:meth:`copy_state_from_first_rank`,
    as DDP broadcasts buffers). The optimizer state, the noise counter and the step count are part of
    :meth:`state_dict`, so a resumed run continues exactly.

    Args:
        embedding_dim: dimension ``D`` of the embeddings.
        num_generated: negatives generated per anchor.
        hidden_dim: width of the generator and discriminator MLPs.
        noise_dim: dimension of the Gaussian noise.
        lr: Adam learning rate of both networks.
        betas: Adam betas.
        warmup_steps: updates (training steps) before generated negatives are used.
        seed: seed of the initial weights and of the noise.
        update_rows: at most this many (source, positive) pairs per update, drawn with the seeded noise (so every
            process draws the same ones); keeps the GAN's cost flat in the batch size.
        generator_steps: discriminator and generator steps per :meth:`update` (per training step).
        init_scale: scale of ``h``'s last layer at initialisation; small keeps generated points near their source.

    Shape:
        - :meth:`generate`: ``src [B, D]`` -> ``[B, num_generated, D]`` (``[B, 0, D]`` during warm-up)
        - :meth:`update`: ``real [M, D]``, ``src [M, D]`` (row ``m`` of ``real`` is a hard positive of row ``m`` of
          ``src``) -> dict of float losses and scores

    Raises:
        ValueError: on an out-of-range argument, or inputs of the wrong shape / non-finite values.

    Examples:
        >>> gen = AdversarialNegativeGenerator(embedding_dim=16, warmup_steps=0)
        >>> src = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
        >>> positives = torch.nn.functional.normalize(src + 0.5 * torch.randn(4, 16), dim=-1)
        >>> gen.update(real=positives, src=src)["generator_loss"] > 0
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
        generator_steps: int = 1,
        init_scale: float = 0.1,
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
        self.generator_steps = check_int("generator_steps", generator_steps, 1)
        self.init_scale = check_positive_float("init_scale", init_scale)

        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global RNG
            torch.manual_seed(self.seed)
            self.generator = _mlp(embedding_dim + noise_dim, hidden_dim, embedding_dim)
            self.discriminator = _mlp(3 * embedding_dim, hidden_dim, 1)
        with torch.no_grad():  # h starts small: G(src, .) starts next to src
            self.generator[-1].weight.mul_(self.init_scale)
            self.generator[-1].bias.mul_(self.init_scale)
        # fused Adam: one kernel per network and step instead of a dozen per parameter (CPU and CUDA support it)
        self.generator_optimizer = torch.optim.Adam(
            self.generator.parameters(), lr=self.lr, betas=self.betas, fused=True
        )
        self.discriminator_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=self.lr, betas=self.betas, fused=True
        )
        # counters as device tensors: a compiled step neither reads them back nor recompiles as they change
        self.register_buffer("step_count", torch.zeros((), dtype=torch.int64), persistent=False)
        self.register_buffer("noise_counter", torch.zeros((), dtype=torch.int64), persistent=False)
        self.noise_seed = self.seed  # with the counter, the noise stream's state (restored with it on resume)

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
            "generator_steps": self.generator_steps,
            "init_scale": self.init_scale,
        }

    def for_dimension(self, embedding_dim: int) -> AdversarialNegativeGenerator:
        """A new generator with these settings (seed included) for embeddings of another size: the adversary of
        truncated (Matryoshka) embeddings, whose geometry is not the full embeddings' one.

        Args:
            embedding_dim: the other size.

        Examples:
            >>> AdversarialNegativeGenerator(64).for_dimension(16).embedding_dim
            16
        """
        config = self.get_config_dict()
        config["embedding_dim"] = embedding_dim
        return AdversarialNegativeGenerator(**config)

    @property
    def steps(self) -> int:
        """Updates (training steps) made so far (reads the device counter)."""
        return int(self.step_count)

    @steps.setter
    def steps(self, value: int) -> None:
        self.step_count.fill_(int(value))

    @property
    def active(self) -> bool:
        """Whether warm-up is over and :meth:`generate` returns negatives."""
        return self.steps >= self.warmup_steps

    def active_mask(self) -> Tensor:
        """``active`` as a 0-dim bool tensor on the generator's device: the hot path masks generated negatives with
        it instead of branching on a value read back from the device."""
        return self.step_count >= self.warmup_steps

    def _check_src(self, name: str, value: Tensor) -> None:
        check_tensor(name, value, ndim=2, floating=True, finite=True)
        if value.shape[1] != self.embedding_dim:
            raise ValueError(f"`{name}` must be [N, {self.embedding_dim}], got {tuple(value.shape)}.")

    def _param_device(self) -> torch.device:
        return next(self.parameters()).device

    def _noise(self, rows: int) -> Tensor:
        """``[rows, noise_dim]`` Gaussian noise at the current counter, which then advances."""
        noise = counter_normal(self.noise_seed, self.noise_counter, rows, self.noise_dim)
        self.noise_counter.add_(1)
        return noise

    def _fake(self, src: Tensor, per_source: int) -> Tensor:
        """``per_source`` generated unit vectors per source row, ``[B * per_source, D]`` (row-major)."""
        src = F.normalize(src.detach().float(), dim=-1).to(self._param_device())
        if per_source > 1:
            src = src.repeat_interleave(per_source, dim=0)
        hidden, _ = mlp_forward(self.generator, torch.cat([src, self._noise(src.shape[0])], dim=1))
        return F.normalize(src + hidden, dim=-1)

    def _score(self, src: Tensor, candidate: Tensor) -> Tensor:
        """``D``'s logit that ``candidate`` is a hard positive of ``src`` (row by row)."""
        return self.discriminator(torch.cat([src, candidate, src * candidate], dim=1))

    def _subsample(self, weight: Tensor | None, *rows: Tensor) -> tuple[Tensor | None, tuple[Tensor, ...]]:
        """The same random subset of at most ``update_rows`` rows of each aligned tensor, and their weights.

        Rows of weight 0 (no real pair) are drawn last; the subset's size depends on shapes only, so drawing it
        reads nothing back from the device.
        """
        if rows[0].shape[0] <= self.update_rows:
            return weight, rows
        keys = counter_uniform(self.noise_seed, self.noise_counter, rows[0].shape[0]).to(rows[0].device)
        self.noise_counter.add_(1)
        if weight is not None:
            keys = keys + (weight <= 0)  # weightless rows after every real one
        chosen = keys.topk(self.update_rows, largest=False, sorted=False).indices
        return (None if weight is None else weight[chosen]), tuple(r[chosen] for r in rows)

    @torch.no_grad()
    def generate(self, src: Tensor) -> Tensor:
        """Generated negatives for each source embedding, detached; none during warm-up."""
        self._check_src("src", src)
        if not self.active:
            return src.new_zeros(src.shape[0], 0, src.shape[1])
        return self.generate_unchecked(src)

    @torch.no_grad()
    def generate_unchecked(self, src: Tensor) -> Tensor:
        """:meth:`generate` without the argument checks and without the warm-up branch (the criterion's hot path:
        no host read): it always generates; mask the result with :meth:`active_mask` during warm-up."""
        with torch.autocast(device_type=src.device.type, enabled=False):
            fake = self._fake(src, self.num_generated)
        return fake.view(src.shape[0], self.num_generated, -1).to(device=src.device, dtype=src.dtype)

    @torch.no_grad()
    def real_probability(self, src: Tensor, candidate: Tensor) -> Tensor:
        """``D``'s probability that each row of ``candidate`` is a hard positive of the same row of ``src``: a
        diagnostic (0.5 everywhere = ``D`` has learned nothing, so ``G`` gets no signal).

        Shape:
            ``src [N, D]``, ``candidate [N, D]`` -> ``[N]``
        """
        self._check_src("src", src)
        self._check_src("candidate", candidate)
        if candidate.shape[0] != src.shape[0]:
            raise ValueError(
                f"`candidate` must have one row per row of `src` ({src.shape[0]}), got {candidate.shape[0]}."
            )
        device = self._param_device()
        with torch.autocast(device_type=device.type, enabled=False):
            src = F.normalize(src.float(), dim=-1).to(device)
            candidate = F.normalize(candidate.float(), dim=-1).to(device)
            return torch.sigmoid(self._score(src, candidate)).squeeze(-1)

    def update(self, real: Tensor, src: Tensor) -> dict[str, float]:
        """``generator_steps`` discriminator and generator steps on detached (source, hard positive) pairs.

        Returns the last step's losses, ``D``'s mean real / fake scores, and the mean cosine of generated points
        to their source (``generator_source_cosine``) against that of the real positives
        (``positive_source_cosine``).
        """
        self._check_src("real", real)
        self._check_src("src", src)
        if real.shape[0] != src.shape[0]:
            raise ValueError(
                f"`real` and `src` must be aligned pairs (row m of `real` a positive of row m of `src`), got "
                f"{tuple(real.shape)} and {tuple(src.shape)}."
            )
        return {name: float(value) for name, value in self.update_unchecked(real, src, with_stats=True).items()}

    @torch.no_grad()
    def update_unchecked(
        self, real: Tensor, src: Tensor, weight: Tensor | None = None, with_stats: bool = False
    ) -> dict[str, Tensor]:
        """:meth:`update` without argument checks and without host reads (the criterion's hot path).

        ``weight`` (``[M]``, 0 or 1) marks the rows that are real pairs; the losses are means over them, so a batch
        whose validity varies keeps fixed shapes (no boolean indexing). The caller skips the update when no row
        is real. Statistics (0-dim tensors) only with ``with_stats``.

        Each step: ``D`` on the real and the generated pairs in one pass, its closed-form gradient, an Adam step;
        then ``G`` through the updated ``D`` (non-saturating loss), its closed-form gradient, an Adam step.
        """
        device = self._param_device()
        weight, (real, src) = self._subsample(weight, real, src)
        with torch.autocast(device_type=device.type, enabled=False):
            real = F.normalize(real.detach().float(), dim=-1).to(device)
            src = F.normalize(src.detach().float(), dim=-1).to(device)
            rows, dim = src.shape
            # d(mean BCE)/d(logit) = (sigmoid - target) * row weight / total weight
            if weight is None:
                scale: Tensor | float = 1.0 / rows
            else:
                weight = weight.to(device=device, dtype=src.dtype)[:, None]
                scale = weight / weight.sum().clamp(min=1)
            both_src = torch.cat([src, src])
            is_real = torch.cat([torch.ones_like(src[:, :1]), torch.zeros_like(src[:, :1])])
            both_scale = scale if weight is None else torch.cat([scale, scale])
            for _ in range(self.generator_steps):
                hidden, saved_g = mlp_forward(self.generator, torch.cat([src, self._noise(rows)], dim=1))
                moved = src + hidden
                norm = moved.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                fake = moved / norm
                # D: real pairs are 1, generated ones 0
                candidates = torch.cat([real, fake])
                scores, saved_d = mlp_forward(self.discriminator, torch.cat([both_src, candidates, both_src * candidates], 1))
                probability = torch.sigmoid(scores)
                grads, _ = mlp_backward(self.discriminator, saved_d, (probability - is_real) * both_scale)
                adam_step(self.discriminator_optimizer, grads)
                # G: fool the updated D; the gradient flows through D's input and the normalisation into h
                fool, saved_f = mlp_forward(self.discriminator, torch.cat([src, fake, src * fake], 1))
                _, grad_features = mlp_backward(self.discriminator, saved_f, (torch.sigmoid(fool) - 1) * scale,
                                                params=False, inputs=True)  # fmt: skip
                grad_fake = grad_features[:, dim : 2 * dim] + grad_features[:, 2 * dim :] * src
                grad_moved = (grad_fake - fake * (fake * grad_fake).sum(-1, keepdim=True)) / norm
                grads, _ = mlp_backward(self.generator, saved_g, grad_moved)
                adam_step(self.generator_optimizer, grads)
            self.step_count.add_(1)
            if not with_stats:
                return {}

            def mean(values: Tensor) -> Tensor:
                values = values.reshape(-1, 1)
                return values.mean() if weight is None else (values * scale).sum()

            real_score, fake_score = scores[:rows], scores[rows:]
            return {
                "generator_loss": mean(F.softplus(-fool)),
                "discriminator_loss": mean(F.softplus(-real_score)) + mean(F.softplus(fake_score)),
                "discriminator_real_score": mean(probability[:rows]),
                "discriminator_fake_score": mean(probability[rows:]),
                "generator_source_cosine": mean((fake * src).sum(-1)),
                "positive_source_cosine": mean((real * src).sum(-1)),
            }

    def _synchronized_tensors(self) -> list[Tensor]:
        """Weights and Adam moments: what an update changes (the scalar step counts agree by construction)."""
        tensors = list(self.parameters())
        for optimizer in (self.generator_optimizer, self.discriminator_optimizer):
            for group in optimizer.param_groups:
                for param in group["params"]:
                    state = optimizer.state.get(param, {})
                    tensors += [state[key] for key in sorted(state) if torch.is_tensor(state[key]) and state[key].dim()]
        return tensors

    @torch.no_grad()
    def copy_state_from_first_rank(self, all_gather: Callable[[Tensor], Tensor]) -> None:
        """Overwrite this generator's weights and Adam moments with rank 0's, through ``all_gather``.

        Every rank runs the same update on the same gathered pairs, but a threaded BLAS need not round the same way
        in two processes; without this copy the ranks' generators can drift apart (seen once, with MKL on a loaded
        CPU, by the 2-process test). ``all_gather`` concatenates a tensor from every rank in rank order
        (:class:`~spacl_hf.core.dist.Gather`); in one process it returns its input and nothing changes. Every rank
        must call this at the same point: it is a collective.

        Args:
            all_gather: the process group's all-gather.
        """
        tensors = self._synchronized_tensors()
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])  # promotes to a dtype exact for every tensor
        every_rank = all_gather(flat)
        if every_rank.numel() == flat.numel():  # one process
            return
        first_rank = every_rank[: flat.numel()]
        start = 0
        for tensor in tensors:
            tensor.copy_(first_rank[start : start + tensor.numel()].view_as(tensor))
            start += tensor.numel()

    def get_extra_state(self) -> dict[str, Any]:
        # Carried inside state_dict(), so a checkpoint of any parent module resumes the GAN exactly.
        return {
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "noise_seed": self.noise_seed,
            "noise_counter": int(self.noise_counter),
            "steps": self.steps,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        saved = self.generator_optimizer.param_groups[0]["lr"]
        if saved != self.lr:  # the optimizer state carries the old rate: the configured one wins, loudly
            warnings.warn(
                f"Resuming the generator with lr={self.lr:g} (SPACLLoss `generator_lr`, "
                f"spacl_generator_lr={self.lr:g}); the checkpoint ran at {saved:g}. The new rate is applied.",
                stacklevel=2,
            )
            for optimizer in (self.generator_optimizer, self.discriminator_optimizer):
                for group in optimizer.param_groups:
                    group["lr"] = self.lr
        # checkpoints written before counter-based noise hold a generator state instead: their noise starts anew
        self.noise_seed = int(state.get("noise_seed", self.seed))
        self.noise_counter.fill_(int(state.get("noise_counter", 0)))
        self.steps = int(state["steps"])
