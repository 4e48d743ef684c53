"""Exercise 03 (attention): attention over a block of keys with its row statistic, and the merge
of two partial attentions into the attention over all their keys.

The chapter page (*Self-attention*) computes ``softmax(q k^T / tau) v`` over every key at once,
and says that fused kernels (FlashAttention) never hold the ``N x M`` score matrix. The exercise
asks for the idea that makes that possible, which the page does not print:

- ``partial_attention(q, k, v, tau=None)``: for queries ``(..., N, d)`` and one block of keys
  ``(..., M, d)`` and values ``(..., M, d_v)``, the pair ``(out, lse)``: ``out`` the attention
  output over these keys, ``(..., N, d_v)``, and ``lse`` the log of each row's softmax
  denominator, ``log sum_j exp(q_i . k_j / tau)``, ``(..., N)``, finite even when the scores are
  far beyond what ``exp`` can hold; ``tau=None`` means ``sqrt(d)``;
- ``merge_attention(out_a, lse_a, out_b, lse_b)``: from the partial results over two disjoint
  sets of keys, the pair ``(out, lse)`` over their union, without the keys, and stable when the
  two ``lse`` differ by hundreds.

Streaming the keys block by block through the two is how a fused kernel, split-KV decoding or
ring attention computes exact attention with ``N x block`` scores at a time.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from ...validation import check_real, check_tensor
from ..contracts import Contract, draw_float, draw_int
from ..expectations import expect_items, expect_raises, expect_tensor

__all__ = ["CONTRACT", "partial_attention", "merge_attention"]

CONTRACT = Contract(
    "03_attention",
    "attention over a block of keys with its log-sum-exp; merging two partial attentions",
    names={
        "partial_attention": "(q, k, v, tau=None)",
        "merge_attention": "(out_a, lse_a, out_b, lse_b)",
    },
    reference_answers={
        "partial_attention": "vitcourse.course.exercises.attention.partial_attention",
        "merge_attention": "vitcourse.course.exercises.attention.merge_attention",
    },
)


# ---- the references ------------------------------------------------------------------------------


def partial_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      tau: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``q (..., N, d)`` over the keys ``k (..., M, d)`` and values ``v (..., M, d_v)``:
    ``(out (..., N, d_v), lse (..., N))`` with ``lse_i = log sum_j exp(q_i . k_j / tau)`` and
    ``out = exp(q k^T / tau - lse) v``, in the dtype of ``q``; ``tau=None`` is ``sqrt(d)``.
    Raises ``ValueError`` when q and k differ in width or ``tau`` is not positive."""
    for name, value in (("q", q), ("k", k), ("v", v)):
        check_tensor(value, name)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same width d, got {q.shape[-1]} and {k.shape[-1]}")
    tau = math.sqrt(q.shape[-1]) if tau is None else check_real(tau, "tau", "a positive number", lambda t: t > 0)
    logits = torch.matmul(q, k.transpose(-2, -1)) / tau  # (..., N, M)
    log_denominator = torch.logsumexp(logits, dim=-1)
    return torch.matmul(torch.exp(logits - log_denominator.unsqueeze(-1)), v), log_denominator


