"""Helpers shared by the reliability tests (test_91 to test_99).

They run ``dnn_mask`` as ``python -m dnnmask_xr.cli`` does, in its own
process, so that a crash, a hang or a signal hits that process and not the
test runner; with ``route=`` they run the same write through the Python API
instead (``tests/routes.py``: ``mask_file`` and ``save_act`` of each
container), which reports the project's errors as the command does, so the
same assertions hold for every route. Each run is forked from a process
that has imported what it would import anyway (``tests/zygote.py``); how
the program itself starts is the console script's test (test_93). Many
cases of one route can also run one after the other in one child
(:func:`run_in_children`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from routes import ROUTES
from zygote import Run, Zygote

from dnnmask_xr import open_act

TESTS = Path(__file__).resolve().parent
SUFFIXES = (".act.h5", ".nc")
#: Every route writing each suffix, (route, suffix): what a guarantee of every write is
#: tested on.
ROUTE_SUFFIXES = [(route, suffix) for route in ROUTES for suffix in SUFFIXES]
PREFIX = "dnn_mask: error: "
#: The writer's temporary files: hidden, beside the file they replace, whatever its name.
TEMP_GLOB = ".dnnmask-*.tmp"
#: Seconds any single run of dnn_mask may take before the test calls it a hang.
TIMEOUT = 120


def computed_once(tmp_path_factory: Any, name: str, compute: Callable[[Path], Any]) -> Any:
    """What ``compute(folder)`` gives, computed by one pytest-xdist worker, read by the others.

    pytest-xdist's way to share a session's expensive result: its workers'
    temporary folders share a parent, where the first worker to take the
    lock computes (in ``folder``, kept for the others) and writes the
    result as JSON, which the others read once the lock is theirs.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if "PYTEST_XDIST_WORKER" in os.environ else base
    result = shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if result.exists():
            return json.loads(result.read_text())
        folder = shared / name
        folder.mkdir(exist_ok=True)
        value = compute(folder)
        result.write_text(json.dumps(value))
        return value


def command(*args: object, route: str = "command") -> list[str]:
    """The argv that runs ``dnn_mask args`` under this test's Python, through ``route``.

    ``"command"`` is ``dnn_mask`` itself (``python -m dnnmask_xr.cli``); the
    other routes (:data:`ROUTES`) write the same output through the Python
    API (``python tests/routes.py ROUTE args``).
    """
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; routes: {', '.join(ROUTES)}")
    argv = [str(arg) for arg in args]
    if route == "command":
        return [sys.executable, "-m", "dnnmask_xr.cli", *argv]
    return [sys.executable, str(TESTS / "routes.py"), route, *argv]


