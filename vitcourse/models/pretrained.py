"""Loading checkpoints from timm, Hugging Face and the original JAX code into our ViT.

Our parameter names are timm's (DESIGN.md), so every loader works the same way: convert the
checkpoint's names and layouts to timm's, then :func:`load_timm_state_dict` checks the keys,
resamples the position embeddings if the checkpoint was trained at another image size, and
loads. Nothing is downloaded unless you call :func:`from_pretrained_timm`.

=========================  ===============================================================
source                     how its tensors map to ours
=========================  ===============================================================
timm                       same names and shapes
Hugging Face ViT           separate query/key/value Linears -> one ``qkv`` (rows q, k, v)
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

from .posembed import check_resample_options, resample_pos_embed
from .registry import create_model, list_models
from .statedict import state_dict_diff

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
_HF_LAYER = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.o_proj": "attn.proj",
    "attention.output.dense": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "intermediate.dense": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "output.dense": "mlp.fc2",
}
_HF_QKV = {
    "attention.q_proj": "q", "attention.k_proj": "k", "attention.v_proj": "v",
    "attention.attention.query": "q", "attention.attention.key": "k", "attention.attention.value": "v",
}
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}
_HF_BLOCK = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")


def convert_hf_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face ``ViTModel`` / ``ViTForImageClassification`` state dict -> timm names.

    Accepts the names of current transformers (``layers.N.attention.q_proj``) and of the hub
    checkpoints (``encoder.layer.N.attention.attention.query``), with or without the ``vit.``
    prefix. ``ViTModel``'s ``pooler`` (a tanh layer our model does not have) is dropped, with a
    log message. Names it does not know are kept as they are, so that loading reports them.

    Note that Hugging Face's ``ViTConfig`` defaults to ``layer_norm_eps=1e-12`` (BERT's value),
    while the original ViT checkpoints were trained with 1e-6, ours. The two LayerNorms differ
    slightly, so for logits that agree to float rounding build the Hugging Face model with
    ``layer_norm_eps=1e-6`` (``from_pretrained(name, layer_norm_eps=1e-6)``).
    """
    state_dict = _check_state_dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    dropped = []
    for key, value in state_dict.items():
        name = key[len("vit."):] if key.startswith("vit.") else key
        if name in _HF_TOP:
            out[_HF_TOP[name]] = value
        elif name.startswith("pooler."):
            dropped.append(key)
        elif match := _HF_BLOCK.match(name):
            index, inner, kind = int(match[1]), match[2], match[3]
            if inner in _HF_QKV:
                qkv.setdefault((index, kind), {})[_HF_QKV[inner]] = value
            elif inner in _HF_LAYER:
                out[f"blocks.{index}.{_HF_LAYER[inner]}.{kind}"] = value
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
    if dropped:
        logger.info("dropped Hugging Face pooler weights (not part of the ViT classifier): %s", dropped)
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


# ---- the hub (optional, needs timm and a network) --------------------------------------------


def from_pretrained_timm(name: str, **overrides) -> nn.Module:
    """Our model with timm's pretrained weights for ``name`` (e.g. ``"vit_small_patch16_224.augreg_in21k_ft_in1k"``).

    The architecture is our config of the same name (the part before the ``.``); ``overrides``
    go to both (e.g. ``img_size=384`` resamples the position embeddings). Needs timm and a
    connection to the Hugging Face hub (works in Colab); raises ``RuntimeError`` otherwise.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    arch = name.split(".")[0]
    if arch not in list_models():
        raise ValueError(f"unknown architecture {arch!r} in {name!r}; choose one of: {', '.join(list_models())}")
    try:
        import timm
    except ImportError as error:
        raise RuntimeError("from_pretrained_timm needs timm: pip install timm") from error
    try:
        reference = timm.create_model(name, pretrained=True, **overrides)
    except Exception as error:  # no network, no such tag, hub errors: one clear message
        raise RuntimeError(f"could not download pretrained weights for {name!r} via timm: {error}") from error
    # Read the variant's settings off timm's model (a tag may change classes, pooling, size).
    config = {
        "img_size": tuple(reference.patch_embed.img_size),
        "num_classes": reference.num_classes,
        "global_pool": reference.global_pool or "token",
        "class_token": reference.cls_token is not None,
        "reg_tokens": getattr(reference, "num_reg_tokens", 0),
        "no_embed_class": reference.no_embed_class,
        "qkv_bias": reference.blocks[0].attn.qkv.bias is not None,
    }
    model = create_model(arch, **{**config, **overrides})
    return load_timm_state_dict(model, reference.state_dict())
