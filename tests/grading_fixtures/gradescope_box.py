"""A container laid out as Gradescope's: /autograder and its source, submission and results
folders, the operating system (/usr, /etc), a Python and nothing else; no network.

Gradescope runs setup.sh and run_autograder as root in a Docker image of Ubuntu. Here the
container is made with bubblewrap: run as root, its processes are root (bubblewrap inside it can
create its namespaces, as on a machine that allows them, and the grader can switch student code
to nobody, as where Docker forbids them); run as an ordinary user, a user namespace maps that user
to root inside.

"A Python" is this environment's: the interpreter's installation at its own path, and the
packages of this virtual environment at /deps (on PYTHONPATH), without this checkout's own
editable vitcourse, so that what the bundle installs is what runs. The packages are mounted at
/site, outside /tmp: the grader's own sandbox gives student code an empty /tmp, and a checkout
under /tmp (as a CI clone may be) would otherwise take torch out of the student's sight.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SYSTEM_LINKS = ("bin", "lib", "lib64", "sbin")  # symlinks into /usr on a merged-/usr system
SITE_IN_BOX = Path("/site")  # where this environment's site-packages appear inside the container


def _site_packages() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"]).resolve()


def _folders_to(path: Path) -> list[str]:
    """bubblewrap arguments making each folder above ``path`` with mode 0755 (bubblewrap makes
    them 0700, which the user nobody could not pass)."""
    args: list[str] = []
    for folder in reversed(path.parents[:-1]):
        args += ["--perms", "0755", "--dir", str(folder)]
    return args


def dependency_farm(folder: Path) -> Path:
    """A folder of links to every entry of this environment's site-packages, as the container
    sees it at /site, except this checkout's vitcourse (its editable-install hook and metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in _site_packages().iterdir():
        if "vitcourse" in entry.name.lower():
            continue
        (folder / entry.name).symlink_to(SITE_IN_BOX / entry.name)
    return folder


@dataclass
class GradescopeBox:
    """``root`` holds the container's /autograder; ``run`` runs a command inside."""

    root: Path
    farm: Path
    bwrap_overlay: Path | None = None  # a file shown as /usr/bin/bwrap (e.g. one that fails)

    @property
    def autograder(self) -> Path:
        return self.root / "autograder"

    def args(self) -> list[str]:
        # The host's /proc, not a new one: bubblewrap covers parts of the /proc it mounts, and
        # a procfs with covered parts forbids the grader's own bubblewrap to mount one (so the
        # container shares the host's PID namespace, which nothing here depends on).
        args = [shutil.which("bwrap"), "--die-with-parent", "--new-session", "--unshare-net",
                "--unshare-ipc", "--unshare-uts", "--ro-bind", "/usr", "/usr",
                "--ro-bind", "/etc", "/etc", "--dev-bind", "/proc", "/proc", "--dev", "/dev",
                "--perms", "01777", "--tmpfs", "/tmp", "--perms", "0755", "--tmpfs", "/root"]
        if os.geteuid() != 0:
            args += ["--unshare-user", "--uid", "0", "--gid", "0"]
        for name in SYSTEM_LINKS:
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
        python = Path(sys.base_prefix).resolve()
        args += [*_folders_to(python), "--ro-bind", str(python), str(python)]
        args += ["--ro-bind", str(_site_packages()), str(SITE_IN_BOX), "--ro-bind", str(self.farm), "/deps",
                 "--bind", str(self.autograder), "/autograder"]
        if self.bwrap_overlay is not None:
            args += ["--ro-bind", str(self.bwrap_overlay), "/usr/bin/bwrap"]
        env = {"PATH": f"{python}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": "/root",
               "LANG": "C.UTF-8", "PYTHONPATH": "/deps",
               # pip: no index and nothing to fetch (the dependencies are on PYTHONPATH, and the
               # build backend, setuptools, too, so no isolated build environment)
               "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        args += ["--clearenv", *sum((["--setenv", k, v] for k, v in env.items()), [])]
        return args

    def run(self, command: list[str], cwd: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([*self.args(), "--chdir", cwd, "--", *command], capture_output=True,
                              text=True, timeout=timeout)
