"""vitcourse: the package behind the Vision Transformer course.

The public API, re-exported from the modules that define it.
"""

from .analysis import (
    SavedTensorMeter,
    attention_crossover,
    attention_map_bytes,
    attention_rollout,
    checkpointed_qk_bytes,
    input_gradient_map,
    mhsa_macs,
    min_object_size,
    residual_stream_rms,
    ring_attention,
    token_spread,
)
from .convnet import SmallCNN
from .data import (
    Batches,
    ImageData,
    center_crop_resize,
    diagonal_2x2,
    load_cifar10,
    load_digits,
    load_photo,
    load_photos,
    two_halves_counting,
    two_patch_occlusion,
)
from .distill import DistilledVisionTransformer, distillation_loss, run_distillation_experiment
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
from .patches import patchify, unpatchify
from .posembed import resample_pos_embed, sincos_pos_embed_2d
from .pretrained import (
    convert_hf_state_dict,
    convert_jax_npz,
    from_pretrained_timm,
    load_hf_state_dict,
    load_jax_npz,
    load_timm_state_dict,
)
from .train import DIGITS_RECIPE, default_device, evaluate, fit

__version__ = "0.1.0"
