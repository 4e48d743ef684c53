"""Benchmark the autograder: N submissions of one exercise, sandbox on, next to a fresh torch import.

    python tools/bench_grading.py                         # 100 submissions of 01_patches, --jobs 2
    python tools/bench_grading.py --exercise 10_blocks --notebook solutions/10_blocks.ipynb

It writes N notebooks (three in four the exercise's solution, the rest its unsolved exercise
notebook, so both the passing and the failing paths are timed; or N copies of ``--notebook``)
into a temporary folder, runs ``vitcourse grade`` on them as a subprocess and times the whole
command (start-up of the workers included). For comparison it times
``python -c "import torch"`` (the cost a grader that starts a fresh Python per submission pays
before running any student code), median of 3 runs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fresh_torch_import(runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _write_submissions(folder: Path, n: int, exercise: str, notebook: Path | None) -> None:
    """N notebooks: copies of ``notebook``, or three in four the solution and one the stub."""
    sources = [notebook] if notebook else [ROOT / "solutions" / f"{exercise}.ipynb"] * 3 + [
        ROOT / "exercises" / f"{exercise}.ipynb"]
    for source in sources:
        if not source.is_file():
            sys.exit(f"bench_grading: {source} does not exist (name one with --notebook)")
    for i in range(n):
        (folder / f"student{i:03d}.ipynb").write_bytes(sources[i % len(sources)].read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="number of submissions (default 100)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--exercise", default="01_patches")
    parser.add_argument("--hidden-dir", default=str(ROOT / "tests" / "hidden"))
    parser.add_argument("--notebook", type=Path, default=None,
                        help="grade N copies of this notebook (default: the exercise's solution "
                        "and its unsolved notebook)")
    parser.add_argument("--sandbox", default="auto", choices=("auto", "bwrap", "none"))
    args = parser.parse_args()
    if args.n < 1 or args.jobs < 1:
        parser.error(f"-n and --jobs must be >= 1 (got -n {args.n}, --jobs {args.jobs})")

    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        subs, out = Path(tmp) / "submissions", Path(tmp) / "out"
        subs.mkdir()
        _write_submissions(subs, args.n, args.exercise, args.notebook)
        command = [sys.executable, "-m", "vitcourse.cli", "grade", "--exercise", args.exercise,
                   str(subs), "--out", str(out), "--jobs", str(args.jobs), "--hidden-dir",
                   args.hidden_dir, "--sandbox", args.sandbox, "--no-progress"]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"grading failed ({done.returncode}):\n{done.stderr}")
        rows = (out / "grades.csv").read_text().count("\n") - 1
    torch_import = _fresh_torch_import()
    print(done.stdout.strip())
    print(f"submissions graded         : {rows}")
    print(f"wall time (whole command)  : {elapsed:.1f} s with --jobs {args.jobs}")
    print(f"per submission             : {elapsed / max(rows, 1):.3f} s "
          f"(x{args.jobs} jobs = {elapsed * args.jobs / max(rows, 1):.3f} s of a worker each)")
    print(f"fresh `python -c 'import torch'`: {torch_import:.3f} s (median of 3)")


if __name__ == "__main__":
    main()
