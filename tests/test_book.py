"""The book: every table-of-contents entry has its page, and the Colab links follow _config.yml."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import ROOT
from vitcourse.stamp import colab_url, read_repository

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
