"""vitcourse.models.vit against timm's VisionTransformer: numerics, key names, parameter counts,
options, and the errors a new user meets."""

from __future__ import annotations

import pytest
import torch

import vitcourse
from vitcourse import VisionTransformer, create_model, list_models
from vitcourse.models.attention import Attention
from vitcourse.models.vit import Block, PatchEmbed

timm = pytest.importorskip("timm")

SMALL = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=5)


def _pair_with_timm(timm_name: str = "vit_tiny_patch16_224", **config):
    """Our model and timm's with the same config and the same (timm-initialised) weights."""
    torch.manual_seed(0)
    theirs = timm.create_model(timm_name, pretrained=False, **config).eval()
    ours = VisionTransformer(**config).eval()
    ours.load_state_dict(theirs.state_dict())  # as is: same names, same shapes
    return ours, theirs


def _assert_close(a, b, atol=1e-5):
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= atol, (a - b).abs().max().item()


# ---- parity with timm ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"img_size": (32, 48)},  # non-square image
        {"patch_size": (8, 4), "img_size": (32, 24)},  # non-square patches
        {"reg_tokens": 4},
        {"global_pool": "avg"},
        {"global_pool": "avg", "class_token": False},
        {"reg_tokens": 2, "no_embed_class": True},
        {"qkv_bias": False},
        {"num_classes": 0},
        {"mlp_ratio": 2.5},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_logits_equal_timm(overrides):
    config = {**SMALL, **overrides}
    ours, theirs = _pair_with_timm(**config)
    x = torch.randn(3, 3, *ours.img_size)
    with torch.no_grad():
        _assert_close(ours(x), theirs(x))
        _assert_close(ours.forward_features(x), theirs.forward_features(x))


