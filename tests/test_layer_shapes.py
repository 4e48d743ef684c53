"""layer_shapes (forward hooks) against shapes worked out by hand, and the architecture figure drawn from them."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from vitcourse import SmallCNN, VisionTransformer, create_model
from vitcourse.analysis.figures import plot_vit_architecture
from vitcourse.analysis.shapes import layer_shapes
from vitcourse.models.vit import ViTConfig


def test_vit_shapes_match_the_config():
    # 12 x 8 images in 4 x 4 patches: a 3 x 2 grid, N = 6 tokens, 7 with the class token.
    config = ViTConfig(img_size=(12, 8), patch_size=4, in_chans=2, num_classes=5, embed_dim=24, depth=3,
                       num_heads=4, mlp_ratio=3.0)
    shapes = layer_shapes(VisionTransformer(config).eval(), torch.zeros(2, 2, 12, 8))
    B, N, D = 2, 6, 24
    assert shapes["patch_embed"] == ((B, 2, 12, 8), (B, N, D))
    assert shapes["blocks.0"] == ((B, 1 + N, D), (B, 1 + N, D))
    assert shapes["blocks.2.attn.qkv"] == ((B, 1 + N, D), (B, 1 + N, 3 * D))
    assert shapes["blocks.1.mlp.fc1"] == ((B, 1 + N, D), (B, 1 + N, 3 * D))
    assert shapes["norm"] == ((B, 1 + N, D), (B, 1 + N, D))
    assert shapes["head"] == ((B, D), (B, 5))
    assert list(shapes)[-1] == "" and shapes[""] == ((B, 2, 12, 8), (B, 5))
    # Every block ran, in order, and each submodule's forward finished before its parent's.
    names = list(shapes)
    assert [n for n in names if n.count(".") == 1 and n.startswith("blocks.")] == ["blocks.0", "blocks.1", "blocks.2"]
    assert names.index("blocks.0.attn.qkv") < names.index("blocks.0.attn") < names.index("blocks.0")


def test_meta_device_gives_vit_b16_without_storage():
    with torch.device("meta"):
        model = create_model("vit_base_patch16_224")
    shapes = layer_shapes(model, torch.zeros(1, 3, 224, 224, device="meta"))
    assert shapes["blocks.11"][1] == (1, 197, 768)
    assert shapes["blocks.0.mlp.fc1"][1] == (1, 197, 3072)
    assert shapes["head"] == ((1, 768), (1, 1000))


def test_a_convnet_and_hooks_removed():
    model = SmallCNN(in_chans=1, num_classes=10, width=8).eval()
    shapes = layer_shapes(model, torch.zeros(3, 1, 8, 8))
    assert shapes["features.0.0"] == ((3, 1, 8, 8), (3, 8, 8, 8))       # 3 x 3 conv, padding 1
    assert shapes["features.2"] == ((3, 16, 8, 8), (3, 16, 4, 4))       # the 2 x 2 max-pool
    assert shapes["head"] == ((3, 32), (3, 10))
    assert all(not m._forward_hooks for m in model.modules())           # nothing left behind


def test_bad_arguments():
    with pytest.raises(TypeError, match="model"):
        layer_shapes(lambda x: x, torch.zeros(1))
    with pytest.raises(TypeError, match="x"):
        layer_shapes(SmallCNN(), [[0.0]])


def _texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_figure_shows_the_config_and_the_measured_shapes():
    model = create_model("vit_digits", depth=2).eval()
    fig = plot_vit_architecture(model.config, layer_shapes(model, torch.zeros(1, 1, 8, 8)))
    text = _texts(fig)
    for expected in ("4 patches of 4 × 4", "Linear(16 → 64)", "block × 2", "4 heads of 16", "Linear(64 → 128)",
                     "(B, 4, 64)", "(B, 5, 64)", "hidden (B, 5, 128)", "(B, 64)", "Linear(64 → 10)", "(B, 10)",
                     "class token"):
        assert expected in text, expected
    plt.close(fig)


def test_figure_of_vit_b16_and_of_average_pooling():
    with torch.device("meta"):
        model = create_model("vit_base_patch16_224")
    fig = plot_vit_architecture(model.config, layer_shapes(model, torch.zeros(1, 3, 224, 224, device="meta")))
    assert "block × 12" in _texts(fig) and "(B, 197, 768)" in _texts(fig) and "196 patches of 16 × 16" in _texts(fig)
    plt.close(fig)
    config = ViTConfig.of(create_model("vit_digits").config, class_token=False, global_pool="avg")
    model = VisionTransformer(config).eval()
    fig = plot_vit_architecture(config, layer_shapes(model, torch.zeros(1, 1, 8, 8)))
    text = _texts(fig)
    assert "mean of the patch tokens" in text and "class token" not in text and "(B, 4, 64)" in text
    plt.close(fig)


def test_figure_refuses_what_it_cannot_draw():
    model = create_model("vit_digits").eval()
    shapes = layer_shapes(model, torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="Pre-LN"):
        plot_vit_architecture(ViTConfig.of(model.config, norm_first=False), shapes)
    with pytest.raises(ValueError, match="blocks.0.mlp.fc1"):
        plot_vit_architecture(model.config, {k: v for k, v in shapes.items() if k != "blocks.0.mlp.fc1"})
