"""Hidden tests for exercise 03 (attention): ``softmax_attention`` against ``vitcourse.models.attention``."""

import torch

from vitcourse.grading.hidden import GradingFailure, expect_raises, expect_tensor, points
from vitcourse.models.attention import softmax_attention as reference

EXERCISE = "03_attention"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "softmax_attention": "vitcourse.models.attention.softmax_attention",
}


def _int(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def _qkv(rng, lead, n, m, d, d_v, dtype=torch.float32):
    q = torch.randn(*lead, n, d, generator=rng, dtype=dtype)
    k = torch.randn(*lead, m, d, generator=rng, dtype=dtype)
    v = torch.randn(*lead, m, d_v, generator=rng, dtype=dtype)
    return q, k, v


def _pair(got, name):
    if type(got) not in (tuple, list) or len(got) != 2:
        kind = type(got).__name__
        raise GradingFailure(f"{name}: expected a tuple (out, weights), got a {kind}")
    return got


def _compare(got, q, k, v, tau, name):
    out, weights = _pair(got, name)
    expected_out, expected_weights = reference(q, k, v, tau=tau)
    expect_tensor(weights, expected_weights, name=f"{name}: weights")
    expect_tensor(out, expected_out, name=f"{name}: out")


@points(3)
def test_default_tau_random_shapes(student, rng):
    """With tau=None (sqrt(d)), batch and heads dimensions, N queries and M keys: equals the reference."""
    lead = (_int(rng, 1, 3), _int(rng, 1, 3))
    n, m, d, d_v = _int(rng, 1, 7), _int(rng, 2, 9), _int(rng, 2, 16), _int(rng, 1, 8)
    q, k, v = _qkv(rng, lead, n, m, d, d_v)
    _compare(student.call("softmax_attention", q, k, v), q, k, v, None,
             f"softmax_attention(q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)})")


@points(2)
def test_given_tau(student, rng):
    """A given temperature tau is used (sharper for small tau, flatter for large)."""
    q, k, v = _qkv(rng, (2,), 5, 6, 8, 4)
    for tau in (0.25 + float(torch.rand((), generator=rng)), 3.0 + 10 * float(torch.rand((), generator=rng))):
        _compare(student.call("softmax_attention", q, k, v, tau=tau), q, k, v, tau,
                 f"softmax_attention(q, k, v, tau={tau:.3f})")


@points(1)
def test_no_leading_dimensions(student, rng):
    """Plain (N, d) inputs without batch dimensions work."""
    q, k, v = _qkv(rng, (), _int(rng, 1, 6), _int(rng, 1, 6), 4, 3)
    _compare(student.call("softmax_attention", q, k, v), q, k, v, None, "softmax_attention on (N, d) inputs")


@points(1)
def test_keeps_float64(student, rng):
    """float64 inputs give float64 outputs, to float64 precision."""
    q, k, v = _qkv(rng, (1, 2), 4, 5, 6, 6, dtype=torch.float64)
    _compare(student.call("softmax_attention", q, k, v, tau=2.0), q, k, v, 2.0, "softmax_attention on float64 inputs")


@points(1)
def test_rejects_nonpositive_tau(student, rng):
    """tau = 0 or negative raises ValueError."""
    q, k, v = _qkv(rng, (1,), 2, 2, 4, 4)
    for tau in (0.0, -1.0):
        expect_raises(lambda tau=tau: student.call("softmax_attention", q, k, v, tau=tau), "ValueError",
                      name=f"softmax_attention(q, k, v, tau={tau})")


@points(1)
def test_rejects_width_mismatch(student, rng):
    """q and k of different widths d raise ValueError."""
    q = torch.randn(1, 3, 4, generator=rng)
    k, v = torch.randn(1, 3, 5, generator=rng), torch.randn(1, 3, 5, generator=rng)
    expect_raises(lambda: student.call("softmax_attention", q, k, v), "ValueError",
                  name="softmax_attention(q of width 4, k of width 5, v)")
