"""The grader's handle on the untrusted side: start a sandboxed zygote, run one submission in it.

``Zygote`` starts ``python -m vitcourse.grading.untrusted.worker`` (inside bubblewrap when it works: no
network, private /tmp, no capabilities, the repository's tests/ and solutions/, the hidden tests,
the submissions and the output folder hidden behind empty read-only tmpfs mounts). ``Session``
is one submission's fresh child: it sends the cells, then requests, each with a wall-clock
deadline, reads the child's output through a capped reader, and turns every way the child can
misbehave into ``StudentCrashed`` with a message for the student.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...course.expectations import StudentCrashed
from .. import wire
from ..wire import CONTROL_KILL, CONTROL_QUIT, CONTROL_RUN


@dataclass
class Limits:
    """Per-submission limits (wall-clock seconds apply to running the cells and to each call)."""

    timeout: float = 60.0
    memory_mb: int = 2048
    nproc: int = 64
    fsize_mb: int = 64
    max_output_bytes: int = 16 * 1024 * 1024  # more than this printed: the child is stopped
    keep_output_bytes: int = 64 * 1024  # what is kept for the feedback
    max_reply_bytes: int = 64 * 1024 * 1024
    max_restarts: int = 2  # fresh children after a crash inside one test, per submission


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


_BWRAP_PROBLEM: dict[str, str | None] = {}


def bwrap_problem() -> str | None:
    """Why bubblewrap cannot sandbox the worker here, in words; None when it can.

    It is probed once per bwrap binary with the very namespaces the worker uses: having bwrap
    installed is not enough (containers, and distributions that restrict user namespaces, make
    it fail at start)."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux namespaces, and this is {sys.platform}"
    path = bwrap_path()
    if path is None:
        return "bubblewrap is not installed (no `bwrap` on PATH)"
    if path not in _BWRAP_PROBLEM:
        try:
            probe = subprocess.run([path, *_base_bwrap_args(), "--", "true"], capture_output=True,
                                   timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _BWRAP_PROBLEM[path] = f"{path} could not be run ({exc})"
        else:
            said = probe.stderr.decode("utf-8", "replace").strip().splitlines()
            _BWRAP_PROBLEM[path] = None if probe.returncode == 0 else (
                f"{path} cannot create the namespaces the sandbox needs "
                f"(it said: {said[-1] if said else f'nothing, and exited with {probe.returncode}'})")
    return _BWRAP_PROBLEM[path]


def bwrap_works() -> bool:
    """Whether bubblewrap can create the namespaces we need here (it cannot in many containers)."""
    return bwrap_problem() is None


def _base_bwrap_args() -> list[str]:
    return ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            *_rebind_needed_under_tmp(),
            "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]


def _rebind_needed_under_tmp() -> list[str]:
    """The sandbox's /tmp is a fresh empty tmpfs. Where the Python installation or this package
    live under the host's /tmp (a checkout or a virtualenv there, as in a CI clone), bind them
    back read-only, and only them: the rest of that folder stays out of sight."""
    tmp = Path("/tmp").resolve()
    needed = [n for n in _needed_paths() if _inside(n, tmp) and n != tmp]
    outermost = [n for n in needed if not any(o != n and _inside(n, o) for o in needed)]
    return sum((["--ro-bind", str(p), str(p)] for p in outermost), [])


def _needed_paths() -> list[Path]:
    """Paths the worker must still see: the interpreter, the libraries and this package."""
    import torch

    import vitcourse

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable),
             os.path.dirname(os.path.realpath(sys.executable)),
             os.path.dirname(os.path.dirname(torch.__file__)),
             os.path.dirname(vitcourse.__file__)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        value = sysconfig.get_paths().get(key)
        if value:
            paths.add(value)
    return sorted({Path(p).resolve() for p in paths if p and os.path.exists(p)})


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def hiding_args(hide: list[Path]) -> tuple[list[str], list[str]]:
    """bwrap arguments that hide each path behind an empty read-only tmpfs, binding back the
    paths the worker needs below it (e.g. the package of an editable install inside the repo).
    Also returns warnings for paths that could not be hidden."""
    needed = _needed_paths()
    args: list[str] = []
    warnings: list[str] = []
    done: list[Path] = []
    for target in sorted({p.resolve() for p in hide if p.exists()}, key=lambda p: len(p.parts)):
        if any(_inside(target, d) for d in done) or target == Path("/"):
            continue
        if any(_inside(target, Path(p)) for p in ("/dev", "/proc")):
            continue  # the sandbox has its own /dev and /proc
        if _inside(target, Path("/tmp").resolve()) and not any(_inside(n, target) for n in needed):
            continue  # the sandbox has its own empty /tmp; only what is bound back needs hiding
        if any(_inside(target, n) for n in needed):
            warnings.append(f"{target} holds the Python installation; it stays visible")
            continue
        if not target.is_dir():  # a file (e.g. a worktree's .git): an empty file over it
            args += ["--ro-bind", "/dev/null", str(target)]
            done.append(target)
            continue
        args += ["--tmpfs", str(target)]
        for path in needed:
            if _inside(path, target) and not any(
                    other != path and _inside(path, other) for other in needed):
                args += ["--ro-bind", str(path), str(path)]
        args += ["--remount-ro", str(target)]
        done.append(target)
    return args, warnings


