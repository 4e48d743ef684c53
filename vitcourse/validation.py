"""Argument checks for the package's public functions: the one place that says what bad input gets.

One rule everywhere, so that a caller can predict the error:

- ``TypeError`` when the value is not the *kind* of thing asked for: a string, ``None`` or a
  bool where a number is asked, a non-tensor where a tensor is asked, something that is neither
  a number nor a sequence where a size pair is asked;
- ``ValueError`` when it is the right kind with a wrong value: a number that is not a positive
  int (``0``, ``-1``, ``2.5``, ``nan``), a sequence of three sizes where a pair is asked, a class
  index out of range.

Each check names the argument and shows the value, and raises at the public boundary, so that a
user never meets a traceback from deep inside torch or numpy. Each returns the checked value
(as an ``int``, a ``float``, a pair...), so a caller writes ``n = check_positive_int(n, "n")``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = [
    "as_device",
    "check_bool",
    "check_class_labels",
    "check_finite_positive",
    "check_image_dtype",
    "check_int",
    "check_int_pair",
    "check_non_negative_int",
    "check_positive_int",
    "check_real",
    "check_tensor",
]


def _is_number(value) -> bool:
    """A real number that is not a bool (True is an int to Python, never a size to us)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# ---- numbers ---------------------------------------------------------------------------------


def check_int(value, name: str, expected: str = "an int", ok: Callable[[int], bool] | None = None) -> int:
    """``value`` as an int if it is one and ``ok(value)`` holds; else an error naming ``name``."""
    if not _is_number(value):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if not isinstance(value, numbers.Integral) or (ok is not None and not ok(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_positive_int(value, name: str) -> int:
    return check_int(value, name, "a positive int", lambda v: v > 0)


def check_non_negative_int(value, name: str) -> int:
    return check_int(value, name, "a non-negative int", lambda v: v >= 0)


def check_real(value, name: str, expected: str = "a number", ok: Callable[[float], bool] | None = None) -> float:
    """``value`` as a float if it is a finite real number with ``ok(value)``; else an error."""
    if not _is_number(value):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or (ok is not None and not ok(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def check_finite_positive(value, name: str) -> float:
    """A positive real number (NaN and infinity are not)."""
    return check_real(value, name, "a finite positive number", lambda v: v > 0)


def check_int_pair(value, name: str) -> tuple[int, int]:
    """A size or grid: a positive int ``s`` means ``(s, s)``; a pair of positive ints is kept.

    Image sizes ``(H, W)``, patch sizes ``(ph, pw)`` and patch grids ``(rows, cols)`` all go
    through here; a ``torch.Size`` is a pair like any other.
    """
    expected = "a positive int or a pair of positive ints"
    if _is_number(value):
        side = check_int(value, name, expected, lambda v: v > 0)
        return side, side
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if not all(_is_number(v) for v in value):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if len(value) != 2 or not all(isinstance(v, numbers.Integral) and v > 0 for v in value):
        raise ValueError(f"{name} must be {expected}, got {tuple(value)!r}")
    return int(value[0]), int(value[1])


def check_bool(value, name: str) -> bool:
    """Only True or False: a string such as 'no' or an int would be truthy or falsy by accident."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


# ---- tensors ---------------------------------------------------------------------------------


def check_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        hint = "; convert it with torch.from_numpy(...)" if isinstance(value, np.ndarray) else ""
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}{hint}")


def check_class_labels(labels, name: str, num_classes: int | None = None, values: bool = True) -> None:
    """``labels`` must be a ``(N,)`` integer tensor of class indices in ``[0, num_classes)``.

    ``values=False`` skips the range check, which reads the labels back from their device: inside
    a training step on a GPU that would wait for the device at every step.
    """
    check_tensor(labels, name)
    if labels.dim() != 1:
        raise ValueError(f"{name} must be a (N,) tensor of class indices, got shape {tuple(labels.shape)}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        # .long() would truncate 2.7 to 2 and train on wrong classes without a word.
        raise TypeError(f"{name} must be integer class indices, got dtype {labels.dtype}")
    if not values or labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"{name} must be class indices >= 0, got a negative label ({low})")
    if num_classes is not None and high >= num_classes:
        raise ValueError(f"{name} go up to {high}, out of range for num_classes={num_classes} (labels must be in [0, {num_classes}))")


def _autocast_enabled(device_type: str) -> bool:
    """Is torch.autocast active for this device type (in the current thread)?"""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument; the CPU has its own query
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def check_image_dtype(x: torch.Tensor, expected: torch.dtype) -> None:
    """Raise unless the images ``x`` can meet parameters of dtype ``expected`` in a matmul."""
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.dtype == expected:
        return
    # Under torch.autocast each matmul casts its float16 / bfloat16 / float32 operands to the
    # autocast dtype itself, so mixing those is fine there; float64 operands are never cast.
    if _autocast_enabled(x.device.type) and torch.float64 not in (x.dtype, expected):
        return
    convert = "x.float()" if expected == torch.float32 else f"x.to({expected})"
    raise TypeError(
        f"x has dtype {x.dtype} but the model's parameters are {expected}: convert the images "
        f"with {convert}, or the model with model.to({x.dtype})"
    )


# ---- devices ---------------------------------------------------------------------------------

_BACKENDS = {"cuda": lambda: torch.cuda.is_available(), "mps": lambda: torch.backends.mps.is_available()}


def as_device(device, name: str = "device", expected: str = "a torch device such as 'cpu' or 'cuda'") -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine, or an error naming ``name``."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ValueError(f"{name} must be {expected}, got {device!r}") from error
    available = _BACKENDS.get(device.type)
    if available is not None and not available():
        raise ValueError(f"{name}={str(device)!r}, but this machine has no {device.type} device; use 'cpu'")
    return device
