"""Read a gradebook the way the tests check it: straight from its SQLite file."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

from .notebooks import ALL_TESTS, HOSTILE, MAX_SCORE


def result_rows(out: Path) -> dict[str, dict[str, tuple]]:
    """student -> test name -> (points, status, feedback)."""
    db = sqlite3.connect(out / "gradebook.sqlite")
    rows: dict[str, dict[str, tuple]] = {}
    try:
        for student, test, points, status, feedback in db.execute(
                "SELECT student, test, points, status, feedback FROM results"):
            rows.setdefault(student, {})[test] = (points, status, feedback)
    finally:
        db.close()
    return rows


def submission_rows(out: Path) -> dict[str, tuple]:
    """student -> (score, status, sha256, finished_at)."""
    db = sqlite3.connect(out / "gradebook.sqlite")
    try:
        return {r[0]: r[1:] for r in db.execute(
            "SELECT student, score, status, sha256, finished_at FROM submissions")}
    finally:
        db.close()


def grades_csv(out: Path) -> list[list[str]]:
    with open(out / "grades.csv", newline="") as f:
        return list(csv.reader(f))


def check_hostile(out: Path, names: list[str], good: tuple[str, ...] = ("alice", "zoe", "huge_view")) -> None:
    """Each hostile submission in ``names`` lost exactly the tests it attacks (and kept the
    others), and the ``good`` ones kept full marks: every attack was contained."""
    rows = result_rows(out)
    subs = submission_rows(out)
    for name in names:
        attacked = HOSTILE[name][1]
        for test in attacked:
            assert rows[name][test][0] == 0.0, (name, test, rows[name][test])
        if name != "kill_parent":  # that one may lose its own later tests with its worker
            for test in ALL_TESTS - attacked:
                assert rows[name][test][1] == "passed", (name, test, rows[name][test])
    for student in good:
        assert subs[student][:2] == (MAX_SCORE, "graded"), (student, rows[student])
