"""A batch: grade submissions into an output folder, with the sandbox on and the disk checked.

    summary = grade("01_patches", [("alice", Path("alice.ipynb")), ...], Path("grades"))

In order:

1. choose the sandbox (``modes``): refuse to start, or warn once, before anything is written;
2. load the hidden tests, and remember the bytes of the hidden-test folder and of the package
   (``integrity.Ledger``); open the gradebook, which remembers what it holds;
3. grade with one worker template per job (``sandbox.Zygote``), while the grader collects every
   process they leave behind (``leftovers``);
4. for every finished submission: check that nothing trusted changed, record it, export its
   results.json from the verified rows;
5. at the end: stop the workers, kill what they left, check once more, and only then write
   grades.csv, and check it too.

Any change the grader did not make stops the batch (``Tampered``) with nothing more exported.
"""

from __future__ import annotations

import hashlib
import os
import queue
import secrets
import sqlite3
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .trusted.errors import GraderCannotRun, Tampered
from .trusted.gradebook import Gradebook, write_results_json
from .trusted.integrity import Ledger
from .trusted.leftovers import Leftovers
from .trusted.modes import Sandbox, choose_sandbox
from .trusted.sandbox import Limits, WorkerConfig, Zygote, hiding_args
from .trusted.scoring import SubmissionResult, grade_submission
from .trusted.suites import HiddenSuite, load_hidden_suite

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the vitcourse package: trusted code too


def say(message: str) -> None:
    """A message for the instructor, on stderr."""
    print(f"vitcourse grade: {message}", file=sys.stderr)


def grade(exercise: str, submissions: list[tuple[str, Path]], out: Path, *, jobs: int = 2,
          timeout: float = 60.0, memory_mb: int = 2048, regrade: bool = False,
          hidden_dir: Path = Path("tests/hidden"), seed: int | None = None, sandbox: str = "auto",
          progress: bool = True, hide_extra: list[Path] | None = None) -> str:
    """Grade ``submissions`` ((student id, notebook path) pairs) into ``out``; returns a one-line
    summary. Raises GraderCannotRun when the grader cannot run, and its subclass Tampered when
    something it trusts changed behind its back (grades.csv is then not written)."""
    mode = choose_sandbox(sandbox)
    if mode.warning:
        say(mode.warning)
    suite = load_hidden_suite(Path(hidden_dir), exercise)
    try:
        out.mkdir(parents=True, exist_ok=True)
        book = Gradebook(out / "gradebook.sqlite")
    except (OSError, sqlite3.Error) as exc:
        raise GraderCannotRun(f"cannot write the gradebook in {out}: {exc}") from None
    try:
        ledger = _ledger(book, suite, mode)
        config = _worker_config(mode, out, submissions, Path(hidden_dir), hide_extra or [],
                                Limits(timeout=timeout, memory_mb=memory_mb))
        todo = [(student, path) for student, path in submissions
                if regrade or not _finished(book, student, exercise, path)]
        seed = secrets.randbits(62) if seed is None else int(seed)
        started = time.monotonic()
        batch = _Batch(suite, config, seed, book, ledger, out)
        counts, used_reference = batch.run(todo, jobs, progress)
        ledger.check()
        grades = book.export_csv(out / "grades.csv")
        ledger.wrote(grades.path, grades.data)
        try:
            ledger.check()  # no process of a submission is left: this is the last word
        except Tampered:
            grades.path.unlink(missing_ok=True)  # never leave a changed grades.csv to upload
            raise
    finally:
        book.close()
    elapsed = time.monotonic() - started
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing new"
    references = (f"; {used_reference} called the package's reference answer (see their feedback)"
                  if used_reference else "")
    as_whom = " (student code as nobody)" if mode.run_as is not None else ""
    return (f"graded {sum(counts.values())} submission(s) of {exercise} in {elapsed:.1f} s "
            f"({status}){references}; {len(submissions) - len(todo)} already graded; "
            f"sandbox: {mode.name}{as_whom}; seed {seed}; results in {out}")


def _finished(book: Gradebook, student: str, exercise: str, path: Path) -> bool:
    """Whether the gradebook already holds this very file's grades."""
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return False  # graded (as unreadable) again
    return book.finished_hash(student, exercise) == digest


def _ledger(book: Gradebook, suite: HiddenSuite, mode: Sandbox) -> Ledger:
    """What the grader trusts: the gradebook, the hidden-test folder (the file it loaded must be
    the one it hashed) and, without a sandbox, the package's own source. (Inside bubblewrap the
    whole file system is read-only to student code; the package is not watched there, so that
    editing it while a batch runs is not taken for an attack.)"""
    ledger = Ledger(book)
    hidden = ledger.watch("hidden tests", suite.path.parent)
    if hidden.get(Path(suite.path.name)) != suite.sha256:
        raise Tampered([f"hidden tests: {suite.path} changed while it was being loaded"])
    if mode.name == "none":
        ledger.watch("the vitcourse package", PACKAGE_DIR)
    return ledger


