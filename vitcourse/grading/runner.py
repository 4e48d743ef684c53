"""Trusted side: load an exercise's hidden tests and grade one submission with them.

Hidden tests are the module's functions named ``test_*`` carrying a ``points`` attribute, run in
definition order with ``student`` and ``rng`` passed by parameter name. The module's
``REFERENCE_ANSWERS`` (optional) names the package's own answers to the exercise, which the
submission may not use while it is graded (see ``guard``). Each test is decided
here: it passes by returning; ``GradingFailure`` (and its ``StudentRaised``/``StudentCrashed``)
scores 0 with its message; any other exception is a bug in the hidden test, scored 0 with status
"error" and a neutral message for the student (details stay in the instructor's gradebook).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch

from .errors import GraderCannotRun
from .guard import ReferenceUseError, validate_reference_answers
from .hidden import GradingFailure, StudentCrashed, StudentRaised
from .notebook import InvalidNotebook, parse_notebook
from .proxy import Student

EXERCISE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# how a refused reference shows in a test's feedback (the worker reports the qualified type name)
REFUSAL = f"{ReferenceUseError.__module__}.{ReferenceUseError.__qualname__}"


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


@dataclass
class TestResult:
    name: str
    title: str
    points: float
    max_points: float
    status: str  # passed | failed | crashed | error
    feedback: str
    detail: str = ""  # for the instructor only (tracebacks of hidden-test bugs)


@dataclass
class SubmissionResult:
    student: str
    exercise: str
    sha256: str
    path: str
    status: str  # graded | invalid | error
    tests: list[TestResult] = field(default_factory=list)
    output: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    seed: int = 0

    @property
    def score(self) -> float:
        return float(sum(t.points for t in self.tests))

    @property
    def max_score(self) -> float:
        return float(sum(t.max_points for t in self.tests))

    @property
    def used_reference(self) -> bool:
        """Did a test fail because the code called the package's reference answer?"""
        return any(REFUSAL in t.feedback for t in self.tests)


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


def test_seed(run_seed: int, test_name: str) -> int:
    digest = hashlib.sha256(f"{run_seed}:{test_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class SandboxStudent:
    """The transport behind ``student`` while grading: requests go to a sandboxed child; after a
    crash inside one test a fresh child re-runs the notebook for the next test (a bounded number
    of times), unless running the notebook itself crashed."""

    def __init__(self, zygote, cells: list[dict], n_requests: int,
                 reference_answers: dict[str, str] | None = None):
        self.zygote = zygote
        self.cells = cells
        self.reference_answers = reference_answers or {}
        self.n_requests = n_requests
        self.session = None
        self.fatal: str | None = None  # running the notebook itself failed
        self.restarts_left = zygote.config.limits.max_restarts + 1
        self.crashed_during_test = False
        self.outputs: list[str] = []
        self.cell_errors: list[dict] | None = None

    def _ensure(self) -> None:
        if self.fatal:
            raise StudentCrashed(self.fatal)
        if self.session is not None and not self.session.dead:
            return
        self.close()
        if self.restarts_left <= 0:
            self.fatal = "your code crashed too many times; the remaining tests were not run"
            raise StudentCrashed(self.fatal)
        self.restarts_left -= 1
        self.session = self.zygote.session(self.cells, self.n_requests)
        try:
            self.session.run_notebook(self.reference_answers)
        except StudentCrashed as crash:
            self.fatal = str(crash)
            raise
        if self.cell_errors is None:
            self.cell_errors = self.session.cell_errors

    def __call__(self, request: dict):
        self._ensure()
        try:
            return self.session.request(request)
        except StudentCrashed:
            self.crashed_during_test = True
            raise

    def start(self) -> None:
        try:
            self._ensure()
        except StudentCrashed:
            pass

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.outputs.append(self.session.output())
            self.session = None


def run_test(test: HiddenTest, student: Student, transport: SandboxStudent | None,
             seed: int) -> TestResult:
    rng = torch.Generator()
    rng.manual_seed(test_seed(seed, test.name))
    kwargs = {"student": student, "rng": rng}
    params = inspect.signature(test.function).parameters
    if transport is not None:
        transport.crashed_during_test = False

    def result(status: str, feedback: str, detail: str = "") -> TestResult:
        points = test.points if status == "passed" else 0.0
        return TestResult(test.name, test.title, points, test.points, status, feedback, detail)

    try:
        test.function(**{k: v for k, v in kwargs.items() if k in params})
    except StudentCrashed as crash:
        return result("crashed", str(crash))
    except (GradingFailure, StudentRaised) as failure:
        if transport is not None and transport.crashed_during_test:
            return result("crashed", "your code crashed during this test")
        return result("failed", str(failure))
    except Exception as exc:  # a bug in the hidden test: never the student's fault
        return result("error", "this test could not be evaluated because of a problem in the "
                      "grader's test (the instructor has been told); it scores 0 for now",
                      "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    if transport is not None and transport.crashed_during_test:
        # a hidden test that swallowed StudentCrashed still cannot pass
        return result("crashed", "your code crashed during this test")
    return result("passed", "")


def grade_submission(student_id: str, path: Path, suite: HiddenSuite, zygote, seed: int) -> SubmissionResult:
    """Grade one notebook: never raises for anything the student did."""
    exercise, tests = suite.exercise, suite.tests
    started = time.time()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        data, unreadable = b"", exc
    else:
        unreadable = None
    result = SubmissionResult(student_id, exercise, hashlib.sha256(data).hexdigest(), str(path),
                              "graded", started_at=started, seed=seed)
    try:
        if unreadable is not None:
            raise InvalidNotebook(f"the file could not be read ({unreadable.strerror})")
        cells = [{"index": c.index, "source": c.source} for c in parse_notebook(data)]
    except InvalidNotebook as exc:
        result.status = "invalid"
        result.output = f"Your file could not be read as a notebook: {exc}"
        result.tests = [TestResult(t.name, t.title, 0.0, t.points, "failed",
                                   "not run: the notebook could not be read") for t in tests]
        result.finished_at = time.time()
        return result
    transport = SandboxStudent(zygote, cells, len(tests), suite.reference_answers)
    student = Student(transport)
    try:
        transport.start()
        for test in tests:
            result.tests.append(run_test(test, student, transport, seed))
    finally:
        transport.close()
    notes = []
    if result.used_reference:
        notes.append("Some tests scored 0 because your code called the package's own answer to this "
                     "exercise; their feedback says which.")
    if transport.fatal and transport.cell_errors is None:
        notes.append(f"Running your notebook failed: {transport.fatal}")
    for e in transport.cell_errors or []:
        notes.append(f"cell {e['index']} raised {e['type_name']}: {e['message']}")
    output = "".join(transport.outputs).strip()
    if output:
        notes.append("Output of your code (trimmed):\n" + output[-8000:])
    result.output = "\n".join(notes)
    if any(t.status == "error" for t in result.tests):
        result.status = "error"
    result.finished_at = time.time()
    return result