def merge_attention(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor,
                    lse_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention over the union of two disjoint key sets from the partial results over each:
    ``out_* (..., N, d_v)``, ``lse_* (..., N)`` -> ``(out, lse)`` of the same shapes, with
    ``lse = log(exp(lse_a) + exp(lse_b))`` and ``out`` the two outputs weighted by each set's
    share ``exp(lse_* - lse)`` of the softmax mass. Raises ``ValueError`` when the shapes do
    not match."""
    for name, value in (("out_a", out_a), ("lse_a", lse_a), ("out_b", out_b), ("lse_b", lse_b)):
        check_tensor(value, name)
    if out_a.shape != out_b.shape or lse_a.shape != lse_b.shape or tuple(lse_a.shape) != tuple(out_a.shape[:-1]):
        raise ValueError(f"expected out_a, out_b of one shape (..., N, d_v) and lse_a, lse_b of shape (..., N); "
                         f"got {tuple(out_a.shape)}, {tuple(out_b.shape)}, {tuple(lse_a.shape)}, {tuple(lse_b.shape)}")
    total = torch.logaddexp(lse_a, lse_b)
    share_a, share_b = torch.exp(lse_a - total).unsqueeze(-1), torch.exp(lse_b - total).unsqueeze(-1)
    return share_a * out_a + share_b * out_b, total


# ---- helpers of the clauses ------------------------------------------------------------------------


def _expect_pair(got, expected: tuple[torch.Tensor, torch.Tensor], name: str) -> None:
    out, lse = expect_items(got, ("out", "lse"), name)
    expect_tensor(out, expected[0], name=f"{name}, out")
    expect_tensor(lse, expected[1], name=f"{name}, lse")


def _qkv(rng, lead: tuple, n: int, m: int, d: int, d_v: int, dtype=torch.float32, scale: float = 1.0):
    q = torch.randn(*lead, n, d, generator=rng, dtype=dtype) * scale
    k = torch.randn(*lead, m, d, generator=rng, dtype=dtype)
    v = torch.randn(*lead, m, d_v, generator=rng, dtype=dtype)
    return q, k, v


def _shapes(*tensors) -> str:
    return ", ".join(str(tuple(t.shape)) for t in tensors)


# ---- partial_attention: 8 points --------------------------------------------------------------------


@CONTRACT.clause("partial_attention", points=3)
def attention_and_row_statistic(student, rng):
    """out and lse for random batched heads (N != M, d != d_v, a given tau), against softmax in float64."""
    lead = (draw_int(rng, 1, 2), draw_int(rng, 1, 3))
    n, m = draw_int(rng, 2, 5), draw_int(rng, 6, 9)
    q, k, v = _qkv(rng, lead, n, m, draw_int(rng, 3, 6), draw_int(rng, 7, 9))
    tau = draw_float(rng, 0.5, 3.0)
    got = student.call("partial_attention", q, k, v, tau=tau)
    expected = partial_attention(q, k, v, tau)
    # an independent reference: the page's formula, in float64
    scores = q.double() @ k.double().transpose(-2, -1) / tau
    assert torch.allclose(expected[0].double(), torch.softmax(scores, -1) @ v.double(), atol=1e-5)
    assert torch.allclose(expected[1].double(), scores.exp().sum(-1).log(), atol=1e-5)
    _expect_pair(got, expected, f"partial_attention(q, k, v of shapes {_shapes(q, k, v)}, tau={tau})")


@CONTRACT.clause("partial_attention", points=2)
def scores_beyond_exp(student, rng):
    """In float64, scores in the thousands (exp overflows above 709): out and lse stay finite and right."""
    q, k, v = _qkv(rng, (2,), draw_int(rng, 3, 5), draw_int(rng, 4, 7), 8, 3, dtype=torch.float64,
                   scale=draw_float(rng, 300.0, 400.0))
    got = student.call("partial_attention", q, k, v, tau=1.0)
    top = float((q @ k.transpose(-2, -1)).amax())
    _expect_pair(got, partial_attention(q, k, v, 1.0),
                 f"partial_attention(float64 q scaled so that scores reach {top:.0f}, tau=1.0)")


@CONTRACT.clause("partial_attention", points=1)
def default_temperature(student, rng):
    """tau=None means sqrt(d), the width of q and k."""
    d = draw_int(rng, 10, 40)
    q, k, v = _qkv(rng, (1,), draw_int(rng, 2, 4), draw_int(rng, 3, 6), d, 2)
    got = student.call("partial_attention", q, k, v)
    _expect_pair(got, partial_attention(q, k, v), f"partial_attention(q, k, v) with d = {d} and no tau")


@CONTRACT.clause("partial_attention", points=1)
def one_query_in_float64(student, rng):
    """A single (N, d) query row in float64: lse is log of the sum of exp(score), out in float64."""
    q, k, v = _qkv(rng, (), 1, draw_int(rng, 3, 8), 4, 3, dtype=torch.float64)
    got = student.call("partial_attention", q, k, v, tau=2.0)
    scores = [float(q[0] @ k[j]) / 2.0 for j in range(k.shape[0])]
    lse = math.log(sum(math.exp(s) for s in scores))
    expected = partial_attention(q, k, v, 2.0)
    assert abs(float(expected[1][0]) - lse) < 1e-12
    _expect_pair(got, expected, f"partial_attention(float64 q, k, v of shapes {_shapes(q, k, v)}, tau=2.0)")


@CONTRACT.clause("partial_attention", points=1)
def rejects_bad_tau_and_widths(student, rng):
    """A tau that is not positive, or q and k of different widths, raises ValueError."""
    q, k, v = _qkv(rng, (1,), 2, 3, 4, 2)
    tau = -draw_float(rng, 0.0, 2.0)
    expect_raises(lambda: student.call("partial_attention", q, k, v, tau=tau), "ValueError",
                  name=f"partial_attention(q, k, v, tau={tau})")
    k5 = torch.randn(1, 3, 5, generator=rng)
    expect_raises(lambda: student.call("partial_attention", q, k5, v), "ValueError",
                  name="partial_attention(q of width 4, k of width 5, v)")


# ---- merge_attention: 7 points ------------------------------------------------------------------------


@CONTRACT.clause("merge_attention", points=3)
def merged_equals_attention_over_all_keys(student, rng):
    """Merging the partial results over two blocks of keys (of different sizes) gives the attention over both."""
    lead = (draw_int(rng, 1, 2), draw_int(rng, 1, 3))
    m_a, m_b = draw_int(rng, 2, 4), draw_int(rng, 5, 8)
    q, k, v = _qkv(rng, lead, draw_int(rng, 2, 5), m_a + m_b, 6, draw_int(rng, 2, 5))
    a = partial_attention(q, k[..., :m_a, :], v[..., :m_a, :])
    b = partial_attention(q, k[..., m_a:, :], v[..., m_a:, :])
    got = student.call("merge_attention", a[0], a[1], b[0], b[1])
    expected = merge_attention(*a, *b)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(expected, partial_attention(q, k, v), strict=True))
    _expect_pair(got, expected, f"merge_attention over {m_a} + {m_b} keys (out of shape {tuple(a[0].shape)})")


@CONTRACT.clause("merge_attention", points=2)
def far_apart_row_statistics(student, rng):
    """In float64, lse values near 800 and up to 100 apart (exp overflows above 709): the merge stays finite and right."""
    n, d_v = draw_int(rng, 3, 6), draw_int(rng, 2, 4)
    out_a = torch.randn(2, n, d_v, generator=rng, dtype=torch.float64)
    out_b = torch.randn(2, n, d_v, generator=rng, dtype=torch.float64)
    lse_a = 800 + 5 * torch.randn(2, n, generator=rng, dtype=torch.float64)
    gaps = torch.tensor([-100.0, 0.5, 100.0], dtype=torch.float64).repeat(n)[: 2 * n].reshape(2, n)
    lse_b = lse_a + gaps + torch.randn(2, n, generator=rng, dtype=torch.float64)
    got = student.call("merge_attention", out_a, lse_a, out_b, lse_b)
    _expect_pair(got, merge_attention(out_a, lse_a, out_b, lse_b),
                 f"merge_attention(float64, lse_a near 800, lse_b - lse_a near -100, 0.5 or 100; shape {(2, n)})")


@CONTRACT.clause("merge_attention", points=1)
def three_blocks_in_either_order(student, rng):
    """In float64, merge(merge(a, b), c) and merge(c, merge(b, a)) both give the attention over all three blocks."""
    sizes = [draw_int(rng, 1, 4) for _ in range(3)]
    q, k, v = _qkv(rng, (2,), draw_int(rng, 2, 4), sum(sizes), 5, 3, dtype=torch.float64)
    ends = [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
    a, b, c = (partial_attention(q, k[:, s:e], v[:, s:e]) for s, e in pairwise(ends))
    full = partial_attention(q, k, v)
    first = expect_items(student.call("merge_attention", *a, *b), ("out", "lse"), "merge_attention(a, b)")
    _expect_pair(student.call("merge_attention", *first, *c), full,
                 f"merge_attention(merge_attention(a, b), c) over {sizes} keys")
    second = expect_items(student.call("merge_attention", *b, *a), ("out", "lse"), "merge_attention(b, a)")
    _expect_pair(student.call("merge_attention", *c, *second), full,
                 f"merge_attention(c, merge_attention(b, a)) over {sizes} keys")


@CONTRACT.clause("merge_attention", points=1)
def rejects_mismatched_shapes(student, rng):
    """Outputs of different shapes, or an lse that does not match its output's rows, raises ValueError."""
    n = draw_int(rng, 2, 4)
    out, lse = torch.randn(1, n, 3, generator=rng), torch.randn(1, n, generator=rng)
    wider = torch.randn(1, n, 4, generator=rng)
    expect_raises(lambda: student.call("merge_attention", out, lse, wider, lse), "ValueError",
                  name=f"merge_attention(out_a of shape {(1, n, 3)}, lse, out_b of shape {(1, n, 4)}, lse)")
    longer = torch.randn(1, n + 1, generator=rng)
    expect_raises(lambda: student.call("merge_attention", out, longer, out, longer), "ValueError",
                  name=f"merge_attention(out of shape {(1, n, 3)}, lse of shape {(1, n + 1)}, ...)")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _scores(q, k, v, tau):
    """q k^T / tau, validated as the contract says (tau None is sqrt(d))."""
    if q.shape[-1] != k.shape[-1] or (tau is not None and not tau > 0):
        raise ValueError("bad tau or widths")
    return q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if tau is None else tau)


