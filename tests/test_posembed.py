"""vitcourse.models.posembed against timm, Hugging Face transformers, scipy and the sin-cos formula."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from vitcourse import VisionTransformer
from vitcourse.models.posembed import resample_pos_embed, sincos_pos_embed_2d

GRIDS = [
    ((4, 4), (7, 7)),  # square up
    ((7, 7), (4, 4)),  # square down (antialias matters)
    ((3, 5), (6, 4)),  # rectangular, up and down
    ((6, 4), (2, 3)),  # rectangular down
    ((2, 8), (4, 4)),  # same number of cells: must still resample
]


def _random_pos_embed(grid, prefix, dim=12, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, prefix + grid[0] * grid[1], dim, generator=generator).to(dtype)


# ---- timm ------------------------------------------------------------------------------------


@pytest.mark.parametrize("old, new", GRIDS)
@pytest.mark.parametrize("prefix", [0, 1, 2])
@pytest.mark.parametrize("mode, antialias", [("bicubic", True), ("bicubic", False), ("bilinear", True), ("nearest", False)])
def test_equals_timm(old, new, prefix, mode, antialias):
    timm_pos_embed = pytest.importorskip("timm.layers.pos_embed")
    pos_embed = _random_pos_embed(old, prefix)
    ours = resample_pos_embed(pos_embed, new, old, num_prefix_tokens=prefix, mode=mode, antialias=antialias)
    theirs = timm_pos_embed.resample_abs_pos_embed(
        pos_embed, list(new), list(old), num_prefix_tokens=prefix, interpolation=mode, antialias=antialias
    )
    assert ours.shape == (1, prefix + new[0] * new[1], 12)
    assert (ours - theirs).abs().max().item() <= 1e-6
    torch.testing.assert_close(ours[:, :prefix], pos_embed[:, :prefix], rtol=0, atol=0)  # prefix untouched


def test_equals_timm_inferring_square_grid():
    timm_pos_embed = pytest.importorskip("timm.layers.pos_embed")
    pos_embed = _random_pos_embed((5, 5), 1)
    ours = resample_pos_embed(pos_embed, (8, 8))  # old_grid=None, one class token
    theirs = timm_pos_embed.resample_abs_pos_embed(pos_embed, [8, 8])
    assert (ours - theirs).abs().max().item() <= 1e-6


def test_same_cell_count_really_resamples():
    """2 x 8 -> 4 x 4 has 16 cells either way; returning the input would be a silent bug."""
    pos_embed = _random_pos_embed((2, 8), 1)
    out = resample_pos_embed(pos_embed, (4, 4), (2, 8))
    assert out.shape == pos_embed.shape
    assert not torch.allclose(out, pos_embed)
    # A grid that is constant along each row must stay constant along each row.
    rows = torch.arange(2.0).repeat_interleave(8).reshape(1, 16, 1).expand(1, 16, 3)
    out = resample_pos_embed(rows, (4, 4), (2, 8), num_prefix_tokens=0).reshape(4, 4, 3)
    assert torch.allclose(out, out[:, :1].expand(4, 4, 3), atol=1e-6)


def test_half_precision_in_and_out():
    timm_pos_embed = pytest.importorskip("timm.layers.pos_embed")
    pos_embed = _random_pos_embed((4, 4), 1, dtype=torch.bfloat16)
    ours = resample_pos_embed(pos_embed, (6, 6))
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours, timm_pos_embed.resample_abs_pos_embed(pos_embed, [6, 6]), rtol=0, atol=0)


def test_same_grid_returns_input():
    pos_embed = _random_pos_embed((3, 5), 1)
    assert resample_pos_embed(pos_embed, (3, 5), (3, 5)) is pos_embed


# ---- Hugging Face transformers and the original JAX code -------------------------------------


@pytest.mark.parametrize("old_side, new_size", [(4, (7, 7)), (6, (3, 3)), (4, (2, 6)), (5, (5, 3))])
def test_antialias_false_equals_hugging_face(old_side, new_size):
    """Current transformers' ViT interpolate_pos_encoding = bicubic without antialiasing."""
    pytest.importorskip("transformers")
    from transformers import ViTConfig
    from transformers.models.vit.modeling_vit import ViTEmbeddings

    patch, dim = 4, 12
    config = ViTConfig(hidden_size=dim, image_size=old_side * patch, patch_size=patch, num_channels=3)
    embeddings = ViTEmbeddings(config)
    pos_embed = _random_pos_embed((old_side, old_side), 1, dim=dim)
    with torch.no_grad():
        embeddings.position_embeddings.copy_(pos_embed)
        tokens = torch.zeros(1, 1 + new_size[0] * new_size[1], dim)
        theirs = embeddings.interpolate_pos_encoding(tokens, new_size[0] * patch, new_size[1] * patch)
    ours = resample_pos_embed(pos_embed, new_size, antialias=False)
    assert (ours - theirs).abs().max().item() <= 1e-6
    if new_size[0] < old_side:  # when shrinking, timm's antialiased default differs from HF
        assert not torch.allclose(resample_pos_embed(pos_embed, new_size), theirs, atol=1e-4)


