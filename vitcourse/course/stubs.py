"""The stubs of a generated exercise, and whether the student has replaced them.

``vitcourse release`` turns each marked solution block into :data:`STUB_LINE`. An exercise's
closing experiment runs the student's own functions; :func:`implemented` lets it wait politely
until they are written, so that a fresh exercise still runs top to bottom::

    if implemented(overlapping_patches, linear_to_conv_weight):
        tokens = overlapping_patches(photo, 16, 8) @ ...

This module imports nothing heavy (``release`` and the CLI use it).
"""

from __future__ import annotations

__all__ = ["STUB_MESSAGE", "STUB_LINE", "implemented", "is_stub"]

STUB_MESSAGE = "replace this line with your code"
STUB_LINE = f'raise NotImplementedError("{STUB_MESSAGE}")'


def is_stub(obj) -> bool:
    """Whether ``obj`` (a function, or a class and its methods) still holds a generated stub.

    Read from the compiled code, not the source (a notebook cell run by the grader has none):
    a stub's code holds :data:`STUB_MESSAGE` among its constants."""
    functions = [v for v in vars(obj).values() if callable(v)] if isinstance(obj, type) else [obj]
    return any(STUB_MESSAGE in getattr(getattr(f, "__code__", None), "co_consts", ()) for f in functions)


def implemented(*objects) -> bool:
    """True when none of the student's ``objects`` is a stub any more; otherwise print which to
    write first and return False."""
    missing = [getattr(obj, "__name__", repr(obj)) for obj in objects if is_stub(obj)]
    if missing:
        print(f"Write {' and '.join(missing)} above first (and run the checks), then run this cell again.")
        return False
    return True
