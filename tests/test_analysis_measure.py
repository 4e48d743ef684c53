"""Measurement helpers of vitcourse.analysis, checked against closed forms."""

import math

import pytest
import torch

from vitcourse import create_model
from vitcourse.analysis.attention import (
    attention_rollout,
    residual_stream_rms,
    ring_attention,
    token_spread,
)
from vitcourse.analysis.memory import SavedTensorMeter


def test_meter_counts_the_saved_output_of_exp():
    # exp saves its output for backward: exactly one float32 tensor of x's size.
    x = torch.randn(7, 11, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.exp().sum()
    y.backward()
    assert meter.total_bytes == 7 * 11 * 4
    assert meter.num_storages == 1


def test_meter_counts_both_matmul_operands_and_excludes_parameters():
    a = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(3, 4, requires_grad=True)
    with SavedTensorMeter() as meter:
        (a @ w).sum()
    assert meter.total_bytes == (5 * 3 + 3 * 4) * 4
    with SavedTensorMeter(exclude=[w]) as meter:
        (a @ w).sum()
    assert meter.total_bytes == 5 * 3 * 4


def test_meter_counts_a_shared_storage_once():
    # q and k are views of one tensor: the storage is counted once, in full.
    qk = torch.randn(2, 6, 8, requires_grad=True) * 1.0
    q, k = qk.chunk(2, dim=-1)
    with SavedTensorMeter() as meter:
        (q @ k.transpose(-2, -1)).sum()
    assert meter.total_bytes == 2 * 6 * 8 * 4
    assert meter.num_storages == 1


def test_meter_sees_the_attention_maps_of_the_explicit_path():
    # The explicit softmax keeps B*H*N*N weights that the fused kernel does not: the
    # difference is the maps minus the fused kernel's log-sum-exp (B*H*N per layer).
    from vitcourse.models.attention import Attention

    torch.manual_seed(0)
    attention = Attention(32, 4)
    x = torch.randn(3, 10, 32)
    with SavedTensorMeter(exclude=list(attention.parameters())) as fused:
        attention(x).sum()
    with SavedTensorMeter(exclude=list(attention.parameters())) as explicit:
        attention(x, return_attention=True)[0].sum()
    assert explicit.total_bytes - fused.total_bytes == 4 * 3 * 4 * (10 * 10 - 10)


def test_ring_attention_is_stochastic_circulant_with_bessel_spectrum():
    import numpy as np
    from scipy.special import iv

    from vitcourse.analysis.attention import ring_attention

    n, kappa = 48, 10.0
    a = ring_attention(n, kappa)
    assert a.shape == (n, n) and a.dtype == torch.float64
    assert torch.allclose(a.sum(dim=1), torch.ones(n, dtype=torch.float64))
    # circulant: row i is row 0 rolled by i
    assert torch.allclose(a[5], torch.roll(a[0], 5))
    spectrum = np.fft.fft(a[0].numpy()).real[: n // 2 + 1]
    bessel = iv(np.arange(n // 2 + 1), kappa) / iv(0, kappa)
    assert np.abs(spectrum - bessel).max() < 1e-8


def test_token_spread_zero_for_equal_tokens_and_one_for_zero_mean():
    from vitcourse.analysis.attention import token_spread

    equal = torch.randn(2, 1, 8).expand(2, 5, 8)
    assert token_spread(equal).abs().max() < 1e-6
    x = torch.randn(3, 6, 4)
    centred = x - x.mean(dim=1, keepdim=True)
    assert torch.allclose(token_spread(centred), torch.ones(3), atol=1e-6)


def test_residual_stream_rms_matches_a_manual_loop():
    from vitcourse.analysis.attention import residual_stream_rms

    blocks = [lambda t: 2 * t, lambda t: t + 1]
    x = torch.randn(2, 3, 4)
    expected = [x, 2 * x, 2 * x + 1]
    got = residual_stream_rms(blocks, x)
    assert torch.allclose(got, torch.stack([e.pow(2).mean().sqrt() for e in expected]))


def test_measurement_helpers_reject_bad_input():
    import pytest

    from vitcourse.analysis.attention import residual_stream_rms, ring_attention, token_spread

    with pytest.raises(ValueError, match="num_tokens"):
        ring_attention(0, 1.0)
    with pytest.raises(ValueError, match="sharpness"):
        ring_attention(8, -1.0)
    with pytest.raises(ValueError, match="x must be"):
        token_spread(torch.randn(3, 4))
    with pytest.raises(ValueError, match="x must be"):
        residual_stream_rms([], torch.randn(3, 4))


def test_input_gradient_map_support_is_the_conv_receptive_field():
    # L stacked 3x3 convolutions: one output depends on exactly a (2L + 1)^2 window.
    import torch.nn as nn

    from vitcourse.analysis.attention import input_gradient_map

    torch.manual_seed(0)
    for layers in (1, 3):
        convs = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(layers)])
        grad = input_gradient_map(convs, torch.randn(1, 1, 15, 15), (0, 0, 7, 7))
        assert grad.shape == (15, 15)
        support = (grad > 0).nonzero()
        assert support.min(dim=0).values.tolist() == [7 - layers, 7 - layers]
        assert support.max(dim=0).values.tolist() == [7 + layers, 7 + layers]


def test_input_gradient_map_rejects_a_batch():
    import pytest

    from vitcourse.analysis.attention import input_gradient_map

    with pytest.raises(ValueError, match="one image"):
        input_gradient_map(lambda t: t, torch.randn(2, 1, 4, 4), (0,))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="sharpness must be a finite positive number"):
        ring_attention(8, math.inf)
    with pytest.raises(ValueError, match="sharpness"):
        ring_attention(8, math.nan)
    layer = torch.full((1, 2, 3, 3), 1 / 3)
    with pytest.raises(TypeError, match=r"attentions\[0\] is torch.int64"):
        attention_rollout([layer.long()])
    with pytest.raises(TypeError, match=r"attentions\[1\] is torch.float64"):
        attention_rollout([layer, layer.double()])
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        token_spread(torch.ones(1, 4, 8, dtype=torch.long))
    model = create_model("vit_digits")
    with pytest.raises(TypeError, match="blocks must be a sequence of blocks"):
        residual_stream_rms(model, torch.zeros(1, 17, 64))
    with pytest.raises(TypeError, match="exclude must be a tensor or an iterable of tensors"):
        SavedTensorMeter(exclude=5)


def test_token_spread_of_identical_tokens_is_zero_even_when_they_are_zero():
    x = torch.zeros(2, 4, 8)
    x[1] = torch.randn(8)  # every token of item 1 carries the same non-zero vector
    assert torch.equal(token_spread(x), torch.zeros(2))