def _merge_shapes(out_a, lse_a, out_b, lse_b):
    if out_a.shape != out_b.shape or lse_a.shape != lse_b.shape or lse_a.shape != out_a.shape[:-1]:
        raise ValueError("shapes do not match")


@CONTRACT.mistake("partial_attention", """lse overflows to inf when the scores are large: the
    exponentials seem summed as they are. Subtract each row's largest score before exp and add
    it back after the log; that is what keeps the statistic finite.""")
def lse_without_the_max(q, k, v, tau=None):
    scores = _scores(q, k, v, tau)
    return torch.softmax(scores, dim=-1) @ v, scores.exp().sum(dim=-1).log()


@CONTRACT.mistake("partial_attention", """lse seems to be the row's largest score alone. The
    statistic is the log of the whole softmax denominator, sum_j exp(score_j): the largest score
    plus the log of the sum of exp(score_j - largest).""")
def lse_is_the_row_max(q, k, v, tau=None):
    scores = _scores(q, k, v, tau)
    return torch.softmax(scores, dim=-1) @ v, scores.amax(dim=-1)


@CONTRACT.mistake("partial_attention", """the weights seem normalised over the queries (each
    column sums to one) instead of over the keys. Each query's weights over the keys must sum
    to one: check the axis of the softmax and of the log-sum-exp.""")
