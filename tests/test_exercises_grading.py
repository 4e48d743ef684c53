"""The exercises and their hidden tests, graded end to end.

- every solution notebook scores full marks on its hidden tests, on several grader seeds;
- every generated exercise notebook scores zero, each test failing cleanly (no "error" status);
- correct submissions written in other styles (einops, unfold, as_strided, loops, float64
  inside) score full marks, and typical wrong ones (a missing error, a conversion the wrong way,
  tau ignored, rollout multiplied in the wrong order...) lose points (the named mistakes of the
  exercises with a contract are tested in test_exercise_contracts.py);
- two exercises go through the real sandboxed grader (`vitcourse grade`), solution and stub.

The fast tests use the grader's direct mode (the code runs in this process through the same
data-only channel); the sandboxed one is marked slow.
"""

from __future__ import annotations

import importlib
import json
import textwrap
import warnings
from pathlib import Path

import nbformat
import pytest

from vitcourse.grading.direct import graded_notebook, in_process_student
from vitcourse.grading.notebooks import read_notebook
from vitcourse.grading.trusted.scoring import run_test
from vitcourse.grading.trusted.suites import load_hidden_suite
from vitcourse.grading.untrusted.cells import run_cells
from vitcourse.grading.untrusted.guard import reference_guards

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ROOT / "tests" / "hidden"
EXERCISES = sorted(p.stem for p in (ROOT / "solutions").glob("*.ipynb"))
SEEDS = (0, 1, 2)


def grade_namespace(exercise: str, namespace: dict, seed: int, suite=None):
    """``(score, max_score, results)`` of the hidden tests against an in-process namespace."""
    suite = suite or load_hidden_suite(HIDDEN, exercise)
    student = in_process_student(namespace)
    results = [run_test(test, student, None, seed) for test in suite.tests]
    return sum(r.points for r in results), sum(r.max_points for r in results), results


def grade_source(exercise: str, source: str, seed: int = 0):
    """Grade Python ``source`` as a one-cell submission, its reference answers guarded."""
    suite = load_hidden_suite(HIDDEN, exercise)
    namespace: dict = {"__name__": f"_submission_{exercise}"}
    with reference_guards(suite.reference_answers, cells_namespace=namespace, trusted=(suite.module,)):
        exec(compile(textwrap.dedent(source), f"<submission for {exercise}>", "exec"), namespace)
        return grade_namespace(exercise, namespace, seed, suite)


def _report(results) -> str:
    return "\n".join(f"{r.name}: {r.status} {r.points}/{r.max_points} {r.feedback} {r.detail}" for r in results)


def test_every_exercise_has_hidden_tests():
    import re

    toc = re.findall(r"file: exercises/(\d\d_\w+)", (ROOT / "_toc.yml").read_text())
    assert EXERCISES == sorted(toc)  # every exercise is in the book, and nothing else is listed
    for exercise in EXERCISES:
        assert (HIDDEN / f"test_{exercise}.py").is_file(), exercise
        assert (ROOT / "exercises" / f"{exercise}.ipynb").is_file(), exercise


def test_every_check_is_run_by_an_exercise():
    import re

    from vitcourse.course.checks import CHECK_NAMES

    used = set()
    for exercise in EXERCISES:
        for cell in nbformat.read(ROOT / "exercises" / f"{exercise}.ipynb", as_version=4).cells:
            if cell.cell_type == "code":
                used |= set(re.findall(r'check\("(\w+)", \w+\)', cell.source))
    assert used == set(CHECK_NAMES)


@pytest.mark.parametrize("exercise", EXERCISES)
def test_solution_scores_full_marks(exercise):
    suite = load_hidden_suite(HIDDEN, exercise)
    path = ROOT / "solutions" / f"{exercise}.ipynb"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cell error (a refused reference included) fails the test
        with graded_notebook(path, f"_graded_solution_{exercise}", suite.reference_answers, suite.module) as namespace:
            for seed in SEEDS:
                score, max_score, results = grade_namespace(exercise, namespace, seed, suite)
                assert score == max_score > 0, f"seed {seed}:\n{_report(results)}"


@pytest.mark.parametrize("exercise", EXERCISES)
def test_exercise_runs_top_to_bottom_and_scores_zero(exercise, capsys):
    # A student's first "run all" must finish: no cell outside the stubs calls a stub directly.
    suite = load_hidden_suite(HIDDEN, exercise)
    namespace: dict = {"__name__": f"_exercise_{exercise}", "display": lambda *args, **kwargs: None}
    with reference_guards(suite.reference_answers, cells_namespace=namespace, trusted=(suite.module,)):
        errors = run_cells(read_notebook(ROOT / "exercises" / f"{exercise}.ipynb"), namespace)
        assert not errors, [e.describe() for e in errors]
        assert "is not implemented yet" in capsys.readouterr().out  # the check cells said so
        score, max_score, results = grade_namespace(exercise, namespace, 0, suite)
    assert score == 0 and max_score > 0, _report(results)
    assert all(r.status == "failed" for r in results), _report(results)
    assert all("NotImplementedError" in r.feedback for r in results), _report(results)


# ---- correct submissions in other styles: full marks ---------------------------------------

