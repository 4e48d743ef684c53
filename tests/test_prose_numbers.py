"""Prose and outputs agree: every decimal number and percentage in a page's text is shown by the page.

A number in a page's markdown passes when
- a cell on the same page prints it: some number in the stored outputs rounds to it (at the
  prose's number of decimals; a percentage may quote a printed fraction and the other way round);
- or the page's code sets it: it is a literal in a code cell, or in an inline code span;
- or it is quoted from a paper: the sentence it stands in cites one (``{cite}`` or ``{cite:t}``).
Section numbers ("section 3.2", a link to page "1.4") are references, not results. Integers are
left alone (counts, sizes and epochs are exact and mostly settings).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT

PAGES = sorted(
    [*ROOT.glob("chapters/**/*.ipynb"), *ROOT.glob("solutions/*.ipynb"), *ROOT.glob("chapters/*/index.md"),
     ROOT / "intro.md", ROOT / "exercises" / "index.md"]
)

FENCED_CODE = re.compile(r"```.*?```", re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# The target of a link or an image, ![alt](target) or [text](target): an address, not prose.
LINK_TARGET = re.compile(r"(\]\()[^)\s]*(\))")
REFERENCE = re.compile(
    r"(?i)\b(?:sections?|chapters?|pages?|parts?|§)\s+\d+(?:\.\d+)+(?:\s*(?:,|and|or|to|-|–)\s*\d+(?:\.\d+)+)*"
)
# A link whose text is a section number, as in "[1.4](05_vit_and_cnns.ipynb)".
SECTION_LINK = re.compile(r"\[\d+(?:\.\d+)+\]")
CITATION = re.compile(r"\{cite(?::[a-z]+)?\}")
# Sentences end at . ! ? followed by white space and something that can start a sentence.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(*$\-\d])")

PROSE_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(\s?%)?(?![\w]|\.\d)(?:\s+(thousand|million|billion)\b)?")
SCALE_WORDS = {None: 1.0, "thousand": 1e3, "million": 1e6, "billion": 1e9}
ANY_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _cells(path: Path) -> list[dict]:
    if path.suffix == ".md":
        return [{"cell_type": "markdown", "source": path.read_text()}]
    return nbformat.read(path, as_version=4).cells


def _output_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        for mime, value in output.get("data", {}).items():
            if mime.startswith("text/"):
                parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)


def _values(text: str) -> set[float]:
    return {float(m.group(0).replace(",", "")) for m in ANY_NUMBER.finditer(text)}


def _prose_numbers(markdown: str):
    """(number as written, is a percentage, scale word's factor, its sentence) for each decimal
    or percentage ("86.6 million" is written "86.6" with factor 1e6)."""
    text = FENCED_CODE.sub(" ", markdown)
    text = LINK_TARGET.sub(r"\1\2", text)
    text = SECTION_LINK.sub("[link]", text)
    text = REFERENCE.sub("a reference", text)
    text = INLINE_CODE.sub("code", text)
    for paragraph in re.split(r"\n\s*\n", text):
        for sentence in SENTENCE_END.split(paragraph):
            for match in PROSE_NUMBER.finditer(sentence):
                written, percent, scale = match.group(1), bool(match.group(2)), SCALE_WORDS[match.group(3)]
                if "." in written or percent:
                    yield written, percent, scale, sentence


def _readings(written: str, percent: bool, scale: float) -> list[tuple[float, float]]:
    """(value, half of the last written digit's step) for each way a page may print the number:
    as written, and for a percentage as a fraction, for a decimal as a percentage."""
    half_step = (0.5 * 10.0 ** -len(written.partition(".")[2]) + 1e-9) * scale
    value = float(written) * scale
    other = 1 / 100 if percent else 100.0
    return [(value, half_step), (value * other, half_step * other)]


def _shown_by(readings: list[tuple[float, float]], printed: set[float]) -> bool:
    """Does some printed value round to the number, in one of its readings?"""
    return any(abs(value - target) <= half_step for value in printed for target, half_step in readings)


def _set_by(readings: list[tuple[float, float]], literals: set[float]) -> bool:
    return any(abs(value - target) <= 1e-12 * max(1.0, abs(target)) for value in literals for target, _ in readings)


def unsupported_numbers(path: Path) -> list[str]:
    """Each number in ``path``'s prose that no output prints, no code sets and no citation backs."""
    cells = _cells(path)
    printed, literals = set(), set()
    for cell in cells:
        if cell["cell_type"] == "code":
            printed |= _values(_output_text(cell))
            literals |= _values(cell["source"])
        else:
            for code in INLINE_CODE.findall(cell["source"]):
                literals |= _values(code)
    problems = []
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        for written, percent, scale, sentence in _prose_numbers(cell["source"]):
            readings = _readings(written, percent, scale)
            if CITATION.search(sentence) or _set_by(readings, literals) or _shown_by(readings, printed):
                continue
            context = " ".join(sentence.split())
            problems.append(f"{written}{'%' if percent else ''} in: {context[:160]}")
    return problems


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_number_in_the_prose_is_shown_by_the_page(path):
    problems = unsupported_numbers(path)
    assert not problems, (
        "numbers in the text that no cell on the page prints, no code sets and no citation backs "
        "(print them, quote only what the page shows, or cite the paper they come from):\n  "
        + "\n  ".join(problems)
    )


def _page(tmp_path, markdown: str, code: str = "", printed: str = "") -> Path:
    cell = nbformat.v4.new_code_cell(code)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)] if printed else []
    path = tmp_path / "page.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown), cell]), path)
    return path


def test_a_number_no_cell_prints_is_caught(tmp_path):
    page = _page(tmp_path, "The ViT reaches 70.9% against 67.6%.", printed="vit 0.676\n")
    assert [p.split(" in:")[0] for p in unsupported_numbers(page)] == ["70.9%"]


def test_rounding_percentages_settings_citations_and_references_pass(tmp_path):
    page = _page(
        tmp_path,
        "It reaches 0.44 (that is 43.6%), at a learning rate of 0.005 and `tau=0.25`.\n\n"
        "DeiT reports 83.1% {cite}`touvron2021deit`. See section 3.2 and [1.4](a.ipynb).",
        code="lr = 0.005",
        printed="test accuracy 0.436\n",
    )
    assert unsupported_numbers(page) == []


def test_rounding_is_to_the_prose_precision(tmp_path):
    # 0.436 rounds to 0.44, not to 0.43; 43.6% is 0.436, 44% is 0.44.
    page = _page(tmp_path, "Accuracy 0.43, or 45%.", printed="test accuracy 0.436\n")
    assert [p.split(" in:")[0] for p in unsupported_numbers(page)] == ["0.43", "45%"]


def test_scale_words_and_percent_settings(tmp_path):
    page = _page(tmp_path, "About 86.6 million parameters; 75% of the patches are masked; 5.8 million is wrong.",
                 code="MASK_RATIO = 0.75", printed="parameters: 86,567,656\n")
    assert [p.split(" in:")[0] for p in unsupported_numbers(page)] == ["5.8"]
