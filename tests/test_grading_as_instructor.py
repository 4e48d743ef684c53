"""The grader run as an instructor runs it: an ordinary user, whose uid the student code shares.

Every test starts ``vitcourse grade`` as that user (see ``grading_fixtures/as_user``: under a
fresh uid when the tests run as root, as CI does), in each sandbox mode:

- ``--sandbox auto`` refuses to start where bubblewrap is missing or cannot create namespaces,
  and says why and what to do; ``--sandbox none`` warns once;
- with bubblewrap (auto), attacks on the trusted side's files find nothing to attack and every
  grade stands (on a machine where bubblewrap cannot run for the user, the same tests check that
  auto refused instead);
- without it (none), the same attacks succeed in changing files, and the grader notices: it stops
  with exit status 3, names what changed, and writes no grades.csv; a daemon left behind to
  rewrite grades.csv after the batch is killed before grades.csv is written;
- the hostile submissions of the sandbox tests are contained in both modes.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from grading_fixtures.as_user import OrdinaryUser  # noqa: E402
from grading_fixtures.notebooks import (  # noqa: E402
    CORRECT,
    HOSTILE,
    HUGE_VIEW,
    daemon_rewrites_exports,
    rewrite_hidden_tests,
    write_notebook,
    zero_every_gradebook,
)
from grading_fixtures.reading import check_hostile, grades_csv, submission_rows  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ROOT / "tests" / "grading_fixtures" / "hidden"
FULL = ["00_fake", "7", "7", "graded"]


@pytest.fixture
def user():
    who = OrdinaryUser.make()
    try:
        yield who
    finally:
        who.remove()


def _grade(user: OrdinaryUser, sandbox: str, cells: dict[str, list[str]], *, jobs: int = 1,
           timeout: float = 20, env: dict[str, str] | None = None):
    """Write the notebooks (student -> cells) and a copy of the hidden tests into the user's
    folder (theirs, as an instructor's checkout is), and grade them there as that user."""
    subs, out, hidden = user.base / "subs", user.base / "out", user.base / "hidden"
    for student, notebook in cells.items():
        write_notebook(subs / f"{student}.ipynb", notebook)
    hidden.mkdir(exist_ok=True)
    shutil.copy(HIDDEN / "test_00_fake.py", hidden)
    user.give(user.base)
    command = [sys.executable, "-m", "vitcourse.cli", "grade", "--exercise", "00_fake", str(subs),
               "--out", str(out), "--hidden-dir", str(hidden), "--jobs", str(jobs), "--timeout",
               str(timeout), "--memory", "768", "--no-progress", "--sandbox", sandbox]
    done = user.run(command, timeout=600, env=env)
    return done, out, hidden


def _report(done) -> str:
    return f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr[-6000:]}"


def _sandboxed(user: OrdinaryUser, done) -> bool:
    """Whether the grader ran with bubblewrap, after checking that where bubblewrap cannot run
    for this user, --sandbox auto refused instead (the tests hold either way)."""
    if user.bubblewrap_usable():
        return True
    assert done.returncode == 2 and "cannot grade here" in done.stderr, _report(done)
    return False


def test_the_grader_runs_as_an_ordinary_user_without_capabilities(user):
    """The harness itself: not root, no capabilities, and this very Python with its packages."""
    probe = ("import os, sys, torch, vitcourse; status = open('/proc/self/status').read(); "
             "print(os.getuid(), status.split('CapEff:')[1].split()[0], sys.base_prefix)")
    done = user.run([sys.executable, "-c", probe], timeout=60)
    uid, capabilities, base_prefix = done.stdout.split()
    assert int(uid) == user.uid != 0, _report(done)
    assert int(capabilities, 16) == 0, _report(done)
    assert base_prefix == sys.base_prefix, _report(done)


# -- no silent downgrade ------------------------------------------------------------------------


def _fake_bwrap(folder: Path) -> Path:
    """A `bwrap` that fails as it does where user namespaces are forbidden."""
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    return folder


@pytest.mark.parametrize("where", ["missing", "forbidden"])
@pytest.mark.parametrize("sandbox", ["auto", "bwrap"])
def test_without_a_usable_bubblewrap_the_grader_refuses(user, where, sandbox):
    bin_dir = _fake_bwrap(user.base / "bin") if where == "forbidden" else user.base / "empty"
    bin_dir.mkdir(exist_ok=True)
    done, out, _ = _grade(user, sandbox, {"alice": CORRECT}, env=user.env(PATH=str(bin_dir)))
    assert done.returncode == 2, _report(done)
    said = done.stderr
    if where == "missing":
        assert "bubblewrap is not installed" in said, said
    else:
        assert "cannot create the namespaces" in said and "uid map: Permission denied" in said, said
    for advice in ("apt-get install bubblewrap", "user namespaces", "--gradescope-bundle",
                   "--sandbox none"):
        assert advice in said, (advice, said)
    assert not out.exists(), "nothing may be written before the grader knows it can grade"


def test_none_says_once_what_student_code_can_do(user):
    done, out, _ = _grade(user, "none", {"alice": CORRECT})
    assert done.returncode == 0, _report(done)
    assert done.stderr.count("WARNING: --sandbox none") == 1, done.stderr
    assert f"as you (uid {user.uid})" in done.stderr, done.stderr
    for power in ("read every file you can read", "use the network", "change or delete"):
        assert power in done.stderr, (power, done.stderr)
    assert "sandbox: none" in done.stdout
    assert grades_csv(out)[1] == ["alice", *FULL]


