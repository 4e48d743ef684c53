"""``vitcourse release``: generate the student notebooks in ``exercises/`` from ``solutions/``.

``solutions/NN_topic.ipynb`` is the single source of each exercise. In the student copy:

- the code between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` becomes one
  ``raise NotImplementedError(...)`` at the indentation of the ``BEGIN`` marker, so the
  signature and docstring above it stay;
- cells tagged ``solution`` (worked answers in prose) are dropped;
- every code cell's outputs and execution count are cleared (the student runs them);
- the Colab badge and install cell are re-stamped with the exercise's own path.

The output is a pure function of the solution notebook, so ``--check`` compares bytes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from .stamp import read_repository, stamp_notebook
from .stubs import STUB_LINE

SOLUTION_DIR = "solutions"
EXERCISE_DIR = "exercises"
SOLUTION_TAG = "solution"

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION\b")
_END = re.compile(r"^(?P<indent>[ \t]*)#\s*END SOLUTION\b")


class MarkerError(ValueError):
    """Unbalanced or misplaced ``# BEGIN SOLUTION`` / ``# END SOLUTION`` markers."""


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace each outermost marked block of ``source`` by a ``raise NotImplementedError``.

    Blocks may nest (an inner pair is simply part of the outer block). Raises
    :class:`MarkerError` naming ``where`` and the line for an ``END`` without ``BEGIN``, a
    ``BEGIN`` never closed, or a ``BEGIN`` at column 0 (a top-level ``raise`` would stop the
    student's notebook when it runs top to bottom).
    """
    out: list[str] = []
    depth = 0
    opened_at = 0
    for number, line in enumerate(source.split("\n"), start=1):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if depth == 0:
                indent = begin.group("indent")
                if not indent:
                    raise MarkerError(
                        f"{where}, line {number}: '# BEGIN SOLUTION' at column 0; markers must sit "
                        "inside a function or class body so that the exercise runs top to bottom"
                    )
                out.append(indent + STUB_LINE)
                opened_at = number
            depth += 1
        elif end:
            if depth == 0:
                raise MarkerError(f"{where}, line {number}: '# END SOLUTION' without a '# BEGIN SOLUTION'")
            depth -= 1
        elif depth == 0:
            out.append(line)
    if depth:
        raise MarkerError(f"{where}, line {opened_at}: '# BEGIN SOLUTION' is never closed by '# END SOLUTION'")
    return "\n".join(out)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def make_exercise(solution, exercise_path: str, repo_url: str, branch: str, name: str = "notebook"):
    """The student notebook (a new ``NotebookNode``) for a solution notebook."""
    nb = nbformat.reads(nbformat.writes(solution), as_version=4)  # a deep copy
    cells = []
    for index, cell in enumerate(nb.cells):
        if SOLUTION_TAG in _tags(cell):
            continue
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, where=f"{name}, cell {index}")
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    nb.cells = cells
    known_ids = {cell.get("id") for cell in cells}
    stamp_notebook(nb, exercise_path, repo_url, branch)
    # A solution not stamped yet gets fresh random ids for the badge and install cells; name
    # them after their tags instead, so the output stays a pure function of the input.
    for cell in nb.cells:
        if cell.get("id") not in known_ids and "id" in cell:
            cell["id"] = _tags(cell)[0]
    return nb


def release(root: Path, check: bool = False) -> tuple[list[Path], list[Path]]:
    """Generate every exercise; return ``(changed, stale)``.

    ``changed``: exercises written (with ``check``: that would be written). ``stale``:
    notebooks in ``exercises/`` with no solution (reported, never deleted).
    """
    root = Path(root)
    repo_url, branch = read_repository(root)
    solutions = sorted((root / SOLUTION_DIR).glob("*.ipynb"))
    (root / EXERCISE_DIR).mkdir(exist_ok=True)
    changed = []
    for source in solutions:
        target = root / EXERCISE_DIR / source.name
        solution = nbformat.read(source, as_version=4)
        exercise = make_exercise(
            solution, target.relative_to(root).as_posix(), repo_url, branch, name=source.relative_to(root).as_posix()
        )
        text = nbformat.writes(exercise) + "\n"
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            changed.append(target)
            if not check:
                target.write_text(text, encoding="utf-8")
    names = {p.name for p in solutions}
    stale = sorted(p for p in (root / EXERCISE_DIR).glob("*.ipynb") if p.name not in names)
    return changed, stale


def main(args: argparse.Namespace) -> int:
    try:
        changed, stale = release(Path(args.root), check=args.check)
    except MarkerError as error:
        print(f"vitcourse release: {error}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"{'out of date' if args.check else 'wrote'}: {path}")
    for path in stale:
        print(f"no solution for {path} (remove it or add solutions/{path.name})", file=sys.stderr)
    if args.check and (changed or stale):
        print("run `make exercises` (vitcourse release) to regenerate exercises/", file=sys.stderr)
        return 1
    return 0
