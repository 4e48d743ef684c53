"""No chapter page prints an exercise's answer (issue 18).

Each exercise's hidden tests name the package's own answers in ``REFERENCE_ANSWERS`` (for a
converted exercise, its contract's references). A page *shows* one when most of the answer's
code lines (without docstrings, comments, signatures or blank lines; a function with the private
helpers it calls; a class whole or any one of its methods) appear on the page: in a cell's source
or in any text output, which is where ``show_source`` puts it.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT
from vitcourse.grading.references import resolve_reference
from vitcourse.grading.trusted.suites import load_hidden_suite

HIDDEN = ROOT / "tests" / "hidden"
PAGES = sorted(ROOT.glob("chapters/**/*.ipynb"))
EXERCISES = sorted(p.stem.removeprefix("test_") for p in HIDDEN.glob("test_*.py"))
SHOWN_FRACTION = 0.6  # of the answer's code lines: a page showing this much shows the answer
MIN_LINE = 12  # characters: shorter lines ("return x", "else:") say nothing about where they came from

def code_lines(source: str) -> set[str]:
    """The lines of ``source`` that carry code: no docstrings, comments, decorators, signatures
    or blank lines, each stripped of indentation and trailing comments."""
    source = textwrap.dedent(source)
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body_start = node.body[0].lineno
            skip.update(range(min([node.lineno, *(d.lineno for d in node.decorator_list)]), body_start))
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                skip.update(range(first.lineno, first.end_lineno + 1))
    lines = set()
    for number, line in enumerate(source.splitlines(), start=1):
        text = line.split("  #")[0].strip()
        if number not in skip and len(text) >= MIN_LINE and not text.startswith("#"):
            lines.add(text)
    return lines


def page_lines(path: Path) -> set[str]:
    """Every stripped line a page holds: its cells' sources and their text outputs."""
    found: set[str] = set()
    for cell in nbformat.read(path, as_version=4).cells:
        texts = [cell.source]
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts += [v for k, v in output.get("data", {}).items() if k.startswith("text/")]
        for text in texts:
            text = text if isinstance(text, str) else "".join(text)
            found.update(line.split("  #")[0].strip() for line in text.splitlines())
    return found


def answer_parts(obj) -> list[set[str]]:
    """The code lines by which a page would show ``obj``: a class whole, and each of its methods
    on its own (a page showing ``Block.forward`` shows the answer to an exercise that asks for
    ``Block``); a function's own lines, and when it only delegates (fewer than 3 lines), those of
    the module's private functions it calls."""
    own = code_lines(inspect.getsource(obj))
    if isinstance(obj, type):
        return [own] + [code_lines(inspect.getsource(v)) for v in vars(obj).values() if inspect.isfunction(v)]
    if len(own) < 3:
        module = inspect.getmodule(obj)
        for name in obj.__code__.co_names:
            helper = getattr(module, name, None)
            if name.startswith("_") and inspect.isfunction(helper):
                own |= code_lines(inspect.getsource(helper))
    return [own]


def shows(page: set[str], parts: list[set[str]]) -> bool:
    """Whether most code lines of any part of an answer are on the page."""
    return any(part and len(part & page) >= SHOWN_FRACTION * len(part) for part in parts)


def answers() -> dict[tuple[str, str], list[set[str]]]:
    """(exercise, path) -> the parts of each reference answer the hidden tests name."""
    found = {}
    for exercise in EXERCISES:
        for path in load_hidden_suite(HIDDEN, exercise).reference_answers.values():
            found[(exercise, path)] = answer_parts(resolve_reference(path))
    return found


@pytest.fixture(scope="module")
def shown() -> dict[tuple[str, str], list[str]]:
    pages = {path.relative_to(ROOT).as_posix(): page_lines(path) for path in PAGES}
    return {key: [name for name, lines in pages.items() if shows(lines, answer)] for key, answer in answers().items()}


def test_no_page_shows_the_answer_to_an_exercise(shown):
    printed = {key: pages for key, pages in shown.items() if pages}
    assert not printed, f"chapter pages print the answer to an exercise: {printed}"


def test_every_answer_has_code_lines_to_recognise():
    empty = [key for key, parts in answers().items() if not parts[0]]
    assert not empty, empty


def test_the_detector_finds_show_source_and_a_pasted_copy_but_not_a_call(tmp_path):
    from vitcourse.course.exercises.patches import overlapping_patches

    answer = answer_parts(overlapping_patches)
    source_cell = nbformat.v4.new_code_cell("show_source(overlapping_patches)")
    source_cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"text/markdown": f"```python\n{inspect.getsource(overlapping_patches)}```",
                              "text/plain": "<IPython.core.display.Markdown object>"})]
    pasted = nbformat.v4.new_code_cell(inspect.getsource(overlapping_patches).replace("    ", "  "))
    called = nbformat.v4.new_code_cell("tokens = overlapping_patches(images, 16, 8)\nprint(tokens.shape)")
    for cells, expected in (([source_cell], True), ([pasted], True), ([called], False)):
        path = tmp_path / "page.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
        assert shows(page_lines(path), answer) is expected, cells
