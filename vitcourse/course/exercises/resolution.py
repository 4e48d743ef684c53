"""Exercise 12 (resolution): a patch embedding moved to another patch size, FlexiViT's
pseudo-inverse resize in general.

The chapter page (*Input-size adaptation*) resamples position embeddings, and then keeps the
patch contents right at a new image size by scaling the patch with the image and giving the
patch embedding a kernel that does to the new patch what the old one did to the old patch, in
the one case where that is a copy: digits enlarged by repeating pixels (the nearest-neighbour
case). The exercise asks for the general case, which the page does not print:

- ``resize_matrix(old_size, new_size)``: the ``(n * n, p * p)`` float64 matrix ``B`` of bilinear
  resizing (``F.interpolate``, ``align_corners=False``, no antialiasing) from ``p x p`` to
  ``n x n``, acting on row-major flattened patches: ``B @ x.flatten() == resize(x).flatten()``;
- ``pi_resize_patch_weight(weight, new_size)``: a ``Conv2d`` patch-embedding weight
  ``(D, C, p, p)`` -> ``(D, C, n, n)`` whose tokens of the resized patches are the old tokens,
  ``<w', B x> = <w, x>`` for every patch ``x``: exactly when ``n >= p``, in the least-squares
  sense (the pseudo-inverse, ``w' = pinv(B^T) w``) when ``n < p``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...validation import check_positive_int, check_tensor
from ..contracts import Contract, draw_int
from ..expectations import expect_raises, expect_tensor

__all__ = ["CONTRACT", "resize_matrix", "pi_resize_patch_weight"]

CONTRACT = Contract(
    "12_resolution",
    "the matrix of bilinear resizing; a patch embedding moved to a new patch size (FlexiViT's PI-resize)",
    names={
        "resize_matrix": "(old_size, new_size)",
        "pi_resize_patch_weight": "(weight, new_size)",
    },
    reference_answers={
        "resize_matrix": "vitcourse.course.exercises.resolution.resize_matrix",
        "pi_resize_patch_weight": "vitcourse.course.exercises.resolution.pi_resize_patch_weight",
    },
)


# ---- the references ------------------------------------------------------------------------------


def _bilinear(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(..., p, p)`` -> ``(..., size, size)``: the resize the exercise is about."""
    lead = images.shape[:-2]
    flat = images.reshape(-1, 1, *images.shape[-2:])
    out = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return out.reshape(*lead, size, size)


def resize_matrix(old_size: int, new_size: int) -> torch.Tensor:
    """``(n * n, p * p)`` float64: column ``j`` is the ``p x p`` basis image ``j`` (row-major)
    resized bilinearly to ``n x n`` and flattened, so ``B @ x.flatten()`` is ``x`` resized.
    Raises ``ValueError`` unless both sizes are positive ints."""
    p, n = check_positive_int(old_size, "old_size"), check_positive_int(new_size, "new_size")
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, p, p)
    return _bilinear(basis, n).reshape(p * p, n * n).T.contiguous()


def pi_resize_patch_weight(weight: torch.Tensor, new_size: int) -> torch.Tensor:
    """``(D, C, p, p)`` -> ``(D, C, n, n)`` in the dtype of ``weight``: each kernel ``w`` becomes
    ``pinv(B^T) w`` with ``B = resize_matrix(p, n)`` (computed in float64), so that
    ``<w', B x> = <w, x>`` for every patch when ``n >= p`` (least squares when ``n < p``).
    Raises ``ValueError`` unless ``weight`` is 4-D with square kernels."""
    check_tensor(weight, "weight")
    n = check_positive_int(new_size, "new_size")
    if weight.dim() != 4 or weight.shape[-1] != weight.shape[-2]:
        raise ValueError(f"weight must be (D, C, p, p), got {tuple(weight.shape)}")
    d, c, p, _ = weight.shape
    kernels = weight.detach().to(torch.float64).reshape(d * c, p * p)  # each row a w^T
    resized = kernels @ torch.linalg.pinv(resize_matrix(p, n))  # w'^T = w^T pinv(B)
    return resized.reshape(d, c, n, n).to(weight.dtype)


# ---- resize_matrix: 6 points ------------------------------------------------------------------------


def _check_matrix(student, rng, p: int, n: int) -> None:
    got = student.call("resize_matrix", p, n)
    expected = resize_matrix(p, n)
    patches = torch.randn(3, p, p, generator=rng, dtype=torch.float64)
    # the reference against F.interpolate itself, on random patches
    assert torch.allclose(patches.reshape(3, -1) @ expected.T, _bilinear(patches, n).reshape(3, -1), atol=1e-12)
    expect_tensor(got, expected, name=f"resize_matrix({p}, {n})")