def _timm_copy(name: str, ours, **overrides):
    """timm's model of the same config carrying our weights (built on the meta device and
    filled by load_state_dict, which skips timm's slow random init of large models)."""
    with torch.device("meta"):
        theirs = timm.create_model(name, pretrained=False, **overrides)
    theirs = theirs.to_empty(device="cpu")
    theirs.load_state_dict(ours.state_dict())
    return theirs.eval()


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224"])
def test_named_config_widths_equal_timm(name):
    """The Ti/S/B widths and head counts, with 1 block at 64 x 64 to stay fast."""
    torch.manual_seed(0)
    ours = create_model(name, depth=1, img_size=64).eval()
    theirs = _timm_copy(name, ours, depth=1, img_size=64)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _assert_close(ours(x), theirs(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224"])
def test_named_configs_equal_timm(name):
    torch.manual_seed(0)
    ours = create_model(name).eval()
    theirs = _timm_copy(name, ours)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        _assert_close(ours(x), theirs(x))


def test_gradients_equal_timm():
    ours, theirs = _pair_with_timm(**SMALL)
    x = torch.randn(2, 3, 32, 32)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    grads = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        _assert_close(param.grad, grads[name].grad, atol=1e-5)


def test_dynamic_img_size_equals_timm():
    ours, theirs = _pair_with_timm(**SMALL, dynamic_img_size=True, reg_tokens=1)
    for size in [(32, 32), (48, 24), (16, 64), (8, 8)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            _assert_close(ours(x), theirs(x))


# ---- parameter counts and key names ---------------------------------------------------------


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_vit_base_has_timms_parameter_count():
    with torch.device("meta"):  # no memory, no init work
        model = create_model("vit_base_patch16_224")
    assert _count(model) == 86_567_656


@pytest.mark.parametrize(
    "name", ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_large_patch16_224"]
)
def test_parameter_counts_and_keys_equal_timm(name):
    with torch.device("meta"):
        ours, theirs = create_model(name), timm.create_model(name, pretrained=False)
    assert _count(ours) == _count(theirs)
    own = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert own == ref


def test_list_models_and_overrides():
    assert {"vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
            "vit_large_patch16_224", "vit_digits"} <= set(list_models())
    model = create_model("vit_digits", num_classes=3)
    assert model.head.out_features == 3
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_register_model():
    vitcourse.register_model("_test_tiny", embed_dim=32, depth=1, num_heads=2, img_size=16, patch_size=4)
    assert create_model("_test_tiny").embed_dim == 32


def test_every_named_configuration_is_registered_by_the_registry_alone():
    import subprocess
    import sys

    # A fresh interpreter: importing the model modules registers nothing; the registry has all.
    code = ("import vitcourse.models.vit, vitcourse.models.deit, vitcourse.models.convnet, sys; "
            "assert 'vitcourse.models.registry' not in sys.modules; "
            "from vitcourse.models.registry import list_models; print(' '.join(list_models()))")
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert names == sorted([
        "cnn_digits", "deit_base_distilled_patch16_224", "deit_digits_distilled", "deit_small_distilled_patch16_224",
        "deit_tiny_distilled_patch16_224", "vit_base_patch16_224", "vit_digits", "vit_large_patch16_224",
        "vit_small_patch16_224", "vit_tiny_patch16_224",
        # the pretrained families (tests/test_families.py)
        "vit_huge_patch14_224", "vit_base_patch32_224", "vit_base_patch16_384",
        "deit3_small_patch16_224", "deit3_base_patch16_224", "deit3_large_patch16_224",
        "vit_small_patch16_224.dino", "vit_small_patch8_224.dino", "vit_base_patch16_224.dino",
        "vit_base_patch16_224.mae", "vit_large_patch16_224.mae",
        "vit_small_patch14_dinov2", "vit_base_patch14_dinov2", "vit_large_patch14_dinov2",
        "vit_small_patch14_reg4_dinov2", "vit_base_patch14_reg4_dinov2", "vit_large_patch14_reg4_dinov2",
        "vit_base_patch32_clip_224", "vit_base_patch16_clip_224", "vit_large_patch14_clip_224",
        "vit_base_patch32_clip_quickgelu_224", "vit_base_patch16_clip_quickgelu_224",
        "vit_large_patch14_clip_quickgelu_224",
    ])


def test_vit_digits_is_the_configuration_the_recipe_trains():
    from vitcourse.training.recipes import DIGITS_RECIPE

    model = create_model(DIGITS_RECIPE["model"], **DIGITS_RECIPE["model_overrides"])
    assert DIGITS_RECIPE["model_overrides"] == {} and model.config == create_model("vit_digits").config
    assert model.patch_size == (4, 4) and model.grid_size == (2, 2)


def test_config_dataclass_builds_the_model_and_follows_it():
    from dataclasses import FrozenInstanceError, replace

    from vitcourse.models.vit import ViTConfig

    config = ViTConfig(img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=32, depth=2, num_heads=4)
    assert config.img_size == (16, 16) and config.patch_size == (4, 4)  # kept as pairs
    with pytest.raises(FrozenInstanceError):
        config.depth = 3
    model = VisionTransformer(config, num_classes=5)  # keywords replace the config's values
    assert model.config == replace(config, num_classes=5) and model.head.out_features == 5
    assert VisionTransformer(**vars(config)).config == config
    model.set_image_size(24)
    model.set_grad_checkpointing(True)
    assert model.config.img_size == (24, 24) and model.config.grad_checkpointing
    rebuilt = VisionTransformer(model.config)
    rebuilt.load_state_dict(model.state_dict())  # the config says everything the weights need
    with pytest.raises(TypeError, match="config must be a ViTConfig .*got int 224"):
        VisionTransformer(224)
    with pytest.raises(ValueError, match="depth must be a positive int, got 0"):
        ViTConfig(depth=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'depht'"):
        VisionTransformer(depht=2)


# ---- the explicit attention path -------------------------------------------------------------


def test_forward_attention_matches_forward_and_softmax():
    torch.manual_seed(0)
    model = VisionTransformer(**SMALL, reg_tokens=1).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, attentions = model.forward_attention(x)
        _assert_close(logits, model(x))
    assert len(attentions) == SMALL["depth"]
    tokens = 1 + 1 + 16
    for weights in attentions:
        assert weights.shape == (2, SMALL["num_heads"], tokens, tokens)
        _assert_close(weights.sum(-1), torch.ones(2, SMALL["num_heads"], tokens))


def test_attention_weights_against_float64_reference():
    torch.manual_seed(0)
    attn = Attention(dim=16, num_heads=2).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    out, weights = attn(x, return_attention=True)
    q, k, v = attn.qkv(x).split(16, dim=-1)  # rows ordered q, k, v
    heads = [slice(0, 8), slice(8, 16)]
    ref_out = []
    for h, cols in enumerate(heads):
        scores = q[..., cols] @ k[..., cols].transpose(1, 2) / 8**0.5
        ref_w = torch.softmax(scores, dim=-1)
        torch.testing.assert_close(weights[:, h], ref_w)
        ref_out.append(ref_w @ v[..., cols])
    torch.testing.assert_close(out, attn.proj(torch.cat(ref_out, dim=-1)))
    torch.testing.assert_close(attn(x), out)  # the fused path computes the same


def test_post_ln_block_formula():
    torch.manual_seed(0)
    block = Block(dim=16, num_heads=2, norm_first=False).eval()
    x = torch.randn(2, 5, 16)
    h = block.norm1(x + block.attn(x))
    expected = block.norm2(h + block.mlp(h))
    _assert_close(block(x), expected, atol=1e-6)
    model = VisionTransformer(**SMALL, norm_first=False)
    assert all(not b.norm_first for b in model.blocks)
    out, att = model.forward_attention(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 5) and len(att) == 2


def test_patch_embed_is_the_convolution():
    torch.manual_seed(0)
    embed = PatchEmbed(img_size=(16, 24), patch_size=(4, 8), in_chans=3, embed_dim=10)
    x = torch.randn(2, 3, 16, 24)
    expected = embed.proj(x).flatten(2).transpose(1, 2)  # the stride-p convolution
    _assert_close(embed(x), expected, atol=1e-5)


# ---- gradient checkpointing, image size ------------------------------------------------------


def test_grad_checkpointing_same_gradients():
    torch.manual_seed(0)
    plain = VisionTransformer(**SMALL)
    ckpt = VisionTransformer(**SMALL, grad_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    plain(x).sum().backward()
    ckpt(x).sum().backward()
    for a, b in zip(plain.parameters(), ckpt.parameters(), strict=True):
        _assert_close(a.grad, b.grad, atol=1e-6)
    ckpt.set_grad_checkpointing(False)
    assert not ckpt.grad_checkpointing


def test_set_image_size_then_forward():
    torch.manual_seed(0)
    model = VisionTransformer(**SMALL).eval()
    model.set_image_size((48, 16))
    assert model.img_size == (48, 16) and model.grid_size == (6, 2)
    assert model.pos_embed.shape == (1, 1 + 12, 64)
    assert model(torch.randn(1, 3, 48, 16)).shape == (1, 5)


# ---- errors at the boundary ------------------------------------------------------------------


def test_error_image_not_multiple_of_patch():
    model = VisionTransformer(**SMALL, dynamic_img_size=True)
    with pytest.raises(ValueError, match=r"\(30, 32\) is not a multiple of patch_size"):
        model(torch.randn(1, 3, 30, 32))


def test_error_wrong_image_size_without_dynamic():
    model = VisionTransformer(**SMALL)
    with pytest.raises(ValueError, match="differs from img_size .* set_image_size"):
        model(torch.randn(1, 3, 48, 48))


def test_error_wrong_channels():
    model = VisionTransformer(**SMALL)
    with pytest.raises(ValueError, match="1 channels, the model expects in_chans=3"):
        model(torch.randn(1, 1, 32, 32))


def test_error_wrong_rank_and_type():
    model = VisionTransformer(**SMALL)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\), got \(3, 32, 32\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[1.0]])
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_error_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"embed_dim \(100\) must be divisible by num_heads \(3\)"):
        VisionTransformer(embed_dim=100, num_heads=3)
    with pytest.raises(ValueError, match=r"dim \(10\) must be divisible by num_heads \(4\)"):
        Attention(10, 4)


def test_error_unknown_config_name():
    with pytest.raises(ValueError, match="unknown model name 'vit_huge_nope'.*vit_base_patch16_224"):
        create_model("vit_huge_nope")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"img_size": 30, "patch_size": 8}, "not a multiple of patch_size"),
        ({"patch_size": 0}, "patch_size must be a positive int"),
        ({"global_pool": "max"}, "global_pool must be 'token' or 'avg', got 'max'"),
        ({"class_token": False}, "needs class_token=True"),
        ({"depth": 0}, "depth must be a positive int, got 0"),
        ({"reg_tokens": -1}, "reg_tokens must be a non-negative int, got -1"),
        ({"num_classes": 2.5}, "num_classes must be a non-negative int, got 2.5"),
        ({"in_chans": 0}, "in_chans must be a positive int, got 0"),
        ({"mlp_ratio": 0}, "mlp_ratio must be a finite positive number, got 0"),
        ({"mlp_ratio": float("nan")}, "mlp_ratio must be a finite positive number, got nan"),
        ({"mlp_ratio": float("inf")}, "mlp_ratio must be a finite positive number, got inf"),
        ({"mlp_ratio": 0.01}, r"mlp_ratio=0.01 gives int\(64 \* 0.01\) = 0 hidden units"),
    ],
)
def test_error_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VisionTransformer(**{**SMALL, **kwargs})


