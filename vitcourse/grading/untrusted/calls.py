"""Serve one request against the namespace of a student's notebook (worker side).

Used by the sandboxed worker and by direct mode, so a hidden test sees the same behaviour in both.
A request is plain data::

    {"op": "call", "name": str, "args": tuple, "kwargs": dict}
    {"op": "module", "name": str, "init_args": tuple, "init_kwargs": dict,
     "state_dict": dict | None, "inputs": tuple, "method": str}

and so is the reply::

    {"ok": True, "value": <data>}
    {"ok": False, "kind": "raised", "type_name": str, "message": str, "bases": tuple}
    {"ok": False, "kind": "disallowed", "message": str}
"""

from __future__ import annotations

from typing import Any

import torch

from ...course.values import DisallowedValue, describe_exception, to_data


def _raised(type_name: str, message: str, bases: tuple[str, ...] = ()) -> dict:
    return {"ok": False, "kind": "raised", "type_name": type_name, "message": message,
            "bases": tuple(bases)}


def _call(namespace: dict, request: dict) -> Any:
    fn = namespace[request["name"]]
    return fn(*request.get("args", ()), **request.get("kwargs", {}))


def _module(namespace: dict, request: dict) -> Any:
    cls = namespace[request["name"]]
    module = cls(*request.get("init_args", ()), **(request.get("init_kwargs") or {}))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{request['name']}(...) built a {type(module).__name__}, "
                        f"not a torch.nn.Module")
    shapes = {}
    for key, value in module.state_dict().items():
        shapes[str(key)] = tuple(int(s) for s in getattr(value, "shape", ()))
    state_dict = request.get("state_dict")
    if state_dict is not None:
        try:
            module.load_state_dict(state_dict, strict=True)
        except Exception as exc:  # reported as its own kind: the keys or shapes do not match
            raise _StateDictMismatch(str(exc)) from None
    module.eval()
    with torch.no_grad():
        output = getattr(module, request.get("method", "forward"))(*request.get("inputs", ()))
    return {"output": output, "state_dict_shapes": shapes}


class _StateDictMismatch(Exception):
    pass


def handle(namespace: dict, request: dict, max_elements: int = 50_000_000) -> dict:
    """Run one request; never raises (every outcome becomes a reply)."""
    op = request.get("op")
    name = request.get("name")
    if op not in ("call", "module") or not isinstance(name, str):
        return _raised("GraderError", f"unknown request {op!r}")
    if name not in namespace:
        return _raised("NameError", f"name {name!r} is not defined in your notebook",
                       ("NameError", "Exception"))
    try:
        value = _call(namespace, request) if op == "call" else _module(namespace, request)
    except _StateDictMismatch as exc:
        return _raised("StateDictMismatch", str(exc))
    except BaseException as exc:  # noqa: B036 - a student's SystemExit is an outcome too
        return _raised(*describe_exception(exc))
    try:
        return {"ok": True, "value": to_data(value, max_elements)}
    except DisallowedValue as exc:
        return {"ok": False, "kind": "disallowed", "message": f"your code returned {exc}"}
    except BaseException as exc:  # noqa: B036 - e.g. a student's __len__ raising
        type_name, message, _ = describe_exception(exc)
        return {"ok": False, "kind": "disallowed",
                "message": f"your return value could not be converted ({type_name}: {message})"}
