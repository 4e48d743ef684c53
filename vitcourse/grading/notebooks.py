"""Read a submitted notebook: its code cells, as the student left them.

Shared by the grader (which reads the file and sends the cells to the worker) and the hidden
tests' direct mode; no code runs here. Notebook metadata and cell tags (``allow_errors``,
``raises-exception``, ``nbval-*``, the kernelspec) have no effect: only code cells and their
source are kept. Running them is ``untrusted.cells``' job.

This module imports no torch so it stays cheap to load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024


class InvalidNotebook(ValueError):
    """The file is not a notebook we can read (not JSON, not nbformat, too large)."""


@dataclass(frozen=True)
class Cell:
    """One code cell: its position among the notebook's cells and its Python source."""

    index: int
    source: str


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