def _worker_config(mode: Sandbox, out: Path, submissions: list[tuple[str, Path]],
                   hidden_dir: Path, hide_extra: list[Path], limits: Limits) -> WorkerConfig:
    """The sandbox hides the hidden tests, the output, the home folders, the repository around an
    editable install, the submissions' folders and whatever else the caller names (the Python
    installation below any of them is bound back, read-only)."""
    cwd = Path.cwd()
    hide = [hidden_dir, out, cwd / "tests", cwd / "solutions", cwd / ".git",
            Path(os.path.expanduser("~")), Path("/home"), Path("/root"), *hide_extra]
    if (PACKAGE_DIR.parent / "pyproject.toml").exists():  # an editable install: hide the checkout
        hide.append(PACKAGE_DIR.parent)
    hide += [path.parent for _, path in submissions]
    config = WorkerConfig(mode.name, hide=[p.resolve() for p in hide], limits=limits,
                          run_as=mode.run_as)
    if mode.name == "bwrap":
        for warning in hiding_args(config.hide)[1]:
            say(f"warning: {warning}")
    return config


@dataclass
class _Batch:
    """Job slots grading in threads; the calling thread records and exports their results."""

    suite: HiddenSuite
    config: WorkerConfig
    seed: int
    book: Gradebook
    ledger: Ledger
    out: Path

    def run(self, todo: list[tuple[str, Path]], jobs: int, progress: bool) -> tuple[Counter, int]:
        """Grade ``todo``; returns (count per status, how many called a reference answer)."""
        from tqdm.auto import tqdm

        work: queue.Queue = queue.Queue()
        for item in todo:
            work.put(item)
        done: queue.Queue = queue.Queue()
        stop = threading.Event()
        fatal: list[BaseException] = []
        self._lock = threading.Lock()
        self._running: dict[int, str] = {}  # slot -> the student being graded there
        self._since_check: set[str] = set()  # whose code ran since the last clean check
        zygotes = [Zygote(self.config, slot=i) for i in range(min(max(1, jobs), len(todo)))]

        def slot(index: int) -> None:
            zygote = zygotes[index]
            try:
                zygote.start()
                while not stop.is_set():
                    try:
                        student, path = work.get_nowait()
                    except queue.Empty:
                        return
                    with self._lock:
                        self._running[index] = student
                        self._since_check.add(student)
                    done.put(grade_submission(student, path, self.suite, zygote, self.seed))
                    with self._lock:
                        self._running.pop(index, None)
            except BaseException as exc:  # noqa: B036 - reported by the calling thread
                if not stop.is_set():
                    fatal.append(exc)
                stop.set()
            finally:
                zygote.close()
                done.put(None)

        counts: Counter = Counter()
        used_reference = 0
        threads = [threading.Thread(target=slot, args=(i,), daemon=True) for i in range(len(zygotes))]
        bar = tqdm(total=len(todo), unit="notebook", desc=f"grading {self.suite.exercise}",
                   disable=not progress)
        with Leftovers() as leftovers:
            try:
                for thread in threads:
                    thread.start()
                running = len(threads)
                while running:
                    result = done.get()
                    if result is None:
                        running -= 1
                        continue
                    self._export(result)
                    counts[result.status] += 1
                    used_reference += result.used_reference
                    bar.update(1)
            finally:
                bar.close()
                stop.set()
                for zygote in zygotes:  # a slot still grading sees its worker gone and ends
                    zygote.close()
                leftovers.kill_all()  # orphans of killed workers may hold a slot's channel open
                for thread in threads:
                    thread.join(timeout=30)
                survivors = leftovers.kill_all()
        if survivors:
            raise GraderCannotRun(f"processes left by student code could not be stopped (pids "
                                  f"{', '.join(map(str, survivors))}); grades.csv was not written")
        if fatal:
            raise GraderCannotRun(f"the grading worker failed: {fatal[0]}")
        return counts, used_reference

    def _export(self, result: SubmissionResult) -> None:
        """Check, record, export one submission: nothing is exported from a changed gradebook."""
        try:
            self.ledger.check()
            self.book.record(result)  # one transaction per submission, as soon as it finishes
            export = write_results_json(self.book, self.out, result.student, result.exercise)
            self.ledger.wrote(export.path, export.data)
        except Tampered as exc:
            raise Tampered(exc.changes, self._suspects()) from None
        except sqlite3.Error as exc:  # the file is no longer a database the grader can write
            raise Tampered(self.ledger.changes() or [f"the gradebook cannot be written: {exc}"],
                           self._suspects()) from None
        with self._lock:
            self._since_check = set(self._running.values())  # everything before is verified

    def _suspects(self) -> list[str]:
        with self._lock:
            return sorted(self._since_check | set(self._running.values()))
