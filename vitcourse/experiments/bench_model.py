"""``vitcourse bench model``: our ViT against timm's and a naive reference, side by side.

Three models of the same configuration carry the same weights:

* ``ours``  -- :class:`vitcourse.VisionTransformer` (fused ``qkv``, ``scaled_dot_product_attention``);
* ``timm``  -- timm's ``VisionTransformer`` (when timm is installed);
* ``naive`` -- :class:`vitcourse.models.naive.NaiveViT`, the textbook transcription: separate
  q/k/v Linears and an explicit softmax over the full ``(B, heads, N, N)`` score matrix.

They are timed in interleaved rounds in one process (every round runs each model once), so
that drifts in machine load hit all three alike; the ratios printed are medians over rounds of
the per-round ratios. On CUDA everything runs under bf16 autocast (``--amp`` runs that path on
the CPU too, ``--no-amp`` turns it off), ``--compile`` adds
``torch.compile``d variants, and the achieved TFLOP/s (counted with
``torch.utils.flop_counter``) is printed next to a measured dense matmul rate.

Next to them runs a floor (:func:`vitcourse.experiments.timing.linear_matmuls`): only the matrix products of the Linear
layers in a training step, at the same shapes. Every implementation of the config must do those
products, so the naive model's time over the floor's bounds the speed-up any implementation can
have over it on this machine; on a small config the two are close, whatever the attention does.

``--checkpointing`` also measures what gradient checkpointing buys: the memory of the tensors
kept for the backward pass (live after the forward pass) and the peak during a training step,
with and without it, and the time it costs. On CUDA the numbers come from the caching
allocator's statistics; elsewhere from :class:`vitcourse.analysis.memory.TensorMemoryTracker`, which follows every tensor
storage created during the step from allocation until it is freed.

On a CPU shared with other processes, ``--threads 1`` gives much steadier numbers: with
several threads per process, one descheduled thread stalls every parallel operator.
``--img-size`` builds the configuration at another image size (DINOv2's 518 px, say, at 112),
to measure a large configuration on a CPU in about a minute.

The last line printed is machine-readable::

    ratio_vs_timm_fwd_bwd=<x> ratio_vs_naive_fwd_bwd=<y> config=<name> device=<d>
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..analysis.memory import measure_step_memory
from ..models.naive import naive_twin
from ..models.registry import create_model
from ..models.vit import VisionTransformer
from ..training.runtime import default_device
from ..validation import as_device
from .timing import (
    count_flops,
    interleaved,
    linear_matmuls,
    matmul_tflops,
    median_ratio,
    seconds_per_step,
)

# ---- the command -----------------------------------------------------------------------------

FLOOR = "linear matmuls only"  # the step of linear_matmuls, timed with the models


def _step_functions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast) -> dict[str, Callable[[], None]]:
    """One forward (inference) and one forward + backward (training) step of ``model``."""

    def forward() -> None:
        with torch.inference_mode(), autocast():
            model(x)

    def forward_backward() -> None:
        with autocast():
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        for param in model.parameters():  # as optimizer.zero_grad(set_to_none=True)
            param.grad = None

    return {"fwd": forward, "fwd_bwd": forward_backward}


def _timm_twin(ours: nn.Module):
    """timm's VisionTransformer with our config and our weights, or None (no timm, or a model
    timm's plain ViT is not: a distilled ViT, a Post-LN one, a convnet)."""
    if type(ours) is not VisionTransformer:
        return None
    try:
        from timm.layers import LayerNorm
        from timm.models.vision_transformer import VisionTransformer as TimmViT
    except ImportError:
        return None
    config = asdict(ours.config)
    config.pop("grad_checkpointing")
    if not config.pop("norm_first"):
        return None  # timm has no Post-LN ViT
    # The one setting timm names otherwise: the LayerNorms' eps is a property of its norm_layer.
    config["norm_layer"] = partial(LayerNorm, eps=config.pop("norm_eps"))
    with torch.device("meta"):
        theirs = TimmViT(**config)
    theirs = theirs.to_empty(device="cpu")
    theirs.load_state_dict(ours.state_dict())
    return theirs


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    threads = getattr(args, "threads", None)  # the command line has checked the numbers
    if threads is not None:
        torch.set_num_threads(threads)  # 1 is steadier when other processes share the cores
    device = str(as_device(args.device, "--device")) if args.device else str(default_device())
    min_time = getattr(args, "min_time", 0.25)
    on_cuda = device.startswith("cuda")
    amp = getattr(args, "amp", None)
    bf16 = on_cuda if amp is None else amp  # the CPU runs CUDA's mixed-precision path with --amp
    if bf16 and torch.device(device).type not in ("cuda", "cpu"):
        raise ValueError(f"--amp (bf16 autocast) needs a CUDA or CPU device, got {device}")
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)) if bf16 else nullcontext
    dtype = torch.bfloat16 if bf16 else torch.float32  # of the floor and of the matmul rate

    # --img-size builds the config at another size (its position table sized for it), so that a
    # 384 or 518 px configuration can be measured on a CPU in a minute.
    img_size = getattr(args, "img_size", None)
    ours = create_model(args.config, **({} if img_size is None else {"img_size": img_size}))
    models: dict[str, nn.Module] = {"ours": ours}
    theirs = _timm_twin(ours)
    if theirs is not None:
        models["timm"] = theirs
    naive = naive_twin(ours)
    if naive is not None:
        models["naive"] = naive
    for model in models.values():
        model.to(device)

    channels, (height, width) = ours.patch_embed.in_chans, ours.img_size
    x = torch.randn(args.batch, channels, height, width, device=device)
    y = torch.randint(0, max(ours.num_classes, 1), (args.batch,), device=device)

    # Same weights, so the same logits (up to float rounding): a check that we compare like with like.
    with torch.no_grad():
        reference = ours.eval()(x).float()
        for name, model in models.items():
            if name != "ours":
                diff = (model.eval()(x).float() - reference).abs().max().item()
                print(f"check: max |logits({name}) - logits(ours)| = {diff:.2e}")
    for model in models.values():
        model.train()

    if args.compile:
        if not on_cuda:
            print("note: --compile is meant for CUDA; compiling on", device, "anyway")
        models.update({f"{name}+compile": torch.compile(model) for name, model in list(models.items()) if name != "naive"})

    steps = {}
    for name, model in models.items():
        for kind, step in _step_functions(model, x, y, autocast).items():
            steps[f"{name}:{kind}"] = step
    if "naive" in models:
        steps[f"{FLOOR}:fwd_bwd"] = linear_matmuls(ours, x, dtype)
    for step in steps.values():  # warm up (and compile)
        step()
        step()
    # Enough iterations per measurement that one lasts about min_time seconds for our model.
    # (the fastest of three single steps: on a busy machine one step can be preempted)
    step_time = max(min(seconds_per_step(steps["ours:fwd_bwd"], 1, device) for _ in range(3)), 1e-6)
    iterations = max(1, math.ceil(min_time / step_time))
    print(
        f"config={args.config} batch={args.batch} device={device} "
        f"{'bf16 autocast' if bf16 else 'float32'} threads={torch.get_num_threads()} "
        f"rounds={args.repeats} iterations/measurement={iterations} img_size={height}x{width}"
    )
    times = interleaved(steps, args.repeats, iterations, device)

    flops_fwd, flops_fwd_bwd = count_flops(ours, x, y, autocast)
    size = 4096 if on_cuda else 1024
    peak_rate = matmul_tflops(device, dtype, size, seconds=min(0.5, 2 * min_time + 0.01))
    print(f"measured {str(dtype).removeprefix('torch.')} matmul rate ({size}^3): {peak_rate:.3f} TFLOP/s")
    print(f"{'model':<15}{'fwd img/s':>12}{'fwd+bwd img/s':>15}{'fwd+bwd TFLOP/s':>17}{'of matmul':>11}")
    for name in models:
        fwd = args.batch / statistics.median(times[f"{name}:fwd"])
        fwd_bwd = args.batch / statistics.median(times[f"{name}:fwd_bwd"])
        achieved = flops_fwd_bwd / args.batch * fwd_bwd / 1e12
        print(f"{name:<15}{fwd:>12.1f}{fwd_bwd:>15.1f}{achieved:>17.4f}{achieved / peak_rate:>10.1%}")

    ratios = {}
    for other in ("timm", "naive", "timm+compile"):
        if other in models:
            for kind in ("fwd", "fwd_bwd"):
                mine = "ours+compile" if other == "timm+compile" else "ours"
                ratios[f"{other}:{kind}"] = median_ratio(times[f"{mine}:{kind}"], times[f"{other}:{kind}"])
    for key, value in ratios.items():
        other, kind = key.split(":")
        mine = "ours+compile" if other == "timm+compile" else "ours"
        print(f"median ratio {mine} / {other} ({kind.replace('_', '+')}): {value:.3f}x")

    if "naive" in models:
        floor = times[f"{FLOOR}:fwd_bwd"]
        share = statistics.median(f / m for f, m in zip(floor, times["ours:fwd_bwd"], strict=True))
        ceiling = median_ratio(floor, times["naive:fwd_bwd"])
        print(f"floor: the Linear layers' matrix products alone (fwd+bwd, same shapes) take {share:.0%} "
              f"of our step; even if all else were free, no model of this config could beat naive by "
              f"more than {ceiling:.2f}x here")

    if args.checkpointing:
        _report_checkpointing(ours, x, y, device, autocast, args.repeats, min_time)

    timm_ratio = ratios.get("timm:fwd_bwd", float("nan"))
    naive_ratio = ratios.get("naive:fwd_bwd", float("nan"))
    print(f"ratio_vs_timm_fwd_bwd={timm_ratio:.3f} ratio_vs_naive_fwd_bwd={naive_ratio:.3f} "
          f"config={args.config} device={device}")
    return 0


