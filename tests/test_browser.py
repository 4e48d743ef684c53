"""The built book opened page by page in headless Chromium, as a reader would, with no network.

Every request a page makes to anywhere but the local server is blocked and fails the test: the
book must render from its own files (a downloaded copy, a classroom behind a proxy). Each page
must load with its title, raise no JavaScript error from our own assets, show every image it
embeds, link only to pages and anchors that exist, typeset every formula of its source (counted
in the .md/.ipynb source, checked against MathJax's output) with no TeX error and no raw TeX left
visible, and (for notebooks) open Colab at its own path. Screenshots at desktop and phone widths
go to ``_build/screenshots/``.
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
from tests.test_book import source_formulas, toc_files
from vitcourse.course.stamp import colab_url, read_repository

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
# Pages Sphinx adds beside the table of contents; they must work offline too.
EXTRA_PAGES = ["genindex", "search"]

# TeX a reader should never see: a control word (\frac), an escaped delimiter (\( \[ \{), or a
# $...$ / $$ pair that MathJax did not turn into a formula. Code blocks and typeset formulas are
# left out of the text this is matched against.
RAW_TEX = re.compile(r"\\[A-Za-z]+|\\[()\[\]{}]|\$\$|\$(?=\S)[^$\n]{0,200}?(?<=\S)\$")

# Waits for MathJax to finish, then reports on the page's math: the input elements (class
# "math") and rendered formulas (mjx-container) in the article (the sidebars repeat other pages'
# titles), input elements anywhere that MathJax left untouched, formulas that it could not parse (merror) or that use an undefined macro (the noundefined
# extension shows them as red text), and the page's text outside code and formulas (collapsed
# parts too: a reader may open them).
MATH_REPORT_JS = """async () => {
    const mj = window.MathJax;
    const loaded = !!(mj && mj.startup && mj.startup.promise);
    if (loaded) {
        await Promise.race([mj.startup.promise, new Promise(done => setTimeout(done, 20000))]);
    }
    const article = document.querySelector('article.bd-article') || document.body;
    const untypeset = [...document.querySelectorAll('.math')]
        .filter(el => !el.querySelector('mjx-container'))
        .map(el => el.textContent.trim().slice(0, 80));
    const broken = [];
    if (loaded && mj.startup.document) {
        for (const item of mj.startup.document.math) {
            const mml = mj.startup.toMML(item.root);
            if (/<merror|<mtext mathcolor="red">\\\\/.test(mml)) broken.push(item.math.slice(0, 80));
        }
    }
    const skip = 'pre, code, kbd, samp, script, style, textarea, template, noscript';
    const parts = [];
    const walk = node => {
        for (const child of node.childNodes) {
            if (child.nodeType === Node.TEXT_NODE) {
                parts.push(child.data);
            } else if (child.nodeType === Node.ELEMENT_NODE) {
                if (child.localName === 'mjx-container') parts.push('<formula>');
                else if (child.matches(skip)) parts.push(' ');
                else walk(child);
            }
        }
    };
    walk(document.body);
    return {
        loaded,
        inputs: article.querySelectorAll('.math').length,
        rendered: article.querySelectorAll('mjx-container').length,
        untypeset,
        broken,
        text: parts.join(''),
    };
}"""


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
    """Open ``url`` with the network cut off: only its own origin (the local server, or file://)
    answers. Returns the page and its errors: requests that needed the network, and errors our
    own assets raised."""
    parts = urlsplit(url)
    origin = "file://" if parts.scheme == "file" else f"{parts.scheme}://{parts.netloc}/"
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    errors: list[str] = []

    def only_local(route):
        request_url = route.request.url
        if request_url.startswith((origin, "data:", "blob:")):
            route.continue_()
        else:
            errors.append(f"needs the network: {request_url}")
            route.abort("internetdisconnected")

    page.route("**/*", only_local)
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
    page.on(
        "response",
        lambda response: errors.append(f"HTTP {response.status}: {response.url}")
        if response.status >= 400 and response.url.startswith(origin)
        else None,
    )
    response = page.goto(url, wait_until="load")
    if parts.scheme != "file":
        assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"
    return page, errors


def math_problems(page, expected: int) -> list[str]:
    """What is wrong with the math of an open page whose source has ``expected`` formulas."""
    report = page.evaluate(MATH_REPORT_JS)
    problems = []
    if report["inputs"] != expected:
        problems.append(f"{expected} formulas in the source, {report['inputs']} in the page")
    if report["rendered"] != report["inputs"]:
        problems.append(f"{report['inputs']} formulas, {report['rendered']} typeset by MathJax")
    if report["inputs"] and not report["loaded"]:
        problems.append("MathJax did not load")
    problems += _some("not typeset", [repr(tex) for tex in report["untypeset"]])
    problems += [f"TeX error or undefined macro: {tex!r}" for tex in report["broken"]]
    text = report["text"]
    visible = [repr(text[max(m.start() - 30, 0) : m.end() + 30]) for m in RAW_TEX.finditer(text)]
    problems += _some("raw TeX visible", visible)
    return problems


def _some(what: str, examples: list[str], shown: int = 3) -> list[str]:
    """One line per example, the first few only: a page without MathJax has hundreds."""
    lines = [f"{what}: {example}" for example in examples[:shown]]
    if len(examples) > shown:
        lines.append(f"{what}: ... {len(examples) - shown} more")
    return lines


def test_every_page_reads_well(browser, site, book_html):
    repo_url, branch = read_repository(ROOT)
    problems: list[str] = []
    pages_with_math = 0
    for entry in toc_files() + EXTRA_PAGES:
        url = urljoin(site, f"{entry}.html")
        page, errors = _open(browser, url)
        try:
            from_source = entry not in EXTRA_PAGES
            if from_source:
                title = page.title()
                heading = page.locator("main h1").first.inner_text().strip(" #¶\n")
                assert heading and heading.split()[-1] in title, f"{entry}: title {title!r} vs h1 {heading!r}"

            # Every formula of the source is typeset, with no TeX error and no raw TeX in sight.
            expected = source_formulas(entry) if from_source else 0
            pages_with_math += expected > 0
            problems += [f"{entry}: {problem}" for problem in math_problems(page, expected)]

            # Every image is the book's own and has loaded with a real size.
            images = page.evaluate(
                """async () => Promise.all([...document.images].map(async img => {
                    img.loading = 'eager';
                    try { await img.decode(); } catch (e) {}
                    return {src: img.currentSrc || img.src, w: img.naturalWidth, h: img.naturalHeight};
                }))"""
            )
            for image in images:
                if not (image["src"].startswith(site) and image["w"] > 0 and image["h"] > 0):
                    problems.append(f"{entry}: image did not load: {image['src']}")

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

            # Notebook pages open Colab at their own path: the launch button and the badge.
            if (ROOT / f"{entry}.ipynb").exists():
                expected_url = colab_url(repo_url, branch, f"{entry}.ipynb")
                links = page.eval_on_selector_all(
                    "a[href*='colab.research.google.com/github/']", "els => els.map(e => e.href)"
                )
                assert links.count(expected_url) >= 2, f"{entry}: Colab links {links} (expected {expected_url})"

            problems += [f"{entry}: {error}" for error in errors]
        finally:
            page.close()
    assert not problems, "\n".join(problems)
    assert pages_with_math >= 1, "no page shows math"


def test_a_downloaded_copy_renders_its_math(browser, book_html):
    """Opened from disk (file://), as a reader opens a downloaded copy, a page typesets its math."""
    entry = next(entry for entry in toc_files() if source_formulas(entry))
    page, errors = _open(browser, (book_html / f"{entry}.html").as_uri())
    try:
        assert math_problems(page, source_formulas(entry)) == []
        assert not errors, errors
    finally:
        page.close()


def _math_page(tmp_path: Path, body: str, mathjax_src: str) -> str:
    """A page marked up as the book marks up math, loading MathJax from ``mathjax_src``."""
    page = tmp_path / "math.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>math</title>"
        '<script>window.MathJax = {"options": {"processHtmlClass": "math"}}</script>'
        f'<script defer src="{mathjax_src}"></script></head>'
        f'<body><article class="bd-article">{body}</article></body></html>',
        encoding="utf-8",
    )
    return page.as_uri()


def test_the_math_check_catches_broken_formulas(browser, book_html, tmp_path):
    """The check above fails on each way math can go wrong, and passes on good math."""
    mathjax = (book_html / "_static" / "mathjax" / "tex-mml-chtml.js").as_uri()
    good = (
        r'<p>Inline <span class="math notranslate nohighlight">\(\frac{a}{b}\)</span>.</p>'
        r'<div class="math notranslate nohighlight">\[\sum_i x_i\]</div>'
    )
    page, errors = _open(browser, _math_page(tmp_path, good, mathjax))
    try:
        assert math_problems(page, expected=2) == [] and errors == []
    finally:
        page.close()

    broken = (
        r'<p><span class="math notranslate nohighlight">\(x^1^2\)</span>'  # a TeX error
        r' <span class="math notranslate nohighlight">\(\fraq{1}{2}\)</span>'  # an undefined macro
        r' <span class="math notranslate nohighlight">\(\frac{1}{\)</span>'  # MathJax finds no end
        r" and $\alpha$ that was never marked as math.</p>"
    )
    page, _ = _open(browser, _math_page(tmp_path, broken, mathjax))
    try:
        problems = "\n".join(math_problems(page, expected=4))
    finally:
        page.close()
    assert "4 formulas in the source, 3 in the page" in problems
    assert "3 formulas, 2 typeset by MathJax" in problems
    assert r"not typeset: '\\(\\frac{1}{\\)'" in problems
    assert "TeX error or undefined macro: 'x^1^2'" in problems
    assert r"TeX error or undefined macro: '\\fraq{1}{2}'" in problems
    assert "raw TeX visible" in problems and r"$\\alpha$" in problems

    # MathJax from a CDN, as the book had it before it served its own: offline, nothing renders.
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    page, errors = _open(browser, _math_page(tmp_path, good, cdn))
    try:
        problems = "\n".join(math_problems(page, expected=2))
    finally:
        page.close()
    assert errors == [f"needs the network: {cdn}"]
    assert "MathJax did not load" in problems and "2 formulas, 0 typeset by MathJax" in problems
    assert r"raw TeX visible" in problems and r"\\frac" in problems


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
            assert not errors, errors
        finally:
            page.close()
