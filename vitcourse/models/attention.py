"""Attention: the formula written out, and the multi-head layer the ViT is made of.

- :func:`softmax_attention`: ``softmax(q k^T / tau) v`` with its weights, written out for
  chapter 1.2 and exercise 03;
- :class:`Attention`: multi-head self-attention with timm's parameter layout, bidirectional (the
  ViT encoder) or causal (``is_causal=True``, for next-token prediction), which runs through
  ``torch.nn.functional.scaled_dot_product_attention`` (the fused kernels) and takes the
  explicit softmax path only when a caller asks for the weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..validation import check_bool, check_positive_int, check_real, check_tensor


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
        check_tensor(tensor, name)
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
    return check_real(tau, "tau", "a positive number or None", lambda v: v > 0)


class Attention(nn.Module):
    """Multi-head self-attention, ``(B, N, D)`` -> ``(B, N, D)``.

    One fused ``qkv`` Linear computes queries, keys and values together; its ``3D`` output
    features are ordered ``(q, k, v)``, each split into ``num_heads`` contiguous chunks of
    ``head_dim`` (timm's and the original JAX layout). Each head computes
    ``softmax(q k^T / sqrt(head_dim)) v``; ``proj`` mixes the concatenated heads.

    With ``is_causal=True`` token i attends only to tokens ``<= i``: the same parameters, only a
    mask differs, so the output at position i cannot depend on any later input, which is what
    lets a model learn to predict token i + 1 at every position at once.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, is_causal: bool = False):
        super().__init__()
        check_positive_int(dim, "dim")
        check_positive_int(num_heads, "num_heads")
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.is_causal = check_bool(is_causal, "is_causal")
        self.qkv = nn.Linear(dim, dim * 3, bias=check_bool(qkv_bias, "qkv_bias"))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """``(B, N, D)`` -> ``(B, N, D)``; with ``return_attention`` also ``(B, heads, N, N)``."""
        batch, tokens, dim = x.shape
        # (B, N, 3D) -> (B, N, 3, heads, head_dim) -> (3, B, heads, N, head_dim): views, no copy.
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if return_attention:
            # The explicit path, only for looking at the weights; it stores the N x N matrix.
            scores = q @ k.transpose(-2, -1) * self.scale
            if self.is_causal:  # a score of -inf is a weight of 0: no token sees a later one
                future = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(future, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = weights @ v
        else:
            # The fused kernel computes the same thing (FlashAttention / memory-efficient
            # kernels on GPU) without keeping the N x N weights.
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, is_causal=self.is_causal)
        # (B, heads, N, head_dim) -> (B, N, heads * head_dim): concatenate the heads.
        out = self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
        return (out, weights) if return_attention else out
