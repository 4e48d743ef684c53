"""Gradescope: build the autograder zip, and grade one submission the way Gradescope runs it.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once when it builds the
image, then for every submission runs ``/autograder/run_autograder`` with the student's files in
``/autograder/submission`` and expects ``/autograder/results/results.json``. Our run script calls
the same ``vitcourse grade`` as an instructor would, with ``--gradescope-results``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from .runner import EXERCISE_ID

SETUP_SH = """\
#!/usr/bin/env bash
# Runs once, as root, when Gradescope builds the autograder image.
set -euo pipefail
apt-get install -y python3 python3-pip python3-venv bubblewrap
python3 -m venv /autograder/venv
# CPU wheels of torch: the grader never needs CUDA
/autograder/venv/bin/pip install --extra-index-url https://download.pytorch.org/whl/cpu \\
    /autograder/source/vitcourse-src
# the hidden tests stay readable by root only (student code runs as nobody when bubblewrap
# cannot create namespaces in the container)
chmod 700 /autograder/source
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Runs for every submission; writes /autograder/results/results.json.
mkdir -p /autograder/results
exec /autograder/venv/bin/python -m vitcourse.cli grade --exercise {exercise} \\
    --hidden-dir /autograder/source/hidden --out /autograder/grading \\
    --gradescope-results /autograder/results/results.json --jobs 1 --no-progress \\
    /autograder/submission
"""


def _add_tree(bundle: zipfile.ZipFile, folder: Path, arcname: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            bundle.write(path, f"{arcname}/{path.relative_to(folder).as_posix()}")


def build_bundle(exercise: str, hidden_dir: Path, out: Path | None = None) -> Path:
    """Write the autograder zip for ``exercise``; returns its path."""
    if not EXERCISE_ID.match(exercise):
        raise ValueError(f"--gradescope-bundle: {exercise!r} is not a valid exercise id")
    hidden = Path(hidden_dir) / f"test_{exercise}.py"
    if not hidden.is_file():
        raise ValueError(f"--gradescope-bundle: no hidden tests {hidden}")
    package = Path(__file__).resolve().parents[1]
    repo = package.parent
    out = Path(out) if out else Path.cwd() / f"gradescope_{exercise}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)

    def script(name: str, text: str, bundle: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo(name)
        info.external_attr = 0o100755 << 16  # executable
        info.compress_type = zipfile.ZIP_DEFLATED
        bundle.writestr(info, text)

    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        script("setup.sh", SETUP_SH, bundle)
        script("run_autograder", RUN_AUTOGRADER.format(exercise=exercise), bundle)
        bundle.write(hidden, f"hidden/{hidden.name}")
        _add_tree(bundle, package, "vitcourse-src/vitcourse")
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (repo / name).is_file():
                bundle.write(repo / name, f"vitcourse-src/{name}")
    return out


def _pick_notebook(folder: Path, exercise: str) -> tuple[Path | None, str]:
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    named = [p for p in notebooks if p.stem == exercise]
    if named:
        return named[0], ""
    if len(notebooks) == 1:
        return notebooks[0], ""
    if not notebooks:
        return None, "No .ipynb notebook was found in your submission."
    return None, (f"Your submission holds {len(notebooks)} notebooks; name the one to grade "
                  f"{exercise}.ipynb.")


def grade_for_gradescope(args: argparse.Namespace) -> int:
    """Grade the one notebook in the submission folder and write Gradescope's results.json."""
    from .command import GraderCannotRun, _fail, _hidden_dir, grade

    results = Path(args.gradescope_results)
    results.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(args.submissions[0] if args.submissions else "/autograder/submission")
    notebook, problem = _pick_notebook(folder, args.exercise)
    if notebook is None:
        results.write_text(json.dumps({"score": 0.0, "output": problem, "tests": []}, indent=2))
        return 0
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vitcourse-gs-"))
    try:
        summary = grade(args.exercise, [("submission", notebook)], out, jobs=1,
                        timeout=args.timeout, memory_mb=args.memory, regrade=True,
                        hidden_dir=_hidden_dir(args), seed=args.seed, sandbox=args.sandbox,
                        progress=False, hide_extra=[folder, results.parent])
    except GraderCannotRun as exc:
        return _fail(str(exc))
    print(summary)
    shutil.copyfile(out / "results" / "submission" / f"{args.exercise}.json", results)
    return 0
