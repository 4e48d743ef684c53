"""The Gradescope autograder, end to end, run the way Gradescope runs it.

`vitcourse grade --gradescope-bundle` builds the zip; it is unpacked into /autograder/source of a
container that holds Gradescope's layout (/autograder/source, /autograder/submission,
/autograder/results), the operating system and a Python, and nothing else, without network
(``grading_fixtures/gradescope_box``). As root, as on Gradescope, ``setup.sh`` runs once from
/autograder/source; ``run_autograder``, copied to /autograder as Gradescope does when it builds
the image, then runs from /autograder for a submission, and the results.json it writes is checked
against the format Gradescope documents (``grading_fixtures/gradescope_schema``).

Hermetic, on purpose: setup.sh installs the package with pip, which on Gradescope fetches torch
and the rest from PyPI. Here pip gets no index (``PIP_NO_INDEX``, pip's own setting, which
setup.sh leaves alone) and finds every dependency, and the build backend, already on PYTHONPATH:
this environment's packages, without this checkout's vitcourse. So the test needs no network and
downloads nothing, and what runs is the package as the bundle ships it, installed by setup.sh.

Two containers: one where bubblewrap works (the grader sandboxes the student's code), one where
it cannot create namespaces (as under Docker's default profile: the run script then grades with
``--sandbox none``, student code as the user nobody). In both, a probe in the submission tries to
read the hidden tests and to write the results file itself, and must fail.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from grading_fixtures.gradescope_box import GradescopeBox, dependency_farm  # noqa: E402
from grading_fixtures.gradescope_schema import validate  # noqa: E402
from grading_fixtures.notebooks import CORRECT, write_notebook  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ROOT / "tests" / "grading_fixtures" / "hidden"

PROBE = """\
import os

def attempt(action):
    try:
        action()
        return 'done'
    except Exception as exc:
        return type(exc).__name__

print('PROBE uid', os.getuid())
print('PROBE read hidden', attempt(lambda: open('/autograder/source/hidden/test_00_fake.py').read()))
print('PROBE write results', attempt(lambda: open('/autograder/results/results.json', 'w').write('{}')))
"""


def _unzip(bundle: Path, into: Path) -> None:
    """As Gradescope unpacks the zip: files with the modes they were zipped with."""
    with zipfile.ZipFile(bundle) as archive:
        for info in archive.infolist():
            path = Path(archive.extract(info, into))
            mode = (info.external_attr >> 16) & 0o777
            if mode and path.is_file():
                path.chmod(mode)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> GradescopeBox:
    """The autograder image: the bundle unpacked into /autograder/source, setup.sh run there."""
    from vitcourse.cli import main

    work = tmp_path_factory.mktemp("gradescope")
    bundle = work / "autograder.zip"
    assert main(["grade", "--gradescope-bundle", "00_fake", "--hidden-dir", str(HIDDEN),
                 "--out", str(bundle)]) == 0
    root = work / "image"
    source = root / "autograder" / "source"
    source.mkdir(parents=True)
    root.chmod(0o755)
    (root / "autograder").chmod(0o755)
    _unzip(bundle, source)
    box = GradescopeBox(root, dependency_farm(work / "dependencies"))
    started = box.run(["true"], cwd="/", timeout=60)
    if started.returncode != 0:
        pytest.skip(f"no Gradescope-like container can be made here: {started.stderr.strip()}")
    done = box.run(["bash", "./setup.sh"], cwd="/autograder/source", timeout=900)
    assert done.returncode == 0, f"setup.sh failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "Successfully installed vitcourse" in done.stdout, done.stdout[-3000:]
    assert stat.S_IMODE(source.stat().st_mode) == 0o700  # the hidden tests: root only
    shutil.copy(source / "run_autograder", root / "autograder" / "run_autograder")
    return box


def _fresh_submission(box: GradescopeBox) -> None:
    """What Gradescope gives each run: the image, a new submission, no results yet."""
    for name in ("submission", "results", "grading"):
        shutil.rmtree(box.autograder / name, ignore_errors=True)
    write_notebook(box.autograder / "submission" / "my_work.ipynb", CORRECT + [PROBE])
    (box.autograder / "results").mkdir()


@pytest.mark.parametrize("container", ["bubblewrap works", "bubblewrap forbidden"])
def test_run_autograder_writes_results_gradescope_accepts(image, container, tmp_path):
    box = image
    if container == "bubblewrap forbidden":
        if os.geteuid() != 0:
            pytest.skip("switching student code to nobody needs the real root Gradescope has")
        fake = tmp_path / "bwrap"
        fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\n"
                        "exit 1\n")
        fake.chmod(0o755)
        box = dataclasses.replace(image, bwrap_overlay=fake)
    _fresh_submission(box)
    done = box.run(["/autograder/run_autograder"], cwd="/autograder", timeout=600)
    assert done.returncode == 0, f"run_autograder failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    if container == "bubblewrap works":
        assert "sandbox: bwrap" in done.stdout, done.stdout
    else:
        assert "sandbox: none (student code as nobody)" in done.stdout, done.stdout
        assert "WARNING: --sandbox none" in done.stderr  # in the log only the instructor sees

    results = json.loads((box.autograder / "results" / "results.json").read_text())
    validate(results)
    tests = results["tests"]
    assert len(tests) == 5 and all(t["status"] == "passed" for t in tests), tests
    assert results["score"] == sum(t["score"] for t in tests) == sum(t["max_score"] for t in tests) == 7
    assert [t["number"] for t in tests] == ["1", "2", "3", "4", "5"]
    # what the student's code printed reaches the student as plain text, and the grader's own
    # log (stdout) stays with the instructor
    assert results["output_format"] == results["test_output_format"] == "text"
    assert results["stdout_visibility"] == "hidden"
    probe = {line[len("PROBE "):].rpartition(" ")[0]: line.rpartition(" ")[2]
             for line in results["output"].splitlines() if line.startswith("PROBE ")}
    assert probe["read hidden"] not in ("", "done"), results["output"]
    assert probe["write results"] not in ("", "done"), results["output"]
    if container == "bubblewrap forbidden":
        assert probe["uid"] == "65534", results["output"]
