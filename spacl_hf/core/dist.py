"""Rank, world size and an all-gather that carries gradients.

The gather is an object passed to the criterion (never monkey-patched), so tests can simulate ranks in one
process; real runs use :class:`TorchDistributedGather`, which is a no-op outside ``torch.distributed``.
"""

from __future__ import annotations

import os
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
        return _all_gather(tensor)

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
    return _all_gather(tensor)


SHAPE_SLOTS = 8  # ndim + up to 7 sizes: a fixed-length record, so the check itself can never mismatch


def check_same_shape_on_every_rank(tensor: Tensor) -> None:
    """Raise on every rank, naming each rank's shape, when the ranks are about to gather tensors of different shapes.

    A mismatched all-gather does not raise: gloo aborts the process from C++ ("Received data size doesn't match")
    and NCCL may hang. One small all-gather of each rank's shape comes first. On CPU tensors (gloo, where every
    collective blocks anyway) it runs on every gather; on accelerators only when ``$SPACL_CHECK_GATHER_SHAPES`` is set,
    since reading its result makes the host wait for the device.

    Raises:
        ValueError: when the ranks' shapes differ.
    """
    if tensor.device.type != "cpu" and not os.environ.get("SPACL_CHECK_GATHER_SHAPES"):
        return
    if tensor.ndim >= SHAPE_SLOTS:
        raise ValueError(f"cannot gather a tensor with {tensor.ndim} dimensions (at most {SHAPE_SLOTS - 1}).")
    record = torch.full((SHAPE_SLOTS,), -1, dtype=torch.int64, device=tensor.device)
    record[0] = tensor.ndim
    record[1 : 1 + tensor.ndim] = torch.tensor(tensor.shape, dtype=torch.int64)
    records = [torch.empty_like(record) for _ in range(dist.get_world_size())]
    dist.all_gather(records, record)
    shapes = [r[1 : 1 + int(r[0])].tolist() for r in records]
    if any(shape != shapes[0] for shape in shapes):
        listed = ", ".join(f"rank {rank}: {shape}" for rank, shape in enumerate(shapes))
        raise ValueError(
            f"SPACL gathers candidates across processes, but the processes passed different shapes ({listed}). Every "
            "process must pass the same per-device batch size (keep dataloader_drop_last=True, so no process gets a "
            "short last batch), the same number of views and columns and the same embedding size."
        )


def _all_gather(tensor: Tensor) -> Tensor:
    """``dist.all_gather`` + concatenation, after :func:`check_same_shape_on_every_rank`."""
    check_same_shape_on_every_rank(tensor)
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
