"""The ``student`` object hidden tests receive: requests out, checked plain data back.

A ``Student`` only builds requests and interprets replies; *how* a request reaches the student's
code is the transport's business: the sandboxed worker (grading) or the same process (direct
mode). Replies are untrusted: their structure and every value's exact type are checked here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ...course.expectations import StudentCrashed, StudentRaised
from ...course.values import DisallowedValue, check_data, to_argument

# Arguments a hidden test sends must be plain data (an OrderedDict becomes a dict).
_outgoing = functools.partial(to_argument, sender="hidden test")


def interpret(reply: Any) -> Any:
    """The value carried by a worker's reply, or the StudentRaised/StudentCrashed it reports."""
    if type(reply) is not dict or type(reply.get("ok")) is not bool:
        raise StudentCrashed("the worker sent a malformed reply")
    if reply["ok"]:
        try:
            return check_data(reply.get("value"))
        except DisallowedValue as exc:
            raise StudentCrashed(f"the worker sent a disallowed value ({exc})") from None
    kind = reply.get("kind")
    message = reply.get("message")
    message = message[:2000] if type(message) is str else ""
    if kind == "raised":
        type_name = reply.get("type_name")
        bases = reply.get("bases")
        if type(type_name) is not str:
            raise StudentCrashed("the worker sent a malformed reply")
        if type(bases) not in (tuple, list) or any(type(b) is not str for b in bases):
            bases = ()
        raise StudentRaised(type_name[:200], message, tuple(bases))
    if kind == "disallowed":
        raise StudentCrashed(message or "your code returned a disallowed value")
    raise StudentCrashed("the worker sent a malformed reply")


class Student:
    """Proxy over a student's notebook: ``call`` a function or build and run a ``module``."""

    def __init__(self, transport: Callable[[dict], Any]):
        self._transport = transport

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the student's top-level ``name(*args, **kwargs)`` and return its (data) value."""
        if not isinstance(name, str):
            raise TypeError(f"student.call(name): expected a str, got {type(name).__name__}")
        request = {"op": "call", "name": name, "args": _outgoing(tuple(args), "args"),
                   "kwargs": _outgoing(dict(kwargs), "kwargs")}
        return interpret(self._transport(request))

    def module(self, name: str, init_args: tuple = (), init_kwargs: dict | None = None,
               state_dict: dict | None = None, inputs: tuple = (), method: str = "forward") -> dict:
        """Build ``name(*init_args, **init_kwargs)``, optionally load ``state_dict`` (strict),
        run ``module.<method>(*inputs)`` in eval mode without grad; returns
        ``{"output": value, "state_dict_shapes": {key: shape tuple}}``."""
        if not isinstance(name, str) or not isinstance(method, str):
            raise TypeError("student.module(name, method=...): name and method must be str")
        request = {"op": "module", "name": name,
                   "init_args": _outgoing(tuple(init_args), "init_args"),
                   "init_kwargs": _outgoing(dict(init_kwargs or {}), "init_kwargs"),
                   "state_dict": None if state_dict is None else _outgoing(state_dict, "state_dict"),
                   "inputs": _outgoing(tuple(inputs), "inputs"), "method": method}
        value = interpret(self._transport(request))
        if (type(value) is not dict or set(value) != {"output", "state_dict_shapes"}
                or type(value["state_dict_shapes"]) is not dict):
            raise StudentCrashed("the worker sent a malformed reply")
        shapes = {}
        for key, shape in value["state_dict_shapes"].items():
            if type(key) is not str or type(shape) is not tuple or any(type(s) is not int for s in shape):
                raise StudentCrashed("the worker sent a malformed reply")
            shapes[key] = shape
        return {"output": value["output"], "state_dict_shapes": shapes}
