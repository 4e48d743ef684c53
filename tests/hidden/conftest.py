"""Direct mode for the hidden tests: ``pytest tests/hidden/test_<exercise>.py`` checks the
instructor's solution notebook in-process (no sandbox).

Each test module names its exercise in ``EXERCISE``; the ``student`` fixture runs the code cells
of ``solutions/<EXERCISE>.ipynb`` once per module (IPython syntax skipped and the module's
``REFERENCE_ANSWERS`` guarded, exactly as the grader does) and answers ``student.call`` /
``student.module`` with the same data-only values as the sandboxed worker. ``rng`` is a seeded ``torch.Generator``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import torch

from vitcourse.grading.direct import graded_notebook, in_process_student

SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"
SEED = 20240607


@pytest.fixture(scope="module")
def student(request):
    exercise = getattr(request.module, "EXERCISE", None)
    if not isinstance(exercise, str):
        pytest.fail(f"{request.module.__name__} must define EXERCISE = '<exercise id>'")
    path = SOLUTIONS / f"{exercise}.ipynb"
    if not path.exists():
        pytest.skip(f"no solution notebook {path}")
    answers = getattr(request.module, "REFERENCE_ANSWERS", {})
    with graded_notebook(path, f"_solution_{exercise}", answers, request.module) as namespace:
        yield in_process_student(namespace)


@pytest.fixture
def rng(request):
    # one seed per test, stable across runs, different between tests
    generator = torch.Generator()
    generator.manual_seed(SEED + zlib.crc32(request.node.name.encode()))
    return generator
