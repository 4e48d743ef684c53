"""Shared test settings: the repository root, and the built book when a test needs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK_HTML = ROOT / "_build" / "html"

# Submissions used as grading fixtures (hostile ones among them) are data, never run by nbval.
collect_ignore_glob = ["grading_fixtures/*", "*/grading_fixtures/*"]


@pytest.fixture(scope="session")
def book_html() -> Path:
    """The built book. `make test` builds it first and sets VITCOURSE_REQUIRE_BOOK=1, so there a
    missing build fails instead of skipping."""
    if not (BOOK_HTML / "index.html").exists():
        if os.environ.get("VITCOURSE_REQUIRE_BOOK") == "1":
            pytest.fail("the book is not built: _build/html/index.html is missing")
        pytest.skip("the book is not built (run `make book`)")
    return BOOK_HTML
