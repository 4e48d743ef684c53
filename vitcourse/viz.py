"""The figures the chapters draw, and a helper to show the package's own source on a page.

Each function takes plain tensors or numbers (what the other modules return) and draws on a
matplotlib figure; none computes anything the chapters rely on as a result.
"""

from __future__ import annotations

import inspect


def show_source(obj) -> None:
    """Display the source of a package function or class, so the book shows the code it runs."""
    source = inspect.getsource(obj)
    try:
        from IPython.display import Markdown, display
    except ImportError:  # plain Python: print it
        print(source)
        return
    display(Markdown(f"```python\n{source}```"))
