"""An exercise's contract, written once and used twice: the visible ``check()`` and the grader.

Each exercise has one contract module in :mod:`vitcourse.course.exercises`. It says:

- **names**: what the student defines, with the signatures the grader calls;
- **clauses**: what is checked and for how many points. A clause is a function
  ``(student, rng)`` whose docstring's first line is its title. It draws its inputs from ``rng``
  (a ``torch.Generator``), calls the student's code through ``student`` (``student.call(name,
  *args)``, ``student.module(name, ...)``, and only for the one name it is declared for), and
  compares what comes back with the reference using ``expect_tensor`` / ``expect_number`` /
  ``expect_raises`` (:mod:`vitcourse.course.expectations`, the one tolerance rule);
- **mistakes**: the common wrong answers, each a small wrong implementation of one name and a
  message saying which mistake it looks like and where to look.

The same clause code runs in both uses; only ``student`` and ``rng`` differ:

============  ==============================================  ===================================
use           ``student``                                     ``rng``
============  ==============================================  ===================================
``check()``   :class:`LocalStudent` over the student's        a fixed seed per clause
              objects, in the notebook's process
grader        its proxy to the sandboxed worker               a fresh seed per run and clause
============  ==============================================  ===================================

Both hand the student's code copies of plain data and take back plain data under the same rules
(:mod:`vitcourse.course.values`); what the student's code raises comes back as
:class:`~vitcourse.course.expectations.StudentRaised` in both. So a clause gives the same verdict
and the same message in ``check()`` and in the grader whenever it draws the same inputs
(``tests/test_exercise_contracts.py`` checks it, submission by submission).

When a clause fails, :meth:`Contract.run_clause` replays it, on the same inputs (the generator's
state is saved before the clause runs), with each mistake declared for the clause's name; a
mistake whose results equal the student's, call for call, is named in the failure message.

Writing one (see CONTRIBUTING.md, "Exercises")::

    CONTRACT = Contract("01_patches", "Overlapping patches", names={
        "overlapping_patches": "(images, patch_size, stride)"},
        reference_answers={"overlapping_patches": "vitcourse.course.exercises.patches.overlapping_patches"})

    @CONTRACT.clause("overlapping_patches", points=3)
    def random_batch(student, rng):
        \"\"\"Overlapping patches of a random batch equal the reference.\"\"\"
        images = torch.randn(2, 3, 9, 11, generator=rng)
        expect_tensor(student.call("overlapping_patches", images, 4, 2),
                      overlapping_patches(images, 4, 2), name="overlapping_patches(images, 4, 2)")

    @CONTRACT.mistake("overlapping_patches", "each patch is flattened (p, p, C) ...")
    def channels_last(images, patch_size, stride):
        ...

and ``tests/hidden/test_01_patches.py`` is three lines: ``EXERCISE``, ``REFERENCE_ANSWERS`` and
``globals().update(CONTRACT.hidden_tests())``.
"""

from __future__ import annotations

import functools
import inspect
import math
import textwrap
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .expectations import GradingFailure, StudentCrashed, StudentRaised, points, same_values
from .values import DisallowedValue, describe_exception, to_argument, to_data

__all__ = [
    "Contract",
    "Clause",
    "Mistake",
    "Verdict",
    "LocalStudent",
    "draw_int",
    "draw_float",
]


# ---- drawing a clause's inputs ---------------------------------------------------------------


def draw_int(rng: torch.Generator, low: int, high: int) -> int:
    """A random int in ``[low, high]`` (both included), from ``rng``."""
    if high < low:
        raise ValueError(f"draw_int: high {high} < low {low}")
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def draw_float(rng: torch.Generator, low: float, high: float, digits: int = 3) -> float:
    """A random float in ``[low, high]``, rounded to ``digits`` decimals (so that a message
    prints the exact value the student's code received)."""
    return round(low + (high - low) * float(torch.rand((), generator=rng, dtype=torch.float64)), digits)


# ---- the student interface, in this process ----------------------------------------------------


# Arguments a clause sends must be plain data, as in the grader (an OrderedDict becomes a dict).
_outgoing = functools.partial(to_argument, sender="contract")


