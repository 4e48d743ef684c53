"""Loading checkpoints from timm, Hugging Face and the original JAX code into our ViT.

Our parameter names are timm's (DESIGN.md), so every loader works the same way: convert the
checkpoint's names and layouts to timm's, then :func:`load_timm_state_dict` checks the keys,
resamples the position embeddings if the checkpoint was trained at another image size, and
loads. Nothing is downloaded unless you call :func:`from_pretrained_timm`.

=========================  ===============================================================
source                     how its tensors map to ours
=========================  ===============================================================
timm                       same names and shapes (:func:`config_from_timm` reads the settings)
Hugging Face ViT, DINOv2,  separate query/key/value Linears -> one ``qkv`` (rows q, k, v);
CLIP's image tower, MAE's  DINOv2's ``lambda1`` -> ``gamma``; CLIP's class and position
encoder                    embeddings get their batch axes, its projection becomes the head
original JAX ``.npz``      kernels stored ``(in, out)`` -> transposed; attention kernels
                           ``(D, heads, head_dim)`` -> flattened; patch kernel HWIO -> OIHW
=========================  ===============================================================
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn as nn

from ..validation import check_bool
from .deit import DistilledVisionTransformer
from .posembed import check_resample_options, resample_pos_embed
from .statedict import state_dict_diff
from .vit import VisionTransformer, ViTConfig

logger = logging.getLogger(__name__)


# ---- timm: the common format -----------------------------------------------------------------


def _check_state_dict(state_dict, name: str = "state_dict") -> dict[str, torch.Tensor]:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{name} must be a mapping of names to tensors, got {type(state_dict).__name__}")
    bad = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise TypeError(f"{name} values must be tensors; not tensors: {sorted(bad)[:10]}")
    return dict(state_dict)


def load_timm_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    drop_head: bool = False,
    old_grid=None,
    mode: str = "bicubic",
    antialias: bool = True,
) -> nn.Module:
    """Load a timm ``VisionTransformer`` state dict into ``model`` (in place; returns it).

    Args:
        model: a :class:`vitcourse.VisionTransformer` (or anything with timm's key names).
        state_dict: name -> tensor, as from ``timm_model.state_dict()``; a ``module.`` prefix
            (DistributedDataParallel) is stripped.
        drop_head: keep the model's own (freshly initialised) ``head`` instead of the
            checkpoint's, e.g. to fine-tune on a new number of classes.
        old_grid: the checkpoint's ``(rows, cols)`` patch grid, when it is not square.
        mode, antialias: how to resample position embeddings
            (:func:`vitcourse.models.posembed.resample_pos_embed`).

    A checkpoint trained at another image size loads: its position embeddings are resampled
    once to the model's grid (logged as old -> new). Missing or unexpected keys, or other
    shape mismatches, raise a ``ValueError`` that lists them.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    state_dict = _check_state_dict(state_dict)
    check_resample_options(mode, old_grid=old_grid)  # also when pos_embed needs no resampling
    if state_dict and all(key.startswith("module.") for key in state_dict):
        state_dict = {key[len("module."):]: value for key, value in state_dict.items()}
    own = model.state_dict()
    if drop_head:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
        state_dict.update({k: v for k, v in own.items() if k.startswith("head.")})

    diff = state_dict_diff(state_dict, own)
    if not (diff.missing or diff.unexpected) and "pos_embed" in own and state_dict["pos_embed"].shape != own["pos_embed"].shape:
        # Trained at another image size: resample the table to the model's grid, then compare again.
        state_dict["pos_embed"] = _resample_for(model, state_dict["pos_embed"], own["pos_embed"], old_grid, mode, antialias)
        diff = state_dict_diff(state_dict, own)
    if diff:
        hint = "\n  (pass drop_head=True to keep the model's own head)" if any(k.startswith("head.") for k in diff.keys) else ""
        raise ValueError(
            "the state dict does not match the model:\n  " + diff.describe("\n  ", got="checkpoint", expected="model") + hint
        )
    model.load_state_dict(state_dict, strict=True)
    return model


def _resample_for(model, pos_embed, target, old_grid, mode, antialias) -> torch.Tensor:
    """Resample a checkpoint's position embeddings to ``model``'s grid."""
    prefix = getattr(model, "num_pos_prefix_tokens", None)
    new_grid = getattr(model, "grid_size", None)
    if prefix is None or new_grid is None:
        raise ValueError(
            f"pos_embed has shape {tuple(pos_embed.shape)}, the model {tuple(target.shape)}, and the "
            "model does not say its grid (grid_size, num_pos_prefix_tokens) to resample to"
        )
    if pos_embed.dim() != 3 or pos_embed.shape[-1] != target.shape[-1]:
        raise ValueError(f"pos_embed: checkpoint {tuple(pos_embed.shape)} vs model {tuple(target.shape)}")
    resampled = resample_pos_embed(
        pos_embed, new_grid, old_grid, num_prefix_tokens=prefix, mode=mode, antialias=antialias
    )
    old = old_grid if old_grid is not None else (math.isqrt(pos_embed.shape[1] - prefix),) * 2
    logger.info("resampled pos_embed from grid %s to %s (%s -> %s)", tuple(old), tuple(new_grid),
                tuple(pos_embed.shape), tuple(resampled.shape))
    return resampled


# ---- Hugging Face transformers ---------------------------------------------------------------

# Per-layer names: transformers >= 5 first, then the names of the hub checkpoints (transformers 4).
# ViT and DINOv2 share most of them; CLIP has its own (``self_attn``, ``layer_norm1``).
_HF_LAYER = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "norm1": "norm1",  # DINOv2
    "norm2": "norm2",
    "layer_norm1": "norm1",  # CLIP
    "layer_norm2": "norm2",
    "attention.o_proj": "attn.proj",
    "attention.output.dense": "attn.proj",
    "self_attn.out_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "intermediate.dense": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "output.dense": "mlp.fc2",
    "layer_scale1": "ls1",  # DINOv2's layer scale: lambda1 -> gamma
    "layer_scale2": "ls2",
}
_HF_QKV = {
    "attention.q_proj": "q", "attention.k_proj": "k", "attention.v_proj": "v",
    "attention.attention.query": "q", "attention.attention.key": "k", "attention.attention.value": "v",
    "self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v",
}
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "embeddings.register_tokens": "reg_token",  # DINOv2 with registers
    "embeddings.patch_embedding.weight": "patch_embed.proj.weight",  # CLIP (no bias)
    "pre_layrnorm.weight": "norm_pre.weight",  # CLIP's LayerNorm before the blocks (sic)
    "pre_layrnorm.bias": "norm_pre.bias",
    "post_layernorm.weight": "norm.weight",
    "post_layernorm.bias": "norm.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}
