"""Exercise 05 (positions): 2D rotary position embeddings, which the chapter pages do not print.

The page *Positions* builds MAE's fixed 2D sin-cos table, *added* to the patch tokens, and shows
that the dot product of two such embeddings depends only on their offset. The exercise asks for
the rotary form (RoFormer's RoPE, made 2D as in RoPE-ViT and EVA-02), which *rotates* queries and
keys by their position, so that the attention score of two tokens, content included, depends on
their positions only through the offset:

- ``rope_2d(x, grid, temperature=10000.0)``: ``x`` of shape ``(..., N, D)``, ``N = rows * cols``
  tokens in row-major grid order, ``D`` a positive multiple of 4; with ``k = D // 4`` frequencies
  ``w_i = temperature ** (-i / k)``, the feature pair ``(x[2i], x[2i + 1])`` of the token in column
  ``c`` is rotated by the angle ``c * w_i``, and the pair ``(x[D/2 + 2i], x[D/2 + 2i + 1])`` by
  ``r * w_i`` for its row ``r``; a rotation by ``t`` maps ``(a, b)`` to
  ``(a cos t - b sin t, a sin t + b cos t)``. Same shape and dtype as ``x``. ``ValueError`` when
  ``D`` is not a positive multiple of 4 or ``N != rows * cols``.
"""

from __future__ import annotations

import torch

from ..contracts import Contract, draw_float, draw_int
from ..expectations import expect_raises, expect_tensor

__all__ = ["CONTRACT", "rope_2d"]

CONTRACT = Contract(
    "05_positions",
    "2D rotary position embeddings (RoPE): queries and keys rotated by their row and column",
    names={"rope_2d": "(x, grid, temperature=10000.0)"},
    reference_answers={"rope_2d": "vitcourse.course.exercises.positions.rope_2d"},
)


# ---- the reference -----------------------------------------------------------------------------


def _validate(x: torch.Tensor, grid) -> tuple[int, int]:
    rows, cols = grid
    dim = x.shape[-1]
    if dim <= 0 or dim % 4:
        raise ValueError(f"the feature width must be a positive multiple of 4, got {dim}")
    if x.dim() < 2 or x.shape[-2] != rows * cols:
        raise ValueError(f"expected rows * cols = {rows * cols} tokens, got shape {tuple(x.shape)}")
    return rows, cols


def _angles(rows: int, cols: int, k: int, temperature: float, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The (N, k) angles of the column half and of the row half, tokens in row-major order."""
    omega = temperature ** (-torch.arange(k, dtype=torch.float64) / k)
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64), indexing="ij")
    return (c.reshape(-1, 1) * omega).to(dtype), (r.reshape(-1, 1) * omega).to(dtype)


def rope_2d(x: torch.Tensor, grid, temperature: float = 10000.0) -> torch.Tensor:
    """``(..., rows * cols, D)`` -> same shape and dtype: adjacent feature pairs of the first half
    rotated by ``column * w_i``, of the second half by ``row * w_i``, ``w_i = temperature **
    (-i / (D // 4))``."""
    rows, cols = _validate(x, grid)
    k = x.shape[-1] // 4
    angle_c, angle_r = _angles(rows, cols, k, temperature, torch.float64)
    angles = torch.cat([angle_c, angle_r], dim=-1)                # (N, 2k): one angle per pair
    pairs = x.double().reshape(*x.shape[:-1], 2 * k, 2)           # (..., N, 2k, 2)
    a, b = pairs.unbind(-1)
    cos, sin = angles.cos(), angles.sin()
    rotated = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)
    return rotated.reshape(x.shape).to(x.dtype)


def _as_complex(x: torch.Tensor, rows: int, cols: int, temperature: float) -> torch.Tensor:
    """An independent float64 computation: each pair a complex number times exp(i angle)."""
    k = x.shape[-1] // 4
    angle_c, angle_r = _angles(rows, cols, k, temperature, torch.float64)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], 2 * k, 2).contiguous())
    z = z * torch.polar(torch.ones_like(angle_c.repeat(1, 2)), torch.cat([angle_c, angle_r], dim=-1))
    return torch.view_as_real(z).reshape(x.shape)


# ---- the clauses: 6 points -----------------------------------------------------------------------


def _check(student, rng, shape_prefix: tuple, rows: int, cols: int, dim: int, dtype=torch.float32, **kwargs) -> None:
    x = torch.randn(*shape_prefix, rows * cols, dim, generator=rng, dtype=torch.float64).to(dtype)
    temperature = kwargs.get("temperature", 10000.0)
    expected = rope_2d(x, (rows, cols), temperature)
    assert torch.allclose(expected.double(), _as_complex(x, rows, cols, temperature), atol=1e-5)
    extra = "".join(f", {k}={v}" for k, v in kwargs.items())
    got = student.call("rope_2d", x, (rows, cols), **kwargs)
    expect_tensor(got, expected, name=f"rope_2d(x of shape {tuple(x.shape)} {dtype}, grid ({rows}, {cols}){extra})")


