"""Timing a model: seconds per step, interleaved rounds, the matmul rate, FLOP counts.

The pieces ``vitcourse bench model`` is made of (its memory measurements are in
:mod:`vitcourse.analysis.memory`). Times are seconds per step, measured in interleaved rounds
so that drifts in machine load hit every step alike; ratios are medians over rounds of
per-round ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..training.runtime import synchronize

__all__ = ["seconds_per_step", "interleaved", "median_ratio", "matmul_tflops", "count_flops", "linear_matmuls"]


def seconds_per_step(step: Callable[[], None], iterations: int, device: str) -> float:
    """Mean wall-clock seconds of one call of ``step`` over ``iterations`` calls."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / iterations


def interleaved(steps: dict[str, Callable[[], None]], repeats: int, iterations: int, device: str) -> dict[str, list[float]]:
    """Seconds per step of every entry, ``repeats`` rounds, each round running all entries."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(repeats):
        # Alternate the order, so that no model always runs right after the same other one.
        for name in names if round_index % 2 == 0 else reversed(names):
            times[name].append(seconds_per_step(steps[name], iterations, device))
    return times


def median_ratio(mine: list[float], other: list[float]) -> float:
    """Median over rounds of (other's time / my time), i.e. my speed-up over ``other``."""
    return statistics.median(o / m for m, o in zip(mine, other, strict=True))


def matmul_tflops(device: str, dtype: torch.dtype, size: int, seconds: float = 0.5) -> float:
    """Measured dense matmul rate in TFLOP/s, for a ``size`` x ``size`` product."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    iterations = max(1, int(seconds / max(seconds_per_step(lambda: a @ b, 1, device), 1e-6)))
    return 2 * size**3 / seconds_per_step(lambda: a @ b, iterations, device) / 1e12


def _cpu_attention_formulas() -> dict:
    """FLOP formulas for the CPU's fused attention kernel, which ``FlopCounterMode`` counts on
    CUDA (flash, efficient, cuDNN) but not on the CPU: without them the two attention products,
    QK^T and AV, are left out (ViT-B/16 counts 16.85 GMACs instead of 17.56). They are torch's
    own formulas for the CUDA kernels, which do the same products."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten
    if not hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        return {}

    def forward(query, key, value, *args, out_val=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_val=None, **kwargs):
        return sdpa_backward_flop_count(grad_out, query, key, value)

    return {aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}


def count_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast) -> tuple[int, int]:
    """FLOPs of one forward and of one forward + backward step (matmuls and attention), on any
    device (a multiply-accumulate is two FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    formulas = _cpu_attention_formulas()
    with FlopCounterMode(display=False, custom_mapping=formulas) as counter, torch.no_grad(), autocast():
        model(x)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False, custom_mapping=formulas) as counter:
        with autocast():
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops()


def linear_matmuls(model: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> Callable[[], None]:
    """A step doing only the matrix products of ``model``'s Linear layers in a training step.

    For a Linear ``y = a W^T + b`` on ``a`` of shape ``(rows, in)``: ``addmm`` forward, and
    backward ``g W`` (gradient of ``a``) and ``g^T a`` (gradient of ``W``), on tensors of the
    shapes one forward pass of ``x`` gives. Every implementation of the config does these
    products (the naive reference does the same ones, q, k and v split three ways), so no model
    can train faster than this step runs: it is a floor, measured at the same shapes.
    """
    shapes: list[tuple[nn.Linear, int]] = []
    hooks = [layer.register_forward_hook(lambda layer, args, out: shapes.append((layer, args[0].numel() // layer.in_features)))
             for layer in model.modules() if isinstance(layer, nn.Linear)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    operands = []
    for layer, rows in shapes:
        weight = layer.weight.detach().to(dtype)
        bias = None if layer.bias is None else layer.bias.detach().to(dtype)
        inputs = torch.randn(rows, layer.in_features, device=weight.device, dtype=dtype)
        grad = torch.randn(rows, layer.out_features, device=weight.device, dtype=dtype)
        operands.append((inputs, weight, bias, grad))

    def step() -> None:
        for inputs, weight, bias, grad in operands:
            if bias is None:
                inputs @ weight.t()
            else:
                torch.addmm(bias, inputs, weight.t())
            grad @ weight
            grad.t() @ inputs

    return step
