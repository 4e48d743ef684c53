"""The losses: what ``fit`` minimises, DeiT's distillation and CLIP's contrastive loss.

- :class:`Objective`: the loss of one training batch as :func:`vitcourse.training.loop.fit`
  computes it: cross-entropy with the labels, and DeiT's distillation when there is a teacher;
- :func:`distillation_loss`: DeiT's objective (soft or hard distillation from a teacher), with
  the formulas of DeiT's released ``DistillationLoss``;
- :func:`contrastive_loss`: CLIP's symmetric cross-entropy over an image-text similarity matrix
  (chapter 2.4).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..validation import check_class_labels, check_finite_positive, check_real, check_tensor

__all__ = ["Objective", "distillation_loss", "contrastive_loss", "DISTILLATION_KINDS", "KL_REDUCTIONS"]

DISTILLATION_KINDS = ("none", "soft", "hard")
# What the soft term's summed KL is divided by: "numel" = B * K, as DeiT's released code does;
# "batchmean" = B, the KL per image of the paper's formula (and of Hinton et al.), K times larger.
KL_REDUCTIONS = ("numel", "batchmean")


def _check_distillation_args(kind, alpha, tau, kl_reduction="numel") -> None:
    if kind not in DISTILLATION_KINDS:
        raise ValueError(f"kind must be one of {DISTILLATION_KINDS}, got {kind!r}")
    if kl_reduction not in KL_REDUCTIONS:
        raise ValueError(f"kl_reduction must be one of {KL_REDUCTIONS}, got {kl_reduction!r}")
    check_real(alpha, "alpha", "a number in [0, 1]", lambda v: 0 <= v <= 1)
    check_real(tau, "tau", "a positive number", lambda v: v > 0)


def _check_distillation_inputs(cls_logits, dist_logits, teacher_logits, labels, kind, label_smoothing) -> None:
    """The tensors distillation_loss needs for ``kind``: logits ``(B, K)`` of one floating dtype,
    labels ``(B,)`` integer class indices in ``[0, K)``."""
    check_tensor(cls_logits, "cls_logits")
    if cls_logits.dim() != 2 or not cls_logits.is_floating_point():
        raise ValueError(f"cls_logits must be floating-point (B, K), got {cls_logits.dtype} {tuple(cls_logits.shape)}")
    needed = [("dist_logits", dist_logits), ("teacher_logits", teacher_logits)] if kind != "none" else []
    for name, value in needed:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"kind={kind!r} needs {name} as a tensor, got {type(value).__name__}")
        if value.shape != cls_logits.shape or not value.is_floating_point():
            raise ValueError(f"{name} must be floating-point with the shape of cls_logits {tuple(cls_logits.shape)}, "
                             f"got {value.dtype} {tuple(value.shape)}")
    check_tensor(labels, "labels")
    if labels.shape != cls_logits.shape[:1]:
        raise ValueError(f"labels must be ({cls_logits.shape[0]},), got {tuple(labels.shape)}")
    # Reading the values back on a GPU would wait for the device at every step; fit checks the
    # labels once, up front.
    check_class_labels(labels, "labels", cls_logits.shape[1], values=labels.device.type == "cpu")
    check_real(label_smoothing, "label_smoothing", "a number in [0, 1)", lambda v: 0 <= v < 1)


def distillation_loss(
    cls_logits: torch.Tensor,
    dist_logits: torch.Tensor | None,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    kind: str = "hard",
    alpha: float = 0.5,
    tau: float = 1.0,
    label_smoothing: float = 0.0,
    kl_reduction: str = "numel",
) -> torch.Tensor:
    """DeiT's distillation objective, a scalar.

    Args:
        cls_logits: ``(B, K)`` from the class head; trained on the labels.
        dist_logits: ``(B, K)`` from the distillation head; trained on the teacher. For a
            student with one head pass its logits twice (classic knowledge distillation).
        teacher_logits: ``(B, K)``, treated as constants (detached).
        labels: ``(B,)`` class indices.
        kind: ``'none'`` (only the base loss), ``'soft'`` or ``'hard'``.
        alpha: weight of the distillation term.
        tau: temperature of the soft term.
        label_smoothing: of the base cross-entropy (DeiT trains with 0.1).
        kl_reduction: what the soft term's summed KL is divided by: ``'numel'`` (``B * K``, as
            DeiT's released code) or ``'batchmean'`` (``B``: the KL per image, as in the paper's
            formula and Hinton et al.).

    The formulas, with ``base = CE(cls_logits, labels)``:

    - soft: ``KL(softmax(t / tau) || softmax(s / tau))`` summed over batch *and* classes, times
      ``tau**2``, divided by ``s.numel() = B * K`` (``F.kl_div(log_softmax(s / tau),
      log_softmax(t / tau), reduction='sum', log_target=True)``). Since ``batchmean`` divides
      the same sum by ``B``, DeiT's soft term equals the ``batchmean`` KL divided by the number
      of classes ``K`` (times ``tau**2``): at equal ``alpha`` it weighs the teacher ``K`` times
      less than a ``batchmean`` KL would. ``kl_reduction='batchmean'`` divides by ``B`` instead.
    - hard: ``CE(dist_logits, argmax(teacher_logits))``.
    - the loss: ``(1 - alpha) * base + alpha * distillation``; ``'none'`` returns ``base``.
    """
    _check_distillation_inputs(cls_logits, dist_logits, teacher_logits, labels, kind, label_smoothing)
    _check_distillation_args(kind, alpha, tau, kl_reduction)
    base = F.cross_entropy(cls_logits, labels, label_smoothing=label_smoothing)
    if kind == "none":
        return base
    teacher_logits = teacher_logits.detach()
    if kind == "soft":
        distill = (
            F.kl_div(
                F.log_softmax(dist_logits / tau, dim=1),
                F.log_softmax(teacher_logits / tau, dim=1),
                reduction="sum",
                log_target=True,
            )
            * (tau * tau)
            / (dist_logits.numel() if kl_reduction == "numel" else dist_logits.shape[0])
        )
    else:
        distill = F.cross_entropy(dist_logits, teacher_logits.argmax(dim=1))
    return (1 - alpha) * base + alpha * distill


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, temperature) -> torch.Tensor:
    """CLIP's loss: pair i of the batch is the positive, every other pairing a negative.

    Both embeddings are L2-normalised, ``logits = image @ text.T / temperature`` ``(B, B)``,
    and the loss is the mean of the cross-entropies along rows (image -> text) and columns
    (text -> image), with the diagonal as the target.

    Args:
        image_emb: ``(B, E)``.
        text_emb: ``(B, E)``.
        temperature: a positive float or a scalar tensor (e.g. ``log_scale.exp().reciprocal()``).
    """
    if image_emb.dim() != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(
            f"image_emb and text_emb must both be (B, E), got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    if not isinstance(temperature, torch.Tensor):
        check_finite_positive(temperature, "temperature")
    logits = F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@dataclass(frozen=True)
class Objective:
    """The loss ``fit`` minimises on one batch; its settings are checked when it is made.

    Without a teacher (or with ``distillation='none'``): cross-entropy with the labels, and for a
    distilled ViT, which returns ``(cls_logits, dist_logits)`` in training, the mean of both
    heads' cross-entropies. With a teacher: :func:`distillation_loss` of ``kind=distillation``,
    the teacher's logits standing in for the distillation head's target; a model with one head
    is distilled through it (classic knowledge distillation).
    """

    label_smoothing: float = 0.0
    teacher: nn.Module | None = None
    distillation: str = "hard"
    alpha: float = 0.5
    tau: float = 1.0
    kl_reduction: str = "numel"

    def __post_init__(self):
        if self.teacher is not None and not isinstance(self.teacher, nn.Module):
            raise TypeError(f"teacher must be a torch.nn.Module or None, got {type(self.teacher).__name__}")
        _check_distillation_args(self.distillation, self.alpha, self.tau, self.kl_reduction)

    def __call__(
        self,
        cls_logits: torch.Tensor,
        dist_logits: torch.Tensor | None,
        labels: torch.Tensor,
        images: torch.Tensor,
        autocast: Callable[[], AbstractContextManager],
    ) -> torch.Tensor:
        """The scalar loss of a batch: logits ``(B, K)`` (float32), labels ``(B,)``, ``images``
        ``(B, C, H, W)`` for the teacher, which runs under ``autocast()`` without gradients."""
        smoothing = self.label_smoothing
        if self.teacher is not None and self.distillation != "none":
            with torch.no_grad(), autocast():
                teacher_logits = self.teacher(images)
            return distillation_loss(
                cls_logits,
                cls_logits if dist_logits is None else dist_logits,
                teacher_logits.float(),
                labels,
                kind=self.distillation,
                alpha=self.alpha,
                tau=self.tau,
                label_smoothing=smoothing,
                kl_reduction=self.kl_reduction,
            )
        if dist_logits is not None:
            # A distilled ViT trained without a teacher: both heads learn the labels.
            return 0.5 * (
                F.cross_entropy(cls_logits, labels, label_smoothing=smoothing)
                + F.cross_entropy(dist_logits, labels, label_smoothing=smoothing)
            )
        return F.cross_entropy(cls_logits, labels, label_smoothing=smoothing)
