"""Train and evaluate the course's models: ``fit(model, data)`` and ``evaluate(model, data)``.

One loop for every chapter, fast on a laptop CPU and unchanged on a Colab GPU:

- device choice (:func:`~vitcourse.training.runtime.default_device`: cuda, then mps, then cpu)
  and bf16 autocast on CUDA (:mod:`~vitcourse.training.runtime`);
- AdamW (no weight decay on biases, norms, tokens and position embeddings), a linear warm-up
  then cosine decay, stepped per batch (:mod:`~vitcourse.training.optim`); label smoothing;
  gradient-norm clipping;
- an optional teacher for DeiT distillation (``teacher=``, ``distillation='soft'|'hard'``; the
  loss is :class:`~vitcourse.training.losses.Objective`);
- a ``tqdm.auto`` progress bar with loss and accuracy (``progress=False`` for clean notebook
  outputs), and the history returned as a list of plain dicts, one per epoch;
- checkpoints after every epoch that hold everything a run depends on
  (:mod:`~vitcourse.training.checkpoints`): a resumed run ends bit-identical to an
  uninterrupted one on CPU;
- under ``torchrun --nproc_per_node=N``: DistributedDataParallel, each process on its own shard
  of every epoch's permutation, metrics summed over processes, logging from rank 0 only.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.pipeline import Batches, ImageData
from ..validation import check_class_labels, check_int, check_positive_int, check_real, check_tensor
from .checkpoints import check_checkpoint_path, restore_run, save_checkpoint
from .losses import Objective
from .optim import parameter_groups, warmup_cosine
from .runtime import (
    autocast,
    choose_threads,
    distributed_setup,
    model_device,
    num_threads,
    resolve_device,
)

logger = logging.getLogger(__name__)

__all__ = ["fit", "evaluate"]


# ---- what fit and evaluate accept ------------------------------------------------------------


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


def _check_labels_fit(model: nn.Module, data: ImageData, name: str) -> None:
    """The labels must be class indices (checked again: a tensor can change after ImageData
    checked it) within the model's outputs."""
    check_class_labels(data.labels, f"{name}'s labels")
    classes = getattr(model, "num_classes", None)
    high = int(data.labels.max())
    if isinstance(classes, int) and classes > 0 and high >= classes:
        raise ValueError(
            f"{name} has label {high}, out of range for a model with num_classes={classes} "
            f"(labels must be in [0, {classes}))"
        )


def _place(model: nn.Module, data: ImageData, device, name: str) -> tuple[ImageData, torch.device]:
    """Put model and data on one device, or explain why they are not."""
    device = resolve_device(device)
    if device is None:
        device = model_device(model)
        if data.device != device:
            raise ValueError(
                f"the model is on {device} but {name} is on {data.device}; move one of them "
                f"(model.to(...) or {name}.to(...)), or pass device=... to move both"
            )
        return data, device
    model.to(device)
    return data.to(device), device


def _check_settings(
    *, epochs, lr, weight_decay, warmup_epochs, min_lr_ratio, label_smoothing, grad_clip, seed, callback,
    checkpoint, resume,
) -> None:  # fmt: skip
    """Refuse a bad setting before any work (errors name the keyword)."""
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
        check_checkpoint_path(checkpoint)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path>")


# ---- one training run ------------------------------------------------------------------------


@dataclass
class _Run:
    """What every epoch of one ``fit`` call uses, once set up."""

    model: nn.Module
    forward: nn.Module  # computes the training outputs: the model, or its DDP wrapper
    batches: Batches
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    objective: Objective
    device: torch.device
    amp: bool | None
    grad_clip: float | None
    is_dist: bool
    max_label: int
    outputs_checked: bool = False

    def autocast(self):
        return autocast(self.device, self.amp)


def _split_outputs(out) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A model's training output -> (cls_logits, dist_logits or None), in float32."""
    if isinstance(out, (tuple, list)):
        if len(out) != 2:
            raise ValueError(f"a model may return logits or (cls_logits, dist_logits), got {len(out)} outputs")
        return out[0].float(), out[1].float()
    return out.float(), None


