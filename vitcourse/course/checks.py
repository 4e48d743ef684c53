"""Visible self-checks for the exercises: ``check("overlapping_patches", overlapping_patches)``.

Every exercise has a contract (:mod:`vitcourse.course.exercises`); ``check`` runs the clauses of
the contract that defines ``name``, the same ones the grader scores, on fixed inputs, prints one
line per clause with its points and names a matching common mistake
(:meth:`vitcourse.course.contracts.Contract.check`). A check never raises for a student's
mistake: it returns ``True`` when every clause passes, ``False`` otherwise.
"""

from __future__ import annotations

from .exercises import CONTRACTS, contract_for

__all__ = ["check", "CHECK_NAMES"]

CHECK_NAMES = tuple(name for contract in CONTRACTS.values() for name in contract.names)


def check(name: str, obj) -> bool:
    """Check a student's ``obj`` against the contract ``name``; print what passed; return all-passed.

    ``name`` is one of :data:`CHECK_NAMES` (e.g. ``"overlapping_patches"``). Raises ``ValueError``
    only for an unknown name; a mistake in ``obj`` is printed, never raised.
    """
    contract = contract_for(name)
    if contract is None:
        raise ValueError(f"unknown check {name!r}; valid names: {', '.join(CHECK_NAMES)}")
    return contract.check(name, obj)
