"""The untrusted side: a pre-imported worker template (zygote) that forks one child per submission.

Started by the grader (inside bubblewrap when available) as::

    python -m vitcourse.grading.untrusted.worker --control-fd N [--sandboxed]

The zygote imports torch and friends once, then waits on its control socket. For each submission
the grader passes two fresh file descriptors (SCM_RIGHTS): a socket for the data channel and the
write end of a pipe for the student's stdout/stderr. The zygote forks a child which:

1. starts a new session, points fd 1 and 2 at the output pipe (so prints never touch the
   channel), applies rlimits (address space, CPU seconds, processes, file size, no core);
2. receives the notebook's cells, runs them in a fresh ``__main__`` module, reports the cell
   errors, then answers call requests (``calls.handle``) until the grader closes the wire.

When the child ends (or the grader asks for a kill), the zygote kills everything the student left
running and wipes the writable scratch space before the next student, so no state crosses
students. This module never sees hidden tests, references or the gradebook.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import shutil
import signal
import socket
import sys
import time
import types

from ..prctl import PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, prctl
from ..wire import CONTROL_KILL, CONTROL_QUIT, CONTROL_RUN

SCRATCH = "/tmp/work"  # inside the sandbox: /tmp is a private tmpfs


def _preimport() -> None:
    """Import what submissions use, once, so that each forked child starts warm."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(1)  # one job per core; also keeps the thread count (NPROC) small
    for name in ("numpy", "torch.nn.functional", "einops", "vitcourse", "matplotlib.pyplot",
                 "math", "itertools", "functools", "collections"):
        try:
            __import__(name)
        except Exception:  # an optional library missing is not the zygote's problem
            pass
    from ...course import values  # noqa: F401 - the child needs it
    from .. import notebooks, wire  # noqa: F401
    from . import calls, cells, guard  # noqa: F401


def apply_limits(spec: dict) -> None:
    """setrlimit in the child: memory is counted on top of what the zygote already maps."""

    def limit(which: int, value: int, hard: int | None = None) -> None:
        try:
            resource.setrlimit(which, (value, value if hard is None else hard))
        except (ValueError, OSError):  # e.g. RLIMIT_AS on macOS: the other limits still apply
            pass

    limit(resource.RLIMIT_CORE, 0)
    try:
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        mapped = None  # no /proc (macOS, where RLIMIT_AS is not enforced anyway): no memory cap
    if mapped is not None:
        limit(resource.RLIMIT_AS, mapped + int(spec["memory_mb"]) * 1024 * 1024)
    limit(resource.RLIMIT_CPU, int(spec["cpu_seconds"]), int(spec["cpu_seconds"]) + 2)
    limit(resource.RLIMIT_FSIZE, int(spec["fsize_mb"]) * 1024 * 1024)
    if spec.get("nproc"):
        if spec.get("sandboxed"):
            limit(resource.RLIMIT_NPROC, int(spec["nproc"]))  # counted inside our namespace
        else:
            # counted over all of this user's threads on the machine: allow nproc more
            tasks = _count_user_tasks()
            if tasks is not None:
                limit(resource.RLIMIT_NPROC, tasks + int(spec["nproc"]))
    # writing past FSIZE then fails with an OSError the student can see, instead of a signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _count_user_tasks() -> int | None:
    """Threads of processes owned by this user (what RLIMIT_NPROC counts); None without /proc."""
    uid = str(os.getuid())
    total = 0
    try:
        entries = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in entries:
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if fields.get("Uid", "").split()[:1] == [uid]:
            total += int(fields.get("Threads", "1").strip() or 1)
    return total


def _child(channel_fd: int, output_fd: int, control_fd: int, spec: dict) -> None:
    """The forked child: becomes the student's process. Never returns."""
    code = 0
    try:
        os.close(control_fd)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(devnull)
        os.close(output_fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        scratch = spec["scratch"]
        os.makedirs(scratch, exist_ok=True)
        os.chdir(scratch)
        os.environ.update(HOME=scratch, TMPDIR=scratch)
        if spec.get("drop_uid") is not None:  # root without a sandbox: run as nobody
            os.setgroups([])
            os.setgid(int(spec["drop_uid"]))
            os.setuid(int(spec["drop_uid"]))
        apply_limits(spec)
        _serve(socket.socket(fileno=channel_fd), spec)
    except BaseException:  # noqa: B036 - whatever happens, end this process here
        code = 70
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: B036
                pass
        os._exit(code)


def _serve(sock: socket.socket, spec: dict) -> None:
    from .. import wire
    from ..notebooks import Cell
    from .calls import handle
    from .cells import notebook_builtins, run_cells
    from .guard import ReferenceGuards

    max_reply = int(spec["max_reply_bytes"])
    request = wire.recv(sock, max_bytes=1 << 34)
    cells = [Cell(int(c["index"]), str(c["source"])) for c in request["cells"]]
    module = types.ModuleType("__main__")
    module.__dict__.update(notebook_builtins())
    sys.modules["__main__"] = module
    namespace = module.__dict__
    # Before any student code runs, so that no import of a reference escapes its guard.
    ReferenceGuards(request.get("reference_answers") or {}, cells_namespace=namespace).install()
    errors = run_cells(cells, namespace)
    _reply(sock, {"ok": True, "value": {"cell_errors": [
        {"index": e.index, "type_name": e.type_name, "message": e.message} for e in errors]}},
        max_reply)
    while True:
        try:
            request = wire.recv(sock, max_bytes=1 << 34)
        except wire.ChannelError:
            return  # the grader closed the channel: done
        _reply(sock, handle(namespace, request), max_reply)


def _reply(sock: socket.socket, reply: dict, max_reply: int) -> None:
    from .. import wire

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: B036 - a student may have replaced or closed them
            pass
    data = wire.encode(reply)
    if len(data) > max_reply:
        data = wire.encode({"ok": False, "kind": "disallowed", "message":
                               f"your code returned {len(data)} bytes of data; the limit is "
                               f"{max_reply} bytes"})
    sock.sendall(wire.HEADER.pack(len(data)) + data)


def _other_pids() -> list[int]:
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]


