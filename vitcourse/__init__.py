"""vitcourse: the package behind the Vision Transformer course.

The public API, re-exported from the modules that define it.
"""

from .model import (
    Attention,
    Block,
    Mlp,
    PatchEmbed,
    VisionTransformer,
    create_model,
    list_models,
    register_model,
)
from .posembed import resample_pos_embed

__version__ = "0.1.0"