CORRECT = {
    "01_patches/unfold_and_einops": """
        import torch.nn.functional as F
        from einops import rearrange

        def overlapping_patches(images, patch_size, stride):
            if stride < 1 or patch_size > min(images.shape[-2:]):
                raise ValueError("no window fits")
            return F.unfold(images, kernel_size=patch_size, stride=stride).transpose(1, 2)

        def linear_to_conv_weight(weight, patch_size):
            if weight.shape[1] % patch_size**2:
                raise ValueError("in-features are not a multiple of p * p")
            return rearrange(weight, "d (p q c) -> d c p q", p=patch_size, q=patch_size)
    """,
    "01_patches/loops": """
        import torch

        def overlapping_patches(images, patch_size, stride):
            b, c, h, w = images.shape
            p = patch_size
            if p > h or p > w or stride <= 0:
                raise ValueError(f"bad window {p} / stride {stride} for {h} x {w}")
            windows = []
            for top in range(0, h - p + 1, stride):
                for left in range(0, w - p + 1, stride):
                    windows.append(images[:, :, top:top + p, left:left + p].reshape(b, -1))
            return torch.stack(windows, dim=1)

        def linear_to_conv_weight(weight, patch_size):
            d, n = weight.shape
            p = patch_size
            if n % (p * p) != 0:
                raise ValueError("bad width")
            c = n // (p * p)
            out = weight.new_empty(d, c, p, p)
            for i in range(p):
                for j in range(p):
                    for k in range(c):
                        out[:, k, i, j] = weight[:, (i * p + j) * c + k]
            return out
    """,
    "01_patches/as_strided": """
        def overlapping_patches(images, patch_size, stride):
            b, c, h, w = images.shape
            p, s = patch_size, stride
            if s < 1 or p > h or p > w:
                raise ValueError("nothing to cut")
            rows, cols = (h - p) // s + 1, (w - p) // s + 1
            x = images.contiguous()
            sb, sc, sh, sw = x.stride()
            windows = x.as_strided((b, rows, cols, c, p, p), (sb, sh * s, sw * s, sc, sh, sw))
            return windows.reshape(b, rows * cols, c * p * p)

        def linear_to_conv_weight(weight, patch_size):
            p = patch_size
            if weight.shape[-1] % (p * p):
                raise ValueError("not a multiple of p * p")
            return weight.unflatten(1, (p, p, -1)).movedim(3, 1).contiguous()
    """,
    "02_patch_snr/einsum_and_vector_norm": """
        import torch

        def filter_snr(weights, template, noise_std):
            if noise_std <= 0:
                raise ValueError("noise_std must be positive")
            if weights.shape[-2:] != template.shape[-2:]:
                raise ValueError("shapes differ")
            norms = torch.linalg.vector_norm(weights, dim=(-2, -1))
            if (norms == 0).any():
                raise ValueError("a filter of zeros")
            response = torch.einsum("...hw,...hw->...", weights, template.expand_as(weights))
            return response / (noise_std * norms)
    """,
    "02_patch_snr/flattened_in_float64": """
        import math
        import torch

        def filter_snr(weights, template, noise_std):
            if not noise_std > 0 or weights.shape[-2:] != template.shape[-2:]:
                raise ValueError("bad input")
            lead = weights.shape[:-2]
            w = weights.double().reshape(-1, weights.shape[-2] * weights.shape[-1])
            t = template.double().reshape(-1)
            variance = (noise_std**2) * (w**2).sum(dim=1)
            if (variance == 0).any():
                raise ValueError("a filter of zeros")
            return ((w @ t) / variance.sqrt()).reshape(lead).to(weights.dtype)
    """,
    "03_attention/float64_max_subtracted": """
        import math
        import torch

        def partial_attention(q, k, v, tau=None):
            if q.shape[-1] != k.shape[-1]:
                raise ValueError("q and k differ in width")
            tau = math.sqrt(q.shape[-1]) if tau is None else tau
            if tau <= 0:
                raise ValueError("tau must be positive")
            scores = torch.einsum("...nd,...md->...nm", q.double(), k.double()) / tau
            top = scores.amax(dim=-1, keepdim=True)
            mass = torch.exp(scores - top)
            total = mass.sum(dim=-1, keepdim=True)
            out = (mass / total) @ v.double()
            return out.to(q.dtype), (top + total.log()).squeeze(-1).to(q.dtype)

        def merge_attention(out_a, lse_a, out_b, lse_b):
            if out_a.shape != out_b.shape or lse_a.shape != lse_b.shape or lse_a.shape != out_a.shape[:-1]:
                raise ValueError("shapes do not match")
            top = torch.maximum(lse_a, lse_b)
            mass_a, mass_b = torch.exp(lse_a - top), torch.exp(lse_b - top)
            out = (mass_a[..., None] * out_a + mass_b[..., None] * out_b) / (mass_a + mass_b)[..., None]
            return out, top + torch.log(mass_a + mass_b)
    """,
    "03_attention/sdpa_and_sigmoid": """
        import math
        import torch
        import torch.nn.functional as F

        def partial_attention(q, k, v, tau=None):
            d = q.shape[-1]
            if k.shape[-1] != d or (tau is not None and not tau > 0):
                raise ValueError("bad widths or tau")
            scale = 1 / math.sqrt(d) if tau is None else 1 / tau
            out = F.scaled_dot_product_attention(q, k, v, scale=scale)
            return out, torch.logsumexp((q @ k.mT) * scale, dim=-1)

        def merge_attention(out_a, lse_a, out_b, lse_b):
            if out_a.shape != out_b.shape or lse_a.shape != out_a.shape[:-1] or lse_b.shape != lse_a.shape:
                raise ValueError("shapes do not match")
            share_a = torch.sigmoid(lse_a - lse_b).unsqueeze(-1)  # exp(a) / (exp(a) + exp(b))
            return share_a * out_a + (1 - share_a) * out_b, torch.logaddexp(lse_a, lse_b)
    """,
    "04_mhsa/einops_sdpa": """
        import torch.nn.functional as F
        from einops import rearrange
        from torch import nn

        class GroupedQueryAttention(nn.Module):
            def __init__(self, dim, num_heads, num_kv_heads, qkv_bias=True):
                super().__init__()
                if dim % num_heads != 0 or num_heads % num_kv_heads != 0:
                    raise ValueError("heads must divide")
                self.h, self.g = num_heads, num_kv_heads
                self.q = nn.Linear(dim, dim, bias=qkv_bias)
                self.kv = nn.Linear(dim, 2 * dim // num_heads * num_kv_heads, bias=qkv_bias)
                self.proj = nn.Linear(dim, dim)

            def forward(self, x):
                q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.h)
                k, v = rearrange(self.kv(x), "b n (t g d) -> t b g n d", t=2, g=self.g)
                # SDPA's own grouping: consecutive query heads share a key/value head
                out = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                return self.proj(rearrange(out, "b h n d -> b n (h d)"))
    """,
    "04_mhsa/loop_over_groups": """
        import math
        import torch
        from torch import nn

        class GroupedQueryAttention(nn.Module):
            def __init__(self, dim, num_heads, num_kv_heads, qkv_bias=True):
                super().__init__()
                if dim % num_heads or num_heads % num_kv_heads:
                    raise ValueError("indivisible")
                self.h, self.g, self.d = num_heads, num_kv_heads, dim // num_heads
                self.q = nn.Linear(dim, dim, bias=qkv_bias)
                self.kv = nn.Linear(dim, 2 * num_kv_heads * self.d, bias=qkv_bias)
                self.proj = nn.Linear(dim, dim)

            def forward(self, x):
                q, kv = self.q(x), self.kv(x)
                keys, values = kv.chunk(2, dim=-1)
                per_group, outs = self.h // self.g, []
                for h in range(self.h):
                    g = h // per_group
                    qh = q[..., h * self.d:(h + 1) * self.d]
                    kh, vh = keys[..., g * self.d:(g + 1) * self.d], values[..., g * self.d:(g + 1) * self.d]
                    scores = qh @ kh.transpose(-2, -1) / math.sqrt(self.d)
                    outs.append(scores.softmax(-1) @ vh)
                return self.proj(torch.cat(outs, dim=-1))
    """,
    "06_rollout/product_of_factors_float64": """
        import torch

        def gradient_rollout(attentions, gradients):
            if len(attentions) < 1 or len(gradients) != len(attentions):
                raise ValueError("one gradient per map, at least one layer")
            n = attentions[0].shape[-1]
            total = torch.eye(n, dtype=torch.float64)
            for a, g in zip(attentions, gradients):
                e = torch.einsum("bhij->bij", (a.double() * g.double()).clamp_min(0)) / a.shape[1]
                total = (torch.eye(n, dtype=torch.float64) + e) @ total   # (I + E_l) on the left
            return total.to(attentions[0].dtype)
    """,
    "06_rollout/heads_in_a_loop": """
        import torch

        def gradient_rollout(attentions, gradients):
            if not attentions or len(attentions) != len(gradients):
                raise ValueError("bad layers")
            r = None
            for a, g in zip(attentions, gradients):
                heads = a.shape[1]
                e = sum(torch.where(a[:, h] * g[:, h] > 0, a[:, h] * g[:, h], torch.zeros_like(a[:, h]))
                        for h in range(heads)) / heads
                r = torch.eye(a.shape[-1], dtype=a.dtype) + e if r is None else r + torch.bmm(e, r)
            return r
    """,
    "07_long_range/loops_and_counter": """
        from collections import Counter

        import torch

        def _validate(ids):
            if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.dtype != torch.long or (ids < 0).any():
                raise ValueError("ids must be a (B, N) int64 tensor of non-negative ids")

        def same_object_mask(ids):
            _validate(ids)
            b, n = ids.shape
            mask = torch.zeros(b, n, n, dtype=torch.bool)
            for i in range(n):
                mask[:, i, :] = (ids == ids[:, i:i + 1]) & (ids[:, i:i + 1] > 0)
            return mask

        def count_pairs(ids):
            _validate(ids)
            return torch.tensor([sum(1 for v, n in Counter(row.tolist()).items() if v and n >= 2) for row in ids])
    """,
    "07_long_range/bincount": """
        import torch

        def same_object_mask(ids):
            if ids.dtype != torch.int64 or ids.dim() != 2 or ids.min() < 0:
                raise ValueError("bad ids")
            return torch.einsum("bik,bjk->bij", *(torch.nn.functional.one_hot(ids).float()[..., 1:],) * 2) > 0

        def count_pairs(ids):
            if ids.dtype != torch.int64 or ids.dim() != 2 or ids.min() < 0:
                raise ValueError("bad ids")
            return torch.stack([(torch.bincount(row)[1:] >= 2).sum() for row in ids])
    """,
    "08_cost/layer_by_layer": """
        def vit_forward_flops(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
            rows, cols = (image_size, image_size) if isinstance(image_size, int) else image_size
            if rows % patch_size or cols % patch_size or min(rows, cols, patch_size, dim, depth, in_chans) <= 0:
                raise ValueError("image sides must be positive multiples of the patch size")

            def linear(tokens, fan_in, fan_out):  # FLOPs of a Linear on a (tokens, fan_in) input
                return 2 * tokens * fan_in * fan_out

            patches = (rows // patch_size) * (cols // patch_size)
            tokens = patches + prefix_tokens
            hidden = int(dim * mlp_ratio)
            total = linear(patches, in_chans * patch_size * patch_size, dim)
            for _ in range(depth):
                total += linear(tokens, dim, 3 * dim) + linear(tokens, dim, dim)  # qkv, proj
                total += 2 * (2 * tokens * tokens * dim)                          # q k^T, then weights @ v
                total += linear(tokens, dim, hidden) + linear(tokens, hidden, dim)
            return total + linear(1, dim, num_classes)
    """,
    "08_cost/numpy_per_head": """
        import numpy as np

        def vit_forward_flops(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
            size = np.broadcast_to(np.asarray(image_size, dtype=np.int64), (2,))
            if (size % patch_size).any() or dim < 1 or patch_size < 1:
                raise ValueError("bad image or width")
            n = int(np.prod(size // patch_size))
            L, heads = n + prefix_tokens, 4 if dim % 4 == 0 else 1
            per_head = dim // heads
            attention = 2 * (3 * L * dim * dim + heads * 2 * L * L * per_head + L * dim * dim)
            mlp = 2 * 2 * L * dim * int(dim * mlp_ratio)
            return int(2 * n * in_chans * patch_size**2 * dim + depth * (attention + mlp) + 2 * dim * num_classes)
    """,
    "05_positions/complex_numbers": """
        import torch

        def rope_2d(x, grid, temperature=10000.0):
            rows, cols = grid
            dim = x.shape[-1]
            if dim % 4 or dim == 0 or x.shape[-2] != rows * cols:
                raise ValueError("bad width or grid")
            k = dim // 4
            freqs = 1.0 / temperature ** (torch.arange(k, dtype=torch.float64) / k)
            col = torch.arange(cols, dtype=torch.float64).repeat(rows)             # row-major tokens
            row = torch.arange(rows, dtype=torch.float64).repeat_interleave(cols)
            angles = torch.cat([torch.outer(col, freqs), torch.outer(row, freqs)], dim=-1)
            z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2).contiguous())
            return torch.view_as_real(z * torch.exp(1j * angles)).reshape(x.shape).to(x.dtype)
    """,
    "05_positions/loops": """
        import math
        import torch

        def rope_2d(x, grid, temperature=10000.0):
            rows, cols = grid
            dim = x.shape[-1]
            if dim <= 0 or dim % 4 != 0:
                raise ValueError("width must be a positive multiple of 4")
            if x.shape[-2] != rows * cols:
                raise ValueError("grid does not match the tokens")
            out = x.clone()
            k = dim // 4
            for token in range(rows * cols):
                r, c = divmod(token, cols)
                for half, pos in ((0, c), (1, r)):
                    for i in range(k):
                        t = pos * temperature ** (-i / k)
                        j = half * 2 * k + 2 * i
                        a, b = x[..., token, j], x[..., token, j + 1]
                        out[..., token, j] = a * math.cos(t) - b * math.sin(t)
                        out[..., token, j + 1] = a * math.sin(t) + b * math.cos(t)
            return out
    """,
    "09_memory/loops_and_bisection": """
        def windowed_map_bytes(depth, heads, grid, window, bytes_per_element=4):
            rows, cols = grid
            if min(depth, heads, window, bytes_per_element, rows, cols) < 1 or rows % window or cols % window:
                raise ValueError("bad arguments")
            total = 0
            for _ in range((rows // window) * (cols // window)):   # one map per window
                total += (window * window) * (window * window)
            return depth * heads * total * bytes_per_element

        def largest_square_grid(budget_bytes, depth, heads, window=None, bytes_per_element=4):
            step = 1 if window is None else window

            def cost(side):
                if window is None:
                    return depth * heads * (side * side) ** 2 * bytes_per_element
                return windowed_map_bytes(depth, heads, (side, side), window, bytes_per_element)

            low, high = 0, 1
            while cost(high * step) <= budget_bytes:   # grow, then bisect over multiples of the step
                high *= 2
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if cost(middle * step) <= budget_bytes else (low, middle)
            return low * step
    """,
    "10_blocks/own_attention_and_layer_scale": """
        import torch
        import torch.nn.functional as F
        from torch import nn

        class _Attention(nn.Module):
            def __init__(self, dim, heads):
                super().__init__()
                if dim % heads:
                    raise ValueError("dim must be divisible by heads")
                self.heads = heads
                self.qkv = nn.Linear(dim, 3 * dim)
                self.proj = nn.Linear(dim, dim)

            def forward(self, x):
                b, n, d = x.shape
                q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
                return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))

        class _Mlp(nn.Module):
            def __init__(self, dim, hidden):
                super().__init__()
                self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

            def forward(self, x):
                return self.fc2(F.gelu(self.fc1(x)))

        class _Scale(nn.Module):
            def __init__(self, dim, value):
                super().__init__()
                self.gamma = nn.Parameter(value * torch.ones(dim))

            def forward(self, x):
                return self.gamma * x

        class ParallelBlock(nn.Module):
            def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None):
                super().__init__()
                self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
                self.attn = _Attention(dim, num_heads)
                self.mlp = _Mlp(dim, int(dim * mlp_ratio))
                scale = (lambda: _Scale(dim, init_values)) if init_values is not None else nn.Identity
                self.ls1, self.ls2 = scale(), scale()

            def forward(self, x):
                branches = [self.ls1(self.attn(self.norm1(x))), self.ls2(self.mlp(self.norm2(x)))]
                return x + sum(branches)
    """,
    "10_blocks/functional_layer_norm": """
        import torch
        import torch.nn.functional as F
        from torch import nn
        from vitcourse.models.attention import Attention
        from vitcourse.models.vit import Mlp

        class ParallelBlock(nn.Module):
            def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None):
                super().__init__()
                self.norm1 = nn.LayerNorm(dim, eps=1e-6)
                self.norm2 = nn.LayerNorm(dim, eps=1e-6)
                self.attn = Attention(dim, num_heads)
                self.mlp = Mlp(dim, int(dim * mlp_ratio))
                self.use_scale = init_values is not None
                if self.use_scale:
                    self.ls1 = nn.Module()
                    self.ls1.gamma = nn.Parameter(torch.full((dim,), float(init_values)))
                    self.ls2 = nn.Module()
                    self.ls2.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

            def forward(self, x):
                d = x.shape[-1]
                h1 = F.layer_norm(x, (d,), self.norm1.weight, self.norm1.bias, eps=1e-6)
                h2 = F.layer_norm(x, (d,), self.norm2.weight, self.norm2.bias, eps=1e-6)
                a, m = self.attn(h1), self.mlp(h2)
                if self.use_scale:
                    a, m = a * self.ls1.gamma, m * self.ls2.gamma
                return x + a + m
    """,
    "10_blocks/plain_module_boxes_and_functional_linear": """
        import torch
        import torch.nn.functional as F
        from torch import nn

        class ParallelBlock(nn.Module):
            def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None):
                super().__init__()
                if num_heads < 1 or dim % num_heads:
                    raise ValueError(f"{num_heads} heads do not divide {dim}")
                self.heads, hidden = num_heads, int(dim * mlp_ratio)
                self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
                self.attn, self.mlp, self.ls1, self.ls2 = nn.Module(), nn.Module(), nn.Module(), nn.Module()
                self.attn.qkv, self.attn.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
                self.mlp.fc1, self.mlp.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
                if init_values is not None:
                    self.ls1.gamma = nn.Parameter(init_values * torch.ones(dim))
                    self.ls2.gamma = nn.Parameter(init_values * torch.ones(dim))

            def forward(self, x):
                b, n, d = x.shape
                qkv = F.linear(self.norm1(x), self.attn.qkv.weight, self.attn.qkv.bias)
                q, k, v = qkv.view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
                a = self.attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
                m = self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))
                if hasattr(self.ls1, "gamma"):
                    a, m = a * self.ls1.gamma, m * self.ls2.gamma
                return x + a + m
    """,
    "11_distillation/float64_by_hand": """
        import torch

        def smooth_labels(labels, num_classes, epsilon):
            if epsilon < 0 or epsilon >= 1 or (labels < 0).any() or (labels >= num_classes).any():
                raise ValueError("bad labels or epsilon")
            targets = torch.full((len(labels), num_classes), epsilon / (num_classes - 1))
            targets[torch.arange(len(labels)), labels] = 1 - epsilon
            return targets

        def hard_distillation_loss(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1):
            k = cls_logits.shape[1]
            def ce(logits, classes):
                q = torch.full((len(classes), k), epsilon / (k - 1), dtype=torch.float64)
                q[torch.arange(len(classes)), classes] = 1 - epsilon
                return -(q * logits.double().log_softmax(dim=1)).sum(dim=1).mean()
            loss = (ce(cls_logits, labels) + ce(dist_logits, teacher_logits.argmax(dim=1))) / 2
            return loss.to(cls_logits.dtype)
    """,
    "11_distillation/logsumexp": """
        import torch
        import torch.nn.functional as F

        def smooth_labels(labels, num_classes, epsilon):
            if not 0.0 <= epsilon < 1.0:
                raise ValueError("epsilon")
            if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError("labels")
            hot = F.one_hot(labels, num_classes).float()
            return (1 - epsilon - epsilon / (num_classes - 1)) * hot + epsilon / (num_classes - 1)

        def hard_distillation_loss(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1):
            def ce(z, q):
                # sum_k q_k = 1: CE = logsumexp(z) - sum_k q_k z_k
                return (torch.logsumexp(z, dim=1) - (q.to(z.dtype) * z).sum(dim=1)).mean()
            k = cls_logits.shape[1]
            return 0.5 * ce(cls_logits, smooth_labels(labels, k, epsilon)) + 0.5 * ce(
                dist_logits, smooth_labels(teacher_logits.argmax(1), k, epsilon))
    """,
    "12_resolution/loop_and_lstsq": """
        import torch
        import torch.nn.functional as F

        def resize_matrix(old_size, new_size):
            if old_size < 1 or new_size < 1:
                raise ValueError("sizes must be positive")
            columns = []
            for j in range(old_size * old_size):
                basis = torch.zeros(1, 1, old_size, old_size, dtype=torch.float64)
                basis.view(-1)[j] = 1.0
                columns.append(F.interpolate(basis, size=(new_size, new_size), mode="bilinear").flatten())
            return torch.stack(columns, dim=1)

        def pi_resize_patch_weight(weight, new_size):
            if weight.ndim != 4 or weight.shape[2] != weight.shape[3]:
                raise ValueError("weight must be (D, C, p, p)")
            d, c, p, _ = weight.shape
            b = resize_matrix(p, new_size)
            # the minimum-norm solution of B^T w' = w, every kernel at once
            solved = torch.linalg.lstsq(b.T, weight.double().reshape(d * c, p * p).T, driver="gelsd").solution
            return solved.T.reshape(d, c, new_size, new_size).to(weight.dtype)
    """,
    "12_resolution/kronecker_in_float32": """
        import torch
        import torch.nn.functional as F

        def resize_matrix(old_size, new_size):
            if min(old_size, new_size) < 1:
                raise ValueError("sizes must be positive")
            # bilinear = linear along rows, then along columns: B is the Kronecker product
            one_d = F.interpolate(torch.eye(old_size, dtype=torch.float64)[:, None], size=new_size, mode="linear")
            a = one_d[:, 0].T  # (new, old)
            return torch.kron(a, a)

        def pi_resize_patch_weight(weight, new_size):
            if weight.dim() != 4 or weight.shape[-2] != weight.shape[-1]:
                raise ValueError("weight must be (D, C, p, p)")
            p = weight.shape[-1]
            b = resize_matrix(p, new_size).to(weight.dtype)
            kernels = weight.flatten(2) @ torch.linalg.pinv(b)
            return kernels.unflatten(2, (new_size, new_size))
    """,
    "13_segmentation/einops_and_confusion_matrix": """
        import torch
        import torch.nn.functional as F
        from einops import rearrange

        def upsampled_logits(tokens, weight, bias, grid_size, image_size):
            rows, cols = grid_size
            if tokens.shape[1] != rows * cols or weight.shape[-1] != tokens.shape[-1] or bias.shape != weight.shape[:1]:
                raise ValueError("grid or classifier does not fit the tokens")
            logits = torch.einsum("bnd,kd->bnk", tokens, weight) + bias
            grid = rearrange(logits, "b (h w) k -> b k h w", h=rows, w=cols)
            return F.interpolate(grid, size=image_size, mode="bilinear")

        def mean_iou_ignoring(pred, target, num_classes, ignore_index=255):
            if pred.shape != target.shape:
                raise ValueError("shapes differ")
            keep = target != ignore_index
            p, t = pred[keep], target[keep]
            if p.numel() and (min(p.min(), t.min()) < 0 or max(p.max(), t.max()) >= num_classes):
                raise ValueError("label out of range")
            confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64)
            confusion.index_put_((t, p), torch.ones(len(t), dtype=torch.float64), accumulate=True)
            hits = confusion.diagonal()
            union = confusion.sum(0) + confusion.sum(1) - hits
            iou = hits / union  # 0 / 0 is nan: the class is absent from both
            return float(torch.nanmean(iou)), iou
    """,
    "13_segmentation/resize_features_first_and_sets": """
        import math
        import torch
        import torch.nn.functional as F

        def upsampled_logits(tokens, weight, bias, grid_size, image_size):
            b, n, d = tokens.shape
            if n != grid_size[0] * grid_size[1]:
                raise ValueError("the grid does not hold the tokens")
            if weight.shape[1] != d:
                raise ValueError("weight width")
            # bilinear resizing is linear: resize the features, then classify every pixel
            features = tokens.transpose(1, 2).reshape(b, d, *grid_size).double()
            features = F.interpolate(features, size=tuple(image_size), mode="bilinear", align_corners=False)
            logits = torch.einsum("bdhw,kd->bkhw", features, weight.double()) + bias.double()[:, None, None]
            return logits.to(tokens.dtype)

        def mean_iou_ignoring(pred, target, num_classes, ignore_index=255):
            if tuple(pred.shape) != tuple(target.shape):
                raise ValueError("shapes differ")
            pairs = [(int(p), int(t)) for p, t in zip(pred.flatten().tolist(), target.flatten().tolist()) if t != ignore_index]
            if any(not (0 <= v < num_classes) for pair in pairs for v in pair):
                raise ValueError("label out of range")
            ious = []
            for k in range(num_classes):
                inter = sum(1 for p, t in pairs if p == k and t == k)
                union = sum(1 for p, t in pairs if p == k or t == k)
                ious.append(inter / union if union else math.nan)
            present = [v for v in ious if not math.isnan(v)]
            return sum(present) / len(present), torch.tensor(ious, dtype=torch.float64)
    """,
    "14_masking/sort_and_scatter": """
        import torch

        def shuffle_mask(tokens, noise, mask_ratio):
            if not (0.0 <= mask_ratio < 1.0) or tuple(noise.shape) != tuple(tokens.shape[:2]):
                raise ValueError("bad mask_ratio or noise")
            b, n, _ = tokens.shape
            keep = max(1, round(n * (1 - mask_ratio)))
            _, order = torch.sort(noise, dim=1)
            rows = torch.arange(b)[:, None]
            restore = torch.empty_like(order)
            restore[rows, order] = torch.arange(n).expand(b, n)  # the inverse permutation by scatter
            hidden = torch.ones(b, n, dtype=torch.bool)
            hidden[rows, order[:, :keep]] = False
            return tokens[rows, order[:, :keep]], hidden, restore

        def masked_patch_loss(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
            p = patch_size
            b, c, h, w = images.shape
            if pred.shape != (b, (h // p) * (w // p), c * p * p) or not bool(mask.any()):
                raise ValueError("bad pred or empty mask")
            total, count = pred.new_zeros(()), 0
            for i in range(b):
                for k in range(pred.shape[1]):
                    if not mask[i, k]:
                        continue
                    r, q = divmod(k, w // p)
                    t = images[i, :, r * p:(r + 1) * p, q * p:(q + 1) * p].reshape(-1).double()
                    if norm_pix:
                        m = t.mean()
                        t = (t - m) / (((t - m) ** 2).sum() / (t.numel() - 1) + eps) ** 0.5
                    total = total + ((pred[i, k].double() - t) ** 2).mean().to(pred.dtype)
                    count += 1
            return total / count
    """,
    "14_masking/einops_and_var_mean": """
        import torch
        from einops import rearrange

        def shuffle_mask(tokens, noise, mask_ratio):
            if tokens.ndim != 3 or noise.shape != tokens.shape[:2]:
                raise ValueError("noise must be (B, N)")
            if mask_ratio < 0 or mask_ratio >= 1:
                raise ValueError("mask_ratio must be in [0, 1)")
            n = tokens.shape[1]
            keep = max(1, int(n * (1 - mask_ratio) + 0.5))
            order = noise.argsort(dim=-1)
            restore = order.argsort(dim=-1)
            visible = torch.stack([t[o[:keep]] for t, o in zip(tokens, order)])
            return visible, restore >= keep, restore

        def masked_patch_loss(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
            if images.shape[-1] % patch_size or images.shape[-2] % patch_size:
                raise ValueError("image size")
            target = rearrange(images, "b c (h p) (w q) -> b (h w) (c p q)", p=patch_size, q=patch_size)
            if target.shape != pred.shape or mask.sum() == 0:
                raise ValueError("pred shape or empty mask")
            if norm_pix:
                var, mean = torch.var_mean(target, dim=-1, keepdim=True, correction=1)
                target = (target - mean) * torch.rsqrt(var + eps)
            errors = (pred - target).pow(2).mean(-1)
            weights = mask.to(pred.dtype)
            return torch.einsum("bn,bn->", errors, weights) / weights.sum()
    """,
    "15_contrastive/loops_in_float64": """
        import math
        import torch
        import torch.nn.functional as F

        def multi_positive_clip_loss(image_emb, text_emb, labels, log_scale):
            if image_emb.ndim != 2 or image_emb.shape != text_emb.shape or labels.shape != (image_emb.shape[0],):
                raise ValueError("embeddings must be (B, E) and labels (B,)")
            x = image_emb.double() / image_emb.double().norm(dim=1, keepdim=True)
            y = text_emb.double() / text_emb.double().norm(dim=1, keepdim=True)
            s = torch.minimum(torch.as_tensor(log_scale, dtype=torch.float64).exp(), torch.tensor(100.0, dtype=torch.float64))
            z = s * (x @ y.T)
            n = len(labels)
            total = torch.zeros((), dtype=torch.float64)
            for i in range(n):
                pos = (labels == labels[i]).nonzero().flatten()
                total = total - torch.log_softmax(z[i], 0)[pos].mean() - torch.log_softmax(z[:, i], 0)[pos].mean()
            return (total / (2 * n)).to(image_emb.dtype)

        def sigmoid_pair_loss(image_emb, text_emb, labels, log_scale, bias):
            if image_emb.ndim != 2 or image_emb.shape != text_emb.shape or labels.shape != (image_emb.shape[0],):
                raise ValueError("embeddings must be (B, E) and labels (B,)")
            cos = F.cosine_similarity(image_emb[:, None], text_emb[None], dim=-1)
            z = torch.exp(torch.as_tensor(log_scale, dtype=image_emb.dtype)) * cos + bias
            match = (labels[:, None] == labels[None]).to(z.dtype)
            # log sigmoid(+-z) is the binary cross-entropy with 0/1 targets
            return F.binary_cross_entropy_with_logits(z, match, reduction="sum") / len(labels)
    """,
    "15_contrastive/logsumexp_and_softplus": """
        import math
        import torch
        import torch.nn.functional as F

        def _check(image_emb, text_emb, labels):
            if image_emb.dim() != 2 or tuple(text_emb.shape) != tuple(image_emb.shape) or labels.numel() != len(image_emb) or labels.dim() != 1:
                raise ValueError("bad shapes")

        def multi_positive_clip_loss(image_emb, text_emb, labels, log_scale):
            _check(image_emb, text_emb, labels)
            a, b = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
            z = torch.as_tensor(log_scale).to(a).clamp(max=math.log(100)).exp() * a @ b.T
            pos = (labels[:, None] == labels[None]).to(z.dtype)
            k = pos.sum(1)
            # a cross-entropy with a uniform target over P: logsumexp minus the mean positive logit
            rows = z.logsumexp(1) - (z * pos).sum(1) / k
            cols = z.logsumexp(0) - (z * pos).sum(0) / k
            return (rows.mean() + cols.mean()) / 2

        def sigmoid_pair_loss(image_emb, text_emb, labels, log_scale, bias):
            _check(image_emb, text_emb, labels)
            a, b = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
            z = torch.as_tensor(log_scale).to(a).exp() * (a @ b.T) + torch.as_tensor(bias).to(a)
            sign = 1 - 2 * (labels[:, None] != labels[None]).to(z.dtype)
            return F.softplus(-sign * z).sum() / z.shape[0]
    """,
    "16_generation/loops_and_sort": """
        import math
        import torch

        def generation_mask(order, block_size=1):
            n = order.shape[0]
            if block_size < 1:
                raise ValueError("block_size must be >= 1")
            if sorted(int(p) for p in order) != list(range(n)):
                raise ValueError("order must be a permutation")
            when = [0] * n
            for t, p in enumerate(order.tolist()):
                when[p] = t // block_size
            return torch.tensor([[when[q] <= when[p] for q in range(n)] for p in range(n)], dtype=torch.bool)

        def next_token_probs(logits, temperature=1.0, top_k=None):
            if temperature < 0 or (top_k is not None and top_k < 1):
                raise ValueError("bad temperature or top_k")
            k = logits.shape[-1] if top_k is None else min(top_k, logits.shape[-1])
            if temperature == 0:
                k = 1
            values, index = logits.sort(dim=-1, descending=True)
            kept = torch.ones_like(values[:, :1]) if k == 1 else torch.softmax(values[:, :k] / temperature, dim=-1)
            return torch.zeros_like(logits).scatter(-1, index[:, :k], kept)
    """,
    "16_generation/scatter_and_log_space": """
        import torch

        def generation_mask(order, block_size=1):
            n = order.numel()
            if block_size < 1 or order.dim() != 1 or not torch.equal(torch.sort(order).values, torch.arange(n)):
                raise ValueError("bad order or block_size")
            step = torch.zeros(n, dtype=torch.long).scatter_(0, order, torch.arange(n))
            blocks = torch.div(step, block_size, rounding_mode="floor")
            return ~(blocks.unsqueeze(0) > blocks.unsqueeze(1))  # not blocked: q's block is not after p's

        def next_token_probs(logits, temperature=1.0, top_k=None):
            if temperature < 0:
                raise ValueError("temperature must be >= 0")
            if top_k is not None and top_k <= 0:
                raise ValueError("top_k must be >= 1")
            if temperature == 0:
                return (logits == logits.max(dim=1, keepdim=True).values).to(logits.dtype)
            z = logits.double() / temperature
            if top_k is not None and top_k < z.shape[1]:
                z = z.scatter(1, z.argsort(dim=1, descending=True)[:, top_k:], float("-inf"))
            return (z - z.logsumexp(dim=1, keepdim=True)).exp().to(logits.dtype)
    """,
    "01_patches/numpy_sliding_window_view": """
        import torch
        import torch.nn.functional as F
        import numpy as np
        def overlapping_patches(images, patch_size, stride):
            B, C, H, W = images.shape
            p, s = int(patch_size), int(stride)
            if s < 1 or p > H or p > W:
                raise ValueError(f"p={p} s={s} for {H}x{W}")
            a = images.detach().cpu().numpy()
            v = np.lib.stride_tricks.sliding_window_view(a, (p, p), axis=(2, 3))[:, :, ::s, ::s]  # B C R K p p
            v = v.transpose(0, 2, 3, 1, 4, 5)
            out = np.ascontiguousarray(v).reshape(B, -1, C * p * p)
            return torch.from_numpy(out).to(images.dtype)
        def linear_to_conv_weight(weight, patch_size):
            D, n = weight.shape
            p = patch_size
            if n % (p * p):
                raise ValueError("in-features")
            w = weight.detach().numpy().reshape(D, p, p, n // (p * p)).transpose(0, 3, 1, 2)
            return torch.tensor(np.ascontiguousarray(w), dtype=weight.dtype)
    """,
    "05_positions/complex_rotation": """
        import torch
        import torch.nn.functional as F
        def rope_2d(x, grid, temperature=10000.0):
            rows, cols = grid
            N, D = x.shape[-2:]
            if D <= 0 or D % 4: raise ValueError(f"D={D}")
            if N != rows * cols: raise ValueError("N")
            f = D // 4
            w = temperature ** (-torch.arange(f, dtype=torch.float64) / f)
            r = torch.arange(rows, dtype=torch.float64).repeat_interleave(cols)
            c = torch.arange(cols, dtype=torch.float64).repeat(rows)
            ang = torch.cat([c[:, None] * w, r[:, None] * w], dim=1)        # (N, D/2)
            z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], D // 2, 2).contiguous())
            z = z * torch.polar(torch.ones_like(ang), ang)
            return torch.view_as_real(z).reshape(x.shape).to(x.dtype)
    """,
    "12_resolution/numpy_kron_and_lstsq": """
        import torch
        import torch.nn.functional as F
        import numpy as np
        def _interp_1d(p, n):
            # the 1-D bilinear (linear) resize matrix, half-pixel centres, edge clamped (align_corners=False)
            m = np.zeros((n, p))
            for i in range(n):
                x = (i + 0.5) * p / n - 0.5
                x = max(x, 0.0)
                x0 = min(int(np.floor(x)), p - 1)
                x1 = min(x0 + 1, p - 1)
                f = x - x0
                m[i, x0] += 1 - f
                m[i, x1] += f
            return m
        def resize_matrix(old_size, new_size):
            if min(old_size, new_size) < 1: raise ValueError("too small")
            a = _interp_1d(old_size, new_size)
            return torch.from_numpy(np.kron(a, a))
        def pi_resize_patch_weight(weight, new_size):
            if weight.ndim != 4 or weight.shape[2] != weight.shape[3]: raise ValueError("not square")
            D, C, p, _ = weight.shape
            Bm = resize_matrix(p, new_size).numpy()
            w = weight.detach().double().reshape(-1, p * p).numpy().T        # (pp, DC)
            sol = np.linalg.lstsq(Bm.T, w, rcond=None)[0]                    # (nn, DC), min-norm
            return torch.from_numpy(sol.T.copy()).reshape(D, C, new_size, new_size).to(weight.dtype)
    """,
    "13_segmentation/confusion_matrix_by_bincount": """
        import torch
        import torch.nn.functional as F
        def upsampled_logits(tokens, weight, bias, grid_size, image_size):
            B, N, D = tokens.shape
            rows, cols = grid_size
            if rows * cols != N: raise ValueError("grid")
            if weight.dim() != 2 or weight.shape[1] != D or bias.shape != (weight.shape[0],): raise ValueError("classifier")
            logits = torch.einsum("bnd,kd->bkn", tokens, weight) + bias[:, None]
            maps = logits.reshape(B, -1, rows, cols)
            return F.interpolate(maps, size=tuple(image_size), mode="bilinear", align_corners=False)
        def mean_iou_ignoring(pred, target, num_classes, ignore_index=255):
            if pred.shape != target.shape: raise ValueError("shapes")
            K = num_classes
            keep = target != ignore_index
            if ((pred < 0) | (pred >= K)).any(): raise ValueError("pred labels")
            if ((target[keep] < 0) | (target[keep] >= K)).any(): raise ValueError("target labels")
            p, t = pred[keep].long(), target[keep].long()
            conf = torch.bincount(t * K + p, minlength=K * K).reshape(K, K).double()
            inter = conf.diag()
            union = conf.sum(0) + conf.sum(1) - inter
            iou = torch.where(union > 0, inter / union.clamp(min=1), torch.tensor(float("nan"), dtype=torch.float64))
            return float(iou[~iou.isnan()].mean()), iou
    """,
    "16_generation/numpy_loops": """
        import torch
        import torch.nn.functional as F
        import numpy as np
        def generation_mask(order, block_size=1):
            o = order.tolist()
            N = len(o)
            if block_size < 1 or sorted(o) != list(range(N)): raise ValueError("bad order or block size")
            when = {pos: t // block_size for t, pos in enumerate(o)}
            m = np.zeros((N, N), dtype=bool)
            for p in range(N):
                for q in range(N):
                    m[p, q] = when[q] <= when[p]
            return torch.from_numpy(m)
        def next_token_probs(logits, temperature=1.0, top_k=None):
            if temperature < 0 or (top_k is not None and top_k < 1): raise ValueError("bad")
            a = logits.detach().double().numpy()
            out = np.zeros_like(a)
            for i, row in enumerate(a):
                idx = np.argsort(-row, kind="stable")
                keep = idx if top_k is None else idx[:top_k]
                if temperature == 0:
                    out[i, idx[0]] = 1.0
                    continue
                z = row[keep] / temperature
                z = np.exp(z - z.max())
                out[i, keep] = z / z.sum()
            return torch.from_numpy(out).to(logits.dtype)
    """,
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_submissions_in_other_styles_score_full_marks(name):
    exercise = name.split("/")[0]
    for seed in SEEDS:
        score, max_score, results = grade_source(exercise, CORRECT[name], seed)
        assert score == max_score, f"{name}, seed {seed}:\n{_report(results)}"


# ---- wrong submissions: must lose points ----------------------------------------------------

WRONG = {
    # the stride ignored below 1: no ValueError for stride 0 (range() raises its own)
    "01_patches/no_stride_check": (
        """
        import torch

        def overlapping_patches(images, patch_size, stride):
            b, c, h, w = images.shape
            p = patch_size
            if p > h or p > w:
                raise ValueError("too large")
            windows = [images[:, :, i:i + p, j:j + p].reshape(b, -1)
                       for i in range(0, h - p + 1, max(stride, 1)) for j in range(0, w - p + 1, max(stride, 1))]
            return torch.stack(windows, dim=1)
        """,
        {"test_rejects_what_has_no_window"},
    ),
    # the conversion done for (C, p, p) in, (p, p, C) out: the reverse of what is asked
    "01_patches/converted_the_wrong_way": (
        """
        def linear_to_conv_weight(weight, patch_size):
            d, n = weight.shape
            p = patch_size
            if n % (p * p):
                raise ValueError("bad width")
            return weight.reshape(d, n // (p * p), p, p).permute(0, 2, 3, 1).reshape(d, n // (p * p), p, p)
        """,
        {"test_converted_weight", "test_convolution_gives_the_linear_tokens"},
    ),
    # the old exercise's answer: the patch mean's formula, whatever the filter
    "02_patch_snr/the_page_s_formula": (
        """
        import math
        import torch

        def filter_snr(weights, template, noise_std):
            if noise_std <= 0:
                raise ValueError("noise_std must be positive")
            h, w = weights.shape[-2:]
            shift = (weights * template).sum(dim=(-2, -1))
            return shift / (noise_std / math.sqrt(h * w))
        """,
        {"test_random_filters", "test_the_matched_filter", "test_the_filter_s_scale_does_not_matter"},
    ),
    # the absolute value of the response taken: a filter of the wrong sign looks as good
    "02_patch_snr/absolute_response": (
        """
        import torch

        def filter_snr(weights, template, noise_std):
            if noise_std <= 0:
                raise ValueError("noise_std must be positive")
            norms = weights.square().sum(dim=(-2, -1)).sqrt()
            if (norms == 0).any():
                raise ValueError("zeros")
            return (weights * template).sum(dim=(-2, -1)).abs() / (noise_std * norms)
        """,
        {"test_the_filter_s_scale_does_not_matter"},
    ),
    # the old exercise's answer: the weights returned instead of the row statistic
    "03_attention/weights_instead_of_lse": (
        """
        import math
        import torch

        def partial_attention(q, k, v, tau=None):
            tau = math.sqrt(q.shape[-1]) if tau is None else tau
            if q.shape[-1] != k.shape[-1] or tau <= 0:
                raise ValueError("bad input")
            weights = torch.softmax(q @ k.transpose(-2, -1) / tau, dim=-1)
            return weights @ v, weights
        """,
        {"test_attention_and_row_statistic", "test_scores_beyond_exp", "test_default_temperature",
         "test_one_query_in_float64"},
    ),
    # the merged statistic not updated: the first block's lse passed on
    "03_attention/merge_keeps_lse_a": (
        """
        import torch

        def merge_attention(out_a, lse_a, out_b, lse_b):
            if out_a.shape != out_b.shape or lse_a.shape != lse_b.shape:
                raise ValueError("shapes do not match")
            total = torch.logaddexp(lse_a, lse_b)
            out = torch.exp(lse_a - total)[..., None] * out_a + torch.exp(lse_b - total)[..., None] * out_b
            return out, lse_a
        """,
        {"test_merged_equals_attention_over_all_keys", "test_far_apart_row_statistics",
         "test_three_blocks_in_either_order"},
    ),
    # no validation: a negative tau flips the softmax instead of raising
    "03_attention/no_validation": (
        """
        import math
        import torch

        def partial_attention(q, k, v, tau=None):
            scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if tau is None else tau)
            return torch.softmax(scores, dim=-1) @ v, torch.logsumexp(scores, dim=-1)
        """,
        {"test_rejects_bad_tau_and_widths"},
    ),
    # q split as (d, heads) instead of (heads, d): the heads' features interleaved
    "04_mhsa/query_heads_strided": (
        """
        import torch
        from torch import nn

        class GroupedQueryAttention(nn.Module):
            def __init__(self, dim, num_heads, num_kv_heads, qkv_bias=True):
                super().__init__()
                if dim % num_heads or num_heads % num_kv_heads:
                    raise ValueError("indivisible")
                self.h, self.g, self.d = num_heads, num_kv_heads, dim // num_heads
                self.q = nn.Linear(dim, dim, bias=qkv_bias)
                self.kv = nn.Linear(dim, 2 * num_kv_heads * self.d, bias=qkv_bias)
                self.proj = nn.Linear(dim, dim)

            def forward(self, x):
                b, n, dim = x.shape
                q = self.q(x).reshape(b, n, self.d, self.h).permute(0, 3, 1, 2)
                k, v = self.kv(x).reshape(b, n, 2, self.g, self.d).permute(2, 0, 3, 1, 4)
                k, v = k.repeat_interleave(self.h // self.g, 1), v.repeat_interleave(self.h // self.g, 1)
                w = torch.softmax(q @ k.transpose(-2, -1) / self.d**0.5, dim=-1)
                return self.proj((w @ v).transpose(1, 2).reshape(b, n, dim))
        """,
        {"test_grouped_forward", "test_multi_query_forward", "test_one_group_per_head"},
    ),
    # |G * A| instead of its positive part: what lowers the class counts as relevant too
    "06_rollout/absolute_value": (
        """
        import torch

        def gradient_rollout(attentions, gradients):
            if not attentions or len(attentions) != len(gradients):
                raise ValueError("bad layers")
            b, _, n, _ = attentions[0].shape
            r = torch.eye(n, dtype=attentions[0].dtype).repeat(b, 1, 1)
            for a, g in zip(attentions, gradients):
                r = r + (g * a).abs().mean(1) @ r
            return r
        """,
        {"test_random_layers", "test_two_layers_in_float64", "test_one_layer", "test_gradients_that_lower_the_class"},
    ),
    # an object counted once per distinct id whether or not its partner is there, and the mask's
    # background left in: the local view
    "07_long_range/background_and_lone": (
        """
        import torch

        def same_object_mask(ids):
            if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.dtype != torch.long or (ids < 0).any():
                raise ValueError("bad ids")
            return ids.unsqueeze(2) == ids.unsqueeze(1)

        def count_pairs(ids):
            if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.dtype != torch.long or (ids < 0).any():
                raise ValueError("bad ids")
            return torch.tensor([len(row.unique()) - int((row == 0).any()) for row in ids])
        """,
        {"test_mask_of_random_scenes", "test_mask_of_background", "test_count_of_random_scenes",
         "test_halves_far_apart", "test_nothing_to_count"},
    ),
    # Post-LN written as Pre-LN whatever norm_first says
    "10_blocks/layer_scale_always_on": (
        """
        from torch import nn
        from vitcourse.models.attention import Attention
        from vitcourse.models.vit import LayerScale, Mlp

        class ParallelBlock(nn.Module):
            def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None):
                super().__init__()
                self.norm1 = nn.LayerNorm(dim, eps=1e-6)
                self.attn = Attention(dim, num_heads)
                self.ls1 = LayerScale(dim, init_values or 1.0)
                self.norm2 = nn.LayerNorm(dim, eps=1e-6)
                self.mlp = Mlp(dim, int(dim * mlp_ratio))
                self.ls2 = LayerScale(dim, init_values or 1.0)

            def forward(self, x):
                return x + self.ls1(self.attn(self.norm1(x))) + self.ls2(self.mlp(self.norm2(x)))
        """,
        {"test_forward_without_layer_scale", "test_timm_parameter_names"},
    ),
    "10_blocks/mlp_ratio_rounded_up": (
        """
        import math
        from torch import nn
        from vitcourse.models.attention import Attention
        from vitcourse.models.vit import LayerScale, Mlp

        class ParallelBlock(nn.Module):
            def __init__(self, dim, num_heads, mlp_ratio=4.0, init_values=None):
                super().__init__()
                self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
                self.attn = Attention(dim, num_heads)
                self.mlp = Mlp(dim, math.ceil(dim * mlp_ratio) + 1)
                self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
                self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

            def forward(self, x):
                return x + self.ls1(self.attn(self.norm1(x))) + self.ls2(self.mlp(self.norm2(x)))
        """,
        {"test_forward_without_layer_scale", "test_timm_parameter_names"},
    ),
    # the teacher's logits as targets: no argmax, no softmax
    "11_distillation/teacher_logits_as_targets": (
        """
        import torch.nn.functional as F

        def hard_distillation_loss(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1):
            k = cls_logits.shape[1]
            hot = F.one_hot(labels, k).to(cls_logits.dtype)
            targets = hot * (1 - epsilon) + (1 - hot) * epsilon / (k - 1)
            return (F.cross_entropy(cls_logits, targets) + F.cross_entropy(dist_logits, teacher_logits)) / 2
        """,
        {"test_smoothed_hard_distillation", "test_no_smoothing_is_deit_hard_loss", "test_default_epsilon_and_float64"},
    ),
    # float64 logits answered in float32
    "11_distillation/always_float32": (
        """
        import torch
        import torch.nn.functional as F

        def hard_distillation_loss(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1):
            k = cls_logits.shape[1]
            def targets(classes):
                hot = F.one_hot(classes, k).float()
                return hot * (1 - epsilon) + (1 - hot) * epsilon / (k - 1)
            c, d = cls_logits.float(), dist_logits.float()
            return (F.cross_entropy(c, targets(labels)) + F.cross_entropy(d, targets(teacher_logits.argmax(1)))) / 2
        """,
        {"test_default_epsilon_and_float64"},
    ),
    # nearest-neighbour resizing where bilinear was asked
    "12_resolution/nearest": (
        """
        import torch
        import torch.nn.functional as F

        def resize_matrix(old_size, new_size):
            if old_size < 1 or new_size < 1:
                raise ValueError("sizes must be positive")
            basis = torch.eye(old_size**2, dtype=torch.float64).reshape(-1, 1, old_size, old_size)
            return F.interpolate(basis, size=(new_size, new_size), mode="nearest").flatten(1).T
        """,
        {"test_enlarging", "test_shrinking"},
    ),
    # right for enlarging, but no check of the kernel's shape
    "12_resolution/no_validation": (
        """
        import torch
        import torch.nn.functional as F

        def pi_resize_patch_weight(weight, new_size):
            p = weight.shape[-1]
            basis = torch.eye(p * p, dtype=torch.float64).reshape(-1, 1, p, p)
            b = F.interpolate(basis, size=(new_size, new_size), mode="bilinear").flatten(1).T
            kernels = weight.double().flatten(-2) @ torch.linalg.pinv(b)
            return kernels.unflatten(-1, (new_size, new_size)).to(weight.dtype)
        """,
        {"test_rejects_what_is_not_square_kernels"},
    ),
    # the mean IoU handed back as a 0-d tensor, and no error for labels out of range
    "13_segmentation/tensor_miou_no_checks": (
        """
        import torch

        def mean_iou_ignoring(pred, target, num_classes, ignore_index=255):
            keep = target != ignore_index
            p, t = pred[keep], target[keep]
            iou = torch.stack([((p == k) & (t == k)).sum() / ((p == k) | (t == k)).sum() for k in range(num_classes)])
            iou = iou.double()
            return iou.nanmean(), iou
        """,
        {"test_ignored_pixels_and_an_absent_class", "test_accumulated_over_the_batch",
         "test_class_predicted_but_absent_scores_zero", "test_rejects_bad_labels_and_shapes"},
    ),
    # float64 tokens answered in float32
    "13_segmentation/always_float32": (
        """
        import torch.nn.functional as F

        def upsampled_logits(tokens, weight, bias, grid_size, image_size):
            rows, cols = grid_size
            if tokens.shape[1] != rows * cols or weight.shape[1] != tokens.shape[2]:
                raise ValueError("bad grid or weight")
            logits = F.linear(tokens.float(), weight.float(), bias.float())
            grid = logits.transpose(1, 2).reshape(len(tokens), -1, rows, cols)
            return F.interpolate(grid, size=tuple(image_size), mode="bilinear")
        """,
        {"test_any_image_size_in_float64"},
    ),
    # MAE's released code returns the mask as floats (0 kept, 1 hidden); the contract asks for bool
    "14_masking/float_mask": (
        """
        import torch

        def shuffle_mask(tokens, noise, mask_ratio):
            if not 0 <= mask_ratio < 1 or noise.shape != tokens.shape[:2]:
                raise ValueError("bad mask_ratio or noise")
            b, n, d = tokens.shape
            keep = max(1, round(n * (1 - mask_ratio)))
            shuffle = noise.argsort(1)
            restore = shuffle.argsort(1)
            mask = torch.ones(b, n)
            mask[:, :keep] = 0
            return tokens.gather(1, shuffle[:, :keep, None].expand(-1, -1, d)), mask.gather(1, restore), restore
        """,
        {"test_shuffled_visible_mask_and_restore", "test_nothing_hidden_in_float64", "test_one_patch_kept"},
    ),
    # float64 answered in float32, and no check of pred's shape
    "14_masking/float32_loss_no_checks": (
        """
        import torch.nn.functional as F

        def masked_patch_loss(pred, images, mask, patch_size, norm_pix=True, eps=1e-6):
            target = F.unfold(images.float(), patch_size, stride=patch_size).transpose(1, 2)
            if norm_pix:
                target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + eps).sqrt()
            return ((pred.float() - target) ** 2).mean(-1)[mask].mean()
        """,
        {"test_flat_patches_another_eps_float64", "test_rejects_bad_shapes_and_nothing_hidden"},
    ),
    # rows in the first half, columns in the second (the convention swapped)
    "05_positions/column_major_tokens": (
        """
        import torch

        def rope_2d(x, grid, temperature=10000.0):
            rows, cols = grid
            dim = x.shape[-1]
            if dim <= 0 or dim % 4 or x.shape[-2] != rows * cols:
                raise ValueError("bad width or grid")
            k = dim // 4
            omega = temperature ** (-torch.arange(k, dtype=torch.float64) / k)
            c, r = torch.meshgrid(torch.arange(cols, dtype=torch.float64),
                                  torch.arange(rows, dtype=torch.float64), indexing="ij")  # column-major: wrong
            angles = torch.cat([c.reshape(-1, 1) * omega, r.reshape(-1, 1) * omega], dim=-1)
            a, b = x.double().reshape(*x.shape[:-1], 2 * k, 2).unbind(-1)
            out = torch.stack([a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()], dim=-1)
            return out.reshape(x.shape).to(x.dtype)
        """,
        {"test_random_tokens_non_square_grid", "test_heads_axis_and_float64", "test_other_temperature"},
    ),
    # the FLOPs as a float (the patches counted with a true division), not an exact int
    "08_cost/float_result": (
        """
        def vit_forward_flops(image_size, patch_size, dim, depth, num_classes, in_chans=3, mlp_ratio=4, prefix_tokens=1):
            h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
            if h % patch_size or w % patch_size or dim < 1:
                raise ValueError("bad sizes")
            n = h * w / patch_size**2
            tokens = n + prefix_tokens
            hidden = int(dim * mlp_ratio)
            block = 4 * tokens * dim**2 + 2 * tokens**2 * dim + 2 * tokens * dim * hidden
            return 2.0 * (n * in_chans * patch_size**2 * dim + depth * block + dim * num_classes)
        """,
        {"test_square_images_with_a_class_token", "test_registers_on_a_rectangle", "test_no_prefix_and_no_head",
         "test_vit_base_at_two_resolutions"},
    ),
    # SupCon's "in" form: the log of the summed probability of the positives, not the mean of their logs
    "15_contrastive/pooled_positives": (
        """
        import math
        import torch
        import torch.nn.functional as F

        def multi_positive_clip_loss(image_emb, text_emb, labels, log_scale):
            if image_emb.dim() != 2 or image_emb.shape != text_emb.shape or labels.shape != image_emb.shape[:1]:
                raise ValueError("bad shapes")
            z = torch.as_tensor(log_scale).to(image_emb).clamp(max=math.log(100)).exp() * (
                F.normalize(image_emb, dim=1) @ F.normalize(text_emb, dim=1).T)
            pos = labels[:, None] == labels[None]
            k = pos.sum(1).to(z.dtype)
            rows = -(z.softmax(1) * pos).sum(1).div(k).log()
            cols = -(z.softmax(0) * pos).sum(0).div(k).log()
            return (rows.mean() + cols.mean()) / 2
        """,
        {"test_repeated_labels", "test_scale_capped_at_100", "test_float64_and_tensor_scale"},
    ),
    # right for matching inputs, but torch's own shape errors instead of ValueError
    "15_contrastive/no_validation": (
        """
        import torch
        import torch.nn.functional as F

        def sigmoid_pair_loss(image_emb, text_emb, labels, log_scale, bias):
            z = torch.as_tensor(log_scale).exp() * (F.normalize(image_emb, dim=1) @ F.normalize(text_emb, dim=1).T) + bias
            sign = (labels[:, None] == labels[None]).to(z.dtype) * 2 - 1
            return -F.logsigmoid(sign * z).sum() / len(z)
        """,
        {"test_sigmoid_rejects_mismatched_inputs"},
    ),
    # off by one: each position also sees the position generated right after it
    "16_generation/sees_the_next_step": (
        """
        import torch

        def generation_mask(order, block_size=1):
            n = len(order)
            if block_size < 1 or sorted(order.tolist()) != list(range(n)):
                raise ValueError("bad order or block_size")
            block = order.argsort() // block_size
            return block[None, :] <= block[:, None] + 1
        """,
        {"test_random_order", "test_blocks_of_steps", "test_raster_order_is_causal"},
    ),
    # right distributions, but no checks: a negative temperature and top_k 0 do not raise ValueError
    "16_generation/no_validation": (
        """
        import torch

        def next_token_probs(logits, temperature=1.0, top_k=None):
            if temperature == 0:
                return torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
            z = logits / temperature
            if top_k is not None and top_k < z.shape[1]:
                z = z.masked_fill(z < z.topk(max(top_k, 1), dim=1).values[:, -1:], float("-inf"))
            return z.softmax(dim=1)
        """,
        {"test_rejects_bad_temperature_or_top_k"},
    ),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_submissions_lose_points(name):
    exercise = name.split("/")[0]
    source, must_fail = WRONG[name]
    for seed in SEEDS:
        score, max_score, results = grade_source(exercise, source, seed)
        failed = {r.name for r in results if r.status != "passed"}
        assert must_fail <= failed, f"{name}, seed {seed}: expected {sorted(must_fail)} to fail:\n{_report(results)}"
        assert not any(r.status == "error" for r in results), _report(results)
        assert score < max_score


# ---- handing in the package's own answer: zero --------------------------------------------


def _reference_submissions(exercise: str) -> dict[str, str]:
    """Submissions that answer with the package's references: imported under the student's
    name, or wrapped in a function (for a class: subclassed)."""
    answers = load_hidden_suite(HIDDEN, exercise).reference_answers
    alias, wrapped = [], []
    for student_name, path in answers.items():
        module, _, attribute = path.rpartition(".")
        alias.append(f"from {module} import {attribute} as {student_name}")
        wrapped.append(f"import {module}")
        if isinstance(getattr(importlib.import_module(module), attribute), type):
            wrapped.append(f"class {student_name}({path}):\n    pass")
        else:
            wrapped.append(f"def {student_name}(*args, **kwargs):\n    return {path}(*args, **kwargs)")
    return {"alias": "\n".join(alias), "wrapped": "\n".join(wrapped)}


@pytest.mark.parametrize("style", ["alias", "wrapped"])
@pytest.mark.parametrize("exercise", EXERCISES)
def test_the_package_reference_scores_zero(exercise, style):
    source = _reference_submissions(exercise)[style]
    score, max_score, results = grade_source(exercise, source)
    assert score == 0 < max_score, f"{source}\n{_report(results)}"
    assert all(r.status == "failed" and "own answer to this exercise" in r.feedback for r in results), \
        f"{source}\n{_report(results)}"


# ---- the real grader, sandboxed --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("exercise", ["01_patches", "10_blocks"])  # a function and a module
def test_sandboxed_grader_scores_solution_and_stub(exercise, tmp_path):
    """`vitcourse grade` on the solution and the generated exercise, in the sandbox."""
    from vitcourse.grading.batch import grade
    from vitcourse.grading.trusted.gradebook import Gradebook

    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for who, folder in (("solution", "solutions"), ("stub", "exercises")):
        (submissions / f"{who}.ipynb").write_bytes((ROOT / folder / f"{exercise}.ipynb").read_bytes())
    # the generated exercise with the package's answer pasted in after the stubs
    notebook = nbformat.read(ROOT / "exercises" / f"{exercise}.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(_reference_submissions(exercise)["alias"]))
    nbformat.write(notebook, submissions / "reference.ipynb")
    out = tmp_path / "out"
    who = ("solution", "stub", "reference")
    summary = grade(exercise, [(name, submissions / f"{name}.ipynb") for name in who],
                    out, jobs=1, hidden_dir=HIDDEN, seed=7, progress=False)
    assert "1 called the package's reference answer" in summary, summary
    book = Gradebook(out / "gradebook.sqlite")
    try:
        solution, stub, reference = (book.results_json(name, exercise) for name in who)
    finally:
        book.close()
    max_score = sum(t["max_score"] for t in solution["tests"])
    assert solution["score"] == max_score > 0, json.dumps(solution, indent=1)
    assert stub["score"] == 0, json.dumps(stub, indent=1)
    assert all(t["status"] == "failed" for t in stub["tests"]), json.dumps(stub, indent=1)
    assert reference["score"] == 0, json.dumps(reference, indent=1)
    assert all("own answer to this exercise" in t["output"] for t in reference["tests"]), \
        json.dumps(reference, indent=1)
    assert "called the package's own answer" in reference["output"]
    assert "own answer" not in solution["output"] + stub["output"]
