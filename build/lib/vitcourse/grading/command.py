"""``vitcourse grade``: grade a folder of notebooks, or build the Gradescope autograder zip.

    vitcourse grade --exercise 01_patches submissions/ --out grades/ [--jobs 2]
    vitcourse grade --gradescope-bundle 01_patches [--out autograder.zip]

Exit status 0 when grading ran (whatever the scores); non-zero with a message on stderr only when
the grader itself cannot run (unknown exercise, broken hidden tests, unreadable paths...).
"""

from __future__ import annotations

import argparse
import queue
import secrets
import sys
import threading
import time
from pathlib import Path

DEFAULT_JOBS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submissions", nargs="*", help=".ipynb files or folders of them "
                        "(the student id is the file name without .ipynb)")
    parser.add_argument("--exercise", help="exercise id, e.g. 01_patches (required for grading)")
    parser.add_argument("--out", help="output folder (grading) or zip file (--gradescope-bundle)")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                        help=f"submissions graded in parallel (default {DEFAULT_JOBS})")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="wall-clock seconds for running a notebook's cells, and for each "
                        "call of a hidden test (default 60)")
    parser.add_argument("--memory", type=int, default=2048,
                        help="memory limit in MB for a submission's process (default 2048)")
    parser.add_argument("--regrade", action="store_true",
                        help="grade again submissions already in the gradebook with the same file")
    parser.add_argument("--hidden-dir", default=None,
                        help="folder of hidden tests (default: tests/hidden under the current folder)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the hidden tests' random inputs (default: fresh per run)")
    parser.add_argument("--sandbox", choices=("auto", "bwrap", "none"), default="auto",
                        help="auto: bubblewrap when it works here, else resource limits only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--gradescope-bundle", metavar="ID",
                        help="build Gradescope's autograder zip for exercise ID instead of grading")
    parser.add_argument("--gradescope-results", metavar="PATH", help=argparse.SUPPRESS)


def _fail(message: str) -> int:
    print(f"vitcourse grade: error: {message}", file=sys.stderr)
    return 2


