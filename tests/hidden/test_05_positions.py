"""Hidden tests for exercise 05 (positions): ``sincos_pos_embed_2d`` against ``vitcourse.models.posembed``
(MAE's convention: column in the first half, row in the second)."""

import torch

from vitcourse.grading.hidden import expect_raises, expect_tensor, points
from vitcourse.models.posembed import sincos_pos_embed_2d as reference

EXERCISE = "05_positions"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "sincos_pos_embed_2d": "vitcourse.models.posembed.sincos_pos_embed_2d",
}


def _int(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


@points(3)
def test_random_rectangular_grid(student, rng):
    """A random non-square grid and width equals the reference."""
    dim = 4 * _int(rng, 1, 8)
    rows = _int(rng, 1, 6)
    cols = rows + _int(rng, 1, 3)
    got = student.call("sincos_pos_embed_2d", dim, (rows, cols))
    expect_tensor(got, reference(dim, (rows, cols)), name=f"sincos_pos_embed_2d({dim}, ({rows}, {cols}))")


@points(1)
def test_tall_grid(student, rng):
    """More rows than columns: rows and columns are not swapped."""
    got = student.call("sincos_pos_embed_2d", 8, (3, 1))
    expect_tensor(got, reference(8, (3, 1)), name="sincos_pos_embed_2d(8, (3, 1))")


@points(2)
def test_prefix_tokens(student, rng):
    """num_prefix_tokens leading rows are zero, then the grid."""
    prefix = _int(rng, 1, 3)
    got = student.call("sincos_pos_embed_2d", 16, (2, 3), num_prefix_tokens=prefix)
    expect_tensor(got, reference(16, (2, 3), num_prefix_tokens=prefix),
                  name=f"sincos_pos_embed_2d(16, (2, 3), num_prefix_tokens={prefix})")


@points(1)
def test_single_patch(student, rng):
    """A 1 x 1 grid."""
    got = student.call("sincos_pos_embed_2d", 4, (1, 1))
    expect_tensor(got, reference(4, (1, 1)), name="sincos_pos_embed_2d(4, (1, 1))")


@points(1)
def test_temperature(student, rng):
    """The temperature sets the frequencies."""
    temperature = 50.0 + 200 * float(torch.rand((), generator=rng))
    got = student.call("sincos_pos_embed_2d", 12, (3, 3), temperature=temperature)
    expect_tensor(got, reference(12, (3, 3), temperature=temperature),
                  name=f"sincos_pos_embed_2d(12, (3, 3), temperature={temperature:.2f})")


@points(1)
def test_rejects_width_not_multiple_of_4(student, rng):
    """embed_dim not a multiple of 4 raises ValueError."""
    dim = 4 * _int(rng, 1, 4) + _int(rng, 1, 3)
    expect_raises(lambda: student.call("sincos_pos_embed_2d", dim, (2, 2)), "ValueError",
                  name=f"sincos_pos_embed_2d({dim}, (2, 2))")
