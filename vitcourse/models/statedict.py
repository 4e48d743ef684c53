"""How two state dicts differ, said one way everywhere.

Loading a checkpoint, resuming a run, checking a student's module against the exercise's
contract: each compares the names and shapes of two state dicts and, when they differ, says
which keys are missing, which are unexpected and which shapes disagree. :func:`state_dict_diff`
computes that once; :meth:`StateDictDiff.describe` words it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = ["StateDictDiff", "state_dict_diff"]


def _shape(value) -> tuple[int, ...]:
    """A tensor's shape, or a shape given as a sequence of ints, as a tuple."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(value)


def _listed(keys: Sequence[str], limit: int) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


@dataclass(frozen=True)
class StateDictDiff:
    """What ``got`` lacks, what it has in excess, and the shapes that differ (each sorted by key)."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    wrong_shapes: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (key, got, expected)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shapes)

    @property
    def keys(self) -> set[str]:
        """Every key that differs in any way."""
        return {*self.missing, *self.unexpected, *(key for key, _, _ in self.wrong_shapes)}

    def describe(self, separator: str = "\n", got: str = "got", expected: str = "expected", limit: int = 20) -> str:
        """One line per kind of difference, e.g. ``missing keys (2): head.weight, head.bias``;
        ``got`` and ``expected`` name the two sides in the shape lines."""
        lines = []
        if self.missing:
            lines.append(f"missing keys ({len(self.missing)}): {_listed(self.missing, limit)}")
        if self.unexpected:
            lines.append(f"unexpected keys ({len(self.unexpected)}): {_listed(self.unexpected, limit)}")
        if self.wrong_shapes:
            shapes = [f"{key}: {got} {have} vs {expected} {want}" for key, have, want in self.wrong_shapes]
            lines.append(f"shapes differ ({len(shapes)}): {_listed(shapes, limit)}")
        return separator.join(lines)


def state_dict_diff(got: Mapping, expected: Mapping) -> StateDictDiff:
    """Compare two state dicts by key and shape; values are tensors or shapes (sequences of ints)."""
    common = sorted(set(got) & set(expected))
    return StateDictDiff(
        missing=tuple(sorted(set(expected) - set(got))),
        unexpected=tuple(sorted(set(got) - set(expected))),
        wrong_shapes=tuple(
            (key, _shape(got[key]), _shape(expected[key]))
            for key in common
            if _shape(got[key]) != _shape(expected[key])
        ),
    )