@pytest.mark.parametrize("old, new", [(4, 7), (7, 4), (3, 12)])
def test_bilinear_align_corners_equals_original_jax_zoom(old, new):
    """The original JAX code resized with scipy.ndimage.zoom(grid, factor, order=1)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    pos_embed = _random_pos_embed((old, old), 1, dim=5).double()
    grid = pos_embed[0, 1:].reshape(old, old, 5).numpy()
    zoomed = ndimage.zoom(grid, (new / old, new / old, 1), order=1)
    ours = resample_pos_embed(pos_embed, (new, new), mode="bilinear", align_corners=True, antialias=False)
    np.testing.assert_allclose(ours[0, 1:].reshape(new, new, 5).numpy(), zoomed, atol=1e-6)


# ---- sin-cos tables --------------------------------------------------------------------------


def _numpy_sincos(dim, rows, cols, denominator_offset):
    """The formula, written independently with numpy in float64: MAE's layout, where the
    first half of the channels encodes the column and the second half the row."""
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (np.arange(quarter) / (quarter - denominator_offset))
    col, row = np.meshgrid(np.arange(cols), np.arange(rows))  # 'xy' indexing: (rows, cols)

    def one_axis(pos):
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([one_axis(col), one_axis(row)], axis=1)


@pytest.mark.parametrize("convention, offset", [("mae", 0), ("big_vision", 1)])
@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
def test_sincos_matches_formula(convention, offset, grid):
    table = sincos_pos_embed_2d(16, grid, num_prefix_tokens=1, convention=convention)
    assert table.shape == (1, 1 + grid[0] * grid[1], 16) and table.dtype == torch.float32
    assert torch.all(table[0, 0] == 0)
    np.testing.assert_allclose(table[0, 1:].numpy(), _numpy_sincos(16, *grid, offset), atol=1e-6)


def test_sincos_errors():
    with pytest.raises(ValueError, match="multiple of 4, got 10"):
        sincos_pos_embed_2d(10, (4, 4))
    with pytest.raises(ValueError, match="convention must be 'mae' or 'big_vision', got 'jax'"):
        sincos_pos_embed_2d(16, (4, 4), convention="jax")
    with pytest.raises(ValueError, match=r"grid must be a positive int or a pair of positive ints, got \(0, 4\)"):
        sincos_pos_embed_2d(16, (0, 4))


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf")])
def test_sincos_error_temperature_not_finite_positive(temperature):
    with pytest.raises(ValueError, match=f"temperature must be a finite positive number, got {temperature!r}"):
        sincos_pos_embed_2d(8, 4, temperature=temperature)


# ---- errors ----------------------------------------------------------------------------------


def test_error_length_does_not_match_grid():
    pos_embed = _random_pos_embed((4, 4), 1)
    with pytest.raises(ValueError, match=r"17 tokens, which is not num_prefix_tokens \(1\) \+ old_grid \(3, 5\) = 16"):
        resample_pos_embed(pos_embed, (6, 6), (3, 5))


def test_error_cannot_infer_square_grid():
    pos_embed = _random_pos_embed((3, 5), 1)
    with pytest.raises(ValueError, match="cannot infer a square old_grid.*15 grid tokens; pass old_grid"):
        resample_pos_embed(pos_embed, (6, 6))


@pytest.mark.parametrize("new_grid, error, message", [
    # the one rule (vitcourse.validation): a number that is not a positive int, or three sizes
    # for a pair, is a wrong value; something that is not a number is the wrong type
    ((14.0, 14), ValueError, r"new_grid must be a positive int or a pair of positive ints, got \(14.0, 14\)"),
    ((0, 4), ValueError, r"new_grid must be a positive int or a pair of positive ints, got \(0, 4\)"),
    ((4, 4, 4), ValueError, r"new_grid must be a positive int or a pair of positive ints, got \(4, 4, 4\)"),
    (("4", 4), TypeError, r"new_grid must be a positive int or a pair of positive ints, got \('4', 4\)"),
    ("4x4", TypeError, "new_grid must be a positive int or a pair of positive ints, got str '4x4'"),
])
def test_error_bad_grid(new_grid, error, message):
    with pytest.raises(error, match=message):
        resample_pos_embed(_random_pos_embed((4, 4), 1), new_grid)


def test_error_unknown_mode_and_bad_tensor():
    pos_embed = _random_pos_embed((4, 4), 1)
    with pytest.raises(ValueError, match="mode must be one of .* got 'cubic'"):
        resample_pos_embed(pos_embed, 6, mode="cubic")
    with pytest.raises(ValueError, match=r"shape \(1, prefix \+ rows\*cols, D\), got \(17, 12\)"):
        resample_pos_embed(pos_embed[0], 6)
    with pytest.raises(ValueError, match="num_prefix_tokens must be a non-negative int, got -1"):
        resample_pos_embed(pos_embed, 6, num_prefix_tokens=-1)


def test_error_more_prefix_tokens_than_the_table_has():
    pos_embed = _random_pos_embed((4, 4), 1)
    with pytest.raises(ValueError, match=r"num_prefix_tokens \(20\) exceeds the 17 tokens of pos_embed \(1, 17, 12\)"):
        resample_pos_embed(pos_embed, 8, num_prefix_tokens=20)
    with pytest.raises(ValueError, match="leaving 0 grid tokens"):  # all prefix: nothing to resample
        resample_pos_embed(pos_embed, 8, num_prefix_tokens=17)


# ---- a model used at another size ------------------------------------------------------------


def _trained_model(**extra):
    """A small model after a few SGD steps at 32 x 32 (so the position embeddings are not
    their initial values)."""
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3, **extra)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 3, (8,))
    for _ in range(2):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()


@pytest.mark.parametrize("extra", [{}, {"reg_tokens": 2}, {"reg_tokens": 1, "no_embed_class": True}])
@pytest.mark.parametrize("size", [(48, 24), (16, 16)])
def test_set_image_size_equals_dynamic_img_size(extra, size, caplog):
    trained = _trained_model(**extra)
    fixed, dynamic = copy.deepcopy(trained), copy.deepcopy(trained)
    with caplog.at_level(logging.INFO, logger="vitcourse.models.vit"):
        fixed.set_image_size(size)
    assert "(32, 32) -> " + str(size) in caplog.text  # logs old -> new
    dynamic.dynamic_img_size = True
    x = torch.randn(4, 3, *size)
    with torch.no_grad():
        a, b = fixed(x), dynamic(x)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # and the model at its own size is untouched by switching dynamic_img_size on
    with torch.no_grad():
        torch.testing.assert_close(dynamic(torch.ones(1, 3, 32, 32)), trained(torch.ones(1, 3, 32, 32)))


def test_set_image_size_equals_timm_dynamic():
    timm = pytest.importorskip("timm")
    trained = _trained_model()
    reference = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2,
        num_heads=2, num_classes=3, dynamic_img_size=True,
    ).eval()
    reference.load_state_dict(trained.state_dict())
    trained.set_image_size((24, 40))
    x = torch.randn(2, 3, 24, 40)
    with torch.no_grad():
        assert (trained(x) - reference(x)).abs().max().item() <= 1e-5


def test_set_image_size_round_trip_keeps_grad_flag():
    model = _trained_model()
    model.pos_embed.requires_grad_(False)
    model.set_image_size(64)
    assert model.pos_embed.shape == (1, 1 + 64, 32) and not model.pos_embed.requires_grad


@pytest.mark.parametrize("new", [(8, 10), (7, 9), (2, 3)])  # enlarging, odd factors, shrinking
def test_antialiased_bicubic_equals_pil_resize(new):
    # PIL's bicubic resize (a = -0.5, support widened when shrinking) on a one-channel float image
    from PIL import Image

    grid = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    pos_embed = torch.from_numpy(grid).reshape(1, 20, 1)
    ours = resample_pos_embed(pos_embed, new, old_grid=(4, 5), num_prefix_tokens=0, antialias=True)
    pil = np.asarray(Image.fromarray(grid, mode="F").resize((new[1], new[0]), Image.BICUBIC))
    np.testing.assert_allclose(ours.reshape(new).numpy(), pil, atol=2e-6)


def test_antialias_changes_bicubic_even_when_enlarging_but_not_bilinear():
    pos_embed = torch.randn(1, 1 + 16, 8, generator=torch.Generator().manual_seed(0))

    def grow(mode, antialias):
        return resample_pos_embed(pos_embed, (7, 7), mode=mode, antialias=antialias)

    assert torch.allclose(grow("bilinear", True), grow("bilinear", False), atol=1e-6)
    assert (grow("bicubic", True) - grow("bicubic", False)).abs().max() > 1e-2
