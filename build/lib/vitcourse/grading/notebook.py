"""Turn a submitted notebook into the Python code it contains, and run that code.

Shared by the sandboxed worker and by the hidden tests' direct mode, so both see exactly the same
code. Cells are taken as the student left them; notebook metadata and cell tags (``allow_errors``,
``raises-exception``, ``nbval-*``, the kernelspec) have no effect. IPython syntax is made harmless:

- a line magic (``%pip install x``), a shell line (``!ls``) or an assignment from one
  (``files = !ls``) becomes ``pass`` at the same indentation, so the block around it stays valid;
- a cell magic that only wraps Python (``%%time``, ``%%capture``) runs its body; any other cell
  magic (``%%bash``, ``%%writefile``, ``%%html``...) skips the whole cell.

Cells run one after the other in one namespace; a cell that raises is recorded and the next cell
still runs, like a student who pressed "Run all" and scrolled past an error.

This module imports no torch so it stays cheap to load.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
PYTHON_CELL_MAGICS = {"time", "capture", "prun"}  # their body is plain Python

_MAGIC_LINE = re.compile(r"^(\s*)(%|!|[\w.,\s\[\]()*]+=\s*[%!])")


class InvalidNotebook(ValueError):
    """The file is not a notebook we can read (not JSON, not nbformat, too large)."""


@dataclass(frozen=True)
class Cell:
    """One code cell: its position among the notebook's cells and its Python source."""

    index: int
    source: str


@dataclass(frozen=True)
class CellError:
    """An exception raised while running a cell, as plain strings."""

    index: int
    type_name: str
    message: str

    def describe(self) -> str:
        return f"cell {self.index}: {self.type_name}: {self.message}"


def _join_source(source: Any, where: str) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    raise InvalidNotebook(f"{where}: source is neither a string nor a list of strings")


def parse_notebook(data: bytes) -> list[Cell]:
    """The code cells of a notebook given as raw bytes (nbformat 4, or 3's worksheets)."""
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(f"the notebook is {len(data)} bytes; the limit is {MAX_NOTEBOOK_BYTES}")
    try:
        nb = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidNotebook(f"not a notebook (invalid JSON: {exc})") from None
    if not isinstance(nb, dict):
        raise InvalidNotebook("not a notebook (the JSON is not an object)")
    if "cells" in nb:
        raw_cells, key = nb["cells"], "source"
    elif isinstance(nb.get("worksheets"), list):  # nbformat 3
        raw_cells = [c for ws in nb["worksheets"] if isinstance(ws, dict)
                     for c in (ws.get("cells") or [])]
        key = "input"
    else:
        raise InvalidNotebook("not a notebook (no 'cells' list)")
    if not isinstance(raw_cells, list):
        raise InvalidNotebook("not a notebook ('cells' is not a list)")
    cells = []
    for i, cell in enumerate(raw_cells):
        if not isinstance(cell, dict):
            raise InvalidNotebook(f"cell {i} is not an object")
        if cell.get("cell_type") != "code":
            continue
        cells.append(Cell(i, _join_source(cell.get(key, ""), f"cell {i}")))
    return cells


def read_notebook(path: str | Path) -> list[Cell]:
    """The code cells of the notebook at ``path``; raises InvalidNotebook or OSError."""
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read(MAX_NOTEBOOK_BYTES + 1)
    return parse_notebook(data)


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


def describe_exception(exc: BaseException) -> tuple[str, str, tuple[str, ...]]:
    """(type name, message, names of built-in base classes) of an exception, as plain strings.

    Built-in exceptions are named plainly ("ValueError"); any other class by module and
    qualified name ("__main__.ValueError"), so a student's own class called ValueError is not
    taken for the real one.
    """
    import builtins

    def is_builtin(c: type) -> bool:  # by identity: a class can claim any __module__
        return getattr(builtins, c.__name__, None) is c

    cls = type(exc)
    type_name = cls.__name__ if is_builtin(cls) else f"{cls.__module__}.{cls.__qualname__}"
    bases = tuple(c.__name__ for c in cls.__mro__[1:] if is_builtin(c)
                  and c not in (object, BaseException))
    try:
        message = str(exc)
    except BaseException:  # a student's __str__ may itself raise
        message = "<the exception's message could not be shown>"
    if len(message) > 2000:
        message = message[:2000] + "..."
    return type_name, message, bases


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
