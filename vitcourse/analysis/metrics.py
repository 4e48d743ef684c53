"""Scores of a model's predictions beyond accuracy: :func:`mean_iou` for segmentation."""

from __future__ import annotations

import torch

from ..validation import check_class_labels, check_positive_int, check_tensor

__all__ = ["mean_iou"]


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[float, torch.Tensor]:
    """Intersection over union per class, and its mean over the classes that occur.

    Args:
        pred: predicted labels, any integer shape, e.g. ``(B, H, W)``.
        target: true labels, same shape.
        num_classes: K; labels must lie in ``[0, K)``.

    Returns:
        ``(mIoU, iou)`` with ``iou`` of shape ``(K,)`` (float64); a class absent from both
        ``pred`` and ``target`` has IoU ``nan`` and is left out of the mean.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    check_tensor(pred, "pred")
    check_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    for name, labels in (("pred", pred), ("target", target)):
        check_class_labels(labels.reshape(-1), name, num_classes)
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    # confusion[t, p] = number of pixels of true class t predicted as p
    confusion = torch.bincount(target * num_classes + pred, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes).double()
    intersection = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    iou = torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, float("nan")))
    present = ~iou.isnan()
    return (iou[present].mean().item() if present.any() else float("nan")), iou
