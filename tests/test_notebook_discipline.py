"""The rules that keep a page's outputs true on every machine (CONTRIBUTING.md, "Claims").

nbval re-runs every cell of every notebook and compares what is the same on every CPU. What it
does not compare must be backed by something that is checked:

- a cell whose output nbval ignores (tag ``nbval-ignore-output``) states its conclusions as
  claims, or only shows the package's source, which is checked here against the package itself;
- a cell that prints results over seeds (``mean ± spread (per seed: ...)``, masked by the
  sanitizer) checks what the page concludes from them with a claim in the same cell;
- no cell or notebook is skipped.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted([*ROOT.glob("chapters/**/*.ipynb"), *ROOT.glob("solutions/*.ipynb")])
IGNORE_TAG = "nbval-ignore-output"
SKIP_MARKERS = ("nbval-skip", "NBVAL_SKIP", "NBVAL_IGNORE_OUTPUT", "NBVAL_CHECK_OUTPUT")
CLAIM_CALL = re.compile(r"\bclaim(?:_below|_above|_separated)?\(")
SHOW_SOURCE_ONLY = re.compile(r"^(?:\s*show_source\([\w.]+\)\s*)+$")
SEED_SUMMARY = re.compile(r"± \S+ \(per seed:")

def _relative(path) -> str:
    return path.relative_to(ROOT).as_posix()


def _code_cells(path):
    return [(i, c) for i, c in enumerate(nbformat.read(path, as_version=4).cells) if c.cell_type == "code"]


def _text_outputs(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.extend(v for k, v in output.get("data", {}).items() if k in ("text/plain", "text/markdown"))
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_relative)
def test_every_ignored_output_is_backed_by_a_claim(path):
    unbacked = [
        index for index, cell in _code_cells(path)
        if IGNORE_TAG in cell.metadata.get("tags", [])
        and not CLAIM_CALL.search(cell.source)
        and not SHOW_SOURCE_ONLY.match(cell.source)
    ]
    assert not unbacked, f"cells {unbacked} hide their output from nbval without a claim"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_relative)
def test_results_over_seeds_come_with_a_claim(path):
    unbacked = [index for index, cell in _code_cells(path)
                if SEED_SUMMARY.search(_text_outputs(cell)) and not CLAIM_CALL.search(cell.source)]
    assert not unbacked, f"cells {unbacked} print results over seeds but claim nothing from them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_relative)
def test_no_cell_is_skipped(path):
    skipped = [index for index, cell in _code_cells(path)
               if any(m in cell.source or m in cell.metadata.get("tags", []) for m in SKIP_MARKERS)]
    assert not skipped, f"cells {skipped} are skipped or marked in their source; use the tag {IGNORE_TAG!r} and a claim"


def _package_source() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "vitcourse").rglob("*.py")))


def _shown_sources(path):
    for index, cell in _code_cells(path):
        for output in cell.get("outputs", []):
            shown = output.get("data", {}).get("text/markdown", "")
            shown = shown if isinstance(shown, str) else "".join(shown)
            if shown.startswith("```python\n"):
                yield index, shown.removeprefix("```python\n").removesuffix("```")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_relative)
def test_shown_source_is_the_package_as_it_is(path):
    """A page that shows the package's code shows today's code (nbval does not compare it)."""
    package = _package_source()
    stale = [index for index, shown in _shown_sources(path) if shown.strip() not in package]
    assert not stale, f"cells {stale} show source that is no longer in vitcourse/: re-execute the page"


def test_the_shown_source_check_can_fail():
    shown = "def patchify(images, patch_size):\n    return images  # an old version\n"
    assert shown.strip() not in _package_source()
