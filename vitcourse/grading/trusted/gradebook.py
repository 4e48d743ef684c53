"""The gradebook: SQLite, one transaction per submission, and its CSV and results.json exports.

Tables (WAL mode, so a reader never sees half a submission):

- ``submissions``: one row per (student, exercise): score, max, status, sha256 of the file,
  the student-facing output, the run's seed, timestamps;
- ``results``: one row per (student, exercise, test): points, max points, status, feedback,
  the submission's sha256, timestamps, and ``detail`` (instructor-only: hidden-test tracebacks).

A submission's rows are replaced in a single transaction, so a grader killed mid-batch leaves
either the complete old rows or the complete new ones. Re-running skips a submission whose stored
sha256 matches the file (unless ``regrade``).

The gradebook also knows, in memory, what the file must hold: a digest of every submission's rows
as found when it was opened, updated with every submission it records (computed from the values
it writes, never read back). ``changes()`` reads the file afresh, through its path, and names every
difference: rows changed, added or removed, a schema changed (a trigger added...), a file replaced
or no longer a database. The exports read the file the same way and write only what they have
just verified, or raise ``Tampered``: grades.csv the whole file, a results file its submission's
rows and the schema (the batch checks the whole file right before).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.request import pathname2url

from .errors import Tampered
from .scoring import SubmissionResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    student TEXT NOT NULL, exercise TEXT NOT NULL, sha256 TEXT NOT NULL, path TEXT,
    score REAL NOT NULL, max_score REAL NOT NULL, status TEXT NOT NULL, output TEXT,
    execution_time REAL, seed INTEGER, started_at TEXT, finished_at TEXT,
    PRIMARY KEY (student, exercise));
CREATE TABLE IF NOT EXISTS results (
    student TEXT NOT NULL, exercise TEXT NOT NULL, test TEXT NOT NULL, position INTEGER,
    title TEXT, points REAL NOT NULL, max_points REAL NOT NULL, status TEXT NOT NULL,
    feedback TEXT, detail TEXT, sha256 TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    PRIMARY KEY (student, exercise, test));
"""
# Gradescope renders "simple_format" (its default for the top-level output) as HTML; the output
# holds what the student's code printed, so every text is declared plain text.
PLAIN_TEXT = {"output_format": "text", "test_output_format": "text", "test_name_format": "text"}

Key = tuple[str, str]  # (student, exercise)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Entry:
    """What the gradebook holds for one submission: a digest of all its rows, and its score
    in words (for messages)."""

    digest: str
    score: str


@dataclass(frozen=True)
class Snapshot:
    """The gradebook's content, read in one transaction."""

    schema: str
    entries: dict[Key, Entry]
    submissions: dict[Key, tuple]
    results: dict[Key, list[tuple]]


@dataclass(frozen=True)
class Export:
    """A file an export wrote, with the exact bytes it wrote."""

    path: Path
    data: bytes


def _entry(submission: tuple | None, results: list[tuple]) -> Entry:
    """``submission`` is a submissions row (None if missing), ``results`` its results rows; the
    digest is the same whether the rows come from the values written or from the file, because
    every value is written with its column's type (REAL as float, INTEGER as int, TEXT as str)."""
    ordered = sorted(results, key=lambda r: (r[3] if isinstance(r[3], int) else -1, str(r[2])))
    digest = hashlib.sha256(repr((submission, ordered)).encode("utf-8", "backslashreplace"))
    if submission is None or len(submission) < 7:
        score = "no submission row"
    else:  # the values may be anything a forger wrote
        score = f"{_points(submission[4])}/{_points(submission[5])} {str(submission[6])[:40]}"
    return Entry(digest.hexdigest(), score)


def _points(value: object) -> str:
    return _number(value) if type(value) in (int, float) else repr(value)[:40]


def _read(db: sqlite3.Connection, only: Key | None = None) -> Snapshot:
    """Everything in the gradebook, or ``only`` one submission's rows (and the schema)."""
    where, values = ("WHERE student=? AND exercise=?", only) if only else ("", ())
    with db:  # one read transaction: a consistent picture
        db.execute("BEGIN")
        schema = sorted(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(),
                        key=repr)
        submission_rows = db.execute(f"SELECT * FROM submissions {where}", values).fetchall()
        result_rows = db.execute(f"SELECT * FROM results {where}", values).fetchall()
    submissions = {(row[0], row[1]): row for row in submission_rows}
    results: dict[Key, list[tuple]] = {}
    for row in result_rows:
        results.setdefault((row[0], row[1]), []).append(row)
    entries = {key: _entry(submissions.get(key), results.get(key, []))
               for key in set(submissions) | set(results)}
    return Snapshot(hashlib.sha256(repr(schema).encode()).hexdigest(), entries, submissions, results)


def _differences(expected: Snapshot, found: Snapshot, only: Key | None = None) -> list[str]:
    changes = []
    if found.schema != expected.schema:
        changes.append("its tables, indexes or triggers were changed")
    for key in [only] if only else sorted(set(expected.entries) | set(found.entries)):
        student, exercise = key
        was, now = expected.entries.get(key), found.entries.get(key)
        if was == now:
            continue
        if now is None:
            changes.append(f"the rows of {student!r} ({exercise}) were removed (was {was.score})")
        elif was is None:
            changes.append(f"rows for {student!r} ({exercise}) were added ({now.score})")
        else:
            changes.append(f"the rows of {student!r} ({exercise}) were changed "
                           f"(was {was.score}, now {now.score})")
    return changes