def _report_checkpointing(model, x, y, device, autocast, repeats, min_time) -> None:
    """Memory and time of a training step with and without gradient checkpointing."""
    model.train()
    results = {}
    for enabled in (False, True):
        model.set_grad_checkpointing(enabled)
        results[enabled] = measure_step_memory(model, x, y, device, autocast)
    train_step = _step_functions(model, x, y, autocast)["fwd_bwd"]

    def with_checkpointing(enabled: bool) -> Callable[[], None]:
        def step() -> None:
            model.set_grad_checkpointing(enabled)
            train_step()

        return step

    steps = {enabled: with_checkpointing(enabled) for enabled in (False, True)}
    for step in steps.values():
        step()
    iterations = max(1, math.ceil(min_time / max(seconds_per_step(steps[True], 1, device), 1e-6)))
    times = interleaved(steps, repeats, iterations, device)
    model.set_grad_checkpointing(False)
    plain, ckpt = results[False], results[True]
    print(f"gradient checkpointing (measured with {plain['method']}):")
    print(f"  kept for backward: {_fmt_bytes(plain['kept'])} -> {_fmt_bytes(ckpt['kept'])} "
          f"({plain['kept'] / max(ckpt['kept'], 1):.1f}x less)")
    print(f"  peak during the step: {_fmt_bytes(plain['peak'])} -> {_fmt_bytes(ckpt['peak'])} "
          f"({plain['peak'] / max(ckpt['peak'], 1):.1f}x less)")
    # median_ratio(a, b) is the median of b's time over a's: here the slow-down factor.
    print(f"  time per step with checkpointing: x{median_ratio(times[False], times[True]):.2f} "
          f"(median over {repeats} interleaved rounds)")
