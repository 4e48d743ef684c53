"""The ``points`` decorator, the failure types and the ``expect_*`` checks that hidden tests use
(they import them from ``vitcourse.grading.hidden``).

Hidden tests run only on the trusted side. They reach the student's code through a ``student``
object (``student.call``, ``student.module``) whose return values are plain data that came over
the data-only channel, so every check here re-verifies exact types before it compares anything:
an object with a lying ``__eq__`` or a tensor subclass can never reach ``torch.allclose``.

    from vitcourse.grading.hidden import points, expect_tensor

    EXERCISE = "01_patches"

    @points(2)
    def test_patchify_square_batch(student, rng):
        \"\"\"patchify on a random square batch equals the reference.\"\"\"
        images = torch.randn(3, 2, 12, 12, generator=rng)
        expect_tensor(student.call("patchify", images, 4), reference(images, 4), name="patchify")
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "points",
    "GradingFailure",
    "StudentRaised",
    "StudentCrashed",
    "expect_tensor",
    "expect_number",
    "expect_raises",
]


class GradingFailure(Exception):
    """A check failed: zero points for this test, ``message`` is shown to the student."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class StudentRaised(GradingFailure):
    """The student's code raised ``type_name`` (e.g. ``"ValueError"``) with ``message``.

    ``bases`` lists the names of the built-in exception classes the raised type derives from,
    so that ``expect_raises(..., "ValueError")`` accepts a student's subclass of ValueError but
    not a student-defined class that is merely *called* ValueError.
    """

    def __init__(self, type_name: str, message: str = "", bases: tuple[str, ...] = ()):
        self.type_name = str(type_name)
        self.bases = tuple(str(b) for b in bases)
        self.student_message = str(message)
        text = f"your code raised {self.type_name}"
        if self.student_message:
            text += f": {self.student_message}"
        super().__init__(text)


class StudentCrashed(GradingFailure):
    """The student's process crashed, timed out, ran out of memory, exited early, flooded its
    output or returned a value outside the data-only contract."""


def points(value: int | float) -> Callable:
    """Mark a hidden test with its maximum points (the function stays a normal pytest test)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"points(value): expected an int or float, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"points(value): expected a positive finite number, got {value!r}")

    def mark(fn: Callable) -> Callable:
        fn.points = value
        return fn

    return mark


def _describe(value: Any) -> str:
    """A short, safe description of a value that came back from the student."""
    if type(value) is torch.Tensor:
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if type(value) in (int, float, bool, str, type(None)):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return f"a value of type {type(value).__name__}"


def _default_tolerances(dtype: torch.dtype, scale: float) -> tuple[float, float]:
    """(rtol, atol) for comparing results of this dtype; atol grows with the values' magnitude."""
    scale = max(scale, 1.0)
    if dtype == torch.float64 or dtype == torch.complex128:
        return 1e-10, 1e-12 * scale
    if dtype == torch.float32 or dtype == torch.complex64:
        return 1e-5, 1e-6 * scale
    if dtype == torch.bfloat16:
        return 1.6e-2, 1e-2 * scale
    if dtype == torch.float16:
        return 1e-3, 1e-3 * scale
    return 1e-5, 1e-6 * scale


def expect_tensor(got: Any, expected: torch.Tensor, name: str, rtol: float | None = None,
                  atol: float | None = None) -> None:
    """Check that ``got`` is a plain tensor equal to ``expected`` (same dtype and shape, finite
    where expected is finite, close within dtype-dependent tolerances; integer dtypes exact)."""
    if type(expected) is not torch.Tensor:
        raise TypeError(f"expect_tensor(expected=...): the reference must be a torch.Tensor, "
                        f"got {type(expected).__name__}")
    if type(got) is not torch.Tensor:
        raise GradingFailure(f"{name}: expected a torch.Tensor, got {_describe(got)}")
    if got.dtype != expected.dtype:
        raise GradingFailure(f"{name}: expected dtype {expected.dtype}, got {got.dtype}")
    if tuple(got.shape) != tuple(expected.shape):
        raise GradingFailure(f"{name}: expected shape {tuple(expected.shape)}, "
                             f"got {tuple(got.shape)}")
    expected = expected.detach().cpu()
    if got.dtype == torch.bool or not (got.is_floating_point() or got.is_complex()):
        if not torch.equal(got, expected):
            wrong = int((got != expected).sum())
            raise GradingFailure(f"{name}: {wrong} of {expected.numel()} entries differ "
                                 f"from the expected values (integers must match exactly)")
        return
    finite = torch.isfinite(expected)
    bad = finite & ~torch.isfinite(got)
    if bool(bad.any()):
        raise GradingFailure(f"{name}: {int(bad.sum())} entries are inf or nan where the "
                             f"expected values are finite")
    if expected.numel() == 0:
        return
    scale = float(expected[finite].abs().max()) if bool(finite.any()) else 1.0
    d_rtol, d_atol = _default_tolerances(got.dtype, scale)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    if not torch.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True):
        diff = (got - expected).abs()
        diff = torch.where(finite, diff, torch.zeros_like(diff))
        worst = float(diff.max()) if diff.numel() else 0.0
        raise GradingFailure(f"{name}: values differ from the expected ones (largest absolute "
                             f"difference {worst:.3g}; tolerance rtol={rtol:g}, atol={atol:g})")


def expect_number(got: Any, expected: int | float, name: str, rel: float = 1e-9,
                  exact_int: bool = False) -> None:
    """Check that ``got`` is a plain int or float (not bool, not a tensor) close to ``expected``;
    with ``exact_int`` it must be an int equal to ``expected``."""
    if type(got) not in (int, float):
        raise GradingFailure(f"{name}: expected a Python number (int or float), got {_describe(got)}")
    if exact_int:
        if type(got) is not int:
            raise GradingFailure(f"{name}: expected the integer {expected!r}, got {_describe(got)}")
        if got != int(expected):
            raise GradingFailure(f"{name}: expected {expected!r}, got {got!r}")
        return
    expected = float(expected)
    got_f = float(got)
    if math.isnan(expected):
        if not math.isnan(got_f):
            raise GradingFailure(f"{name}: expected nan, got {got!r}")
        return
    if not math.isclose(got_f, expected, rel_tol=rel, abs_tol=rel * 1e-3):
        raise GradingFailure(f"{name}: expected {expected!r}, got {got!r}")


def expect_raises(call: Callable[[], Any], type_name: str | tuple[str, ...], name: str) -> None:
    """Pass only if ``call()`` makes the student's code raise ``type_name`` (or one of a tuple of
    names; a subclass of a listed built-in exception counts)."""
    accepted = (type_name,) if isinstance(type_name, str) else tuple(type_name)
    wanted = " or ".join(accepted)
    try:
        value = call()
    except StudentRaised as raised:
        if raised.type_name in accepted or any(b in accepted for b in raised.bases):
            return
        raise GradingFailure(f"{name}: expected your code to raise {wanted}, but it raised "
                             f"{raised.type_name}: {raised.student_message}") from None
    raise GradingFailure(f"{name}: expected your code to raise {wanted}, but it returned "
                         f"{_describe(value)}")
