"""How an exercise's answer is compared with the expected one: the failure types, the ``points``
mark, the ``expect_*`` checks and the one tolerance rule.

Shared by the two uses of every exercise contract (``vitcourse.course.contracts``): the visible
``check(...)`` in the student's notebook and the grader's hidden tests (which import these names
from ``vitcourse.grading.hidden``). So a student who passes a clause in ``check()`` passes it in
the grader on the same inputs: the same comparison, the same tolerance, the same message.

The values compared come from the student's code through the data-only rules of
``vitcourse.course.values`` (in the grader, over the sandbox's channel), so every check here
re-verifies exact types before it compares anything: an object with a lying ``__eq__`` or a
tensor subclass can never reach ``torch.allclose``.

    from vitcourse.grading.hidden import points, expect_tensor

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
    "tolerances",
    "tensor_mismatch",
    "expect_tensor",
    "expect_number",
    "expect_raises",
    "expect_items",
    "same_values",
]


class GradingFailure(Exception):
    """A check failed: zero points for this clause, ``message`` is shown to the student."""

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

    def is_a(self, name: str) -> bool:
        """Whether the raised type is the built-in ``name`` or derives from it."""
        return self.type_name == name or name in self.bases


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
    if type(value) in (tuple, list, dict):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a value of type {type(value).__name__}"


# A few units in the last place of each dtype's rounding: a correct answer computed in another
# order (or in float64 and cast back) passes, a wrong formula does not.
_TOLERANCES = {
    torch.float64: (1e-10, 1e-12),
    torch.complex128: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.complex64: (1e-5, 1e-6),
    torch.float16: (1e-2, 1e-3),  # machine epsilon 9.8e-4: a float16 result is good to ~1e-3
    torch.bfloat16: (1.6e-2, 1e-2),  # machine epsilon 7.8e-3
}


def tolerances(dtype: torch.dtype, scale: float = 1.0) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing a result of ``dtype`` whose largest expected magnitude is
    ``scale``: the one rule of ``check()`` and the grader. ``atol`` grows with the values'
    magnitude (never below the dtype's own), so entries near zero in a large result are judged
    on the result's scale."""
    rtol, atol = _TOLERANCES.get(dtype, _TOLERANCES[torch.float32])
    return rtol, atol * max(float(scale), 1.0)


def tensor_mismatch(got: Any, expected: torch.Tensor, rtol: float | None = None,
                    atol: float | None = None) -> str | None:
    """``None`` when ``got`` is a plain tensor equal to ``expected`` under :func:`tolerances`
    (or the ``rtol`` / ``atol`` given); otherwise a sentence saying what differs and where."""
    if type(got) is not torch.Tensor:
        return f"expected a torch.Tensor, got {_describe(got)}"
    if got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype}, got {got.dtype}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    got, expected = got.detach().cpu(), expected.detach().cpu()
    if got.dtype == torch.bool or not (got.is_floating_point() or got.is_complex()):
        bad = got != expected
        if bool(bad.any()):
            return (f"{int(bad.sum())} of {expected.numel()} entries differ from the expected values "
                    f"(they must match exactly); {_first(bad, got, expected)}")
        return None
    finite = torch.isfinite(expected)
    bad = finite & ~torch.isfinite(got)
    if bool(bad.any()):
        return f"{int(bad.sum())} entries are inf or nan where the expected values are finite"
    if expected.numel() == 0:
        return None
    scale = float(expected[finite].abs().max()) if bool(finite.any()) else 1.0
    d_rtol, d_atol = tolerances(got.dtype, scale)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    bad = ~torch.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if not bool(bad.any()):
        return None
    diff = torch.where(finite, (got - expected).abs(), torch.zeros((), dtype=got.dtype))
    tolerance = f"tolerance rtol={rtol:g}, atol={atol:g}"
    if expected.dim() == 0:
        return f"{_first(bad, got, expected)} ({tolerance})"
    return (f"{int(bad.sum())} of {expected.numel()} values differ from the expected ones; "
            f"{_first(bad, got, expected)} (largest absolute difference {float(diff.max()):.3g}; "
            f"{tolerance})")


def _first(bad: torch.Tensor, got: torch.Tensor, expected: torch.Tensor) -> str:
    """The first wrong entry: where it is and what it holds."""
    index = tuple(int(i) for i in bad.nonzero()[0]) if bad.dim() else ()
    where = f"first at index {index}: " if index else ""
    return f"{where}expected {expected[index].item():.6g}, got {got[index].item():.6g}"


def expect_tensor(got: Any, expected: torch.Tensor, name: str, rtol: float | None = None,
                  atol: float | None = None) -> None:
    """Check that ``got`` is a plain tensor equal to ``expected``: same dtype and shape, finite
    where expected is finite, close within :func:`tolerances` (integer and bool dtypes exact).
    Raises :class:`GradingFailure` saying what differs, prefixed with ``name``."""
    if type(expected) is not torch.Tensor:
        raise TypeError(f"expect_tensor(expected=...): the reference must be a torch.Tensor, "
                        f"got {type(expected).__name__}")
    why = tensor_mismatch(got, expected, rtol, atol)
    if why:
        raise GradingFailure(f"{name}: {why}")


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
        if any(raised.is_a(name_) for name_ in accepted):
            return
        raise GradingFailure(f"{name}: expected your code to raise {wanted}, but it raised "
                             f"{raised.type_name}: {raised.student_message}") from None
    raise GradingFailure(f"{name}: expected your code to raise {wanted}, but it returned "
                         f"{_describe(value)}")


def expect_items(got: Any, fields: tuple[str, ...], name: str) -> tuple:
    """Pass only if ``got`` is a tuple or list of ``len(fields)`` items (a function that returns
    several results); returns them as a tuple. The message names the items, e.g. (out, lse)."""
    if type(got) not in (tuple, list) or len(got) != len(fields):
        kind = {2: "a pair", 3: "a triple"}.get(len(fields), f"{len(fields)} items")
        raise GradingFailure(f"{name}: expected {kind} ({', '.join(fields)}), got {_describe(got)}")
    return tuple(got)


def same_values(a: Any, b: Any) -> bool:
    """Whether two data values (what the student's code returned) are the same under the rules
    above: equal structure and exact types, tensors of one dtype and shape within
    :func:`tolerances` of each other, numbers within ``expect_number``'s default."""
    if type(a) is not type(b):
        return False
    if type(a) is torch.Tensor:
        return tensor_mismatch(a, b) is None
    if type(a) in (tuple, list):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if type(a) is float:
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return a == b
