"""Measurement helpers of vitcourse.analysis, checked against closed forms."""

import torch

from vitcourse.analysis import SavedTensorMeter


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
    from vitcourse.model import Attention

    torch.manual_seed(0)
    attention = Attention(32, 4)
    x = torch.randn(3, 10, 32)
    with SavedTensorMeter(exclude=list(attention.parameters())) as fused:
        attention(x).sum()
    with SavedTensorMeter(exclude=list(attention.parameters())) as explicit:
        attention(x, return_attention=True)[0].sum()
    assert explicit.total_bytes - fused.total_bytes == 4 * 3 * 4 * (10 * 10 - 10)
