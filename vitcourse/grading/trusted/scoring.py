"""Grade one submission with an exercise's hidden tests (trusted side).

``grade_submission`` reads the notebook, runs its cells in a fresh sandboxed child
(``SandboxStudent``, which starts another one after a crash inside a test, a bounded number of
times) and runs every hidden test against it. Each test is decided here: it passes by returning;
``GradingFailure`` (and its ``StudentRaised``/``StudentCrashed``) scores 0 with its message; any
other exception is a bug in the hidden test, scored 0 with status "error" and a neutral message
for the student (details stay in the instructor's gradebook). Nothing the student does makes it
raise.
"""

from __future__ import annotations

import hashlib
import inspect
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...course.expectations import GradingFailure, StudentCrashed, StudentRaised
from ..notebooks import InvalidNotebook, parse_notebook
from ..references import ReferenceUseError
from .proxy import Student
from .suites import HiddenSuite, HiddenTest

# how a refused reference shows in a test's feedback (the worker reports the qualified type name)
REFUSAL = f"{ReferenceUseError.__module__}.{ReferenceUseError.__qualname__}"



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
