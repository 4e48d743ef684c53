"""Argument checks shared by the package's public functions.

Each raises at the boundary with the argument's name and what was expected: ``TypeError`` for
a value of the wrong type, ``ValueError`` for a wrong value, so that a user never meets a
traceback from deep inside torch or numpy.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch


def check_int(value, name: str, expected: str = "an int", ok=None) -> int:
    """``value`` as an int if it is one (not a bool) and ``ok(value)`` holds; else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if not isinstance(value, numbers.Integral) or (ok is not None and not ok(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_real(value, name: str, expected: str = "a number", ok=None) -> float:
    """``value`` as a float if it is a finite real number (not a bool) with ``ok(value)``; else an error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or (ok is not None and not ok(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def check_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        hint = "; convert it with torch.from_numpy(...)" if isinstance(value, np.ndarray) else ""
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}{hint}")


def check_class_labels(labels, name: str, num_classes: int | None = None) -> None:
    """``labels`` must be a ``(N,)`` integer tensor of class indices in ``[0, num_classes)``."""
    check_tensor(labels, name)
    if labels.dim() != 1:
        raise ValueError(f"{name} must be a (N,) tensor of class indices, got shape {tuple(labels.shape)}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        # .long() would truncate 2.7 to 2 and train on wrong classes without a word.
        raise TypeError(f"{name} must be integer class indices, got dtype {labels.dtype}")
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"{name} must be class indices >= 0, got a negative label ({low})")
    if num_classes is not None and high >= num_classes:
        raise ValueError(f"{name} go up to {high}, out of range for num_classes={num_classes} (labels must be in [0, {num_classes}))")


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


def check_bool(value, name: str) -> bool:
    """Only True or False: a string such as 'no' or an int would be truthy or falsy by accident."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_finite_positive(value, name: str):
    """Validate a positive real number (NaN and infinity are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return value


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
