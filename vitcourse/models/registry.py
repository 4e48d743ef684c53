"""Every named model the package knows, in one place: ``create_model("vit_digits")``.

A name stands for a factory (a model class) and its keyword configuration, as in timm's
``create_model``; keyword overrides replace configuration values. Nothing registers a model as a
side effect of importing its module: the whole list is at the bottom of this file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace

import torch.nn as nn

from .convnet import SmallCNN
from .deit import DistilledVisionTransformer
from .vit import VisionTransformer, ViTConfig

__all__ = ["register_model", "list_models", "create_model"]

_MODELS: dict[str, tuple[Callable[..., nn.Module], dict]] = {}


def register_model(name: str, factory: Callable[..., nn.Module] = VisionTransformer, **config) -> None:
    """Register a named configuration for :func:`create_model` (a later call replaces it)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    _MODELS[name] = (factory, config)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **overrides) -> nn.Module:
    """Build a named configuration, e.g. ``create_model("vit_base_patch16_224", num_classes=10)``.

    Keyword overrides replace the configuration's values (as in timm's ``create_model``).
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model name {name!r}; choose one of: {', '.join(list_models())}")
    factory, config = _MODELS[name]
    return factory(**{**config, **overrides})


# ---- the named configurations ----------------------------------------------------------------


def _register_vit(name: str, config: ViTConfig, factory: Callable[..., nn.Module] = VisionTransformer) -> None:
    register_model(name, factory, **asdict(config))


# Each pretrained family under timm's name and with timm's default settings for it (what
# ``timm.create_model(name)`` builds: its default pretrained tag decides the image size and
# whether there is a head), so that parameter counts and state-dict keys agree with timm's;
# tests/test_families.py checks every one against timm.

# The ImageNet sizes of the ViT and DeiT papers, with timm's names (and timm's parameter counts
# as ViTs with 1000 classes: 5,717,416 / 22,050,664 / 86,567,656 / 304,326,632); ViT-H/14 (its
# only weights, the paper's ImageNet-21k ones, come without a head in timm), patch 32 and 384 px.
TINY = ViTConfig(patch_size=16, embed_dim=192, depth=12, num_heads=3)
SMALL = ViTConfig(patch_size=16, embed_dim=384, depth=12, num_heads=6)
BASE = ViTConfig(patch_size=16, embed_dim=768, depth=12, num_heads=12)
LARGE = ViTConfig(patch_size=16, embed_dim=1024, depth=24, num_heads=16)
HUGE = ViTConfig(patch_size=14, embed_dim=1280, depth=32, num_heads=16, num_classes=0)
_register_vit("vit_tiny_patch16_224", TINY)
_register_vit("vit_small_patch16_224", SMALL)
_register_vit("vit_base_patch16_224", BASE)
_register_vit("vit_large_patch16_224", LARGE)
_register_vit("vit_huge_patch14_224", HUGE)
_register_vit("vit_base_patch32_224", replace(BASE, patch_size=32))
_register_vit("vit_base_patch16_384", replace(BASE, img_size=384))
# DeiT's distilled ViTs: the same sizes with a distillation token.
_register_vit("deit_tiny_distilled_patch16_224", TINY, DistilledVisionTransformer)
_register_vit("deit_small_distilled_patch16_224", SMALL, DistilledVisionTransformer)
_register_vit("deit_base_distilled_patch16_224", BASE, DistilledVisionTransformer)
# DeiT III: layer scale from 1e-6, and no position embedding on the class token.
for _size, _config in (("small", SMALL), ("base", BASE), ("large", LARGE)):
    _register_vit(f"deit3_{_size}_patch16_224", replace(_config, init_values=1e-6, no_embed_class=True))

# Self-supervised encoders, which come without a head, under their pretrained tags (the plain
# names have heads): DINO (whose attention maps find objects; patch 16 and 8) and MAE.
_register_vit("vit_small_patch16_224.dino", replace(SMALL, num_classes=0))
_register_vit("vit_small_patch8_224.dino", replace(SMALL, patch_size=8, num_classes=0))
_register_vit("vit_base_patch16_224.dino", replace(BASE, num_classes=0))
_register_vit("vit_base_patch16_224.mae", replace(BASE, num_classes=0))
_register_vit("vit_large_patch16_224.mae", replace(LARGE, num_classes=0))
# DINOv2: patch 14 at 518 px (a 37 x 37 grid), layer scale from 1e-5, no head; "reg4" adds four
# register tokens, which, like the class token, get no position embedding.
for _size, _config in (("small", SMALL), ("base", BASE), ("large", LARGE)):
    _dinov2 = replace(_config, patch_size=14, img_size=518, init_values=1e-5, num_classes=0)
    _register_vit(f"vit_{_size}_patch14_dinov2", _dinov2)
    _register_vit(f"vit_{_size}_patch14_reg4_dinov2", replace(_dinov2, reg_tokens=4, no_embed_class=True))
# CLIP's image towers: a LayerNorm before the blocks (so no patch bias), eps 1e-5. The plain names
# are timm's ImageNet fine-tunes (1000 classes); the QuickGELU ones carry OpenAI's and MetaCLIP's
# weights, whose head is CLIP's projection into the space the image shares with the text.
for _name, _config, _joint in (("base_patch32", replace(BASE, patch_size=32), 512), ("base_patch16", BASE, 512),
                               ("large_patch14", replace(LARGE, patch_size=14), 768)):
    _clip = replace(_config, pre_norm=True, norm_eps=1e-5)
    _register_vit(f"vit_{_name}_clip_224", _clip)
    _register_vit(f"vit_{_name}_clip_quickgelu_224", replace(_clip, act_layer="quick_gelu", num_classes=_joint))

# Course scale: 8 x 8 grey digits in 4 x 4 patches, a 2 x 2 grid of 4 tokens (+ the class token):
# the configuration DIGITS_RECIPE trains. In our sweeps (seed 0, batch 32, shift augmentation)
# it reached 95.8% after 20 epochs, while 2 x 2 patches (16 tokens, D=128, depth 2) stalled at
# 60%: this small, timm-initialised ViT needs many steps before attention starts to help, and
# 4 x 4 patches make each step about three times cheaper as well.
DIGITS = ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=10, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0)
_register_vit("vit_digits", DIGITS)
_register_vit("deit_digits_distilled", DIGITS, DistilledVisionTransformer)  # the distillation student
register_model("cnn_digits", SmallCNN, in_chans=1, num_classes=10, width=32)  # baseline and teacher
