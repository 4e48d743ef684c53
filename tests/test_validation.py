"""vitcourse.validation: one rule for bad input, the kind (TypeError) versus the value (ValueError)."""

import numpy as np
import pytest
import torch

from vitcourse.validation import (
    as_device,
    check_bool,
    check_class_labels,
    check_finite_positive,
    check_int,
    check_int_pair,
    check_non_negative_int,
    check_positive_int,
    check_real,
)


@pytest.mark.parametrize("value", ["3", None, True, [3], torch.tensor(3)])
def test_not_a_number_is_the_wrong_kind(value):
    for check in (check_positive_int, check_non_negative_int, check_finite_positive, check_real, check_int):
        with pytest.raises(TypeError, match=f"^n must be .*, got {type(value).__name__}"):
            check(value, "n")


@pytest.mark.parametrize("value", [0, -1, 2.5, 3.0, float("nan")])
def test_a_number_that_is_not_a_positive_int_is_a_wrong_value(value):
    with pytest.raises(ValueError, match=f"^n must be a positive int, got {value!r}$"):
        check_positive_int(value, "n")


def test_ints_come_back_as_python_ints():
    assert check_positive_int(np.int64(3), "n") == 3 and type(check_positive_int(np.int64(3), "n")) is int
    assert check_non_negative_int(0, "n") == 0
    with pytest.raises(ValueError, match="non-negative int, got -1"):
        check_non_negative_int(-1, "n")
    assert check_int(7, "n", "an odd int", lambda v: v % 2 == 1) == 7
    with pytest.raises(ValueError, match="^n must be an odd int, got 8$"):
        check_int(8, "n", "an odd int", lambda v: v % 2 == 1)


@pytest.mark.parametrize("value", [0, -2.0, float("inf"), float("nan")])
def test_finite_positive_refuses_zero_negatives_and_non_finite(value):
    with pytest.raises(ValueError, match="must be a finite positive number"):
        check_finite_positive(value, "x")
    assert check_finite_positive(0.5, "x") == 0.5 and check_finite_positive(2, "x") == 2.0


@pytest.mark.parametrize("value, expected", [(4, (4, 4)), ((2, 3), (2, 3)), ([2, 3], (2, 3)),
                                             (torch.Size([5, 6]), (5, 6)), ((np.int64(2), 3), (2, 3))])
def test_pairs_an_int_means_square(value, expected):
    assert check_int_pair(value, "grid") == expected


@pytest.mark.parametrize("value, error", [
    ((0, 4), ValueError), ((4, 4, 4), ValueError), ((14.0, 14), ValueError), (2.5, ValueError), (0, ValueError),
    ("4x4", TypeError), (("4", 4), TypeError), ((True, 4), TypeError), (None, TypeError), ({4: 4}, TypeError),
])
def test_pairs_follow_the_same_rule(value, error):
    with pytest.raises(error, match="^grid must be a positive int or a pair of positive ints, got "):
        check_int_pair(value, "grid")


def test_bools_are_only_true_or_false():
    assert check_bool(False, "flag") is False
    for value in ("no", 0, 1, None):
        with pytest.raises(TypeError, match="flag must be True or False"):
            check_bool(value, "flag")


def test_class_labels_kind_shape_and_range():
    check_class_labels(torch.tensor([0, 2, 1]), "labels", 3)
    with pytest.raises(TypeError, match="labels must be integer class indices, got dtype torch.float32"):
        check_class_labels(torch.tensor([0.0, 1.0]), "labels")
    with pytest.raises(ValueError, match=r"must be a \(N,\) tensor"):
        check_class_labels(torch.zeros(2, 2, dtype=torch.long), "labels")
    with pytest.raises(ValueError, match="negative label"):
        check_class_labels(torch.tensor([0, -1]), "labels")
    with pytest.raises(ValueError, match="labels go up to 3, out of range for num_classes=3"):
        check_class_labels(torch.tensor([0, 3]), "labels", 3)
    # values=False checks the kind and the shape only: nothing is read back from the device
    check_class_labels(torch.tensor([0, 3]), "labels", 3, values=False)
    with pytest.raises(TypeError, match="torch.from_numpy"):
        check_class_labels(np.array([0, 1]), "labels")


def test_devices_must_exist_here():
    assert as_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be a torch device.*'gpu'"):
        as_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda', but this machine has no cuda device"):
            as_device("cuda")
