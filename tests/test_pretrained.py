"""vitcourse.models.pretrained: timm, Hugging Face and original-JAX checkpoints load into our model and
give the reference's outputs (random weights; nothing is downloaded)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.stand_ins import (
    TIMM_CHECKPOINT,
    hub_environment,
    randomised,
    with_old_names,
    write_hub_cache,
)
from vitcourse import VisionTransformer
from vitcourse.models.pretrained import (
    convert_hf_state_dict,
    convert_jax_npz,
    from_pretrained_timm,
    load_hf_state_dict,
    load_jax_npz,
    load_timm_state_dict,
)

timm = pytest.importorskip("timm")

CONFIG = dict(patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=5)


def _timm_model(img_size=32, **extra):
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=img_size, **CONFIG, **extra)
    with torch.no_grad():  # make biases, norms and tokens non-trivial so that mix-ups show
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def _max_diff(a, b):
    return (a - b).abs().max().item()


# ---- timm ------------------------------------------------------------------------------------


def test_timm_state_dict_loads_and_matches():
    theirs = _timm_model()
    ours = load_timm_state_dict(VisionTransformer(img_size=32, **CONFIG), theirs.state_dict()).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _max_diff(ours(x), theirs(x)) <= 1e-5


def test_checkpoint_from_another_image_size(caplog):
    """Trained at 32 x 32 (4 x 4 grid), loaded at 48 x 48: equals timm run at 48 dynamically."""
    theirs = _timm_model(dynamic_img_size=True)
    ours = VisionTransformer(img_size=48, **CONFIG)
    with caplog.at_level(logging.INFO, logger="vitcourse.models.pretrained"):
        load_timm_state_dict(ours, theirs.state_dict())
    assert "grid (4, 4) to (6, 6)" in caplog.text
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert _max_diff(ours.eval()(x), theirs(x)) <= 1e-5


def test_rectangular_checkpoint_needs_old_grid():
    theirs = _timm_model(img_size=(16, 40))
    ours = VisionTransformer(img_size=32, **CONFIG)
    with pytest.raises(ValueError, match="cannot infer a square old_grid"):
        load_timm_state_dict(ours, theirs.state_dict())
    load_timm_state_dict(ours, theirs.state_dict(), old_grid=(2, 5))
    assert ours.pos_embed.shape == (1, 17, 32)


def test_missing_and_unexpected_keys_are_listed():
    state = _timm_model().state_dict()
    del state["blocks.1.mlp.fc2.bias"]
    state["blocks.1.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"missing keys \(1\): blocks.1.mlp.fc2.bias(.|\n)*unexpected keys \(1\): blocks.1.extra.weight"):
        load_timm_state_dict(VisionTransformer(img_size=32, **CONFIG), state)


def test_head_mismatch_and_drop_head():
    state = _timm_model().state_dict()
    model = VisionTransformer(img_size=32, **{**CONFIG, "num_classes": 7})
    with pytest.raises(ValueError, match=r"head.weight: checkpoint \(5, 32\) vs model \(7, 32\).*|drop_head=True"):
        load_timm_state_dict(model, state)
    own_head = model.head.weight.clone()
    load_timm_state_dict(model, state, drop_head=True)
    assert torch.equal(model.head.weight, own_head)
    assert torch.equal(model.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])


def test_ddp_prefix_is_stripped_and_bad_input_rejected():
    state = {"module." + k: v for k, v in _timm_model().state_dict().items()}
    load_timm_state_dict(VisionTransformer(img_size=32, **CONFIG), state)
    with pytest.raises(TypeError, match="mapping of names to tensors"):
        load_timm_state_dict(VisionTransformer(img_size=32, **CONFIG), [1, 2])
    with pytest.raises(TypeError, match="values must be tensors.*cls_token"):
        load_timm_state_dict(VisionTransformer(img_size=32, **CONFIG), {**state, "cls_token": 1.0})


def test_resampling_options_are_checked_even_when_nothing_is_resampled():
    state = _timm_model().state_dict()  # same grid as the model: pos_embed loads as is
    model = VisionTransformer(img_size=32, **CONFIG)
    with pytest.raises(ValueError, match="mode must be one of .* got 'foo'"):
        load_timm_state_dict(model, state, mode="foo")
    with pytest.raises(TypeError, match="old_grid must be a positive int or a pair of positive ints, got str 'bogus'"):
        load_timm_state_dict(model, state, old_grid="bogus")
    load_timm_state_dict(model, state, mode="bilinear", old_grid=(4, 4))
    assert torch.equal(model.pos_embed, state["pos_embed"])


# ---- Hugging Face ----------------------------------------------------------------------------


def _hf_config(**extra):
    transformers = pytest.importorskip("transformers")
    return transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
        patch_size=8, num_labels=5, layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True, **extra,
    )


def test_hugging_face_classifier():
    from transformers import ViTForImageClassification

    theirs = randomised(ViTForImageClassification(_hf_config()))
    ours = load_hf_state_dict(VisionTransformer(img_size=32, **CONFIG), theirs.state_dict()).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _max_diff(ours(x), theirs(pixel_values=x).logits) <= 1e-4


def test_hugging_face_model_features(caplog):
    from transformers import ViTModel

    theirs = randomised(ViTModel(_hf_config()))
    ours = VisionTransformer(img_size=32, **{**CONFIG, "num_classes": 0})
    with caplog.at_level(logging.INFO, logger="vitcourse.models.pretrained"):
        load_hf_state_dict(ours, theirs.state_dict())
    assert "pooler" in caplog.text
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _max_diff(ours.eval().forward_features(x), theirs(pixel_values=x).last_hidden_state) <= 1e-4


def test_hugging_face_hub_names():
    """The hub's checkpoints use transformers 4 names; both spellings convert the same."""
    from transformers import ViTForImageClassification

    state = randomised(ViTForImageClassification(_hf_config())).state_dict()
    renames = [
        ("vit.layers.", "vit.encoder.layer."), ("attention.q_proj", "attention.attention.query"),
        ("attention.k_proj", "attention.attention.key"), ("attention.v_proj", "attention.attention.value"),
        ("attention.o_proj", "attention.output.dense"), ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense"),
    ]
    old = with_old_names(state, renames)
    assert any("encoder.layer.0.attention.attention.query" in k for k in old)
    new_converted, old_converted = convert_hf_state_dict(state), convert_hf_state_dict(old)
    assert new_converted.keys() == old_converted.keys()
    assert all(torch.equal(new_converted[k], old_converted[k]) for k in new_converted)