@CONTRACT.clause("resize_matrix", points=2)
def enlarging(student, rng):
    """Enlarging p x p to n x n (n > p): B @ x.flatten() is x resized by F.interpolate, flattened row-major."""
    p = draw_int(rng, 2, 5)
    _check_matrix(student, rng, p, draw_int(rng, p + 1, p + 5))


@CONTRACT.clause("resize_matrix", points=2)
def shrinking(student, rng):
    """Shrinking p x p to n x n (n < p), without antialiasing."""
    p = draw_int(rng, 4, 8)
    _check_matrix(student, rng, p, draw_int(rng, 2, p - 1))


@CONTRACT.clause("resize_matrix", points=1)
def same_size_is_the_identity(student, rng):
    """From p x p to p x p, B is the identity."""
    p = draw_int(rng, 2, 6)
    expect_tensor(student.call("resize_matrix", p, p), torch.eye(p * p, dtype=torch.float64),
                  name=f"resize_matrix({p}, {p})")


@CONTRACT.clause("resize_matrix", points=1)
def rejects_sizes_below_one(student, rng):
    """A size below 1 raises ValueError."""
    p = draw_int(rng, 2, 5)
    expect_raises(lambda: student.call("resize_matrix", p, 0), "ValueError", name=f"resize_matrix({p}, 0)")
    expect_raises(lambda: student.call("resize_matrix", -p, p), "ValueError", name=f"resize_matrix({-p}, {p})")


# ---- pi_resize_patch_weight: 9 points ---------------------------------------------------------------


def _weight(rng, p: int, dtype=torch.float64) -> torch.Tensor:
    """Random kernels with D != C, so that a mix-up of the two leading axes shows."""
    return torch.randn(draw_int(rng, 2, 4) + 3, draw_int(rng, 1, 3), p, p, generator=rng, dtype=dtype)


@CONTRACT.clause("pi_resize_patch_weight", points=3)
def tokens_kept_when_enlarging(student, rng):
    """In float64, enlarging: the new kernels on resized patches give the old tokens (and equal the reference)."""
    p = draw_int(rng, 2, 5)
    n = draw_int(rng, p + 1, 2 * p + 1)
    weight = _weight(rng, p)
    got = student.call("pi_resize_patch_weight", weight, n)
    name = f"pi_resize_patch_weight(weight of shape {tuple(weight.shape)}, {n})"
    expect_tensor(got, pi_resize_patch_weight(weight, n), name=name)
    patches = torch.randn(5, weight.shape[1], p, p, generator=rng, dtype=torch.float64)
    old_tokens = patches.flatten(1) @ weight.flatten(1).T
    expect_tensor(_bilinear(patches, n).flatten(1) @ got.flatten(1).T, old_tokens,
                  name="tokens of resized patches under your kernels, against the old tokens")


@CONTRACT.clause("pi_resize_patch_weight", points=2)
def least_squares_when_shrinking(student, rng):
    """In float64, shrinking (n < p): the pseudo-inverse solution, pinv(B^T) w."""
    p = draw_int(rng, 4, 7)
    n = draw_int(rng, 2, p - 1)
    weight = _weight(rng, p)
    expect_tensor(student.call("pi_resize_patch_weight", weight, n), pi_resize_patch_weight(weight, n),
                  name=f"pi_resize_patch_weight(weight of shape {tuple(weight.shape)}, {n})")


@CONTRACT.clause("pi_resize_patch_weight", points=2)
def float32_weight(student, rng):
    """A float32 weight comes back float32 (enlarging by a non-integer factor)."""
    p = draw_int(rng, 3, 5)
    n = p + draw_int(rng, 1, p - 1)
    weight = _weight(rng, p, torch.float32)
    expect_tensor(student.call("pi_resize_patch_weight", weight, n), pi_resize_patch_weight(weight, n),
                  name=f"pi_resize_patch_weight(float32 weight of shape {tuple(weight.shape)}, {n})")


@CONTRACT.clause("pi_resize_patch_weight", points=1)
def same_size_gives_the_weight_back(student, rng):
    """At the same patch size, the weight comes back unchanged."""
    p = draw_int(rng, 2, 5)
    weight = _weight(rng, p)
    expect_tensor(student.call("pi_resize_patch_weight", weight, p), weight,
                  name=f"pi_resize_patch_weight(weight of shape {tuple(weight.shape)}, {p})")


