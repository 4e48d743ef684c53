"""Position embeddings: resampling a learned grid to a new image size.

A ViT trained at one resolution is used at another by treating its learned position embeddings
as a small image of shape ``(D, rows, cols)`` and interpolating it (ViT paper, section 3.2).
Prefix tokens (class, distillation, registers) have no place on the grid and pass through.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_MODES = ("nearest", "bilinear", "bicubic", "area", "nearest-exact")
_ANTIALIAS_MODES = ("bilinear", "bicubic")


def _as_grid(value, name: str) -> tuple[int, int]:
    """Validate a ``(rows, cols)`` grid size (an int means a square grid)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise TypeError(f"{name} must be an int or a (rows, cols) pair of ints, got {value!r}")
    if value[0] <= 0 or value[1] <= 0:
        raise ValueError(f"{name} must be positive, got {tuple(value)}")
    return int(value[0]), int(value[1])


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid,
    old_grid=None,
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resample a learned position-embedding grid to ``new_grid``.

    Args:
        pos_embed: ``(1, num_prefix_tokens + rows * cols, D)``, grid tokens in row-major order.
        new_grid: ``(rows, cols)`` of the new patch grid (an int means square).
        old_grid: ``(rows, cols)`` of ``pos_embed``'s grid; ``None`` infers a square grid.
        num_prefix_tokens: leading tokens (class, distillation, registers) copied unchanged.
        mode: ``torch.nn.functional.interpolate`` mode.
        antialias: use the antialiased kernel (only bilinear and bicubic have one; ignored
            for the other modes). It changes the result only when shrinking the grid.

    Returns:
        ``(1, num_prefix_tokens + new_rows * new_cols, D)`` in ``pos_embed``'s dtype; the
        interpolation itself runs in float32.
    """
    if not isinstance(pos_embed, torch.Tensor) or pos_embed.dim() != 3:
        shape = tuple(pos_embed.shape) if isinstance(pos_embed, torch.Tensor) else type(pos_embed)
        raise ValueError(f"pos_embed must be a (1, prefix + rows*cols, D) tensor, got {shape}")
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be a non-negative int, got {num_prefix_tokens!r}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    new_grid = _as_grid(new_grid, "new_grid")
    num_grid_tokens = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(max(num_grid_tokens, 0))
        if num_grid_tokens <= 0 or side * side != num_grid_tokens:
            raise ValueError(
                f"cannot infer a square old_grid: pos_embed has {pos_embed.shape[1]} tokens, "
                f"{num_prefix_tokens} prefix, leaving {num_grid_tokens} grid tokens; pass old_grid"
            )
        old_grid = (side, side)
    old_grid = _as_grid(old_grid, "old_grid")
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
        image, size=new_grid, mode=mode, antialias=antialias and mode in _ANTIALIAS_MODES
    )
    grid = image.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)
