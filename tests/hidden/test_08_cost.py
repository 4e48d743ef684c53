"""Hidden tests for exercise 08 (cost): ``mhsa_macs`` and ``attention_crossover``, exact integers."""

import torch

from vitcourse.analysis.cost import attention_crossover, mhsa_macs
from vitcourse.grading.hidden import GradingFailure, expect_number, expect_raises, points

EXERCISE = "08_cost"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "mhsa_macs": "vitcourse.analysis.cost.mhsa_macs",
    "attention_crossover": "vitcourse.analysis.cost.attention_crossover",
}


def _int(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


@points(3)
def test_macs_random(student, rng):
    """mhsa_macs on random L and D equals 4 L D^2 + 2 L^2 D exactly."""
    for _ in range(3):
        length, dim = _int(rng, 1, 5000), _int(rng, 1, 2048)
        expect_number(student.call("mhsa_macs", length, dim), mhsa_macs(length, dim),
                      name=f"mhsa_macs({length}, {dim})", exact_int=True)


@points(1)
def test_macs_huge_exact(student, rng):
    """Large sizes stay exact Python ints (no float rounding)."""
    length, dim = 10**6 + _int(rng, 1, 999), 8192 + _int(rng, 1, 7)
    expect_number(student.call("mhsa_macs", length, dim), mhsa_macs(length, dim),
                  name=f"mhsa_macs({length}, {dim})", exact_int=True)


@points(2)
def test_crossover_random(student, rng):
    """attention_crossover(D) is the smallest L with 2 L^2 D > 4 L D^2."""
    for dim in (_int(rng, 1, 64), _int(rng, 65, 4096)):
        got = student.call("attention_crossover", dim)
        expect_number(got, attention_crossover(dim), name=f"attention_crossover({dim})", exact_int=True)
        before = got - 1
        if not (2 * got**2 * dim > 4 * got * dim**2 and not 2 * before**2 * dim > 4 * before * dim**2):
            raise GradingFailure(f"attention_crossover({dim}) = {got} is not the smallest such L")


@points(1)
def test_macs_rejects_zero(student, rng):
    """mhsa_macs with seq_len 0 or a negative dim raises ValueError."""
    expect_raises(lambda: student.call("mhsa_macs", 0, 64), "ValueError", name="mhsa_macs(0, 64)")
    expect_raises(lambda: student.call("mhsa_macs", 16, -_int(rng, 1, 9)), "ValueError", name="mhsa_macs(16, negative)")


@points(1)
def test_crossover_rejects_zero(student, rng):
    """attention_crossover(0) raises ValueError."""
    expect_raises(lambda: student.call("attention_crossover", 0), "ValueError", name="attention_crossover(0)")
