"""Load an exercise's hidden tests (trusted code, run only in the grader).

Hidden tests are the module's functions named ``test_*`` carrying a ``points`` attribute, run in
definition order with ``student`` and ``rng`` passed by parameter name. The module's
``REFERENCE_ANSWERS`` (optional) names the package's own answers to the exercise, which the
submission may not use while it is graded (see ``references``); they are checked here, before
any submission runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..references import validate_reference_answers
from .errors import GraderCannotRun

EXERCISE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class GraderError(GraderCannotRun):
    """The hidden tests cannot be loaded (bad exercise id, missing or broken file...)."""


@dataclass(frozen=True)
class HiddenTest:
    name: str
    title: str
    points: float
    function: Callable


@dataclass(frozen=True)
class HiddenSuite:
    """An exercise's graded tests and the package references a submission may not call."""

    exercise: str
    tests: list[HiddenTest]
    reference_answers: dict[str, str]  # the name a student defines -> the package's answer
    module: ModuleType
    path: Path  # the file the tests were loaded from
    sha256: str  # of the exact bytes that were run


def load_hidden_tests(hidden_dir: Path, exercise: str) -> list[HiddenTest]:
    """The graded tests of ``hidden_dir/test_<exercise>.py``."""
    return load_hidden_suite(hidden_dir, exercise).tests


def load_hidden_suite(hidden_dir: Path, exercise: str) -> HiddenSuite:
    """Import ``hidden_dir/test_<exercise>.py`` (trusted code): its graded tests and the
    reference answers it forbids.

    The file is read once, hashed and compiled from those bytes (no bytecode cache is read or
    written), so ``sha256`` names exactly what runs, and a planted ``.pyc`` never does."""
    if not EXERCISE_ID.match(exercise):
        raise GraderError(f"--exercise: {exercise!r} is not a valid exercise id (letters, digits, _)")
    path = Path(hidden_dir) / f"test_{exercise}.py"
    if not path.is_file():
        raise GraderError(f"no hidden tests for exercise {exercise!r}: {path} does not exist")
    module_name = f"_vitcourse_hidden_{re.sub(r'[^0-9A-Za-z_]', '_', exercise)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        source = path.read_bytes()
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - trusted code
    except Exception as exc:
        raise GraderError(f"the hidden tests {path} cannot be imported: "
                          f"{type(exc).__name__}: {exc}") from exc
    declared = getattr(module, "EXERCISE", exercise)
    if declared != exercise:
        raise GraderError(f"{path} declares EXERCISE = {declared!r}, not {exercise!r}")
    tests = []
    for name, fn in vars(module).items():  # definition order
        if not (name.startswith("test_") and callable(fn) and hasattr(fn, "points")):
            continue
        params = set(inspect.signature(fn).parameters)
        if not params <= {"student", "rng"}:
            raise GraderError(f"{path}: {name} takes {sorted(params)}; hidden tests may only "
                              f"take 'student' and 'rng'")
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        tests.append(HiddenTest(name, doc[0] if doc else name, float(fn.points), fn))
    if not tests:
        raise GraderError(f"{path} has no graded tests (functions test_* decorated with @points)")
    try:  # resolved here, in the trusted process, before any submission runs
        answers = validate_reference_answers(getattr(module, "REFERENCE_ANSWERS", {}), str(path))
    except ValueError as exc:
        raise GraderError(str(exc)) from None
    return HiddenSuite(exercise, tests, answers, module, path,
                       hashlib.sha256(source).hexdigest())
