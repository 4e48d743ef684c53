"""A small Sphinx extension: the book's pages render offline and free of JavaScript errors.

Offline: everything a page needs comes from the built site itself (a downloaded copy of the
book, a classroom behind a proxy), which tests/test_browser.py checks with the network cut off.

- MathJax is served from ``_static/mathjax``: copied at build time from the PyPI package
  ``django-static-mathjax`` (MathJax 3.2.2's es5 build; the ``book`` extra installs it), and
  ``mathjax_path`` points there instead of a CDN.
- Remote images become local copies from ``_static`` (the notebooks keep the remote Colab badge,
  which GitHub and Colab show); any other remote image fails the build (-W).
- myst-nb loads no widget JavaScript (require.js, the widget manager) from CDNs. A widget needs
  a kernel, which a static page has not: the book hides widget outputs (`remove-output`) and shows
  a static figure beside each one.

JavaScript errors:

- sphinx-thebe and sphinx-togglebutton register their inline scripts in an event that runs after
  the HTML builder has copied the registry, so under Sphinx 7 each page carries them twice and
  the second ``const THEBE_JS_URL`` throws. Each page keeps the first copy only. (Thebe itself is
  never loaded: the book has no live-code button.)
- The theme reads the reader's light/dark choice from localStorage and, on a first visit (empty
  storage), logs "Got invalid theme mode" before falling back to auto; an early inline script
  makes that fallback explicit.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

from docutils import nodes
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHJAX_PACKAGE = "django-static-mathjax"
MATHJAX_ENTRY = "tex-mml-chtml.js"  # the component Sphinx loads from its CDN by default
# Besides the entry point, what MathJax may load by itself: TeX packages (autoload), fonts, the
# menu and what it offers (accessibility, speech, another renderer). Not the other combined
# entry points, nor the node.js-only parts.
MATHJAX_PARTS = [MATHJAX_ENTRY, "input", "output", "ui", "a11y", "sre"]

# Remote image -> the local copy the book shows instead (a path from the source root).
LOCAL_IMAGES = {
    "https://colab.research.google.com/assets/colab-badge.svg": "/_static/colab-badge.svg",
}

_DEFAULT_THEME_MODE = (
    "if (!document.documentElement.dataset.mode) { document.documentElement.dataset.mode = 'auto'; }"
)


def _mathjax_root() -> Path:
    """The installed MathJax: its root folder, holding LICENSE and the es5 build."""
    try:
        root = Path(metadata.distribution(MATHJAX_PACKAGE).locate_file("mathjax/static/mathjax"))
    except metadata.PackageNotFoundError:
        root = None
    if root is None or not (root / "es5" / MATHJAX_ENTRY).is_file():
        raise ExtensionError(
            f"MathJax is missing: the book serves it from the PyPI package {MATHJAX_PACKAGE}; "
            "install the book's requirements (`make book` does: pip install -e '.[book]')"
        )
    return root


def _configure(app, config) -> None:
    _mathjax_root()  # fail early, before reading every page, when MathJax is not installed
    # Relative to _static, where _copy_mathjax puts it.
    config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"
    # myst-nb would add require.js and the widget manager from CDNs to every page whose notebook
    # stores widget state, shown or not.
    config.nb_ipywidgets_js = {}


def _copy_mathjax(app) -> None:
    # Before the pages are written, so that Sphinx finds the file to stamp its checksum.
    if app.builder.format != "html":
        return
    root = _mathjax_root()
    target = Path(app.outdir) / "_static" / "mathjax"
    shutil.rmtree(target, ignore_errors=True)  # no stale files from another MathJax version
    target.mkdir(parents=True)
    for part in MATHJAX_PARTS:
        source = root / "es5" / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy2(source, target / part)
    shutil.copy2(root / "LICENSE", target / "LICENSE")


def _localise_images(app, doctree) -> None:
    # Runs before Sphinx's image collector, which then copies the local file like any other.
    for image in doctree.findall(nodes.image):
        uri = image["uri"]
        if uri in LOCAL_IMAGES:
            image["uri"] = LOCAL_IMAGES[uri]
        elif "://" in uri:
            logger.warning(
                "remote image %s: a page must render offline; add a local copy to "
                "_static and to LOCAL_IMAGES in _ext/book_assets.py",
                uri,
                location=image,
                type="book_assets",
                subtype="remote_image",
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
    app.connect("config-inited", _configure)
    app.connect("builder-inited", _copy_mathjax)
    app.connect("doctree-read", _localise_images, priority=400)
    app.add_js_file(None, body=_DEFAULT_THEME_MODE, priority=100)
    # Early: a later handler may return a template name, which stops the event there.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
