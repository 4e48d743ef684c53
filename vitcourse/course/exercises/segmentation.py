"""Exercise 13 (segmentation): per-pixel logits from patch tokens by bilinear upsampling, and mean
IoU accumulated over a data set with an ignore label.

The chapter page (*Dense prediction from patch tokens*) maps each token linearly to the ``K x p x
p`` logits of its own patch, on a square grid, and scores with mean IoU. The exercise asks for
the other common linear decoder and for the metric as segmentation benchmarks define it, which
the page does not print:

- ``upsampled_logits(tokens, weight, bias, grid_size, image_size)``: ``tokens (B, N, D)`` in
  row-major order over a ``(rows, cols)`` grid, a linear classifier ``weight (K, D)``, ``bias
  (K,)`` -> ``(B, K, H, W)``: each token's ``K`` logits laid out on the grid as ``(B, K, rows,
  cols)`` and resized bilinearly (``align_corners=False``) to ``image_size``;
- ``mean_iou_ignoring(pred, target, num_classes, ignore_index=255)``: ``(mIoU, iou)`` over every
  pixel of the batch together, pixels whose target is ``ignore_index`` left out (their prediction
  too), a class absent from both prediction and truth ``nan`` and left out of the mean; ``mIoU``
  a Python float, ``iou`` ``(K,)`` float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...validation import check_int_pair, check_positive_int, check_tensor
from ..contracts import Contract, draw_int
from ..expectations import expect_items, expect_number, expect_raises, expect_tensor

__all__ = ["CONTRACT", "upsampled_logits", "mean_iou_ignoring"]

CONTRACT = Contract(
    "13_segmentation",
    "per-pixel logits from patch tokens on a non-square grid; mean IoU with an ignore label",
    names={
        "upsampled_logits": "(tokens, weight, bias, grid_size, image_size)",
        "mean_iou_ignoring": "(pred, target, num_classes, ignore_index=255)",
    },
    reference_answers={
        "upsampled_logits": "vitcourse.course.exercises.segmentation.upsampled_logits",
        "mean_iou_ignoring": "vitcourse.course.exercises.segmentation.mean_iou_ignoring",
    },
)


# ---- the references ------------------------------------------------------------------------------


def upsampled_logits(tokens: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, grid_size,
                     image_size) -> torch.Tensor:
    """Per-pixel logits from patch tokens: a linear classifier per token, upsampled bilinearly.

    Args:
        tokens: ``(B, N, D)``, patch tokens only, row-major over the grid.
        weight: ``(K, D)``; bias: ``(K,)``.
        grid_size: ``(rows, cols)`` with ``rows * cols = N``.
        image_size: ``(H, W)`` of the output.

    Returns:
        ``(B, K, H, W)`` in the tokens' dtype: ``tokens @ weight.T + bias`` as ``(B, K, rows,
        cols)``, resized with ``F.interpolate(mode="bilinear", align_corners=False)``.

    Raises:
        ValueError: ``N != rows * cols``, or ``weight``/``bias`` not ``(K, D)``/``(K,)``.
    """
    for name, value in (("tokens", tokens), ("weight", weight), ("bias", bias)):
        check_tensor(value, name)
    rows, cols = check_int_pair(grid_size, "grid_size")
    height, width = check_int_pair(image_size, "image_size")
    if tokens.dim() != 3 or tokens.shape[1] != rows * cols:
        raise ValueError(f"tokens must be (B, {rows * cols}, D) for the grid {(rows, cols)}, got {tuple(tokens.shape)}")
    if weight.dim() != 2 or weight.shape[1] != tokens.shape[2] or tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"weight must be (K, {tokens.shape[2]}) and bias (K,), got {tuple(weight.shape)} and {tuple(bias.shape)}")
    logits = tokens @ weight.T + bias  # (B, N, K)
    grid = logits.transpose(1, 2).reshape(len(tokens), weight.shape[0], rows, cols)
    return F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)


def mean_iou_ignoring(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                      ignore_index: int = 255) -> tuple[float, torch.Tensor]:
    """Mean intersection over union over a whole batch, with an ignore label.

    Args:
        pred: predicted labels in ``[0, K)``, any integer shape, e.g. ``(B, H, W)``.
        target: true labels, same shape, in ``[0, K)`` or ``ignore_index``.
        num_classes: ``K``.
        ignore_index: pixels whose target holds it are left out, their prediction too.

    Returns:
        ``(miou, iou)``: ``iou`` ``(K,)`` float64, the intersection over union of each class
        counted over all the kept pixels of the batch together, ``nan`` for a class absent from
        both prediction and truth; ``miou`` a Python float, the mean of the others.

    Raises:
        ValueError: shapes differ, or a label outside ``[0, K)`` (``ignore_index`` in ``target``
        excepted).
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    check_tensor(pred, "pred")
    check_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    kept = target != ignore_index
    pred, target = pred[kept].long(), target[kept].long()
    for name, labels in (("pred", pred), ("target", target)):
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside [0, {num_classes}) (ignore_index {ignore_index} excepted)")
    confusion = torch.bincount(target * num_classes + pred, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes).double()  # [true, predicted]
    intersection = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    iou = torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, math.nan))
    present = ~iou.isnan()
    return (iou[present].mean().item() if bool(present.any()) else math.nan), iou


