"""``vitcourse bench model``: our ViT against timm's and a naive reference, side by side.

Three models of the same configuration carry the same weights:

* ``ours``  -- :class:`vitcourse.VisionTransformer` (fused ``qkv``, ``scaled_dot_product_attention``);
* ``timm``  -- timm's ``VisionTransformer`` (when timm is installed);
* ``naive`` -- :class:`NaiveViT` below, the textbook transcription: separate q/k/v Linears and
  an explicit softmax over the full ``(B, heads, N, N)`` score matrix.

They are timed in interleaved rounds in one process (every round runs each model once), so
that drifts in machine load hit all three alike; the ratios printed are medians over rounds of
the per-round ratios. On CUDA everything runs under bf16 autocast, ``--compile`` adds
``torch.compile``d variants, and the achieved TFLOP/s (counted with
``torch.utils.flop_counter``) is printed next to a measured dense matmul rate.

Next to them runs a floor (:func:`linear_matmuls`): only the matrix products of the Linear
layers in a training step, at the same shapes. Every implementation of the config must do those
products, so the naive model's time over the floor's bounds the speed-up any implementation can
have over it on this machine; on a small config the two are close, whatever the attention does.

``--checkpointing`` also measures what gradient checkpointing buys: the memory of the tensors
kept for the backward pass (live after the forward pass) and the peak during a training step,
with and without it, and the time it costs. On CUDA the numbers come from the caching
allocator's statistics; elsewhere from :class:`TensorMemoryTracker`, which follows every tensor
storage created during the step from allocation until it is freed.

On a CPU shared with other processes, ``--threads 1`` gives much steadier numbers: with
several threads per process, one descheduled thread stalls every parallel operator.

The last line printed is machine-readable::

    ratio_vs_timm_fwd_bwd=<x> ratio_vs_naive_fwd_bwd=<y> config=<name> device=<d>
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import weakref
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from .model import _REGISTRY, LAYER_NORM_EPS, VisionTransformer, create_model

# ---- the naive reference ---------------------------------------------------------------------


class NaiveAttention(nn.Module):
    """Self-attention as first written down: three Linears and an explicit softmax."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, heads, N, head_dim)
            return t.reshape(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        scores = scores - scores.amax(dim=-1, keepdim=True)  # for a stable exp
        weights = scores.exp()
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = (weights @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out)


class NaiveBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = NaiveAttention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class NaiveViT(nn.Module):
    """A Pre-LN class-token ViT written plainly; :meth:`copy_from` takes our model's weights."""

    def __init__(self, img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads,
                 mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        self.patch = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        grid = (img_size[0] // patch_size[0]) * (img_size[1] // patch_size[1])
        self.cls = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos = nn.Parameter(torch.zeros(1, 1 + grid, embed_dim))
        self.blocks = nn.Sequential(*(NaiveBlock(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])

    @torch.no_grad()
    def copy_from(self, model: VisionTransformer) -> NaiveViT:
        """Copy the weights of a token-pooled, class-token ``model`` (q, k, v split from qkv)."""
        state = model.state_dict()
        mine = {"patch.weight": "patch_embed.proj.weight", "patch.bias": "patch_embed.proj.bias",
                "cls": "cls_token", "pos": "pos_embed"}
        for name, param in self.named_parameters():
            if name in mine:
                param.copy_(state[mine[name]])
            elif ".attn.q." in name or ".attn.k." in name or ".attn.v." in name:
                index = "qkv".index(name.split(".")[3])
                source = state[name.replace(f".attn.{'qkv'[index]}.", ".attn.qkv.")]
                param.copy_(source.chunk(3, dim=0)[index])
            else:
                param.copy_(state[name.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.2.", ".mlp.fc2.")])
        return self


# ---- measuring -------------------------------------------------------------------------------


def default_device() -> str:
    """cuda, then mps, then cpu (vitcourse.train's helper when it is there)."""
    try:
        from .train import default_device as pick

        return str(pick())
    except ImportError:
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device.startswith("mps"):
        torch.mps.synchronize()


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


def _time(step: Callable[[], None], iterations: int, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    _sync(device)
    return (time.perf_counter() - start) / iterations


def _interleaved(steps: dict[str, Callable[[], None]], repeats: int, iterations: int, device: str) -> dict[str, list[float]]:
    """Seconds per step of every entry, ``repeats`` rounds, each round running all entries."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(repeats):
        # Alternate the order, so that no model always runs right after the same other one.
        for name in names if round_index % 2 == 0 else reversed(names):
            times[name].append(_time(steps[name], iterations, device))
    return times


def _median_ratio(mine: list[float], other: list[float]) -> float:
    """Median over rounds of (other's time / my time), i.e. my speed-up over ``other``."""
    return statistics.median(o / m for m, o in zip(mine, other, strict=True))


def matmul_tflops(device: str, dtype: torch.dtype, size: int, seconds: float = 0.5) -> float:
    """Measured dense matmul rate in TFLOP/s, for a ``size`` x ``size`` product."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    iterations = max(1, int(seconds / max(_time(lambda: a @ b, 1, device), 1e-6)))
    return 2 * size**3 / _time(lambda: a @ b, iterations, device) / 1e12


def count_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast) -> tuple[int, int]:
    """FLOPs of one forward and of one forward + backward step (matmuls and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad(), autocast():
        model(x)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
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


class TensorMemoryTracker(TorchDispatchMode):
    """Bytes of tensor storage created inside the ``with`` block and not yet freed.

    Every operator's output storage is counted once when it first appears and subtracted when
    Python frees it (a weakref finalizer), so ``live`` is the memory of the tensors created in
    the block that are still alive, and ``peak`` its maximum. Tensors that existed before
    (parameters, inputs) are not counted. Works on any device; library-internal scratch
    buffers (e.g. oneDNN's) are invisible to it.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # An output sharing an input's storage (a view, an in-place op) allocated nothing; this
        # also keeps views of parameters and inputs, made before the block, out of the count.
        inputs = {
            id(t.untyped_storage())
            for t in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor) and t.device.type != "meta"
        }
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                key = id(storage)
                if key not in self._seen and key not in inputs:
                    self._seen.add(key)
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        return out


def measure_checkpointing(model: VisionTransformer, x: torch.Tensor, y: torch.Tensor, device: str, autocast) -> dict[str, float]:
    """Memory kept for backward and peak memory of one training step, in bytes, and which
    method measured them."""
    def loss_fn():
        with autocast():
            return F.cross_entropy(model(x).float(), y)

    model.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        _sync(device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        loss = loss_fn()
        _sync(device)
        kept = torch.cuda.memory_allocated() - base
        loss.backward()
        _sync(device)
        peak = torch.cuda.max_memory_allocated() - base
        method = "CUDA caching allocator statistics"
    else:
        with TensorMemoryTracker() as tracker:
            loss = loss_fn()
            kept = tracker.live
            loss.backward()
        peak = tracker.peak
        method = "tensor storages tracked by a TorchDispatchMode (TensorMemoryTracker)"
    model.zero_grad(set_to_none=True)
    del loss
    return {"kept": kept, "peak": peak, "method": method}


# ---- the command -----------------------------------------------------------------------------

FLOOR = "linear matmuls only"  # the step of linear_matmuls, timed with the models


def _config(name: str) -> dict:
    if name not in _REGISTRY:
        create_model(name)  # raises the clear "unknown model name" error
    return dict(_REGISTRY[name][1])


def _timm_twin(name: str, ours: VisionTransformer):
    """timm's VisionTransformer with our config and our weights, or None without timm."""
    try:
        from timm.models.vision_transformer import VisionTransformer as TimmViT
    except ImportError:
        return None
    config = _config(name)
    config.pop("grad_checkpointing", None)
    if not config.pop("norm_first", True):
        return None  # timm has no Post-LN ViT
    with torch.device("meta"):
        theirs = TimmViT(**config)
    theirs = theirs.to_empty(device="cpu")
    theirs.load_state_dict(ours.state_dict())
    return theirs


def _naive_twin(ours: VisionTransformer) -> NaiveViT | None:
    if ours.cls_token is None or ours.reg_token is not None or ours.global_pool != "token" or ours.no_embed_class:
        return None
    block = ours.blocks[0]
    naive = NaiveViT(
        ours.img_size, ours.patch_size, ours.patch_embed.in_chans, ours.num_classes, ours.embed_dim,
        len(ours.blocks), block.attn.num_heads, block.mlp.fc1.out_features / ours.embed_dim,
        block.attn.qkv.bias is not None,
    )
    return naive.copy_from(ours)


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads <= 0:
            raise ValueError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)  # 1 is steadier when other processes share the cores
    device = args.device or default_device()
    if args.batch <= 0:
        raise ValueError(f"--batch must be positive, got {args.batch}")
    if args.repeats <= 0:
        raise ValueError(f"--repeats must be positive, got {args.repeats}")
    min_time = getattr(args, "min_time", 0.25)
    on_cuda = device.startswith("cuda")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_cuda else nullcontext

    ours = create_model(args.config)
    models: dict[str, nn.Module] = {"ours": ours}
    theirs = _timm_twin(args.config, ours)
    if theirs is not None:
        models["timm"] = theirs
    naive = _naive_twin(ours)
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
        steps[f"{FLOOR}:fwd_bwd"] = linear_matmuls(ours, x, torch.bfloat16 if on_cuda else torch.float32)
    for step in steps.values():  # warm up (and compile)
        step()
        step()
    # Enough iterations per measurement that one lasts about min_time seconds for our model.
    # (the fastest of three single steps: on a busy machine one step can be preempted)
    step_time = max(min(_time(steps["ours:fwd_bwd"], 1, device) for _ in range(3)), 1e-6)
    iterations = max(1, math.ceil(min_time / step_time))
    print(
        f"config={args.config} batch={args.batch} device={device} "
        f"{'bf16 autocast' if on_cuda else 'float32'} threads={torch.get_num_threads()} "
        f"rounds={args.repeats} iterations/measurement={iterations}"
    )
    times = _interleaved(steps, args.repeats, iterations, device)

    flops_fwd, flops_fwd_bwd = count_flops(ours, x, y, autocast)
    dtype, size = (torch.bfloat16, 4096) if on_cuda else (torch.float32, 1024)
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
                ratios[f"{other}:{kind}"] = _median_ratio(times[f"{mine}:{kind}"], times[f"{other}:{kind}"])
    for key, value in ratios.items():
        other, kind = key.split(":")
        mine = "ours+compile" if other == "timm+compile" else "ours"
        print(f"median ratio {mine} / {other} ({kind.replace('_', '+')}): {value:.3f}x")

    if "naive" in models:
        floor = times[f"{FLOOR}:fwd_bwd"]
        share = statistics.median(f / m for f, m in zip(floor, times["ours:fwd_bwd"], strict=True))
        ceiling = _median_ratio(floor, times["naive:fwd_bwd"])
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
        results[enabled] = measure_checkpointing(model, x, y, device, autocast)
    train_step = _step_functions(model, x, y, autocast)["fwd_bwd"]

    def with_checkpointing(enabled: bool) -> Callable[[], None]:
        def step() -> None:
            model.set_grad_checkpointing(enabled)
            train_step()

        return step

    steps = {enabled: with_checkpointing(enabled) for enabled in (False, True)}
    for step in steps.values():
        step()
    iterations = max(1, math.ceil(min_time / max(_time(steps[True], 1, device), 1e-6)))
    times = _interleaved(steps, repeats, iterations, device)
    model.set_grad_checkpointing(False)
    plain, ckpt = results[False], results[True]
    print(f"gradient checkpointing (measured with {plain['method']}):")
    print(f"  kept for backward: {_fmt_bytes(plain['kept'])} -> {_fmt_bytes(ckpt['kept'])} "
          f"({plain['kept'] / max(ckpt['kept'], 1):.1f}x less)")
    print(f"  peak during the step: {_fmt_bytes(plain['peak'])} -> {_fmt_bytes(ckpt['peak'])} "
          f"({plain['peak'] / max(ckpt['peak'], 1):.1f}x less)")
    # _median_ratio(a, b) is the median of b's time over a's: here the slow-down factor.
    print(f"  time per step with checkpointing: x{_median_ratio(times[False], times[True]):.2f} "
          f"(median over {repeats} interleaved rounds)")