def test_hugging_face_error_query_key_value_shapes_differ():
    layer = "encoder.layer.3.attention.attention."
    state = {layer + "query.weight": torch.zeros(8, 8), layer + "key.weight": torch.zeros(8, 4),
             layer + "value.weight": torch.zeros(8, 8)}
    with pytest.raises(ValueError, match=r"layer 3: attention weight shapes differ: query \(8, 8\), key \(8, 4\), "
                                         r"value \(8, 8\)"):
        convert_hf_state_dict(state)


# ---- the original JAX .npz -------------------------------------------------------------------


def _to_original_npz(model) -> dict[str, np.ndarray]:
    """Write a timm ViT's weights in the original vision_transformer checkpoint layout:
    Flax Dense kernels are (in, out); attention kernels are split per head."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    dim, heads = model.embed_dim, model.blocks[0].attn.num_heads
    head_dim = dim // heads
    out = {
        "embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),  # OIHW -> HWIO
        "embedding/bias": sd["patch_embed.proj.bias"],
        "cls": sd["cls_token"],
        "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": sd["head.weight"].T,
        "head/bias": sd["head.bias"],
    }
    for i in range(len(model.blocks)):
        b, p = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        a = p + "MultiHeadDotProductAttention_1/"
        out[p + "LayerNorm_0/scale"], out[p + "LayerNorm_0/bias"] = sd[b + "norm1.weight"], sd[b + "norm1.bias"]
        out[p + "LayerNorm_2/scale"], out[p + "LayerNorm_2/bias"] = sd[b + "norm2.weight"], sd[b + "norm2.bias"]
        w, bias = sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]
        for j, name in enumerate(("query", "key", "value")):
            out[a + name + "/kernel"] = w[j * dim:(j + 1) * dim].T.reshape(dim, heads, head_dim)
            out[a + name + "/bias"] = bias[j * dim:(j + 1) * dim].reshape(heads, head_dim)
        out[a + "out/kernel"] = sd[b + "attn.proj.weight"].T.reshape(heads, head_dim, dim)
        out[a + "out/bias"] = sd[b + "attn.proj.bias"]
        for r in (0, 1):
            out[f"{p}MlpBlock_3/Dense_{r}/kernel"] = sd[f"{b}mlp.fc{r + 1}.weight"].T
            out[f"{p}MlpBlock_3/Dense_{r}/bias"] = sd[f"{b}mlp.fc{r + 1}.bias"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


@pytest.mark.parametrize("img_size", [32, 48])
def test_jax_npz_matches_timms_loader(tmp_path, img_size):
    """Our converter and timm's own .npz loader (_load_weights) give the same model, at the
    checkpoint's size and at a larger one (position embeddings resampled the same way)."""
    from timm.models.vision_transformer import _load_weights

    source = _timm_model()
    path = tmp_path / "vit.npz"
    np.savez(path, **_to_original_npz(source))

    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=img_size, **CONFIG).eval()
    with torch.no_grad():
        _load_weights(reference, str(path))
    ours = load_jax_npz(VisionTransformer(img_size=img_size, **CONFIG), path).eval()
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        assert _max_diff(ours(x), reference(x)) <= 1e-5
        if img_size == 32:
            assert _max_diff(ours(x), source(x)) <= 1e-5


