"""Unit tests of the grader's parts that need no sandbox: notebook parsing, the data-only
channel, the hidden-test checks, the proxy's reply checking, the gradebook and the CLI's errors."""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
import time

import pytest
import torch

from vitcourse.course import values
from vitcourse.grading import wire
from vitcourse.grading.hidden import (
    GradingFailure,
    StudentCrashed,
    StudentRaised,
    expect_number,
    expect_raises,
    expect_tensor,
    points,
)
from vitcourse.grading.notebooks import InvalidNotebook, parse_notebook
from vitcourse.grading.trusted.proxy import Student, interpret
from vitcourse.grading.untrusted.calls import handle
from vitcourse.grading.untrusted.cells import python_source, run_cells

# -- notebooks -----------------------------------------------------------------------------------


def _nb(*sources, **extra) -> bytes:
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "source": s} for s in sources]
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells,
                       **extra}).encode()


def test_magics_and_shell_lines_become_pass_keeping_blocks_valid():
    src = "%matplotlib inline\nif True:\n    !pip install x\n    files = !ls\nx = '%d' % 3\n"
    out = python_source(src)
    ns = {}
    exec(compile(out, "<t>", "exec"), ns)
    assert ns["x"] == "3"
    assert "pip" not in out and "ls" not in out


def test_valid_python_with_percent_is_untouched_and_cell_magics():
    assert python_source("s = '''\n%not a magic\n'''") == "s = '''\n%not a magic\n'''"
    assert python_source("%%bash\nrm -rf /") is None
    assert python_source("%%writefile x.py\nprint(1)") is None
    ns = {}
    exec(python_source("%%time\ny = 5"), ns)
    assert ns["y"] == 5


def test_cells_keep_going_after_an_error_and_system_exit():
    cells = parse_notebook(_nb("a = 1", "raise ValueError('boom')", "import sys\nsys.exit(0)",
                               "b = a + 1", "def broken(:\n  pass"))
    ns = {}
    errors = run_cells(cells, ns)
    assert ns["b"] == 2
    assert [(e.index, e.type_name) for e in errors] == [(1, "ValueError"), (2, "SystemExit"),
                                                       (4, "SyntaxError")]


def test_ipython_helpers_exist_and_do_nothing():
    from vitcourse.grading.untrusted.cells import notebook_builtins

    ns = dict(notebook_builtins())
    cells = parse_notebook(_nb("get_ipython().run_line_magic('matplotlib', 'inline')\n"
                               "display(3)\nx = 1"))
    assert run_cells(cells, ns) == [] and ns["x"] == 1


def test_notebook_metadata_and_tags_have_no_effect():
    raw = json.loads(_nb("x = 1", "raise RuntimeError('e')", "y = 2"))
    raw["cells"][1]["metadata"] = {"tags": ["raises-exception", "nbval-skip"]}
    raw["metadata"] = {"kernelspec": {"name": "evil"}, "allow_errors": False}
    ns = {}
    errors = run_cells(parse_notebook(json.dumps(raw).encode()), ns)
    assert ns["x"] == 1 and ns["y"] == 2 and len(errors) == 1


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'{"cells": 3}', b'{"nbformat": 4}',
                                  b'{"cells": [{"cell_type": "code", "source": 5}]}', b"\xff\xfe"])
def test_unparsable_notebooks_raise_invalid_notebook(data):
    with pytest.raises(InvalidNotebook):
        parse_notebook(data)


def test_list_sources_and_nbformat3():
    cells = parse_notebook(_nb(["a = ", "1\n"]))
    assert cells[0].source == "a = 1\n"
    v3 = {"nbformat": 3, "worksheets": [{"cells": [{"cell_type": "code", "input": "z = 3"}]}]}
    assert parse_notebook(json.dumps(v3).encode())[0].source == "z = 3"


# -- the channel ---------------------------------------------------------------------------------


class _Sub(torch.Tensor):
    pass


class _LyingEq:
    def __eq__(self, other):
        return True


def test_to_data_accepts_plain_values_and_copies_views():
    big = torch.arange(1000.0)
    value = values.to_data({"a": (1, 2.5, True, None, "s"), "t": big[:3], "size": big.shape})
    assert value["size"] == (1000,) and type(value["size"]) is tuple
    data = wire.encode(value)
    assert len(data) < 2000  # the view did not drag its 1000-element storage along
    back = values.check_data(wire.decode(data))
    assert torch.equal(back["t"], torch.tensor([0.0, 1.0, 2.0])) and back["a"][4] == "s"


@pytest.mark.parametrize("bad", [_LyingEq(), torch.ones(2).as_subclass(_Sub), [object()],
                                 {1.5: 1}, torch.ones(2).to_sparse(), (lambda: 0)])
def test_to_data_rejects_everything_else(bad):
    with pytest.raises(values.DisallowedValue):
        values.to_data(bad)


