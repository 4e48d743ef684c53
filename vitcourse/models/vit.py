"""The Vision Transformer (Dosovitskiy et al., 2021), one small piece at a time.

::

    image (B, C, H, W)
      -> PatchEmbed: cut into p x p patches, map each linearly to D dims       (B, N, D)
      -> prepend the class token (and register tokens), add position embeddings (B, 1+N, D)
         (CLIP: then a LayerNorm, ``pre_norm``)
      -> depth x Block: x + Attention(LN(x)), then x + Mlp(LN(x))              (Pre-LN)
         (DINOv2, DeiT III: each branch scaled per channel, ``init_values``)
      -> LayerNorm, pool (the class token, or the mean of the patch tokens), Linear head

A :class:`ViTConfig` holds the hyperparameters (timm's names and defaults); the named
configurations are in :mod:`vitcourse.models.registry`. Parameter names, LayerNorm eps (1e-6) and
the exact (erf) GELU follow timm's ``VisionTransformer``, so a timm state dict loads with
``load_state_dict`` as is, and the logits agree with timm's to float32 rounding
(tests/test_model.py checks both).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..validation import (
    check_bool,
    check_finite_positive,
    check_image_dtype,
    check_int_pair,
    check_non_negative_int,
    check_positive_int,
)
from .attention import Attention
from .posembed import check_resample_options, resample_pos_embed

logger = logging.getLogger(__name__)

LAYER_NORM_EPS = 1e-6  # timm's and the original JAX ViT's value (PyTorch's default is 1e-5)


def _mlp_hidden_dim(dim: int, mlp_ratio) -> int:
    """The MLP's hidden width ``int(dim * mlp_ratio)`` (timm's rounding), which must be >= 1."""
    check_finite_positive(mlp_ratio, "mlp_ratio")
    hidden = int(dim * mlp_ratio)
    if hidden < 1:
        raise ValueError(
            f"mlp_ratio={mlp_ratio!r} gives int({dim} * {mlp_ratio!r}) = 0 hidden units in the MLP; "
            f"it must be at least 1 / {dim}"
        )
    return hidden


# ---- 1. Patches to tokens --------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Cut an image into p x p patches and map each one linearly to a D-dim token.

    ``(B, C, H, W)`` -> ``(B, N, D)`` with ``N = (H / p) * (W / p)`` tokens in row-major grid
    order. The weights live in a ``Conv2d`` with kernel = stride = p (timm's layout, so
    checkpoints load), because a linear map of each flattened patch *is* that convolution:
    ``patchify(x) @ proj.weight.flatten(1).T + proj.bias``. We compute it in that form, a
    reshape and one matrix multiply, which is as fast as the convolution for large images and
    faster for the tiny course models. ``bias=False`` drops the bias (CLIP, see ``pre_norm``).
    """

    def __init__(
        self,
        img_size=224,
        patch_size=16,
        in_chans: int = 3,
        embed_dim: int = 768,
        dynamic_img_size: bool = False,
        bias: bool = True,
    ):
        super().__init__()
        self.img_size = check_int_pair(img_size, "img_size")
        self.patch_size = check_int_pair(patch_size, "patch_size")
        self.in_chans = check_positive_int(in_chans, "in_chans")
        check_positive_int(embed_dim, "embed_dim")
        for side, p in zip(self.img_size, self.patch_size, strict=True):
            if side % p:
                raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.dynamic_img_size = check_bool(dynamic_img_size, "dynamic_img_size")
        self.proj = nn.Conv2d(
            in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size, bias=check_bool(bias, "bias")
        )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for an input the model cannot take."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        check_image_dtype(x, self.proj.weight.dtype)
        _, channels, height, width = x.shape
        if channels != self.in_chans:
            raise ValueError(f"x has {channels} channels, the model expects in_chans={self.in_chans}")
        if height == 0 or width == 0:  # an empty batch (B = 0) is fine, an empty image is not
            raise ValueError(f"x has an empty image: shape {tuple(x.shape)}, H and W must be positive")
        if height % self.patch_size[0] or width % self.patch_size[1]:
            raise ValueError(f"image size ({height}, {width}) is not a multiple of patch_size {self.patch_size}")
        if not self.dynamic_img_size and (height, width) != self.img_size:
            raise ValueError(
                f"image size ({height}, {width}) differs from img_size {self.img_size}; "
                "call set_image_size() or build the model with dynamic_img_size=True"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, N, D)``."""
        batch, channels, height, width = x.shape
        ph, pw = self.patch_size
        rows, cols = height // ph, width // pw
        # (B, C, rows, ph, cols, pw) -> (B, rows, cols, C, ph, pw): the grid first, then each
        # patch flattened in (C, ph, pw) order, the order of the Conv2d weight's last three axes.
        patches = x.reshape(batch, channels, rows, ph, cols, pw).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(batch, rows * cols, channels * ph * pw)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


# ---- 2. The two sublayers of a block: Attention (attention.py) and the MLP -----------------


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, any shape -> same shape: the GELU of OpenAI's CLIP.

    GELU is ``x * Phi(x)`` with ``Phi`` the standard normal CDF; ``sigmoid(1.702 x)`` is a cheap
    approximation of ``Phi``, which OpenAI trained CLIP with. The two activations differ by up to
    about 0.02 (tests/test_families.py measures it), enough to move a deep network's features, so
    a checkpoint must run with the activation it was trained with (timm's ``*_clip_quickgelu_*``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


# The MLP activations, by timm's ``act_layer`` names.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"gelu": nn.GELU, "quick_gelu": QuickGELU}


class Mlp(nn.Module):
    """The per-token feed-forward network: Linear -> activation -> Linear, ``(B, N, D)`` -> same.

    The activation is the exact (erf) GELU of the paper's JAX code and timm, or ``"quick_gelu"``
    (:class:`QuickGELU`, OpenAI's CLIP).
    """

    def __init__(self, dim: int, hidden_dim: int, act_layer: str = "gelu"):
        super().__init__()
        if act_layer not in ACTIVATIONS:
            raise ValueError(f"act_layer must be one of {sorted(ACTIVATIONS)}, got {act_layer!r}")
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = ACTIVATIONS[act_layer]()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Scale each channel of a residual branch by a learned factor: ``(B, N, D)`` -> same.

    A block with layer scale adds ``gamma * f(x)`` instead of ``f(x)`` to the residual stream,
    ``gamma`` a ``(D,)`` vector that starts tiny (``init_values``: 1e-5 in DINOv2, 1e-6 in DeiT
    III). Every block then starts close to the identity, which lets deep ViTs train stably (CaiT,
    Touvron et al., 2021). A checkpoint stores what ``gamma`` learned as ``ls1.gamma`` /
    ``ls2.gamma`` (timm's names).
    """

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.init_values = check_finite_positive(init_values, "init_values")
        self.gamma = nn.Parameter(torch.full((dim,), self.init_values))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


# ---- 3. One encoder layer --------------------------------------------------------------------


class Block(nn.Module):
    """One Transformer encoder layer, ``(B, N, D)`` -> ``(B, N, D)``.

    Pre-LN (``norm_first=True``, ViT's choice): ``x + f(LN(x))``; the residual stream is an
    untouched sum, so gradients reach early layers directly and training is stable without
    warm-up tricks. Post-LN (the original Transformer, ``norm_first=False``): ``LN(x + f(x))``.
    ``is_causal=True`` gives its attention a causal mask (a decoder layer, chapter 2.5). With
    ``init_values`` each branch ``f`` is followed by a :class:`LayerScale`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_first: bool = True,
        is_causal: bool = False,
        init_values: float | None = None,
        act_layer: str = "gelu",
        norm_eps: float = LAYER_NORM_EPS,
    ):
        super().__init__()
        self.norm_first = check_bool(norm_first, "norm_first")
        check_finite_positive(norm_eps, "norm_eps")
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, is_causal=is_causal)
        self.ls1 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, _mlp_hidden_dim(dim, mlp_ratio), act_layer)
        self.ls2 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """``(B, N, D)`` -> ``(B, N, D)``; with ``return_attention`` also ``(B, heads, N, N)``."""
        if self.norm_first:  # Pre-LN
            attended, weights = self._attend(self.norm1(x), return_attention)
            x = x + self.ls1(attended)  # ls1, ls2: layer scale, the identity without init_values
            x = x + self.ls2(self.mlp(self.norm2(x)))
        else:  # Post-LN
            attended, weights = self._attend(x, return_attention)
            x = self.norm1(x + self.ls1(attended))
            x = self.norm2(x + self.ls2(self.mlp(x)))
        return (x, weights) if return_attention else x

    def _attend(self, x: torch.Tensor, return_attention: bool):
        if return_attention:
            return self.attn(x, return_attention=True)
        return self.attn(x), None


# ---- 4. The whole model ----------------------------------------------------------------------


@dataclass(frozen=True)
class ViTConfig:
    """The hyperparameters of a :class:`VisionTransformer`, with timm's names and defaults (ViT-B/16).

    Checked when made (a ``ViTConfig`` that exists is valid); ``img_size`` and ``patch_size``
    are kept as ``(H, W)`` and ``(ph, pw)`` pairs.

    Attributes:
        img_size: training image size, an int or ``(H, W)``.
        patch_size: patch side p, an int or ``(ph, pw)`` (H and W must be multiples of it).
        in_chans: image channels C.
        num_classes: classes of the head; 0 gives no head, and ``forward`` returns the pooled
            features ``(B, D)`` (self-supervised checkpoints, DINO, DINOv2, MAE, come without one).
        embed_dim: token width D.
        depth: number of blocks.
        num_heads: attention heads (D must be divisible by it).
        mlp_ratio: hidden width of the MLP, as a multiple of D.
        qkv_bias: bias in the ``qkv`` projection.
        class_token: prepend a learned class token.
        global_pool: ``'token'`` (the class token) or ``'avg'`` (mean of the patch tokens).
        reg_tokens: number of learned register tokens after the class token (Darcet et al.).
        no_embed_class: position embeddings cover the patch tokens only (timm's flag, used by
            DeiT III and big_vision checkpoints); by default they cover the prefix tokens too.
        norm_first: Pre-LN (default) or Post-LN blocks (the final LayerNorm is kept either
            way, so the state-dict keys do not depend on it).
        grad_checkpointing: recompute each block's activations in the backward pass instead of
            storing them (less memory, about one more forward pass of time).
        dynamic_img_size: accept any image whose sides are multiples of p, resampling the
            position embeddings on the fly (bicubic, antialiased, as timm).
        init_values: turn on layer scale (:class:`LayerScale`; DINOv2, DeiT III), starting each
            block's branches at this factor; ``None`` leaves it off.
        pre_norm: a LayerNorm ``norm_pre`` on the tokens before the first block (CLIP). The
            patch projection then has no bias: it would only add one vector to every patch
            token, which the learned position embeddings can do as well.
        act_layer: the MLP activation, ``"gelu"`` (exact) or ``"quick_gelu"`` (:class:`QuickGELU`,
            OpenAI's CLIP).
        norm_eps: every LayerNorm's eps (1e-6, timm's and the JAX ViT's; CLIP's is 1e-5).
    """

    img_size: int | tuple[int, int] = 224
    patch_size: int | tuple[int, int] = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    global_pool: str = "token"
    reg_tokens: int = 0
    no_embed_class: bool = False
    norm_first: bool = True
    grad_checkpointing: bool = False
    dynamic_img_size: bool = False
    init_values: float | None = None
    pre_norm: bool = False
    act_layer: str = "gelu"
    norm_eps: float = LAYER_NORM_EPS

    def __post_init__(self):
        def keep(name: str, value) -> None:  # a frozen dataclass normalises its fields this way
            object.__setattr__(self, name, value)

        keep("img_size", check_int_pair(self.img_size, "img_size"))
        keep("patch_size", check_int_pair(self.patch_size, "patch_size"))
        for name in ("in_chans", "embed_dim", "depth", "num_heads"):
            keep(name, check_positive_int(getattr(self, name), name))
        for name in ("num_classes", "reg_tokens"):
            keep(name, check_non_negative_int(getattr(self, name), name))
        check_finite_positive(self.mlp_ratio, "mlp_ratio")
        for name in ("qkv_bias", "class_token", "no_embed_class", "norm_first", "grad_checkpointing", "dynamic_img_size",
                     "pre_norm"):
            check_bool(getattr(self, name), name)
        if self.init_values is not None:
            keep("init_values", check_finite_positive(self.init_values, "init_values"))
        keep("norm_eps", check_finite_positive(self.norm_eps, "norm_eps"))
        if self.act_layer not in ACTIVATIONS:
            raise ValueError(f"act_layer must be one of {sorted(ACTIVATIONS)}, got {self.act_layer!r}")
        if self.global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {self.global_pool!r}")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("global_pool='token' needs class_token=True; use global_pool='avg'")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.no_embed_class and not (self.class_token or self.reg_tokens):
            keep("no_embed_class", False)  # nothing in front of the grid: the two layouts coincide

    @classmethod
    def of(cls, config: ViTConfig | None = None, /, **options) -> ViTConfig:
        """``config`` (the defaults if None) with ``options`` replacing its fields."""
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"config must be a ViTConfig (give the options by keyword), got {type(config).__name__} {config!r}")
        return replace(config or cls(), **options)


class VisionTransformer(nn.Module):
    """A ViT classifier: ``(B, C, H, W)`` images -> ``(B, num_classes)`` logits.

    Built from a :class:`ViTConfig`, its fields given as keywords, or both (the keywords
    replace the config's values): ``VisionTransformer(embed_dim=192, num_heads=3)``,
    ``VisionTransformer(config, num_classes=10)``.

    Attributes:
        config: the :class:`ViTConfig` of the model as it is now (its image size may have
            changed since it was built).
        num_prefix_tokens: class + register tokens in front of the patch tokens.
        grid_size: ``(rows, cols)`` of the patch grid at ``img_size``.
    """

    def __init__(self, config: ViTConfig | None = None, /, **options):
        super().__init__()
        config = ViTConfig.of(config, **options)
        self._config = config
        self.num_classes = config.num_classes
        self.embed_dim = self.num_features = embed_dim = config.embed_dim
        self.global_pool = config.global_pool
        self.no_embed_class = config.no_embed_class
        self.grad_checkpointing = config.grad_checkpointing
        self.num_reg_tokens = config.reg_tokens
        self.num_prefix_tokens = int(config.class_token) + config.reg_tokens

        self.patch_embed = PatchEmbed(
            config.img_size, config.patch_size, config.in_chans, embed_dim, config.dynamic_img_size, bias=not config.pre_norm
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if config.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, config.reg_tokens, embed_dim)) if config.reg_tokens else None
        embed_len = self.patch_embed.num_patches + (0 if config.no_embed_class else self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, embed_dim))
        eps = config.norm_eps
        self.norm_pre = nn.LayerNorm(embed_dim, eps=eps) if config.pre_norm else nn.Identity()
        self.blocks = nn.ModuleList(
            Block(embed_dim, config.num_heads, config.mlp_ratio, config.qkv_bias, config.norm_first,
                  init_values=config.init_values, act_layer=config.act_layer, norm_eps=eps)
            for _ in range(config.depth)
        )
        # timm's rule, kept for checkpoint compatibility: with token pooling the final LayerNorm
        # acts on every token (``norm``); with average pooling it acts on the pooled vector
        # (``fc_norm``). Either way there is exactly one final LayerNorm.
        use_fc_norm = config.global_pool == "avg"
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(embed_dim, eps=eps)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=eps) if use_fc_norm else nn.Identity()
        self.head = nn.Linear(embed_dim, config.num_classes) if config.num_classes else nn.Identity()
        self.reset_parameters()

    @property
    def config(self) -> ViTConfig:
        """The configuration of the model as it is now."""
        return replace(
            self._config,
            img_size=self.img_size,
            dynamic_img_size=self.dynamic_img_size,
            grad_checkpointing=self.grad_checkpointing,
        )

    # ---- construction helpers -------------------------------------------------------------

    def reset_parameters(self) -> None:
        """Initialise as timm does: truncated normal (std 0.02) weights, zero biases."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, LayerScale):
                nn.init.constant_(module.gamma, module.init_values)

    @property
    def grid_size(self) -> tuple[int, int]:
        """``(rows, cols)`` of the patch grid at the model's image size."""
        return self.patch_embed.grid_size

    @property
    def patch_size(self) -> tuple[int, int]:
        return self.patch_embed.patch_size

    @property
    def img_size(self) -> tuple[int, int]:
        return self.patch_embed.img_size

    @property
    def dynamic_img_size(self) -> bool:
        return self.patch_embed.dynamic_img_size

    @dynamic_img_size.setter
    def dynamic_img_size(self, enable: bool) -> None:
        self.patch_embed.dynamic_img_size = check_bool(enable, "dynamic_img_size")

    @property
    def _pos_embed_prefix_tokens(self) -> int:
        return 0 if self.no_embed_class else self.num_prefix_tokens

    @property
    def num_pos_prefix_tokens(self) -> int:
        """Prefix tokens that have a position embedding (0 with ``no_embed_class``)."""
        return self._pos_embed_prefix_tokens

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Turn gradient checkpointing on or off (as timm's method of the same name)."""
        self.grad_checkpointing = check_bool(enable, "enable")

    def set_image_size(self, img_size, mode: str = "bicubic", antialias: bool = True) -> None:
        """Change the model's image size in place, resampling the position embeddings once.

        Args:
            img_size: the new ``(H, W)`` (an int means square); multiples of the patch size.
            mode, antialias: as in :func:`vitcourse.models.posembed.resample_pos_embed`.

        Afterwards the model takes ``img_size`` inputs with no per-call resampling, and its
        logits equal those of the same model run with ``dynamic_img_size=True`` at that size.
        """
        new_size = check_int_pair(img_size, "img_size")
        check_resample_options(mode)  # also when the grid stays the same and nothing is resampled
        patch = self.patch_embed.patch_size
        if new_size[0] % patch[0] or new_size[1] % patch[1]:
            raise ValueError(f"img_size {new_size} is not a multiple of patch_size {patch}")
        new_grid = (new_size[0] // patch[0], new_size[1] // patch[1])
        old_size, old_grid = self.img_size, self.grid_size
        if new_grid != old_grid:
            resampled = resample_pos_embed(
                self.pos_embed.detach(),
                new_grid,
                old_grid,
                num_prefix_tokens=self.num_pos_prefix_tokens,
                mode=mode,
                antialias=antialias,
            )
            self.pos_embed = nn.Parameter(resampled, requires_grad=self.pos_embed.requires_grad)
        logger.info("set_image_size: %s -> %s (grid %s -> %s)", old_size, new_size, old_grid, new_grid)
        self.patch_embed.img_size = new_size
        self.patch_embed.grid_size = new_grid
        self.patch_embed.num_patches = new_grid[0] * new_grid[1]

    # ---- forward --------------------------------------------------------------------------

    def _prefix_tokens(self, batch: int) -> list[torch.Tensor]:
        """The class and register tokens, each ``(B, n, D)``, in that order."""
        tokens = []
        if self.cls_token is not None:
            tokens.append(self.cls_token.expand(batch, -1, -1))
        if self.reg_token is not None:
            tokens.append(self.reg_token.expand(batch, -1, -1))
        return tokens

    def _pos_embed(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Add the prefix tokens and position embeddings: ``(B, N, D)`` -> ``(B, prefix + N, D)``."""
        pos_embed = self.pos_embed
        if grid != self.grid_size:  # only with dynamic_img_size, which check_input enforces
            pos_embed = resample_pos_embed(
                pos_embed, grid, self.grid_size, num_prefix_tokens=self.num_pos_prefix_tokens
            )
        prefix = self._prefix_tokens(x.shape[0])
        if self.no_embed_class:
            return torch.cat([*prefix, x + pos_embed], dim=1)
        if prefix:
            x = torch.cat([*prefix, x], dim=1)
        return x + pos_embed

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> the tokens that enter the first block ``(B, prefix + N, D)``."""
        self.patch_embed.check_input(x)
        grid = (x.shape[-2] // self.patch_size[0], x.shape[-1] // self.patch_size[1])
        return self.norm_pre(self._pos_embed(self.patch_embed(x), grid))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> the final tokens ``(B, prefix + N, D)`` (after ``norm``)."""
        x = self._embed(x)
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            for block in self.blocks:
                # Keep only each block's input; recompute the inside during backward.
                x = checkpoint(block, x, use_reentrant=False)
        else:
            for block in self.blocks:
                x = block(x)
        return self.norm(x)

    def forward_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the model and keep every layer's attention weights, for visualisation.

        Returns the logits ``(B, num_classes)`` and a list of ``depth`` tensors
        ``(B, heads, N, N)`` (N counts the prefix tokens; each row sums to 1). This takes the
        explicit softmax path in every block; :meth:`forward` keeps the fused kernel, so
        asking for the weights here costs the normal path nothing.
        """
        x = self._embed(x)
        attentions = []
        for block in self.blocks:
            x, weights = block(x, return_attention=True)
            attentions.append(weights)
        return self.forward_head(self.norm(x)), attentions

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, prefix + N, D)`` -> one vector per image ``(B, D)``."""
        if self.global_pool == "avg":
            return x[:, self.num_prefix_tokens :].mean(dim=1)
        return x[:, 0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``(B, prefix + N, D)`` -> logits ``(B, num_classes)`` (``(B, D)`` if ``pre_logits``)."""
        x = self.fc_norm(self.pool(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))
