"""tools/cpu_setting.py makes this machine run another CPU's kernels, and make test relies on it.

The second notebook pass of ``make test`` runs under ``default``: these tests check that the
setting reaches PyTorch's kernel dispatch in a child process (what nbval's kernels are).
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


@pytest.mark.parametrize("setting", ["avx2", "default"])
def test_the_setting_is_said_on_stderr(setting):
    done = subprocess.run([sys.executable, str(TOOL), setting, "--", "true"], capture_output=True,
                          text=True, check=True)
    assert done.stderr.startswith(f"cpu setting {setting}: ATEN_CPU_CAPABILITY={setting}"), done.stderr