_HF_PREFIXES = ("vit.", "vision_model.")
# Not part of an image encoder: DINOv2's mask token (used only in pretraining), ViTModel's tanh
# pooler, the position ids older CLIP checkpoints stored, a whole CLIPModel's text tower and
# ViTMAEForPreTraining's pixel decoder.
_HF_DROP = (
    "embeddings.mask_token", "embeddings.position_ids", "pooler.", "text_model.", "text_projection.", "logit_scale",
    "decoder.",
)
_HF_BLOCK = re.compile(r"^(?:encoder\.layers?|layers)\.(\d+)\.(.+)\.(weight|bias|lambda1)$")


def convert_hf_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Hugging Face ViT, DINOv2 or CLIP image-tower state dict -> timm names.

    ==============================================  ===============================================
    Hugging Face                                    ours (timm's)
    ==============================================  ===============================================
    ``ViTModel`` / ``ViTForImageClassification``    a ViT (``classifier`` -> ``head``)
    ``Dinov2Model``                                 ``vit_*_patch14_dinov2`` (``lambda1`` -> ``gamma``)
    ``Dinov2WithRegistersModel``                    ``vit_*_patch14_reg4_dinov2`` (see below)
    ``CLIPVisionModel``                             ``vit_*_clip_quickgelu_*`` with ``num_classes=0``
    ``CLIPVisionModelWithProjection``, ``CLIPModel``  the same with the projection as ``head``
    ``ViTMAEModel``, ``ViTMAEForPreTraining``       ``vit_*_patch16_224.mae`` (the encoder; no head)
    ==============================================  ===============================================

    Accepts the names of current transformers (``layers.N.attention.q_proj``) and of the hub
    checkpoints (``encoder.layer.N.attention.attention.query``), with or without the ``vit.`` /
    ``vision_model.`` prefix. Separate query/key/value Linears become one ``qkv`` (rows q, k,
    v). CLIP's class embedding ``(D,)`` and position table ``(1 + N, D)`` get their batch axes;
    its projection (a Linear without bias) becomes ``head`` with a zero bias. Dropped, with a
    log message: ``ViTModel``'s ``pooler`` (a tanh layer our model does not have), DINOv2's
    ``mask_token`` (pretraining only), a ``CLIPModel``'s text tower and a
    ``ViTMAEForPreTraining``'s decoder (which reconstructs pixels from the encoder's tokens:
    page 2.2 loads it into its own decoder). Names it does not know are kept as they are, so
    that loading reports them.

    MAE's encoder equals ours once both see the same patches: ``ViTMAEModel`` keeps the
    patches with the smallest ``noise`` (its argument), in that order, so with
    ``mask_ratio=0`` and ``noise`` increasing along the grid it keeps every patch in grid
    order, and its ``last_hidden_state`` is our ``forward_features``.

    DINOv2 with registers adds position embeddings to ``[cls, patches]`` and inserts the
    registers after that; timm's layout (``no_embed_class=True``) adds them to the patches only.
    The two agree once the class token's position embedding is folded into the class token,
    which this does.

    Note that Hugging Face's ``ViTConfig`` defaults to ``layer_norm_eps=1e-12`` (BERT's value),
    while the original ViT checkpoints were trained with 1e-6, ours. The two LayerNorms differ
    slightly, so for logits that agree to float rounding build the Hugging Face model with
    ``layer_norm_eps=1e-6`` (``from_pretrained(name, layer_norm_eps=1e-6)``). DINOv2 (1e-6)
    and CLIP (1e-5, ``norm_eps`` in our CLIP configs) need nothing.
    """
    state_dict = _check_state_dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    dropped = []
    for key, value in state_dict.items():
        name = next((key[len(p):] for p in _HF_PREFIXES if key.startswith(p)), key)
        if name in _HF_TOP:
            out[_HF_TOP[name]] = value
        elif name.startswith(_HF_DROP):
            dropped.append(key)
        elif name == "embeddings.class_embedding":  # CLIP: (D,)
            out["cls_token"] = value.reshape(1, 1, -1)
        elif name == "embeddings.position_embedding.weight":  # CLIP: an nn.Embedding, (1 + N, D)
            out["pos_embed"] = value.unsqueeze(0)
        elif name == "visual_projection.weight":  # CLIP: into the joint image-text space
            out["head.weight"] = value
            out["head.bias"] = value.new_zeros(value.shape[0])
        elif match := _HF_BLOCK.match(name):
            index, inner, kind = int(match[1]), match[2], match[3]
            if inner in _HF_QKV:
                qkv.setdefault((index, kind), {})[_HF_QKV[inner]] = value
            elif inner in _HF_LAYER:
                out[f"blocks.{index}.{_HF_LAYER[inner]}.{'gamma' if kind == 'lambda1' else kind}"] = value
            else:
                out[key] = value
        else:
            out[key] = value
    for (index, kind), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"layer {index}: attention {kind} has only {sorted(parts)} of q, k, v")
        shapes = {name: tuple(parts[name].shape) for name in "qkv"}
        if len(set(shapes.values())) != 1:
            raise ValueError(
                f"layer {index}: attention {kind} shapes differ: query {shapes['q']}, key {shapes['k']}, "
                f"value {shapes['v']}"
            )
        # One Linear with rows ordered q, k, v equals three Linears applied side by side.
        out[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    if "reg_token" in out and "cls_token" in out and "pos_embed" in out:
        # [cls + pos_0, registers, patches + pos_1..N] == timm's no_embed_class layout.
        out["cls_token"] = out["cls_token"] + out["pos_embed"][:, :1]
        out["pos_embed"] = out["pos_embed"][:, 1:]
    if dropped:
        shown = ", ".join(sorted(dropped)[:10]) + (f", ... ({len(dropped) - 10} more)" if len(dropped) > 10 else "")
        logger.info("dropped Hugging Face weights that are not part of the image encoder: %s", shown)
    return out


def load_hf_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], **kwargs) -> nn.Module:
    """:func:`convert_hf_state_dict`, then :func:`load_timm_state_dict` (same keyword arguments)."""
    return load_timm_state_dict(model, convert_hf_state_dict(state_dict), **kwargs)


# ---- the original JAX code (google-research/vision_transformer .npz) -------------------------


def convert_jax_npz(npz) -> dict[str, torch.Tensor]:
    """An original ViT ``.npz`` checkpoint (google-research/vision_transformer) -> timm names.

    ``npz`` is a path or a mapping of flattened Flax names to arrays, e.g. ``np.load(path)``.
    The layout (``L`` = layer, ``D`` = width, ``H`` = heads, ``d`` = head_dim)::

        embedding/kernel                      (p, p, C, D)  HWIO conv kernel -> OIHW
        embedding/bias, cls                   (D,), (1, 1, D)
        Transformer/posembed_input/pos_embedding               (1, 1 + N, D)
        Transformer/encoderblock_L/LayerNorm_0/{scale,bias}    -> blocks.L.norm1
        Transformer/encoderblock_L/MultiHeadDotProductAttention_1/{query,key,value}/kernel
                                              (D, H, d) -> rows of qkv (bias (H, d))
        .../MultiHeadDotProductAttention_1/out/kernel          (H, d, D) -> attn.proj
        Transformer/encoderblock_L/LayerNorm_2                 -> blocks.L.norm2
        Transformer/encoderblock_L/MlpBlock_3/Dense_{0,1}/kernel (in, out) -> mlp.fc{1,2}
        Transformer/encoder_norm/{scale,bias}                  -> norm
        head/kernel, head/bias                (D, classes), (classes,)

    A leading ``opt/target/`` (training checkpoints) is accepted. Keys it does not know (e.g.
    ``pre_logits/*`` of the old ImageNet-21k checkpoints) are kept as they are, so that
    loading lists them. big_vision checkpoints (``params/...``) use other layouts and heads
    and are refused with a clear error.
    """
    if isinstance(npz, (str, os.PathLike)):
        with np.load(npz) as file:
            arrays = {key: file[key] for key in file.files}
    elif isinstance(npz, Mapping) or hasattr(npz, "files"):
        arrays = {key: np.asarray(npz[key]) for key in npz.keys()}
    else:
        raise TypeError(f"npz must be a path or a mapping of names to arrays, got {type(npz).__name__}")
    prefix = "opt/target/" if "opt/target/embedding/kernel" in arrays else ""
    if f"{prefix}embedding/kernel" not in arrays:
        raise ValueError(f"not a ViT checkpoint: no 'embedding/kernel' among its {len(arrays)} keys ({sorted(arrays)[:5]} ...)")
    if f"{prefix}Transformer/posembed_input/pos_embedding" not in arrays:
        raise ValueError("this looks like a big_vision checkpoint (no Transformer/posembed_input); "
                         "only the original vision_transformer layout is supported")
    arrays = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}

    def take(key: str) -> torch.Tensor:
        if key not in arrays:
            raise ValueError(
                f"the checkpoint lacks {key!r}; expected an original google-research/vision_transformer "
                "ViT .npz (the layout in convert_jax_npz's docstring)"
            )
        return torch.from_numpy(np.ascontiguousarray(arrays.pop(key), dtype=np.float32))

    out = {
        "patch_embed.proj.weight": take("embedding/kernel").permute(3, 2, 0, 1).contiguous(),
        "patch_embed.proj.bias": take("embedding/bias"),
        "pos_embed": take("Transformer/posembed_input/pos_embedding"),
        "norm.weight": take("Transformer/encoder_norm/scale"),
        "norm.bias": take("Transformer/encoder_norm/bias"),
    }
    if "cls" in arrays:
        out["cls_token"] = take("cls")
    if "head/kernel" in arrays:
        out["head.weight"] = take("head/kernel").T.contiguous()
        out["head.bias"] = take("head/bias")
    layer = 0
    while f"Transformer/encoderblock_{layer}/LayerNorm_0/scale" in arrays:
        src, dst = f"Transformer/encoderblock_{layer}/", f"blocks.{layer}."
        attn = src + "MultiHeadDotProductAttention_1/"
        for jax_name, ours in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            out[dst + ours + ".weight"] = take(src + jax_name + "/scale")
            out[dst + ours + ".bias"] = take(src + jax_name + "/bias")
        # (D, H, d) kernels map input -> (head, channel); flattened and transposed they are the
        # (out = H*d, in = D) weight of a Linear, and q, k, v stack into qkv's rows.
        out[dst + "attn.qkv.weight"] = torch.cat(
            [take(f"{attn}{n}/kernel").flatten(1).T for n in ("query", "key", "value")]
        )
        out[dst + "attn.qkv.bias"] = torch.cat([take(f"{attn}{n}/bias").flatten() for n in ("query", "key", "value")])
        out[dst + "attn.proj.weight"] = take(attn + "out/kernel").flatten(0, 1).T.contiguous()
        out[dst + "attn.proj.bias"] = take(attn + "out/bias")
        for i in (0, 1):
            dense = f"{src}MlpBlock_3/Dense_{i}/"
            out[f"{dst}mlp.fc{i + 1}.weight"] = take(dense + "kernel").T.contiguous()
            out[f"{dst}mlp.fc{i + 1}.bias"] = take(dense + "bias")
        layer += 1
    # Whatever is left is not part of our model; keep it so that loading names it.
    out.update({key: torch.from_numpy(np.asarray(value)) for key, value in arrays.items()})
    return out


def load_jax_npz(model: nn.Module, npz, *, mode: str = "bilinear", antialias: bool = False, **kwargs) -> nn.Module:
    """:func:`convert_jax_npz`, then :func:`load_timm_state_dict` (same keyword arguments).

    Position embeddings are resampled bilinearly without antialiasing by default, as timm's
    loader of these files does.
    """
    return load_timm_state_dict(model, convert_jax_npz(npz), mode=mode, antialias=antialias, **kwargs)


# ---- timm's models: which ones our ViT reproduces ------------------------------------------

SUPPORTED_FAMILIES = (
    "ViT (original, AugReg; patch 8, 14, 16 or 32; any image size)",
    "DeiT (with its distillation token) and DeiT III (layer scale)",
    "DINO and DINOv2, with or without register tokens (layer scale; no head)",
    "CLIP image towers (a LayerNorm before the blocks; QuickGELU for OpenAI's weights)",
    "MAE encoders (no head)",
)


# timm modules of other architectures -> what they have that our ViT does not.
_OTHER_KINDS = {
    "eva": "rotary position embeddings and gated MLPs (EVA, EVA-02, PE, RoPE ViTs)",
    "beit": "relative position biases in attention (BEiT)",
    "relpos": "relative position biases in attention",
    "hybrid": "a convolutional stem before the Transformer",
    "sam": "windowed attention with relative positions (SAM)",
    "naflex": "variable-resolution patch sequences (NaFlexViT)",
}


def _refuse(name: str, reason: str):
    families = "; ".join(SUPPORTED_FAMILIES)
    raise ValueError(
        f"{name!r} does not load into the course's VisionTransformer: {reason}. "
        f"Supported families: {families} (named configurations: vitcourse.list_models())."
    )


def config_from_timm(model: nn.Module, name: str | None = None) -> tuple[type[VisionTransformer], ViTConfig]:
    """Our model class and :class:`~vitcourse.models.vit.ViTConfig` for a timm ``VisionTransformer``.

    Reads every setting that shapes the computation (sizes, tokens, pooling, layer scale,
    pre-norm, activation, LayerNorm eps) off ``model``, and refuses, with a ``ValueError``
    that says what and names the families we support, anything our model does not compute the
    same way: another class (EVA's rotary embeddings, BEiT's relative position biases),
    SigLIP's attention-pool head, gated (SwiGLU) MLPs, normalised queries and keys, RMSNorm,
    other block layouts. Works on a model built on the ``meta`` device (no weights needed).
    """
    from timm.layers import LayerScale as TimmLayerScale
    from timm.layers import Mlp as TimmMlp
    from timm.layers import PatchEmbed as TimmPatchEmbed
    from timm.layers.activations import QuickGELU as TimmQuickGELU
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import Attention as TimmAttention
    from timm.models.vision_transformer import Block as TimmBlock
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    name = name or type(model).__name__
    kind = type(model)
    if kind not in (TimmViT, VisionTransformerDistilled):
        module = kind.__module__.rsplit(".", 1)[-1]
        why = next((why for key, why in _OTHER_KINDS.items() if key in module), "another architecture")
        _refuse(name, f"timm builds it as {kind.__module__}.{kind.__name__}, not as a VisionTransformer: {why}")
    if getattr(model, "attn_pool", None) is not None:
        _refuse(name, f"it pools with an attention-pool head (global_pool={model.global_pool!r}, as SigLIP)")
    if model.global_pool not in ("token", "avg") or getattr(model, "pool_include_prefix", False):
        _refuse(name, f"it pools with global_pool={model.global_pool!r}; ours pools with 'token' or 'avg'")
    embed = model.patch_embed
    if type(embed) is not TimmPatchEmbed or not isinstance(embed.norm, nn.Identity) or embed.dynamic_img_pad:
        _refuse(name, "its patch embedding is not a plain linear map of each patch")
    if model.pos_embed is None:
        _refuse(name, "it has no learned absolute position embeddings")
    first = model.blocks[0]
    if any(type(block) is not TimmBlock for block in model.blocks):
        _refuse(name, f"its blocks are {type(first).__name__}, another layout than x + f(LN(x))")
    norms = [m for m in model.modules() if "norm" in type(m).__name__.lower()]
    if any(not isinstance(m, nn.LayerNorm) or m.bias is None for m in norms):
        _refuse(name, "it normalises with RMSNorm or a LayerNorm without bias")
    eps = {m.eps for m in norms}
    if len(eps) != 1:
        _refuse(name, f"its LayerNorms use several eps values {sorted(eps)}")
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        if type(attn) is not TimmAttention or not all(
            isinstance(getattr(attn, part, nn.Identity()), nn.Identity) for part in ("q_norm", "k_norm", "norm")
        ):
            _refuse(name, "its attention normalises queries and keys (qk_norm) or is not plain attention")
        if getattr(attn, "gate", None) is not None:
            _refuse(name, "its attention output is gated")
        if type(mlp) is not TimmMlp or not isinstance(mlp.norm, nn.Identity):
            _refuse(name, f"its MLP is {type(mlp).__name__} (a gated SwiGLU MLP, as DINOv2's ViT-g and AIMv2)")
        if attn.proj.bias is None or mlp.fc1.bias is None or mlp.fc2.bias is None:
            _refuse(name, "its Linear layers have no bias")
        if type(mlp.act) not in (nn.GELU, TimmQuickGELU) or getattr(mlp.act, "approximate", "none") != "none":
            _refuse(name, f"its MLP activation is {mlp.act}; ours are the exact GELU and QuickGELU")
        if type(block.ls1) is not type(block.ls2):
            _refuse(name, "it scales one residual branch of a block and not the other")
    ls = first.ls1
    if not isinstance(ls, (nn.Identity, TimmLayerScale)):
        _refuse(name, f"its layer scale is {type(ls).__name__}")
    avg = model.global_pool == "avg"
    if isinstance(model.norm, nn.Identity) != avg or isinstance(model.fc_norm, nn.Identity) == avg:
        _refuse(name, "its final LayerNorm is not where ours is (on every token for 'token' pooling, on the "
                      "pooled vector for 'avg')")
    if not isinstance(model.head, (nn.Linear, nn.Identity)):
        _refuse(name, f"its head is {type(model.head).__name__}, not a Linear layer")

    embed_dim = model.embed_dim
    pre_norm = not isinstance(model.norm_pre, nn.Identity)
    if pre_norm == (embed.proj.bias is not None):
        _refuse(name, "its patch projection has a bias together with a LayerNorm before the blocks, or "
                      "neither (ours has exactly one of the two, as timm's CLIP and plain ViTs)")
    mlp_ratio = first.mlp.fc1.out_features / embed_dim
    if int(embed_dim * mlp_ratio) != first.mlp.fc1.out_features:
        _refuse(name, f"its MLP width {first.mlp.fc1.out_features} is not int(D * mlp_ratio)")
    config = ViTConfig(
        img_size=tuple(embed.img_size),
        patch_size=tuple(embed.patch_size),
        in_chans=embed.proj.in_channels,
        num_classes=model.num_classes,
        embed_dim=embed_dim,
        depth=len(model.blocks),
        num_heads=first.attn.num_heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=first.attn.qkv.bias is not None,
        class_token=model.cls_token is not None,
        global_pool=model.global_pool,
        reg_tokens=model.num_reg_tokens,
        no_embed_class=model.no_embed_class,
        dynamic_img_size=bool(model.dynamic_img_size),
        init_values=ls.init_values if isinstance(ls, TimmLayerScale) else None,
        pre_norm=pre_norm,
        act_layer="quick_gelu" if type(first.mlp.act) is TimmQuickGELU else "gelu",
        norm_eps=eps.pop(),
    )
    return (DistilledVisionTransformer if kind is VisionTransformerDistilled else VisionTransformer), config


# ---- the hub (optional, needs timm and a network) --------------------------------------------


def from_pretrained_timm(name: str, verify: bool = True, **overrides) -> nn.Module:
    """Our model with timm's pretrained weights for ``name``, e.g. ``"vit_small_patch14_dinov2.lvd142m"``.

    ``name`` is any timm model name with an optional pretrained tag, of a family our model
    reproduces (:data:`SUPPORTED_FAMILIES`); ``overrides`` go to ``timm.create_model`` (e.g.
    ``img_size=224`` resamples the position embeddings, ``num_classes=0`` drops the head), and
    our model takes every setting from the model timm builds (:func:`config_from_timm`), so a
    tag's own settings (no head for DINO, 518 px for DINOv2) come along.

    Before downloading anything, timm's model is built on the ``meta`` device and checked: a
    model our ViT does not compute the same way (SigLIP's attention-pool head, EVA's rotary
    embeddings, ...) raises a ``ValueError`` naming what differs. After loading, with
    ``verify``, both models run on one random image and a ``RuntimeError`` is raised if they
    disagree, so no one gets a silently wrong model.

    The returned model carries timm's ``pretrained_cfg`` (the tag's input size, mean and std,
    crop) as the attribute of the same name. Needs timm and a connection to the Hugging Face
    hub (works in Colab); raises ``RuntimeError`` otherwise.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__} {name!r}")
    if not name:
        raise ValueError("name must be a timm model name, got ''")
    check_bool(verify, "verify")
    try:
        import timm
    except ImportError as error:
        raise RuntimeError("from_pretrained_timm needs timm: pip install timm") from error
    arch = name.split(".")[0]
    if not timm.is_model(arch):
        _refuse(name, f"timm has no model called {arch!r}")
    try:
        with torch.device("meta"):  # the architecture alone, to refuse before downloading anything
            probe = timm.create_model(name, pretrained=False, **overrides)
    except (RuntimeError, TypeError, ValueError, AssertionError) as error:  # an unknown tag, a bad override
        raise ValueError(f"timm cannot build {name!r} with {overrides or 'no overrides'}: {error}") from error
    config_from_timm(probe, name)
    try:
        reference = timm.create_model(name, pretrained=True, **overrides).eval()
    except Exception as error:  # no network, no such tag, hub errors: one clear message
        raise RuntimeError(f"could not download pretrained weights for {name!r} via timm: {error}") from error
    factory, config = config_from_timm(reference, name)
    model = load_timm_state_dict(factory(config), reference.state_dict()).eval()
    model.pretrained_cfg = dict(getattr(reference, "pretrained_cfg", {}) or {})
    notes = " ".join(model.pretrained_cfg.get("notes", ()))
    if "quickgelu" in notes.lower() and config.act_layer != "quick_gelu":
        logger.warning("%s: %s (timm's note); this model runs GELU as timm's does", name, notes)
    if verify:
        _verify_against(reference, model, name)
    return model


def _verify_against(reference: nn.Module, model: nn.Module, name: str) -> None:
    """Raise unless ``model`` and ``reference`` give the same outputs on one random image."""
    height, width = model.img_size
    x = torch.randn(1, model.patch_embed.in_chans, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = reference(x).float(), model(x).float()
    difference = (expected - got).abs().max().item()
    scale = max(1.0, expected.abs().max().item())
    if not difference <= 1e-3 * scale:  # float32 rounding of different kernels is far below this
        raise RuntimeError(
            f"{name}: our model's outputs differ from timm's by {difference:.3g} (outputs up to {scale:.3g}) on a "
            "random image; timm's model computes something ours does not"
        )
    logger.info("%s: outputs agree with timm's to %.2g on a random image", name, difference)
