"""What hidden-test files import: ``from vitcourse.grading.hidden import points, expect_tensor``.

The comparison rules live below both uses of an exercise's contract, in
``vitcourse.course.expectations`` (the visible ``check()`` uses the same ones): the ``points``
mark, the failure types and the ``expect_*`` checks. A hidden-test file built from a contract
(``vitcourse.course.exercises``) needs none of them; a hand-written one imports them from here.
"""

from ..course.expectations import (
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
