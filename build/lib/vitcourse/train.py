"""Train and evaluate the course's models: ``fit(model, data)`` and ``evaluate(model, data)``.

One loop for every chapter, fast on a laptop CPU and unchanged on a Colab GPU:

- device choice (:func:`default_device`: cuda, then mps, then cpu) and bf16 autocast on CUDA;
- AdamW (no weight decay on biases, norms, tokens and position embeddings), a linear warm-up
  then cosine decay, stepped per batch; label smoothing; gradient-norm clipping;
- an optional teacher for DeiT distillation (``teacher=``, ``distillation='soft'|'hard'``);
- a ``tqdm.auto`` progress bar with loss and accuracy (``progress=False`` for clean notebook
  outputs), and the history returned as a list of plain dicts, one per epoch;
- checkpoints after every epoch that hold everything a run depends on (model, optimizer,
  scheduler, epoch, the RNG states and the augmentation generator): a resumed run ends
  bit-identical to an uninterrupted one on CPU;
- under ``torchrun --nproc_per_node=N``: DistributedDataParallel, each process on its own shard
  of every epoch's permutation, metrics summed over processes, logging from rank 0 only.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import Batches, ImageData
from .validation import as_device, check_class_labels, check_int, check_real, check_tensor

logger = logging.getLogger(__name__)

__all__ = ["default_device", "fit", "evaluate", "DIGITS_RECIPE", "CNN_RECIPE", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "vitcourse.fit/1"

# The course-scale ViT recipe for digits: model overrides for create_model("vit_digits", ...)
# and fit() keywords. `vitcourse bench train` trains exactly this and prints it. In our sweeps
# (seed 0, batch 32, shift augmentation) 4 x 4 patches, a 2 x 2 grid of tokens on 8 x 8 digits,
# reached 95.8% after 20 epochs, while 2 x 2 patches (16 tokens, D=128, depth 2) stalled at
# 60%: this small, timm-initialised ViT needs many steps before attention starts to help, and
# 4 x 4 patches make each step about three times cheaper as well.
DIGITS_RECIPE = {
    "model": "vit_digits",
    "model_overrides": {"patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0},
    "data": {"upscale": 1},
    "fit": {
        "epochs": 30,
        "batch_size": 32,
        "lr": 3e-3,
        "weight_decay": 0.05,
        "warmup_epochs": 2,
        "label_smoothing": 0.1,
        "grad_clip": 1.0,
        "augment": {"shift": 1},
    },
}

# The convnet baseline (and distillation teacher) on the same data.
CNN_RECIPE = {
    "model": "cnn_digits",
    "model_overrides": {"width": 32},
    "data": {"upscale": 1},
    "fit": {
        "epochs": 10,
        "batch_size": 32,
        "lr": 2e-3,
        "weight_decay": 0.05,
        "warmup_epochs": 1,
        "label_smoothing": 0.0,
        "grad_clip": 1.0,
        "augment": {"shift": 1},
    },
}


def default_device() -> torch.device:
    """The best device here: ``cuda``, then ``mps`` (Apple GPUs), then ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ---- helpers -------------------------------------------------------------------------------------


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _resolve_device(device) -> torch.device | None:
    if device is None:
        return None
    if isinstance(device, str) and device == "auto":
        return default_device()
    return as_device(device, "device", "None, 'auto' or a torch device name such as 'cpu' or 'cuda'")


def _as_image_data(data, name: str = "data") -> ImageData:
    """Accept an ImageData, a Batches (its data) or an (images, labels) pair."""
    if isinstance(data, ImageData):
        result = data
    elif isinstance(data, Batches):
        result = data.data
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
        check_tensor(images, f"{name}'s images (the pair's first element)")
        check_tensor(labels, f"{name}'s labels (the pair's second element)")
        if labels.numel() == 0:
            raise ValueError(f"{name} is empty (0 images)")
        # Integer labels only: the classes are counted from them, and a float label has no class.
        check_class_labels(labels, f"{name}'s labels")
        result = ImageData(images, labels, int(labels.max()) + 1)
    else:
        size = f" of {len(data)} items" if isinstance(data, (tuple, list)) else ""
        raise TypeError(
            f"{name} must be an ImageData, a Batches or an (images, labels) pair of tensors, "
            f"got a {type(data).__name__}{size}"
        )
    if len(result) == 0:
        raise ValueError(f"{name} is empty (0 images)")
    return result


