"""What hidden-test files import: ``from vitcourse.grading.hidden import points, expect_tensor``.

The public face of ``trusted.expectations`` (where these live, with the rest of the trusted side):
the ``points`` decorator, the failure types and the ``expect_*`` checks.
"""

from .trusted.expectations import (
    GradingFailure,
    StudentCrashed,
    StudentRaised,
    expect_number,
    expect_raises,
    expect_tensor,
    points,
)

__all__ = ["points", "GradingFailure", "StudentRaised", "StudentCrashed", "expect_tensor",
           "expect_number", "expect_raises"]
