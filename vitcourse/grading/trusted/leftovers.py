"""No process a submission starts outlives the batch that graded it.

Student code can start processes that leave the worker's tree: a daemon (fork, setsid, fork), or
any process after it killed its parent, the worker template. Inside bubblewrap they all die with
the sandbox's PID namespace. Without it (``--sandbox none``) they would live on and could, say,
rewrite grades.csv once the grader has exported it.

So while a batch runs, the grader is a child subreaper (Linux's ``PR_SET_CHILD_SUBREAPER``): every
orphan below it becomes its child instead of init's, and :meth:`Leftovers.kill_all` kills and
reaps every child the grader did not have before the batch, until none is left. It is also
non-dumpable for the batch (``PR_SET_DUMPABLE`` 0), so that code running as the same user cannot
ptrace the grader or read its memory through /proc. Both are put back afterwards.
"""

from __future__ import annotations

import os
import signal
import time

from ..prctl import (
    PR_GET_DUMPABLE,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    is_child_subreaper,
    prctl,
)


def _ticks_since_boot() -> int:
    with open("/proc/uptime") as f:
        return int(float(f.read().split()[0]) * os.sysconf("SC_CLK_TCK"))


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _children() -> list[int]:
    """This process's children, from every one of its threads (orphans come to any of them)."""
    found: set[int] = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    found.update(int(p) for p in f.read().split())
            except OSError:
                continue
    except OSError:
        return []
    return sorted(found)


class Leftovers:
    """``with Leftovers() as leftovers: ... leftovers.kill_all()``: see the module's docstring."""

    def __init__(self) -> None:
        self._since: int | None = None
        self._was_subreaper = False
        self._was_dumpable = 1

    def __enter__(self) -> Leftovers:
        try:
            self._since = _ticks_since_boot() - 1  # a tick of rounding: never miss one
        except OSError:
            self._since = None  # no /proc (not Linux): nothing to collect
        self._was_subreaper = is_child_subreaper()
        self._was_dumpable = prctl(PR_GET_DUMPABLE)
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        prctl(PR_SET_DUMPABLE, 0)
        return self

    def __exit__(self, *exc_info) -> None:
        prctl(PR_SET_CHILD_SUBREAPER, int(self._was_subreaper))
        if self._was_dumpable in (0, 1):
            prctl(PR_SET_DUMPABLE, self._was_dumpable)

    def alive(self) -> list[int]:
        """Children that started during the batch (the workers' leftovers once they are stopped)."""
        if self._since is None:
            return []
        return [pid for pid in _children() if (_start_ticks(pid) or -1) >= self._since]

    def kill_all(self, timeout: float = 10.0) -> list[int]:
        """Kill and reap every leftover, and then theirs (they come back to us), until none is
        left; returns the pids still there after ``timeout`` seconds (none, in practice)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.alive()
            if not pids or time.monotonic() > deadline:
                return pids
            for pid in pids:  # our unreaped children: their pids cannot belong to anyone else
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            time.sleep(0.01)
