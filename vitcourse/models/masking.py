"""MAE-style random subsets of patch tokens (chapter 2.2, masked-patch pretraining).

- :func:`random_masking`: which patches each image keeps, and the mask of the hidden ones;
- :func:`gather_tokens`: the kept tokens, ``(B, N, D)`` -> ``(B, n_keep, D)``.
"""

from __future__ import annotations

import torch

from ..validation import check_positive_int, check_real

__all__ = ["random_masking", "gather_tokens"]


def random_masking(
    batch: int, num_patches: int, mask_ratio: float, generator: torch.Generator | None = None, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose a random subset of patches to keep for each image, as MAE does.

    Each image gets its own random permutation; the first ``round(N * (1 - mask_ratio))``
    indices of it are kept (sorted, so kept tokens stay in grid order).

    Returns:
        ``keep`` ``(B, n_keep)`` int64 indices of the visible patches, and ``mask`` ``(B, N)``
        bool, True where a patch is hidden.
    """
    batch = check_positive_int(batch, "batch")
    num_patches = check_positive_int(num_patches, "num_patches")
    check_real(mask_ratio, "mask_ratio", "a number in [0, 1)", lambda v: 0 <= v < 1)
    n_keep = max(1, round(num_patches * (1 - mask_ratio)))
    noise = torch.rand(batch, num_patches, generator=generator, device=device)
    keep = noise.argsort(dim=1)[:, :n_keep].sort(dim=1).values
    mask = torch.ones(batch, num_patches, dtype=torch.bool, device=keep.device)
    mask.scatter_(1, keep, False)
    return keep, mask


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tokens`` ``(B, N, D)``, ``index`` ``(B, n)`` -> the chosen tokens ``(B, n, D)``."""
    if tokens.dim() != 3 or index.dim() != 2 or index.shape[0] != tokens.shape[0]:
        raise ValueError(
            f"tokens must be (B, N, D) and index (B, n), got {tuple(tokens.shape)} and {tuple(index.shape)}"
        )
    return tokens.gather(1, index[..., None].expand(-1, -1, tokens.shape[-1]))
