"""Exercise 04 (mhsa): grouped-query attention, which the chapter pages do not print.

The page *Self-attention* prints the course's multi-head ``Attention``: one ``qkv`` layer, every
query head with its own key and value head. The exercise asks for the variant in which groups of
query heads share one key head and one value head (grouped-query attention, GQA; with one group,
multi-query attention, MQA), which shrinks what a decoder must cache per token by the group size:

- ``GroupedQueryAttention(dim, num_heads, num_kv_heads, qkv_bias=True)``: ``(B, N, D)`` -> same.
  ``q``: ``nn.Linear(D, D, bias=qkv_bias)``, ``num_heads`` contiguous chunks of ``d = D // num_heads``;
  ``kv``: ``nn.Linear(D, 2 * num_kv_heads * d, bias=qkv_bias)``, first all the keys, then all the
  values, each ``num_kv_heads`` contiguous chunks of ``d``; ``proj``: ``nn.Linear(D, D)``. Query
  head ``h`` attends with key and value head ``h // (num_heads // num_kv_heads)`` (consecutive
  query heads form a group), at ``tau = sqrt(d)``; the heads' outputs are concatenated in order
  and mixed by ``proj``. ``ValueError`` when ``num_heads`` does not divide ``D`` or
  ``num_kv_heads`` does not divide ``num_heads``. With ``num_kv_heads == num_heads`` it is the
  course's ``Attention`` with ``qkv`` split into ``q`` and ``kv``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..contracts import Contract, draw_int
from ..expectations import GradingFailure, expect_raises, expect_tensor

__all__ = ["CONTRACT", "GroupedQueryAttention"]

CONTRACT = Contract(
    "04_mhsa",
    "grouped-query attention (GQA, MQA): query heads sharing key and value heads",
    names={"GroupedQueryAttention": "(dim, num_heads, num_kv_heads, qkv_bias=True)"},
    reference_answers={"GroupedQueryAttention": "vitcourse.course.exercises.mhsa.GroupedQueryAttention"},
)


# ---- the reference -----------------------------------------------------------------------------


class GroupedQueryAttention(nn.Module):
    """Grouped-query attention, ``(B, N, D)`` -> ``(B, N, D)``: ``num_heads`` query heads of
    width ``d = D // num_heads``, ``num_kv_heads`` key and value heads; query head ``h`` reads
    key/value head ``h // (num_heads // num_kv_heads)``; ``tau = sqrt(d)``."""

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, qkv_bias: bool = True):
        super().__init__()
        if num_heads < 1 or num_kv_heads < 1 or dim % num_heads or num_heads % num_kv_heads:
            raise ValueError(f"need num_heads | dim and num_kv_heads | num_heads, got dim={dim}, "
                             f"num_heads={num_heads}, num_kv_heads={num_kv_heads}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * num_kv_heads * self.head_dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, dim = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)           # (B, H, N, d)
        k, v = self.kv(x).reshape(b, n, 2, self.num_kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, G, N, d)
        group = self.num_heads // self.num_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)        # (B, H, N, d)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, dim))


def _head_by_head(state: dict, num_heads: int, num_kv_heads: int, x: torch.Tensor) -> torch.Tensor:
    """An independent float64 computation of the same output: one head at a time, from slices
    of the weights, with the course's softmax_attention."""
    from ...models.attention import softmax_attention

    s = {k: v.double() for k, v in state.items()}
    x = x.double()
    dim = x.shape[-1]
    d = dim // num_heads
    heads = []
    for h in range(num_heads):
        g = h // (num_heads // num_kv_heads)
        rows_q, rows_k = slice(h * d, (h + 1) * d), slice(g * d, (g + 1) * d)
        rows_v = slice(num_kv_heads * d + g * d, num_kv_heads * d + (g + 1) * d)
        bias = (lambda key, rows: s[key][rows]) if "q.bias" in s else (lambda key, rows: 0.0)
        q = x @ s["q.weight"][rows_q].T + bias("q.bias", rows_q)
        k = x @ s["kv.weight"][rows_k].T + bias("kv.bias", rows_k)
        v = x @ s["kv.weight"][rows_v].T + bias("kv.bias", rows_v)
        heads.append(softmax_attention(q, k, v)[0])
    return torch.cat(heads, dim=-1) @ s["proj.weight"].T + s["proj.bias"]


# ---- the clauses: 9 points -----------------------------------------------------------------------


def _random_state(rng, dim: int, num_heads: int, num_kv_heads: int, qkv_bias: bool) -> dict:
    """The reference's state dict with every entry random (weights of scale 1/sqrt(D), so that
    the attention weights are neither uniform nor one-hot)."""
    reference = GroupedQueryAttention(dim, num_heads, num_kv_heads, qkv_bias)
    return {key: (0.3 if value.dim() < 2 else 1.5 * value.shape[-1] ** -0.5) * torch.randn(value.shape, generator=rng)
            for key, value in reference.state_dict().items()}


def _check_forward(student, rng, dim: int, num_heads: int, num_kv_heads: int, qkv_bias: bool = True) -> None:
    state = _random_state(rng, dim, num_heads, num_kv_heads, qkv_bias)
    x = torch.randn(2, draw_int(rng, 3, 6), dim, generator=rng)
    args = (dim, num_heads, num_kv_heads)
    label = f"GroupedQueryAttention{args}" if qkv_bias else f"GroupedQueryAttention{args[:-1] + (num_kv_heads,)}, qkv_bias=False"
    got = student.module("GroupedQueryAttention", init_args=args, init_kwargs={} if qkv_bias else {"qkv_bias": False},
                         state_dict=state, inputs=(x,))
    if type(got) is not dict or "output" not in got:
        raise GradingFailure(f"{label}: the module did not run")
    reference = GroupedQueryAttention(*args, qkv_bias=qkv_bias)
    reference.load_state_dict(state)
    with torch.no_grad():
        expected = reference.eval()(x)
    assert torch.allclose(expected.double(), _head_by_head(state, num_heads, num_kv_heads, x), atol=1e-5)
    expect_tensor(got["output"], expected, name=f"{label} with random weights on x of shape {tuple(x.shape)}, output")


@CONTRACT.clause("GroupedQueryAttention", points=3)
def grouped_forward(student, rng):
    """Groups of 2-3 query heads sharing each of 2-3 key/value heads: the output for random weights."""
    kv_heads, group = draw_int(rng, 2, 3), draw_int(rng, 2, 3)
    heads = kv_heads * group
    _check_forward(student, rng, heads * draw_int(rng, 2, 4), heads, kv_heads)


@CONTRACT.clause("GroupedQueryAttention", points=2)
def multi_query_forward(student, rng):
    """Multi-query attention (one key/value head for all query heads), without biases: the output."""
    heads = draw_int(rng, 2, 4)
    _check_forward(student, rng, heads * draw_int(rng, 2, 4), heads, 1, qkv_bias=False)


@CONTRACT.clause("GroupedQueryAttention", points=1)
def one_group_per_head(student, rng):
    """As many key/value heads as query heads (ordinary multi-head attention): the output."""
    heads = draw_int(rng, 2, 4)
    _check_forward(student, rng, heads * draw_int(rng, 2, 3), heads, heads)


@CONTRACT.clause("GroupedQueryAttention", points=2)
def parameter_names_and_shapes(student, rng):
    """The state dict holds q, kv and proj with the contract's shapes (no q or kv bias without qkv_bias)."""
    kv_heads = draw_int(rng, 1, 3)
    heads = kv_heads * draw_int(rng, 1, 3)
    dim = heads * draw_int(rng, 2, 4)
    for qkv_bias in (True, False):
        args = (dim, heads, kv_heads)
        # extra_repr: a harmless method that returns a string, so that no forward runs here
        got = student.module("GroupedQueryAttention", init_args=args, init_kwargs={"qkv_bias": qkv_bias},
                             method="extra_repr")
        expected = {k: tuple(v.shape) for k, v in GroupedQueryAttention(*args, qkv_bias=qkv_bias).state_dict().items()}
        shapes = got.get("state_dict_shapes") if type(got) is dict else None
        if shapes != expected:
            missing, extra = sorted(set(expected) - set(shapes or {})), sorted(set(shapes or {}) - set(expected))
            wrong = sorted(k for k in set(expected) & set(shapes or {}) if shapes[k] != expected[k])
            raise GradingFailure(f"GroupedQueryAttention{args}, qkv_bias={qkv_bias}: the state dict differs from "
                                 f"the contract's names and shapes: missing {missing}, unexpected {extra}, "
                                 f"wrong shapes {wrong}")


@CONTRACT.clause("GroupedQueryAttention", points=1)
def rejects_heads_that_do_not_divide(student, rng):
    """num_heads not dividing dim, or num_kv_heads not dividing num_heads, raises ValueError."""
    heads = draw_int(rng, 3, 5)
    for args in ((heads * draw_int(rng, 2, 4) + 1, heads, 1), (heads * 4, heads, heads - 1)):
        expect_raises(lambda args=args: student.module("GroupedQueryAttention", init_args=args), "ValueError",
                      name=f"GroupedQueryAttention{args}")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


class _Parts(torch.nn.Module):
    """The parameters of the right answer, validated as the contract says, for the wrong
    forwards below."""

    def __init__(self, dim, num_heads, num_kv_heads, qkv_bias=True):
        super().__init__()
        if num_heads < 1 or num_kv_heads < 1 or dim % num_heads or num_heads % num_kv_heads:
            raise ValueError("heads do not divide")
        self.h, self.g, self.d = num_heads, num_kv_heads, dim // num_heads
        self.q = torch.nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = torch.nn.Linear(dim, 2 * num_kv_heads * self.d, bias=qkv_bias)
        self.proj = torch.nn.Linear(dim, dim)

    def heads(self, x):
        b, n, _ = x.shape
        q = self.q(x).reshape(b, n, self.h, self.d).transpose(1, 2)
        k, v = self.kv(x).reshape(b, n, 2, self.g, self.d).permute(2, 0, 3, 1, 4)
        return q, k, v


@CONTRACT.mistake("GroupedQueryAttention", """query head h seems to read key/value head
    h % num_kv_heads (the key/value heads repeated as a whole, cycled). The groups are
    consecutive: the first num_heads // num_kv_heads query heads share key/value head 0, the
    next ones head 1, and so on.""")
class KvHeadsCycled(_Parts):
    def forward(self, x):
        b, n, dim = x.shape
        q, k, v = self.heads(x)
        k, v = k.repeat(1, self.h // self.g, 1, 1), v.repeat(1, self.h // self.g, 1, 1)
        w = torch.softmax(q @ k.transpose(-2, -1) / self.d**0.5, dim=-1)
        return self.proj((w @ v).transpose(1, 2).reshape(b, n, dim))


@CONTRACT.mistake("GroupedQueryAttention", """the scores seem divided by sqrt(D), the whole
    width, instead of sqrt(d), the width of one head (the attention is too flat). Each head is an
    attention of its own on d-dimensional queries and keys.""")
class WholeWidthTemperature(_Parts):
    def forward(self, x):
        b, n, dim = x.shape
        q, k, v = self.heads(x)
        k, v = k.repeat_interleave(self.h // self.g, 1), v.repeat_interleave(self.h // self.g, 1)
        w = torch.softmax(q @ k.transpose(-2, -1) / dim**0.5, dim=-1)
        return self.proj((w @ v).transpose(1, 2).reshape(b, n, dim))


@CONTRACT.mistake("GroupedQueryAttention", """the heads' outputs seem reshaped from
    (B, heads, N, d) straight to (B, N, D), which mixes tokens with heads. Bring the token axis
    next to the batch first, so that each token's row is its heads' outputs side by side.""")
class HeadsNotTransposedBack(_Parts):
    def forward(self, x):
        b, n, dim = x.shape
        q, k, v = self.heads(x)
        k, v = k.repeat_interleave(self.h // self.g, 1), v.repeat_interleave(self.h // self.g, 1)
        w = torch.softmax(q @ k.transpose(-2, -1) / self.d**0.5, dim=-1)
        return self.proj((w @ v).reshape(b, n, dim))


@CONTRACT.mistake("GroupedQueryAttention", """the kv features seem split as (num_kv_heads, 2, d),
    a key and a value per head side by side. The contract's layout is all the keys first (the
    first num_kv_heads * d features), then all the values.""")
class KvInterleaved(_Parts):
    def forward(self, x):
        b, n, dim = x.shape
        q = self.q(x).reshape(b, n, self.h, self.d).transpose(1, 2)
        k, v = self.kv(x).reshape(b, n, self.g, 2, self.d).permute(3, 0, 2, 1, 4)
        k, v = k.repeat_interleave(self.h // self.g, 1), v.repeat_interleave(self.h // self.g, 1)
        w = torch.softmax(q @ k.transpose(-2, -1) / self.d**0.5, dim=-1)
        return self.proj((w @ v).transpose(1, 2).reshape(b, n, dim))
