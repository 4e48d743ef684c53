#!/usr/bin/env python
"""Run a command as if on another CPU: the float kernels of a machine without AVX-512 or AVX2.

    python tools/cpu_setting.py avx2 -- pytest --nbval chapters
    python tools/cpu_setting.py default -- python -c "import torch; print(torch.backends.cpu.get_cpu_capability())"
    python tools/cpu_setting.py --list

Float results differ between CPUs because each library picks its kernels by the instruction
set it finds: PyTorch's own kernels (``ATEN_CPU_CAPABILITY``), oneDNN's (``ONEDNN_MAX_CPU_ISA``),
MKL's (``MKL_ENABLE_INSTRUCTIONS``), NumPy's dispatched loops (``NPY_DISABLE_CPU_FEATURES``) and
OpenBLAS's (``OPENBLAS_CORETYPE``). A setting caps all of them at once, so one machine runs the
code paths that an AVX2-only machine (``avx2``) or a baseline x86-64 machine (``default``) would.
``native`` changes nothing. On a machine that lacks an instruction set, capping below it is a no-op.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

# NumPy's dispatch targets above each setting; only those this NumPy knows and this CPU has are
# named, since NumPy refuses to disable a feature it cannot use anyway.
_NUMPY_ABOVE = {
    "avx2": ("X86_V4", "AVX512_SKX", "AVX512_CLX", "AVX512_CNL", "AVX512_ICL", "AVX512_SPR"),
    "default": ("X86_V3", "AVX2", "FMA3", "X86_V4", "AVX512_SKX", "AVX512_CLX", "AVX512_CNL", "AVX512_ICL",
                "AVX512_SPR"),
}

SETTINGS = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
    },
    "default": {
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "OPENBLAS_CORETYPE": "Nehalem",
    },
}


def _numpy_features_to_disable(setting: str) -> list[str]:
    """The NumPy dispatch targets above ``setting`` that this NumPy would use on this CPU."""
    probe = (
        "import sys\n"
        "from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__\n"
        "print(' '.join(f for f in sys.argv[1:] if f in __cpu_dispatch__ and __cpu_features__.get(f)))"
    )
    wanted = _NUMPY_ABOVE.get(setting, ())
    if not wanted:
        return []
    try:
        out = subprocess.run([sys.executable, "-c", probe, *wanted], capture_output=True, text=True, check=True)
    except (subprocess.CalledProcessError, OSError):  # an old NumPy without these names: no dispatch to cap
        return []
    return out.stdout.split()


def environment(setting: str) -> dict[str, str]:
    """The variables that make this machine run ``setting``'s kernels."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    env = dict(SETTINGS[setting])
    numpy_off = _numpy_features_to_disable(setting)
    if numpy_off:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(numpy_off)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("setting", nargs="?", choices=tuple(SETTINGS), help="the CPU to act as")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    parser.add_argument("--list", action="store_true", help="print each setting's variables and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name in SETTINGS:
            print(name + ":", " ".join(f"{k}={v!r}" for k, v in environment(name).items()) or "(nothing changed)")
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.setting is None or not command:
        parser.error("give a setting and a command: cpu_setting.py avx2 -- pytest ...")
    env = {**os.environ, **environment(args.setting)}
    print(f"cpu setting {args.setting}: " + (" ".join(f"{k}={v}" for k, v in environment(args.setting).items())
                                            or "native"), file=sys.stderr, flush=True)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    sys.exit(main())
