"""Exercise 01 (patches): overlapping patches, and a patch embedding brought over from a
codebase that flattens patches channels-last.

The chapter page (*From pixels to tokens*) cuts an image into non-overlapping patches and shows
that the linear patch embedding is a convolution with kernel size and stride ``p``. The exercise
asks for what the page does not print:

- ``overlapping_patches(images, patch_size, stride)``: every ``p x p`` window whose top-left
  corner sits on a multiple of ``stride`` (a convolution's windows, without padding), in
  row-major order, each flattened ``(C, p, p)``;
- ``linear_to_conv_weight(weight, patch_size)``: the ``Conv2d`` weight ``(D, C, p, p)`` of an
  ``nn.Linear`` patch embedding written for patches flattened ``(p, p, C)``, channels last, as
  ``einops.rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)")`` makes them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models.patches import patchify
from ...validation import check_positive_int, check_tensor
from ..contracts import Contract, draw_int
from ..expectations import expect_raises, expect_tensor

__all__ = ["CONTRACT", "overlapping_patches", "linear_to_conv_weight"]

CONTRACT = Contract(
    "01_patches",
    "overlapping patches; a channels-last linear patch embedding as a convolution",
    names={
        "overlapping_patches": "(images, patch_size, stride)",
        "linear_to_conv_weight": "(weight, patch_size)",
    },
    reference_answers={
        "overlapping_patches": "vitcourse.course.exercises.patches.overlapping_patches",
        "linear_to_conv_weight": "vitcourse.course.exercises.patches.linear_to_conv_weight",
    },
)


# ---- the references ------------------------------------------------------------------------------


def overlapping_patches(images: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """Every ``p x p`` window at a multiple of ``stride``: ``(B, C, H, W)`` -> ``(B, N, C * p * p)``.

    ``N = rows * cols`` with ``rows = (H - p) // stride + 1`` (likewise ``cols`` with ``W``),
    windows in row-major order, each flattened ``(C, p, p)``; the dtype of ``images``. A window
    that would run past the border is not taken, as in a convolution without padding. Raises
    ``ValueError`` when ``p`` exceeds H or W, or ``stride`` is not a positive int.
    """
    check_tensor(images, "images")
    p, stride = check_positive_int(patch_size, "patch_size"), check_positive_int(stride, "stride")
    if images.dim() != 4 or p > images.shape[-2] or p > images.shape[-1]:
        raise ValueError(f"images must be (B, C, H, W) with H, W >= patch_size {p}, got {tuple(images.shape)}")
    windows = images.unfold(2, p, stride).unfold(3, p, stride)  # (B, C, rows, cols, p, p)
    batch, channels, rows, cols = windows.shape[:4]
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(batch, rows * cols, channels * p * p)


def linear_to_conv_weight(weight: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(D, p * p * C)`` weight of a linear embedding of ``(p, p, C)``-flattened patches ->
    the ``(D, C, p, p)`` weight of the ``Conv2d`` (kernel and stride ``p``) computing the same
    tokens. Raises ``ValueError`` when the in-features are not a multiple of ``p * p``."""
    check_tensor(weight, "weight")
    p = check_positive_int(patch_size, "patch_size")
    if weight.dim() != 2 or weight.shape[1] % (p * p):
        raise ValueError(f"weight must be (D, p * p * C) with p = {p}, got {tuple(weight.shape)}")
    out_features, in_features = weight.shape
    return weight.reshape(out_features, p, p, in_features // (p * p)).permute(0, 3, 1, 2).contiguous()


def _channels_last_patches(images: torch.Tensor, p: int) -> torch.Tensor:
    """Non-overlapping patches flattened ``(p, p, C)``, written independently of the above."""
    b, c, h, w = images.shape
    grid = images.permute(0, 2, 3, 1).reshape(b, h // p, p, w // p, p, c)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(b, (h // p) * (w // p), p * p * c)


# ---- overlapping_patches: 8 points ---------------------------------------------------------------


def _images(rng, batch, channels, height, width, dtype=torch.float32):
    return torch.randn(batch, channels, height, width, generator=rng, dtype=dtype)


def _label(images, p, stride):
    return f"overlapping_patches(images of shape {tuple(images.shape)}, patch_size={p}, stride={stride})"


@CONTRACT.clause("overlapping_patches", points=3)
def overlapping_random_batch(student, rng):
    """Overlapping windows (stride < patch size) of a random batch of non-square images."""
    p = draw_int(rng, 2, 5)
    stride = draw_int(rng, 1, p - 1)
    rows, cols = draw_int(rng, 2, 4), draw_int(rng, 2, 5)
    cols += cols == rows
    images = _images(rng, draw_int(rng, 1, 3), draw_int(rng, 2, 3), p + stride * (rows - 1), p + stride * (cols - 1))
    got = student.call("overlapping_patches", images, p, stride)
    expect_tensor(got, overlapping_patches(images, p, stride), name=_label(images, p, stride))


@CONTRACT.clause("overlapping_patches", points=2)
def same_as_strided_convolution(student, rng):
    """In float64, patches @ W.flatten(1).T + b equals a Conv2d(kernel p, stride s) (the page's identity, overlapping)."""
    p = draw_int(rng, 2, 4)
    stride = draw_int(rng, 1, p - 1)
    channels, dim = draw_int(rng, 1, 3), draw_int(rng, 2, 6)
    images = _images(rng, 2, channels, p + stride * draw_int(rng, 2, 4), p + stride * draw_int(rng, 1, 3), torch.float64)
    weight = torch.randn(dim, channels, p, p, generator=rng, dtype=torch.float64)
    bias = torch.randn(dim, generator=rng, dtype=torch.float64)
    got = student.call("overlapping_patches", images, p, stride)
    expect_tensor(got, overlapping_patches(images, p, stride), name=_label(images, p, stride))
    tokens = F.conv2d(images, weight, bias, stride=stride).flatten(2).transpose(1, 2)
    expect_tensor(got @ weight.flatten(1).T + bias, tokens,
                  name=f"your patches @ conv.weight.flatten(1).T + conv.bias against Conv2d(stride={stride})")


@CONTRACT.clause("overlapping_patches", points=1)
def stride_equal_to_patch_size(student, rng):
    """With stride = patch size, the windows are the page's non-overlapping patches."""
    p = draw_int(rng, 2, 4)
    images = _images(rng, draw_int(rng, 1, 2), 3, p * draw_int(rng, 1, 3), p * draw_int(rng, 2, 4))
    got = student.call("overlapping_patches", images, p, p)
    expect_tensor(got, patchify(images, p), name=_label(images, p, p))


@CONTRACT.clause("overlapping_patches", points=1)
def windows_past_the_border_are_dropped(student, rng):
    """When (H - p) or (W - p) is not a multiple of the stride, the windows that do not fit are left out."""
    p = draw_int(rng, 3, 5)
    stride = draw_int(rng, 2, p - 1)
    height = p + stride * draw_int(rng, 1, 3) + draw_int(rng, 1, stride - 1)
    width = p + stride * draw_int(rng, 1, 3) + draw_int(rng, 1, stride - 1)
    images = _images(rng, 1, 2, height, width)
    got = student.call("overlapping_patches", images, p, stride)
    expect_tensor(got, overlapping_patches(images, p, stride), name=_label(images, p, stride))


@CONTRACT.clause("overlapping_patches", points=1)
def rejects_what_has_no_window(student, rng):
    """A patch larger than the image, or a stride below 1, raises ValueError."""
    p = draw_int(rng, 3, 5)
    small = _images(rng, 1, 1, p - 1, p + 2)
    expect_raises(lambda: student.call("overlapping_patches", small, p, 1), "ValueError", name=_label(small, p, 1))
    images = _images(rng, 1, 1, p + 2, p + 2)
    expect_raises(lambda: student.call("overlapping_patches", images, p, 0), "ValueError", name=_label(images, p, 0))


# ---- linear_to_conv_weight: 4 points -------------------------------------------------------------------


def _channels(rng, p):
    """C in 2..4 with C != p and C != p * p: otherwise a plain reshape, or the conversion done
    backwards, gives the right numbers by coincidence."""
    channels = draw_int(rng, 2, 3)
    return channels + (channels == p)


@CONTRACT.clause("linear_to_conv_weight", points=2)
def converted_weight(student, rng):
    """The Conv2d weight (D, C, p, p) of a random channels-last linear embedding (several channels)."""
    p, dim = draw_int(rng, 2, 4), draw_int(rng, 2, 8)
    channels = _channels(rng, p)
    weight = torch.randn(dim, p * p * channels, generator=rng)
    got = student.call("linear_to_conv_weight", weight, p)
    expect_tensor(got, linear_to_conv_weight(weight, p),
                  name=f"linear_to_conv_weight(weight of shape {tuple(weight.shape)}, patch_size={p})")


@CONTRACT.clause("linear_to_conv_weight", points=1)
def convolution_gives_the_linear_tokens(student, rng):
    """In float64, Conv2d(kernel = stride = p) with the converted weight gives the linear layer's tokens."""
    p, dim = draw_int(rng, 2, 4), draw_int(rng, 2, 6)
    channels = _channels(rng, p)
    weight = torch.randn(dim, p * p * channels, generator=rng, dtype=torch.float64)
    bias = torch.randn(dim, generator=rng, dtype=torch.float64)
    images = _images(rng, 2, channels, p * draw_int(rng, 1, 3), p * draw_int(rng, 2, 3), torch.float64)
    got = student.call("linear_to_conv_weight", weight, p)
    name = f"linear_to_conv_weight(float64 weight of shape {tuple(weight.shape)}, patch_size={p})"
    expect_tensor(got, linear_to_conv_weight(weight, p), name=name)
    expect_tensor(F.conv2d(images, got, bias, stride=p).flatten(2).transpose(1, 2),
                  _channels_last_patches(images, p) @ weight.T + bias,
                  name="Conv2d with your weight against the linear layer on (p, p, C) patches")


@CONTRACT.clause("linear_to_conv_weight", points=1)
def rejects_a_weight_of_the_wrong_width(student, rng):
    """A weight whose in-features are not a multiple of p * p raises ValueError."""
    p = draw_int(rng, 2, 4)
    weight = torch.randn(4, p * p * 3 + draw_int(rng, 1, p * p - 1), generator=rng)
    expect_raises(lambda: student.call("linear_to_conv_weight", weight, p), "ValueError",
                  name=f"linear_to_conv_weight(weight of shape {tuple(weight.shape)}, patch_size={p})")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _windows(images, p, stride):
    """(B, C, rows, cols, p, p): every window, from Tensor.unfold (validated as the contract says)."""
    if p > images.shape[-2] or p > images.shape[-1] or stride < 1:
        raise ValueError("no window fits")
    return images.unfold(2, p, stride).unfold(3, p, stride)


@CONTRACT.mistake("overlapping_patches", """each patch seems flattened (p, p, C), channel last.
    The contract asks for (C, p, p), channel first: the order of a Conv2d weight, so that
    patches @ conv.weight.flatten(1).T is the convolution. Look at where the channel axis goes
    before you flatten a window.""")
def channels_last_inside(images, patch_size, stride):
    w = _windows(images, patch_size, stride)
    return w.permute(0, 2, 3, 4, 5, 1).reshape(w.shape[0], w.shape[2] * w.shape[3], -1)


@CONTRACT.mistake("overlapping_patches", """the windows come column by column. The contract asks
    for row-major order: along the first row of windows from left to right, then the next row.
    Look at the order of the grid axes (rows, cols) when you merge them into N.""")
def column_major_grid(images, patch_size, stride):
    w = _windows(images, patch_size, stride)
    return w.permute(0, 3, 2, 1, 4, 5).reshape(w.shape[0], w.shape[2] * w.shape[3], -1)


@CONTRACT.mistake("overlapping_patches", """rows and columns are swapped inside each patch
    (it is flattened as (C, column, row)). Look at the order of the two pixel axes of a window
    before you flatten it.""")
def patch_transposed(images, patch_size, stride):
    w = _windows(images, patch_size, stride).transpose(-1, -2)
    return w.permute(0, 2, 3, 1, 4, 5).reshape(w.shape[0], w.shape[2] * w.shape[3], -1)


@CONTRACT.mistake("overlapping_patches", """the windows step by patch_size, not by stride: these
    are the page's non-overlapping patches. A window starts at every multiple of stride.""")
def stride_ignored(images, patch_size, stride):
    if stride < 1:
        raise ValueError("stride must be a positive int")
    w = _windows(images, patch_size, patch_size)
    return w.permute(0, 2, 3, 1, 4, 5).reshape(w.shape[0], w.shape[2] * w.shape[3], -1)


@CONTRACT.mistake("overlapping_patches", """the last window of each row and column is missing.
    Windows start at 0, stride, 2 * stride, ... up to H - p included: (H - p) // stride + 1 of
    them per column (and likewise along W).""")
def last_window_missing(images, patch_size, stride):
    w = _windows(images, patch_size, stride)[:, :, :-1, :-1]
    return w.permute(0, 2, 3, 1, 4, 5).reshape(w.shape[0], w.shape[2] * w.shape[3], -1)


@CONTRACT.mistake("linear_to_conv_weight", """the weight seems reshaped to (D, C, p, p) without
    reordering. Its in-features are ordered (p, p, C), channel last: split them in that order,
    then move the channel axis in front of the two pixel axes.""")
def reshaped_without_reordering(weight, patch_size):
    p = patch_size
    if weight.shape[1] % (p * p):
        raise ValueError("in-features are not a multiple of p * p")
    return weight.reshape(weight.shape[0], -1, p, p)


@CONTRACT.mistake("linear_to_conv_weight", """the kernel comes out transposed (D, C, column, row).
    The (p, p, C) order is (row, column, channel): keep row before column when you move the
    channel axis.""")
def kernel_transposed(weight, patch_size):
    p = patch_size
    if weight.shape[1] % (p * p):
        raise ValueError("in-features are not a multiple of p * p")
    return weight.reshape(weight.shape[0], p, p, -1).permute(0, 3, 2, 1)


@CONTRACT.mistake("linear_to_conv_weight", """the conversion seems done the other way round: it
    reads the in-features as (C, p, p) and lays them out as (p, p, C). The linear layer's
    in-features are the ones ordered (p, p, C); the Conv2d weight is the one ordered (C, p, p).""")
def converted_backwards(weight, patch_size):
    p = patch_size
    if weight.shape[1] % (p * p):
        raise ValueError("in-features are not a multiple of p * p")
    d, n = weight.shape
    return weight.reshape(d, n // (p * p), p, p).permute(0, 2, 3, 1).reshape(d, n // (p * p), p, p)


@CONTRACT.mistake("linear_to_conv_weight", """the kernel is still channels last, (D, p, p, C).
    A Conv2d weight is (out_channels, in_channels, kernel height, kernel width): move the channel
    axis to position 1.""")
def channels_not_moved(weight, patch_size):
    p = patch_size
    if weight.shape[1] % (p * p):
        raise ValueError("in-features are not a multiple of p * p")
    return weight.reshape(weight.shape[0], p, p, -1)