# ---- upsampled_logits: 5 points ---------------------------------------------------------------------


def _head_inputs(rng, dtype=torch.float32):
    """Tokens on a non-square grid and a linear classifier (K != D)."""
    rows = draw_int(rng, 2, 4)
    cols = rows + draw_int(rng, 1, 3)
    dim, classes = draw_int(rng, 5, 8), draw_int(rng, 2, 4)
    tokens = torch.randn(draw_int(rng, 1, 3), rows * cols, dim, generator=rng, dtype=dtype)
    weight = torch.randn(classes, dim, generator=rng, dtype=dtype)
    bias = torch.randn(classes, generator=rng, dtype=dtype)
    return tokens, weight, bias, (rows, cols)


def _head_label(tokens, weight, grid, size) -> str:
    return (f"upsampled_logits(tokens of shape {tuple(tokens.shape)}, weight of shape {tuple(weight.shape)}, "
            f"bias, grid_size={grid}, image_size={size})")


@CONTRACT.clause("upsampled_logits", points=3)
def non_square_grid(student, rng):
    """Random tokens on a non-square grid, p x p pixels a token: per-token logits, bilinearly upsampled."""
    tokens, weight, bias, grid = _head_inputs(rng)
    p = draw_int(rng, 2, 4)
    size = (grid[0] * p, grid[1] * p)
    got = student.call("upsampled_logits", tokens, weight, bias, grid, size)
    expected = upsampled_logits(tokens, weight, bias, grid, size)
    # independent: bilinear resizing is linear, so resizing the tokens first and classifying each
    # pixel gives the same logits (in float64, tokens laid out by an explicit loop)
    features = torch.zeros(len(tokens), tokens.shape[2], *grid, dtype=torch.float64)
    for n in range(tokens.shape[1]):
        features[:, :, n // grid[1], n % grid[1]] = tokens[:, n].double()
    pixels = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
    other = torch.einsum("bdhw,kd->bkhw", pixels, weight.double()) + bias.double()[:, None, None]
    assert torch.allclose(expected.double(), other, atol=1e-4)
    expect_tensor(got, expected, name=_head_label(tokens, weight, grid, size))


@CONTRACT.clause("upsampled_logits", points=1)
def any_image_size_in_float64(student, rng):
    """float64 tokens and an image size that is no multiple of the grid: float64 logits of that size."""
    tokens, weight, bias, grid = _head_inputs(rng, dtype=torch.float64)
    size = (grid[0] * 3 + draw_int(rng, 1, 2), grid[1] * 2 - 1)
    got = student.call("upsampled_logits", tokens, weight, bias, grid, size)
    expect_tensor(got, upsampled_logits(tokens, weight, bias, grid, size), name=_head_label(tokens, weight, grid, size))


@CONTRACT.clause("upsampled_logits", points=1)
def rejects_bad_grid_and_weight(student, rng):
    """A grid that does not hold the N tokens, or a weight of the wrong width, raises ValueError."""
    tokens, weight, bias, (rows, cols) = _head_inputs(rng)
    size = (rows * 2, cols * 2)
    wrong = (rows, cols + 1)
    expect_raises(lambda: student.call("upsampled_logits", tokens, weight, bias, wrong, size), "ValueError",
                  name=_head_label(tokens, weight, wrong, size))
    wide = torch.randn(weight.shape[0], weight.shape[1] + 1, generator=rng)
    expect_raises(lambda: student.call("upsampled_logits", tokens, wide, bias, (rows, cols), size), "ValueError",
                  name=_head_label(tokens, wide, (rows, cols), size))


# ---- mean_iou_ignoring: 7 points ---------------------------------------------------------------------------


def _expect_iou(got, expected, name: str) -> None:
    miou, iou = expect_items(got, ("miou", "iou"), name)
    expect_tensor(iou, expected[1], name=f"{name}, iou")
    expect_number(miou, expected[0], name=f"{name}, miou")


def _label_maps(rng, classes: int, ignore_index: int):
    """A batch of label maps and predictions that mostly agree; the last class absent from both,
    about a sixth of the target pixels ignored (predicted as anything)."""
    batch, height, width = draw_int(rng, 2, 3), draw_int(rng, 5, 8), draw_int(rng, 6, 9)
    target = torch.randint(0, classes - 1, (batch, height, width), generator=rng)
    flip = torch.rand(target.shape, generator=rng) < 0.35
    pred = torch.where(flip, torch.randint(0, classes - 1, target.shape, generator=rng), target)
    ignored = torch.rand(target.shape, generator=rng) < 0.17
    target = torch.where(ignored, torch.full_like(target, ignore_index), target)
    return pred, target


def _float64_iou(pred, target, classes, ignore_index):
    """IoU per class with Python sets of pixel positions: an independent reference."""
    flat_p, flat_t = pred.reshape(-1).tolist(), target.reshape(-1).tolist()
    kept = [i for i, t in enumerate(flat_t) if t != ignore_index]
    ious = []
    for k in range(classes):
        p = {i for i in kept if flat_p[i] == k}
        t = {i for i in kept if flat_t[i] == k}
        ious.append(len(p & t) / len(p | t) if p | t else math.nan)
    return ious


def _iou_label(pred, classes, ignore_index=None) -> str:
    extra = "" if ignore_index is None else f", ignore_index={ignore_index}"
    return f"mean_iou_ignoring(pred, target of shape {tuple(pred.shape)}, num_classes={classes}{extra})"


@CONTRACT.clause("mean_iou_ignoring", points=3)
def ignored_pixels_and_an_absent_class(student, rng):
    """A random batch with ignored pixels (label 255) and a class absent from both: IoU over the whole batch."""
    classes = draw_int(rng, 4, 6)
    pred, target = _label_maps(rng, classes, 255)
    got = student.call("mean_iou_ignoring", pred, target, classes)
    expected = mean_iou_ignoring(pred, target, classes)
    independent = torch.tensor(_float64_iou(pred, target, classes, 255), dtype=torch.float64)
    assert torch.allclose(expected[1], independent, equal_nan=True, atol=1e-12)
    _expect_iou(got, expected, _iou_label(pred, classes))


@CONTRACT.clause("mean_iou_ignoring", points=2)
def accumulated_over_the_batch(student, rng):
    """Images of very different contents, ignore_index = -1: intersections and unions summed over the batch."""
    classes = draw_int(rng, 3, 4)
    pred, target = _label_maps(rng, classes, -1)
    # one image nearly all background, so that a per-image average weighs it like the others
    target[0] = torch.where(target[0] == -1, target[0], torch.zeros_like(target[0]))
    target[0, 0, :2] = 1
    got = student.call("mean_iou_ignoring", pred, target, classes, ignore_index=-1)
    _expect_iou(got, mean_iou_ignoring(pred, target, classes, ignore_index=-1), _iou_label(pred, classes, -1))


@CONTRACT.clause("mean_iou_ignoring", points=1)
def class_predicted_but_absent_scores_zero(student, rng):
    """A class only predicted (IoU 0) counts in the mean; one in neither prediction nor truth does not."""
    classes = 4
    size = (1, draw_int(rng, 3, 5), draw_int(rng, 4, 6))
    target = torch.randint(0, 2, size, generator=rng)
    pred = target.clone()
    pred[0, 0, 0] = 2  # class 2 predicted once, never true; class 3 nowhere
    target[0, -1, -1] = 255
    got = student.call("mean_iou_ignoring", pred, target, classes)
    _expect_iou(got, mean_iou_ignoring(pred, target, classes), _iou_label(pred, classes))


@CONTRACT.clause("mean_iou_ignoring", points=1)
def rejects_bad_labels_and_shapes(student, rng):
    """A target label >= K that is not ignore_index, a predicted 255, or shapes that differ raise ValueError."""
    classes = draw_int(rng, 3, 5)
    pred, target = _label_maps(rng, classes, 255)
    bad_target = target.clone()
    bad_target.view(-1)[0] = classes
    expect_raises(lambda: student.call("mean_iou_ignoring", pred, bad_target, classes), "ValueError",
                  name=_iou_label(pred, classes) + f" with a target label {classes}")
    bad_pred = pred.clone()
    bad_pred[target != 255] = 255
    expect_raises(lambda: student.call("mean_iou_ignoring", bad_pred, target, classes), "ValueError",
                  name=_iou_label(pred, classes) + " with predictions 255")
    expect_raises(lambda: student.call("mean_iou_ignoring", pred[:, 1:], target, classes), "ValueError",
                  name=f"mean_iou_ignoring(pred of shape {tuple(pred[:, 1:].shape)}, target of shape {tuple(target.shape)})")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _checked_logits(tokens, weight, bias, grid_size):
    rows, cols = grid_size
    if tokens.shape[1] != rows * cols or weight.shape[1] != tokens.shape[2]:
        raise ValueError("bad grid or weight")
    return tokens @ weight.T + bias  # (B, N, K)


@CONTRACT.mistake("upsampled_logits", """the tokens seem laid out column by column (the grid read
    as (cols, rows)), so each logit lands at another patch's place. Tokens are row-major: token n
    sits at row n // cols, column n % cols.""")
def grid_read_column_major(tokens, weight, bias, grid_size, image_size):
    rows, cols = grid_size
    logits = _checked_logits(tokens, weight, bias, grid_size)
    grid = logits.reshape(len(tokens), cols, rows, -1).permute(0, 3, 2, 1)
    return F.interpolate(grid, size=tuple(image_size), mode="bilinear", align_corners=False)


@CONTRACT.mistake("upsampled_logits", """the (B, N, K) logits seem reshaped straight to (B, K, rows,
    cols), which mixes classes and positions. Move the class axis in front first (a transpose),
    then reshape the token axis into the grid.""")
def reshaped_without_transpose(tokens, weight, bias, grid_size, image_size):
    logits = _checked_logits(tokens, weight, bias, grid_size)
    grid = logits.reshape(len(tokens), -1, *grid_size)
    return F.interpolate(grid, size=tuple(image_size), mode="bilinear", align_corners=False)


@CONTRACT.mistake("upsampled_logits", """the logits seem copied over each patch (nearest-neighbour
    upsampling: one label per patch). The resize is bilinear.""")
def nearest_upsampling(tokens, weight, bias, grid_size, image_size):
    logits = _checked_logits(tokens, weight, bias, grid_size)
    grid = logits.transpose(1, 2).reshape(len(tokens), -1, *grid_size)
    return F.interpolate(grid, size=tuple(image_size), mode="nearest")


@CONTRACT.mistake("upsampled_logits", """the resize seems to align the corner pixels
    (align_corners=True). Each token's value belongs at the centre of its patch:
    align_corners=False, F.interpolate's default.""")
def corners_aligned(tokens, weight, bias, grid_size, image_size):
    logits = _checked_logits(tokens, weight, bias, grid_size)
    grid = logits.transpose(1, 2).reshape(len(tokens), -1, *grid_size)
    return F.interpolate(grid, size=tuple(image_size), mode="bilinear", align_corners=True)


def _confusion(pred, target, num_classes):
    if pred.shape != target.shape:
        raise ValueError("shapes differ")
    return torch.bincount(target.reshape(-1) * num_classes + pred.reshape(-1),
                          minlength=num_classes**2).reshape(num_classes, num_classes).double()


def _checked_labels(pred, target, num_classes, ignore_index):
    kept = target != ignore_index
    if pred.shape != target.shape or pred[kept].min() < 0 or pred[kept].max() >= num_classes \
            or target[kept].min() < 0 or target[kept].max() >= num_classes:
        raise ValueError("bad labels or shapes")
    return kept


def _ious(confusion):
    intersection = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    iou = torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, math.nan))
    return iou[~iou.isnan()].mean().item(), iou