@CONTRACT.clause("rope_2d", points=3)
def random_tokens_non_square_grid(student, rng):
    """Random queries on a non-square grid: the rotated tokens."""
    rows = draw_int(rng, 2, 4)
    _check(student, rng, (2,), rows, rows + draw_int(rng, 1, 3), 4 * draw_int(rng, 2, 4))


@CONTRACT.clause("rope_2d", points=1)
def heads_axis_and_float64(student, rng):
    """A (batch, heads, N, D) float64 input: the rotated tokens, in float64."""
    cols = draw_int(rng, 2, 4)
    _check(student, rng, (2, draw_int(rng, 2, 3)), cols + 1, cols, 8, dtype=torch.float64)


@CONTRACT.clause("rope_2d", points=1)
def other_temperature(student, rng):
    """Another temperature (the base of the frequencies): the rotated tokens."""
    _check(student, rng, (1,), 3, 5, 12, temperature=draw_float(rng, 2.0, 100.0, digits=1))


@CONTRACT.clause("rope_2d", points=1)
def rejects_bad_widths_and_grids(student, rng):
    """A width that is not a multiple of 4, or a grid that does not match N, raises ValueError."""
    dim = 4 * draw_int(rng, 1, 3) + 2
    x = torch.randn(6, dim, generator=rng)
    expect_raises(lambda: student.call("rope_2d", x, (2, 3)), "ValueError", name=f"rope_2d(x of shape (6, {dim}), (2, 3))")
    x = torch.randn(6, 8, generator=rng)
    expect_raises(lambda: student.call("rope_2d", x, (2, 4)), "ValueError", name="rope_2d(x of shape (6, 8), (2, 4))")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _rotate(x, grid, temperature, *, swap=False, sign=1.0, halves=False, width_freq=False):
    rows, cols = grid
    dim = x.shape[-1]
    if dim <= 0 or dim % 4 or x.dim() < 2 or x.shape[-2] != rows * cols:
        raise ValueError("bad width or grid")
    k = dim // 4
    omega = temperature ** (-torch.arange(k, dtype=torch.float64) / (dim // 2 if width_freq else k))
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64), indexing="ij")
    first, second = (r, c) if swap else (c, r)
    angles = sign * torch.cat([first.reshape(-1, 1) * omega, second.reshape(-1, 1) * omega], dim=-1)
    xd = x.double()
    if halves:  # each half's features paired i with i + k
        h = xd.reshape(*x.shape[:-1], 2, 2, k)
        a, b = h[..., 0, :], h[..., 1, :]
        cos, sin = angles.reshape(-1, 2, k).cos(), angles.reshape(-1, 2, k).sin()
        out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-2)
        return out.reshape(x.shape).to(x.dtype)
    a, b = xd.reshape(*x.shape[:-1], 2 * k, 2).unbind(-1)
    out = torch.stack([a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()], dim=-1)
    return out.reshape(x.shape).to(x.dtype)


@CONTRACT.mistake("rope_2d", """the first half of the features seems rotated by the row and the
    second by the column. The contract rotates the first half by the column (x) and the second by
    the row (y), as MAE's sin-cos table orders them.""")
def rows_and_columns_swapped(x, grid, temperature=10000.0):
    return _rotate(x, grid, temperature, swap=True)


@CONTRACT.mistake("rope_2d", """the pairs seem rotated the other way (by -angle): (a, b) must
    become (a cos t - b sin t, a sin t + b cos t), a counter-clockwise rotation.""")
def rotated_backwards(x, grid, temperature=10000.0):
    return _rotate(x, grid, temperature, sign=-1.0)


@CONTRACT.mistake("rope_2d", """the features seem paired i with i + D/4 within each half (the
    "rotate half" layout of some language-model code). The contract pairs adjacent features:
    (x[2i], x[2i + 1]).""")
def pairs_split_in_halves(x, grid, temperature=10000.0):
    return _rotate(x, grid, temperature, halves=True)


@CONTRACT.mistake("rope_2d", """the frequencies seem spread over D/2 steps, temperature ** (-i / (D/2)),
    as in a 1D RoPE over the whole width. Each half has its own D/4 frequencies:
    w_i = temperature ** (-i / (D // 4)).""")
def frequencies_over_half_the_width(x, grid, temperature=10000.0):
    return _rotate(x, grid, temperature, width_freq=True)
