"""Checkpoints of a ``fit`` run: everything a resumed run needs to end as if never interrupted.

A checkpoint is one ``torch.save`` file of tensors and plain data (read back with
``weights_only=True``): the format tag :data:`CHECKPOINT_FORMAT`, the model's class name and the
shapes of its state dict, its weights, the optimizer and scheduler states, the epoch, the
history so far, the run's settings, the RNG states (torch, CUDA, numpy, Python) and each
process's data-order state. Resuming from it on the CPU ends bit-identical to a run that was
never stopped.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.nn as nn

from ..data.pipeline import Batches
from ..models.statedict import state_dict_diff

__all__ = ["CHECKPOINT_FORMAT", "check_checkpoint_path", "save_checkpoint", "load_checkpoint", "restore_run"]

CHECKPOINT_FORMAT = "vitcourse.fit/1"


def check_checkpoint_path(path) -> None:
    """The checkpoint file must be writable where asked, checked before any epoch is spent."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike) or None, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"checkpoint must be a file path, got the directory {path!r}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"checkpoint={path!r}: the directory {parent} does not exist; create it first")


def _model_signature(model: nn.Module) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in model.state_dict().items()}


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [random.getstate()[0], list(random.getstate()[1])],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal = state["python"]
    random.setstate((version, tuple(internal), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path, model: nn.Module, optimizer, scheduler, batches: Batches, epoch: int, history: list[dict],
    settings: dict, is_dist: bool, rank: int,
) -> None:  # fmt: skip
    """Write the run's state after ``epoch`` epochs (rank 0 writes; every process takes part)."""
    data_states = [batches.state_dict()]
    if is_dist:
        import torch.distributed as dist

        data_states = [None] * dist.get_world_size()
        dist.all_gather_object(data_states, batches.state_dict())
    if rank == 0:
        state = {
            "format": CHECKPOINT_FORMAT,
            "model_class": type(model).__name__,
            "model_signature": _model_signature(model),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "history": history,
            "settings": settings,
            "rng": _rng_state(),
            "data": data_states,
        }
        tmp = f"{os.fspath(path)}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: a crash mid-write leaves the previous checkpoint intact
    if is_dist:
        import torch.distributed as dist

        dist.barrier()


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`vitcourse.training.loop.fit` (tensors and plain data only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by vitcourse.fit")
    return state


def restore_run(path, model: nn.Module, optimizer, scheduler, batches: Batches, settings: dict, rank: int) -> tuple[list[dict], int]:
    """Restore a run from ``path`` in place; return ``(history, epochs done)``.

    Refuses (``ValueError``) a checkpoint of another model, or one written with other settings:
    continuing it would silently train something else than either run.
    """
    state = load_checkpoint(path)
    signature = _model_signature(model)
    if state["model_class"] != type(model).__name__ or state["model_signature"] != signature:
        detail = state_dict_diff(state["model_signature"], signature).describe("; ", got="saved", expected="this model")
        raise ValueError(
            f"cannot resume: {path} was saved from a different model "
            f"({state['model_class']}, this is {type(model).__name__}){': ' + detail if detail else ''}"
        )
    differences = {k: (state["settings"].get(k), v) for k, v in settings.items() if state["settings"].get(k) != v}
    if differences:
        raise ValueError(
            f"cannot resume: {path} was written with other settings "
            f"(saved vs now: {differences}); use a new checkpoint file"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    batches.load_state_dict(state["data"][rank])
    return list(state["history"]), int(state["epoch"])
