"""Keep a submission from handing in the package's own answer to the exercise.

Each exercise asks for something the package already implements (``patchify`` is
``vitcourse.models.patches.patchify``), and the hidden tests compare against those references.
Without a guard, importing the package's ``patchify`` would score full marks. An exercise's hidden
tests therefore name its answers (``REFERENCE_ANSWERS``, see ``references``), and while a
submission is graded those references refuse to run for the student's code:

- a function is replaced, in every loaded ``vitcourse`` module that holds it, by a wrapper that
  raises :class:`ReferenceUseError` for an untrusted caller; so ``from vitcourse.models.patches
  import patchify`` hands the student the wrapper;
- a class keeps its identity (``isinstance`` still works) but its ``__init__`` is wrapped the
  same way, which catches ``Block(...)``, ``Block = vitcourse.models.vit.Block`` and a subclass's
  ``super().__init__``.

Trusted callers are the package itself (so ``check(...)`` and package code built on a reference,
e.g. ``create_model`` on ``Block``, keep working), except ``vitcourse.grading``, whose ``calls``
module calls the student's functions; the top level of a notebook cell (a cell that shows the
reference next to the student's result computes nothing the hidden tests can use); and, in
direct mode, the hidden tests' own module. The test is on the calling frame's globals, which
must be the namespace of that real module, not a copy with a borrowed ``__name__``.

This stops the ordinary reuse a student may not even know is forbidden. It is not meant to stop
deliberate circumvention (reloading the module, copying its source): that is plagiarism, for a
person to judge.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType, ModuleType

from ..references import PACKAGE, ReferenceUseError, resolve_reference, validate_reference_answers

UNTRUSTED_PART = "vitcourse.grading"  # it calls the student's code; its frames vouch for nothing
COMPREHENSIONS = ("<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>")  # own frames before 3.12


def _package_modules() -> list[ModuleType]:
    return [module for name, module in list(sys.modules.items())
            if isinstance(module, ModuleType) and (name == PACKAGE or name.startswith(PACKAGE + "."))]


class _Callers:
    """Decides whether a calling frame may use a reference (see the module's docstring)."""

    def __init__(self, cells_namespace: dict | None, trusted: tuple[ModuleType, ...]):
        self.cells_namespace = cells_namespace
        self.trusted = tuple(vars(module) for module in trusted)

    def allowed(self, frame: FrameType | None) -> bool:
        if frame is None:
            return False
        namespace = frame.f_globals
        if any(namespace is extra for extra in self.trusted):
            return True
        if namespace is self.cells_namespace:
            while frame.f_code.co_name in COMPREHENSIONS and frame.f_back is not None:
                frame = frame.f_back
            return frame.f_code.co_name == "<module>" and frame.f_globals is namespace
        name = namespace.get("__name__")
        if not isinstance(name, str) or not (name == PACKAGE or name.startswith(PACKAGE + ".")):
            return False
        if name == UNTRUSTED_PART or name.startswith(UNTRUSTED_PART + "."):
            return False
        module = sys.modules.get(name)
        return module is not None and vars(module) is namespace


def _refusal(student_name: str, path: str) -> ReferenceUseError:
    return ReferenceUseError(
        f"your {student_name} uses {path}, the package's own answer to this exercise, which graded "
        f"work may not call; write {student_name} yourself (check(...) in the notebook still "
        f"compares it with the reference)")


class ReferenceGuards:
    """Guards on an exercise's reference answers: :meth:`install` them, :meth:`remove` them.

    ``answers`` maps the names a student defines to reference paths (``REFERENCE_ANSWERS``);
    ``cells_namespace`` is the namespace the notebook's cells run in; ``trusted`` modules may
    call the references (the hidden tests, when they share the submission's process).
    """

    def __init__(self, answers: Mapping[str, str], cells_namespace: dict | None = None,
                 trusted: tuple[ModuleType, ...] = ()):
        callers = _Callers(cells_namespace, trusted)
        self._functions: dict[int, tuple[object, object]] = {}  # id(original) -> (original, guard)
        self._classes: dict[type, tuple[object, object]] = {}  # class -> (__init__, guarded __init__)
        for student_name, path in validate_reference_answers(answers, "the reference answers").items():
            obj = resolve_reference(path)
            refusal = functools.partial(_refusal, student_name, path)
            if isinstance(obj, type):
                original = obj.__dict__["__init__"]
                self._classes.setdefault(obj, (original, _guard(original, callers, refusal)))
            else:
                self._functions.setdefault(id(obj), (obj, _guard(obj, callers, refusal)))

    def install(self) -> None:
        for cls, (_original, guarded) in self._classes.items():
            cls.__init__ = guarded
        _rebind({id(original): guard for original, guard in self._functions.values()})

    def remove(self) -> None:
        _rebind({id(guard): original for original, guard in self._functions.values()})
        for cls, (original, _guarded) in self._classes.items():
            cls.__init__ = original


def _guard(function, callers: _Callers, refusal):
    """``function``, refusing to run when its caller is not allowed to use it."""

    @functools.wraps(function)
    def guarded(*args, **kwargs):
        if not callers.allowed(sys._getframe(1)):
            raise refusal()
        return function(*args, **kwargs)

    return guarded


def _rebind(replacements: dict[int, object]) -> None:
    """In every loaded package module, rebind each attribute whose id is a key to its value
    (a module imported while the guards were on holds guards too, and gets the originals back)."""
    if not replacements:
        return
    for module in _package_modules():
        namespace = vars(module)
        for attribute, value in list(namespace.items()):
            if id(value) in replacements:
                namespace[attribute] = replacements[id(value)]


@contextmanager
def reference_guards(answers: Mapping[str, str], cells_namespace: dict | None = None,
                     trusted: tuple[ModuleType, ...] = ()) -> Iterator[None]:
    """The guards of :class:`ReferenceGuards`, on within the ``with`` block."""
    guards = ReferenceGuards(answers, cells_namespace, trusted)
    guards.install()
    try:
        yield
    finally:
        guards.remove()
