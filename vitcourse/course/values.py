"""The data-only contract: which values may pass between a student's code and the checks.

The grader's sandboxed worker and the visible ``check()`` follow the same rules, so that a clause
of an exercise's contract sees the same values in both:

- ``to_data`` turns a value into plain data or refuses it (the worker and ``check()``, with what
  a student's code returns; both, with the arguments a clause sends, which the student's code
  gets as copies); ``check_data`` re-checks every type exactly after loading, on the grader's
  trusted side, because whatever the worker sends may have been forged by the student's code:
  only dicts, lists, tuples, str, int, float, bool, None and plain dense CPU tensors pass;
- ``to_argument`` is ``to_data`` for the arguments a check sends (an OrderedDict, as a state
  dict is, becomes a dict); a refusal there is a bug in the check, and says so;
- ``describe_exception`` turns what the student's code raised into plain strings (its type's
  name, its message, the built-in classes it derives from).
"""

from __future__ import annotations

from typing import Any

import torch

MAX_DEPTH = 32


class DisallowedValue(TypeError):
    """A value outside the data-only contract (tensor subclass, arbitrary object...)."""


_SCALARS = (int, float, bool, str, type(None))


def _numpy_scalar_types() -> tuple[type, ...]:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return ()
    return (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
            np.uint64, np.float16, np.float32, np.float64)


_NUMPY_SCALARS = _numpy_scalar_types()


def to_data(value: Any, max_elements: int = 50_000_000, _depth: int = 0) -> Any:
    """A plain-data copy of ``value``: exact torch.Tensor (detached CPU copy), numbers, strings,
    None and tuples/lists/dicts of them. Raises DisallowedValue for anything else."""
    if _depth > MAX_DEPTH:
        raise DisallowedValue(f"the value is nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        if value.layout != torch.strided:
            raise DisallowedValue(f"a tensor with layout {value.layout} (only dense tensors)")
        if value.device.type == "meta":
            raise DisallowedValue("a tensor on the meta device (it has no values)")
        if value.numel() > max_elements:
            raise DisallowedValue(f"a tensor with {value.numel()} elements "
                                  f"(at most {max_elements} can be returned)")
        # clone: a view would otherwise carry its whole (possibly huge) storage along
        return value.detach().to("cpu").resolve_conj().resolve_neg().contiguous().clone()
    if kind is torch.Size:
        return tuple(int(v) for v in value)
    if kind in _NUMPY_SCALARS:
        return value.item()
    if kind in (tuple, list):
        return kind(to_data(v, max_elements, _depth + 1) for v in value)
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) not in (str, int):
                raise DisallowedValue(f"a dict key of type {type(k).__qualname__} (only str or int keys)")
            out[k] = to_data(v, max_elements, _depth + 1)
        return out
    if isinstance(value, torch.Tensor):
        raise DisallowedValue(f"a tensor subclass {kind.__module__}.{kind.__qualname__} "
                              f"(return a plain torch.Tensor)")
    raise DisallowedValue(f"a value of type {kind.__module__}.{kind.__qualname__} (only tensors, "
                          f"numbers, strings, None and tuples/lists/dicts of them)")


MAX_NODES = 1_000_000


def to_argument(value: Any, what: str, sender: str) -> Any:
    """``value`` as plain data for the student's code: what ``sender`` (a contract's clause, a
    hidden test) sends as ``what``. An OrderedDict (a state dict) becomes a dict; anything else
    outside the contract raises TypeError, naming the sender's bug."""
    if type(value).__name__ == "OrderedDict" and isinstance(value, dict):
        value = dict(value)
    try:
        return to_data(value)
    except DisallowedValue as exc:
        raise TypeError(f"{sender} bug: {what} must be plain data, got {exc}") from None


def check_data(value: Any) -> Any:
    """Verify (trusted side) that a loaded value contains only the allowed exact types.

    Counts every node visited: pickle's memo can make a small message describe a huge graph
    (the same list referenced from everywhere), which must not stall the grader."""
    budget = [MAX_NODES]

    def walk(item: Any, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise DisallowedValue(f"a value with more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise DisallowedValue("the value is nested too deeply")
        kind = type(item)
        if kind in _SCALARS:
            return
        if kind is torch.Tensor:
            if item.layout != torch.strided or item.device.type != "cpu" or item.requires_grad:
                raise DisallowedValue("a tensor that is not a plain dense CPU tensor")
            return
        if kind in (tuple, list):
            for v in item:
                walk(v, depth + 1)
            return
        if kind is dict:
            for k, v in item.items():
                if type(k) not in (str, int):
                    raise DisallowedValue("a dict key that is not a str or int")
                walk(v, depth + 1)
            return
        raise DisallowedValue(f"a value of type {kind.__qualname__}")

    walk(value, 0)
    return value




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
