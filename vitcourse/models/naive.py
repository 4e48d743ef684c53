"""The textbook Vision Transformer that ``vitcourse bench model`` measures ours against.

Written the way the paper's equations read: separate ``q``, ``k`` and ``v`` Linears, and an
explicit softmax over the full ``(B, heads, N, N)`` score matrix, which it keeps for the
backward pass. It computes the same function as :class:`vitcourse.VisionTransformer` (Pre-LN,
class token, token pooling), and :func:`naive_twin` gives it our model's weights, so the two
can be timed on equal terms.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .vit import LAYER_NORM_EPS, VisionTransformer


class NaiveAttention(nn.Module):
    """Self-attention as first written down: three Linears and an explicit softmax."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, heads, N, head_dim)
            return t.reshape(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        scores = scores - scores.amax(dim=-1, keepdim=True)  # for a stable exp
        weights = scores.exp()
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = (weights @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out)


class NaiveBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = NaiveAttention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class NaiveViT(nn.Module):
    """A Pre-LN class-token ViT written plainly; :meth:`copy_from` takes our model's weights."""

    def __init__(self, img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads,
                 mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        self.patch = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        grid = (img_size[0] // patch_size[0]) * (img_size[1] // patch_size[1])
        self.cls = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos = nn.Parameter(torch.zeros(1, 1 + grid, embed_dim))
        self.blocks = nn.Sequential(*(NaiveBlock(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])

    @torch.no_grad()
    def copy_from(self, model: VisionTransformer) -> NaiveViT:
        """Copy the weights of a token-pooled, class-token ``model`` (q, k, v split from qkv)."""
        state = model.state_dict()
        mine = {"patch.weight": "patch_embed.proj.weight", "patch.bias": "patch_embed.proj.bias",
                "cls": "cls_token", "pos": "pos_embed"}
        for name, param in self.named_parameters():
            if name in mine:
                param.copy_(state[mine[name]])
            elif ".attn.q." in name or ".attn.k." in name or ".attn.v." in name:
                index = "qkv".index(name.split(".")[3])
                source = state[name.replace(f".attn.{'qkv'[index]}.", ".attn.qkv.")]
                param.copy_(source.chunk(3, dim=0)[index])
            else:
                param.copy_(state[name.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.2.", ".mlp.fc2.")])
        return self


def naive_twin(ours: VisionTransformer) -> NaiveViT | None:
    """A :class:`NaiveViT` with ``ours``'s weights, or None when ``ours`` is not a plain
    class-token ViT (register tokens, average pooling, no class token, layer scale, CLIP's
    pre-norm, QuickGELU or another LayerNorm eps...)."""
    if ours.cls_token is None or ours.reg_token is not None or ours.global_pool != "token" or ours.no_embed_class:
        return None
    config = ours.config
    if config.init_values is not None or config.pre_norm or config.act_layer != "gelu" or config.norm_eps != LAYER_NORM_EPS:
        return None
    block = ours.blocks[0]
    naive = NaiveViT(
        ours.img_size, ours.patch_size, ours.patch_embed.in_chans, ours.num_classes, ours.embed_dim,
        len(ours.blocks), block.attn.num_heads, block.mlp.fc1.out_features / ours.embed_dim,
        block.attn.qkv.bias is not None,
    )
    return naive.copy_from(ours)