def _num_outputs(model: nn.Module) -> int | None:
    value = getattr(model, "num_classes", None)
    return value if isinstance(value, int) and value > 0 else None


def _check_labels(data: ImageData, model: nn.Module, name: str) -> None:
    labels = data.labels
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{name} labels must be integers, got {labels.dtype}")
    low, high = int(labels.min().item()), int(labels.max().item())
    classes = _num_outputs(model)
    if low < 0:
        raise ValueError(f"{name} has a negative label ({low}); labels must be in [0, num_classes)")
    if classes is not None and high >= classes:
        raise ValueError(
            f"{name} has label {high}, out of range for a model with num_classes={classes} "
            f"(labels must be in [0, {classes}))"
        )


def _place(model: nn.Module, data: ImageData, device, name: str) -> tuple[ImageData, torch.device]:
    """Put model and data on one device, or explain why they are not."""
    device = _resolve_device(device)
    if device is None:
        device = _model_device(model)
        if data.device != device:
            raise ValueError(
                f"the model is on {device} but {name} is on {data.device}; move one of them "
                f"(model.to(...) or {name}.to(...)), or pass device=... to move both"
            )
        return data, device
    model.to(device)
    return data.to(device), device


def _autocast(device: torch.device, amp: bool | None):
    """bf16 autocast: on by default on CUDA; ``amp=True`` also runs it on the CPU, which is
    slow there but follows the same mixed-precision path (how the tests reach it)."""
    enabled = (device.type == "cuda") if amp is None else bool(amp)
    if not enabled:
        return _Null()
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"amp=True needs a CUDA or CPU device (bf16 autocast), got {device}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


class _cpu_threads:
    """Temporarily set torch's intra-op CPU threads (``None``: leave as is)."""

    def __init__(self, threads: int | None):
        self.threads = threads

    def __enter__(self):
        self.previous = torch.get_num_threads()
        if self.threads is not None and self.threads != self.previous:
            torch.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.previous:
            torch.set_num_threads(self.previous)
        return False


# Below this many parameters a model's CPU kernels are too small to split across threads: the
# synchronisation costs more than it saves (and on a busy machine, much more: 20x measured here
# on a 2-core CPU shared with other jobs), so fit and evaluate run them on one thread.
SMALL_MODEL_PARAMETERS = 2_000_000


def _choose_threads(model: nn.Module, device: torch.device, cpu_threads) -> int | None:
    if device.type != "cpu":
        return None
    if cpu_threads is None:
        small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS
        return 1 if small else None
    if not isinstance(cpu_threads, int) or cpu_threads < 1:
        raise ValueError(f"cpu_threads must be a positive int or None, got {cpu_threads!r}")
    return cpu_threads


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on biases, norms, tokens or position embeddings."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        last = name.rsplit(".", 1)[-1]
        if param.ndim <= 1 or last in ("pos_embed", "cls_token", "dist_token", "reg_token"):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> Callable[[int], float]:
    """The learning-rate factor at step s: linear warm-up to 1, then cosine down to ``min_factor``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _check_checkpoint_path(path) -> None:
    """The checkpoint file must be writable where asked, checked before any epoch is spent."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike) or None, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"checkpoint must be a file path, got the directory {path!r}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"checkpoint={path!r}: the directory {parent} does not exist; create it first")


def _split_outputs(out):
    """A model's training output -> (cls_logits, dist_logits or None)."""
    if isinstance(out, (tuple, list)):
        if len(out) != 2:
            raise ValueError(f"a model may return logits or (cls_logits, dist_logits), got {len(out)} outputs")
        return out[0].float(), out[1].float()
    return out.float(), None


# ---- distributed ---------------------------------------------------------------------------------


def _distributed_setup(distributed) -> tuple[bool, int, int]:
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


# ---- checkpoints ---------------------------------------------------------------------------------


def _model_signature(model: nn.Module) -> dict:
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