def test_to_argument_sends_a_state_dict_as_a_dict_and_names_the_senders_bug():
    from collections import OrderedDict

    sent = values.to_argument(OrderedDict(w=torch.ones(2)), "state_dict", "contract")
    assert type(sent) is dict and torch.equal(sent["w"], torch.ones(2))
    with pytest.raises(TypeError, match=r"^hidden test bug: inputs must be plain data, got a value of type builtins.object"):
        values.to_argument((object(),), "inputs", "hidden test")


def test_check_data_rejects_what_weights_only_load_can_still_build():
    from collections import OrderedDict

    for bad in (OrderedDict(a=1), torch.Size([2]), torch.float32, torch.ones(2).requires_grad_()):
        with pytest.raises(values.DisallowedValue):
            values.check_data(bad)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_decode_refuses_pickled_objects():
    import pickle

    with pytest.raises(wire.ChannelError):
        wire.decode(pickle.dumps(_LyingEq()))
    payload = io.BytesIO()
    torch.save(_LyingEq(), payload)
    with pytest.raises(wire.ChannelError):
        wire.decode(payload.getvalue())


def test_decode_refuses_a_tensor_larger_than_its_storage():
    import zipfile

    buffer = io.BytesIO()
    torch.save({"v": torch.zeros(10)}, buffer)
    original = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    pkl = next(n for n in original.namelist() if n.endswith("data.pkl"))
    data = original.read(pkl)
    at = data.find(b"K\n\x85")  # the pickled size (10,)
    assert at > 0
    forged = data[:at] + b"J\x00\x00\x00\x01\x85" + data[at + 3:]  # size (2**24,)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in original.namelist():
            z.writestr(original.getinfo(name), forged if name == pkl else original.read(name))
    with pytest.raises(wire.ChannelError):  # never a view past the end of the storage
        wire.decode(out.getvalue())


def test_decode_refuses_compressed_archives_and_check_data_caps_shared_graphs():
    import zipfile

    buffer = io.BytesIO()
    torch.save({"v": torch.zeros(1000)}, buffer)
    original = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in original.namelist():
            z.writestr(name, original.read(name))
    with pytest.raises(wire.ChannelError, match="compressed"):
        wire.decode(out.getvalue())
    with pytest.raises(wire.ChannelError):
        wire.decode(b"not a zip at all")
    graph: list = [0]
    for _ in range(30):  # 2**30 leaves, 31 distinct lists
        graph = [graph, graph]
    with pytest.raises(values.DisallowedValue, match="parts"):
        values.check_data(graph)


def test_recv_checks_the_size_before_reading_and_times_out():
    a, b = socket.socketpair()
    a.sendall(wire.HEADER.pack(10**12))
    with pytest.raises(wire.ChannelError, match="exceeds the limit"):
        wire.recv(b, max_bytes=1 << 20)
    import time

    with pytest.raises(wire.ChannelTimeout):
        wire.recv(b, max_bytes=1 << 20, deadline=time.monotonic() + 0.1)
    a.close()
    b.close()


