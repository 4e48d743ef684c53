"""``vitcourse grade``: grade a folder of notebooks, or build the Gradescope autograder zip.

    vitcourse grade --exercise 01_patches submissions/ --out grades/ [--jobs 2]
    vitcourse grade --gradescope-bundle 01_patches [--out autograder.zip]

Exit status 0 when grading ran (whatever the scores); 2 with a message on stderr when the grader
cannot run (unknown exercise, broken hidden tests, no usable sandbox, unreadable paths...); 3 when
it stopped because its gradebook, its exports, the hidden tests or (without a sandbox) its own
code changed behind its back (nothing more is exported; the message names each change).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .trusted import modes

DEFAULT_JOBS = 2
EXIT_CANNOT_RUN = 2
EXIT_TAMPERED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Grade submitted notebooks with an exercise's hidden tests, or build the "
                          "Gradescope autograder for it.")
    parser.epilog = modes.EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
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
    parser.add_argument("--sandbox", choices=modes.CHOICES, default="auto", help=modes.HELP)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--gradescope-bundle", metavar="ID",
                        help="build Gradescope's autograder zip for exercise ID instead of grading")
    parser.add_argument("--gradescope-results", metavar="PATH", help=argparse.SUPPRESS)


def _fail(message: str) -> int:
    print(f"vitcourse grade: error: {message}", file=sys.stderr)
    return EXIT_CANNOT_RUN


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
    from .trusted.errors import GraderCannotRun, Tampered

    try:
        return _run(args)
    except Tampered as exc:
        print(stopped_message(exc, args.out), file=sys.stderr)
        return EXIT_TAMPERED
    except GraderCannotRun as exc:
        return _fail(str(exc))


def _run(args: argparse.Namespace) -> int:
    if args.gradescope_bundle:
        if args.exercise or args.submissions:
            return _fail("--gradescope-bundle ID takes no --exercise and no submissions")
        from .gradescope import build_bundle

        try:
            path = build_bundle(args.gradescope_bundle, hidden_dir=hidden_dir(args),
                                out=Path(args.out) if args.out else None)
        except (ValueError, OSError) as exc:
            return _fail(str(exc))
        print(f"wrote {path}")
        return 0
    if not args.exercise:
        return _fail("--exercise ID is required to grade (or use --gradescope-bundle ID)")
    if args.jobs < 1 or args.timeout <= 0 or args.memory < 64:
        return _fail(f"--jobs must be >= 1 (got {args.jobs}), --timeout > 0 (got {args.timeout}), "
                     f"--memory >= 64 MB (got {args.memory})")
    if args.gradescope_results:
        from .gradescope import grade_for_gradescope

        print(grade_for_gradescope(
            args.exercise, Path(args.submissions[0] if args.submissions else "/autograder/submission"),
            Path(args.gradescope_results), out=Path(args.out) if args.out else None,
            hidden_dir=hidden_dir(args), timeout=args.timeout, memory_mb=args.memory,
            seed=args.seed, sandbox=args.sandbox))
        return 0
    if not args.submissions:
        return _fail("no submissions given: name .ipynb files or folders of them")
    if not args.out:
        return _fail("--out DIR is required")
    try:
        submissions = find_submissions(args.submissions)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    from .batch import grade

    print(grade(args.exercise, submissions, Path(args.out), jobs=args.jobs, timeout=args.timeout,
                memory_mb=args.memory, regrade=args.regrade, hidden_dir=hidden_dir(args),
                seed=args.seed, sandbox=args.sandbox, progress=not args.no_progress,
                hide_extra=[Path(p) for p in args.submissions]))
    return 0


def hidden_dir(args: argparse.Namespace) -> Path:
    """--hidden-dir, or tests/hidden under the current folder."""
    return Path(args.hidden_dir) if args.hidden_dir else Path.cwd() / "tests" / "hidden"


def stopped_message(exc, out: str | None) -> str:
    """What the instructor reads when the grader stopped because something changed behind its back."""
    lines = ["vitcourse grade: STOPPED: files the grader trusts were changed behind its back, and "
             "not by the grader; this run wrote no grades.csv."]
    lines += [f"  - {change}" for change in exc.changes]
    if exc.suspects:
        lines.append(f"  Submissions whose code ran since the last check that found nothing: "
                     f"{', '.join(exc.suspects)}.")
    where = f" in {out}" if out else ""
    lines.append(f"  Do not use the gradebook or the results{where}. Restore what was changed, then "
                 f"grade again into a new --out folder with the sandbox on (--sandbox auto).")
    return "\n".join(lines)
