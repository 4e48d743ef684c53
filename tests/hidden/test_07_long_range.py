"""Hidden tests for exercise 07 (long range): ``same_object_mask`` and ``count_objects``.

The contract is defined in the exercise; the references are ``vitcourse.course.checks.reference_*``,
and the split-halves test builds its expected count by construction.
"""

import torch

from vitcourse.course.checks import reference_count_objects, reference_same_object_mask
from vitcourse.grading.hidden import expect_raises, expect_tensor, points

EXERCISE = "07_long_range"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "same_object_mask": "vitcourse.course.checks.reference_same_object_mask",
    "count_objects": "vitcourse.course.checks.reference_count_objects",
}


def _int(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def _ids(rng, batch, tokens, top):
    return torch.randint(0, top + 1, (batch, tokens), generator=rng, dtype=torch.int64)


@points(3)
def test_mask_random_ids(student, rng):
    """same_object_mask on random ids equals the reference."""
    ids = _ids(rng, _int(rng, 1, 3), _int(rng, 2, 16), _int(rng, 1, 5))
    got = student.call("same_object_mask", ids)
    expect_tensor(got, reference_same_object_mask(ids), name=f"same_object_mask(ids of shape {tuple(ids.shape)})")


@points(1)
def test_mask_background_only(student, rng):
    """An image of background only gives an all-False mask."""
    ids = torch.zeros(1, _int(rng, 1, 6), dtype=torch.int64)
    got = student.call("same_object_mask", ids)
    expect_tensor(got, reference_same_object_mask(ids), name="same_object_mask(all zeros)")


@points(3)
def test_count_random_ids(student, rng):
    """count_objects on random ids equals the number of distinct non-zero ids."""
    ids = _ids(rng, _int(rng, 2, 4), _int(rng, 2, 20), _int(rng, 2, 9))
    got = student.call("count_objects", ids)
    expect_tensor(got, reference_count_objects(ids), name=f"count_objects(ids of shape {tuple(ids.shape)})")


@points(2)
def test_count_split_halves(student, rng):
    """Objects split into two far-apart halves are counted once each."""
    objects = _int(rng, 1, 4)
    half = 2 * objects + _int(rng, 0, 4)  # tokens in each half of the image
    ids = torch.zeros(1, 2 * half, dtype=torch.int64)
    left = torch.randperm(half, generator=rng)[:objects]
    right = torch.randperm(half, generator=rng)[:objects] + half
    labels = torch.randperm(50, generator=rng)[:objects] + 1  # arbitrary, non-consecutive ids
    ids[0, left], ids[0, right] = labels, labels
    got = student.call("count_objects", ids)
    expect_tensor(got, torch.tensor([objects]), name=f"count_objects({ids.tolist()})")


@points(1)
def test_count_background_only(student, rng):
    """Background only counts zero objects."""
    ids = torch.zeros(2, 5, dtype=torch.int64)
    expect_tensor(student.call("count_objects", ids), torch.zeros(2, dtype=torch.int64), name="count_objects(all zeros)")


@points(1)
def test_rejects_float_ids(student, rng):
    """Float ids raise ValueError in both functions."""
    ids = torch.randint(0, 3, (1, 4), generator=rng).float()
    expect_raises(lambda: student.call("same_object_mask", ids), "ValueError", name="same_object_mask(float ids)")
    expect_raises(lambda: student.call("count_objects", ids), "ValueError", name="count_objects(float ids)")


@points(1)
def test_rejects_negative_ids(student, rng):
    """Negative ids raise ValueError."""
    ids = torch.tensor([[0, -1, 2]])
    expect_raises(lambda: student.call("same_object_mask", ids), "ValueError", name="same_object_mask([[0, -1, 2]])")
