"""The grader's tamper evidence and its choice of sandbox, part by part (no worker needed): the
gradebook notices every change it did not make and exports nothing from a changed file; the
ledger notices changed, added and removed files and exports; hidden tests run from the bytes
that were hashed; no process outlives the batch; the sandbox modes refuse, warn and switch uid
as ``--help`` says."""

from __future__ import annotations

import importlib.util
import os
import py_compile
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vitcourse.grading.trusted import modes
from vitcourse.grading.trusted.errors import GraderCannotRun, Tampered
from vitcourse.grading.trusted.gradebook import Gradebook, write_results_json
from vitcourse.grading.trusted.integrity import Ledger
from vitcourse.grading.trusted.leftovers import Leftovers
from vitcourse.grading.trusted.scoring import SubmissionResult
from vitcourse.grading.trusted.scoring import TestResult as Outcome
from vitcourse.grading.trusted.suites import load_hidden_suite

HIDDEN = Path(__file__).parent / "grading_fixtures" / "hidden"


def _result(student: str, points: float) -> SubmissionResult:
    return SubmissionResult(student, "00_fake", "abc", f"{student}.ipynb", "graded",
                            started_at=1.0, finished_at=2.5, seed=7, tests=[
                                Outcome("test_a", "A works.", points, 2.0,
                                           "passed" if points == 2 else "failed", "")])


@pytest.fixture
def book(tmp_path):
    gradebook = Gradebook(tmp_path / "gradebook.sqlite")
    for student in ("alice", "bob"):
        gradebook.record(_result(student, 2.0))
    yield gradebook
    gradebook.close()


def _attacker(book: Gradebook) -> sqlite3.Connection:
    return sqlite3.connect(book.path, isolation_level=None)


def test_an_untouched_gradebook_has_no_changes_and_exports(book, tmp_path):
    assert book.changes() == []
    assert write_results_json(book, tmp_path, "alice", "00_fake").path.exists()
    assert book.export_csv(tmp_path / "grades.csv").data.decode().splitlines()[1:] == [
        "alice,00_fake,2,2,graded", "bob,00_fake,2,2,graded"]
    reopened = Gradebook(book.path)  # a later run trusts what it finds, then watches it
    try:
        assert reopened.changes() == []
    finally:
        reopened.close()


@pytest.mark.parametrize("attack, victim, says", [
    ("UPDATE submissions SET score = 0 WHERE student = 'alice'", "alice",
     "the rows of 'alice' (00_fake) were changed (was 2/2 graded, now 0/2 graded)"),
    ("UPDATE results SET feedback = 'x' WHERE student = 'bob'", "bob",
     "the rows of 'bob' (00_fake) were changed (was 2/2 graded, now 2/2 graded)"),
    ("DELETE FROM submissions WHERE student = 'bob'", "bob",
     "the rows of 'bob' (00_fake) were changed (was 2/2 graded, now no submission row)"),
    ("DELETE FROM results; DELETE FROM submissions", "alice",
     "the rows of 'alice' (00_fake) were removed (was 2/2 graded)"),
    ("INSERT INTO submissions SELECT 'mallory', exercise, sha256, path, 99, max_score, status, "
     "output, execution_time, seed, started_at, finished_at FROM submissions WHERE student='bob'",
     "mallory", "rows for 'mallory' (00_fake) were added (99/2 graded)"),
    ("CREATE TRIGGER t AFTER INSERT ON submissions BEGIN UPDATE submissions SET score = 0; END",
     "alice", "its tables, indexes or triggers were changed"),
])
def test_every_change_to_the_gradebook_is_named_and_stops_the_exports(book, tmp_path, attack,
                                                                      victim, says):
    """grades.csv needs the whole gradebook as written; a results file needs its own
    submission's rows and the schema as written (the batch checks the whole book before it)."""
    with _attacker(book) as db:
        db.executescript(attack)
    assert any(says in change for change in book.changes()), book.changes()
    with pytest.raises(Tampered, match="gradebook.sqlite"):
        book.export_csv(tmp_path / "grades.csv")
    with pytest.raises(Tampered, match="gradebook.sqlite"):
        write_results_json(book, tmp_path, victim, "00_fake")
    assert not (tmp_path / "grades.csv").exists() and not (tmp_path / "results").exists()


def test_a_replaced_deleted_or_corrupted_gradebook_is_noticed(book, tmp_path):
    """The file is read afresh through its path: the grader's own open connection would still
    see the file it opened."""
    forged = tmp_path / "forged.sqlite"
    original, copy = sqlite3.connect(book.path), sqlite3.connect(forged)
    original.backup(copy)
    copy.execute("UPDATE submissions SET score = 0")
    copy.commit()
    original.close()
    copy.close()
    os.replace(forged, book.path)
    for log in ("-wal", "-shm"):  # the grader's write-ahead log would otherwise cover the forgery
        Path(f"{book.path}{log}").unlink()
    assert any("were changed" in change for change in book.changes()), book.changes()
    book.path.unlink()
    assert "can no longer be read as the gradebook" in book.changes()[0]
    book.path.write_bytes(b"not a database at all" * 100)
    assert "can no longer be read as the gradebook" in book.changes()[0]


def test_rows_the_grader_writes_itself_are_not_changes(book):
    book.record(_result("alice", 0.0))  # a regrade replaces alice's rows
    book.record(_result("carol", 2.0))
    assert book.changes() == []


