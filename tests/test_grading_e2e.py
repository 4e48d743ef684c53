"""End-to-end tests of ``vitcourse grade`` on the fake exercise 00_fake: correct, wrong, invalid
and hostile notebooks, resuming, a grader killed mid-batch, the sandbox's walls, Gradescope.

Expected scores come from the fixture's own list of which tests each notebook must fail (written
from what each notebook does, not from the grader's output)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from vitcourse.grading.batch import grade
from vitcourse.grading.trusted.sandbox import bwrap_works

sys.path.insert(0, str(Path(__file__).parent))
from grading_fixtures.gradescope_schema import validate as validate_gradescope  # noqa: E402
from grading_fixtures.notebooks import (  # noqa: E402
    ALL_TESTS,
    CORRECT,
    HOSTILE,
    HUGE_VIEW,
    LEAKER,
    MAX_SCORE,
    PROBE,
    WRONG,
    WRONG_FAILS,
    write_notebook,
)
from grading_fixtures.reading import check_hostile, result_rows, submission_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ROOT / "tests" / "grading_fixtures" / "hidden"
POINTS = {"test_double_float": 2, "test_double_int": 1, "test_count_positive": 1,
          "test_scale_module": 2, "test_scale_rejects_zero": 1}
needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")


def _expected(failing: set[str]) -> float:
    return float(sum(p for t, p in POINTS.items() if t not in failing))


@pytest.mark.slow
def test_correct_wrong_invalid_then_resume_and_regrade(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    # nbval / nbgrader tags and metadata must change nothing
    write_notebook(subs / "alice.ipynb", CORRECT, tags={1: ["raises-exception", "nbval-skip"]},
                   metadata={"kernelspec": {"name": "r"}, "allow_errors": True})
    write_notebook(subs / "o'brien, jr.ipynb", CORRECT)
    for name, cells in WRONG.items():
        write_notebook(subs / f"{name}.ipynb", cells)
    (subs / "broken.ipynb").write_text('{"cells": [')
    summary = grade("00_fake", _find(subs), out, jobs=2, timeout=20, hidden_dir=HIDDEN,
                    progress=False)
    assert "6 submission(s)" in summary and "0 already graded" in summary
    subs_rows = submission_rows(out)
    assert subs_rows["alice"][:2] == (MAX_SCORE, "graded")
    assert subs_rows["o'brien, jr"][:2] == (MAX_SCORE, "graded")
    assert subs_rows["broken"][:2] == (0.0, "invalid")
    for name, failing in WRONG_FAILS.items():
        assert subs_rows[name][0] == _expected(failing), name
    rows = result_rows(out)
    assert all(len(tests) == len(ALL_TESTS) for tests in rows.values())

    import csv

    with open(out / "grades.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["student", "exercise", "score", "max_score", "status"]
    assert ["o'brien, jr", "00_fake", "7", "7", "graded"] in table
    result = json.loads((out / "results" / "alice" / "00_fake.json").read_text())
    assert set(result) >= {"score", "execution_time", "tests"} and result["score"] == MAX_SCORE
    assert all(set(t) >= {"name", "score", "max_score", "status", "output", "visibility"}
               for t in result["tests"])
    hidden_source = (HIDDEN / "test_00_fake.py").read_text()
    for path in (out / "results").rglob("*.json"):
        text = path.read_text()
        assert "expect_tensor(" not in text and "generator=rng" not in text
        assert "student.call" not in text and hidden_source[:200] not in text

    # a re-run skips everything; a changed file is graded again; --regrade redoes all
    before = submission_rows(out)
    summary = grade("00_fake", _find(subs), out, jobs=2, timeout=20, hidden_dir=HIDDEN,
                    progress=False)
    assert "graded 0 submission(s)" in summary and "6 already graded" in summary
    assert submission_rows(out) == before
    write_notebook(subs / "wrong_values.ipynb", CORRECT)
    summary = grade("00_fake", _find(subs), out, jobs=1, timeout=20, hidden_dir=HIDDEN,
                    progress=False)
    assert "graded 1 submission(s)" in summary
    after = submission_rows(out)
    assert after["wrong_values"][0] == MAX_SCORE and after["alice"] == before["alice"]
    summary = grade("00_fake", _find(subs), out, jobs=2, timeout=20, hidden_dir=HIDDEN,
                    progress=False, regrade=True)
    assert "graded 6 submission(s)" in summary


def _find(folder: Path):
    from vitcourse.grading.command import find_submissions

    return find_submissions([str(folder)])


@pytest.mark.slow
@needs_bwrap
def test_hostile_submissions_in_the_sandbox(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    write_notebook(subs / "alice.ipynb", CORRECT)
    write_notebook(subs / "zoe.ipynb", CORRECT)
    write_notebook(subs / "huge_view.ipynb", HUGE_VIEW)
    for name, (cells, _) in HOSTILE.items():
        write_notebook(subs / f"{name}.ipynb", cells)
    grade("00_fake", _find(subs), out, jobs=2, timeout=6, memory_mb=768, hidden_dir=HIDDEN,
          progress=False, sandbox="bwrap")
    check_hostile(out, list(HOSTILE))
    rows = result_rows(out)
    assert "time limit" in rows["infinite_loop_call"]["test_double_float"][2]
    assert "printed more than" in rows["output_flood"]["test_double_float"][2]
    assert "tensor subclass" in rows["tensor_subclass"]["test_double_float"][2]
    assert "exited (status 0)" in rows["os_exit_at_import"]["test_scale_module"][2]


def _outside_tmp() -> Path:
    """A scratch folder outside /tmp (the sandbox's /tmp is private anyway, so hiding is only
    really tested on folders elsewhere)."""
    for base in ("/var/tmp", str(Path.home())):
        try:
            return Path(tempfile.mkdtemp(prefix="vitcourse-grading-test-", dir=base))
        except OSError:
            continue
    pytest.skip("no writable folder outside /tmp")


@pytest.mark.slow
@needs_bwrap
def test_sandbox_hides_the_trusted_side(monkeypatch):
    import shutil

    base = _outside_tmp()
    try:
        subs, out, hidden = base / "subs", base / "out", base / "hidden"
        hidden.mkdir(parents=True)
        shutil.copy(HIDDEN / "test_00_probe.py", hidden)
        write_notebook(subs / "mallory.ipynb", [PROBE])
        write_notebook(subs / "a_leaker.ipynb", [PROBE, LEAKER])  # graded before mallory
        write_notebook(subs / "victim.ipynb", ["secret = 42"])
        (out).mkdir()
        (out / "gradebook.sqlite").write_bytes(b"")  # exists before the student runs
        sqlite3.connect(out / "gradebook.sqlite").close()
        readable = [str(hidden / "test_00_probe.py"), str(out / "gradebook.sqlite"),
                    str(subs / "victim.ipynb"), str(ROOT / "tests" / "test_grading_e2e.py"),
                    str(ROOT / ".git" / "HEAD"), str(ROOT / "pyproject.toml"),
                    str(HIDDEN / "test_00_fake.py"),
                    # what the student graded just before in the same worker left behind
                    "/tmp/leak.txt", "/tmp/work/leak2.txt", "/dev/shm/leak3.txt"]
        writable = [str(hidden / "test_00_probe.py"), str(out / "pwned"), str(subs / "pwned"),
                    str(ROOT / "pwned"), str(ROOT / "vitcourse" / "pwned"), "/pwned",
                    "/tmp/inside-sandbox-only", "scratch-file"]
        monkeypatch.setenv("VITCOURSE_PROBE", json.dumps({"read": readable, "write": writable}))
        monkeypatch.setenv("VITCOURSE_SECRET_TOKEN", "do-not-leak")
        probe_source = (hidden / "test_00_probe.py").read_bytes()
        grade("00_probe", _find(subs), out, jobs=1, timeout=20, hidden_dir=hidden,
              progress=False, sandbox="bwrap", hide_extra=[subs])
        feedback = result_rows(out)["mallory"]["test_probe"][2]
        assert feedback.startswith("PROBE"), feedback
        report = json.loads(feedback[len("PROBE"):])
        for path in readable:
            assert not report["read"][path].startswith("read"), (path, report["read"][path])
        for path in writable[:-2]:
            assert report["write"][path] != "written", (path, report["write"][path])
        assert report["write"]["scratch-file"] == "written"
        assert report["write"]["/tmp/inside-sandbox-only"] == "written"
        assert report["network"] != "connected" and report["interfaces"] == ["lo"]
        assert "VITCOURSE_SECRET_TOKEN" not in report["env"]
        # only bubblewrap's init, the zygote and this child: the leaker's daemon is gone
        assert len(report["pids"]) <= 3, report["pids"]
        assert (hidden / "test_00_probe.py").read_bytes() == probe_source
        for path in (out / "pwned", subs / "pwned", ROOT / "pwned", ROOT / "vitcourse" / "pwned"):
            assert not path.exists()
        assert not Path("/tmp/inside-sandbox-only").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_grader_killed_mid_batch_resumes_without_loss(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    n = 14
    for i in range(n):
        cells = CORRECT if i % 3 else WRONG["wrong_values"]
        # each notebook sleeps a little so that the kill lands mid-batch
        write_notebook(subs / f"s{i:02d}.ipynb", cells + ["import time\ntime.sleep(0.3)"])
    command = [sys.executable, "-m", "vitcourse.cli", "grade", "--exercise", "00_fake", str(subs),
               "--out", str(out), "--jobs", "1", "--hidden-dir", str(HIDDEN), "--no-progress"]
    said = tmp_path / "grader.stderr"
    with said.open("wb") as stderr:
        grader = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if (out / "gradebook.sqlite").exists():
            try:
                if len(submission_rows(out)) >= 3:
                    break
            except sqlite3.Error:
                pass
        assert grader.poll() is None, f"the grader ended before it could be killed:\n{said.read_text()}"
    grader.send_signal(signal.SIGKILL)
    grader.wait()
    first = submission_rows(out)
    assert 3 <= len(first) < n
    rows = result_rows(out)
    for student, (score, _status, _sha, _) in first.items():  # no partial submission
        assert set(rows[student]) == ALL_TESTS
        assert score == sum(p for p, _, _ in rows[student].values())
    assert set(rows) == set(first)

    summary = grade("00_fake", _find(subs), out, jobs=2, timeout=20, hidden_dir=HIDDEN,
                    progress=False)
    assert f"graded {n - len(first)} submission(s)" in summary
    second = submission_rows(out)
    assert len(second) == n
    for student, row in first.items():
        assert second[student] == row  # finished ones were not redone
    for i in range(n):
        assert second[f"s{i:02d}"][0] == (MAX_SCORE if i % 3 else _expected(
            WRONG_FAILS["wrong_values"]))


@pytest.mark.slow
def test_gradescope_bundle_and_run(tmp_path):
    from vitcourse.cli import main

    bundle = tmp_path / "autograder.zip"
    assert main(["grade", "--gradescope-bundle", "00_fake", "--hidden-dir", str(HIDDEN),
                 "--out", str(bundle)]) == 0
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "hidden/test_00_fake.py",
                "vitcourse-src/pyproject.toml", "vitcourse-src/vitcourse/grading/untrusted/worker.py"} <= names
        for script in ("setup.sh", "run_autograder"):
            assert (z.getinfo(script).external_attr >> 16) & 0o111
        run = z.read("run_autograder").decode()
        z.extractall(tmp_path / "source")
    assert "--exercise 00_fake" in run and "/autograder/results/results.json" in run
    # the run script's grading path, pointed at local folders
    submission = tmp_path / "submission"
    write_notebook(submission / "whatever_name.ipynb", CORRECT)
    results = tmp_path / "results" / "results.json"
    args = ["grade", "--exercise", "00_fake", "--hidden-dir", str(tmp_path / "source" / "hidden"),
            "--gradescope-results", str(results), "--no-progress", str(submission)]
    assert main(args) == 0
    data = json.loads(results.read_text())
    validate_gradescope(data)
    assert data["score"] == MAX_SCORE and len(data["tests"]) == len(ALL_TESTS)
    assert all(t["status"] in ("passed", "failed") for t in data["tests"])
    (submission / "whatever_name.ipynb").unlink()
    assert main(args) == 0
    data = json.loads(results.read_text())
    validate_gradescope(data)
    assert data["score"] == 0 and "No .ipynb" in data["output"]


def test_unreadable_or_missing_hidden_tests_stop_the_grader(tmp_path):
    from vitcourse.cli import main

    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "test_bad.py").write_text("import not_a_module_anywhere\n")
    write_notebook(tmp_path / "subs" / "a.ipynb", CORRECT)
    code = main(["grade", "--exercise", "bad", str(tmp_path / "subs"), "--out",
                 str(tmp_path / "out"), "--hidden-dir", str(tmp_path / "hidden")])
    assert code != 0
    assert os.path.exists(tmp_path / "subs" / "a.ipynb")
