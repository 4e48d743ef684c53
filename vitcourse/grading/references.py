"""An exercise's reference answers: the package's own solutions, which graded code may not call.

A hidden-test file names them by the name the student defines::

    REFERENCE_ANSWERS = {"patchify": "vitcourse.models.patches.patchify"}

The grader checks the names when it loads the hidden tests (a typo stops it before any submission
runs); the worker guards them while a submission runs (``untrusted.guard``), and a refused call
raises :class:`ReferenceUseError`, whose qualified name the grader recognises in a test's feedback.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

PACKAGE = "vitcourse"


class ReferenceUseError(RuntimeError):
    """Graded code called the package's reference answer to the exercise."""


def validate_reference_answers(answers: object, where: str) -> dict[str, str]:
    """``REFERENCE_ANSWERS`` as a plain dict, each path resolved; ValueError naming ``where``."""
    if not isinstance(answers, Mapping):
        raise ValueError(f"{where}: REFERENCE_ANSWERS must map the names a student defines to "
                         f"'vitcourse.<module>.<name>' paths, not {answers!r}")
    for student_name, path in answers.items():
        if not isinstance(student_name, str) or not student_name.isidentifier():
            raise ValueError(f"{where}: REFERENCE_ANSWERS key {student_name!r} is not a Python name")
        resolve_reference(path, where)
    return dict(answers)


def resolve_reference(path: object, where: str = "REFERENCE_ANSWERS") -> object:
    """``"vitcourse.models.patches.patchify"`` -> the function or class; ValueError if it is not one."""
    if not isinstance(path, str) or not path.startswith(PACKAGE + ".") or path.count(".") < 2:
        raise ValueError(f"{where}: {path!r} is not a 'vitcourse.<module>.<name>' path")
    module_name, _, attribute = path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{where}: {path!r} does not exist ({exc})") from None
    if isinstance(obj, type):
        if "__init__" not in obj.__dict__:
            raise ValueError(f"{where}: the class {path!r} defines no __init__ to guard")
    elif not callable(obj):
        raise ValueError(f"{where}: {path!r} is neither a function nor a class")
    return obj