def test_the_ledger_names_changed_added_and_removed_files_and_exports(book, tmp_path):
    folder = tmp_path / "hidden"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "test_a.py").write_text("A = 1\n")
    (folder / "test_b.py").write_text("B = 1\n")
    ledger = Ledger(book)
    ledger.watch("hidden tests", folder)
    export = tmp_path / "grades.csv"
    export.write_bytes(b"student\n")
    ledger.wrote(export, b"student\n")
    (folder / "__pycache__" / "test_a.cpython.pyc").write_bytes(b"caches are never read")
    ledger.check()
    (folder / "test_a.py").write_text("A = 2\n")
    (folder / "test_b.py").unlink()
    (folder / "test_c.py").write_text("C = 1\n")
    export.write_bytes(b"forged\n")
    with pytest.raises(Tampered) as raised:
        ledger.check()
    assert raised.value.changes == [f"hidden tests: {folder.resolve() / 'test_a.py'} was changed",
                                    f"hidden tests: {folder.resolve() / 'test_b.py'} was removed",
                                    f"hidden tests: {folder.resolve() / 'test_c.py'} was added",
                                    f"export {export} was changed"]


def test_hidden_tests_run_from_the_hashed_source_never_from_a_planted_bytecode_cache(tmp_path):
    import hashlib

    hidden = tmp_path / "hidden"
    hidden.mkdir()
    source = hidden / "test_00_fake.py"
    shutil.copy(HIDDEN / "test_00_fake.py", source)
    # a cache that Python would trust without looking at the source (unchecked hash)
    forged = tmp_path / "forged.py"
    forged.write_text("from vitcourse.grading.hidden import points\nEXERCISE = '00_fake'\n"
                      "@points(99)\ndef test_free(student):\n    '''Free points.'''\n")
    cache = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(forged), cfile=str(cache), dfile=str(source),
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    suite = load_hidden_suite(hidden, "00_fake")
    assert [t.name for t in suite.tests][0] == "test_double_float"
    assert sum(t.points for t in suite.tests) == 7
    assert suite.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name]  # nothing new written


# -- leftovers -----------------------------------------------------------------------------------

DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(120)
        os._exit(0)
    os._exit(0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a child subreaper is Linux's")
def test_a_daemon_started_during_the_batch_comes_back_to_the_grader_and_is_killed():
    from vitcourse.grading.prctl import is_child_subreaper

    assert not is_child_subreaper()
    with Leftovers() as leftovers:
        assert is_child_subreaper()
        subprocess.run([sys.executable, "-c", DAEMON], check=True)  # its parent is gone
        deadline = time.monotonic() + 10
        while not leftovers.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        daemons = leftovers.alive()  # the daemon (and its parent, if it ended after python)
        assert daemons, "the daemon was not reparented to the grader"
        assert leftovers.kill_all() == []
        assert not any(os.path.exists(f"/proc/{pid}") for pid in daemons)
    assert not is_child_subreaper()  # put back


# -- choosing the sandbox --------------------------------------------------------------------------


def test_auto_and_bwrap_refuse_where_bubblewrap_cannot_run(monkeypatch):
    from vitcourse.grading.trusted import sandbox

    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap is not installed (no `bwrap` on PATH)")
    for requested in ("auto", "bwrap"):
        with pytest.raises(GraderCannotRun) as refused:
            modes.choose_sandbox(requested)
        said = str(refused.value)
        assert said.startswith(f"--sandbox {requested}: cannot grade here: bubblewrap is not installed")
        assert "--sandbox none" in said and "--gradescope-bundle" in said
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: None)
    assert modes.choose_sandbox("auto") == modes.Sandbox("bwrap")
    with pytest.raises(GraderCannotRun, match="--sandbox: expected one of auto, bwrap, none, got 'off'"):
        modes.choose_sandbox("off")


def test_none_as_root_runs_student_code_as_nobody_or_refuses(monkeypatch):
    from vitcourse.grading.trusted import sandbox

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(sandbox, "unreadable_by_nobody", lambda: None)
    chosen = modes.choose_sandbox("none")
    assert chosen.name == "none" and chosen.run_as == modes.NOBODY == 65534
    assert "as the unprivileged user nobody" in chosen.warning
    monkeypatch.setattr(sandbox, "unreadable_by_nobody", lambda: "/root/python/bin/python3")
    with pytest.raises(GraderCannotRun, match="student code would run as root.*/root/python/bin/python3"):
        modes.choose_sandbox("none")


def test_none_as_an_ordinary_user_warns_what_student_code_can_do(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    chosen = modes.choose_sandbox("none")
    assert chosen.run_as is None
    for words in ("WITHOUT a sandbox", "as you (uid 1000)", "read every file you can read",
                  "use the network", "change or delete any file you can write",
                  "only for submissions you trust"):
        assert words in chosen.warning, words


def test_the_real_probe_names_its_reason():
    from vitcourse.grading.trusted.sandbox import bwrap_problem

    problem = bwrap_problem()
    assert problem is None or "bubblewrap" in problem or "bwrap" in problem


def test_grade_help_says_what_each_mode_protects_against(capsys):
    from vitcourse.cli import main

    with pytest.raises(SystemExit):
        main(["grade", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("auto, bwrap Student code runs in bubblewrap: no network",
                  "the hidden tests, the gradebook and the other submissions out of sight",
                  "the grader refuses to start and says why and what to do",
                  "none No sandbox, for submissions you trust",
                  "stops (exit status 3) and exports nothing more",
                  "No process a submission starts outlives the batch"):
        assert words in text, words


def test_grade_help_does_not_import_torch():
    probe = ("import sys\nfrom vitcourse.cli import main\ntry:\n    main(['grade', '--help'])\n"
             "except SystemExit:\n    pass\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