def normalised_over_queries(q, k, v, tau=None):
    scores = _scores(q, k, v, tau)
    return torch.softmax(scores, dim=-2) @ v, torch.logsumexp(scores, dim=-2)


@CONTRACT.mistake("partial_attention", """with tau=None the scores seem divided by d, not by
    sqrt(d). The default temperature is the square root of the width of q and k.""")
def default_tau_is_d(q, k, v, tau=None):
    scores = _scores(q, k, v, q.shape[-1] if tau is None else tau)
    return torch.softmax(scores, dim=-1) @ v, torch.logsumexp(scores, dim=-1)


@CONTRACT.mistake("merge_attention", """the two outputs seem averaged with equal weights. Each
    block contributes its share of the softmax mass, exp(lse_block) / (exp(lse_a) + exp(lse_b)):
    a block whose keys score higher counts more.""")
def outputs_averaged(out_a, lse_a, out_b, lse_b):
    _merge_shapes(out_a, lse_a, out_b, lse_b)
    return (out_a + out_b) / 2, torch.logaddexp(lse_a, lse_b)


@CONTRACT.mistake("merge_attention", """the outputs seem weighted by the lse values themselves,
    lse_a / (lse_a + lse_b). lse is the log of a softmax denominator: the blocks' shares are
    proportional to exp(lse), not to lse.""")
def weighted_by_lse(out_a, lse_a, out_b, lse_b):
    _merge_shapes(out_a, lse_a, out_b, lse_b)
    share = (lse_a / (lse_a + lse_b)).unsqueeze(-1)
    return share * out_a + (1 - share) * out_b, torch.logaddexp(lse_a, lse_b)


@CONTRACT.mistake("merge_attention", """the merged lse seems to be lse_a + lse_b. The merged
    denominator is the sum of the two denominators, so its log is log(exp(lse_a) + exp(lse_b)),
    not the sum of the logs.""")
def lse_added(out_a, lse_a, out_b, lse_b):
    _merge_shapes(out_a, lse_a, out_b, lse_b)
    total = torch.logaddexp(lse_a, lse_b)
    return torch.exp(lse_a - total).unsqueeze(-1) * out_a + torch.exp(lse_b - total).unsqueeze(-1) * out_b, lse_a + lse_b


@CONTRACT.mistake("merge_attention", """inf or nan when the lse values are large: exp(lse_a) and
    exp(lse_b) seem computed as they are. Work with differences, exp(lse_a - m) with m the larger
    of the two, so that nothing overflows.""")
def exp_of_lse_overflows(out_a, lse_a, out_b, lse_b):
    _merge_shapes(out_a, lse_a, out_b, lse_b)
    mass_a, mass_b = lse_a.exp(), lse_b.exp()
    total = mass_a + mass_b
    return (mass_a / total).unsqueeze(-1) * out_a + (mass_b / total).unsqueeze(-1) * out_b, total.log()
