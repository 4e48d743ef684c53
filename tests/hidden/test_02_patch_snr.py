"""Hidden tests for exercise 02 (patch SNR): ``min_object_size`` against ``vitcourse.analysis.patch_snr``."""

import math

import torch

from vitcourse.analysis.patch_snr import min_object_size as reference
from vitcourse.grading.hidden import GradingFailure, expect_number, points

EXERCISE = "02_patch_snr"
# the package's answers, refused to the submission while it is graded
REFERENCE_ANSWERS = {
    "min_object_size": "vitcourse.analysis.patch_snr.min_object_size",
}


def _uniform(rng, low, high):
    return low + (high - low) * float(torch.rand((), generator=rng, dtype=torch.float64))


@points(3)
def test_random_arguments(student, rng):
    """min_object_size on random patch sizes, noise and contrast (default z) equals the formula."""
    for _ in range(3):
        p = int(torch.randint(1, 33, (1,), generator=rng))
        sigma, contrast = _uniform(rng, 0.01, 2.0), _uniform(rng, 0.05, 3.0)
        got = student.call("min_object_size", p, sigma, contrast)
        expect_number(got, reference(p, sigma, contrast), name=f"min_object_size({p}, {sigma:.4g}, {contrast:.4g})")


@points(2)
def test_z_is_used(student, rng):
    """min_object_size uses z, given by keyword."""
    p, sigma, contrast, z = 8, _uniform(rng, 0.05, 1.0), _uniform(rng, 0.2, 2.0), _uniform(rng, 1.0, 5.0)
    got = student.call("min_object_size", p, sigma, contrast, z=z)
    expect_number(got, reference(p, sigma, contrast, z), name=f"min_object_size({p}, {sigma:.4g}, {contrast:.4g}, z={z:.4g})")


@points(1)
def test_float_patch_size(student, rng):
    """min_object_size accepts a non-integer patch size."""
    p = _uniform(rng, 1.5, 20.0)
    got = student.call("min_object_size", p, 0.3, 0.7, 2.0)
    expect_number(got, reference(p, 0.3, 0.7, 2.0), name=f"min_object_size({p:.4g}, 0.3, 0.7, 2.0)")


@points(2)
def test_square_root_scaling(student, rng):
    """Four times the patch size doubles the smallest object side."""
    p = int(torch.randint(1, 9, (1,), generator=rng))
    small = student.call("min_object_size", p, 0.2, 0.5)
    large = student.call("min_object_size", 4 * p, 0.2, 0.5)
    expect_number(small, reference(p, 0.2, 0.5), name=f"min_object_size({p}, 0.2, 0.5)")
    expect_number(large, reference(4 * p, 0.2, 0.5), name=f"min_object_size({4 * p}, 0.2, 0.5)")
    if not math.isclose(large / small, 2.0, rel_tol=1e-9):
        raise GradingFailure(f"min_object_size(4p) / min_object_size(p) should be 2, got {large / small!r}")