def _train_step(run: _Run, images: torch.Tensor, labels: torch.Tensor, where: str):
    """One optimisation step on a batch; returns the loss and the logits ``(B, K)`` it came from."""
    with run.autocast():
        out = run.forward(images)
    cls_logits, dist_logits = _split_outputs(out)
    if not run.outputs_checked:  # once: a wrong head fails here, not as a CUDA assert later
        if cls_logits.dim() != 2 or labels.max() >= cls_logits.shape[1]:
            raise ValueError(
                f"the model returns logits of shape {tuple(cls_logits.shape)}; labels go up to "
                f"{run.max_label}, so it needs at least {run.max_label + 1} outputs"
            )
        run.outputs_checked = True
    loss = run.objective(cls_logits, dist_logits, labels, images, run.autocast)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss.item()} at {where}; lower lr")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    return loss, cls_logits, dist_logits


def _train_epoch(run: _Run, epoch: int, bar) -> dict[str, float]:
    """One pass over this process's shard; loss and accuracy summed over every process."""
    run.model.train()
    run.batches.set_epoch(epoch)
    # Sums stay on the device (float64) so that a step never waits for the GPU to report.
    loss_sum, correct, seen = (torch.zeros((), device=run.device, dtype=torch.float64) for _ in range(3))
    for step, (images, labels) in enumerate(run.batches):
        loss, cls_logits, dist_logits = _train_step(run, images, labels, f"epoch {epoch + 1}, step {step + 1}")
        with torch.no_grad():
            predictions = cls_logits if dist_logits is None else (cls_logits + dist_logits) / 2
            n = labels.shape[0]
            loss_sum += loss.detach().double() * n
            correct += (predictions.argmax(1) == labels).sum()
            seen += n
        if bar is not None:
            bar.update(1)
            if step % 10 == 0 or step == len(run.batches) - 1:
                bar.set_postfix(epoch=epoch + 1, loss=f"{(loss_sum / seen).item():.3f}", acc=f"{(correct / seen).item():.3f}")
    if run.is_dist:
        import torch.distributed as dist

        totals = torch.stack([loss_sum, correct, seen])
        if totals.device.type != "cuda":
            totals = totals.cpu()
        dist.all_reduce(totals)
        loss_sum, correct, seen = totals.unbind(0)
    return {"train_loss": (loss_sum / seen).item(), "train_accuracy": (correct / seen).item()}


