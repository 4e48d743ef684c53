"""The ViT families people use (DINO, DINOv2, CLIP, MAE, DeiT III; patch 8, 14 and 32, 384 px,
ViT-H) in our model: the few mechanisms they add (layer scale, a LayerNorm before the blocks,
QuickGELU, no patch bias, another LayerNorm eps), each checked against an independent
computation, and every named configuration against timm's model of the same name: parameter
counts, keys and shapes, and outputs on random weights at the native size and at another one."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from vitcourse import VisionTransformer, create_model, list_models
from vitcourse.models.registry import BASE
from vitcourse.models.vit import LayerScale, QuickGELU, ViTConfig

timm = pytest.importorskip("timm")

COURSE_ONLY = {"vit_digits", "deit_digits_distilled", "cnn_digits"}  # no timm counterpart
TIMM_NAMES = [name for name in list_models() if name not in COURSE_ONLY]
# The configurations the issue asked for; the others are their smaller or larger siblings.
NAMED = [
    "vit_base_patch32_224", "vit_base_patch16_384", "vit_huge_patch14_224", "vit_small_patch16_224.dino",
    "vit_small_patch14_dinov2", "vit_base_patch14_dinov2", "vit_small_patch14_reg4_dinov2",
    "vit_base_patch14_reg4_dinov2", "vit_base_patch16_clip_224", "vit_base_patch16_clip_quickgelu_224",
    "deit3_small_patch16_224", "deit3_base_patch16_224", "vit_base_patch16_224.mae",
]
# One block of these still takes seconds on a CPU (wide, or 1370 tokens at 518 px).
SLOW = {name for name in TIMM_NAMES if any(part in name for part in ("large", "huge", "384", "base_patch14_"))}


def _max_diff(a, b) -> float:
    return (a - b).abs().max().item()


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- the mechanisms, against independent computations ----------------------------------------


def test_quick_gelu_is_clips_activation_and_not_gelu():
    """x * sigmoid(1.702 x), as a float64 formula and as transformers' "quick_gelu"; it differs
    from the exact GELU by about 0.02 at most, enough that a checkpoint needs its own."""
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    assert _max_diff(QuickGELU()(x), x / (1 + torch.exp(-1.702 * x))) <= 1e-15
    gap = _max_diff(QuickGELU()(x), nn.functional.gelu(x))
    assert 0.01 < gap < 0.03
    transformers = pytest.importorskip("transformers")
    from transformers.activations import ACT2FN

    assert _max_diff(QuickGELU()(x.float()), ACT2FN["quick_gelu"](x.float())) <= 1e-7
    assert transformers.CLIPVisionConfig().hidden_act == "quick_gelu"  # what CLIP's configs say


def test_layer_scale_scales_each_branch():
    """With init_values, a block computes h = x + g1 * attn(LN1(x)), h + g2 * mlp(LN2(h)):
    written out by hand in float64 with gammas that are not all equal."""
    model = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=0,
                              init_values=0.3)
    block = model.blocks[0]
    assert isinstance(block.ls1, LayerScale) and torch.equal(block.ls1.gamma, torch.full((16,), 0.3))
    block = block.double()
    torch.manual_seed(0)
    with torch.no_grad():
        block.ls1.gamma.uniform_(-1, 1)
        block.ls2.gamma.uniform_(-1, 1)
        x = torch.randn(2, 5, 16, dtype=torch.float64)
        h = x + block.ls1.gamma * block.attn(block.norm1(x))
        mlp = block.mlp.fc2(nn.functional.gelu(block.mlp.fc1(block.norm2(h))))
        assert _max_diff(block(x), h + block.ls2.gamma * mlp) <= 1e-12
    model.reset_parameters()  # re-initialising restores the starting factor
    assert torch.equal(model.blocks[0].ls2.gamma, torch.full((16,), 0.3, dtype=torch.float64))


def test_pre_norm_normalises_the_tokens_before_the_blocks():
    """pre_norm: the first block sees LN(tokens + positions), with the configured eps; the patch
    projection has no bias (no key for it, one parameter vector fewer)."""
    torch.manual_seed(0)
    model = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=0,
                              pre_norm=True, norm_eps=1e-5)
    assert model.patch_embed.proj.bias is None and "patch_embed.proj.bias" not in model.state_dict()
    assert {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)} == {1e-5}
    with torch.no_grad():
        model.norm_pre.weight.uniform_(0.5, 1.5)
        model.norm_pre.bias.uniform_(-1, 1)
    seen = {}
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    x = torch.randn(2, 3, 8, 8)
    model(x)
    patches = x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).reshape(2, 4, 48)
    tokens = torch.cat([model.cls_token.expand(2, -1, -1), patches @ model.patch_embed.proj.weight.flatten(1).T], 1)
    expected = nn.functional.layer_norm(tokens + model.pos_embed, (16,), model.norm_pre.weight, model.norm_pre.bias, 1e-5)
    assert _max_diff(seen["x"], expected) <= 1e-5


@pytest.mark.parametrize("patch", [8, 14, 32])
def test_patch_sizes_at_any_image_size(patch):
    """Patch 8, 14 and 32 on a non-square image: the tokens are the convolution's, row-major;
    and with dynamic_img_size the same model takes another size whose sides are multiples."""
    model = VisionTransformer(img_size=(2 * patch, 3 * patch), patch_size=patch, embed_dim=16, depth=1, num_heads=2,
                              dynamic_img_size=True)
    x = torch.randn(1, 3, 2 * patch, 3 * patch)
    assert _max_diff(model.patch_embed(x), model.patch_embed.proj(x).flatten(2).transpose(1, 2)) <= 1e-5
    assert model(torch.randn(1, 3, 4 * patch, patch)).shape == (1, 1000)


@pytest.mark.parametrize(("options", "error", "message"), [
    (dict(init_values=0), ValueError, "init_values must be a finite positive number, got 0"),
    (dict(init_values=float("nan")), ValueError, "init_values must be a finite positive number"),
    (dict(init_values="1e-5"), TypeError, "init_values must be a finite positive number"),
    (dict(act_layer="relu"), ValueError, r"act_layer must be one of \['gelu', 'quick_gelu'\], got 'relu'"),
    (dict(norm_eps=-1.0), ValueError, "norm_eps must be a finite positive number, got -1.0"),
    (dict(pre_norm="yes"), TypeError, "pre_norm must be True or False"),
])
def test_bad_family_options_are_named(options, error, message):
    with pytest.raises(error, match=message):
        ViTConfig(**options)
    with pytest.raises(error, match=message):
        VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, **options)


def test_config_keeps_the_family_options():
    config = ViTConfig(init_values=1, pre_norm=True, act_layer="quick_gelu", norm_eps=1e-5)
    assert config.init_values == 1.0 and isinstance(config.init_values, float)
    model = VisionTransformer(config, depth=1)
    assert model.config == ViTConfig.of(config, depth=1)
    assert isinstance(model.blocks[0].mlp.act, QuickGELU)


# ---- every named configuration is timm's -----------------------------------------------------


def test_the_issues_configurations_are_registered():
    assert set(NAMED) <= set(TIMM_NAMES)


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_parameter_counts_and_keys_equal_timms(name):
    """timm.create_model(name) and ours: the same parameter count and the same keys and shapes
    (on the meta device: no memory, no time)."""
    with torch.device("meta"):
        theirs = timm.create_model(name, pretrained=False)
        ours = create_model(name)
    assert _n_params(ours) == _n_params(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


def test_parameter_counts_of_the_named_configurations():
    """timm's counts, written out, so that a change on either side shows."""
    expected = {
        "vit_base_patch32_224": 88_224_232, "vit_base_patch16_384": 86_859_496, "vit_huge_patch14_224": 630_764_800,
        "vit_small_patch16_224.dino": 21_665_664, "vit_small_patch14_dinov2": 22_056_192,
        "vit_base_patch14_dinov2": 86_579_712, "vit_small_patch14_reg4_dinov2": 22_057_344,
        "vit_base_patch14_reg4_dinov2": 86_582_016, "vit_base_patch16_clip_224": 86_568_424,
        "vit_base_patch16_clip_quickgelu_224": 86_193_152, "deit3_small_patch16_224": 22_059_496,
        "deit3_base_patch16_224": 86_585_320, "vit_base_patch16_224.mae": 85_798_656,
    }
    with torch.device("meta"):
        assert {name: _n_params(create_model(name)) for name in expected} == expected
        assert _n_params(VisionTransformer(BASE)) == 86_567_656


