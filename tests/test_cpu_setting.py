"""tools/cpu_setting.py makes this machine run another CPU's kernels, and make test relies on it.

The second notebook pass of ``make test`` runs under ``default``: these tests check that the
setting reaches PyTorch's kernel dispatch in a child process (what nbval's kernels are), and that
the list of notebooks that pass leaves out names only real notebooks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "cpu_setting.py"
CAPABILITY = "import torch; print(torch.backends.cpu.get_cpu_capability())"


def _capability(*setting: str) -> str:
    command = [sys.executable, str(TOOL), *setting, "--", sys.executable, "-c", CAPABILITY] if setting \
        else [sys.executable, "-c", CAPABILITY]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def test_default_runs_the_baseline_kernels():
    assert _capability("default") == "DEFAULT"


def test_avx2_runs_no_avx512_kernels():
    native = _capability()
    capped = _capability("avx2")
    assert not capped.startswith("AVX512"), capped
    if native.startswith("AVX512"):
        assert capped == "AVX2", (native, capped)


def test_native_changes_nothing():
    assert _capability("native") == _capability()


def test_an_unknown_setting_is_refused_by_name():
    done = subprocess.run([sys.executable, str(TOOL), "sse9", "--", "true"], capture_output=True, text=True)
    assert done.returncode == 2 and "sse9" in done.stderr, done.stderr


def test_the_not_yet_portable_list_names_real_notebooks():
    lines = (ROOT / "tests" / "notebooks_not_yet_portable.txt").read_text().splitlines()
    listed = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert len(listed) == len(set(listed)), "a notebook is listed twice"
    for path in listed:
        assert path.split("/")[0] in ("chapters", "solutions") and path.endswith(".ipynb"), path
        assert (ROOT / path).is_file(), f"{path} is listed but does not exist"


@pytest.mark.parametrize("setting", ["avx2", "default"])
def test_the_setting_is_said_on_stderr(setting):
    done = subprocess.run([sys.executable, str(TOOL), setting, "--", "true"], capture_output=True,
                          text=True, check=True)
    assert done.stderr.startswith(f"cpu setting {setting}: ATEN_CPU_CAPABILITY={setting}"), done.stderr