class LocalStudent:
    """The ``student`` a clause talks to in ``check()``: the student's objects, in this process.

    It behaves as the grader's proxy to its sandboxed worker does, by the same rules
    (:mod:`vitcourse.course.values`): the student's code gets copies of the arguments; what it
    returns must be plain data (tensors, numbers, strings, None, and tuples, lists and dicts of
    them) and comes back as a copy, otherwise :class:`StudentCrashed`; what it raises comes back
    as :class:`StudentRaised` with the exception's type name, message and built-in bases; a
    name it does not define raises ``NameError``. (Only a ``KeyboardInterrupt`` goes through: the
    student pressed stop.) ``stubbed`` tells whether the code raised ``NotImplementedError``.
    """

    def __init__(self, objects: Mapping[str, Any]):
        self._objects = dict(objects)
        self.stubbed = False

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the student's ``name(*args, **kwargs)`` and return its (data) value."""
        fn = self._lookup(name)
        args, kwargs = _outgoing(tuple(args), "args"), _outgoing(dict(kwargs), "kwargs")
        return self._returned(self._run(lambda: fn(*args, **kwargs)))

    def module(self, name: str, init_args: tuple = (), init_kwargs: dict | None = None,
               state_dict: dict | None = None, inputs: tuple = (), method: str = "forward") -> dict:
        """Build ``name(*init_args, **init_kwargs)``, optionally load ``state_dict`` (strict),
        run ``module.<method>(*inputs)`` in eval mode without grad; returns
        ``{"output": value, "state_dict_shapes": {key: shape tuple}}``."""
        cls = self._lookup(name)
        init_args, init_kwargs = _outgoing(tuple(init_args), "init_args"), _outgoing(dict(init_kwargs or {}), "init_kwargs")
        state_dict = None if state_dict is None else _outgoing(state_dict, "state_dict")
        inputs = _outgoing(tuple(inputs), "inputs")

        def build_and_run() -> dict:
            module = cls(*init_args, **init_kwargs)
            if not isinstance(module, torch.nn.Module):
                raise TypeError(f"{name}(...) built a {type(module).__name__}, not a torch.nn.Module")
            shapes = {str(k): tuple(int(s) for s in getattr(v, "shape", ())) for k, v in module.state_dict().items()}
            if state_dict is not None:
                try:
                    module.load_state_dict(state_dict, strict=True)
                except Exception as exc:  # its own kind, as in the grader: the keys or shapes differ
                    raise _StateDictMismatch(str(exc)) from None
            module.eval()
            with torch.no_grad():
                output = getattr(module, method)(*inputs)
            return {"output": output, "state_dict_shapes": shapes}

        return self._returned(self._run(build_and_run))

    def _lookup(self, name: str) -> Any:
        if not isinstance(name, str):
            raise TypeError(f"student.call(name): expected a str, got {type(name).__name__}")
        if name not in self._objects:
            raise StudentRaised("NameError", f"name {name!r} is not defined in your notebook", ("NameError", "Exception"))
        return self._objects[name]

    def _run(self, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except KeyboardInterrupt:
            raise
        except _StateDictMismatch as exc:
            raise StudentRaised("StateDictMismatch", str(exc)) from None
        except BaseException as exc:  # noqa: B036 - a student's SystemExit is an outcome too
            if isinstance(exc, NotImplementedError):
                self.stubbed = True
            raise StudentRaised(*describe_exception(exc)) from None

    @staticmethod
    def _returned(value: Any) -> Any:
        try:
            return to_data(value)
        except DisallowedValue as exc:
            raise StudentCrashed(f"your code returned {exc}") from None
        except Exception as exc:  # e.g. a student's __len__ raising
            type_name, message, _ = describe_exception(exc)
            raise StudentCrashed(f"your return value could not be converted ({type_name}: {message})") from None


class _StateDictMismatch(Exception):
    pass


class _Recorder:
    """Passes a clause's requests on to ``student`` and keeps each reply, in order, so that a
    failed clause can be compared with a mistake's replies; only the clause's own name may be
    called."""

    def __init__(self, student: Any, clause: Clause):
        self.student = student
        self.clause = clause
        self.replies: list[tuple[str, Any]] = []  # ("value", data) or ("raised", type name)

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        self._allowed(name)
        return self._record(lambda: self.student.call(name, *args, **kwargs))

    def module(self, name: str, *args: Any, **kwargs: Any) -> dict:
        self._allowed(name)
        return self._record(lambda: self.student.module(name, *args, **kwargs))

    def _allowed(self, name: str) -> None:
        if name != self.clause.target:
            raise TypeError(f"contract bug: clause {self.clause.name!r} calls {name!r}; a clause "
                            f"calls only the name it is declared for ({self.clause.target!r})")

    def _record(self, request: Callable[[], Any]) -> Any:
        try:
            value = request()
        except StudentRaised as raised:
            self.replies.append(("raised", raised.type_name))
            raise
        self.replies.append(("value", value))
        return value


def _same_replies(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> bool:
    return len(a) == len(b) > 0 and all(
        kind_a == kind_b and (value_a == value_b if kind_a == "raised" else same_values(value_a, value_b))
        for (kind_a, value_a), (kind_b, value_b) in zip(a, b, strict=True))


# ---- the contract --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clause:
    """One graded property: ``run(student, rng)`` raises ``GradingFailure`` when it does not hold."""

    name: str  # the hidden test is ``test_<name>``
    target: str  # the one name of the student's it calls
    points: float
    title: str  # the first line of the docstring: what holds when it passes
    run: Callable[[Any, torch.Generator], None]


@dataclass(frozen=True)
class Mistake:
    """A common wrong answer for ``target``, and what to tell a student whose results match it."""

    name: str
    target: str
    message: str
    implementation: Callable


@dataclass(frozen=True)
class Verdict:
    """A clause's outcome for one submission, with the statuses of the grader's scoring."""

    clause: str
    target: str
    title: str
    points: float
    status: str  # passed | failed | crashed | error
    message: str  # empty when passed

    @property
    def passed(self) -> bool:
        return self.status == "passed"


MISTAKE_PREFIX = "This looks like a common mistake:"


class Contract:
    """An exercise's contract: its names, clauses and common mistakes (see the module's docstring).

    Args:
        exercise: the exercise id, ``"01_patches"`` (``solutions/01_patches.ipynb``).
        title: what the exercise asks for, in a few words.
        names: each name the student defines -> its signature, ``"(images, patch_size, stride)"``.
        reference_answers: the name a student defines -> the ``vitcourse.<module>.<name>`` of the
            package's own answer, which graded code may not call (and no chapter page may show).
    """

    def __init__(self, exercise: str, title: str, names: Mapping[str, str],
                 reference_answers: Mapping[str, str] | None = None):
        self.exercise = exercise
        self.title = title
        self.names = dict(names)
        self.reference_answers = dict(reference_answers or {})
        unknown = set(self.reference_answers) - set(self.names)
        if unknown:
            raise ValueError(f"{exercise}: reference_answers names {sorted(unknown)}, which the student does not define")
        self.clauses: list[Clause] = []
        self.mistakes: list[Mistake] = []

    # -- writing it -------------------------------------------------------------------------

    def clause(self, target: str, points: float) -> Callable:
        """Decorator: ``fn(student, rng)`` is a clause on the student's ``target``, worth ``points``.
        Its docstring's first line is its title (shown by ``check()`` and the grader)."""
        self._known(target)
        _check_points(points)

        def register(fn: Callable) -> Callable:
            title = (inspect.getdoc(fn) or "").strip().splitlines()
            if not title:
                raise ValueError(f"{self.exercise}: clause {fn.__name__} needs a docstring (its title)")
            if list(inspect.signature(fn).parameters) != ["student", "rng"]:
                raise TypeError(f"{self.exercise}: clause {fn.__name__} must take (student, rng)")
            if any(c.name == fn.__name__ for c in self.clauses):
                raise ValueError(f"{self.exercise}: two clauses are called {fn.__name__}")
            self.clauses.append(Clause(fn.__name__, target, float(points), title[0], fn))
            return fn

        return register

    def mistake(self, target: str, message: str) -> Callable:
        """Decorator: ``fn`` is a common wrong implementation of ``target``; a student whose
        results match it on a failed clause is told ``message`` (which mistake, where to look)."""
        self._known(target)
        if not isinstance(message, str) or not message.strip():
            raise ValueError(f"{self.exercise}: a mistake needs a message saying what it is and where to look")

        def register(fn: Callable) -> Callable:
            self.mistakes.append(Mistake(fn.__name__, target, " ".join(message.split()), fn))
            return fn

        return register

    def _known(self, target: str) -> None:
        if target not in self.names:
            raise ValueError(f"{self.exercise}: {target!r} is not one of the names {sorted(self.names)}")

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.clauses)

    def visible_seed(self, clause: Clause) -> int:
        """The fixed seed ``check()`` draws the clause's inputs with."""
        return zlib.crc32(f"{self.exercise}/{clause.name}".encode())

    # -- running a clause (both uses) ---------------------------------------------------------------

    def run_clause(self, clause: Clause, student: Any, rng: torch.Generator) -> None:
        """Run ``clause`` against ``student``; when it fails, name the mistakes it looks like."""
        start = rng.get_state()
        recorder = _Recorder(student, clause)
        try:
            clause.run(recorder, rng)
        except StudentCrashed:
            raise
        except GradingFailure as failure:
            matched = self.matching_mistakes(clause, recorder.replies, start)
            if not matched:
                raise
            hints = "\n".join(f"{MISTAKE_PREFIX} {mistake.message}" for mistake in matched)
            raise GradingFailure(f"{failure.message}\n{hints}") from None

    def matching_mistakes(self, clause: Clause, replies: list[tuple[str, Any]], state: torch.Tensor) -> list[Mistake]:
        """The mistakes of ``clause.target`` that fail ``clause`` with exactly these ``replies``,
        the clause replayed from the generator ``state`` (its inputs, drawn again)."""
        matched = []
        for mistake in self.mistakes:
            if mistake.target != clause.target:
                continue
            replay = _Recorder(LocalStudent({clause.target: mistake.implementation}), clause)
            rng = torch.Generator()
            rng.set_state(state)
            try:
                clause.run(replay, rng)
            except GradingFailure:
                pass  # the mistake fails this clause too: compare what it returned
            except Exception:  # noqa: BLE001 - a diagnosis must never stop a check or the grader
                continue
            else:
                continue  # the mistake passes this clause, so it is not what failed here
            if _same_replies(replies, replay.replies):
                matched.append(mistake)
        return matched

    # -- use 1: the visible check ------------------------------------------------------------------

    def verdicts(self, objects: Mapping[str, Any], target: str | None = None,
                 seed: Callable[[Clause], int] | None = None) -> list[Verdict]:
        """Every clause (of ``target``, or all) on the student's ``objects``, in this process, each
        with the generator seeded ``seed(clause)`` (default: :meth:`visible_seed`)."""
        student = LocalStudent(objects)
        return [self._verdict(clause, student, seed) for clause in self.clauses
                if target is None or clause.target == target]

    def _verdict(self, clause: Clause, student: LocalStudent, seed) -> Verdict:
        rng = torch.Generator().manual_seed(self.visible_seed(clause) if seed is None else seed(clause))

        def verdict(status: str, message: str = "") -> Verdict:
            return Verdict(clause.name, clause.target, clause.title, clause.points, status, message)

        try:
            self.run_clause(clause, student, rng)
        except StudentCrashed as crash:
            return verdict("crashed", str(crash))
        except GradingFailure as failure:
            return verdict("failed", str(failure))
        except Exception as exc:  # a bug in the clause, as the grader reports it
            return verdict("error", f"this check could not be evaluated ({type(exc).__name__}: {exc})")
        return verdict("passed")

    def check(self, target: str, obj: Any) -> bool:
        """``check(target, obj)`` in the student's notebook: run the clauses of ``target`` on fixed
        inputs, print one line per clause, return whether all passed (never raises for the
        student's mistakes)."""
        clauses = [c for c in self.clauses if c.target == target]
        worth = sum(c.points for c in clauses)
        print(f"Checking {target}: {len(clauses)} clauses worth {_points(worth)} of the exercise's "
              f"{self.max_points:g} (the grader runs them on new inputs)")
        if not callable(obj):
            print(f"  [FAIL] {target}: expected a function or class, got {type(obj).__name__} {_short(obj)}")
            return False
        student = LocalStudent({target: obj})
        results = []
        for clause in clauses:
            result = self._verdict(clause, student, None)
            if student.stubbed:
                print(f"  {target} is not implemented yet: replace the `raise NotImplementedError` "
                      "with your code, then run this cell again.")
                return False
            results.append(result)
            mark = "pass" if result.passed else "FAIL"
            print(f"  [{mark}] {result.title} ({_points(result.points)})")
            if not result.passed:
                print(textwrap.indent(result.message, "         "))
        passed = sum(r.passed for r in results)
        if passed < len(results):
            print(f"{target}: {len(results) - passed} of {len(results)} clauses failed.")
            return False
        print(f"{target}: all {len(results)} clauses passed.")
        return True

    # -- use 2: the hidden tests ------------------------------------------------------------------------

    def hidden_tests(self) -> dict[str, Callable]:
        """The grader's tests, one per clause, in order: ``test_<clause>(student, rng)`` with the
        clause's points and title. A hidden-test file puts them in its globals."""
        return {f"test_{clause.name}": self._hidden_test(clause) for clause in self.clauses}

    def _hidden_test(self, clause: Clause) -> Callable:
        def test(student, rng):
            self.run_clause(clause, student, rng)

        test.__name__ = test.__qualname__ = f"test_{clause.name}"
        test.__doc__ = clause.title
        return points(clause.points)(test)


def _check_points(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"points must be a positive number, got {value!r}")


def _points(value: float) -> str:
    text = f"{value:g}"
    return f"{text} point" if value == 1 else f"{text} points"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."