def _randomise(model, seed=0):
    """Perturb every weight so that mix-ups show: layer-scale factors of order 1 (timm starts them
    at 1e-5, which would hide the blocks), and the head scaled so that the outputs are of order
    1, where 1e-5 is float32 rounding and not luck."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("gamma"):
                param.uniform_(0.5, 1.5)
            elif name.startswith("head"):
                param.mul_(0.5)
            else:
                param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def _other_size(model) -> int:
    """Another image size, on another grid: 224 for DINOv2's 518, about half the grid otherwise."""
    side, patch = model.img_size[0], model.patch_size[0]
    return 224 if side == 518 else (side // patch // 2 + 1) * patch


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in TIMM_NAMES])
def test_outputs_equal_timms(name):
    """One block of each configuration (depth=1: the blocks are all alike), timm's state dict
    loaded as is: the logits (the features, for models without a head) agree within 1e-5 at
    the native size, and at another size both when the position embeddings are resampled once
    at loading and when dynamic_img_size resamples them on the fly."""
    theirs = _randomise(timm.create_model(name, pretrained=False, depth=1, dynamic_img_size=True))
    ours = create_model(name, depth=1)
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    side, other = ours.img_size[0], _other_size(ours)
    resized = create_model(name, depth=1, img_size=other).eval()
    from vitcourse.models.pretrained import load_timm_state_dict

    load_timm_state_dict(resized, theirs.state_dict())
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    y = torch.randn(1, 3, other, other, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected_x, expected_y = theirs(x), theirs(y)
        assert expected_x.abs().max() > 0.1 and expected_y.abs().max() > 0.1  # not a vacuous comparison
        assert _max_diff(ours(x), expected_x) <= 1e-5
        assert _max_diff(resized(y), expected_y) <= 1e-5
        ours.dynamic_img_size = True
        assert _max_diff(ours(y), expected_y) <= 1e-5
