"""Show the package's own source on a page, so the book cannot drift from the code the tests check."""

from __future__ import annotations

import inspect

__all__ = ["show_source"]


def show_source(obj) -> None:
    """Display the source of a package function or class, so the book shows the code it runs."""
    source = inspect.getsource(obj)
    try:
        from IPython.display import Markdown, display
    except ImportError:  # plain Python: print it
        print(source)
        return
    display(Markdown(f"```python\n{source}```"))
