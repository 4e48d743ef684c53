"""Why the grader stops: it cannot run, or what it trusts was changed behind its back."""

from __future__ import annotations


class GraderCannotRun(Exception):
    """The grader itself cannot run (unknown exercise, broken hidden tests, no usable sandbox,
    unwritable output...): nothing was graded, or grading stopped."""


class Tampered(GraderCannotRun):
    """Something the grader trusts (its gradebook, its exports, the hidden tests, its own code)
    changed, and the grader did not change it. ``changes`` names each change; ``suspects`` are
    the submissions whose code was running since the last check that found nothing."""

    def __init__(self, changes: list[str], suspects: list[str] | None = None):
        self.changes = list(changes)
        self.suspects = sorted(suspects or [])
        super().__init__("; ".join(self.changes))
