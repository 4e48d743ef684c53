"""Position embeddings: fixed 2D sin-cos tables, and resampling a learned grid to a new size.

A ViT adds one D-dim vector per patch position. With learned embeddings the table is tied to
the training image size; to use the model at another size we treat the table as a small
``D``-channel image of shape ``(rows, cols)`` and interpolate it (ViT paper, section 3.2).
Prefix tokens (class, distillation, registers) have no place on the grid and pass through.

How the implementations out there relate (tests/test_posembed.py checks the first three
against timm, transformers and scipy):

* timm ``resample_abs_pos_embed``: equal to :func:`resample_pos_embed` with the same arguments
  (bicubic, ``antialias=True`` by default). Antialiasing is not only about shrinking: PyTorch's
  antialiased bicubic also uses another cubic kernel (a = -0.5, as PIL) than the plain one
  (a = -0.75), so the two differ when enlarging too; for bilinear they agree when enlarging.
* Hugging Face ``ViTEmbeddings.interpolate_pos_encoding`` (current transformers, which passes
  the target size; old versions passed a scale factor with 0.1 added, which changed the
  result): bicubic without antialiasing, i.e. ``resample_pos_embed(..., antialias=False)``.
* The original JAX ViT code (``scipy.ndimage.zoom(..., order=1)``): linear interpolation with
  corner pixels aligned, i.e. ``mode="bilinear", align_corners=True, antialias=False``.
* DeiT's fine-tuning at 384 used the timm of its day, bicubic without antialiasing
  (``antialias=False``); the DeiT code itself is not installed here, so this one is not tested.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..validation import (
    check_finite_positive,
    check_int,
    check_int_pair,
    check_non_negative_int,
    check_tensor,
)

_MODES = ("nearest", "bilinear", "bicubic", "area", "nearest-exact")
_ANTIALIAS_MODES = ("bilinear", "bicubic")
_ALIGN_CORNERS_MODES = ("bilinear", "bicubic")


def _check_pos_embed(pos_embed, num_prefix_tokens) -> int:
    """Validate a ``(1, num_prefix_tokens + rows * cols, D)`` table; return its number of grid tokens."""
    check_tensor(pos_embed, "pos_embed")
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed must have shape (1, prefix + rows*cols, D), got {tuple(pos_embed.shape)}")
    if not pos_embed.is_floating_point():
        raise TypeError(f"pos_embed must be a floating-point tensor, got dtype {pos_embed.dtype}")
    check_non_negative_int(num_prefix_tokens, "num_prefix_tokens")
    if num_prefix_tokens > pos_embed.shape[1]:
        raise ValueError(
            f"num_prefix_tokens ({num_prefix_tokens}) exceeds the {pos_embed.shape[1]} tokens of "
            f"pos_embed {tuple(pos_embed.shape)}"
        )
    return pos_embed.shape[1] - num_prefix_tokens


def check_resample_options(mode: str, align_corners: bool | None = None, old_grid=None) -> None:
    """Validate :func:`resample_pos_embed`'s options. Callers that skip the resampling when the
    grid does not change call this first, so that a typo fails whatever the grid."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if align_corners is not None and mode not in _ALIGN_CORNERS_MODES:
        raise ValueError(f"align_corners applies only to modes {_ALIGN_CORNERS_MODES}, not mode={mode!r}")
    if old_grid is not None:
        check_int_pair(old_grid, "old_grid")


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid,
    old_grid=None,
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
    antialias: bool = True,
    align_corners: bool | None = None,
) -> torch.Tensor:
    """Resample a learned position-embedding grid to ``new_grid``.

    Args:
        pos_embed: ``(1, num_prefix_tokens + rows * cols, D)``, grid tokens in row-major order.
        new_grid: ``(rows, cols)`` of the new patch grid (an int means square).
        old_grid: ``(rows, cols)`` of ``pos_embed``'s grid; ``None`` infers a square grid.
        num_prefix_tokens: leading tokens (class, distillation, registers) copied unchanged.
        mode: ``torch.nn.functional.interpolate`` mode.
        antialias: use the antialiased kernel (only bilinear and bicubic have one; ignored for
            the other modes). For bilinear it changes only shrinking; for bicubic it also
            changes enlarging (another cubic kernel, see above). ``True`` matches timm;
            ``False`` matches Hugging Face and DeiT.
        align_corners: as in ``F.interpolate`` (bilinear and bicubic only); ``True`` with
            ``mode="bilinear"`` matches the original JAX code.

    Returns:
        ``(1, num_prefix_tokens + new_rows * new_cols, D)`` in ``pos_embed``'s dtype; the
        interpolation itself runs in float32. When the grid does not change, ``pos_embed``
        itself is returned. A rectangular grid with the same number of cells (2 x 8 -> 4 x 4)
        is really resampled.
    """
    num_grid_tokens = _check_pos_embed(pos_embed, num_prefix_tokens)
    check_resample_options(mode, align_corners)
    new_grid = check_int_pair(new_grid, "new_grid")
    if old_grid is None:
        side = math.isqrt(num_grid_tokens)
        if num_grid_tokens <= 0 or side * side != num_grid_tokens:
            raise ValueError(
                f"cannot infer a square old_grid: pos_embed has {pos_embed.shape[1]} tokens, "
                f"{num_prefix_tokens} prefix, leaving {num_grid_tokens} grid tokens; pass old_grid"
            )
        old_grid = (side, side)
    old_grid = check_int_pair(old_grid, "old_grid")
    if old_grid[0] * old_grid[1] != num_grid_tokens:
        raise ValueError(
            f"pos_embed has {pos_embed.shape[1]} tokens, which is not num_prefix_tokens "
            f"({num_prefix_tokens}) + old_grid {old_grid} = {num_prefix_tokens + old_grid[0] * old_grid[1]}"
        )
    if new_grid == old_grid:
        return pos_embed

    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = grid.shape[-1]
    # (1, rows*cols, D) -> (1, D, rows, cols): interpolate treats the embedding as a D-channel image.
    image = grid.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    image = F.interpolate(
        image,
        size=new_grid,
        mode=mode,
        align_corners=align_corners,
        antialias=antialias and mode in _ANTIALIAS_MODES,
    )
    grid = image.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def sincos_pos_embed_2d(
    embed_dim: int,
    grid,
    num_prefix_tokens: int = 0,
    temperature: float = 10000.0,
    convention: str = "mae",
) -> torch.Tensor:
    """Fixed 2D sine-cosine position embeddings, ``(1, num_prefix_tokens + rows * cols, D)``.

    A quarter of the D channels encodes the column ``x`` of a patch and a quarter its row
    ``y``, each as ``sin(pos * w_i)`` and ``cos(pos * w_i)`` for ``D / 4`` frequencies
    ``w_i = temperature ** (-i / n)``, ``i = 0 .. D/4 - 1``. The channel layout is
    ``[sin(x w), cos(x w), sin(y w), cos(y w)]``, the same in both conventions:

    * ``"mae"`` (MAE, MoCo v3): ``n = D / 4``;
    * ``"big_vision"`` (big_vision's ``posemb_sincos_2d``, "Better plain ViT baselines"):
      ``n = D / 4 - 1``, so the lowest frequency is exactly ``1 / temperature``.

    Grid tokens are in row-major order; prefix tokens get zero vectors (MAE's choice).
    Returned in float32.
    """
    check_int(embed_dim, "embed_dim", "a positive multiple of 4", lambda v: v > 0 and v % 4 == 0)
    check_non_negative_int(num_prefix_tokens, "num_prefix_tokens")
    if convention not in ("mae", "big_vision"):
        raise ValueError(f"convention must be 'mae' or 'big_vision', got {convention!r}")
    check_finite_positive(temperature, "temperature")
    rows, cols = check_int_pair(grid, "grid")
    quarter = embed_dim // 4
    if convention == "big_vision" and quarter < 2:
        raise ValueError(f"convention='big_vision' needs embed_dim >= 8, got {embed_dim}")
    denominator = quarter if convention == "mae" else quarter - 1
    # Computed in float64 and rounded once, so the table does not depend on the device.
    omega = temperature ** (-torch.arange(quarter, dtype=torch.float64) / denominator)  # (D/4,)
    y, x = torch.meshgrid(
        torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64), indexing="ij"
    )
    x = x.reshape(-1, 1) * omega  # (rows*cols, D/4), row-major
    y = y.reshape(-1, 1) * omega
    table = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)
    table = torch.cat([torch.zeros(num_prefix_tokens, embed_dim, dtype=torch.float64), table])
    return table.float().unsqueeze(0)
