"""The built book opened page by page in headless Chromium, as a reader would.

Each page must load with its title, raise no JavaScript error from our own assets, show every
image it embeds, link only to pages and anchors that exist, carry its math for MathJax, and (for
notebooks) open Colab at its own path. Screenshots at desktop and phone widths go to
``_build/screenshots/``. The network is not needed: third-party assets (the Colab badge image,
MathJax from its CDN) are checked by address, not loaded.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from tests.conftest import ROOT
from tests.test_book import toc_files
from vitcourse.stamp import colab_url, read_repository

pytestmark = [pytest.mark.browser, pytest.mark.book, pytest.mark.slow]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_PAGES = ["intro", "chapters/01_principles/01_pixels_to_tokens", "exercises/01_patches"]
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it)")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def site(book_html):
    """The built book served on a free localhost port: yields the base url."""
    handler = functools.partial(_QuietHandler, directory=str(book_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@functools.cache
def _ids_in(path: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8")))


def _local_target(book_html: Path, href_path: str) -> Path:
    target = book_html / unquote(href_path).lstrip("/")
    return target / "index.html" if href_path.endswith("/") or target.is_dir() else target


def _open(browser, url: str, viewport=(1280, 800)):
    """Open ``url``; return the page and the errors our own assets raised."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text} ({msg.location.get('url')})")
        if msg.type == "error" and str(msg.location.get("url", "")).startswith(origin)
        else None,
    )
    page.on(
        "requestfailed",
        lambda request: errors.append(f"failed to load {request.url}")
        if request.url.startswith(origin)
        else None,
    )
    response = page.goto(url, wait_until="load")
    assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"
    return page, errors


def test_every_page_reads_well(browser, site, book_html):
    repo_url, branch = read_repository(ROOT)
    pages_with_math = 0
    for entry in toc_files():
        url = urljoin(site, f"{entry}.html")
        page, errors = _open(browser, url)
        try:
            title = page.title()
            heading = page.locator("main h1").first.inner_text().strip(" #¶\n")
            assert heading and heading.split()[-1] in title, f"{entry}: title {title!r} vs h1 {heading!r}"

            # Every image: ours must have loaded with a real size; third-party ones are only
            # checked by address (the test runs without network).
            images = page.evaluate(
                """async () => Promise.all([...document.images].map(async img => {
                    img.loading = 'eager';
                    try { await img.decode(); } catch (e) {}
                    return {src: img.currentSrc || img.src, w: img.naturalWidth, h: img.naturalHeight};
                }))"""
            )
            for image in images:
                if image["src"].startswith(site):
                    assert image["w"] > 0 and image["h"] > 0, f"{entry}: image did not load: {image['src']}"
                else:
                    assert image["src"].startswith("https://colab.research.google.com/assets/"), (
                        f"{entry}: unexpected third-party image {image['src']}"
                    )

            # Every internal link and anchor resolves to a built file and an existing id.
            hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
            for href in hrefs:
                if not href.startswith(site):
                    continue
                parts = urlsplit(href)
                target = _local_target(book_html, parts.path)
                assert target.exists(), f"{entry}: broken link {href}"
                if parts.fragment and target.suffix == ".html":
                    assert unquote(parts.fragment) in _ids_in(target), f"{entry}: missing anchor {href}"

            # Math is on the page for MathJax to typeset, and MathJax is configured to load.
            if page.locator(".math").count():
                pages_with_math += 1
                assert page.locator("script[src*='mathjax']").count(), f"{entry}: math without MathJax"

            # Notebook pages open Colab at their own path: the launch button and the badge.
            if (ROOT / f"{entry}.ipynb").exists():
                expected = colab_url(repo_url, branch, f"{entry}.ipynb")
                links = page.eval_on_selector_all(
                    "a[href*='colab.research.google.com/github/']", "els => els.map(e => e.href)"
                )
                assert links.count(expected) >= 2, f"{entry}: Colab links {links} (expected {expected})"

            assert not errors, f"{entry}: {errors}"
        finally:
            page.close()
    assert pages_with_math >= 1, "no page shows math"


def test_search_finds_a_chapter_word(browser, site):
    page, errors = _open(browser, urljoin(site, "search.html?q=patchify"))
    try:
        results = page.locator("#search-results li a")
        results.first.wait_for(timeout=20_000)
        found = results.evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert any("pixels_to_tokens" in href for href in found), found
        assert not errors, errors
    finally:
        page.close()


@pytest.mark.parametrize("viewport_name", sorted(VIEWPORTS))
def test_screenshots(browser, site, book_html, viewport_name):
    out = book_html.parent / "screenshots"
    out.mkdir(exist_ok=True)
    for entry in SCREENSHOT_PAGES:
        if not (book_html / f"{entry}.html").exists():
            continue
        page, errors = _open(browser, urljoin(site, f"{entry}.html"), VIEWPORTS[viewport_name])
        try:
            # Nothing may be wider than the screen: a phone reader should not scroll sideways.
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{entry} at {viewport_name} width scrolls sideways by {overflow}px"
            path = out / f"{entry.replace('/', '__')}-{viewport_name}.png"
            page.screenshot(path=str(path), full_page=False)
            assert path.stat().st_size > 5_000
        finally:
            page.close()
