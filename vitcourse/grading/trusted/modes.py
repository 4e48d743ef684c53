"""The ``--sandbox`` modes: what each protects against, and how the grader picks one.

- ``auto`` (the default) and ``bwrap``: student code runs in bubblewrap. Where bubblewrap cannot
  run, the grader refuses to start and says why and what to do; it never grades unprotected
  because a protection happened to be missing.
- ``none``: no sandbox, only when asked for by name, and said loudly, once, before grading.

In every mode the trusted side checks that its gradebook, its exports and the hidden tests (and,
without a sandbox, its own code) hold what it wrote and loaded (``integrity``), and stops without
exporting grades if not. This module is the one place that says so in words: ``--help``, the
refusal and the warning are all built here. It imports nothing heavy, so ``vitcourse grade
--help`` stays instant.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from .errors import GraderCannotRun

NOBODY = 65534  # the uid student code runs as when a root grader has no sandbox

CHOICES = ("auto", "bwrap", "none")

HELP = ("auto (the default) or bwrap: bubblewrap, or refuse to start where it cannot run; "
        "none: no sandbox, for submissions you trust (see below)")

EPILOG = """\
sandbox modes (--sandbox):
  auto, bwrap  Student code runs in bubblewrap: no network; a private /tmp; your home, the
               repository, the hidden tests, the gradebook and the other submissions out of sight;
               limits on memory, CPU time, processes, file size and output. Where bubblewrap
               cannot run, the grader refuses to start and says why and what to do.
  none         No sandbox, for submissions you trust: student code runs as you (as the user
               nobody when the grader runs as root) under the same limits, and can read what
               that user can read, use the network, and change what that user can write.

in every mode:
  Scores are decided by the grader, from plain data that the student's code sends back.
  The grader stops (exit status 3) and exports nothing more if its gradebook, its exports or
  the hidden tests (and, with none, the vitcourse package) change behind its back; the message
  names each change.
  No process a submission starts outlives the batch (on Linux).
"""

WHAT_TO_DO = """\
Student code is graded only inside bubblewrap unless you say otherwise. To grade:
  - install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install
    bubblewrap; Arch: sudo pacman -S bubblewrap);
  - or let it create user namespaces: on Ubuntu 23.10 and later,
    sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0 (or give bwrap an AppArmor
    profile); elsewhere, sudo sysctl kernel.unprivileged_userns_clone=1 and a non-zero
    user.max_user_namespaces; a container usually forbids them: grade on its host or in a VM;
  - or grade on Gradescope: vitcourse grade --gradescope-bundle EXERCISE builds the autograder;
  - or, only for submissions you trust, pass --sandbox none (student code then runs unsandboxed,
    as you)."""


@dataclass(frozen=True)
class Sandbox:
    """The mode the grader will use: ``name`` ("bwrap" or "none"), the uid student code is
    switched to (``run_as``, only for a root grader without a sandbox) and the ``warning`` to
    say once before grading (None when there is nothing to warn about)."""

    name: str
    run_as: int | None = None
    warning: str | None = None


def choose_sandbox(requested: str) -> Sandbox:
    """The sandbox for ``--sandbox requested``; raises GraderCannotRun when it cannot be had."""
    if requested not in CHOICES:
        raise GraderCannotRun(f"--sandbox: expected one of {', '.join(CHOICES)}, got {requested!r}")
    if requested == "none":
        return _unsandboxed()
    from .sandbox import bwrap_problem

    problem = bwrap_problem()
    if problem is not None:
        raise GraderCannotRun(f"--sandbox {requested}: cannot grade here: {problem}.\n{WHAT_TO_DO}")
    return Sandbox("bwrap")


def _unsandboxed() -> Sandbox:
    if sys.platform.startswith("linux"):
        leftovers = "kills every process a submission leaves behind, and "
    else:
        leftovers = "cannot stop a process a submission leaves behind from outliving it (not Linux); it "
    tail = (f"The grader {leftovers}stops without exporting grades if its gradebook, its exports, "
            f"the hidden tests or its own code change; it cannot undo what student code read, sent "
            f"or changed elsewhere. Use --sandbox none only for submissions you trust.")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        from .sandbox import unreadable_by_nobody

        unreadable = unreadable_by_nobody()
        if unreadable is not None:
            raise GraderCannotRun(
                f"--sandbox none as root: student code would run as root, because the user nobody "
                f"cannot read {unreadable} (a folder above it is not searchable by other users). "
                f"Install Python and the package where every user can read them, or grade as an "
                f"ordinary user, or with bubblewrap.")
        return Sandbox("none", run_as=NOBODY, warning=(
            "WARNING: --sandbox none: student code runs WITHOUT a sandbox, as the unprivileged "
            "user nobody (the grader runs as root), with resource limits only. It can read every "
            "file that any user may read, use the network, and write wherever any user may. "
            + tail))
    who = f"uid {os.getuid()}" if hasattr(os, "getuid") else "your user"
    return Sandbox("none", warning=(
        f"WARNING: --sandbox none: student code runs WITHOUT a sandbox, as you ({who}), with "
        f"resource limits only. It can read every file you can read (the hidden tests, the other "
        f"submissions, your own files), use the network, and change or delete any file you can "
        f"write, while the batch runs. " + tail))
