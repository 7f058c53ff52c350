"""Peak memory of a piece of PyTorch work, on CPU as on CUDA.

CUDA has ``torch.cuda.max_memory_allocated``. The CPU allocator keeps no such counter, so on CPU a
``TorchDispatchMode`` sees every tensor that an aten op returns (forward and backward alike), counts each
storage once while any tensor on it is alive, and records the peak of the live bytes. Tensors that existed
before the measured call are not counted: the figure is what the call itself allocates at its peak.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """A context (a dispatch mode) that records ``peak``: the most bytes of CPU tensors alive at once among those
    created inside it. Enter and exit it by hand to span work you do not call yourself (a trainer's step)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.refs: dict[int, list[int]] = {}  # storage address -> [bytes, live tensors on it]

    def _release(self, key: int) -> None:
        entry = self.refs.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
                continue
            storage = tensor.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0:
                continue
            if key in self.refs:
                self.refs[key][1] += 1
            else:
                self.refs[key] = [size, 1]
                self.live += size
                self.peak = max(self.peak, self.live)
            weakref.finalize(tensor, self._release, key)
        return out


def peak_memory_bytes(work: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated while ``work()`` runs (its result is dropped before returning)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        work()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    tracker = LiveBytes()
    with tracker:
        work()
    return tracker.peak
