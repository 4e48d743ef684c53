"""`vitcourse release`: the marker transform, and exercises/ being exactly what it generates."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest

from vitcourse.course.release import STUB_LINE, MarkerError, make_exercise, release, strip_solutions

ROOT = Path(__file__).resolve().parents[1]


def _src(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def test_function_body_replaced_keeping_signature_and_docstring():
    source = _src('''
        def f(x):
            """Double x."""
            # BEGIN SOLUTION
            y = x * 2
            return y
            # END SOLUTION
    ''')
    assert strip_solutions(source) == _src(f'''
        def f(x):
            """Double x."""
            {STUB_LINE}
    ''')


def test_stub_takes_the_indentation_of_the_begin_marker():
    source = _src("""
        class M:
            def forward(self, x):
                if x:
                    # BEGIN SOLUTION
                    return 1
                    # END SOLUTION
                return 0
    """)
    lines = strip_solutions(source).split("\n")
    assert lines[3] == " " * 12 + STUB_LINE
    assert lines[4] == "        return 0"


def test_several_blocks_and_code_between_them_kept():
    source = _src("""
        def f():
            # BEGIN SOLUTION
            a = 1
            # END SOLUTION

        def g():
            # BEGIN SOLUTION
            b = 2
            # END SOLUTION
    """)
    out = strip_solutions(source)
    assert out.count(STUB_LINE) == 2 and "def g():" in out and "a = 1" not in out and "b = 2" not in out


def test_nested_blocks_give_one_stub():
    source = _src("""
        def f():
            # BEGIN SOLUTION
            a = 1
            if a:
                # BEGIN SOLUTION
                a = 2
                # END SOLUTION
            return a
            # END SOLUTION
    """)
    assert strip_solutions(source) == "def f():\n    " + STUB_LINE


@pytest.mark.parametrize(
    "source, message",
    [
        ("def f():\n    # BEGIN SOLUTION\n    return 1\n", "never closed"),
        ("def f():\n    return 1\n    # END SOLUTION\n", "without a '# BEGIN SOLUTION'"),
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "column 0"),
        ("def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    # END SOLUTION\n", "never closed"),
    ],
)
def test_unbalanced_or_misplaced_markers_raise(source, message):
    with pytest.raises(MarkerError, match=message) as info:
        strip_solutions(source, where="solutions/x.ipynb, cell 3")
    assert "solutions/x.ipynb, cell 3, line" in str(info.value)


def test_source_without_markers_is_unchanged():
    source = "import torch\n\nx = torch.ones(2)  # no markers here\n"
    assert strip_solutions(source) == source


def _solution_notebook():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION")
    code.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    code.execution_count = 3
    answer = nbformat.v4.new_markdown_cell("The answer is 42.")
    answer.metadata["tags"] = ["solution"]
    plain = nbformat.v4.new_code_cell("print(1)")
    plain.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), code, answer, plain]
    return nb


def test_make_exercise_drops_answers_clears_outputs_and_stamps():
    exercise = make_exercise(_solution_notebook(), "exercises/x.ipynb", "https://github.com/o/r", "main")
    sources = [c.source for c in exercise.cells]
    assert "The answer is 42." not in sources
    assert "exercises/x.ipynb" in sources[0] and "colab" in sources[0]  # the badge names the exercise
    code_cells = [c for c in exercise.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code_cells)
    assert any(STUB_LINE in c.source for c in code_cells)
    again = make_exercise(_solution_notebook(), "exercises/x.ipynb", "https://github.com/o/r", "main")
    assert [c.source for c in again.cells] == sources


def test_release_writes_then_check_passes_and_detects_edits(tmp_path):
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "solutions").mkdir()
    nbformat.write(_solution_notebook(), tmp_path / "solutions" / "01_x.ipynb")
    changed, stale = release(tmp_path)
    assert [p.name for p in changed] == ["01_x.ipynb"] and stale == []
    assert release(tmp_path, check=True) == ([], [])
    target = tmp_path / "exercises" / "01_x.ipynb"
    target.write_text(target.read_text().replace("raise NotImplementedError", "return 1  #"))
    assert [p.name for p in release(tmp_path, check=True)[0]] == ["01_x.ipynb"]
    (tmp_path / "exercises" / "99_orphan.ipynb").write_text(target.read_text())
    assert [p.name for p in release(tmp_path, check=True)[1]] == ["99_orphan.ipynb"]


def test_exercises_folder_is_exactly_what_release_generates():
    changed, stale = release(ROOT, check=True)
    assert not changed, f"out of date (run `make exercises`): {[str(p) for p in changed]}"
    assert not stale, f"exercises without a solution: {[str(p) for p in stale]}"


def test_every_solution_has_stubs_and_no_exercise_leaks_a_solution():
    for solution in sorted((ROOT / "solutions").glob("*.ipynb")):
        text = solution.read_text()
        assert "# BEGIN SOLUTION" in text, solution
        exercise = (ROOT / "exercises" / solution.name).read_text()
        assert "BEGIN SOLUTION" not in exercise and "END SOLUTION" not in exercise
        assert "NotImplementedError" in exercise


def test_cli_check_and_marker_errors(tmp_path, capsys):
    from vitcourse.cli import main

    assert main(["release", "--root", str(ROOT), "--check"]) == 0
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "solutions").mkdir()
    broken = _solution_notebook()
    broken.cells[1].source = "def f():\n    # BEGIN SOLUTION\n    return 1\n"
    nbformat.write(broken, tmp_path / "solutions" / "02_broken.ipynb")
    assert main(["release", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "solutions/02_broken.ipynb, cell 1, line 2" in err and "never closed" in err
    assert not (tmp_path / "exercises" / "02_broken.ipynb").exists()
