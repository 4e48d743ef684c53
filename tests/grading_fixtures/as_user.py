"""Run commands as an instructor runs the grader: as an ordinary user, which the grader and the
student code it runs then share.

Run by an ordinary user, a command runs as that user, as it is. Run by root (as CI is), it runs
under a fresh uid that owns nothing but a scratch folder of its own (``base``, under /tmp, with
its HOME inside), through ``setpriv``, without capabilities. The Python installation may sit where
only root can enter (pyenv keeps it under /root); so the command runs in a mount namespace made by
bubblewrap, as root, in which each folder on the way to what it needs (the interpreter, the
virtual environment, the checkout) that other users may not enter is replaced by an empty folder
they may enter, with the needed folders bound back at their own paths (only where there is such a
folder: otherwise setpriv alone). Nothing else changes: everywhere else the user sees the host's
files, owners and permissions.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_UID = 43000  # fresh uids from here, one per OrdinaryUser, none in /etc/passwd


def _searchable_by_others(folder: Path) -> bool:
    return bool(os.stat(folder).st_mode & stat.S_IXOTH)


def _needed() -> list[Path]:
    """What a grader started from this checkout reads: the interpreter (the real one behind the
    virtual environment's link), the installations and the checkout."""
    import torch

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent,
             Path(torch.__file__).parent.parent, ROOT}
    return sorted({p.resolve() for p in paths})


def exposing_args(needed: list[Path]) -> list[str]:
    """bubblewrap arguments that let any user reach ``needed``: every folder above them that
    others may not enter becomes an empty one they may, with the needed folders bound back."""
    blocked: dict[Path, list[Path]] = {}
    for path in needed:
        for folder in reversed(path.parents):  # from / down
            if folder != Path("/") and not _searchable_by_others(folder):
                blocked.setdefault(folder, []).append(path)
                break
    args: list[str] = []
    for folder, inside in sorted(blocked.items()):
        args += ["--perms", "0755", "--tmpfs", str(folder)]
        outermost = [p for p in set(inside) if not any(o != p and o in p.parents for o in inside)]
        made: set[Path] = set()
        for path in sorted(outermost):
            # the folders between are made by hand: bubblewrap would make them 0700
            for between in reversed(path.relative_to(folder).parents[:-1]):
                if folder / between not in made:
                    args += ["--perms", "0755", "--dir", str(folder / between)]
                    made.add(folder / between)
            args += ["--bind", str(path), str(path)]
    return args


def _unused_uid() -> int:
    with open("/etc/passwd") as f:
        taken = {int(line.split(":")[2]) for line in f if line.count(":") >= 3}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/status") as f:
                    taken |= {int(line.split()[1]) for line in f if line.startswith("Uid:")}
            except OSError:
                continue
    uid = FIRST_UID + os.getpid() % 10000
    while uid in taken:
        uid += 1
    return uid


@dataclass
class OrdinaryUser:
    """A user that is not root: ``run`` commands as it, in ``base`` (a folder it owns)."""

    uid: int
    base: Path
    home: Path
    prefix: list[str]  # what runs a command as this user
    _bubblewrap_usable: bool | None = None

    @classmethod
    def make(cls) -> OrdinaryUser:
        base = Path(tempfile.mkdtemp(prefix="vitcourse-as-user-", dir="/tmp"))
        home = base / "home"
        home.mkdir()
        if os.geteuid() != 0:
            return cls(os.getuid(), base, home, [])
        uid = _unused_uid()
        for path in (base, home):
            os.chown(path, uid, uid)
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise RuntimeError("running as root, these tests need setpriv (util-linux) to run as "
                               "an ordinary user")
        prefix = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                  "--bounding-set=-all", "--"]
        exposing = exposing_args(_needed())
        if exposing:  # the Python installation is out of other users' reach: make a way to it
            bwrap = shutil.which("bwrap")
            if bwrap is None:
                raise RuntimeError(f"running as root, with Python where other users cannot reach "
                                   f"it ({sys.base_prefix}), these tests need bubblewrap "
                                   f"(tools/install-system-deps.sh installs it)")
            prefix = [bwrap, "--dev-bind", "/", "/", *exposing, "--die-with-parent", "--", *prefix]
        user = cls(uid, base, home, prefix)
        user.bubblewrap_usable()
        return user

    @property
    def is_separate(self) -> bool:
        """Whether this user is not the one running the tests (the tests run as root)."""
        return bool(self.prefix)

    def bubblewrap_usable(self) -> bool:
        """Whether the grader, run as this user, can use bubblewrap (its own probe says; asked
        once, when the user is made: the probe's bwrap exits before its namespace's first process
        is reaped, which init then reaps a moment later, and a test counting this user's processes
        right after a grading run must not find that one)."""
        if self._bubblewrap_usable is None:
            probe = self.run([sys.executable, "-m", "vitcourse.grading.trusted.sandbox"], timeout=120)
            self._bubblewrap_usable = probe.returncode == 0
        return self._bubblewrap_usable

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1", **extra}

    def run(self, command: list[str], *, timeout: float, cwd: Path = ROOT,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *command], cwd=cwd, env=env or self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def give(self, path: Path) -> None:
        """Make ``path`` and everything in it this user's."""
        if not self.is_separate:
            return
        for folder, dirs, files in os.walk(path):
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.lchown(name, self.uid, self.uid)

    def processes(self) -> list[str]:
        """This user's processes now (a separate user only: otherwise they are ours too), each as
        "pid (state) command line", so that a failing test says what survived."""
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/status") as f:
                    status = dict(line.split(":", 1) for line in f if ":" in line)
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    command = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except OSError:
                continue
            if str(self.uid) in status.get("Uid", "").split():
                found.append(f"{pid} {status.get('Name', '?').strip()} ({status.get('State', '?').strip()}, parent {status.get('PPid', '?').strip()}) {command[:200]}")
        return found

    def attack_roots(self) -> list[str]:
        """Where an attack may search for files to change: the whole /tmp and the user's home
        when the user is a separate one (it can only change its own files); only ``base``
        otherwise, so that a test run as a developer never touches the developer's files."""
        return ["/tmp", str(self.home)] if self.is_separate else [str(self.base)]

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