def test_send_gives_up_when_the_peer_stops_reading():
    import time

    a, b = socket.socketpair()
    start = time.monotonic()
    with pytest.raises(wire.ChannelTimeout):
        wire.send(a, {"x": torch.zeros(8_000_000)}, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - start < 5
    a.close()
    b.close()


def test_send_recv_round_trip_over_a_socket():
    a, b = socket.socketpair()
    message = {"x": torch.randn(3, 4), "n": 3}
    thread = threading.Thread(target=wire.send, args=(a, message))
    thread.start()
    got = wire.recv(b, max_bytes=1 << 20)
    thread.join()
    assert torch.equal(got["x"], message["x"]) and got["n"] == 3


# -- the proxy and the worker-side request handler -------------------------------------------------


def _student(namespace) -> Student:
    def transport(request):
        return wire.decode(wire.encode(handle(namespace, wire.decode(wire.encode(request)))))

    return Student(transport)


def test_call_module_and_raised_exceptions():
    ns = {"__name__": "__main__"}
    exec("import torch\nfrom torch import nn\n"
         "def f(x, k=1, name=''): return x * k\n"
         "def g(): raise ValueError('no')\n"
         "class MyError(ValueError): pass\n"
         "def h(): raise MyError('mine')\n"
         "class ValueError(Exception): __module__ = 'builtins'\n"
         "FakeValueError = ValueError\n"
         "del ValueError\n"
         "def fake(): raise FakeValueError('fake')\n"
         "class M(nn.Module):\n"
         "    def __init__(self, d):\n"
         "        super().__init__(); self.lin = nn.Linear(d, 2)\n"
         "    def forward(self, x): return self.lin(x)\n", ns)
    student = _student(ns)
    x = torch.randn(2, 3)
    assert torch.equal(student.call("f", x, k=3, name="n"), x * 3)  # 'name' is a fine kwarg
    with pytest.raises(StudentRaised) as info:
        student.call("g")
    assert info.value.type_name == "ValueError" and "no" in str(info.value)
    expect_raises(lambda: student.call("h"), "ValueError", name="h")  # a subclass counts
    with pytest.raises(GradingFailure):
        expect_raises(lambda: student.call("fake"), "ValueError", name="fake")  # not builtin
    with pytest.raises(StudentRaised, match="NameError"):
        student.call("missing")
    reference = torch.nn.Linear(3, 2)
    state = {f"lin.{k}": v for k, v in reference.state_dict().items()}
    got = student.module("M", init_args=(3,), state_dict=state, inputs=(x,))
    assert got["state_dict_shapes"] == {"lin.weight": (2, 3), "lin.bias": (2,)}
    expect_tensor(got["output"], reference(x).detach(), name="M")
    with pytest.raises(StudentRaised) as info:
        student.module("M", init_args=(4,), state_dict=state, inputs=(x,))
    assert info.value.type_name == "StateDictMismatch"


@pytest.mark.parametrize("reply", [None, [], {"ok": "yes"}, {"ok": False, "kind": "raised"},
                                   {"ok": True, "value": object()}, {"ok": False, "kind": "?"}])
def test_malformed_replies_are_crashes(reply):
    with pytest.raises(StudentCrashed):
        interpret(reply)


# -- the checks ----------------------------------------------------------------------------------


def test_expect_tensor_checks_type_dtype_shape_finiteness_values():
    ref = torch.randn(4, 5, dtype=torch.float64)
    expect_tensor(ref + 1e-13, ref, name="x")
    for got, why in [(ref.float(), "dtype"), (ref[:2], "shape"), (ref.tolist(), "torch.Tensor"),
                     (ref.as_subclass(_Sub), "torch.Tensor"), (ref + 1e-3, "differ"),
                     (torch.where(ref > 0, torch.inf, ref), "inf or nan")]:
        with pytest.raises(GradingFailure, match=why):
            expect_tensor(got, ref, name="x")
    ints = torch.arange(5)
    with pytest.raises(GradingFailure, match="exactly"):
        expect_tensor(ints + (ints == 2), ints, name="i")


def test_expect_number_refuses_bool_tensor_and_lying_subclasses():
    class Yes(int):
        def __eq__(self, other):
            return True

    expect_number(3, 3, name="n", exact_int=True)
    expect_number(0.1 + 0.2, 0.3, name="n")
    for bad in (True, torch.tensor(3), Yes(4), _LyingEq(), 3.0):
        with pytest.raises(GradingFailure):
            expect_number(bad, 3, name="n", exact_int=True)
    with pytest.raises(GradingFailure):
        expect_number(3.1, 3.0, name="n")


def test_expect_items_takes_a_tuple_or_list_of_the_right_length():
    from vitcourse.course.expectations import expect_items

    out, lse = torch.zeros(2), torch.ones(2)
    assert expect_items([out, lse], ("out", "lse"), name="f") == (out, lse)
    for bad, why in [((out,), r"a pair \(out, lse\), got a tuple of 1 items"), (out, "got a tensor of shape"),
                     ((out, lse, out), "got a tuple of 3 items"), ({"out": out, "lse": lse}, "got a dict")]:
        with pytest.raises(GradingFailure, match=why):
            expect_items(bad, ("out", "lse"), name="f")
    with pytest.raises(GradingFailure, match=r"f: expected a triple \(a, b, c\)"):
        expect_items((1, 2), ("a", "b", "c"), name="f")


def test_points_validates_and_keeps_the_function():
    @points(2.5)
    def test_x():
        return 1

    assert test_x.points == 2.5 and test_x() == 1
    with pytest.raises(TypeError):
        points(True)
    with pytest.raises(ValueError):
        points(0)


# -- gradebook exports ----------------------------------------------------------------------------


def test_gradebook_csv_quotes_ids_and_replaces_rows(tmp_path):
    from vitcourse.grading.trusted.gradebook import Gradebook, safe_dirname, write_results_json
    from vitcourse.grading.trusted.scoring import SubmissionResult, TestResult

    book = Gradebook(tmp_path / "gb.sqlite")
    weird = 'o\'brien, "jr"\nline2'
    for student, pts in ((weird, 1.0), ("bob", 2.0), (weird, 2.0)):
        result = SubmissionResult(student, "00_fake", "abc", "p", "graded", started_at=1.0,
                                  finished_at=2.0, tests=[
                                      TestResult("test_a", "A works.", pts, 2.0,
                                                 "passed" if pts == 2 else "failed", "msg",
                                                 detail="Traceback: secret hidden source")])
        book.record(result)
    book.export_csv(tmp_path / "grades.csv")
    with open(tmp_path / "grades.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["student", "exercise", "score", "max_score", "status"]
    assert sorted(r[0] for r in rows[1:]) == sorted(["bob", weird])
    assert all(r[2] == "2" for r in rows[1:])
    path = write_results_json(book, tmp_path, weird, "00_fake").path
    assert path.parent.parent == tmp_path / "results" and path.parent.name == safe_dirname(weird)
    data = json.loads(path.read_text())
    assert data["score"] == 2.0 and data["tests"][0]["status"] == "passed"
    assert "secret" not in path.read_text()
    for bad in ("..", ".", "a/b", ""):
        assert "/" not in safe_dirname(bad) and safe_dirname(bad) not in ("..", ".", "")


def test_cli_errors_are_clear(tmp_path, capsys):
    from vitcourse.cli import main

    assert main(["grade", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--exercise ID is required" in capsys.readouterr().err
    assert main(["grade", "--exercise", "nope", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--hidden-dir", str(tmp_path)]) == 2
    assert "no hidden tests" in capsys.readouterr().err
    assert main(["grade", "--exercise", "x", str(tmp_path / "missing"), "--out", "o"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["grade", "--gradescope-bundle", "x", "--exercise", "x"]) == 2
    assert main(["grade", "--gradescope-bundle", "../x"]) == 2
    assert "not a valid exercise id" in capsys.readouterr().err


def test_hiding_args_hide_folders_files_and_keep_the_python_installation(tmp_path):
    import sys
    from pathlib import Path

    from vitcourse.grading.trusted.sandbox import hiding_args

    repo = Path(__file__).resolve().parents[1]
    args, warnings = hiding_args([repo, repo / "tests", tmp_path, Path(sys.prefix),
                                  repo / "pyproject.toml"])
    text = " ".join(args)
    assert f"--tmpfs {repo} " in text and f"--remount-ro {repo}" in text
    assert str(repo / "tests") not in text  # already hidden with the repository
    assert str(tmp_path) not in text  # the sandbox has its own empty /tmp
    assert f"--ro-bind {repo / 'vitcourse'} {repo / 'vitcourse'}" in text  # bound back
    assert any("Python installation" in w for w in warnings) or str(Path(sys.prefix)).startswith(
        str(repo))
    this_file = Path(__file__).resolve()
    file_args, _ = hiding_args([this_file])
    if this_file.is_relative_to(Path("/tmp").resolve()):  # a checkout under /tmp (a CI clone)
        assert file_args == []  # the sandbox's /tmp is empty: nothing there to hide
    else:
        assert file_args == ["--ro-bind", "/dev/null", str(this_file)]


def test_a_pids_cgroup_is_removed_only_once_its_processes_are_gone():
    """Zygote.stop keeps a cgroup whose processes are still exiting and removes it at close; a
    restarted worker gets a new one (a dying worker's processes would count against its limit)."""
    import os
    import subprocess

    from vitcourse.grading.trusted.sandbox import PidsCgroup

    cgroup = PidsCgroup(f"vitcourse-grade-{os.getpid()}-test-{time.monotonic_ns()}", 8)
    if cgroup.path is None:
        pytest.skip("no writable pids cgroup here (not root, or cgroups not mounted)")
    sleeper = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec sleep 30', cgroup.path])
    try:
        deadline = time.monotonic() + 10
        while not open(os.path.join(cgroup.path, "cgroup.procs")).read().strip():
            assert time.monotonic() < deadline, "the process never joined the cgroup"
            time.sleep(0.01)
        assert cgroup.remove() is False and os.path.isdir(cgroup.path)
    finally:
        sleeper.kill()
        sleeper.wait()
    path = cgroup.path
    assert cgroup.remove() is True and not os.path.exists(path) and cgroup.path is None


def test_a_zygote_stopped_from_several_threads_at_once_stops_once():
    """When grading stops (a tampered gradebook), the batch's main thread closes each zygote while
    a slot's thread may be stopping the same one: neither may fail on what the other released."""
    import threading

    from vitcourse.grading.trusted.sandbox import WorkerConfig, Zygote

    for _ in range(3):
        zygote = Zygote(WorkerConfig(sandbox="none"))
        zygote.start()
        worker = zygote.process
        barrier, errors = threading.Barrier(6), []

        def stop(zygote, barrier, errors, close: bool):
            barrier.wait()
            try:
                zygote.close() if close else zygote.stop()
            except Exception as exc:  # noqa: BLE001 - any exception is the failure under test
                errors.append(repr(exc))

        threads = [threading.Thread(target=stop, args=(zygote, barrier, errors, i == 0)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert zygote.process is None and zygote.control is None and worker.poll() is not None
        with pytest.raises(RuntimeError, match="grading was stopped"):
            zygote.start()