def run_cli(
    *args: object, timeout: float = TIMEOUT, env: Mapping[str, str] | None = None,
    route: str = "command", file_size: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``dnn_mask`` (through ``route``) to its end; past ``timeout`` it is a hang.

    Forked from a zygote (:func:`start_route`), the command as ``python -m
    dnnmask_xr.cli`` runs it, a Python route as ``python tests/routes.py`` does.
    ``file_size`` caps the files the run writes (``zygote.file_size_limit``).
    """
    return finish(start_route(route, args, env=env, file_size=file_size), timeout)


_zygotes: dict[str, Zygote] = {}


def start_route(route: str, args: Sequence[object], *, env: Mapping[str, str] | None = None,
                file_size: int | None = None, stderr: int | None = None) -> Run:
    """Start ``route``'s write of ``dnn_mask args`` in a process of its own (a zygote's fork).

    Two zygotes per test process (``tests/zygote.py``), each started at its
    first call: one has imported what every run of the command imports, the
    other the Python routes, so a run does not spend half a second (the
    command) or a second and a half (a route) importing them again. The
    child's signals are Python's defaults.
    """
    preload = "command" if route == "command" else "routes"
    if preload not in _zygotes:
        _zygotes[preload] = Zygote(preload)
        atexit.register(_zygotes[preload].close)
    return _zygotes[preload].start(route, args, env=env, file_size=file_size, stderr=stderr)


def finish(proc: Run, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Wait for a run to end, as ``subprocess.run`` does: killed past ``timeout``."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess([], proc.returncode, stdout, stderr)


#: The signals that stop a write, as a test sends them to a child.
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def default_signals() -> None:
    """Give a child SIGINT, SIGTERM and SIGHUP at their default dispositions (``preexec_fn``).

    A test that signals a child relies on them: ignored ones are inherited across
    ``exec`` (``python -m pytest &`` in bash starts pytest with SIGINT ignored,
    ``nohup`` with SIGHUP ignored), and then Python installs no KeyboardInterrupt
    handler and ``dnn_mask`` leaves the ignored signal ignored, as it should.
    """
    for signum in STOPPING:
        signal.signal(signum, signal.SIG_DFL)


def start_cli(*args: object, route: str = "command") -> Run:
    """Start ``dnn_mask`` (through ``route``) and return at once; signals at their defaults.

    Forked from a zygote, as :func:`run_cli` runs it.
    """
    return start_route(route, args)


def run_here(*args: object, route: str = "command", env: Mapping[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    """Run one write in this process, as a notebook calls the Python API.

    What :func:`run_cli` returns (status, stdout, stderr), without a process
    to start: for tests where a crash or a hang is not the risk. ``env``
    replaces ``os.environ`` for the run. An uncaught exception is a bug and
    propagates.
    """
    from routes import run

    argv = [str(arg) for arg in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = run(route, argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(argv, status, stdout.getvalue(), stderr.getvalue())


def run_route(*args: object, route: str = "command", env: Mapping[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    """Run one write as its users do: ``dnn_mask`` in its own process, the API in this one."""
    if route == "command":
        return run_cli(*args, env=env)
    return run_here(*args, route=route, env=env)


def assert_ok(done: subprocess.CompletedProcess[str]) -> None:
    """The run succeeded and printed nothing."""
    assert (done.returncode, done.stderr, done.stdout) == (0, "", ""), done.stderr


def assert_one_line_error(stderr: str, *patterns: str, prefix: str = PREFIX) -> str:
    """Stderr is one ``dnn_mask: error:`` line matching ``patterns``; return the message.

    The one check of "one line, no traceback" for every test: no ``Traceback``, a
    single line ending in a newline, starting with ``prefix`` (``"dnn_mask: "`` for the
    line that says an interrupted write was completed); each pattern is searched in the
    message, the line without ``prefix`` and its newline.
    """
    assert "Traceback" not in stderr, stderr
    assert stderr.startswith(prefix), stderr
    assert stderr.endswith("\n") and stderr.count("\n") == 1, f"not one line: {stderr!r}"
    message = stderr[len(prefix):-1]
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    return message


def temp_files(folder: Path, out: Path) -> set[str]:
    """Names of the temporary files the writer makes beside ``out`` (in ``folder``).

    Their names do not say which output they are for: a test's folder holds
    one output's.
    """
    return {path.name for path in folder.glob(TEMP_GLOB)}


def wait_for_temp(proc: subprocess.Popen[str], out: Path, at_least: int) -> int:
    """Wait until the temporary file beside ``out`` holds ``at_least`` bytes.

    Returns its size then. Fails if the process ends first: the kill point
    was missed, and the test would otherwise prove nothing.
    """
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for tmp in out.parent.glob(TEMP_GLOB):
            try:
                size = tmp.stat().st_size
            except FileNotFoundError:
                continue
            if size >= at_least:
                return size
        if proc.poll() is not None:
            raise AssertionError(
                f"dnn_mask ended (status {proc.returncode}) before its temporary file held "
                f"{at_least} bytes; stderr: {proc.stderr.read() if proc.stderr else ''!r}"
            )
        time.sleep(0.002)
    proc.kill()
    raise AssertionError(f"dnn_mask wrote no {at_least} bytes in {TIMEOUT} s")


def layer_dataset(root: h5py.File, name: str) -> h5py.Dataset:
    """A layer's dataset in an output: at the root (``.act.h5``), in its group (``.nc``)."""
    return root[name][name] if root.filename.endswith(".nc") else root[name]


