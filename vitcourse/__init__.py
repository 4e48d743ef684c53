"""vitcourse: the package behind the Vision Transformer course.

The public API, re-exported from the modules that define it. The package is organised by role,
each layer using only the layers above it in this list:

- ``validation``: the argument checks every public function uses;
- ``models``: patches, attention, the ViT and its relatives, position embeddings, the registry
  of named configurations, pretrained-checkpoint loaders;
- ``data``: the data pipeline (``ImageData``, ``Batches``), digits, photos, synthetic tasks, CIFAR-10;
- ``training``: ``fit`` / ``evaluate``, losses, optimisation, checkpoints, runtime, recipes;
- ``analysis``: what the chapters measure and plot; ``experiments``: the distillation experiment
  and the benchmarks;
- ``course``: the exercises' self-checks, claims, ``show_source``, ``release`` and ``stamp``;
- ``grading``: the instructor's autograder, used only by ``cli``.

The names below are imported lazily (PEP 562): ``import vitcourse`` costs almost nothing, and
the first use of a name imports its module (and torch), so ``vitcourse --help`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # the public API: for readers and type checkers, and the table __getattr__ reads
    from .analysis.attention import (
        attention_rollout,
        input_gradient_map,
        residual_stream_rms,
        ring_attention,
        token_spread,
    )
    from .analysis.cost import (
        attention_crossover,
        attention_map_bytes,
        checkpointed_qk_bytes,
        mhsa_macs,
    )
    from .analysis.memory import SavedTensorMeter
    from .analysis.patch_snr import min_object_size
    from .analysis.shapes import layer_shapes
    from .data.cifar import load_cifar10
    from .data.digits import load_digits
    from .data.photos import center_crop_resize, load_photo, load_photos
    from .data.pipeline import Batches, ImageData
    from .data.synthetic import diagonal_2x2, two_halves_counting, two_patch_occlusion
    from .experiments.distillation import run_distillation_experiment
    from .models.attention import Attention
    from .models.convnet import PatchCNN, SmallCNN
    from .models.deit import DistilledVisionTransformer
    from .models.patches import patchify, unpatchify
    from .models.posembed import resample_pos_embed, sincos_pos_embed_2d
    from .models.pretrained import (
        config_from_timm,
        convert_hf_state_dict,
        convert_jax_npz,
        from_pretrained_timm,
        load_hf_state_dict,
        load_jax_npz,
        load_timm_state_dict,
    )
    from .models.registry import create_model, list_models, register_model
    from .models.vit import Block, LayerScale, Mlp, PatchEmbed, QuickGELU, VisionTransformer
    from .training.loop import evaluate, fit
    from .training.losses import distillation_loss
    from .training.recipes import DIGITS_RECIPE
    from .training.runtime import default_device


def _read_exports() -> dict[str, str]:
    """``{name: module}`` from the ``TYPE_CHECKING`` imports above: the API is listed once."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    return {
        alias.asname or alias.name: f"{__name__}.{statement.module}"
        for statement in block.body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }


_EXPORTS = _read_exports()
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import a public name's module on first use, and keep the name here for the next time."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
