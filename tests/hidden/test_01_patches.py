"""Hidden tests for exercise 01 (patches): ``patchify`` and ``unpatchify``.

Inputs are drawn from the grader's ``rng``; results are compared with ``vitcourse.models.patches`` and,
for the patch order, with an independent stride-p convolution in float64.
"""

import torch
import torch.nn.functional as F

from vitcourse.grading.hidden import expect_raises, expect_tensor, points
from vitcourse.models.patches import patchify as reference_patchify

EXERCISE = "01_patches"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "patchify": "vitcourse.models.patches.patchify",
    "unpatchify": "vitcourse.models.patches.unpatchify",
}


def _int(rng, low, high):
    """A random int in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def _images(rng, batch, channels, rows, cols, p, dtype=torch.float32):
    return torch.randn(batch, channels, rows * p, cols * p, generator=rng, dtype=dtype)


@points(2)
def test_patchify_random_batch(student, rng):
    """patchify on a random batch of non-square images equals the reference."""
    p = _int(rng, 2, 4)
    rows, cols = _int(rng, 2, 4), _int(rng, 2, 4)
    if rows == cols:
        cols += 1
    images = _images(rng, _int(rng, 2, 3), _int(rng, 2, 3), rows, cols, p)
    got = student.call("patchify", images, p)
    expect_tensor(got, reference_patchify(images, p), name=f"patchify(images of shape {tuple(images.shape)}, {p})")


@points(1)
def test_patchify_batch_of_one_gray(student, rng):
    """patchify on one single-channel image equals the reference."""
    p = _int(rng, 2, 3)
    images = _images(rng, 1, 1, _int(rng, 2, 4), _int(rng, 1, 3), p)
    got = student.call("patchify", images, p)
    expect_tensor(got, reference_patchify(images, p), name=f"patchify(images of shape {tuple(images.shape)}, {p})")


@points(1)
def test_patchify_single_patch(student, rng):
    """patchify of an image that is exactly one patch gives N = 1."""
    p = _int(rng, 2, 5)
    images = _images(rng, _int(rng, 1, 2), 3, 1, 1, p)
    got = student.call("patchify", images, p)
    expect_tensor(got, reference_patchify(images, p), name=f"patchify(images of shape {tuple(images.shape)}, {p})")


@points(1)
def test_patchify_keeps_float64(student, rng):
    """patchify keeps the dtype of float64 images."""
    p = 2
    images = _images(rng, 2, 2, 2, 3, p, dtype=torch.float64)
    got = student.call("patchify", images, p)
    expect_tensor(got, reference_patchify(images, p), name="patchify(float64 images, 2)")


@points(2)
def test_patchify_matches_convolution(student, rng):
    """patchify(x, p) @ W.flatten(1).T + b equals the stride-p convolution (patch and pixel order)."""
    p = _int(rng, 2, 3)
    channels, rows = _int(rng, 2, 3), _int(rng, 2, 3)
    cols = rows + _int(rng, 1, 2)
    images = _images(rng, 2, channels, rows, cols, p, dtype=torch.float64)
    weight = torch.randn(5, channels, p, p, generator=rng, dtype=torch.float64)
    bias = torch.randn(5, generator=rng, dtype=torch.float64)
    got = student.call("patchify", images, p)
    expect_tensor(got, reference_patchify(images, p), name="patchify(float64 images)")
    tokens = got @ weight.flatten(1).T + bias
    expected = F.conv2d(images, weight, bias, stride=p).flatten(2).transpose(1, 2)
    expect_tensor(tokens, expected, name="patchify(x, p) @ conv.weight.flatten(1).T + conv.bias")


@points(1)
def test_patchify_rejects_bad_height(student, rng):
    """patchify raises ValueError when H is not a multiple of p."""
    p = _int(rng, 2, 4)
    images = torch.randn(1, 1, 2 * p + 1, 2 * p, generator=rng)
    expect_raises(lambda: student.call("patchify", images, p), "ValueError",
                  name=f"patchify(images of shape {tuple(images.shape)}, {p})")


@points(1)
def test_patchify_rejects_bad_width(student, rng):
    """patchify raises ValueError when W is not a multiple of p."""
    p = _int(rng, 2, 4)
    images = torch.randn(2, 3, p, 3 * p - 1, generator=rng)
    expect_raises(lambda: student.call("patchify", images, p), "ValueError",
                  name=f"patchify(images of shape {tuple(images.shape)}, {p})")


@points(2)
def test_unpatchify_inverts_patchify(student, rng):
    """unpatchify(patchify(x, p), p, (H, W)) gives back random non-square images."""
    p = _int(rng, 2, 4)
    rows, cols = _int(rng, 1, 3), _int(rng, 2, 4)
    images = _images(rng, _int(rng, 1, 3), _int(rng, 1, 3), rows, cols, p)
    patches = reference_patchify(images, p)
    size = (rows * p, cols * p)
    got = student.call("unpatchify", patches, p, size)
    expect_tensor(got, images, name=f"unpatchify(patches of shape {tuple(patches.shape)}, {p}, {size})")


@points(1)
def test_unpatchify_single_patch_float64(student, rng):
    """unpatchify of a single float64 patch gives back the image."""
    p = _int(rng, 2, 4)
    images = _images(rng, 1, 2, 1, 1, p, dtype=torch.float64)
    got = student.call("unpatchify", reference_patchify(images, p), p, (p, p))
    expect_tensor(got, images, name=f"unpatchify(one float64 patch, {p}, ({p}, {p}))")