# -- attacks on the trusted side's files ----------------------------------------------------------


def test_with_bubblewrap_the_attacks_find_nothing_to_change(user):
    roots = user.attack_roots()
    cells = {"alice": CORRECT, "bob": CORRECT,
             "zz_daemon": CORRECT + [daemon_rewrites_exports(roots, "zz_daemon", seconds=30)],
             "zz_hidden": CORRECT + [rewrite_hidden_tests(roots)],
             "zz_mallory": CORRECT + [zero_every_gradebook(roots)]}
    done, out, hidden = _grade(user, "auto", cells)
    if not _sandboxed(user, done):
        return
    assert done.returncode == 0, _report(done)
    assert "sandbox: bwrap" in done.stdout and "WARNING" not in done.stderr
    assert (hidden / "test_00_fake.py").read_bytes() == (HIDDEN / "test_00_fake.py").read_bytes()
    table = grades_csv(out)
    for student in ("alice", "bob", "zz_hidden", "zz_mallory"):
        assert [student, *FULL] in table, (student, table)
    # the daemon's submission killed its own worker: whatever it scored, it changed nothing else
    assert len(table) == 6, table
    time.sleep(1)
    assert grades_csv(out) == table


def test_without_a_sandbox_a_zeroed_gradebook_stops_the_grader(user):
    """The attack of the issue: a submission sets every score of every gradebook it finds to 0."""
    cells = {"alice": CORRECT, "bob": CORRECT,
             "zz_mallory": CORRECT + [zero_every_gradebook(user.attack_roots())]}
    done, out, _ = _grade(user, "none", cells)
    assert done.returncode == 3, _report(done)
    said = done.stderr
    assert "STOPPED" in said and "this run wrote no grades.csv" in said, said
    for victim in ("alice", "bob"):
        assert f"the rows of '{victim}' (00_fake) were changed (was 7/7 graded, now 0/7 graded)" \
            in said, said
    assert "zz_mallory" in said.split("ran since the last check")[1], said
    assert not (out / "grades.csv").exists()
    assert not (out / "results" / "zz_mallory").exists(), "nothing exported after the change"
    # the attack did happen: the gradebook on disk holds the zeros the grader refused to export
    assert submission_rows(out)["alice"][0] == 0


def test_without_a_sandbox_rewritten_hidden_tests_stop_the_grader(user):
    cells = {"alice": CORRECT, "zz_hidden": CORRECT + [rewrite_hidden_tests(user.attack_roots())]}
    done, out, hidden = _grade(user, "none", cells)
    assert done.returncode == 3, _report(done)
    assert f"hidden tests: {hidden.resolve() / 'test_00_fake.py'} was changed" in done.stderr, \
        done.stderr
    assert (hidden / "test_00_fake.py").read_bytes() != (HIDDEN / "test_00_fake.py").read_bytes()
    assert not (out / "grades.csv").exists()


def test_without_a_sandbox_rewritten_results_stop_the_grader(user):
    """A daemon rewrites every results file as it appears: the exports are checked too."""
    cells = {"alice": CORRECT, "zz_daemon": CORRECT + [
        daemon_rewrites_exports(user.attack_roots(), "zz_daemon", suffix=".json", seconds=60)],
             "zzz_last": CORRECT}
    done, out, _ = _grade(user, "none", cells)
    assert done.returncode == 3, _report(done)
    assert f"export {out / 'results' / 'alice' / '00_fake.json'} was changed" in done.stderr, \
        done.stderr
    assert not (out / "grades.csv").exists()
    if user.is_separate:
        assert user.processes() == [], "the daemon outlived the grader"


def test_without_a_sandbox_no_daemon_outlives_the_batch(user):
    """A daemon waits for grades.csv to rewrite it; the grader kills it before writing it."""
    cells = {"alice": CORRECT, "zz_daemon": CORRECT + [
        daemon_rewrites_exports(user.attack_roots(), "zz_daemon", seconds=60)], "zzz_last": CORRECT}
    done, out, _ = _grade(user, "none", cells)
    assert done.returncode == 0, _report(done)
    table = grades_csv(out)
    assert ["alice", *FULL] in table and ["zzz_last", *FULL] in table, table
    time.sleep(2)  # the daemon looks every 0.1 s
    assert grades_csv(out) == table
    if user.is_separate:
        assert user.processes() == [], "the daemon outlived the grader"


# -- the hostile submissions, as an ordinary user -------------------------------------------------


@pytest.mark.parametrize("sandbox", ["auto", "none"])
def test_hostile_submissions_are_contained(user, sandbox):
    cells = {"alice": CORRECT, "zoe": CORRECT, "huge_view": HUGE_VIEW,
             **{name: notebook for name, (notebook, _) in HOSTILE.items()}}
    done, out, _ = _grade(user, sandbox, cells, jobs=2, timeout=6)
    if sandbox == "auto" and not _sandboxed(user, done):
        return
    assert done.returncode == 0, _report(done)
    check_hostile(out, list(HOSTILE))
    results = json.loads((out / "results" / "alice" / "00_fake.json").read_text())
    assert results["score"] == 7
    if user.is_separate:
        assert user.processes() == [], "a hostile submission's process outlived the grader"