def _describe_mismatch(saved: dict, current: dict) -> str:
    missing = sorted(set(current) - set(saved))
    unexpected = sorted(set(saved) - set(current))
    shapes = [f"{k}: {saved[k]} vs {current[k]}" for k in sorted(set(saved) & set(current)) if saved[k] != current[k]]
    parts = []
    if missing:
        parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if shapes:
        parts.append(f"shape mismatch {shapes[:5]}{' ...' if len(shapes) > 5 else ''}")
    return "; ".join(parts)


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint written by :func:`fit` (tensors and plain data only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by vitcourse.fit")
    return state


# ---- fit -------------------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    data,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.05,
    warmup_epochs: float = 1.0,
    min_lr_ratio: float = 0.0,
    label_smoothing: float = 0.0,
    grad_clip: float | None = 1.0,
    augment=None,
    eval_data=None,
    teacher: nn.Module | None = None,
    distillation: str = "hard",
    alpha: float = 0.5,
    tau: float = 1.0,
    device=None,
    amp: bool | None = None,
    seed: int = 0,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    callback: Callable[[dict], None] | None = None,
    distributed="auto",
    cpu_threads: int | None = None,
) -> list[dict]:
    """Train ``model`` on ``data`` and return the history, one plain dict per epoch.

    Args:
        model: maps images ``(B, C, H, W)`` to logits ``(B, K)``; a distilled model may return
            ``(cls_logits, dist_logits)`` in training mode.
        data: an :class:`~vitcourse.data.ImageData`, a :class:`~vitcourse.data.Batches` (then
            ``batch_size``, ``augment`` and ``seed`` come from it) or an ``(images, labels)`` pair
            of tensors (labels: integer class indices).
        epochs, lr, batch_size, weight_decay: the AdamW run (batch size per process).
        warmup_epochs: linear warm-up length (may be fractional); cosine decay afterwards
            to ``min_lr_ratio * lr`` (``min_lr_ratio`` in [0, 1]).
        label_smoothing: for the cross-entropy with the labels.
        grad_clip: clip the global gradient norm to this (``None``: no clipping).
        augment: see :class:`~vitcourse.data.Batches` (e.g. ``{"shift": 1, "rotate": 10}``).
        eval_data: evaluated after every epoch (``test_loss``, ``test_accuracy`` in the history).
        teacher: a trained model whose outputs supervise the student (kept in eval mode, run
            without gradients); ``distillation``, ``alpha``, ``tau`` as in
            :func:`vitcourse.distill.distillation_loss`. A student that returns one tensor is
            distilled through that single head (classic knowledge distillation); a distilled
            ViT's second head takes the teacher's signal (DeiT).
        device: ``None`` (train where the model is; the data must be there too), ``'auto'``
            (:func:`default_device`) or a device name (model and data are moved there).
        amp: bf16 autocast; ``None`` means on for CUDA, off otherwise (``True`` on the CPU works,
            slowly: the same mixed-precision path, for testing it without a GPU).
        seed: seeds the batch order and augmentation.
        progress: show a ``tqdm`` progress bar (rank 0 only).
        checkpoint: a file written after every epoch (atomically); its directory must exist.
        resume: continue from ``checkpoint`` if it exists (same model and settings required).
        callback: called with each epoch's history record, after the checkpoint is written.
        distributed: ``'auto'`` (use DDP when launched by torchrun with WORLD_SIZE > 1),
            ``True`` or ``False``.
        cpu_threads: torch's CPU threads while training; ``None`` uses one thread for small
            models (under :data:`SMALL_MODEL_PARAMETERS`), where threading only adds overhead,
            and leaves the setting alone otherwise. Restored on return.

    The model is left in eval mode.

    Returns:
        A list of dicts with ``epoch``, ``train_loss``, ``train_accuracy``, ``lr``, ``seconds``
        (and ``test_loss``, ``test_accuracy`` with ``eval_data``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    placed = _resolve_device(device) or _model_device(model)
    with _cpu_threads(_choose_threads(model, placed, cpu_threads)):
        return _fit(**locals())


def _fit(
    model, data, *, epochs, lr, batch_size, weight_decay, warmup_epochs, min_lr_ratio, label_smoothing,
    grad_clip, augment, eval_data, teacher, distillation, alpha, tau, device, amp, seed, progress,
    checkpoint, resume, callback, distributed, cpu_threads, placed=None,
) -> list[dict]:  # fmt: skip
    check_int(epochs, "epochs", "a positive int", lambda v: v >= 1)
    check_real(lr, "lr", "a positive number", lambda v: v > 0)
    check_real(weight_decay, "weight_decay", "a number >= 0", lambda v: v >= 0)
    check_real(warmup_epochs, "warmup_epochs", "a number of epochs >= 0 (may be fractional)", lambda v: v >= 0)
    check_real(min_lr_ratio, "min_lr_ratio", "a number in [0, 1] (the final lr over lr)", lambda v: 0 <= v <= 1)
    check_real(label_smoothing, "label_smoothing", "a number in [0, 1)", lambda v: 0 <= v < 1)
    if grad_clip is not None:
        check_real(grad_clip, "grad_clip", "a positive number or None", lambda v: v > 0)
    check_int(seed, "seed")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (it gets each epoch's record) or None, got {type(callback).__name__}")
    if checkpoint is not None:
        _check_checkpoint_path(checkpoint)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path>")
    if teacher is not None and not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a torch.nn.Module or None, got {type(teacher).__name__}")
    from .distill import _check_distillation_args, distillation_loss

    _check_distillation_args(distillation, alpha, tau)

    is_dist, rank, world = _distributed_setup(distributed)
    train_data = _as_image_data(data, "data")
    if is_dist and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    train_data, device = _place(model, train_data, device, "data")
    _check_labels(train_data, model, "data")
    test_data = None
    if eval_data is not None:
        test_data = _as_image_data(eval_data, "eval_data").to(device)
        _check_labels(test_data, model, "eval_data")
    if teacher is not None:
        teacher.to(device).eval()

    if isinstance(data, Batches):
        batches = Batches(
            train_data, data.batch_size, data.shuffle, data.augment, data.drop_last, data.seed, rank, world
        )
    else:
        batches = Batches(train_data, batch_size, True, augment, False, seed, rank, world)
    steps_per_epoch = len(batches)
    total_steps = epochs * steps_per_epoch
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))

    optimizer = torch.optim.AdamW(_parameter_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, warmup_steps, min_lr_ratio))
    settings = {
        "epochs": epochs, "lr": float(lr), "batch_size": batches.batch_size, "weight_decay": float(weight_decay),
        "warmup_epochs": float(warmup_epochs), "steps_per_epoch": steps_per_epoch, "world_size": world,
        "label_smoothing": float(label_smoothing), "teacher": teacher is not None, "distillation": distillation,
    }  # fmt: skip

    history: list[dict] = []
    start_epoch = 0
    if resume and os.path.exists(checkpoint):
        state = load_checkpoint(checkpoint)
        signature = _model_signature(model)
        if state["model_class"] != type(model).__name__ or state["model_signature"] != signature:
            detail = _describe_mismatch(state["model_signature"], signature)
            raise ValueError(
                f"cannot resume: {checkpoint} was saved from a different model "
                f"({state['model_class']}, this is {type(model).__name__}){': ' + detail if detail else ''}"
            )
        differences = {k: (state["settings"].get(k), v) for k, v in settings.items() if state["settings"].get(k) != v}
        if differences:
            raise ValueError(
                f"cannot resume: {checkpoint} was written with other settings "
                f"(saved vs now: {differences}); use a new checkpoint file"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        data_states = state["data"]
        batches.load_state_dict(data_states[rank])
        start_epoch = int(state["epoch"])
        history = list(state["history"])
        if rank == 0:
            logger.info("resumed from %s after epoch %d", checkpoint, start_epoch)

    train_model = model
    if is_dist:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids)

    bar = None
    if progress and rank == 0 and start_epoch < epochs:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, desc="fit", leave=True)

    checked_outputs = False
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        model.train()
        batches.set_epoch(epoch)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.float64)
        seen = torch.zeros((), device=device, dtype=torch.float64)
        for step, (images, labels) in enumerate(batches):
            with _autocast(device, amp):
                out = train_model(images)
            cls_logits, dist_logits = _split_outputs(out)
            if not checked_outputs:
                if cls_logits.dim() != 2 or labels.max() >= cls_logits.shape[1]:
                    raise ValueError(
                        f"the model returns logits of shape {tuple(cls_logits.shape)}; labels go up to "
                        f"{int(train_data.labels.max())}, so it needs at least {int(train_data.labels.max()) + 1} outputs"
                    )
                checked_outputs = True
            if teacher is not None and distillation != "none":
                with torch.no_grad(), _autocast(device, amp):
                    teacher_logits = teacher(images)
                loss = distillation_loss(
                    cls_logits,
                    cls_logits if dist_logits is None else dist_logits,
                    teacher_logits.float(),
                    labels,
                    kind=distillation,
                    alpha=alpha,
                    tau=tau,
                    label_smoothing=label_smoothing,
                )
            elif dist_logits is not None:
                # A distilled ViT trained without a teacher: both heads learn the labels.
                loss = 0.5 * (
                    F.cross_entropy(cls_logits, labels, label_smoothing=label_smoothing)
                    + F.cross_entropy(dist_logits, labels, label_smoothing=label_smoothing)
                )
            else:
                loss = F.cross_entropy(cls_logits, labels, label_smoothing=label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                predictions = cls_logits if dist_logits is None else (cls_logits + dist_logits) / 2
                n = labels.shape[0]
                loss_sum += loss.detach().double() * n
                correct += (predictions.argmax(1) == labels).sum()
                seen += n
            if bar is not None:
                bar.update(1)
                if step % 10 == 0 or step == steps_per_epoch - 1:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{(loss_sum / seen).item():.3f}", acc=f"{(correct / seen).item():.3f}")
        if is_dist:
            import torch.distributed as dist

            totals = torch.stack([loss_sum, correct, seen])
            if totals.device.type != "cuda":
                totals = totals.cpu()
            dist.all_reduce(totals)
            loss_sum, correct, seen = totals.unbind(0)
        record = {
            "epoch": epoch + 1,
            "train_loss": (loss_sum / seen).item(),
            "train_accuracy": (correct / seen).item(),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        if test_data is not None:
            # Every process holds the same weights, so each evaluates the whole (small) set.
            result = evaluate(model, test_data, amp=amp)
            record["test_loss"], record["test_accuracy"] = result["loss"], result["accuracy"]
        history.append(record)
        if rank == 0:
            logger.info("epoch %d/%d %s", epoch + 1, epochs, {k: round(v, 4) for k, v in record.items() if k != "epoch"})
        if checkpoint is not None:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, batches, epoch + 1, history, settings, is_dist, rank)
        if callback is not None:
            callback(record)
    if bar is not None:
        bar.close()
    model.eval()
    return history


def _save_checkpoint(path, model, optimizer, scheduler, batches, epoch, history, settings, is_dist, rank) -> None:
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


# ---- evaluate ---------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: nn.Module, data, *, batch_size: int = 512, device=None, amp: bool | None = None, cpu_threads: int | None = None
) -> dict:
    """Loss and accuracy of ``model`` (in eval mode) on ``data``.

    Args:
        model: maps ``(B, C, H, W)`` to logits ``(B, K)`` in eval mode.
        data: an ImageData, a Batches (its data, unaugmented) or an ``(images, labels)`` pair
            of tensors (labels: integer class indices).
        device, amp, cpu_threads: as in :func:`fit`.

    Returns:
        ``{"loss": mean cross-entropy, "accuracy": fraction correct, "n": images}``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    data = _as_image_data(data, "data")
    data, device = _place(model, data, device, "data")
    _check_labels(data, model, "data")
    with _cpu_threads(_choose_threads(model, device, cpu_threads)):
        return _evaluate(model, data, batch_size, device, amp)


def _evaluate(model, data, batch_size, device, amp) -> dict:
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    try:
        for start in range(0, len(data), batch_size):
            images = data.images[start : start + batch_size]
            labels = data.labels[start : start + batch_size]
            with _autocast(device, amp):
                logits = model(images)
            logits = logits.float()
            if logits.dim() != 2 or int(labels.max()) >= logits.shape[1]:
                raise ValueError(f"the model returns logits of shape {tuple(logits.shape)} for labels up to {int(labels.max())}")
            loss_sum += F.cross_entropy(logits, labels.long(), reduction="sum").item()
            correct += int((logits.argmax(1) == labels).sum().item())
    finally:
        model.train(was_training)
    return {"loss": loss_sum / len(data), "accuracy": correct / len(data), "n": len(data)}
