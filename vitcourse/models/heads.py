"""Heads that put a ViT's patch tokens to another use than classification (chapter 2).

:class:`SegmentationHead`: patch tokens ``(B, N, D)`` -> per-pixel class logits ``(B, K, H, W)``
with one linear map per token (each token paints its own p x p patch).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..validation import check_int_pair, check_positive_int
from .patches import unpatchify

__all__ = ["SegmentationHead"]


class SegmentationHead(nn.Module):
    """Patch tokens -> per-pixel logits: a linear map from each token to its patch's pixels.

    Token ``i`` of the ``(rows, cols)`` grid predicts ``K`` logits for each of the ``p x p``
    pixels of patch ``i``; :func:`vitcourse.models.patches.unpatchify` puts the patches back in place.
    This is the simplest decoder (the "linear" decoder of segmentation ViTs): all spatial detail
    finer than a patch must already be in the token.

    Args:
        embed_dim: token width D.
        num_classes: classes K (background included).
        patch_size: patch side p.
        grid_size: ``(rows, cols)`` of the token grid.

    Input ``(B, rows * cols, D)`` (patch tokens only, no class token) ->
    output ``(B, K, rows * p, cols * p)``.
    """

    def __init__(self, embed_dim: int, num_classes: int, patch_size: int, grid_size):
        super().__init__()
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.patch_size = check_positive_int(patch_size, "patch_size")
        self.grid_size = check_int_pair(grid_size, "grid_size")
        self.proj = nn.Linear(embed_dim, num_classes * patch_size * patch_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        rows, cols = self.grid_size
        if tokens.dim() != 3 or tokens.shape[1] != rows * cols or tokens.shape[2] != self.embed_dim:
            raise ValueError(
                f"tokens must have shape (B, {rows * cols}, {self.embed_dim}), got {tuple(tokens.shape)}"
            )
        p = self.patch_size
        # (B, N, K*p*p), features ordered (K, p, p) as unpatchify expects (C, p, p).
        return unpatchify(self.proj(tokens), p, (rows * p, cols * p))
