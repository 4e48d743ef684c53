"""Tamper evidence: the grader knows what it wrote and what it trusts, and checks the disk against it.

With bubblewrap, student code cannot see the gradebook, the exports or the hidden tests. Without it
(``--sandbox none``) it can write wherever the grader's user can, and nothing stops it from doing
so; this module makes sure that it does not go unnoticed. The :class:`Ledger` holds, in the
grader's memory only:

- what the gradebook must contain (the gradebook keeps that record itself: every row it found
  when it was opened and every row it wrote since, see ``Gradebook.changes``);
- the sha256 of every file of the folders it trusts (the hidden tests, the package's own source),
  taken right after the hidden tests were loaded from the bytes that were hashed;
- the sha256 of every export it wrote (results JSON, grades.csv).

``check()`` compares all of them with the disk and raises :class:`Tampered`, naming each change.
The batch calls it before every export and at the end, so grades are never exported from a
gradebook or with hidden tests that changed behind the grader's back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

from .errors import Tampered


class Checkable(Protocol):
    def changes(self) -> list[str]:
        """What differs from what this object wrote, one description per change."""


SKIPPED_FOLDERS = ("__pycache__",)  # Python's bytecode caches: the grader never reads them


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_digests(folder: Path) -> dict[Path, str]:
    """sha256 of every regular file below ``folder`` (bytecode caches skipped), by relative path."""
    folder = Path(folder)
    digests = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in SKIPPED_FOLDERS for part in relative.parts) or not path.is_file():
            continue
        try:
            digests[relative] = sha256_bytes(path.read_bytes())
        except OSError:
            digests[relative] = "unreadable"
    return digests


class Ledger:
    """What the grader trusts, held in its memory, and the check of the disk against it."""

    def __init__(self, gradebook: Checkable):
        self.gradebook = gradebook
        self._trees: list[tuple[str, Path, dict[Path, str]]] = []
        self._exports: dict[Path, str] = {}

    def watch(self, label: str, folder: Path) -> dict[Path, str]:
        """Remember the content of every file below ``folder`` (called ``label`` in messages)."""
        folder = Path(folder).resolve()
        digests = tree_digests(folder)
        self._trees.append((label, folder, digests))
        return digests

    def wrote(self, path: Path, data: bytes) -> None:
        """Remember an export the grader has just written."""
        self._exports[Path(path)] = sha256_bytes(data)

    def changes(self) -> list[str]:
        found = list(self.gradebook.changes())
        for label, folder, expected in self._trees:
            now = tree_digests(folder)
            for relative in sorted(set(expected) | set(now)):
                if relative not in now:
                    found.append(f"{label}: {folder / relative} was removed")
                elif relative not in expected:
                    found.append(f"{label}: {folder / relative} was added")
                elif now[relative] != expected[relative]:
                    found.append(f"{label}: {folder / relative} was changed")
        for path, digest in self._exports.items():
            try:
                now_digest = sha256_bytes(path.read_bytes())
            except OSError:
                found.append(f"export {path} was removed or cannot be read")
                continue
            if now_digest != digest:
                found.append(f"export {path} was changed")
        return found

    def check(self) -> None:
        """Raise :class:`Tampered` if anything differs from what the grader wrote or trusts."""
        found = self.changes()
        if found:
            raise Tampered(found)
