"""Smoke test of `vitcourse bench model` on the tiny digits config, and of its parts."""

from __future__ import annotations

import re

import pytest
import torch

from vitcourse import cli, create_model
from vitcourse.bench_model import NaiveViT, TensorMemoryTracker, _naive_twin

LAST_LINE = re.compile(
    r"^ratio_vs_timm_fwd_bwd=(\d+\.\d+|nan) ratio_vs_naive_fwd_bwd=(\d+\.\d+) config=vit_digits device=cpu$"
)


@pytest.mark.slow
def test_bench_cli_last_line(capsys):
    code = cli.main(["bench", "model", "--config", "vit_digits", "--batch", "2", "--device", "cpu",
                     "--repeats", "1", "--min-time", "0", "--checkpointing"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-1]
    assert any("kept for backward" in line for line in lines)


def test_naive_reference_computes_the_same_logits():
    torch.manual_seed(0)
    ours = create_model("vit_digits").eval()
    naive = _naive_twin(ours)
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
