"""Every named model the package knows, in one place: ``create_model("vit_digits")``.

A name stands for a factory (a model class) and its keyword configuration, as in timm's
``create_model``; keyword overrides replace configuration values. Nothing registers a model as a
side effect of importing its module: the whole list is at the bottom of this file.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from .convnet import SmallCNN
from .deit import DistilledVisionTransformer
from .vit import VisionTransformer

__all__ = ["register_model", "list_models", "create_model", "model_config"]

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


def _entry(name: str) -> tuple[Callable[..., nn.Module], dict]:
    if name not in _MODELS:
        raise ValueError(f"unknown model name {name!r}; choose one of: {', '.join(list_models())}")
    return _MODELS[name]


def model_config(name: str) -> dict:
    """The keyword configuration registered under ``name`` (a copy)."""
    return dict(_entry(name)[1])


def create_model(name: str, **overrides) -> nn.Module:
    """Build a named configuration, e.g. ``create_model("vit_base_patch16_224", num_classes=10)``.

    Keyword overrides replace the configuration's values (as in timm's ``create_model``).
    """
    factory, config = _entry(name)
    return factory(**{**config, **overrides})


# ---- the named configurations ----------------------------------------------------------------

# The ImageNet configurations of the ViT and DeiT papers, with timm's names (and timm's
# parameter counts: 5,717,416 / 22,050,664 / 86,567,656 / 304,326,632 with 1000 classes).
register_model("vit_tiny_patch16_224", patch_size=16, embed_dim=192, depth=12, num_heads=3)
register_model("vit_small_patch16_224", patch_size=16, embed_dim=384, depth=12, num_heads=6)
register_model("vit_base_patch16_224", patch_size=16, embed_dim=768, depth=12, num_heads=12)
register_model("vit_large_patch16_224", patch_size=16, embed_dim=1024, depth=24, num_heads=16)

# DeiT's ImageNet configurations with a distillation token, with timm's names.
register_model(
    "deit_tiny_distilled_patch16_224", DistilledVisionTransformer, patch_size=16, embed_dim=192, depth=12, num_heads=3
)
register_model(
    "deit_small_distilled_patch16_224", DistilledVisionTransformer, patch_size=16, embed_dim=384, depth=12, num_heads=6
)
register_model(
    "deit_base_distilled_patch16_224", DistilledVisionTransformer, patch_size=16, embed_dim=768, depth=12, num_heads=12
)

# Course scale: 8 x 8 grey digits, 2 x 2 patches -> a 4 x 4 grid of 16 tokens (+ class token).
DIGITS_CONFIG = dict(
    img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0
)
register_model("vit_digits", **DIGITS_CONFIG)
# The course-scale student for digits, the same shape as "vit_digits".
register_model("deit_digits_distilled", DistilledVisionTransformer, **DIGITS_CONFIG)
# The convnet baseline and distillation teacher.
register_model("cnn_digits", SmallCNN, in_chans=1, num_classes=10, width=32)