@CONTRACT.clause("pi_resize_patch_weight", points=1)
def rejects_what_is_not_square_kernels(student, rng):
    """A weight that is not (D, C, p, p) with square kernels raises ValueError."""
    p = draw_int(rng, 2, 4)
    oblong = torch.randn(4, 3, p, p + 1, generator=rng)
    expect_raises(lambda: student.call("pi_resize_patch_weight", oblong, p + 2), "ValueError",
                  name=f"pi_resize_patch_weight(weight of shape {tuple(oblong.shape)}, {p + 2})")
    flat = torch.randn(4, 3 * p * p, generator=rng)
    expect_raises(lambda: student.call("pi_resize_patch_weight", flat, p + 2), "ValueError",
                  name=f"pi_resize_patch_weight(weight of shape {tuple(flat.shape)}, {p + 2})")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _sizes(old_size, new_size):
    if old_size < 1 or new_size < 1:
        raise ValueError("sizes must be positive")
    return old_size, new_size


@CONTRACT.mistake("resize_matrix", """the pixels of each resized basis image seem flattened column
    by column. Patches are flattened row-major, as x.flatten() does: along the first row, then
    the next. Look at how you turn each resized image into a column of B.""")
def column_major(old_size, new_size):
    p, n = _sizes(old_size, new_size)
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    out = F.interpolate(basis, size=(n, n), mode="bilinear", align_corners=False)
    return out.transpose(-1, -2).reshape(p * p, n * n).T.contiguous()


@CONTRACT.mistake("resize_matrix", """this is the antialiased resize (antialias=True), which
    differs from the plain one only when shrinking. The contract's resize is F.interpolate's
    bilinear mode without antialiasing.""")
def antialiased(old_size, new_size):
    p, n = _sizes(old_size, new_size)
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    out = F.interpolate(basis, size=(n, n), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(p * p, n * n).T.contiguous()


@CONTRACT.mistake("resize_matrix", """this is the resize with align_corners=True, which pins the
    corner pixels' centres together. The contract's resize uses align_corners=False (the
    default of F.interpolate and of FlexiViT).""")
def corners_aligned(old_size, new_size):
    p, n = _sizes(old_size, new_size)
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    out = F.interpolate(basis, size=(n, n), mode="bilinear", align_corners=True)
    return out.reshape(p * p, n * n).T.contiguous()


def _kernels(weight, new_size):
    if weight.dim() != 4 or weight.shape[-1] != weight.shape[-2] or new_size < 1:
        raise ValueError("weight must be (D, C, p, p)")
    return weight.shape


@CONTRACT.mistake("pi_resize_patch_weight", """the kernels seem resized like images (bilinear
    interpolation of the weight). A kernel is not an image: resized, it reads (n / p)^2 times
    as many pixels and its tokens grow. Ask which w' makes <w', B x> equal <w, x> for every
    patch x, and solve for it.""")
def kernel_resized_as_an_image(weight, new_size):
    d, c, p, _ = _kernels(weight, new_size)
    out = F.interpolate(weight.double(), size=(new_size, new_size), mode="bilinear", align_corners=False)
    return out.to(weight.dtype)


@CONTRACT.mistake("pi_resize_patch_weight", """the kernels seem resized like images and divided
    by the ratio of the patch areas. That keeps the tokens of flat patches, not of the others;
    the contract asks for the w' that keeps <w', B x> = <w, x> for every patch x.""")
def resized_and_rescaled_by_area(weight, new_size):
    d, c, p, _ = _kernels(weight, new_size)
    out = F.interpolate(weight.double(), size=(new_size, new_size), mode="bilinear", align_corners=False)
    return (out * (p / new_size) ** 2).to(weight.dtype)


@CONTRACT.mistake("pi_resize_patch_weight", """each new kernel comes out transposed (column,
    row). Flatten each kernel row-major, as the resize matrix's patches are, and reshape the
    result back in the same order.""")
def kernel_transposed(weight, new_size):
    d, c, p, _ = _kernels(weight, new_size)
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    matrix = F.interpolate(basis, size=(new_size, new_size), mode="bilinear", align_corners=False)
    matrix = matrix.reshape(p * p, new_size * new_size).T
    kernels = weight.double().reshape(d * c, p * p) @ torch.linalg.pinv(matrix)
    return kernels.reshape(d, c, new_size, new_size).transpose(-1, -2).to(weight.dtype)


@CONTRACT.mistake("pi_resize_patch_weight", """the result is float64 for a float32 weight. Solving
    in float64 is right (the pseudo-inverse is sensitive to rounding), but the new weight must
    come back in the dtype of the weight it replaces, so that it loads into the same model.""")
def left_in_float64(weight, new_size):
    d, c, p, _ = _kernels(weight, new_size)
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    matrix = F.interpolate(basis, size=(new_size, new_size), mode="bilinear", align_corners=False)
    matrix = matrix.reshape(p * p, new_size * new_size).T  # (n^2, p^2)
    kernels = weight.double().reshape(d * c, p * p) @ torch.linalg.pinv(matrix)
    return kernels.reshape(d, c, new_size, new_size)
