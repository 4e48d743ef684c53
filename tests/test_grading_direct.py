"""Direct mode (tests/hidden/conftest.py's machinery): a notebook run in-process answers the
fake exercise's hidden tests exactly as the sandboxed worker would."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch

from vitcourse.grading.direct import in_process_student, notebook_namespace
from vitcourse.grading.hidden import GradingFailure
from vitcourse.grading.trusted.suites import load_hidden_tests

sys.path.insert(0, str(Path(__file__).parent))
from grading_fixtures.notebooks import CORRECT, WRONG, WRONG_FAILS, write_notebook  # noqa: E402

HIDDEN = Path(__file__).parent / "grading_fixtures" / "hidden"


def _run_all(path: Path, name: str) -> set[str]:
    """Names of the fake exercise's hidden tests that fail on the notebook at ``path``."""
    student = in_process_student(notebook_namespace(path, name))
    failed = set()
    for test in load_hidden_tests(HIDDEN, "00_fake"):
        params = inspect.signature(test.function).parameters
        rng = torch.Generator().manual_seed(0)
        kwargs = {k: v for k, v in {"student": student, "rng": rng}.items() if k in params}
        try:
            test.function(**kwargs)
        except GradingFailure:
            failed.add(test.name)
    return failed


def test_correct_notebook_passes_every_hidden_test(tmp_path):
    path = write_notebook(tmp_path / "correct.ipynb", CORRECT)
    assert _run_all(path, "_direct_correct") == set()


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_notebooks_fail_exactly_the_expected_tests(tmp_path, name):
    path = write_notebook(tmp_path / f"{name}.ipynb", WRONG[name])
    with pytest.warns(UserWarning) if name == "missing" else _nothing():
        failed = _run_all(path, f"_direct_{name}")
    assert failed == WRONG_FAILS[name]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_direct_student_gets_copies_of_the_arguments(tmp_path):
    path = write_notebook(tmp_path / "mut.ipynb", ["def double(x):\n    x.mul_(0)\n    return x"])
    student = in_process_student(notebook_namespace(path, "_direct_mut"))
    x = torch.ones(3)
    student.call("double", x)
    assert torch.equal(x, torch.ones(3))