def layer_names(root: h5py.File) -> list[str]:
    """An output's layers in order: the root's datasets (``.act.h5``) or groups (``.nc``)."""
    if root.filename.endswith(".nc"):
        return [name for name, item in root.items() if isinstance(item, h5py.Group)]
    return list(root)


def holds_temp(proc: subprocess.Popen[str], out: Path) -> bool:
    """Tell whether ``proc`` has a temporary file of ``out`` open: its write is under way.

    Read from ``/proc/<pid>/fd``, so that of several writers of one ``out``
    the one writing is known (their temporary names are random). A streamed
    write (``ActWriter``) is writing from its first part on.
    """
    try:
        fds = list(Path(f"/proc/{proc.pid}/fd").iterdir())
    except OSError:  # the process has ended
        return False
    folder = out.parent.resolve()  # the kernel names open files by their real path
    for fd in fds:
        try:
            target = Path(os.readlink(fd))
        except OSError:
            continue
        if target.parent == folder and target.match(TEMP_GLOB):
            return True
        # a streamed write's parts, in a folder of a temporary name beside out
        if target.parent.parent == folder and target.parent.match(TEMP_GLOB):
            return True
    return False


def wait_for_writer(procs: Sequence[subprocess.Popen[str]], out: Path,
                    ) -> subprocess.Popen[str]:
    """Wait until one of ``procs`` has begun writing ``out``; return it.

    Fails if one of them ends first: a write that began and ended between
    two looks would prove nothing.
    """
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for proc in procs:
            if holds_temp(proc, out):
                return proc
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(
                    f"a writer ended (status {proc.returncode}) before any began writing; "
                    f"stderr: {proc.stderr.read() if proc.stderr else ''!r}")
        time.sleep(0.002)
    raise AssertionError(f"no writer began writing {out} in {TIMEOUT} s")


def assert_same_layer(path: Path, name: str, expected: np.ndarray,
                      channels: Sequence[int] | None = None) -> None:
    """The layer in ``path`` (``.act.h5`` or ``.nc``) holds ``expected`` exactly.

    Values are read as DNNBrain reads them (h5py) and compared bit for bit,
    NaN payloads and signed zeros included, after dtype and shape; the
    channel numbers, if given, are read through ``open_act``.
    """
    with h5py.File(path, "r") as root:
        got = layer_dataset(root, name)[()]
    assert got.dtype == expected.dtype and got.shape == expected.shape, (got.dtype, got.shape)
    assert got.tobytes() == expected.tobytes(), f"values of {name!r} differ"
    if channels is not None:
        with open_act(path) as acts:
            np.testing.assert_array_equal(acts[name].channel.values, channels)


@dataclass(frozen=True)
class BigInput:
    """An input whose masking takes long enough to be interrupted on purpose."""

    act: Path
    dmask: Path
    layer: str
    channels: np.ndarray  # 1-based channel numbers the mask keeps
    expected: np.ndarray  # the values the mask keeps, read with h5py


#: 64 stimuli x 512 channels x 27 x 27 float32: 96 MB; the mask keeps every
#: other channel, so the write must inflate, cut and deflate about 48 MB.
BIG_SHAPE = (64, 512, 27, 27)


def make_big_input(folder: Path) -> BigInput:
    """Write a large DNNBrain-style input and a mask that must be re-encoded.

    The input is uncompressed, as DNNBrain's first writer made them, so it
    is quick to make; every other channel is kept, so no chunk of the output
    can be copied from the input and the write takes a while whatever the
    writer's speed. Made once per test session in ``folder`` and reused
    (tests never change it: they check that).
    """
    act = folder / "big.act.h5"
    dmask = folder / "odd.dmask.csv"
    channels = np.arange(1, BIG_SHAPE[1] + 1, 2)
    if dmask.exists():
        with h5py.File(act, "r") as root:
            expected = root["conv4"][:, channels[0] - 1::2]
        return BigInput(act, dmask, "conv4", channels, expected)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    with h5py.File(act, "w") as root:
        dataset = root.create_dataset("conv4", shape=BIG_SHAPE, dtype=np.float32)
        for start in range(0, BIG_SHAPE[0], 8):
            block = rng.standard_normal((8, *BIG_SHAPE[1:]), dtype=np.float32)
            dataset[start:start + 8] = np.maximum(block, 0)
    # the mask is written last: its presence says the input is complete
    dmask.write_text("conv4=chn\n" + ",".join(map(str, channels)) + "\n")
    with h5py.File(act, "r") as root:
        expected = root["conv4"][:, channels[0] - 1::2]
    return BigInput(act, dmask, "conv4", channels, expected)


