"""Run a notebook's code cells in one namespace (in the worker, with the student's code).

Shared by the sandboxed worker and by the hidden tests' direct mode, so both run exactly the same
code. IPython syntax is made harmless:

- a line magic (``%pip install x``), a shell line (``!ls``) or an assignment from one
  (``files = !ls``) becomes ``pass`` at the same indentation, so the block around it stays valid;
- a cell magic that only wraps Python (``%%time``, ``%%capture``) runs its body; any other cell
  magic (``%%bash``, ``%%writefile``, ``%%html``...) skips the whole cell.

Cells run one after the other in one namespace; a cell that raises is recorded and the next cell
still runs, like a student who pressed "Run all" and scrolled past an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...course.values import describe_exception
from ..notebooks import Cell

PYTHON_CELL_MAGICS = {"time", "capture", "prun"}  # their body is plain Python

_MAGIC_LINE = re.compile(r"^(\s*)(%|!|[\w.,\s\[\]()*]+=\s*[%!])")


@dataclass(frozen=True)
class CellError:
    """An exception raised while running a cell, as plain strings."""

    index: int
    type_name: str
    message: str

    def describe(self) -> str:
        return f"cell {self.index}: {self.type_name}: {self.message}"


def python_source(source: str) -> str | None:
    """The cell's source with IPython syntax made harmless; None when the cell is skipped."""
    lines = source.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if first.lstrip().startswith("%%"):
        magic = first.lstrip()[2:].split()[0] if first.lstrip()[2:].split() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return None
        at = lines.index(first)
        lines = lines[:at] + [""] + lines[at + 1:]
        source = "\n".join(lines)
    try:
        compile(source, "<cell>", "exec")
        return source  # valid Python as is: never touch it (a '%' in a string stays)
    except SyntaxError:
        pass
    out: list[str] = []
    continuing = False
    for line in lines:
        if continuing:
            out.append("")
            continuing = line.rstrip().endswith("\\")
            continue
        match = _MAGIC_LINE.match(line)
        stripped = line.strip()
        if match or (stripped.endswith("?") and stripped.rstrip("?").isidentifier()):
            indent = match.group(1) if match else line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}pass")
            continuing = line.rstrip().endswith("\\")
        else:
            out.append(line)
    return "\n".join(out)


class _NoShell:
    """Stands in for ``get_ipython()``: every method (run_line_magic, system...) does nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


_NO_SHELL = _NoShell()


def notebook_builtins() -> dict:
    """Names a notebook may use without defining them: IPython's ``display`` and
    ``get_ipython`` (there is no kernel here, so both do nothing)."""
    return {"display": lambda *args, **kwargs: None, "get_ipython": lambda: _NO_SHELL}


def run_cells(cells: list[Cell], namespace: dict) -> list[CellError]:
    """Run the cells in order in ``namespace``; an exception (even SystemExit) is recorded and
    the next cell runs."""
    errors: list[CellError] = []
    for cell in cells:
        source = python_source(cell.source)
        if source is None or not source.strip():
            continue
        try:
            code = compile(source, f"<cell {cell.index}>", "exec")
            exec(code, namespace)
        except BaseException as exc:  # noqa: B036 - SystemExit and KeyboardInterrupt included
            type_name, message, _ = describe_exception(exc)
            errors.append(CellError(cell.index, type_name, message))
    return errors
