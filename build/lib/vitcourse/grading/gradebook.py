"""The gradebook: SQLite, one transaction per submission, and its CSV and results.json exports.

Tables (WAL mode, so a reader never sees half a submission):

- ``submissions``: one row per (student, exercise): score, max, status, sha256 of the file,
  the student-facing output, the run's seed, timestamps;
- ``results``: one row per (student, exercise, test): points, max points, status, feedback,
  the submission's sha256, timestamps, and ``detail`` (instructor-only: hidden-test tracebacks).

A submission's rows are replaced in a single transaction, so a grader killed mid-batch leaves
either the complete old rows or the complete new ones. Re-running skips a submission whose stored
sha256 matches the file (unless ``regrade``).
"""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .runner import SubmissionResult

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


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


class Gradebook:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.executescript(SCHEMA)

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
        with self.db:  # sqlite3 context manager: BEGIN ... COMMIT, or ROLLBACK on error
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM results WHERE student=? AND exercise=?", key)
            self.db.execute("DELETE FROM submissions WHERE student=? AND exercise=?", key)
            self.db.executemany(
                "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(result.student, result.exercise, t.name, i, t.title, t.points, t.max_points,
                  t.status, t.feedback, t.detail, result.sha256, started, finished)
                 for i, t in enumerate(result.tests)])
            self.db.execute(
                "INSERT INTO submissions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (result.student, result.exercise, result.sha256, result.path, result.score,
                 result.max_score, result.status, result.output,
                 result.finished_at - result.started_at, result.seed, started, finished))

    def export_csv(self, path: Path) -> int:
        """grades.csv over every submission in the gradebook; returns the number of rows."""
        rows = self.db.execute("SELECT student, exercise, score, max_score, status FROM submissions "
                               "ORDER BY exercise, student").fetchall()
        _atomic_write(path, lambda f: _write_csv(f, rows), newline="")
        return len(rows)

    def results_json(self, student: str, exercise: str) -> dict:
        """Gradescope's results.json for one submission (no hidden-test source, no details)."""
        sub = self.db.execute("SELECT score, execution_time, output, status FROM submissions "
                              "WHERE student=? AND exercise=?", (student, exercise)).fetchone()
        if sub is None:
            raise KeyError((student, exercise))
        tests = self.db.execute("SELECT title, points, max_points, status, feedback, position "
                                "FROM results WHERE student=? AND exercise=? ORDER BY position",
                                (student, exercise)).fetchall()
        return {
            "score": sub[0],
            "execution_time": round(sub[1] or 0.0, 3),
            "output": sub[2] or "",
            "visibility": "visible",
            "tests": [{"name": title, "number": str(pos + 1), "score": points,
                       "max_score": max_points,
                       "status": "passed" if status == "passed" else "failed",
                       "output": feedback or ("passed" if status == "passed" else ""),
                       "visibility": "visible"}
                      for title, points, max_points, status, feedback, pos in tests],
        }


def _write_csv(f, rows) -> None:
    writer = csv.writer(f)
    writer.writerow(["student", "exercise", "score", "max_score", "status"])
    for student, exercise, score, max_score, status in rows:
        writer.writerow([student, exercise, _number(score), _number(max_score), status])


def _number(value: float) -> str:
    """Points as written by hand: 7, 2.5, 0.333333 (never 1e+06 notation)."""
    value = round(float(value), 6)
    return str(int(value)) if value.is_integer() else repr(value)


def _atomic_write(path: Path, write, newline: str | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def safe_dirname(student: str) -> str:
    """A directory name for a student id (ids are file stems: they may hold anything)."""
    cleaned = re.sub(r"[^A-Za-z0-9._@+-]", "_", student).strip(".") or "_"
    if cleaned != student:
        import hashlib

        cleaned += "-" + hashlib.sha256(student.encode()).hexdigest()[:8]
    return cleaned


def write_results_json(book: Gradebook, out_dir: Path, student: str, exercise: str) -> Path:
    path = Path(out_dir) / "results" / safe_dirname(student) / f"{exercise}.json"
    data = book.results_json(student, exercise)
    _atomic_write(path, lambda f: json.dump(data, f, indent=2))
    return path
