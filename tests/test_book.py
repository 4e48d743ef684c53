"""The book: every table-of-contents entry has its page, the Colab links follow _config.yml, and
every formula of the sources reaches its page for MathJax."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT
from vitcourse.course.stamp import colab_url, read_repository

pytestmark = pytest.mark.book


def toc_files() -> list[str]:
    """Every `file:` entry of _toc.yml, the root included, in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return files


def test_every_toc_entry_has_a_source_file():
    for entry in toc_files():
        candidates = [ROOT / f"{entry}{suffix}" for suffix in (".md", ".ipynb")]
        assert any(c.exists() for c in candidates), f"_toc.yml lists {entry!r} but no .md/.ipynb exists"


def test_every_toc_entry_is_rendered(book_html):
    for entry in toc_files():
        page = book_html / f"{entry}.html"
        assert page.exists(), f"{entry} is in _toc.yml but {page.relative_to(ROOT)} was not built"
        assert "<h1" in page.read_text(encoding="utf-8"), f"{page} has no title"


def test_notebook_pages_launch_colab_at_their_own_path(book_html):
    repo_url, branch = read_repository(ROOT)
    for entry in toc_files():
        if not (ROOT / f"{entry}.ipynb").exists():
            continue
        html = (book_html / f"{entry}.html").read_text(encoding="utf-8")
        expected = colab_url(repo_url, branch, f"{entry}.ipynb")
        assert expected in html, f"{entry}.html has no Colab link to {expected}"


def test_first_chapter_shows_its_figures(book_html):
    html = (book_html / "chapters/01_principles/01_pixels_to_tokens.html").read_text(encoding="utf-8")
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    assert len(images) >= 2, "the first chapter should show its figures"
    for src in images:
        assert (book_html / "chapters/01_principles" / src).resolve().exists(), f"missing figure {src}"


# Formulas, counted in the sources with the book's own MyST parser settings. Each one becomes one
# MathJax input element in the page (a span or div of class "math"), which tests/test_browser.py
# then requires to be typeset. Outputs are not counted: myst-nb renders a Markdown output as plain
# CommonMark, where `$` is not math (a formula there shows as raw TeX, which the browser catches).
MATH_TOKENS = {"math_inline", "math_inline_double", "math_block", "math_block_label", "amsmath"}
# Directives whose body is not Markdown: nothing inside them is a formula.
LITERAL_DIRECTIVES = {"code", "code-block", "code-cell", "sourcecode", "literalinclude", "raw",
                      "eval-rst", "bibliography", "toctree", "tableofcontents"}


@functools.cache
def _myst_parser():
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    extensions = yaml.safe_load((ROOT / "_config.yml").read_text())["parse"]["myst_enable_extensions"]
    return create_md_parser(MdParserConfig(enable_extensions=set(extensions)), RendererHTML)


def _directive_body(content: str) -> str:
    """A directive's Markdown body, without its `:option: value` lines or `---` YAML block."""
    lines = content.splitlines()
    if lines and lines[0].strip() == "---":
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), 0)
        lines = lines[end + 1 :]
    while lines and re.match(r"\s*:[\w-]+:", lines[0]):
        lines = lines[1:]
    return "\n".join(lines)


def count_formulas(markdown: str) -> int:
    """The formulas MyST finds in ``markdown``: $...$, $$...$$, amsmath environments, {math} roles
    and directives, also inside other directives (admonitions, figures)."""
    parser = _myst_parser()

    def count(tokens) -> int:
        total = 0
        for token in tokens:
            name = re.match(r"\{([\w-]+)\}", token.info.strip()) if token.type in ("fence", "colon_fence") else None
            if token.type in MATH_TOKENS or (token.type == "myst_role" and token.meta.get("name") == "math"):
                total += 1
            elif name and name[1] == "math":
                total += 1
            elif name and name[1] not in LITERAL_DIRECTIVES:
                total += count(parser.parse(_directive_body(token.content)))
            total += count(token.children or [])
        return total

    return count(parser.parse(markdown))


def source_formulas(entry: str) -> int:
    """The formulas in the source of the table-of-contents entry ``entry`` (.md or .ipynb)."""
    markdown = ROOT / f"{entry}.md"
    if markdown.exists():
        return count_formulas(markdown.read_text(encoding="utf-8"))
    notebook = json.loads((ROOT / f"{entry}.ipynb").read_text(encoding="utf-8"))
    return sum(
        count_formulas("".join(cell["source"]))
        for cell in notebook["cells"]
        if cell["cell_type"] == "markdown"
    )


def article_math_inputs(html: str) -> int:
    """MathJax input elements (class "math") in a built page's article, its navigation left out
    (the sidebars repeat other pages' titles)."""
    article = re.search(r'<article class="bd-article".*?</article>', html, re.S)
    assert article, "a built page has no <article class=\"bd-article\">"
    return len(re.findall(r'<(?:span|div)\b[^>]*\bclass="math\b', article[0]))


def test_formula_count_reads_myst_as_the_book_does():
    text = r"""Inline $a+b$, {math}`x^2`, `$code$`, \$5 and \$6.

$$
\frac{1}{2}
$$ (label)

\begin{equation}
y = 1
\end{equation}

:::{note}
:class: dropdown
A note with $z$.
:::

```{math}
w
```

```{code-block} python
s = "$not math$"
```
"""
    assert count_formulas(text) == 6


def test_every_formula_reaches_its_page(book_html):
    """Every formula of a page's source is in its built HTML, marked up for MathJax."""
    total = 0
    for entry in toc_files():
        expected = source_formulas(entry)
        found = article_math_inputs((book_html / f"{entry}.html").read_text(encoding="utf-8"))
        assert found == expected, f"{entry}: {expected} formulas in the source, {found} in the page"
        total += expected
    assert total > 0, "no page has a formula: is the count broken?"


def test_the_book_extension_serves_what_a_page_needs(tmp_path):
    """_ext/book_assets.py on a one-page project: MathJax and the Colab badge come from the site
    itself, and any other remote image is a warning (an error under `make book`'s -W)."""
    source = tmp_path / "src"
    (source / "_static").mkdir(parents=True)
    shutil.copy(ROOT / "_static" / "colab-badge.svg", source / "_static")
    (source / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / '_ext')!r})\n"
        "extensions = ['myst_parser', 'sphinx.ext.mathjax', 'book_assets']\n"
        "myst_enable_extensions = ['dollarmath']\n"
    )
    (source / "index.md").write_text(
        "# A page\n\n"
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/)\n\n"
        "A formula $x^2$ and a remote picture ![logo](https://example.org/logo.png).\n"
    )
    out = tmp_path / "html"
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", str(source), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    warnings = [line for line in build.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "remote image https://example.org/logo.png" in warnings[0], warnings

    html = (out / "index.html").read_text(encoding="utf-8")
    assert 'src="_images/colab-badge.svg"' in html and (out / "_images" / "colab-badge.svg").exists()
    assert re.search(r'<script defer="defer" src="_static/mathjax/tex-mml-chtml\.js\?v=\w+">', html)
    fonts = out / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert (fonts / "MathJax_Main-Regular.woff").exists() and (out / "_static" / "mathjax" / "LICENSE").exists()
