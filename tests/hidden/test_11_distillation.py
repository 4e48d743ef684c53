"""Hidden tests for exercise 11 (distillation): ``distillation_loss`` against
``vitcourse.training.losses.distillation_loss`` (DeiT's formulas)."""

import torch

from vitcourse.grading.hidden import expect_raises, expect_tensor, points
from vitcourse.training.losses import distillation_loss as reference

EXERCISE = "11_distillation"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "distillation_loss": "vitcourse.training.losses.distillation_loss",
}


def _int(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def _inputs(rng, batch, classes, dtype=torch.float32):
    cls_logits, dist_logits, teacher = (2 * torch.randn(batch, classes, generator=rng, dtype=dtype) for _ in range(3))
    labels = torch.randint(0, classes, (batch,), generator=rng)
    return cls_logits, dist_logits, teacher, labels


def _check(student, inputs, **kwargs):
    got = student.call("distillation_loss", *inputs, **kwargs)
    shape = tuple(inputs[0].shape)
    expect_tensor(got, reference(*inputs, **kwargs),
                  name=f"distillation_loss(logits of shape {shape}, {', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")


def _uniform(rng, low, high):
    return round(low + (high - low) * float(torch.rand((), generator=rng)), 4)


@points(1)
def test_none_is_cross_entropy(student, rng):
    """kind='none' is the cross-entropy of the class head."""
    _check(student, _inputs(rng, _int(rng, 2, 8), _int(rng, 2, 10)), kind="none")


@points(3)
def test_hard(student, rng):
    """kind='hard': cross-entropy against the teacher's arg-max, random alpha."""
    _check(student, _inputs(rng, _int(rng, 2, 8), _int(rng, 2, 10)), kind="hard", alpha=_uniform(rng, 0.1, 0.9))


@points(3)
def test_soft_with_temperature(student, rng):
    """kind='soft': KL summed, times tau^2, divided by B * K; random alpha and tau."""
    _check(student, _inputs(rng, _int(rng, 2, 8), _int(rng, 2, 10)), kind="soft",
           alpha=_uniform(rng, 0.1, 0.9), tau=_uniform(rng, 0.5, 4.0))


@points(1)
def test_default_kind_is_hard(student, rng):
    """The defaults are kind='hard', alpha=0.5."""
    inputs = _inputs(rng, 4, 5)
    got = student.call("distillation_loss", *inputs)
    expect_tensor(got, reference(*inputs, kind="hard", alpha=0.5), name="distillation_loss(...) with defaults")


@points(1)
def test_batch_of_one_float64(student, rng):
    """One example in float64: a float64 scalar, to float64 precision."""
    _check(student, _inputs(rng, 1, _int(rng, 3, 7), dtype=torch.float64), kind="soft", alpha=0.5, tau=2.0)


@points(1)
def test_rejects_unknown_kind(student, rng):
    """An unknown kind raises ValueError."""
    inputs = _inputs(rng, 2, 3)
    expect_raises(lambda: student.call("distillation_loss", *inputs, kind="medium"), "ValueError",
                  name="distillation_loss(..., kind='medium')")
