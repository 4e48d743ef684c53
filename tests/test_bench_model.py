"""Smoke test of `vitcourse bench model` on the tiny digits config, and of its parts
(vitcourse.experiments.timing, vitcourse.analysis.memory, vitcourse.models.naive)."""

from __future__ import annotations

import re
from contextlib import nullcontext

import pytest
import torch

from vitcourse import cli, create_model
from vitcourse.analysis.memory import TensorMemoryTracker
from vitcourse.models.naive import NaiveViT, naive_twin

LAST_LINE = re.compile(
    r"^ratio_vs_timm_fwd_bwd=(\d+\.\d+|nan) ratio_vs_naive_fwd_bwd=(\d+\.\d+) config=vit_digits device=cpu$"
)


@pytest.mark.slow
def test_bench_cli_last_line(capsys):
    code = cli.main(["bench", "model", "--config", "vit_digits", "--batch", "2", "--device", "cpu",
                     "--repeats", "1", "--min-time", "0.001", "--checkpointing"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-1]
    assert any("kept for backward" in line for line in lines)
    assert any(line.startswith("floor: ") for line in lines)


@pytest.mark.slow
def test_bench_cli_bf16_autocast_path_on_the_cpu(capsys):
    """--amp takes the path CUDA takes by default (bf16 autocast, a bf16 floor and matmul rate)."""
    code = cli.main(["bench", "model", "--config", "vit_digits", "--batch", "2", "--device", "cpu", "--amp",
                     "--repeats", "1", "--min-time", "0.001", "--checkpointing"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-1]
    assert any(line.startswith("config=vit_digits batch=2 device=cpu bf16 autocast ") for line in lines), lines
    assert any(line.startswith("measured bfloat16 matmul rate") for line in lines), lines


@pytest.mark.slow
def test_bench_cli_on_a_family_config_at_another_size(capsys):
    """A DINOv2 configuration (layer scale, registers, no head) at 28 px instead of 518: timm's
    twin carries the same weights and gives the same features; the naive model declines it."""
    code = cli.main(["bench", "model", "--config", "vit_small_patch14_reg4_dinov2", "--img-size", "28", "--batch", "1",
                     "--device", "cpu", "--repeats", "1", "--min-time", "0.001", "--threads", "1"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    [check] = [line for line in lines if line.startswith("check: ")]
    assert check.startswith("check: max |logits(timm) - logits(ours)| = ") and float(check.split("= ")[1]) <= 1e-5
    assert any(line.endswith(" img_size=28x28") for line in lines), lines
    assert re.match(r"^ratio_vs_timm_fwd_bwd=\d+\.\d+ ratio_vs_naive_fwd_bwd=nan config=vit_small_patch14_reg4_dinov2 "
                    r"device=cpu$", lines[-1]), lines[-1]


def test_bench_amp_needs_cuda_or_cpu():
    with pytest.raises(ValueError, match="--amp .* needs a CUDA or CPU device, got meta"):
        cli.main(["bench", "model", "--config", "vit_digits", "--device", "meta", "--amp"])


def test_naive_reference_computes_the_same_logits():
    torch.manual_seed(0)
    ours = create_model("vit_digits").eval()
    naive = naive_twin(ours)
    assert isinstance(naive, NaiveViT)
    assert hasattr(naive.blocks[0].attn, "q") and not hasattr(naive.blocks[0].attn, "qkv")
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert (naive.eval()(x) - ours(x)).abs().max().item() <= 1e-5


def test_memory_tracker_counts_live_tensors():
    with TensorMemoryTracker() as tracker:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 4000 more
        view = b[10:]  # a view: no new storage
        del a
    assert tracker.peak == 8000
    assert tracker.live == 4000
    del b, view
    weight = torch.ones(10, 10)  # made before: its views and in-place updates are not counted
    with TensorMemoryTracker() as tracker:
        transposed = weight.t()
        weight.add_(1.0)
        flat = weight.flatten()
    assert tracker.peak == 0
    del transposed, flat


def test_bench_rejects_unknown_config():
    with pytest.raises(ValueError, match="unknown model name 'vit_nope'"):
        cli.main(["bench", "model", "--config", "vit_nope", "--device", "cpu"])


def test_flop_count_includes_the_fused_attention_products():
    """ViT-B/16 at 224 px against its closed form: patch embedding, per block the four D x D
    products (q, k, v, out), QK^T and AV (N x N x D each) and the MLP, and the head on the class
    token; 17.56 GMACs, where the published figure rounds to 17.6. The backward pass does each
    product twice more (the fused attention's backward computes QK^T once more), but for the patch
    embedding's gradient of the image, which is not needed."""
    from vitcourse.experiments.timing import count_flops

    torch.manual_seed(0)
    model = create_model("vit_base_patch16_224")  # on the CPU, whose fused attention kernel needs its own formulas
    tokens, dim, depth, hidden, classes, patches = 197, 768, 12, 3072, 1000, 196
    per_block = tokens * 4 * dim * dim + 2 * tokens * tokens * dim + 2 * tokens * dim * hidden
    patch_macs = patches * 3 * 16 * 16 * dim
    macs = patch_macs + depth * per_block + dim * classes
    assert round(macs / 1e9, 2) == 17.56
    x, y = torch.randn(1, 3, 224, 224), torch.zeros(1, dtype=torch.long)
    forward, step = count_flops(model, x, y, autocast=nullcontext)
    assert forward == 2 * macs
    recomputed_scores = depth * tokens * tokens * dim  # a fused backward computes QK^T again
    assert step == 3 * forward - 2 * patch_macs + 2 * recomputed_scores


def test_linear_floor_does_exactly_the_linear_layers_matrix_products():
    from torch.utils.flop_counter import FlopCounterMode

    from vitcourse.experiments.timing import count_flops, linear_matmuls

    torch.manual_seed(0)
    model = create_model("vit_digits")
    batch, tokens, dim, hidden, depth, classes = 3, 1 + (8 // 4) ** 2, 64, 128, 4, 10  # 4 x 4 patches
    x, y = torch.randn(batch, 1, 8, 8), torch.randint(0, classes, (batch,))
    # closed form: per Linear (rows x in -> out), a forward and two backward products of 2*rows*in*out
    rows = batch * tokens
    per_block = rows * (dim * 3 * dim + dim * dim + dim * hidden + hidden * dim)
    expected = 3 * 2 * (depth * per_block + batch * dim * classes)
    floor = linear_matmuls(model, x, torch.float32)
    with FlopCounterMode(display=False) as counter:
        floor()
    assert counter.get_total_flops() == expected
    # and the model's own training step does all of those products and more (attention, patches)
    _, step_flops = count_flops(model, x, y, autocast=nullcontext)
    assert step_flops > expected
