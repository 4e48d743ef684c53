"""Every notebook carries its Colab badge and its install cell, stamped from _config.yml."""

from __future__ import annotations

import nbformat
import pytest

from tests.conftest import ROOT
from vitcourse.course.stamp import (
    BADGE_TAG,
    INSTALL_ENV,
    INSTALL_TAG,
    colab_url,
    notebooks,
    read_repository,
    stamp_all,
)

NOTEBOOKS = notebooks(ROOT)


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_there_are_notebooks():
    assert any("chapters" in p.relative_to(ROOT).parts for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_badge_and_install_cell(path):
    nb = nbformat.read(path, as_version=4)
    repo_url, branch = read_repository(ROOT)
    relative = path.relative_to(ROOT).as_posix()

    badge = nb.cells[0]
    assert badge.cell_type == "markdown" and BADGE_TAG in _tags(badge), "the first cell must be the Colab badge"
    assert colab_url(repo_url, branch, relative) in badge.source, "the badge must open this notebook"

    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert INSTALL_TAG in _tags(first_code), "the first code cell must install vitcourse"
    assert f"git+{repo_url}@{branch}" in first_code.source
    assert INSTALL_ENV in first_code.source
    assert 'find_spec("vitcourse") is None' in first_code.source, "install only when missing"


def test_stamps_are_up_to_date():
    stale = stamp_all(ROOT, check=True)
    assert not stale, f"run `make stamp`: {[p.relative_to(ROOT).as_posix() for p in stale]}"


def test_stamp_follows_the_repository_in_config(tmp_path):
    """A fork edits _config.yml once and re-stamps: every badge and install cell follows."""
    (tmp_path / "_config.yml").write_text(
        "repository:\n  url: https://github.com/someone/fork\n  branch: dev\n"
    )
    folder = tmp_path / "chapters" / "x"
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(nb, folder / "a.ipynb")
    assert stamp_all(tmp_path) == [folder / "a.ipynb"]
    assert stamp_all(tmp_path, check=True) == []  # idempotent
    stamped = nbformat.read(folder / "a.ipynb", as_version=4)
    assert "someone/fork/blob/dev/chapters/x/a.ipynb" in stamped.cells[0].source
    assert "git+https://github.com/someone/fork@dev" in stamped.cells[2].source
    assert [c.source for c in stamped.cells[1:4:2]] == ["# T", "1 + 1"]


def test_install_cell_installs_only_when_missing():
    """Run the install cell with a fake pip: nothing runs when vitcourse is importable."""
    repo_url, branch = read_repository(ROOT)
    from vitcourse.course.stamp import install_source

    calls = []
    import subprocess

    namespace = {}
    original = subprocess.run
    subprocess.run = lambda *a, **k: calls.append(a)
    try:
        exec(install_source(repo_url, branch), namespace)
    finally:
        subprocess.run = original
    assert calls == []
