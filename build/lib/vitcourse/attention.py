"""Scaled dot-product attention written out, returning the weights (chapter 1.2, exercise 03).

The model itself runs attention through ``torch.nn.functional.scaled_dot_product_attention``
(model.py); this explicit version exists to look at the weights and to grade exercise 03.
"""

from __future__ import annotations

import math

import torch


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tau=None):
    """Attention with a temperature: ``softmax(q k^T / tau) v``.

    Args:
        q: queries ``(..., N, d)``.
        k: keys ``(..., M, d)`` (self-attention has M = N).
        v: values ``(..., M, d_v)``.
        tau: the temperature, a positive number; ``None`` means ``sqrt(d)`` (the usual scale).
            A small tau sharpens the weights towards the arg-max key, a large one flattens them.

    Returns:
        ``(out, weights)``: out ``(..., N, d_v)``, weights ``(..., N, M)`` whose rows sum to one;
        both in the inputs' dtype.

    Raises:
        TypeError: q, k or v is not a floating-point tensor, or their dtypes differ.
        ValueError: the last dimensions of q and k differ, k and v disagree on M, their batch
            dimensions do not broadcast, or tau is not a positive number.
    """
    tau = _checked_temperature(q, k, v, tau)
    scores = q @ k.transpose(-2, -1) / tau
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def _checked_temperature(q, k, v, tau) -> float:
    """Validate softmax_attention's arguments; returns the temperature to divide by."""
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() < 2:
            raise ValueError(f"{name} must have shape (..., N, d), got {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the last dimension d, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of tokens, got {k.shape[-2]} and {v.shape[-2]}")
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the batch dimensions of q, k and v do not broadcast: {tuple(q.shape)}, "
                         f"{tuple(k.shape)} and {tuple(v.shape)}") from None
    if tau is None:
        return math.sqrt(q.shape[-1])
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0 or math.isinf(tau):
        raise ValueError(f"tau must be a positive number or None, got {tau!r}")
    return tau
