"""Hidden tests for exercise 04 (multi-head self-attention) against ``vitcourse.models.attention.Attention``.

The student's module is built in the sandbox, loaded with the reference module's weights (same
timm names) and run; only its output and its state-dict shapes come back.
"""

import torch

from vitcourse.grading.hidden import GradingFailure, expect_raises, expect_tensor, points
from vitcourse.models.attention import Attention
from vitcourse.models.statedict import state_dict_diff

EXERCISE = "04_mhsa"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "MultiHeadSelfAttention": "vitcourse.models.attention.Attention",
}
NAME = "MultiHeadSelfAttention"


def _int(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def _reference(rng, dim, heads, qkv_bias=True):
    module = Attention(dim, heads, qkv_bias=qkv_bias).eval()
    with torch.no_grad():  # random weights and biases from the grader's rng
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=rng) * (0.3 if param.dim() > 1 else 0.1))
    return module


def _expect_shapes(reply, reference, name):
    diff = state_dict_diff(reply["state_dict_shapes"], reference.state_dict())
    if diff:
        raise GradingFailure(f"{name}: parameters differ from the contract: {diff.describe('; ')}")


def _run(student, rng, dim, heads, batch, tokens, qkv_bias=True):
    reference = _reference(rng, dim, heads, qkv_bias)
    x = torch.randn(batch, tokens, dim, generator=rng)
    kwargs = {} if qkv_bias else {"qkv_bias": False}
    name = f"{NAME}({dim}, {heads}{', qkv_bias=False' if not qkv_bias else ''})"
    reply = student.module(NAME, init_args=(dim, heads), init_kwargs=kwargs,
                           state_dict=reference.state_dict(), inputs=(x,))
    with torch.no_grad():
        expected = reference(x)
    expect_tensor(reply["output"], expected, name=f"{name} on x of shape {tuple(x.shape)}")


@points(2)
def test_parameter_names_and_shapes(student, rng):
    """The module has qkv (D -> 3D) and proj (D -> D) with timm's names and shapes."""
    heads = _int(rng, 1, 4)
    dim = heads * _int(rng, 2, 6)
    x = torch.randn(1, 3, dim, generator=rng)
    reply = student.module(NAME, init_args=(dim, heads), inputs=(x,))
    _expect_shapes(reply, Attention(dim, heads), f"{NAME}({dim}, {heads})")


@points(3)
def test_forward_random_sizes(student, rng):
    """The forward pass with the reference's weights equals the reference, random sizes and heads."""
    heads = _int(rng, 2, 4)
    _run(student, rng, heads * _int(rng, 2, 8), heads, _int(rng, 2, 3), _int(rng, 2, 7))


@points(1)
def test_forward_one_token_batch_of_one(student, rng):
    """One image with a single token."""
    _run(student, rng, 12, 3, 1, 1)


@points(1)
def test_forward_one_head(student, rng):
    """One head of full width."""
    _run(student, rng, 8, 1, 2, _int(rng, 2, 5))


@points(1)
def test_forward_head_width_one(student, rng):
    """As many heads as channels (head width 1)."""
    _run(student, rng, 6, 6, 2, _int(rng, 2, 5))


@points(1)
def test_without_qkv_bias(student, rng):
    """qkv_bias=False: no qkv.bias, same forward pass."""
    _run(student, rng, 8, 2, 2, 4, qkv_bias=False)


@points(1)
def test_rejects_indivisible_dim(student, rng):
    """dim not divisible by num_heads raises ValueError."""
    heads = _int(rng, 3, 5)
    dim = heads * 2 + 1
    expect_raises(lambda: student.module(NAME, init_args=(dim, heads)), "ValueError", name=f"{NAME}({dim}, {heads})")
