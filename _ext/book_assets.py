"""A small Sphinx extension that keeps the book's pages free of JavaScript errors.

- sphinx-thebe and sphinx-togglebutton register their inline scripts in an event that runs after
  the HTML builder has copied the registry, so under Sphinx 7 each page carries them twice and
  the second ``const THEBE_JS_URL`` throws. Each page keeps the first copy only.
- The theme reads the reader's light/dark choice from localStorage and, on a first visit (empty
  storage), logs "Got invalid theme mode" before falling back to auto; an early inline script
  makes that fallback explicit.
"""

from __future__ import annotations

_DEFAULT_THEME_MODE = (
    "if (!document.documentElement.dataset.mode) { document.documentElement.dataset.mode = 'auto'; }"
)


def _script_key(script) -> tuple:
    # Inline scripts come with filename None from one registration path and "" from the other.
    filename = getattr(script, "filename", str(script)) or ""
    attributes = tuple(sorted((getattr(script, "attributes", None) or {}).items()))
    return filename, attributes


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # In place: handlers that run later (MathJax's) append to this same list.
    scripts[:] = unique


def setup(app):
    app.add_js_file(None, body=_DEFAULT_THEME_MODE, priority=100)
    # Early: a later handler may return a template name, which stops the event there.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
