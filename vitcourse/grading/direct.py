"""Direct mode: run a notebook in this process and hand hidden tests a ``student`` over it.

No sandbox: this is for checking the instructor's own solutions with plain pytest
(``pytest tests/hidden/test_01_patches.py``). Requests and replies still go through the channel's
encoding, so a hidden test sees the same data-only values as when grading.
"""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path

from . import channel
from .calls import handle
from .notebook import notebook_builtins, read_notebook, run_cells
from .proxy import Student


def notebook_namespace(path: str | Path, module_name: str) -> dict:
    """Run the notebook's code cells in a fresh module called ``module_name``; cell errors
    are reported as warnings (grading records them and goes on in the same way)."""
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    namespace = module.__dict__
    namespace.update(notebook_builtins())
    sys.modules[module_name] = module
    for error in run_cells(read_notebook(path), namespace):
        warnings.warn(f"{path}: {error.describe()}", stacklevel=2)
    return namespace


def in_process_student(namespace: dict) -> Student:
    """A ``student`` whose requests run in this process against ``namespace``."""

    def transport(request: dict):
        request = channel.decode(channel.encode(request))  # the student gets copies
        return channel.decode(channel.encode(handle(namespace, request)))

    return Student(transport)