def test_jax_npz_unknown_keys_are_listed():
    arrays = _to_original_npz(_timm_model())
    arrays["pre_logits/kernel"] = np.zeros((32, 32), np.float32)
    with pytest.raises(ValueError, match="unexpected keys.*pre_logits/kernel"):
        load_jax_npz(VisionTransformer(img_size=32, **CONFIG), arrays)
    prefixed = {"opt/target/" + k: v for k, v in _to_original_npz(_timm_model()).items()}
    assert "patch_embed.proj.weight" in convert_jax_npz(prefixed)
    with pytest.raises(ValueError, match="no 'embedding/kernel'"):
        convert_jax_npz({"foo": np.zeros(1)})
    with pytest.raises(TypeError, match="npz must be a path or a mapping"):
        convert_jax_npz(3)


@pytest.mark.parametrize("missing", ["Transformer/encoder_norm/scale", "head/bias",
                                     "Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel"])
def test_jax_npz_error_missing_key(missing):
    arrays = _to_original_npz(_timm_model())
    del arrays[missing]
    with pytest.raises(ValueError, match=f"the checkpoint lacks '{missing}'; expected an original .*vision_transformer"):
        convert_jax_npz(arrays)


# ---- the hub ---------------------------------------------------------------------------------


def test_from_pretrained_timm_offline_error(monkeypatch):
    create = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("Name or service not known")
        return create(name, pretrained=False, **kwargs)  # the architecture needs no network

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="could not download pretrained weights for 'vit_tiny_patch16_224'"):
        from_pretrained_timm("vit_tiny_patch16_224")
    with pytest.raises(ValueError, match="'resnet50.a1_in1k' does not load .* not as a VisionTransformer"):
        from_pretrained_timm("resnet50.a1_in1k")
    with pytest.raises(ValueError, match="timm cannot build 'vit_tiny_patch16_224.no_such_tag'"):
        from_pretrained_timm("vit_tiny_patch16_224.no_such_tag")


def test_from_pretrained_timm_copies_weights(monkeypatch):
    """With the download replaced by a random timm model, the copy and its settings are right."""
    create = timm.create_model
    reference = {}

    def fake(name, pretrained=False, **kwargs):
        if not pretrained:
            return create(name, pretrained=False, **kwargs)
        torch.manual_seed(0)
        reference["model"] = create(name.split(".")[0], pretrained=False, num_classes=11, **kwargs).eval()
        return reference["model"]

    monkeypatch.setattr(timm, "create_model", fake)
    ours = from_pretrained_timm("vit_tiny_patch16_224.augreg_in21k_ft_in1k", img_size=32, depth=1).eval()
    assert ours.num_classes == 11 and ours.img_size == (32, 32)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert _max_diff(ours(x), reference["model"](x)) <= 1e-5


HUB_CHECK = """
import json, sys
import timm, torch
from safetensors.torch import load_file
from vitcourse.models.pretrained import from_pretrained_timm
name, stored = sys.argv[1], load_file(sys.argv[2])
ours = from_pretrained_timm(name, img_size=112).eval()       # resampled to a 7 x 7 grid on the way
reference = timm.create_model(name, pretrained=True, img_size=112).eval()
x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    difference = (ours(x) - reference(x)).abs().max().item()
same_block = all(torch.equal(ours.state_dict()[k], stored[k]) for k in stored if k.startswith("blocks.0."))
print(json.dumps({"difference": difference, "same_block": same_block, "grid": list(ours.grid_size)}))
"""


@pytest.mark.slow
def test_from_pretrained_timm_through_the_hub_cache(tmp_path):
    """timm's own hub loader, offline: the checkpoint comes from a hub cache written with random
    weights, in a fresh process (the hub reads its settings at import)."""
    home = write_hub_cache(tmp_path, hf_repo=None)
    [stored] = (home / "hub").rglob("model.safetensors")
    env = {**os.environ, **hub_environment(home)}
    result = subprocess.run([sys.executable, "-c", HUB_CHECK, TIMM_CHECKPOINT, str(stored)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["same_block"], "the weights did not come from the checkpoint in the cache"
    assert report["grid"] == [7, 7]
    assert report["difference"] <= 1e-5


def _online(host="huggingface.co") -> bool:
    try:
        socket.create_connection((host, 443), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_from_pretrained_timm_real_weights():
    if not _online():
        pytest.skip("no network: cannot reach huggingface.co")
    ours = from_pretrained_timm("vit_tiny_patch16_224.augreg_in21k_ft_in1k").eval()
    reference = timm.create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", pretrained=True).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert _max_diff(ours(x), reference(x)) <= 1e-4
