"""Where and how a model runs: the device, bf16 autocast, CPU threads, distributed processes.

- :func:`default_device`: cuda, then mps, then cpu; :func:`resolve_device` reads a ``device=``
  argument (``None``, ``'auto'`` or a name); :func:`model_device` is where a model lives;
- :func:`autocast`: bf16 autocast on CUDA by default (``amp=True`` runs the same path on the CPU);
- :func:`num_threads` / :func:`choose_threads`: one thread for small models on the CPU;
- :func:`distributed_setup`: DistributedDataParallel under ``torchrun``;
- :func:`synchronize`: wait for a device's queued work before reading a clock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
import torch.nn as nn

from ..validation import as_device, check_int

__all__ = [
    "default_device",
    "resolve_device",
    "model_device",
    "autocast",
    "num_threads",
    "choose_threads",
    "SMALL_MODEL_PARAMETERS",
    "distributed_setup",
    "synchronize",
]


def default_device() -> torch.device:
    """The best device here: ``cuda``, then ``mps`` (Apple GPUs), then ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device) -> torch.device | None:
    """A ``device=`` argument: ``None`` stays None (use the model's), ``'auto'`` is :func:`default_device`."""
    if device is None:
        return None
    if isinstance(device, str) and device == "auto":
        return default_device()
    return as_device(device, "device", "None, 'auto' or a torch device name such as 'cpu' or 'cuda'")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for an empty model."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def autocast(device: torch.device, amp: bool | None) -> AbstractContextManager:
    """bf16 autocast: on by default on CUDA; ``amp=True`` also runs it on the CPU, which is
    slow there but follows the same mixed-precision path (how the tests reach it)."""
    enabled = (device.type == "cuda") if amp is None else bool(amp)
    if not enabled:
        return nullcontext()
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"amp=True needs a CUDA or CPU device (bf16 autocast), got {device}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (``None``: leave as is)."""
    previous = torch.get_num_threads()
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


# Below this many parameters a model's CPU kernels are too small to split across threads: the
# synchronisation costs more than it saves (and on a busy machine, much more: 20x measured here
# on a 2-core CPU shared with other jobs), so fit and evaluate run them on one thread.
SMALL_MODEL_PARAMETERS = 2_000_000


def choose_threads(model: nn.Module, device: torch.device, threads: int | None) -> int | None:
    """The CPU threads to train or evaluate ``model`` with (``None``: leave torch's setting)."""
    if device.type != "cpu":
        return None
    if threads is None:
        small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS
        return 1 if small else None
    return check_int(threads, "cpu_threads", "a positive int or None", lambda v: v >= 1)


def distributed_setup(distributed) -> tuple[bool, int, int]:
    """(active, rank, world_size); initialises the process group under torchrun if needed."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if distributed is False or (distributed == "auto" and world <= 1 and not (dist.is_available() and dist.is_initialized())):
        return False, 0, 1
    if distributed not in (True, False, "auto"):
        raise ValueError(f"distributed must be True, False or 'auto', got {distributed!r}")
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build")
    if not dist.is_initialized():
        if "RANK" not in os.environ:
            raise RuntimeError("distributed=True needs torchrun (RANK/WORLD_SIZE are not set)")
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return True, dist.get_rank(), dist.get_world_size()


def synchronize(device) -> None:
    """Wait for the device's queued work (GPU kernels run asynchronously); no-op on the CPU."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()