@CONTRACT.mistake("mean_iou_ignoring", """the predictions at ignored pixels seem to count (they
    enlarge the union of the class predicted there). An ignored pixel is left out entirely:
    drop it from the predictions as well as from the targets.""")
def ignored_predictions_counted(pred, target, num_classes, ignore_index=255):
    kept = _checked_labels(pred, target, num_classes, ignore_index)
    confusion = _confusion(pred[kept], target[kept], num_classes)
    predicted_anywhere = torch.bincount(pred.reshape(-1), minlength=num_classes).double()
    intersection = confusion.diag()
    union = predicted_anywhere + confusion.sum(1) - intersection
    iou = torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, math.nan))
    return iou[~iou.isnan()].mean().item(), iou


@CONTRACT.mistake("mean_iou_ignoring", """a class absent from both prediction and truth seems
    scored 0 and averaged in. Its IoU is undefined (0 / 0): nan, and the mean leaves it out.""")
def absent_class_scored_zero(pred, target, num_classes, ignore_index=255):
    kept = _checked_labels(pred, target, num_classes, ignore_index)
    _, iou = _ious(_confusion(pred[kept], target[kept], num_classes))
    iou = torch.nan_to_num(iou, nan=0.0)
    return iou.mean().item(), iou


@CONTRACT.mistake("mean_iou_ignoring", """the IoU seems computed image by image and averaged over
    the images. Benchmarks sum each class's intersection and union over the whole data set first,
    then divide: a small image does not weigh as much as a large object.""")
def averaged_over_images(pred, target, num_classes, ignore_index=255):
    _checked_labels(pred, target, num_classes, ignore_index)
    per_image = []
    for p, t in zip(pred, target, strict=True):
        kept = t != ignore_index
        per_image.append(_ious(_confusion(p[kept], t[kept], num_classes))[1])
    iou = torch.stack(per_image).nanmean(0)
    return iou[~iou.isnan()].mean().item(), iou


@CONTRACT.mistake("mean_iou_ignoring", """the union seems to count the intersection twice (the
    predicted plus the true pixels of the class). The union is predicted + true - intersection.""")
def intersection_counted_twice(pred, target, num_classes, ignore_index=255):
    kept = _checked_labels(pred, target, num_classes, ignore_index)
    confusion = _confusion(pred[kept], target[kept], num_classes)
    union = confusion.sum(0) + confusion.sum(1)
    iou = torch.where(union > 0, confusion.diag() / union.clamp(min=1), torch.full_like(union, math.nan))
    return iou[~iou.isnan()].mean().item(), iou
