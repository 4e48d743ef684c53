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
        TypeError: q, k or v is not a tensor.
        ValueError: the last dimensions of q and k differ, k and v disagree on M, or tau is
            not a positive number.
    """
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() < 2:
            raise ValueError(f"{name} must have shape (..., N, d), got {tuple(tensor.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the last dimension d, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of tokens, got {k.shape[-2]} and {v.shape[-2]}")
    if tau is None:
        tau = math.sqrt(q.shape[-1])
    elif isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0 or math.isinf(tau):
        raise ValueError(f"tau must be a positive number or None, got {tau!r}")
    scores = q @ k.transpose(-2, -1) / tau
    weights = scores.softmax(dim=-1)
    return weights @ v, weights
