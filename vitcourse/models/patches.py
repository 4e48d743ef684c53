"""Images to patches and back: the first step of a ViT, written out explicitly.

Conventions (DESIGN.md): patches are taken in row-major order over the grid, and each flattened
patch is ordered ``(C, p, p)``, the same order as a ``Conv2d`` weight, so that
``patchify(x, p) @ conv.weight.flatten(1).T + conv.bias`` equals the stride-p convolution.
"""

from __future__ import annotations

import torch

from ..validation import check_int_pair, check_positive_int, check_tensor

__all__ = ["patchify", "unpatchify"]


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping square patches.

    Args:
        images: ``(B, C, H, W)``; H and W must be multiples of ``patch_size``.
        patch_size: the patch side p.

    Returns:
        ``(B, N, C * p * p)`` with ``N = (H / p) * (W / p)``, patches in row-major grid order,
        each flattened in ``(C, p, p)`` order; same dtype and device as ``images``.
    """
    p = check_positive_int(patch_size, "patch_size")
    check_tensor(images, "images")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    batch, channels, height, width = images.shape
    if height % p or width % p:
        raise ValueError(f"image size ({height}, {width}) is not a multiple of patch_size {p}")
    rows, cols = height // p, width // p
    # (B, C, rows, p, cols, p) -> (B, rows, cols, C, p, p): grid first, then one patch's pixels.
    grid = images.reshape(batch, channels, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(batch, rows * cols, channels * p * p)


def unpatchify(patches: torch.Tensor, patch_size: int, image_size) -> torch.Tensor:
    """The inverse of :func:`patchify`.

    Args:
        patches: ``(B, N, C * p * p)``.
        patch_size: the patch side p.
        image_size: ``(H, W)`` of the images (an int means square), multiples of p with
            ``N = (H / p) * (W / p)``.

    Returns:
        ``(B, C, H, W)``.
    """
    p = check_positive_int(patch_size, "patch_size")
    check_tensor(patches, "patches")
    if patches.dim() != 3:
        raise ValueError(f"patches must have shape (B, N, C*p*p), got {tuple(patches.shape)}")
    height, width = image_size = check_int_pair(image_size, "image_size")
    if height % p or width % p:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {p}")
    batch, num_patches, patch_dim = patches.shape
    rows, cols = height // p, width // p
    if num_patches != rows * cols or patch_dim % (p * p):
        raise ValueError(
            f"patches of shape {tuple(patches.shape)} do not fit image_size {image_size} "
            f"with patch_size {p} (expected N = {rows * cols} and a multiple of {p * p} features)"
        )
    channels = patch_dim // (p * p)
    grid = patches.reshape(batch, rows, cols, channels, p, p).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(batch, channels, height, width)
