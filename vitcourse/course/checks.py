"""Visible self-checks for the exercises: ``check("overlapping_patches", overlapping_patches)``.

An exercise converted to a contract (:mod:`vitcourse.course.exercises`) is checked by its
contract: the same clauses the grader scores, on fixed inputs, with the common mistakes named
(:meth:`vitcourse.course.contracts.Contract.check`). The others (exercises 02-10 and 12, until
they are converted) keep the hand-written checks below, which run the student's function or
class on a few small, seeded inputs, compare it with the package's reference under the same
tolerance rule as the grader (:func:`vitcourse.course.expectations.tolerances`) and print one
line per case. A check never raises for a student's mistake: it returns ``True`` when every case
passes, ``False`` otherwise.

Exercise 07's contract is defined with the exercise, so its references
(``reference_same_object_mask``, ``reference_count_objects``) live here.
"""

from __future__ import annotations

import traceback

import torch

from .exercises import CONTRACTS, contract_for
from .expectations import GradingFailure, expect_number, tensor_mismatch
from .values import DisallowedValue, to_data

__all__ = [
    "check",
    "CHECK_NAMES",
    "reference_same_object_mask",
    "reference_count_objects",
]


# ---- references defined with the exercises -------------------------------------------------


def _check_ids(ids) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.int64:
        what = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"ids must be a (B, N) int64 tensor, got {what}")
    if (ids < 0).any():
        raise ValueError("ids must be >= 0 (0 is background)")


def reference_same_object_mask(ids: torch.Tensor) -> torch.Tensor:
    """Exercise 07: ``(B, N)`` int64 ids -> ``(B, N, N)`` bool, True where both ids equal and non-zero."""
    _check_ids(ids)
    return (ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] != 0)


def reference_count_objects(ids: torch.Tensor) -> torch.Tensor:
    """Exercise 07: ``(B, N)`` int64 ids -> ``(B,)`` int64, the number of distinct non-zero ids."""
    _check_ids(ids)
    return torch.tensor([len(set(row.tolist()) - {0}) for row in ids], dtype=torch.int64)


# ---- reporting -----------------------------------------------------------------------------


class _NotImplementedYet(Exception):
    pass


class _Checker:
    """Runs cases, prints one line each, and remembers whether all passed."""

    def __init__(self, name: str):
        self.name = name
        self.passed = 0
        self.failed = 0

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"  [pass] {what}")

    def fail(self, what: str, why: str) -> None:
        self.failed += 1
        print(f"  [FAIL] {what}: {why}")

    def run(self, label: str, fn):
        """Call the student's code; a stub stops the check, any other error fails this case."""
        try:
            return True, fn()
        except NotImplementedError:
            raise _NotImplementedYet from None
        except Exception as error:  # the student's bug, reported, not raised
            frame = traceback.extract_tb(error.__traceback__)[-1]
            self.fail(label, f"raised {type(error).__name__}: {error} (line {frame.lineno}: {frame.line})")
            return False, None

    def tensor(self, label: str, got, expected: torch.Tensor, rtol=None, atol=None) -> bool:
        try:  # what the grader would receive: a Parameter becomes a plain tensor, a subclass is refused
            got = to_data(got)
        except DisallowedValue as refused:
            self.fail(label, f"your code returned {refused}")
            return False
        why = tensor_mismatch(got, expected, rtol, atol)
        if why:
            self.fail(label, why)
            return False
        self.ok(f"{label}: {_describe(expected)} as expected")
        return True

    def number(self, label: str, got, expected, rel: float = 1e-9, exact_int: bool = False) -> bool:
        try:
            expect_number(got, expected, name=label, rel=rel, exact_int=exact_int)
        except GradingFailure as failure:
            self.failed += 1
            print(f"  [FAIL] {failure.message}")
            return False
        self.ok(f"{label} = {got!r}")
        return True

    def raises(self, label: str, fn, exception: type) -> bool:
        try:
            result = fn()
        except NotImplementedError:
            raise _NotImplementedYet from None
        except exception as error:
            self.ok(f"{label} raises {exception.__name__} ({error})")
            return True
        except Exception as error:
            self.fail(label, f"expected {exception.__name__}, got {type(error).__name__}: {error}")
            return False
        self.fail(label, f"expected {exception.__name__}, but it returned {_short(result)}")
        return False


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, {str(t.dtype).removeprefix('torch.')}"


def _short(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of {_describe(value)}"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


# ---- the checks, one per contract name -----------------------------------------------------


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _example_ids() -> torch.Tensor:
    # Two images of 8 tokens; objects split into two far-apart halves share an identifier.
    return torch.tensor([[1, 0, 2, 0, 0, 1, 0, 2], [0, 3, 0, 0, 0, 0, 3, 5]], dtype=torch.int64)


def _check_same_object_mask(c: _Checker, fn) -> None:
    g = _gen(7)
    for ids in (_example_ids(), torch.randint(0, 4, (3, 10), generator=g), torch.zeros(1, 4, dtype=torch.int64)):
        label = f"same_object_mask(ids {tuple(ids.shape)})"
        done, got = c.run(label, lambda ids=ids: fn(ids))
        if done:
            c.tensor(label, got, reference_same_object_mask(ids))


def _check_count_objects(c: _Checker, fn) -> None:
    g = _gen(8)
    for ids in (_example_ids(), torch.randint(0, 6, (3, 12), generator=g), torch.zeros(1, 4, dtype=torch.int64)):
        label = f"count_objects(ids {ids.tolist() if ids.numel() <= 16 else tuple(ids.shape)})"
        done, got = c.run(label, lambda ids=ids: fn(ids))
        if done:
            c.tensor(label, got, reference_count_objects(ids))


_CHECKS = {
    "same_object_mask": _check_same_object_mask,
    "count_objects": _check_count_objects,
}
CHECK_NAMES = tuple(name for contract in CONTRACTS.values() for name in contract.names) + tuple(_CHECKS)


def check(name: str, obj) -> bool:
    """Check a student's ``obj`` against the contract ``name``; print what passed; return all-passed.

    ``name`` is one of :data:`CHECK_NAMES` (e.g. ``"overlapping_patches"``). Raises ``ValueError``
    only for an unknown name; a mistake in ``obj`` is printed, never raised.
    """
    contract = contract_for(name)
    if contract is not None:
        return contract.check(name, obj)
    if name not in _CHECKS:
        raise ValueError(f"unknown check {name!r}; valid names: {', '.join(CHECK_NAMES)}")
    checker = _Checker(name)
    print(f"Checking {name}:")
    if not callable(obj):
        checker.fail(name, f"expected a function or class, got {_short(obj)}")
    else:
        try:
            _CHECKS[name](checker, obj)
        except _NotImplementedYet:
            print(
                f"  {name} is not implemented yet: replace the `raise NotImplementedError` "
                "with your code, then run this cell again."
            )
            return False
    if checker.failed:
        print(f"{name}: {checker.failed} of {checker.passed + checker.failed} checks failed.")
        return False
    print(f"{name}: all {checker.passed} checks passed.")
    return True