def _descendants() -> list[int]:
    """Children of this process (orphans come back to us: we are a subreaper)."""
    found = []
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                found += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_everything(sandboxed: bool) -> bool:
    """Kill whatever the reaped child left behind; True when nothing is left.

    Only live processes are signalled: a pid that has been reaped may already belong to an
    unrelated process (pids wrap around quickly on a machine running fork bombs)."""
    for _ in range(50):
        if sandboxed:
            # we are alone in a PID namespace with bubblewrap's init: -1 means "all the others"
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
        else:
            for pid in _descendants():  # our unreaped children: their pids are still theirs
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        time.sleep(0.005)
        _reap()
        left = _other_pids() if sandboxed else _descendants()
        if not left:
            return True
    return False


def _wipe(path: str) -> bool:
    """Empty a writable directory (students may leave read-only files and folders)."""

    def retry(function, name, _exc):
        try:
            os.chmod(os.path.dirname(name), 0o700)
            os.chmod(name, 0o700)
            function(name)
        except OSError:
            pass

    if not os.path.isdir(path):
        return True
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, onerror=retry)
        else:
            try:
                os.unlink(full)
            except OSError:
                pass
    return not os.listdir(path)


def _describe_status(status: int) -> dict:
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status), "code": None}
    return {"signal": None, "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}


def zygote(control_fd: int, sandboxed: bool) -> None:
    from .. import wire

    control = socket.socket(fileno=control_fd)
    prctl(PR_SET_DUMPABLE, 0)  # students' processes cannot ptrace us or read our memory
    if not sandboxed:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    wire.send(control, {"event": "ready", "pid": os.getpid()})
    while True:
        try:
            op, fds, _flags, _addr = socket.recv_fds(control, 1, 2)
        except OSError:
            return
        if op in (b"", CONTROL_QUIT):
            return
        if op != CONTROL_RUN or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        spec = wire.recv(control, max_bytes=1 << 20)
        spec["sandboxed"] = sandboxed
        if sandboxed:
            spec["scratch"] = SCRATCH
        pid = os.fork()
        if pid == 0:
            _child(fds[0], fds[1], control_fd, spec)
        for fd in fds:
            os.close(fd)
        wire.send(control, {"event": "started"})
        _wait(pid, control, sandboxed)
        # The child is a zombie now: its pid, and so its process-group id, cannot be reused yet,
        # so killing its group here can only hit what it left in that group. Then reap it.
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        _, status = os.waitpid(pid, 0)
        clean = _kill_everything(sandboxed)
        if sandboxed:
            clean = _wipe("/tmp") and _wipe("/dev/shm") and clean
        wire.send(control, {"event": "exited", "clean": clean, **_describe_status(status)})


def _wait(pid: int, control: socket.socket, sandboxed: bool) -> None:
    """Wait for the child to end, without reaping it; a kill request from the grader ends it early.
    If the grader is gone, everything the student started is killed before the zygote exits."""
    try:
        waitable = os.pidfd_open(pid)
    except (AttributeError, OSError):
        waitable = None
    try:
        while True:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
            ready, _, _ = select.select([control] + ([waitable] if waitable else []), [], [],
                                        None if waitable else 0.02)
            if control in ready:
                op = control.recv(1)
                if op in (b"", CONTROL_KILL, CONTROL_QUIT):
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                    if op == b"":  # the grader is gone: leave nothing behind
                        _kill_everything(sandboxed)
                        os._exit(0)
    finally:
        if waitable is not None:
            os.close(waitable)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vitcourse.grading.untrusted.worker")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--sandboxed", action="store_true")
    args = parser.parse_args(argv)
    _preimport()
    zygote(args.control_fd, args.sandboxed)


if __name__ == "__main__":
    main()
