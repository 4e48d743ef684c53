"""Exercise 11 (distillation): DeiT's hard-label distillation with smoothed labels.

The chapter page (*Knowledge distillation*) prints DeiT's released loss: the cross-entropy of the
class head with the labels, plus soft (a KL divergence) or hard (a cross-entropy with the
teacher's top class) distillation through the distillation head. The DeiT paper adds that hard
labels can be turned into soft ones by label smoothing: the true class gets probability
``1 - epsilon`` and the remaining ``epsilon`` is shared by the other classes (``epsilon = 0.1``).
The exercise asks for that variant, which the page does not print:

- ``smooth_labels(labels, num_classes, epsilon)``: ``(B,)`` class indices -> ``(B, K)`` float32
  targets, ``1 - epsilon`` on the class and ``epsilon / (K - 1)`` on each other class;
- ``hard_distillation_loss(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1)``: the
  average of the class head's cross-entropy with the smoothed labels and the distillation head's
  cross-entropy with the smoothed top class of the teacher; each cross-entropy with a target
  distribution ``q`` is ``-sum_k q_k log softmax(z)_k``, averaged over the batch.
"""

from __future__ import annotations

import torch

from ...training.losses import distillation_loss
from ...validation import check_class_labels, check_int, check_real, check_tensor
from ..contracts import Contract, draw_float, draw_int
from ..expectations import expect_raises, expect_tensor

__all__ = ["CONTRACT", "smooth_labels", "hard_distillation_loss"]

CONTRACT = Contract(
    "11_distillation",
    "DeiT's hard-label distillation with label smoothing",
    names={
        "smooth_labels": "(labels, num_classes, epsilon)",
        "hard_distillation_loss": "(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1)",
    },
    reference_answers={
        "smooth_labels": "vitcourse.course.exercises.distillation.smooth_labels",
        "hard_distillation_loss": "vitcourse.course.exercises.distillation.hard_distillation_loss",
    },
)


# ---- the references ------------------------------------------------------------------------------


def _smoothed(labels: torch.Tensor, num_classes: int, epsilon: float, dtype: torch.dtype) -> torch.Tensor:
    num_classes = check_int(num_classes, "num_classes", "an int >= 2", lambda k: k >= 2)
    check_class_labels(labels, "labels", num_classes)
    epsilon = check_real(epsilon, "epsilon", "a number in [0, 1)", lambda e: 0 <= e < 1)
    targets = torch.full((len(labels), num_classes), epsilon / (num_classes - 1), dtype=dtype)
    return targets.scatter_(1, labels[:, None], 1 - epsilon)


def smooth_labels(labels: torch.Tensor, num_classes: int, epsilon: float) -> torch.Tensor:
    """The DeiT paper's smoothed labels: ``(B,)`` int64 -> ``(B, K)`` float32 targets, ``1 -
    epsilon`` on the label and ``epsilon / (K - 1)`` on each other class (each row sums to 1).
    Raises ``ValueError`` for a label outside ``[0, K)``, ``K < 2`` or ``epsilon`` outside
    ``[0, 1)``."""
    return _smoothed(labels, num_classes, epsilon, torch.float32)