def worker_env(scratch: str) -> dict[str, str]:
    """A minimal environment: the grader's own variables (tokens...) are not passed on."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
           "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class PidsCgroup:
    """Best effort: a pids cgroup capping the zygote's process count (fork bombs), because as
    root RLIMIT_NPROC is not enforced. Silently absent where cgroups are not writable."""

    ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")

    def __init__(self, name: str, max_pids: int):
        self.path: str | None = None
        for root in self.ROOTS:
            if not os.path.exists(os.path.join(root, "cgroup.procs")):
                continue
            self._sweep(root)
            path = os.path.join(root, name)
            try:
                os.makedirs(path, exist_ok=True)
                with open(os.path.join(path, "pids.max"), "w") as f:
                    f.write(str(max_pids))
                self.path = path
                return
            except OSError:
                try:
                    os.rmdir(path)
                except OSError:
                    pass

    @staticmethod
    def _sweep(root: str) -> None:
        """Remove cgroups left by graders that were killed (empty ones only)."""
        try:
            names = [n for n in os.listdir(root) if n.startswith("vitcourse-grade-")]
        except OSError:
            return
        for name in names:
            try:
                pid = int(name.split("-")[2])
                os.kill(pid, 0)
                continue  # that grader is still running
            except (ValueError, IndexError, PermissionError):
                continue
            except ProcessLookupError:
                pass
            try:
                os.rmdir(os.path.join(root, name))
            except OSError:
                pass

    def remove(self) -> bool:
        """Remove the cgroup once its processes are gone (waits up to a second); whether it is."""
        if self.path:
            for _ in range(50):
                try:
                    os.rmdir(self.path)
                    self.path = None
                    return True
                except FileNotFoundError:
                    self.path = None
                    return True
                except OSError:
                    time.sleep(0.02)
            return False
        return True


def _world_readable(path: str) -> bool:
    """Whether any user can reach and read ``path`` (every parent folder searchable)."""
    import stat

    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        parent = os.path.dirname(path)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            if parent == os.path.dirname(parent):
                return True
            parent = os.path.dirname(parent)
    except OSError:
        return False


def unreadable_by_nobody() -> str | None:
    """The first file of the Python installation (interpreter, torch, this package) that the
    user ``nobody`` cannot reach and read, or None when it can run the worker."""
    import torch

    import vitcourse

    for path in (sys.executable, torch.__file__, vitcourse.__file__):
        if not _world_readable(path):
            return os.path.realpath(path)
    return None


@dataclass
class WorkerConfig:
    sandbox: str  # "bwrap" or "none"
    hide: list[Path] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    run_as: int | None = None  # without a sandbox, the uid student code is switched to (root only)


class Zygote:
    """One pre-imported worker template; grades one submission at a time (one per job slot)."""

    def __init__(self, config: WorkerConfig, slot: int = 0):
        self.config = config
        self.slot = slot
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.cgroup: PidsCgroup | None = None
        self._stale_cgroups: list[PidsCgroup] = []  # of stopped workers whose processes were still exiting
        self._starts = 0
        self._log = None
        self._closed = False
        # The batch's main thread closes every zygote when grading stops (a tampered gradebook, an
        # interrupt) while a slot's thread may be stopping or restarting the same one.
        self._lock = threading.RLock()

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._closed:
            raise RuntimeError("grading was stopped: no new worker starts")
        parent, child = socket.socketpair()
        sandboxed = self.config.sandbox == "bwrap"
        command = [sys.executable, "-m", "vitcourse.grading.untrusted.worker",
                   "--control-fd", str(child.fileno())] + (["--sandboxed"] if sandboxed else [])
        if sandboxed:
            hide_args, _ = hiding_args(self.config.hide)
            command = [bwrap_path(), *_base_bwrap_args(), *hide_args, "--chdir", "/tmp",
                       "--clearenv", *sum((["--setenv", k, v] for k, v in
                                           worker_env("/tmp/work").items()), []), "--", *command]
            # A new cgroup for every start: a killed worker's processes may still be exiting in
            # the last one, and would count against the new worker's process limit.
            self._starts += 1
            self.cgroup = PidsCgroup(f"vitcourse-grade-{os.getpid()}-{self.slot}-{self._starts}",
                                     self.config.limits.nproc + 64)
            if self.cgroup.path:  # join the cgroup before bwrap starts, so nothing escapes it
                command = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"',
                           self.cgroup.path, *command]
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command, pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, cwd="/" if sandboxed else tempfile.gettempdir(),
            env=None if sandboxed else worker_env(tempfile.gettempdir()), start_new_session=True)
        child.close()
        self.control = parent
        try:
            event = wire.recv(parent, 1 << 20, time.monotonic() + 180)
        except wire.ChannelError as exc:
            log = self._read_log()
            self.stop()
            raise RuntimeError(f"the grading worker did not start ({exc}); its output:\n{log}") from None
        if type(event) is not dict or event.get("event") != "ready":
            self.stop()
            raise RuntimeError("the grading worker sent an unexpected first message")

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-4000:].decode("utf-8", "replace")

    def stop(self) -> None:
        """Stop the zygote and everything in its sandbox."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self.control is not None:
            try:
                self.control.sendall(CONTROL_QUIT)
            except OSError:
                pass
            self.control.close()
            self.control = None
        if self.process is not None:
            # Only while it is unreaped (running or a zombie) is its pid, and its group's, still its own.
            if self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except OSError:
                    pass
            self.process.kill()
            self.process.wait()
            self.process = None
        if self.cgroup is not None:
            if not self.cgroup.remove():
                self._stale_cgroups.append(self.cgroup)
            self.cgroup = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Stop for good (grading is stopping): a later session raises instead of restarting."""
        with self._lock:
            self._closed = True
            self.stop()
            self._stale_cgroups = [cgroup for cgroup in self._stale_cgroups if not cgroup.remove()]

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- one submission ---------------------------------------------------------------------
    def session(self, cells: list[dict], n_requests: int) -> Session:
        if not self.alive():
            self.restart()
        return Session(self, cells, n_requests)


class Session:
    """One fresh child running one student's notebook; ``request`` sends one call."""

    def __init__(self, zygote: Zygote, cells: list[dict], n_requests: int):
        self.zygote = zygote
        self.limits = zygote.config.limits
        self.dead: str | None = None  # why the child is gone, in words for the student
        self.cell_errors: list[dict] = []
        self._output = bytearray()
        self._output_total = 0
        self._flooded = False
        self._exit: dict | None = None
        self._scratch = None
        limits = self.limits
        spec = {"memory_mb": limits.memory_mb, "nproc": limits.nproc, "fsize_mb": limits.fsize_mb,
                "cpu_seconds": int(limits.timeout * (n_requests + 1)) + 1,
                "max_reply_bytes": limits.max_reply_bytes}
        if zygote.config.sandbox != "bwrap":
            self._scratch = tempfile.mkdtemp(prefix="vitcourse-scratch-")
            spec["scratch"] = self._scratch
            run_as = zygote.config.run_as
            if run_as is not None:
                os.chown(self._scratch, run_as, run_as)
                spec["drop_uid"] = run_as
        ours, theirs = socket.socketpair()
        out_read, out_write = os.pipe()
        try:
            socket.send_fds(zygote.control, [CONTROL_RUN], [theirs.fileno(), out_write])
            wire.send(zygote.control, spec)
            event = wire.recv(zygote.control, 1 << 20, time.monotonic() + 30)
            if type(event) is not dict or event.get("event") != "started":
                raise wire.ChannelError("unexpected event")
        except (OSError, wire.ChannelError) as exc:
            theirs.close()
            os.close(out_write)
            os.close(out_read)
            ours.close()
            zygote.stop()  # the next session starts a fresh zygote
            raise StudentCrashed(f"the grading worker stopped responding ({exc})") from None
        theirs.close()
        os.close(out_write)
        self.sock = ours
        self._reader = threading.Thread(target=self._read_output, args=(out_read,), daemon=True)
        self._reader.start()
        self.cells = cells

    def run_notebook(self, reference_answers: dict[str, str] | None = None) -> None:
        """Run the notebook's cells in the child, with ``reference_answers`` guarded (see
        ``guard``); raises StudentCrashed if that kills it."""
        reply = self._exchange({"op": "exec", "cells": self.cells, "reference_answers": dict(reference_answers or {})},
                               "running your notebook's cells")
        value = reply.get("value") if type(reply) is dict else None
        errors = value.get("cell_errors") if type(value) is dict else None
        if type(errors) is not list:
            self._fail("the worker sent a malformed reply")
        for e in errors:
            if type(e) is dict and all(type(e.get(k)) is str for k in ("type_name", "message")):
                self.cell_errors.append({"index": e.get("index"), "type_name": e["type_name"][:200],
                                         "message": e["message"][:2000]})

    # -- output ---------------------------------------------------------------------------------
    def _read_output(self, fd: int) -> None:
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while True:
                try:
                    chunk = pipe.read(65536)
                except OSError:
                    return
                if not chunk:
                    return
                self._output_total += len(chunk)
                room = self.limits.keep_output_bytes - len(self._output)
                if room > 0:
                    self._output += chunk[:room]
                if self._output_total > self.limits.max_output_bytes and not self._flooded:
                    self._flooded = True
                    self._kill()

    def output(self) -> str:
        text = self._output.decode("utf-8", "replace")
        if self._output_total > len(self._output):
            text += f"\n[... {self._output_total - len(self._output)} more bytes of output not shown]"
        return text

    # -- requests -------------------------------------------------------------------------------
    def request(self, message: dict) -> Any:
        return self._exchange(message, "running a hidden test's call")

    def _exchange(self, message: dict, doing: str) -> Any:
        if self.dead:
            raise StudentCrashed(self.dead)
        deadline = time.monotonic() + self.limits.timeout
        try:
            wire.send(self.sock, message, deadline)
            return wire.recv(self.sock, self.limits.max_reply_bytes, deadline)
        except wire.ChannelTimeout:
            self._kill()
            self._fail(f"stopped after {self.limits.timeout:g} s while {doing} (the time limit)")
        except (wire.ChannelError, OSError) as exc:
            self._kill()
            self._fail(self._why_gone(doing, exc))

    def _fail(self, why: str) -> None:
        self.dead = why
        raise StudentCrashed(why)

    def _why_gone(self, doing: str, exc: Exception) -> str:
        status = self._wait_exit()
        if self._flooded:
            return (f"your code printed more than {self.limits.max_output_bytes // (1024 * 1024)} MB "
                    f"while {doing} and was stopped")
        if "exceeds the limit" in str(exc):
            return f"your code returned too much data while {doing} ({exc})"
        if status is None:
            return f"the worker stopped responding while {doing}"
        if status.get("signal") is not None:
            name = _signal_name(status["signal"])
            hint = {"SIGXCPU": " (the CPU time limit)",
                    "SIGKILL": " (killed: memory, process or time limit, or your code killed it)",
                    "SIGSEGV": " (a crash in native code, often memory exhaustion)"}.get(name, "")
            return f"your code's process was killed by {name}{hint} while {doing}"
        return (f"your code's process exited (status {status.get('code')}) while {doing}; "
                f"sys.exit/os._exit and closing the worker's channel end the grading of that "
                f"part")

    # -- ending ---------------------------------------------------------------------------------
    def _kill(self) -> None:
        try:
            self.zygote.control.sendall(CONTROL_KILL)
        except (OSError, AttributeError):
            pass

    def _wait_exit(self, timeout: float = 10.0) -> dict | None:
        if self._exit is not None:
            return self._exit
        if self.zygote.control is None:
            return None
        try:
            event = wire.recv(self.zygote.control, 1 << 20, time.monotonic() + timeout)
        except wire.ChannelError:
            self.zygote.stop()  # it is stuck or gone: a fresh one starts for the next student
            return None
        if type(event) is dict and event.get("event") == "exited":
            self._exit = event
            if not event.get("clean", False):
                self.zygote.stop()
        return self._exit

    def close(self) -> None:
        """End the child (it exits when the channel closes) and wait until it is cleaned up."""
        try:
            self.sock.close()
        except OSError:
            pass
        if self._wait_exit(timeout=5.0) is None and self.zygote.control is not None:
            self._kill()
            self._wait_exit(timeout=5.0)
        self._reader.join(timeout=5.0)
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)


def main() -> int:
    """``python -m vitcourse.grading.trusted.sandbox``: exit status 0 when bubblewrap can sandbox the
    worker here, 1 (saying why on stderr) when it cannot. Gradescope's run script asks this."""
    problem = bwrap_problem()
    if problem is not None:
        print(f"bubblewrap cannot sandbox the grader's worker here: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
