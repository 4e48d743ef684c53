"""Each chapter's switched path (``LARGER_RUN`` / ``LOAD_PRETRAINED = True``) runs to the end.

nbval checks the default path against the stored outputs; these tests run the other path, the
one a reader gets after flipping the switch in Colab, offline and on the CPU
(``tests/switched_notebooks.py`` says how).
"""

from __future__ import annotations

import re

import nbformat
import pytest

from tests.switched_notebooks import (
    CHAPTERS,
    SHRINK,
    STAND_INS,
    code_of,
    flip_switch,
    run_switched,
    shrink,
    switched_chapters,
)

SWITCHED = switched_chapters()


def test_every_chapter_that_uses_a_switch_sets_it_once_to_false():
    using = {path for path in CHAPTERS.rglob("*.ipynb") if re.search(r"\b(LARGER_RUN|LOAD_PRETRAINED)\b", code_of(path))}
    assert using == set(SWITCHED)
    assert len(SWITCHED) >= 10
    for path in SWITCHED:
        flip_switch(nbformat.read(path, as_version=4), path.name)  # raises unless exactly one


def test_stand_ins_and_shrinks_name_real_notebooks():
    for name in {*SHRINK, *STAND_INS}:
        assert (CHAPTERS / name) in SWITCHED, name
    for name in SHRINK:
        shrink(nbformat.read(CHAPTERS / name, as_version=4), name)  # raises if a text no longer matches


def _notebook(*sources: str):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def test_flip_switch_refuses_none_or_two():
    nb = _notebook("import torch\nLARGER_RUN = False  # True on a GPU", "print(LARGER_RUN)")
    assert flip_switch(nb, "one.ipynb") == "LARGER_RUN"
    assert nb.cells[0].source == "import torch\nLARGER_RUN = True  # True on a GPU"
    with pytest.raises(ValueError, match="none.ipynb: expected one .* found 0"):
        flip_switch(_notebook("LARGER_RUN = True"), "none.ipynb")
    with pytest.raises(ValueError, match="two.ipynb: expected one .* found 2"):
        flip_switch(_notebook("LARGER_RUN = False", "LOAD_PRETRAINED = False"), "two.ipynb")


def test_shrink_refuses_a_stale_replacement(monkeypatch):
    monkeypatch.setitem(SHRINK, "x.ipynb", {"epochs=50": "epochs=1"})
    nb = _notebook("fit(model, epochs=50)")
    shrink(nb, "x.ipynb")
    assert nb.cells[0].source == "fit(model, epochs=1)"
    with pytest.raises(ValueError, match="SHRINK text 'epochs=50' is not in any code cell"):
        shrink(_notebook("fit(model, epochs=40)"), "x.ipynb")


@pytest.mark.slow
@pytest.mark.parametrize("path", SWITCHED, ids=[path.relative_to(CHAPTERS).as_posix() for path in SWITCHED])
def test_switched_path_runs(path, tmp_path):
    run_switched(path, tmp_path)  # fails with CellExecutionError: the failing cell and its traceback
