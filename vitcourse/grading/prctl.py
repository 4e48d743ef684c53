"""Linux's prctl(2), the few options the grader and its worker use; a no-op elsewhere."""

from __future__ import annotations

import ctypes

PR_GET_DUMPABLE = 3  # 1: other processes of this user may ptrace us and read /proc/PID/mem
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36  # orphans below us become our children instead of init's
PR_GET_CHILD_SUBREAPER = 37


def _prctl_function():
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    except OSError:  # pragma: no cover - no C library to load
        return None


_PRCTL = _prctl_function()


def prctl(option: int, value: int = 0) -> int:
    """prctl(option, value); -1 where there is no prctl (not Linux)."""
    if _PRCTL is None:
        return -1
    return _PRCTL(option, ctypes.c_ulong(value), 0, 0, 0)


def is_child_subreaper() -> bool:
    if _PRCTL is None:
        return False
    flag = ctypes.c_int(0)
    _PRCTL(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)
    return bool(flag.value)
