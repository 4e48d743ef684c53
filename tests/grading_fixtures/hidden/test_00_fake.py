"""Hidden tests of a tiny fake exercise, used to test the grader itself.

The exercise asks for ``double(x)`` (returns ``2 * x``, same dtype), ``count_positive(x)``
(a Python int) and ``Scale(dim)``, a module with a parameter ``weight`` of shape ``(dim,)``
multiplying the last axis (``ValueError`` when ``dim < 1``).
"""

import torch

from vitcourse.grading.hidden import expect_number, expect_raises, expect_tensor, points

EXERCISE = "00_fake"


@points(2)
def test_double_float(student, rng):
    """double doubles a random float tensor."""
    x = torch.randn(3, 5, generator=rng, dtype=torch.float64)
    expect_tensor(student.call("double", x), x * 2, name="double(x)")


@points(1)
def test_double_int(student, rng):
    """double keeps an integer dtype."""
    x = torch.randint(-50, 50, (7,), generator=rng)
    expect_tensor(student.call("double", x), x * 2, name="double(x)")


@points(1)
def test_count_positive(student, rng):
    """count_positive returns a Python int."""
    x = torch.randn(40, generator=rng)
    expect_number(student.call("count_positive", x), int((x > 0).sum()), name="count_positive(x)",
                  exact_int=True)


@points(2)
def test_scale_module(student, rng):
    """Scale multiplies the last axis by its weight."""
    weight = torch.randn(4, generator=rng)
    x = torch.randn(2, 3, 4, generator=rng)
    got = student.module("Scale", init_args=(4,), state_dict={"weight": weight}, inputs=(x,))
    if got["state_dict_shapes"] != {"weight": (4,)}:
        from vitcourse.grading.hidden import GradingFailure

        raise GradingFailure(f"Scale(4).state_dict(): expected {{'weight': (4,)}}, "
                             f"got {got['state_dict_shapes']}")
    expect_tensor(got["output"], x * weight, name="Scale(4)(x)")


@points(1)
def test_scale_rejects_zero(student):
    """Scale(0) raises ValueError."""
    expect_raises(lambda: student.module("Scale", init_args=(0,)), "ValueError", name="Scale(0)")
