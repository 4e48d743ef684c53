"""Pieces that put a ViT's tokens to other uses than classification (chapter 2).

- :class:`SegmentationHead`: patch tokens ``(B, N, D)`` -> per-pixel class logits
  ``(B, K, H, W)`` with one linear map per token (each token paints its own p x p patch).
- :func:`mean_iou`: the segmentation score, intersection over union averaged over classes.
- :func:`random_masking` and :func:`gather_tokens`: MAE-style random subsets of patch tokens.
- :func:`contrastive_loss`: CLIP's symmetric cross-entropy over an image-text similarity matrix.
- :class:`CausalAttention` and :func:`causal_block`: the package's attention with a causal mask,
  for next-token prediction over patches.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import Attention, Block
from .patches import unpatchify

__all__ = [
    "SegmentationHead",
    "mean_iou",
    "random_masking",
    "gather_tokens",
    "contrastive_loss",
    "CausalAttention",
    "causal_block",
]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


# ---- dense prediction ------------------------------------------------------------------------


class SegmentationHead(nn.Module):
    """Patch tokens -> per-pixel logits: a linear map from each token to its patch's pixels.

    Token ``i`` of the ``(rows, cols)`` grid predicts ``K`` logits for each of the ``p x p``
    pixels of patch ``i``; :func:`vitcourse.patches.unpatchify` puts the patches back in place.
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
        self.embed_dim = _positive_int(embed_dim, "embed_dim")
        self.num_classes = _positive_int(num_classes, "num_classes")
        self.patch_size = _positive_int(patch_size, "patch_size")
        if (
            not isinstance(grid_size, (tuple, list))
            or len(grid_size) != 2
            or not all(isinstance(g, int) and g > 0 for g in grid_size)
        ):
            raise ValueError(f"grid_size must be a pair of positive ints, got {grid_size!r}")
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
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


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[float, torch.Tensor]:
    """Intersection over union per class, and its mean over the classes that occur.

    Args:
        pred: predicted labels, any integer shape, e.g. ``(B, H, W)``.
        target: true labels, same shape.
        num_classes: K; labels must lie in ``[0, K)``.

    Returns:
        ``(mIoU, iou)`` with ``iou`` of shape ``(K,)`` (float64); a class absent from both
        ``pred`` and ``target`` has IoU ``nan`` and is left out of the mean.
    """
    num_classes = _positive_int(num_classes, "num_classes")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    for name, labels in (("pred", pred), ("target", target)):
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer labels, got dtype {labels.dtype}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes})")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    # confusion[t, p] = number of pixels of true class t predicted as p
    confusion = torch.bincount(target * num_classes + pred, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes).double()
    intersection = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    iou = torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, float("nan")))
    present = ~iou.isnan()
    return (iou[present].mean().item() if present.any() else float("nan")), iou


# ---- masked patch prediction ----------------------------------------------------------------


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
    batch = _positive_int(batch, "batch")
    num_patches = _positive_int(num_patches, "num_patches")
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio!r}")
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


# ---- image-text alignment -------------------------------------------------------------------


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, temperature) -> torch.Tensor:
    """CLIP's loss: pair i of the batch is the positive, every other pairing a negative.

    Both embeddings are L2-normalised, ``logits = image @ text.T / temperature`` ``(B, B)``,
    and the loss is the mean of the cross-entropies along rows (image -> text) and columns
    (text -> image), with the diagonal as the target.

    Args:
        image_emb: ``(B, E)``.
        text_emb: ``(B, E)``.
        temperature: a positive float or a scalar tensor (e.g. ``log_scale.exp().reciprocal()``).
    """
    if image_emb.dim() != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(
            f"image_emb and text_emb must both be (B, E), got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    if not isinstance(temperature, torch.Tensor) and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0
    ):
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    logits = F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


# ---- causal attention -----------------------------------------------------------------------


class CausalAttention(Attention):
    """:class:`vitcourse.model.Attention` with a causal mask: token i attends to tokens <= i.

    Same parameters (``qkv``, ``proj``) as the bidirectional layer; only the mask differs, so
    the output at position i cannot depend on any later input, which is what lets a model be
    trained to predict token i + 1 from position i on every position at once.
    """

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """``(B, N, D)`` -> ``(B, N, D)``; with ``return_attention`` also ``(B, heads, N, N)``."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if return_attention:
            scores = q @ k.transpose(-2, -1) * self.scale
            future = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).triu(1)
            weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
            out = weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out = self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
        return (out, weights) if return_attention else out


def causal_block(dim: int, num_heads: int, mlp_ratio: float = 4.0) -> Block:
    """A Pre-LN :class:`vitcourse.model.Block` whose attention is :class:`CausalAttention`."""
    block = Block(dim, num_heads, mlp_ratio)
    block.attn = CausalAttention(dim, num_heads)
    return block