def run_in_children(argvs: Sequence[Sequence[str]], *, timeout: float = TIMEOUT,
                    preexec_fn: Callable[[], None] | None = None) -> dict[str, dict]:
    """Start a child per argv, all at once; return the verdicts they print, by case id.

    Many cases in few processes: a child runs its cases one after the other
    and prints a JSON line ``{"id", "started": true}`` before each and the
    case's verdict ``{"id", ...}`` after it (:func:`run_cases`,
    :func:`check_damaged`), so the case whose verdict never comes is the
    one that crashed the child or hung it. Its verdict is then ``{"crashed":
    [status, end of stderr]}``; a case after it has none. A child still
    running after ``timeout`` is killed.
    """
    children = [subprocess.Popen(list(argv), cwd=TESTS, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
                for argv in argvs]
    verdicts: dict[str, dict] = {}
    for child in children:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, stderr = child.communicate()
        for line in stdout.splitlines():
            verdict = json.loads(line)
            if verdict.get("started"):
                verdicts.setdefault(verdict["id"],
                                    {"crashed": [child.returncode, stderr[-2000:]]})
            else:
                verdicts[verdict["id"]] = verdict
    return verdicts


def run_cases() -> None:
    """Run ``dnn_mask`` argvs through one route, one after the other; print JSON verdicts.

    The child side of :func:`run_in_children` (``python -c "import
    reliability; reliability.run_cases()" ROUTE CASES``): ``CASES`` is a
    JSON list of ``{"id", "argv"}``, each run by :func:`routes.run` in this
    process. A case's verdict: the status, what was printed on stdout and
    stderr, and the traceback of an uncaught exception (a bug: every
    failure must become a status).
    """
    import traceback

    from routes import run

    route = sys.argv[1]
    for case in json.loads(sys.argv[2]):
        print(json.dumps({"id": case["id"], "started": True}), flush=True)
        verdict: dict[str, object] = {"id": case["id"], "status": None, "traceback": None}
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                verdict["status"] = run(route, case["argv"])
        except BaseException:
            verdict["traceback"] = traceback.format_exc()
        verdict["stdout"], verdict["stderr"] = out.getvalue(), err.getvalue()
        print(json.dumps(verdict), flush=True)


def check_damaged() -> None:
    """Write damaged files through every route, one after the other; print JSON verdicts.

    Run in a child process (``python -c``) so that a crash or a hang in
    HDF5 stops the child, not the test runner. ``sys.argv[1]`` is a JSON
    list of cases ``{"id", "path", "dmask"}``, ``sys.argv[2]`` a JSON list
    of ``[route, suffix]`` to write each case through (:func:`routes.run`,
    in this process). For each case the child prints ``{"id", "started":
    true}`` first, so the case that hangs or crashes is known, then the
    verdict: for each route and suffix, and each of a whole-layer run with
    and without ``--verify`` and a masked run, the exit status, stderr, an
    uncaught exception's traceback, the files left in the case's folder,
    and whether the output holds the values h5py reads from the damaged
    file (DNNBrain's reading); and the same check of every layer read
    through ``open_act``.
    """
    import contextlib
    import io
    import json
    import traceback

    from routes import run

    combos = json.loads(sys.argv[2])
    for case in json.loads(sys.argv[1]):
        print(json.dumps({"id": case["id"], "started": True}), flush=True)
        path = Path(case["path"])
        verdict: dict[str, object] = {"id": case["id"]}
        # whole layers are copied as compressed chunks, inflated only with --verify
        runs = {
            "whole": (["-layer", "conv5", "fc3", "--verify"], _reference(path, WHOLE)),
            "copied": (["-layer", "conv5", "fc3"], _reference(path, WHOLE)),
            "masked": (["-dmask", case["dmask"]], _reference(path, MASKED)),
        }
        for route, suffix in combos:
            results: dict[str, object] = {}
            for name, (flags, expected) in runs.items():
                out = path.parent / f"{name}{suffix}"
                err = io.StringIO()
                result: dict[str, object] = {"status": None, "traceback": None}
                try:
                    with contextlib.redirect_stderr(err):
                        result["status"] = run(route, ["-act", str(path), *flags,
                                                       "-out", str(out)])
                except BaseException:  # a bug: every failure must become a status
                    result["traceback"] = traceback.format_exc()
                result["stderr"] = err.getvalue()
                if result["status"] == 0:
                    result["reference_readable"] = expected is not None
                    result["values_match"] = expected is not None and _holds(out, expected)
                    result["same_chunks"] = same_chunks(path, out, WHOLE)
                    out.unlink()
                result["left"] = sorted(p.name for p in path.parent.iterdir()
                                        if p.name not in (path.name, Path(case["dmask"]).name))
                results[name] = result
            verdict[f"{route}{suffix}"] = results
        verdict["open_act"] = _open_act_verdict(path, _reference(path, WHOLE))
        print(json.dumps(verdict), flush=True)


def _open_act_verdict(path: Path, expected: dict[str, np.ndarray] | None) -> dict[str, object]:
    """Read every layer through ``open_act``: same values as h5py, or a DnnMaskError."""
    import traceback

    from dnnmask_xr.errors import DnnMaskError

    try:
        with open_act(path) as acts:
            got = {name: acts[name].values for name in WHOLE}
    except DnnMaskError as error:
        return {"error": str(error), "traceback": None}
    except BaseException:
        return {"error": None, "traceback": traceback.format_exc()}
    match = expected is not None and all(
        got[name].dtype == values.dtype and got[name].tobytes() == values.tobytes()
        for name, values in expected.items())
    return {"error": None, "traceback": None, "values_match": match}


#: The whole-layer run's selection, as DNNBrain's mask dictionary.
WHOLE: dict[str, dict[str, list[int]]] = {"conv5": {}, "fc3": {}}
#: The masked run's selection, unsorted, as DNNBrain's 1-based numbers.
MASKED: dict[str, dict[str, list[int]]] = {"conv5": {"chn": [3, 1], "row": [2], "col": [7, 1]}}
MASKED_TEXT = "conv5=chn,row,col\n3,1\n2\n7,1\n"


def _reference(path: Path, dmask: dict) -> dict[str, np.ndarray] | None:
    """What h5py reads from ``path`` under ``dmask``, or None if it cannot."""
    try:
        with h5py.File(path, "r") as root:
            names = list(dmask)
            for name in names:
                if root[name].size * root[name].dtype.itemsize > 2**27:
                    return None  # a damaged shape claiming gigabytes: do not read it
            layers = {}
            for name in names:
                data = root[name][()]
                for axis, key in enumerate(("chn", "row", "col"), start=1):
                    numbers = dmask[name].get(key)
                    if numbers is not None:
                        data = np.take(data, [n - 1 for n in numbers], axis=axis)
                layers[name] = data
            return layers
    except Exception:
        return None


def same_chunks(source: Path, copy: Path, layers: Iterable[str]) -> bool:
    """Tell whether ``copy`` stores every chunk of ``source``'s layers byte for byte."""
    try:
        with h5py.File(source, "r") as old, h5py.File(copy, "r") as new:
            for name in layers:
                before, after = old[name], layer_dataset(new, name)
                if after.chunks != before.chunks:
                    return False
                for i in range(before.id.get_num_chunks()):
                    offset = before.id.get_chunk_info(i).chunk_offset
                    if after.id.read_direct_chunk(offset) != before.id.read_direct_chunk(offset):
                        return False
            return True
    except Exception:
        return False


def _holds(path: Path, expected: dict[str, np.ndarray]) -> bool:
    try:
        with h5py.File(path, "r") as root:
            if layer_names(root) != list(expected):
                return False
            for name, values in expected.items():
                got = layer_dataset(root, name)[()]
                if got.dtype != values.dtype or got.shape != values.shape:
                    return False
                if got.tobytes() != values.tobytes():
                    return False
            return True
    except Exception:
        return False
