"""The ``vitcourse`` command: help without torch, usage errors from argparse, and what it needs
installed (a plain ``pip install vitcourse`` must be enough for every subcommand but ``grade``'s
sandbox, which is a system package)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from vitcourse.cli import main

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

HEAVY = ("torch", "numpy", "matplotlib", "nbformat", "sklearn")


def _run(argv: list[str], hidden: frozenset[str] = frozenset()) -> tuple[str, set[str], str]:
    """Run ``vitcourse ARGV`` in a fresh interpreter where the top-level modules ``hidden`` cannot
    be imported; return how it ended (an exit code, or the exception's type), the modules it
    imported, and its stderr."""
    code = (
        "import importlib.abc, sys\n"
        f"HIDDEN = {sorted(hidden)!r}\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in HIDDEN:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from vitcourse.cli import main\n"
        "try:\n"
        f"    ended = main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    ended = exit.code\n"
        "except Exception as error:\n"
        "    ended = type(error).__name__\n"
        "    print(error, file=sys.stderr)\n"
        "print('ENDED', ended)\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    ended = re.search(r"^ENDED (.*)$", done.stdout, re.M)[1]
    return ended, set(re.search(r"^MODULES (.*)$", done.stdout, re.M)[1].split()), done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["grade", "--help"], ["bench", "model", "--help"], ["release", "--help"]])
def test_help_answers_without_importing_torch(argv):
    ended, modules, _ = _run(argv)
    assert ended == "0"
    assert not modules & set(HEAVY), f"`vitcourse {' '.join(argv)}` imported {sorted(modules & set(HEAVY))}"


def test_the_help_check_can_fail():
    # The same measurement sees torch when a command does import it.
    ended, modules, _ = _run(["bench", "model", "--config", "vit_nope", "--device", "cpu"])
    assert ended == "ValueError" and "torch" in modules


@pytest.mark.parametrize("flag, value", [("--batch", "0"), ("--repeats", "-1"), ("--threads", "x"),
                                         ("--min-time", "nan"), ("--batch", "2.5")])
def test_bad_numbers_are_usage_errors_naming_the_flag(capsys, flag, value):
    with pytest.raises(SystemExit) as exit:
        main(["bench", "model", flag, value])
    assert exit.value.code == 2
    assert f"argument {flag}: expected a positive" in capsys.readouterr().err


def _requirement_names(requirements) -> set[str]:
    """Distribution names of requirement strings, skipping those behind an extra or a marker
    that does not hold here."""
    from packaging.requirements import Requirement

    names = set()
    for text in requirements or ():
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.add(_canonical(requirement.name))
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_by_a_plain_install() -> set[str]:
    """The runtime dependencies in pyproject.toml and everything they require, recursively."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo, seen = list(_requirement_names(project["dependencies"])), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            todo += _requirement_names(importlib.metadata.requires(name))
        except importlib.metadata.PackageNotFoundError:
            pass
    return seen


def _hidden_from_a_plain_install() -> frozenset[str]:
    """Top-level modules of the installed distributions that a plain install would not bring."""
    plain = _installed_by_a_plain_install() | {"vitcourse"}
    return frozenset(
        module for module, dists in importlib.metadata.packages_distributions().items()
        if not {_canonical(d) for d in dists} & plain
    )


@pytest.mark.parametrize("argv", [["release", "--check"], ["stamp", "--check"], ["--help"], ["grade", "--help"]])
def test_each_command_runs_on_a_plain_install(argv):
    """The command runs with every module a plain install would lack made unimportable."""
    hidden = _hidden_from_a_plain_install()
    assert {"timm", "nbclient", "pytest"} <= hidden  # dev-only packages are hidden indeed
    ended, _, stderr = _run([*argv, "--root", str(ROOT)] if argv[-1] == "--check" else argv, hidden)
    assert ended in ("0", "1"), stderr  # 1: --check found something out of date, which is not the point here
    assert "ModuleNotFoundError" not in stderr and "No module named" not in stderr, stderr


def test_the_plain_install_check_can_fail():
    ended, _, stderr = _run(["release", "--check", "--root", str(ROOT)], frozenset({"yaml"}))
    assert ended == "ModuleNotFoundError" and "yaml" in stderr


def test_einops_is_not_a_runtime_dependency_and_the_package_does_not_use_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "einops" not in _requirement_names(project["dependencies"])
    assert not [p for p in (ROOT / "vitcourse").rglob("*.py") if re.search(r"^\s*(from|import) einops", p.read_text(), re.M)]
