"""Gradescope: build the autograder zip, and grade one submission the way Gradescope runs it.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` there once, as root, when
it builds the image, then for every submission runs ``/autograder/run_autograder`` (from
``/autograder``, as root, in a container made for that submission) with the student's files in
``/autograder/submission``, and expects ``/autograder/results/results.json``. The run script calls
the same ``vitcourse grade`` as an instructor would, with ``--gradescope-results``.

Everything ``setup.sh`` installs comes from the image's apt sources (Python, bubblewrap, only when
missing) and from PyPI (the package and its dependencies), so pip's own settings (``PIP_INDEX_URL``,
``PIP_FIND_LINKS``...) decide where from.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from .trusted.gradebook import gradescope_results
from .trusted.suites import EXERCISE_ID

SETUP_SH = """\
#!/usr/bin/env bash
# Runs once, as root, from /autograder/source, when Gradescope builds the autograder image.
set -euo pipefail
if ! python3 -c "import ensurepip, venv" 2>/dev/null || ! command -v bwrap >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
        python3 python3-venv python3-pip bubblewrap
fi
python3 -m venv /autograder/venv
# the package and its dependencies, from PyPI
/autograder/venv/bin/pip install --no-cache-dir /autograder/source/vitcourse-src
# the hidden tests stay readable by root only (where the container forbids bubblewrap, student
# code runs as the user nobody)
chmod 700 /autograder/source
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Runs for every submission, as root, from /autograder, in a container made for that submission
# alone; writes /autograder/results/results.json.
set -uo pipefail
python=/autograder/venv/bin/python
mkdir -p /autograder/results
if "$python" -m vitcourse.grading.trusted.sandbox; then
    sandbox=bwrap
else
    # The container forbids the namespaces bubblewrap needs (Docker's default profile does). It
    # holds this one submission and is thrown away afterwards: the grader runs as root and the
    # student's code as the user nobody, which can neither read /autograder/source (mode 700)
    # nor write the results, and the grader stops if anything it trusts changes.
    sandbox=none
fi
exec "$python" -m vitcourse.cli grade --exercise {exercise} --sandbox "$sandbox" \\
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


def grade_for_gradescope(exercise: str, folder: Path, results: Path, *, out: Path | None = None,
                         hidden_dir: Path, timeout: float = 60.0, memory_mb: int = 2048,
                         seed: int | None = None, sandbox: str = "auto") -> str:
    """Grade the one notebook in ``folder`` and write Gradescope's ``results`` file; returns the
    grader's summary. Raises GraderCannotRun (and Tampered) as ``batch.grade`` does."""
    from .batch import grade

    results.parent.mkdir(parents=True, exist_ok=True)
    notebook, problem = _pick_notebook(folder, exercise)
    if notebook is None:
        results.write_text(json.dumps(gradescope_results(score=0.0, output=problem, tests=[]),
                                      indent=2))
        return f"no notebook graded: {problem}"
    out = out or Path(tempfile.mkdtemp(prefix="vitcourse-gs-"))
    summary = grade(exercise, [("submission", notebook)], out, jobs=1, timeout=timeout,
                    memory_mb=memory_mb, regrade=True, hidden_dir=hidden_dir, seed=seed,
                    sandbox=sandbox, progress=False, hide_extra=[folder, results.parent])
    # grade() returned: the export was verified, and no process of the submission is left
    shutil.copyfile(out / "results" / "submission" / f"{exercise}.json", results)
    return summary
