"""Memory measured on a running model: the one home of the package's memory meters.

- :class:`SavedTensorMeter`: the bytes of the tensors autograd saves for the backward pass (what
  a training step holds between forward and backward; chapter 1.5);
- :class:`TensorMemoryTracker`: every tensor storage created in a block, live and peak, on any
  device (what ``vitcourse bench model --checkpointing`` reports off CUDA);
- :func:`measure_step_memory`: one training step's memory, from CUDA's allocator statistics or
  from the tracker.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ..training.runtime import synchronize

__all__ = ["SavedTensorMeter", "TensorMemoryTracker", "measure_step_memory"]


def _tensors(value, name: str) -> list[torch.Tensor]:
    """A tensor or an iterable of tensors, as a list."""
    tensors = [value] if isinstance(value, torch.Tensor) else list(value) if isinstance(value, Iterable) else None
    if tensors is None or not all(isinstance(tensor, torch.Tensor) for tensor in tensors):
        raise TypeError(f"{name} must be a tensor or an iterable of tensors (such as model.parameters()), "
                        f"got {type(value).__name__}")
    return tensors


class SavedTensorMeter:
    """Count the bytes of the tensors autograd saves for backward while the block runs.

    ``with SavedTensorMeter(exclude=model.parameters()) as meter: loss = model(x).sum()``
    then ``meter.total_bytes``. Each tensor saved for backward is traced to its storage, and
    each storage is counted once (``q``, ``k`` and ``v`` are views of one ``qkv`` output, and
    one tensor is often saved by several operations); storages of ``exclude`` (the
    parameters, which live in memory whether or not we train) are not counted. This is the
    activation memory a training step holds between forward and backward; the temporaries
    that live only inside one operation are not part of it.
    """

    def __init__(self, exclude=()):
        self._excluded = {tensor.untyped_storage().data_ptr() for tensor in _tensors(exclude, "exclude")}
        self._storages: dict[int, int] = {}
        self._hooks = None

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in self._excluded:
            self._storages[pointer] = storage.nbytes()
        return tensor  # keep the tensor itself: measuring must not change what is saved

    def __enter__(self) -> SavedTensorMeter:
        self._storages.clear()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._hooks = None

    @property
    def total_bytes(self) -> int:
        """Bytes of the distinct storages saved for backward inside the ``with`` block."""
        return sum(self._storages.values())

    @property
    def num_storages(self) -> int:
        return len(self._storages)


class TensorMemoryTracker(TorchDispatchMode):
    """Bytes of tensor storage created inside the ``with`` block and not yet freed.

    Every operator's output storage is counted once when it first appears and subtracted when
    Python frees it (a weakref finalizer), so ``live`` is the memory of the tensors created in
    the block that are still alive, and ``peak`` its maximum. Tensors that existed before
    (parameters, inputs) are not counted. Works on any device; library-internal scratch
    buffers (e.g. oneDNN's) are invisible to it.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # An output sharing an input's storage (a view, an in-place op) allocated nothing; this
        # also keeps views of parameters and inputs, made before the block, out of the count.
        inputs = {
            id(t.untyped_storage())
            for t in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor) and t.device.type != "meta"
        }
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                key = id(storage)
                if key not in self._seen and key not in inputs:
                    self._seen.add(key)
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        return out


def measure_step_memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str, autocast) -> dict[str, float]:
    """Memory kept for backward and peak memory of one training step, in bytes, and which
    method measured them."""
    def loss_fn():
        with autocast():
            return F.cross_entropy(model(x).float(), y)

    model.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        synchronize(device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        loss = loss_fn()
        synchronize(device)
        kept = torch.cuda.memory_allocated() - base
        loss.backward()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated() - base
        method = "CUDA caching allocator statistics"
    else:
        with TensorMemoryTracker() as tracker:
            loss = loss_fn()
            kept = tracker.live
            loss.backward()
        peak = tracker.peak
        method = "tensor storages tracked by a TorchDispatchMode (TensorMemoryTracker)"
    model.zero_grad(set_to_none=True)
    del loss
    return {"kept": kept, "peak": peak, "method": method}