def test_error_set_image_size_not_multiple():
    model = VisionTransformer(**SMALL)
    with pytest.raises(ValueError, match=r"img_size \(33, 32\) is not a multiple of patch_size"):
        model.set_image_size((33, 32))


def test_smallest_mlp_ratio_gives_one_hidden_unit():
    model = VisionTransformer(**{**SMALL, "mlp_ratio": 1 / 64})
    assert model.blocks[0].mlp.fc1.out_features == 1


@pytest.mark.parametrize("name", ["qkv_bias", "norm_first", "class_token", "no_embed_class", "grad_checkpointing",
                                  "dynamic_img_size"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_error_bool_options_must_be_bools(name, value):
    with pytest.raises(TypeError, match=f"{name} must be True or False, got {value!r}"):
        VisionTransformer(**SMALL, **{name: value})


def test_error_bool_setters_must_get_bools():
    model = VisionTransformer(**SMALL)
    with pytest.raises(TypeError, match="dynamic_img_size must be True or False"):
        model.dynamic_img_size = "yes"
    with pytest.raises(TypeError, match="enable must be True or False"):
        model.set_grad_checkpointing(0)


def test_error_set_image_size_bad_mode_even_without_resampling():
    model = VisionTransformer(**SMALL)
    before = model.pos_embed.detach().clone()
    for size in (32, 48):  # the same grid (nothing to resample) and a new one
        with pytest.raises(ValueError, match="mode must be one of .* got 'foo'"):
            model.set_image_size(size, mode="foo")
    assert model.img_size == (32, 32) and torch.equal(model.pos_embed, before)


# ---- input dtypes and sizes ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ["forward", "forward_attention"])
def test_error_input_dtype_differs_from_the_model(dtype, method):
    model = VisionTransformer(**SMALL).eval()
    x = torch.randn(1, 3, 32, 32, dtype=dtype)
    message = f"x has dtype {dtype} but the model's parameters are torch.float32.*x.float().*model.to"
    with pytest.raises(TypeError, match=message):
        getattr(model, method)(x)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_converted_model_takes_inputs_of_its_dtype(dtype, atol):
    torch.manual_seed(0)
    reference = VisionTransformer(**SMALL).eval()
    x = torch.randn(2, 3, 32, 32)
    converted = VisionTransformer(**SMALL).eval()
    converted.load_state_dict(reference.state_dict())
    converted.to(dtype)
    with torch.no_grad():
        logits = converted(x.to(dtype))
        attention_logits, _ = converted.forward_attention(x.to(dtype))
        expected = reference(x)
    assert logits.dtype == attention_logits.dtype == dtype
    _assert_close(logits.float(), expected, atol=atol)
    _assert_close(attention_logits.float(), expected, atol=atol)


def test_autocast_takes_float32_and_bfloat16_inputs_but_not_float64():
    # Under autocast the matmuls cast their operands themselves: a float32 model takes float32
    # images (and bfloat16 ones); float64 is never cast by autocast, so it is refused clearly.
    torch.manual_seed(0)
    model = VisionTransformer(**SMALL).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            for images in (x, x.bfloat16()):
                logits = model(images)
                assert logits.dtype == torch.bfloat16
                _assert_close(logits.float(), expected, atol=1e-1)
            with pytest.raises(TypeError, match="x has dtype torch.float64"):
                model(x.double())


def test_error_empty_image_but_empty_batch_works():
    model = VisionTransformer(**SMALL, dynamic_img_size=True).eval()
    for shape in ((1, 3, 0, 0), (1, 3, 0, 32), (1, 3, 32, 0)):
        with pytest.raises(ValueError, match=rf"x has an empty image: shape \({', '.join(map(str, shape))}\)"):
            model(torch.zeros(shape))
    with torch.no_grad():
        assert model(torch.zeros(0, 3, 32, 32)).shape == (0, 5)
        assert model(torch.zeros(0, 3, 16, 24)).shape == (0, 5)


# ---- the convnet baseline --------------------------------------------------------------------


def test_small_cnn_input_errors():
    from vitcourse.models.convnet import SmallCNN

    model = SmallCNN(in_chans=1, num_classes=10, width=4).eval()
    with pytest.raises(TypeError, match="x must be a floating-point tensor, got dtype torch.int64"):
        model(torch.zeros(1, 1, 8, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="x has dtype torch.float64 but the model's parameters are torch.float32"):
        model(torch.zeros(1, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor of shape \(B, 1, H, W\), got list"):
        model([[0.0]])
    with pytest.raises(ValueError, match=r"at least 2 x 2 pixels, got shape \(1, 1, 1, 8\)"):
        model(torch.zeros(1, 1, 1, 8))
    with torch.no_grad():
        assert model(torch.zeros(3, 1, 2, 2)).shape == (3, 10)
        assert model.to(torch.float64)(torch.zeros(1, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64
