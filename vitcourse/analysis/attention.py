"""What attention does to the tokens, measured: where information flows, and how depth spreads it.

- :func:`attention_rollout` (Abnar & Zuidema, 2020): how much each output token draws on each
  input token, through all layers; :func:`input_gradient_map`: the pixels one output depends on
  (its receptive field), the same question asked of the input;
- :func:`ring_attention`, :func:`token_spread`, :func:`residual_stream_rms`: signal propagation
  through depth (chapter 1.6): a position-only head, how far the tokens are from all being
  equal, and the size of the residual stream.

Each function here is the reference the chapters plot and the exercises are graded against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..validation import check_finite_positive, check_positive_int, check_real

__all__ = ["attention_rollout", "input_gradient_map", "ring_attention", "token_spread", "residual_stream_rms"]


# ---- attention rollout (Abnar & Zuidema, 2020) ---------------------------------------------


def attention_rollout(attentions: Sequence[torch.Tensor], residual_weight: float = 0.5) -> torch.Tensor:
    """How much each output token draws on each input token, through all layers.

    Each layer's attention is averaged over heads and mixed with the identity to account for
    the residual connection, ``(1 - w) A + w I``, its rows renormalised to sum to one; the
    layers are then multiplied, later layers on the left: ``R = A_L ... A_2 A_1``.

    Args:
        attentions: per-layer weights in layer order, each ``(B, heads, N, N)``.
        residual_weight: w in [0, 1); ``0`` gives the plain product of the head-averaged maps.

    Returns:
        ``(B, N, N)``; row i says where output token i's information comes from.
    """
    _check_rollout_args(attentions, residual_weight)
    num_tokens = attentions[0].shape[-1]
    eye = torch.eye(num_tokens, dtype=attentions[0].dtype, device=attentions[0].device)
    rollout = None
    for layer in attentions:
        mixed = (1 - residual_weight) * layer.mean(dim=1) + residual_weight * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout


def _check_rollout_args(attentions, residual_weight) -> None:
    if isinstance(attentions, torch.Tensor) or not isinstance(attentions, Sequence) or not attentions:
        raise ValueError("attentions must be a non-empty list of (B, heads, N, N) tensors")
    check_real(residual_weight, "residual_weight", "a number in [0, 1)", lambda v: 0 <= v < 1)
    first = attentions[0]
    for i, layer in enumerate(attentions):
        if not isinstance(layer, torch.Tensor) or layer.dim() != 4 or layer.shape[-1] != layer.shape[-2]:
            raise ValueError(f"attentions[{i}] must be a (B, heads, N, N) tensor, got {getattr(layer, 'shape', type(layer))}")
        if not layer.is_floating_point() or layer.dtype != first.dtype:
            raise TypeError(f"attentions must be floating-point tensors of one dtype; attentions[{i}] is "
                            f"{layer.dtype}, attentions[0] is {first.dtype}")
        if (layer.shape[0], layer.shape[2]) != (first.shape[0], first.shape[2]):
            raise ValueError(f"attentions[{i}] has shape {tuple(layer.shape)}, attentions[0] has {tuple(first.shape)}")


# ---- signal propagation through depth ------------------------------------------------------


def ring_attention(num_tokens: int, sharpness: float) -> torch.Tensor:
    """The attention of a head that looks only at positions, on a ring of ``num_tokens`` tokens.

    Token i sits at angle ``theta_i = 2 pi i / N`` and has query = key =
    ``sqrt(sharpness) * (cos theta_i, sin theta_i)``, so its logits are
    ``sharpness * cos(theta_i - theta_j)`` and ``A = softmax(Q K^T)`` (float64). ``A`` is
    row-stochastic and circulant (it depends only on ``i - j``), hence diagonalised by the
    Fourier modes of the ring. Returns ``(N, N)``.
    """
    n = check_positive_int(num_tokens, "num_tokens")
    kappa = check_finite_positive(sharpness, "sharpness")
    theta = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    features = math.sqrt(kappa) * torch.stack([theta.cos(), theta.sin()], dim=1)  # (N, 2)
    return (features @ features.T).softmax(dim=-1)


def token_spread(x: torch.Tensor) -> torch.Tensor:
    """How far the tokens are from all being equal: ``||x - mean_tokens(x)|| / ||x||`` per item.

    ``x`` is ``(B, N, D)``; returns ``(B,)`` in [0, 1]. Zero means every token carries the same
    vector (the "rank collapse" of deep pure-attention networks).
    """
    _check_tokens(x)
    centred = x - x.mean(dim=1, keepdim=True)
    # An all-zero item has every token equal: spread 0 (and not 0 / 0).
    return centred.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)


def _check_tokens(x) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a (B, N, D) tensor, got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")


@torch.no_grad()
def residual_stream_rms(blocks: Sequence[torch.nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Root-mean-square of the residual stream before the first block and after each block.

    ``blocks`` are applied in order to ``x`` ``(B, N, D)``; returns ``(len(blocks) + 1,)``.
    """
    if isinstance(blocks, torch.nn.Module) and not isinstance(blocks, (torch.nn.Sequential, torch.nn.ModuleList)):
        raise TypeError(f"blocks must be a sequence of blocks (such as model.blocks), got {type(blocks).__name__}")
    _check_tokens(x)
    values = [x.pow(2).mean().sqrt()]
    for block in blocks:
        x = block(x)
        values.append(x.pow(2).mean().sqrt())
    return torch.stack(values)


# ---- receptive fields ------------------------------------------------------------------------


def input_gradient_map(fn, x: torch.Tensor, index) -> torch.Tensor:
    """``|d fn(x)[index] / d x|`` summed over the channels: which pixels one output depends on.

    ``x`` is one image ``(1, C, H, W)``; ``fn`` maps it to any tensor and ``index`` picks the
    output entries to differentiate (their sum if it selects several, e.g. all channels of one
    position of a feature map). The support of the result (its non-zero pixels) is the
    theoretical receptive field of that output; its profile is the *effective* receptive field
    (Luo et al., 2016). Returns ``(H, W)``.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image of shape (1, C, H, W), got {getattr(x, 'shape', type(x))}")
    x = x.detach().clone().requires_grad_(True)
    fn(x)[index].sum().backward()
    return x.grad.abs().sum(dim=(0, 1))
