"""Hidden tests for exercise 06 (rollout): ``attention_rollout`` against ``vitcourse.analysis.attention``."""

import torch

from vitcourse.analysis.attention import attention_rollout as reference
from vitcourse.grading.hidden import expect_raises, expect_tensor, points

EXERCISE = "06_rollout"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "attention_rollout": "vitcourse.analysis.attention.attention_rollout",
}


def _int(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def _attentions(rng, depth, batch, heads, tokens, dtype=torch.float32):
    return [
        (torch.randn(batch, heads, tokens, tokens, generator=rng, dtype=dtype) * 2).softmax(dim=-1)
        for _ in range(depth)
    ]


def _describe(attentions):
    return f"{len(attentions)} layers of shape {tuple(attentions[0].shape)}"


@points(3)
def test_random_layers_default_weight(student, rng):
    """Random layers, batch and heads, the default residual_weight 0.5."""
    attentions = _attentions(rng, _int(rng, 2, 4), _int(rng, 1, 3), _int(rng, 1, 4), _int(rng, 2, 7))
    got = student.call("attention_rollout", attentions)
    expect_tensor(got, reference(attentions), name=f"attention_rollout({_describe(attentions)})")


@points(2)
def test_plain_product(student, rng):
    """residual_weight=0 gives the plain product, later layers on the left."""
    attentions = _attentions(rng, 3, 2, 2, _int(rng, 3, 6))
    got = student.call("attention_rollout", attentions, residual_weight=0.0)
    expected = attentions[2].mean(1) @ attentions[1].mean(1) @ attentions[0].mean(1)
    expect_tensor(got, expected, name=f"attention_rollout({_describe(attentions)}, residual_weight=0.0)")


@points(1)
def test_random_residual_weight(student, rng):
    """A random residual_weight in (0, 0.9)."""
    weight = 0.9 * float(torch.rand((), generator=rng))
    attentions = _attentions(rng, 2, 2, 3, 5)
    got = student.call("attention_rollout", attentions, residual_weight=weight)
    expect_tensor(got, reference(attentions, residual_weight=weight),
                  name=f"attention_rollout({_describe(attentions)}, residual_weight={weight:.3f})")


@points(1)
def test_single_layer_batch_of_one(student, rng):
    """One layer, one image, one head."""
    attentions = _attentions(rng, 1, 1, 1, _int(rng, 2, 6))
    got = student.call("attention_rollout", attentions)
    expect_tensor(got, reference(attentions), name=f"attention_rollout({_describe(attentions)})")


@points(1)
def test_keeps_float64(student, rng):
    """float64 maps give a float64 rollout."""
    attentions = _attentions(rng, 3, 2, 2, 4, dtype=torch.float64)
    got = student.call("attention_rollout", attentions, residual_weight=0.3)
    expect_tensor(got, reference(attentions, residual_weight=0.3), name="attention_rollout(float64 maps)")


@points(1)
def test_rejects_empty_list(student, rng):
    """An empty list of layers raises ValueError."""
    expect_raises(lambda: student.call("attention_rollout", []), "ValueError", name="attention_rollout([])")


@points(1)
def test_rejects_weight_one(student, rng):
    """residual_weight = 1 (outside [0, 1)) raises ValueError."""
    attentions = _attentions(rng, 1, 1, 1, 3)
    expect_raises(lambda: student.call("attention_rollout", attentions, residual_weight=1.0), "ValueError",
                  name="attention_rollout(..., residual_weight=1.0)")
