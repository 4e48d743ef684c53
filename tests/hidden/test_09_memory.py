"""Hidden tests for exercise 09 (memory): ``attention_map_bytes`` and ``checkpointed_qk_bytes``."""

import torch

from vitcourse.analysis.cost import attention_map_bytes, checkpointed_qk_bytes
from vitcourse.grading.hidden import expect_number, expect_raises, points

EXERCISE = "09_memory"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "attention_map_bytes": "vitcourse.analysis.cost.attention_map_bytes",
    "checkpointed_qk_bytes": "vitcourse.analysis.cost.checkpointed_qk_bytes",
}


def _int(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


@points(3)
def test_map_bytes_random(student, rng):
    """attention_map_bytes on random sizes and element widths equals T H L^2 b."""
    for _ in range(3):
        args = (_int(rng, 1, 48), _int(rng, 1, 16), _int(rng, 1, 5000), _int(rng, 1, 8))
        expect_number(student.call("attention_map_bytes", *args), attention_map_bytes(*args),
                      name=f"attention_map_bytes{args}", exact_int=True)


@points(1)
def test_map_bytes_default_float32(student, rng):
    """The default bytes_per_element is 4."""
    args = (_int(rng, 1, 24), _int(rng, 1, 16), _int(rng, 1, 1000))
    expect_number(student.call("attention_map_bytes", *args), attention_map_bytes(*args),
                  name=f"attention_map_bytes{args}", exact_int=True)


@points(3)
def test_qk_bytes_random(student, rng):
    """checkpointed_qk_bytes on random sizes equals T H 2 L d b."""
    for _ in range(3):
        args = (_int(rng, 1, 48), _int(rng, 1, 16), _int(rng, 1, 5000), _int(rng, 1, 128))
        b = _int(rng, 1, 8)
        expect_number(student.call("checkpointed_qk_bytes", *args, bytes_per_element=b),
                      checkpointed_qk_bytes(*args, bytes_per_element=b),
                      name=f"checkpointed_qk_bytes{args}, bytes_per_element={b}", exact_int=True)


@points(1)
def test_qk_bytes_default_float32(student, rng):
    """The default bytes_per_element is 4."""
    args = (12, 12, _int(rng, 100, 600), 64)
    expect_number(student.call("checkpointed_qk_bytes", *args), checkpointed_qk_bytes(*args),
                  name=f"checkpointed_qk_bytes{args}", exact_int=True)


@points(1)
def test_rejects_non_positive(student, rng):
    """A zero or negative size raises ValueError in both functions."""
    expect_raises(lambda: student.call("attention_map_bytes", 12, 0, 197), "ValueError",
                  name="attention_map_bytes(12, 0, 197)")
    expect_raises(lambda: student.call("checkpointed_qk_bytes", 12, 12, -_int(rng, 1, 9), 64), "ValueError",
                  name="checkpointed_qk_bytes(12, 12, negative, 64)")