def find_submissions(paths: list[str]) -> list[tuple[str, Path]]:
    """(student id, path) for each .ipynb given or found (recursively) in a given folder."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb")
                            if ".ipynb_checkpoints" not in p.parts and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"submission path {raw!r} does not exist")
    seen: dict[str, Path] = {}
    out = []
    for path in found:
        student = path.name[: -len(".ipynb")] if path.name.endswith(".ipynb") else path.stem
        if student in seen and seen[student].resolve() != path.resolve():
            raise ValueError(f"two submissions for student {student!r}: {seen[student]} and {path}")
        if student not in seen:
            seen[student] = path
            out.append((student, path))
    return out


def main(args: argparse.Namespace) -> int:
    if args.gradescope_bundle:
        if args.exercise or args.submissions:
            return _fail("--gradescope-bundle ID takes no --exercise and no submissions")
        from .gradescope import build_bundle

        try:
            path = build_bundle(args.gradescope_bundle, hidden_dir=_hidden_dir(args),
                                out=Path(args.out) if args.out else None)
        except (ValueError, OSError) as exc:
            return _fail(str(exc))
        print(f"wrote {path}")
        return 0
    if not args.exercise:
        return _fail("--exercise ID is required to grade (or use --gradescope-bundle ID)")
    if args.gradescope_results:
        from .gradescope import grade_for_gradescope

        return grade_for_gradescope(args)
    if not args.submissions:
        return _fail("no submissions given: name .ipynb files or folders of them")
    if not args.out:
        return _fail("--out DIR is required")
    if args.jobs < 1 or args.timeout <= 0 or args.memory < 64:
        return _fail(f"--jobs must be >= 1 (got {args.jobs}), --timeout > 0 (got {args.timeout}), "
                     f"--memory >= 64 MB (got {args.memory})")
    try:
        submissions = find_submissions(args.submissions)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    out = Path(args.out)
    try:
        summary = grade(args.exercise, submissions, out, jobs=args.jobs, timeout=args.timeout,
                        memory_mb=args.memory, regrade=args.regrade, hidden_dir=_hidden_dir(args),
                        seed=args.seed, sandbox=args.sandbox, progress=not args.no_progress,
                        hide_extra=[Path(p) for p in args.submissions])
    except GraderCannotRun as exc:
        return _fail(str(exc))
    print(summary)
    return 0


def _hidden_dir(args: argparse.Namespace) -> Path:
    return Path(args.hidden_dir) if args.hidden_dir else Path.cwd() / "tests" / "hidden"


class GraderCannotRun(Exception):
    pass


def _say_once(message: str) -> None:
    print(f"vitcourse grade: {message}", file=sys.stderr)


def grade(exercise: str, submissions: list[tuple[str, Path]], out: Path, *, jobs: int = 2,
          timeout: float = 60.0, memory_mb: int = 2048, regrade: bool = False,
          hidden_dir: Path = Path("tests/hidden"), seed: int | None = None, sandbox: str = "auto",
          progress: bool = True, hide_extra: list[Path] | None = None) -> str:
    """Grade ``submissions`` into ``out``; returns a one-line summary. Raises GraderCannotRun."""
    from tqdm.auto import tqdm

    from .gradebook import Gradebook, write_results_json
    from .runner import GraderError, grade_submission, load_hidden_suite
    from .sandbox import Limits, WorkerConfig, Zygote, bwrap_works

    try:
        suite = load_hidden_suite(Path(hidden_dir), exercise)
    except GraderError as exc:
        raise GraderCannotRun(str(exc)) from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        book = Gradebook(out / "gradebook.sqlite")
    except Exception as exc:
        raise GraderCannotRun(f"cannot write the gradebook in {out}: {exc}") from None

    if sandbox == "auto":
        sandbox = "bwrap" if bwrap_works() else "none"
        if sandbox == "none":
            _say_once("bubblewrap is not usable here: grading with resource limits only "
                      "(student code can read files this user can read)")
    elif sandbox == "bwrap" and not bwrap_works():
        raise GraderCannotRun("--sandbox bwrap: bubblewrap is missing or cannot create namespaces")
    hide = [Path(hidden_dir), out, Path.cwd() / "tests", Path.cwd() / "solutions",
            Path.cwd() / ".git", *(hide_extra or [])]
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").exists():  # an editable install: hide the repository around it
        hide.append(repo)
    hide += [p.parent for _, p in submissions]
    config = WorkerConfig(sandbox, hide=[p.resolve() for p in hide],
                          limits=Limits(timeout=timeout, memory_mb=memory_mb))
    if sandbox == "bwrap":
        from .sandbox import hiding_args

        for warning in hiding_args(config.hide)[1]:
            _say_once(f"warning: {warning}")

    seed = secrets.randbits(62) if seed is None else int(seed)
    todo, skipped = [], 0
    for student, path in submissions:
        if not regrade:
            try:
                digest = _sha256(path)
            except OSError:
                digest = None
            if digest is not None and book.finished_hash(student, exercise) == digest:
                skipped += 1
                continue
        todo.append((student, path))

    work: queue.Queue = queue.Queue()
    for item in todo:
        work.put(item)
    done: queue.Queue = queue.Queue()
    fatal: list[BaseException] = []
    stop = threading.Event()
    jobs = max(1, min(jobs, len(todo)))

    def slot(index: int) -> None:
        zygote = Zygote(config, slot=index)
        try:
            zygote.start()
            while not stop.is_set():
                try:
                    student, path = work.get_nowait()
                except queue.Empty:
                    return
                done.put(grade_submission(student, path, suite, zygote, seed))
        except BaseException as exc:  # noqa: B036 - reported by the main thread
            fatal.append(exc)
            stop.set()
        finally:
            zygote.stop()
            done.put(None)

    started = time.monotonic()
    threads = [threading.Thread(target=slot, args=(i,), daemon=True)
               for i in range(jobs if todo else 0)]
    for t in threads:
        t.start()
    finished = used_reference = 0
    counts: dict[str, int] = {}
    bar = tqdm(total=len(todo), unit="notebook", desc=f"grading {exercise}", disable=not progress)
    try:
        running = len(threads)
        while running:
            result = done.get()
            if result is None:
                running -= 1
                continue
            book.record(result)  # one transaction per submission, as soon as it finishes
            write_results_json(book, out, result.student, exercise)
            counts[result.status] = counts.get(result.status, 0) + 1
            used_reference += result.used_reference
            finished += 1
            bar.update(1)
    finally:
        bar.close()
        stop.set()
    for t in threads:
        t.join(timeout=30)
    book.export_csv(out / "grades.csv")
    book.close()
    if fatal:
        raise GraderCannotRun(f"the grading worker failed: {fatal[0]}")
    elapsed = time.monotonic() - started
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing new"
    references = (f"; {used_reference} called the package's reference answer (see their feedback)"
                  if used_reference else "")
    return (f"graded {finished} submission(s) of {exercise} in {elapsed:.1f} s ({status}){references}; "
            f"{skipped} already graded; sandbox: {sandbox}; seed {seed}; results in {out}")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
