"""Hidden tests for exercise 12 (resolution): ``resample_pos_embed`` against
``vitcourse.models.posembed.resample_pos_embed``.

The reference interpolates in float32; a solution computing in float64 inside must pass too, so
the tolerance is float32's (rtol 1e-5, atol 1e-5 times the largest value) for every dtype.
"""

import torch

from vitcourse.grading.hidden import expect_raises, expect_tensor, points
from vitcourse.models.posembed import resample_pos_embed as reference

EXERCISE = "12_resolution"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "resample_pos_embed": "vitcourse.models.posembed.resample_pos_embed",
}


def _int(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def _check(student, pos_embed, *args, **kwargs):
    expected = reference(pos_embed, *args, **kwargs)
    got = student.call("resample_pos_embed", pos_embed, *args, **kwargs)
    scale = max(1.0, float(expected.abs().max()))
    arguments = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    expect_tensor(got, expected, rtol=1e-5, atol=1e-5 * scale,
                  name=f"resample_pos_embed(pos_embed of shape {tuple(pos_embed.shape)}, {arguments})")


@points(2)
def test_square_upsample(student, rng):
    """A square grid enlarged (old grid inferred, one class token)."""
    side, dim = _int(rng, 2, 5), _int(rng, 2, 8)
    pos_embed = torch.randn(1, 1 + side * side, dim, generator=rng)
    _check(student, pos_embed, (side + _int(rng, 1, 4), side + _int(rng, 1, 4)))


@points(2)
def test_rectangular_grid(student, rng):
    """A rectangular old grid, given, resampled to another rectangle."""
    rows, cols = _int(rng, 2, 4), _int(rng, 5, 7)
    pos_embed = torch.randn(1, 1 + rows * cols, 6, generator=rng)
    _check(student, pos_embed, (cols, rows), (rows, cols))


@points(2)
def test_downsample_antialias(student, rng):
    """Shrinking a grid uses the antialiased kernel by default, and not with antialias=False."""
    side = _int(rng, 6, 9)
    pos_embed = torch.randn(1, 1 + side * side, 4, generator=rng)
    _check(student, pos_embed, (3, 4))
    _check(student, pos_embed, (3, 4), antialias=False)


@points(1)
def test_prefix_tokens(student, rng):
    """0 or 2 prefix tokens: the prefix is copied, only the grid is resampled."""
    for prefix in (0, 2):
        pos_embed = torch.randn(1, prefix + 16, 5, generator=rng)
        _check(student, pos_embed, (6, 5), num_prefix_tokens=prefix)


@points(1)
def test_other_modes(student, rng):
    """mode='bilinear' and mode='nearest'."""
    pos_embed = torch.randn(1, 1 + 9, 4, generator=rng)
    _check(student, pos_embed, (5, 4), mode="bilinear")
    _check(student, pos_embed, (5, 4), mode="nearest")


@points(1)
def test_same_grid_unchanged(student, rng):
    """The same grid gives the embeddings back unchanged."""
    pos_embed = torch.randn(1, 1 + 12, 4, generator=rng)
    _check(student, pos_embed, (3, 4), (3, 4))


@points(1)
def test_keeps_float64(student, rng):
    """float64 embeddings come back in float64."""
    pos_embed = torch.randn(1, 1 + 16, 4, generator=rng, dtype=torch.float64)
    _check(student, pos_embed, (6, 6))


@points(1)
def test_rejects_non_square_inferred_grid(student, rng):
    """old_grid=None with a non-square number of grid tokens raises ValueError."""
    pos_embed = torch.randn(1, 1 + 12, 4, generator=rng)
    expect_raises(lambda: student.call("resample_pos_embed", pos_embed, (4, 4)), "ValueError",
                  name="resample_pos_embed(pos_embed with 12 grid tokens, (4, 4))")