@contextmanager
def _progress_bar(enabled: bool, total: int, initial: int) -> Iterator:
    """A ``tqdm.auto`` bar over the run's steps (``None`` when disabled), closed at the end."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, desc="fit", leave=True)
    try:
        yield bar
    finally:
        bar.close()


# ---- fit ---------------------------------------------------------------------------------------


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
    kl_reduction: str = "numel",
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
        data: an :class:`~vitcourse.data.pipeline.ImageData`, a
            :class:`~vitcourse.data.pipeline.Batches` (then ``batch_size``, ``augment`` and
            ``seed`` come from it) or an ``(images, labels)`` pair of tensors (labels: integer
            class indices).
        epochs, lr, batch_size, weight_decay: the AdamW run (batch size per process).
        warmup_epochs: linear warm-up length (may be fractional); cosine decay afterwards
            to ``min_lr_ratio * lr`` (``min_lr_ratio`` in [0, 1]).
        label_smoothing: for the cross-entropy with the labels.
        grad_clip: clip the global gradient norm to this (``None``: no clipping).
        augment: see :class:`~vitcourse.data.pipeline.Batches` (e.g. ``{"shift": 1, "rotate": 10}``).
        eval_data: evaluated after every epoch (``test_loss``, ``test_accuracy`` in the history).
        teacher: a trained model whose outputs supervise the student (kept in eval mode, run
            without gradients); ``distillation``, ``alpha``, ``tau``, ``kl_reduction`` as in
            :func:`vitcourse.training.losses.distillation_loss`. A student that returns one
            tensor is distilled through that single head (classic knowledge distillation); a
            distilled ViT's second head takes the teacher's signal (DeiT).
        device: ``None`` (train where the model is; the data must be there too), ``'auto'``
            (the best device here) or a device name (model and data are moved there).
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
            models (under :data:`~vitcourse.training.runtime.SMALL_MODEL_PARAMETERS`), where
            threading only adds overhead, and leaves the setting alone otherwise. Restored on
            return.

    The model is left in eval mode.

    Returns:
        A list of dicts with ``epoch``, ``train_loss``, ``train_accuracy``, ``lr``, ``seconds``
        (and ``test_loss``, ``test_accuracy`` with ``eval_data``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_settings(
        epochs=epochs, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, min_lr_ratio=min_lr_ratio,
        label_smoothing=label_smoothing, grad_clip=grad_clip, seed=seed, callback=callback,
        checkpoint=checkpoint, resume=resume,
    )  # fmt: skip
    objective = Objective(label_smoothing, teacher, distillation, alpha, tau, kl_reduction)
    placed = resolve_device(device) or model_device(model)
    with num_threads(choose_threads(model, placed, cpu_threads)):
        is_dist, rank, world = distributed_setup(distributed)
        train_data = _as_image_data(data, "data")
        if is_dist and torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", rank))
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        train_data, device = _place(model, train_data, device, "data")
        _check_labels_fit(model, train_data, "data")
        test_data = None
        if eval_data is not None:
            test_data = _as_image_data(eval_data, "eval_data").to(device)
            _check_labels_fit(model, test_data, "eval_data")
        if teacher is not None:
            teacher.to(device).eval()

        if isinstance(data, Batches):  # its own batch size, augmentation and seed
            batches = Batches(train_data, data.batch_size, data.shuffle, data.augment, data.drop_last, data.seed, rank, world)
        else:
            batches = Batches(train_data, batch_size, True, augment, False, seed, rank, world)
        steps_per_epoch = len(batches)
        warmup_steps = int(round(warmup_epochs * steps_per_epoch))
        optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999))
        schedule = warmup_cosine(epochs * steps_per_epoch, warmup_steps, min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        # What a resumed run must share with the run that wrote the checkpoint.
        settings = {
            "epochs": epochs, "lr": float(lr), "batch_size": batches.batch_size, "weight_decay": float(weight_decay),
            "warmup_epochs": float(warmup_epochs), "steps_per_epoch": steps_per_epoch, "world_size": world,
            "label_smoothing": float(label_smoothing), "teacher": teacher is not None, "distillation": distillation,
        }  # fmt: skip

        history: list[dict] = []
        start_epoch = 0
        if resume and os.path.exists(checkpoint):
            history, start_epoch = restore_run(checkpoint, model, optimizer, scheduler, batches, settings, rank)
            if rank == 0:
                logger.info("resumed from %s after epoch %d", checkpoint, start_epoch)

        forward = model
        if is_dist:
            from torch.nn.parallel import DistributedDataParallel

            forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        run = _Run(
            model, forward, batches, optimizer, scheduler, objective, device, amp, grad_clip, is_dist,
            max_label=int(train_data.labels.max()),
        )  # fmt: skip

        show = progress and rank == 0 and start_epoch < epochs
        with _progress_bar(show, epochs * steps_per_epoch, start_epoch * steps_per_epoch) as bar:
            for epoch in range(start_epoch, epochs):
                started = time.perf_counter()
                metrics = _train_epoch(run, epoch, bar)
                record = {"epoch": epoch + 1, **metrics, "lr": optimizer.param_groups[0]["lr"],
                          "seconds": time.perf_counter() - started}
                if test_data is not None:
                    # Every process holds the same weights, so each evaluates the whole (small) set.
                    result = evaluate(model, test_data, amp=amp)
                    record["test_loss"], record["test_accuracy"] = result["loss"], result["accuracy"]
                history.append(record)
                if rank == 0:
                    logger.info("epoch %d/%d %s", epoch + 1, epochs, {k: round(v, 4) for k, v in record.items() if k != "epoch"})
                if checkpoint is not None:
                    save_checkpoint(checkpoint, model, optimizer, scheduler, batches, epoch + 1, history, settings, is_dist, rank)
                if callback is not None:
                    callback(record)
    model.eval()
    return history


# ---- evaluate ----------------------------------------------------------------------------------


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
    batch_size = check_positive_int(batch_size, "batch_size")
    data = _as_image_data(data, "data")
    data, device = _place(model, data, device, "data")
    _check_labels_fit(model, data, "data")
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    try:
        with num_threads(choose_threads(model, device, cpu_threads)):
            for start in range(0, len(data), batch_size):
                images = data.images[start : start + batch_size]
                labels = data.labels[start : start + batch_size]
                with autocast(device, amp):
                    logits = model(images)
                logits = logits.float()
                if logits.dim() != 2 or int(labels.max()) >= logits.shape[1]:
                    raise ValueError(f"the model returns logits of shape {tuple(logits.shape)} for labels up to {int(labels.max())}")
                loss_sum += F.cross_entropy(logits, labels.long(), reduction="sum").item()
                correct += int((logits.argmax(1) == labels).sum().item())
    finally:
        model.train(was_training)
    return {"loss": loss_sum / len(data), "accuracy": correct / len(data), "n": len(data)}