class Gradebook:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.executescript(SCHEMA)
        self._expected = _read(self.db)  # what the file holds now, and must go on holding

    def close(self) -> None:
        self.db.close()

    def finished_hash(self, student: str, exercise: str) -> str | None:
        row = self.db.execute("SELECT sha256 FROM submissions WHERE student=? AND exercise=?",
                              (student, exercise)).fetchone()
        return row[0] if row else None

    def record(self, result: SubmissionResult) -> None:
        """Replace this submission's rows in one transaction."""
        started, finished = _iso(result.started_at), _iso(result.finished_at)
        key = (result.student, result.exercise)
        results = [(result.student, result.exercise, t.name, i, t.title, float(t.points),
                    float(t.max_points), t.status, t.feedback, t.detail, result.sha256, started,
                    finished) for i, t in enumerate(result.tests)]
        submission = (result.student, result.exercise, result.sha256, result.path,
                      float(result.score), float(result.max_score), result.status, result.output,
                      float(result.finished_at - result.started_at), int(result.seed), started,
                      finished)
        with self.db:  # sqlite3 context manager: BEGIN ... COMMIT, or ROLLBACK on error
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM results WHERE student=? AND exercise=?", key)
            self.db.execute("DELETE FROM submissions WHERE student=? AND exercise=?", key)
            self.db.executemany("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", results)
            self.db.execute("INSERT INTO submissions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", submission)
        self._expected.entries[key] = _entry(submission, results)
        self._expected.submissions[key] = submission
        self._expected.results[key] = results

    def changes(self) -> list[str]:
        """Every difference between the file at ``path`` and what this gradebook wrote there."""
        try:
            found = self._read_afresh()
        except sqlite3.Error as exc:
            return [f"{self.path} can no longer be read as the gradebook ({exc})"]
        return [f"{self.path}: {change}" for change in _differences(self._expected, found)]

    def _read_afresh(self, only: Key | None = None) -> Snapshot:
        """The file's content through a new read-only connection: whatever is at ``path`` now,
        even if the file this object has open was replaced."""
        uri = f"file:{pathname2url(str(self.path.resolve()))}?mode=ro"
        db = sqlite3.connect(uri, uri=True)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            return _read(db, only)
        finally:
            db.close()

    def _verified(self, only: Key | None = None) -> Snapshot:
        """The file's content (or ``only`` one submission's), checked against what this gradebook
        wrote (``Tampered`` if it differs)."""
        try:
            found = self._read_afresh(only)
        except sqlite3.Error as exc:
            raise Tampered([f"{self.path} can no longer be read as the gradebook ({exc})"]) from None
        changes = _differences(self._expected, found, only)
        if changes:
            raise Tampered([f"{self.path}: {change}" for change in changes])
        return found

    def export_csv(self, path: Path) -> Export:
        """grades.csv over every submission in the gradebook, from verified rows."""
        found = self._verified()
        rows = sorted(((row[0], row[1], row[4], row[5], row[6]) for row in found.submissions.values()),
                      key=lambda r: (r[1], r[0]))
        buffer = io.StringIO(newline="")
        _write_csv(buffer, rows)
        return _atomic_write(path, buffer.getvalue().encode("utf-8"))

    def results_json(self, student: str, exercise: str) -> dict:
        """Gradescope's results.json for one submission (no hidden-test source, no details),
        from its verified rows."""
        key = (student, exercise)
        found = self._verified(only=key)
        if key not in found.submissions:
            raise KeyError(key)
        sub = found.submissions[key]
        tests = sorted(found.results.get(key, []), key=lambda r: r[3])
        return gradescope_results(
            score=sub[4], output=sub[7] or "", execution_time=sub[8] or 0.0,
            tests=[{"name": t[4], "number": str(t[3] + 1), "score": t[5], "max_score": t[6],
                    "status": "passed" if t[7] == "passed" else "failed",
                    "output": t[8] or ("passed" if t[7] == "passed" else ""),
                    "visibility": "visible"} for t in tests])


def gradescope_results(score: float, output: str, tests: list[dict],
                       execution_time: float = 0.0) -> dict:
    """A results.json document in Gradescope's format: visible to the student, every text plain,
    the grader's own log (stdout) for the instructor only."""
    return {"score": score, "execution_time": round(execution_time, 3), "output": output,
            **PLAIN_TEXT, "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def _write_csv(f, rows) -> None:
    writer = csv.writer(f)
    writer.writerow(["student", "exercise", "score", "max_score", "status"])
    for student, exercise, score, max_score, status in rows:
        writer.writerow([student, exercise, _number(score), _number(max_score), status])


def _number(value: float) -> str:
    """Points as written by hand: 7, 2.5, 0.333333 (never 1e+06 notation)."""
    value = round(float(value), 6)
    return str(int(value)) if value.is_integer() else repr(value)


def _atomic_write(path: Path, data: bytes) -> Export:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return Export(path, data)


def safe_dirname(student: str) -> str:
    """A directory name for a student id (ids are file stems: they may hold anything)."""
    cleaned = re.sub(r"[^A-Za-z0-9._@+-]", "_", student).strip(".") or "_"
    if cleaned != student:
        cleaned += "-" + hashlib.sha256(student.encode()).hexdigest()[:8]
    return cleaned


def write_results_json(book: Gradebook, out_dir: Path, student: str, exercise: str) -> Export:
    """``out_dir/results/<student>/<exercise>.json`` from the gradebook's verified rows."""
    path = Path(out_dir) / "results" / safe_dirname(student) / f"{exercise}.json"
    data = json.dumps(book.results_json(student, exercise), indent=2).encode("utf-8")
    return _atomic_write(path, data)
