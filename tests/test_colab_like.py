"""A student's first minutes, in a runtime like a fresh Colab one.

The runtime is a new virtual environment that has what Colab has (torch, numpy, matplotlib,
ipywidgets, scikit-learn, scikit-image, a Jupyter kernel) and no `vitcourse`. torch is not
installed again: the environment links to this one's torch and the packages it needs. Each
notebook then runs top to bottom, and its own install cell installs `vitcourse`, from this
checkout instead of the repository url (the one environment variable the cell honours).
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT
from vitcourse.course.stamp import INSTALL_ENV

pytestmark = pytest.mark.slow

COLAB_PACKAGES = ["numpy", "matplotlib", "ipywidgets", "scikit-learn", "scikit-image", "ipykernel", "nbclient"]
EXERCISE = ROOT / "exercises" / "01_patches.ipynb"
CHAPTER = ROOT / "chapters" / "01_principles" / "01_pixels_to_tokens.ipynb"

RUNNER = """
import json, sys
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
print(json.dumps([[o.get("text", "") for o in c.get("outputs", []) if o.get("output_type") == "stream"]
                  for c in nb.cells if c.cell_type == "code"]))
"""


def _torch_closure() -> list[metadata.Distribution]:
    """torch and every distribution it needs on this platform, without extras."""
    seen, todo, found = set(), ["torch"], []
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(dist)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def _link_distribution(dist: metadata.Distribution, site_packages: Path) -> None:
    """Make ``dist`` importable in another environment by linking its top-level files."""
    source_root = Path(dist.locate_file(""))
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    for top in tops:
        source, target = source_root / top, site_packages / top
        if source.exists() and not target.exists():
            target.symlink_to(source)


@pytest.fixture(scope="module")
def colab_python(tmp_path_factory) -> Path:
    if not shutil.which("git") and not (ROOT / "pyproject.toml").exists():
        pytest.skip("no checkout to install from")
    venv = tmp_path_factory.mktemp("colab") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    )
    for dist in _torch_closure():
        _link_distribution(dist, site_packages)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *COLAB_PACKAGES], capture_output=True, text=True
    )
    if pip.returncode:
        pytest.fail(f"could not build the Colab-like environment:\n{pip.stderr[-3000:]}")
    # From a neutral folder: the checkout's own vitcourse/ must not shadow the question.
    probe = subprocess.run(
        [str(python), "-c", "import vitcourse"], capture_output=True, text=True, cwd=venv.parent
    )
    assert probe.returncode != 0, "the fresh environment must not have vitcourse yet"
    return python


def _run_notebook(python: Path, notebook: Path, workdir: Path) -> list[list[str]]:
    """Execute ``notebook`` (a copy, in ``workdir``) with the Colab-like kernel; return stream texts."""
    copy = workdir / notebook.name
    shutil.copy(notebook, copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env[INSTALL_ENV] = str(ROOT)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [str(python), "-c", RUNNER, str(copy), str(workdir)], capture_output=True, text=True, env=env, cwd=workdir
    )
    assert done.returncode == 0, f"{notebook.name} failed in the Colab-like runtime:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_chapter_runs_and_installs_vitcourse(colab_python, tmp_path):
    if not CHAPTER.exists():
        pytest.fail(f"{CHAPTER.relative_to(ROOT)} is missing")
    _run_notebook(colab_python, CHAPTER, tmp_path)
    where = subprocess.check_output(
        [str(colab_python), "-c", "import vitcourse; print(vitcourse.__file__)"], text=True, cwd=tmp_path
    ).strip()
    purelib = subprocess.check_output(
        [str(colab_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    assert where.startswith(purelib), f"vitcourse should be installed in the runtime, found at {where}"


def test_exercise_runs_and_reports_the_stubs(colab_python, tmp_path):
    if not EXERCISE.exists():
        pytest.fail(f"{EXERCISE.relative_to(ROOT)} is missing")
    streams = _run_notebook(colab_python, EXERCISE, tmp_path)
    printed = "\n".join("".join(texts) for texts in streams).lower()
    assert "not implemented" in printed, f"the check cell should report the stubs; it printed:\n{printed[-2000:]}"

