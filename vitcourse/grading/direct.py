"""Direct mode: run a notebook in this process and hand hidden tests a ``student`` over it.

No sandbox: this is for checking the instructor's own solutions with plain pytest
(``pytest tests/hidden/test_01_patches.py``). Requests and replies still go through the channel's
encoding, and the exercise's reference answers are guarded as when grading, so a hidden test
sees the same data-only values and the same refusals.
"""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from . import wire
from .notebooks import read_notebook
from .trusted.proxy import Student
from .untrusted.calls import handle
from .untrusted.cells import notebook_builtins, run_cells
from .untrusted.guard import reference_guards


def notebook_namespace(path: str | Path, module_name: str) -> dict:
    """Run the notebook's code cells in a fresh module called ``module_name``; cell errors
    are reported as warnings (grading records them and goes on in the same way)."""
    namespace = _fresh_namespace(path, module_name)
    _run_notebook(path, namespace)
    return namespace


@contextmanager
def graded_notebook(path: str | Path, module_name: str, reference_answers: Mapping[str, str],
                    hidden_tests: types.ModuleType) -> Iterator[dict]:
    """:func:`notebook_namespace` with ``reference_answers`` guarded as in the sandbox, from
    before the first cell until the ``with`` block ends; ``hidden_tests`` may use them."""
    namespace = _fresh_namespace(path, module_name)
    with reference_guards(reference_answers, cells_namespace=namespace, trusted=(hidden_tests,)):
        _run_notebook(path, namespace)
        yield namespace


def _fresh_namespace(path: str | Path, module_name: str) -> dict:
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    module.__dict__.update(notebook_builtins())
    sys.modules[module_name] = module
    return module.__dict__


def _run_notebook(path: str | Path, namespace: dict) -> None:
    for error in run_cells(read_notebook(path), namespace):
        warnings.warn(f"{path}: {error.describe()}", stacklevel=3)


def in_process_student(namespace: dict) -> Student:
    """A ``student`` whose requests run in this process against ``namespace``."""

    def transport(request: dict):
        request = wire.decode(wire.encode(request))  # the student gets copies
        return wire.decode(wire.encode(handle(namespace, request)))

    return Student(transport)
