"""Rank, world size and an all-gather that carries gradients.

The gather is an object passed to the criterion (never monkey-patched), so tests can simulate ranks in one
process; real runs use :class:`TorchDistributedGather`, which is a no-op outside ``torch.distributed``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Rank of this process, ``0`` outside ``torch.distributed``.

    Examples:
        >>> get_rank()  # a single process
        0
    """
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes, ``1`` outside ``torch.distributed``.

    Examples:
        >>> get_world_size()  # a single process
        1
    """
    return dist.get_world_size() if is_distributed() else 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient for this rank's slice.

    Each rank's loss uses the gathered tensor; the gradient of the sum of all ranks' losses with respect to
    this rank's input is the all-reduced (summed) gradient of the gathered tensor, restricted to this slice.
    An all-reduce works on every backend (gloo has no reduce-scatter).
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rank, ctx.batch = dist.get_rank(), tensor.shape[0]
        chunks = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(chunks, tensor.contiguous())
        return torch.cat(chunks, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (rank order), keeping gradients.

    Every rank must pass the same shape. Outside ``torch.distributed`` the tensor is returned unchanged. The
    backward all-reduces the incoming gradient and returns this rank's slice, so that each rank's parameters get
    the gradient of every rank's use of its rows (what data-parallel contrastive losses need).

    Args:
        tensor: this rank's rows.

    Shape:
        - tensor: ``[B, ...]``
        - output: ``[world_size * B, ...]``

    Examples:
        >>> rows = torch.randn(4, 8, requires_grad=True)
        >>> all_gather_with_grad(rows).shape  # one process: unchanged; under torchrun: [world_size * 4, 8]
        torch.Size([4, 8])
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return tensor
    if tensor.requires_grad:
        return _GatherWithGrad.apply(tensor)
    chunks = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(chunks, tensor.contiguous())
    return torch.cat(chunks, dim=0)


@runtime_checkable
class Gather(Protocol):
    """What the criterion needs from a process group: this rank, the world size and a gather with gradients.

    Pass your own to :class:`~spacl_hf.core.SPACLCriterion` (``gather=``) for other process groups, or to simulate
    ranks in a test.

    Examples:
        >>> class TwoRanksOfOne:  # rank 0 of 2, the other rank sends zeros
        ...     rank, world_size = 0, 2
        ...     def __call__(self, tensor):
        ...         return torch.cat([tensor, torch.zeros_like(tensor)])
        >>> isinstance(TwoRanksOfOne(), Gather)
        True
    """

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def __call__(self, tensor: Tensor) -> Tensor: ...


class TorchDistributedGather:
    """:class:`Gather` over the default ``torch.distributed`` process group (identity when not initialised).

    Examples:
        >>> gather = TorchDistributedGather()
        >>> gather.rank, gather.world_size, gather(torch.ones(2)).shape  # a single process
        (0, 1, torch.Size([2]))
    """

    @property
    def rank(self) -> int:
        return get_rank()

    @property
    def world_size(self) -> int:
        return get_world_size()

    def __call__(self, tensor: Tensor) -> Tensor:
        return all_gather_with_grad(tensor)