def hard_distillation_loss(cls_logits: torch.Tensor, dist_logits: torch.Tensor, teacher_logits: torch.Tensor,
                           labels: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """DeiT's hard-label distillation with smoothed targets, a scalar in the logits' dtype:
    ``(CE(cls_logits, smooth(labels)) + CE(dist_logits, smooth(argmax teacher))) / 2``, each
    cross-entropy with a target distribution averaged over the batch. Logits are ``(B, K)``."""
    for name, logits in (("cls_logits", cls_logits), ("dist_logits", dist_logits), ("teacher_logits", teacher_logits)):
        check_tensor(logits, name)
        if logits.dim() != 2 or logits.shape != cls_logits.shape:
            raise ValueError(f"{name} must be (B, K) like cls_logits {tuple(cls_logits.shape)}, got {tuple(logits.shape)}")
    num_classes = cls_logits.shape[1]
    targets = _smoothed(labels, num_classes, epsilon, cls_logits.dtype)
    teacher_targets = _smoothed(teacher_logits.argmax(dim=1), num_classes, epsilon, cls_logits.dtype)
    cls_term = -(targets * cls_logits.log_softmax(dim=1)).sum(dim=1).mean()
    dist_term = -(teacher_targets * dist_logits.log_softmax(dim=1)).sum(dim=1).mean()
    return (cls_term + dist_term) / 2


# ---- smooth_labels: 4 points ------------------------------------------------------------------------


def _labels(rng, batch, classes):
    return torch.randint(0, classes, (batch,), generator=rng)


def _smooth_label(labels, classes, epsilon):
    return f"smooth_labels(labels of shape {tuple(labels.shape)}, num_classes={classes}, epsilon={epsilon})"


@CONTRACT.clause("smooth_labels", points=2)
def smoothed_targets(student, rng):
    """Random labels, classes and epsilon: 1 - epsilon on the label, epsilon / (K - 1) elsewhere."""
    classes = draw_int(rng, 3, 12)
    labels, epsilon = _labels(rng, draw_int(rng, 2, 9), classes), draw_float(rng, 0.05, 0.5)
    got = student.call("smooth_labels", labels, classes, epsilon)
    expect_tensor(got, smooth_labels(labels, classes, epsilon), name=_smooth_label(labels, classes, epsilon))


@CONTRACT.clause("smooth_labels", points=1)
def no_smoothing_is_one_hot(student, rng):
    """With epsilon = 0 the targets are the one-hot labels (two classes included)."""
    for classes in (2, draw_int(rng, 3, 10)):
        labels = _labels(rng, draw_int(rng, 1, 6), classes)
        got = student.call("smooth_labels", labels, classes, 0.0)
        expect_tensor(got, torch.nn.functional.one_hot(labels, classes).float(), name=_smooth_label(labels, classes, 0.0))


@CONTRACT.clause("smooth_labels", points=1)
def rejects_bad_labels_and_epsilon(student, rng):
    """A label outside [0, K) or an epsilon outside [0, 1) raises ValueError."""
    classes = draw_int(rng, 3, 8)
    labels = _labels(rng, 4, classes)
    labels[draw_int(rng, 0, 3)] = classes
    expect_raises(lambda: student.call("smooth_labels", labels, classes, 0.1), "ValueError",
                  name=_smooth_label(labels, classes, 0.1) + f" with the label {classes}")
    labels = _labels(rng, 4, classes)
    for epsilon in (1.0, -0.1):
        expect_raises(lambda epsilon=epsilon: student.call("smooth_labels", labels, classes, epsilon), "ValueError",
                      name=_smooth_label(labels, classes, epsilon))


# ---- hard_distillation_loss: 6 points -----------------------------------------------------------------


def _logits(rng, batch, classes, dtype=torch.float32):
    """Class head, distillation head and teacher logits, and labels the teacher often disagrees with."""
    cls_logits, dist_logits, teacher = (2 * torch.randn(batch, classes, generator=rng, dtype=dtype) for _ in range(3))
    return cls_logits, dist_logits, teacher, _labels(rng, batch, classes)


def _loss_label(inputs, epsilon):
    return f"hard_distillation_loss(logits of shape {tuple(inputs[0].shape)}, epsilon={epsilon})"


@CONTRACT.clause("hard_distillation_loss", points=4)
def smoothed_hard_distillation(student, rng):
    """Random logits, labels and epsilon: both heads' cross-entropies with smoothed targets, averaged."""
    inputs = _logits(rng, draw_int(rng, 2, 8), draw_int(rng, 3, 10))
    epsilon = draw_float(rng, 0.05, 0.3)
    got = student.call("hard_distillation_loss", *inputs, epsilon=epsilon)
    expect_tensor(got, hard_distillation_loss(*inputs, epsilon=epsilon), name=_loss_label(inputs, epsilon))


@CONTRACT.clause("hard_distillation_loss", points=1)
def no_smoothing_is_deit_hard_loss(student, rng):
    """With epsilon = 0 it is the page's distillation_loss(kind="hard", alpha=0.5)."""
    inputs = _logits(rng, draw_int(rng, 2, 8), draw_int(rng, 2, 10))
    got = student.call("hard_distillation_loss", *inputs, epsilon=0.0)
    expect_tensor(got, distillation_loss(*inputs, kind="hard", alpha=0.5), name=_loss_label(inputs, 0.0))


@CONTRACT.clause("hard_distillation_loss", points=1)
def default_epsilon_and_float64(student, rng):
    """float64 logits give a float64 scalar; the default epsilon is 0.1."""
    inputs = _logits(rng, draw_int(rng, 1, 5), draw_int(rng, 3, 7), dtype=torch.float64)
    got = student.call("hard_distillation_loss", *inputs)
    # targets built in float32 and cast are fine: float32's tolerance, float64's dtype
    expect_tensor(got, hard_distillation_loss(*inputs, epsilon=0.1), rtol=1e-6, atol=1e-6,
                  name=f"hard_distillation_loss(float64 logits of shape {tuple(inputs[0].shape)})")


# ---- common mistakes: each is the right answer with one thing wrong ---------------------------------


def _validated(labels, num_classes, epsilon):
    if not 0 <= epsilon < 1 or num_classes < 2 or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError("bad labels, num_classes or epsilon")
    return torch.nn.functional.one_hot(labels, num_classes).float()


@CONTRACT.mistake("smooth_labels", """this is PyTorch's label_smoothing convention (epsilon / K on
    every class, so the label gets 1 - epsilon + epsilon / K). The DeiT paper gives the label
    exactly 1 - epsilon and shares epsilon among the K - 1 other classes.""")
def pytorch_convention(labels, num_classes, epsilon):
    one_hot = _validated(labels, num_classes, epsilon)
    return (1 - epsilon) * one_hot + epsilon / num_classes


@CONTRACT.mistake("smooth_labels", """every other class gets epsilon, so a row sums to
    1 + (K - 2) * epsilon. The targets are a distribution: epsilon is shared by the K - 1 other
    classes, epsilon / (K - 1) each.""")
def epsilon_for_each_other_class(labels, num_classes, epsilon):
    one_hot = _validated(labels, num_classes, epsilon)
    return one_hot * (1 - epsilon) + (1 - one_hot) * epsilon


@CONTRACT.mistake("smooth_labels", """the other classes get epsilon / K, so a row sums to less
    than 1. They share epsilon among K - 1 classes (the label is not one of them): epsilon / (K - 1).""")
def epsilon_over_k_for_the_others(labels, num_classes, epsilon):
    one_hot = _validated(labels, num_classes, epsilon)
    return one_hot * (1 - epsilon) + (1 - one_hot) * epsilon / num_classes


@CONTRACT.mistake("smooth_labels", """the label keeps probability 1 while the others get
    epsilon / (K - 1), so a row sums to 1 + epsilon. Take epsilon away from the label: 1 - epsilon.""")
def label_keeps_one(labels, num_classes, epsilon):
    one_hot = _validated(labels, num_classes, epsilon)
    return one_hot + (1 - one_hot) * epsilon / (num_classes - 1)


def _targets(labels, num_classes, epsilon, dtype):
    """The right smoothed targets, for the loss mistakes (each has another thing wrong)."""
    if not 0 <= epsilon < 1:
        raise ValueError("epsilon must be in [0, 1)")
    one_hot = torch.nn.functional.one_hot(labels, num_classes).to(dtype)
    return one_hot * (1 - epsilon) + (1 - one_hot) * epsilon / (num_classes - 1)


def _cross_entropy(logits, targets):
    return -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()


@CONTRACT.mistake("hard_distillation_loss", """the distillation head seems to learn the teacher's
    probabilities (softmax of its logits: soft distillation at temperature 1). Hard distillation
    takes the teacher's top class (argmax) as a label, then smooths it like a true label.""")
def teacher_probabilities(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1):
    k = cls_logits.shape[1]
    targets = _targets(labels, k, epsilon, cls_logits.dtype)
    return (_cross_entropy(cls_logits, targets) + _cross_entropy(dist_logits, teacher_logits.softmax(dim=1))) / 2


@CONTRACT.mistake("hard_distillation_loss", """the teacher's top class is used without smoothing
    (the page's hard loss for that head). The paper smooths the teacher's label as it smooths the
    true one: 1 - epsilon on the top class, epsilon / (K - 1) on the others.""")
def teacher_label_not_smoothed(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1):
    k = cls_logits.shape[1]
    targets = _targets(labels, k, epsilon, cls_logits.dtype)
    teacher = _targets(teacher_logits.argmax(dim=1), k, 0.0, cls_logits.dtype)
    return (_cross_entropy(cls_logits, targets) + _cross_entropy(dist_logits, teacher)) / 2


@CONTRACT.mistake("hard_distillation_loss", """the heads are swapped: the class head learns the
    teacher and the distillation head the labels. The class token's head (cls_logits) is trained
    on the true labels, the distillation token's head (dist_logits) on the teacher.""")
def heads_swapped(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1):
    k = cls_logits.shape[1]
    targets = _targets(labels, k, epsilon, cls_logits.dtype)
    teacher = _targets(teacher_logits.argmax(dim=1), k, epsilon, cls_logits.dtype)
    return (_cross_entropy(dist_logits, targets) + _cross_entropy(cls_logits, teacher)) / 2


@CONTRACT.mistake("hard_distillation_loss", """each cross-entropy is averaged over the classes as
    well as the batch (it is K times too small). Sum q_k log p_k over the classes, then average
    over the batch only.""")
def averaged_over_classes(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1):
    k = cls_logits.shape[1]
    targets = _targets(labels, k, epsilon, cls_logits.dtype)
    teacher = _targets(teacher_logits.argmax(dim=1), k, epsilon, cls_logits.dtype)
    return (-(targets * cls_logits.log_softmax(dim=1)).mean() - (teacher * dist_logits.log_softmax(dim=1)).mean()) / 2


@CONTRACT.mistake("hard_distillation_loss", """the two cross-entropies are added, not averaged.
    DeiT weighs the two heads equally: (CE_cls + CE_dist) / 2.""")
def summed_not_averaged(cls_logits, dist_logits, teacher_logits, labels, epsilon=0.1):
    k = cls_logits.shape[1]
    targets = _targets(labels, k, epsilon, cls_logits.dtype)
    teacher = _targets(teacher_logits.argmax(dim=1), k, epsilon, cls_logits.dtype)
    return _cross_entropy(cls_logits, targets) + _cross_entropy(dist_logits, teacher)
