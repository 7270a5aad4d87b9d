"""Runs of the Python routes, each a process of its own, without starting Python each time.

A test that signals a write, fills a disk under it or races two of them
runs the write in a child process, so that a crash, a hang or a signal hits
the child and not pytest. Started as ``python tests/routes.py``, a child
spends about 1.5 s importing the package, xarray, pandas and dask before
its first write: most of such a test. The zygote is one process per pytest
worker that imports them once, then forks a child per run: the child is a
process of its own, with its signals at Python's defaults, the standard
streams it is given, and the folder, environment and umask of the test
that starts it (as a fresh process inherits them), and it ends as a Python
process ends (``SystemExit``, atexit handlers, finalizers). What it does
not show is how the program starts; ``tests/test_93_interrupt.py`` checks
that on the console script, which never comes here.

Protocol, on a socket pair of messages (``SOCK_SEQPACKET``): the test
sends one JSON request with three file descriptors (``socket.send_fds``):
the child's stdout and stderr, and the write end of a pipe on which the
zygote writes the child's status (as ``os.waitstatus_to_exitcode`` gives
it) once it has ended. It answers with the child's pid.
"""

from __future__ import annotations

import json
import os
import resource
import select
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

TESTS = Path(__file__).resolve().parent


class Run:
    """A route's run in a child of the zygote, as much of ``subprocess.Popen`` as tests use."""

    def __init__(self, pid: int, stdout: int, stderr: int | None, status: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdout = open(stdout, encoding="utf-8", errors="replace")
        self.stderr = None if stderr is None else open(stderr, encoding="utf-8",
                                                         errors="replace")
        self._status = status

    def poll(self) -> int | None:
        if self.returncode is None:
            ready, _, _ = select.select([self._status], [], [], 0)
            if ready:
                self._read_status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            ready, _, _ = select.select([self._status], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired(f"route run {self.pid}", timeout or 0)
            self._read_status()
        return self.returncode  # type: ignore[return-value]

    def _read_status(self) -> None:
        data = b""
        while chunk := os.read(self._status, 64):
            data += chunk
        os.close(self._status)
        self.returncode = int(data)

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Read stdout and stderr to their ends, then wait; as ``Popen.communicate``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        texts = {stream: [] for stream in (self.stdout, self.stderr) if stream is not None}
        with selectors.DefaultSelector() as selector:
            for stream in texts:
                if not stream.closed:
                    selector.register(stream.fileno(), selectors.EVENT_READ, stream)
            while selector.get_map():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = selector.select(left)
                if not events and deadline is not None and time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(f"route run {self.pid}", timeout or 0)
                for key, _ in events:
                    data = os.read(key.fd, 65536)
                    if data:
                        texts[key.data].append(data)
                    else:
                        selector.unregister(key.fd)
        out, err = (b"".join(texts.get(s, [])).decode("utf-8", "replace")
                    for s in (self.stdout, self.stderr))
        for stream in texts:
            stream.close()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(left)
        return out, err


def file_size_limit(size: int) -> Callable[[], None]:
    """A ``preexec_fn`` capping the files a child writes at ``size`` bytes (``ulimit -f``).

    ``SIGXFSZ`` is ignored, so that a write past it fails with ``EFBIG``
    instead of killing the process: a disk that is full for this process
    only, which needs no privilege. A fork of the zygote calls it itself.
    """
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


#: What a zygote imports before it forks, what each of its runs would import anyway:
#: ``command``, what every run of ``python -m dnnmask_xr.cli`` imports (the rest each run
#: imports as it needs it); ``routes``, the Python API's routes.
PRELOADS = ("command", "routes")


class Zygote:
    """One process that has imported what its runs start with; :meth:`start` forks a run.

    ``preload`` (:data:`PRELOADS`) says which runs it starts: ``dnn_mask``
    itself, as ``python -m dnnmask_xr.cli`` runs it, or the Python routes.
    """

    def __init__(self, preload: str = "routes") -> None:
        if preload not in PRELOADS:
            raise ValueError(f"unknown preload {preload!r}; preloads: {', '.join(PRELOADS)}")
        self.preload = preload
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._socket = ours
        # its own streams are nobody's: a pytest-xdist worker talks to its master on its own
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(theirs.fileno()), preload],
            pass_fds=(theirs.fileno(),), cwd=TESTS, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()
        ready = self._socket.recv(16)
        assert ready == b"ready", f"the zygote did not start: {ready!r}"

    def start(self, route: str, argv: Sequence[object], *, cwd: str | None = None,
              env: Mapping[str, str] | None = None, file_size: int | None = None,
              stderr: int | None = None) -> Run:
        """Run ``routes.run(route, argv)`` in a child of its own; return at once.

        The route ``command`` is ``dnn_mask argv`` as ``python -m dnnmask_xr.cli``
        runs it, and only a zygote preloading ``command`` runs it; the others, only
        one preloading ``routes``.

        ``file_size`` caps the size of a file the child writes (``RLIMIT_FSIZE``,
        with ``SIGXFSZ`` ignored, so that a write past it fails with ``EFBIG``).
        ``stderr``: a file descriptor the child's stderr is (the run's
        ``stderr`` is then None), rather than a pipe to this process.
        """
        if (route == "command") != (self.preload == "command"):
            raise ValueError(f"a zygote preloading {self.preload!r} does not run {route!r}")
        out_r, out_w = os.pipe()
        err_r, err_w = (None, os.dup(stderr)) if stderr is not None else os.pipe()
        status_r, status_w = os.pipe()
        # what a fresh process inherits from this one: its folder, environment and umask
        umask = os.umask(0o022)
        os.umask(umask)
        request = {"route": route, "argv": [str(arg) for arg in argv],
                   "cwd": cwd or os.getcwd(), "env": dict(os.environ if env is None else env),
                   "umask": umask, "file_size": file_size}
        try:
            socket.send_fds(self._socket, [json.dumps(request).encode()],
                            [out_w, err_w, status_w])
        finally:
            for fd in (out_w, err_w, status_w):
                os.close(fd)
        pid = self._socket.recv(64)
        if not pid:
            raise EOFError("the zygote has gone")
        return Run(int(pid), out_r, err_r, status_r)

    def close(self) -> None:
        self._socket.close()
        self._process.wait(timeout=60)


# --- the zygote's side -------------------------------------------------------------------


def _serve(sock: socket.socket) -> None:
    """Fork a child per request; write each child's status to its pipe when it ends."""
    waiting: dict[int, int] = {}  # pid: the write end of its status pipe
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sock.sendall(b"ready")
    while True:
        ready, _, _ = select.select([sock.fileno(), wakeup_r], [], [])
        if wakeup_r in ready:
            os.read(wakeup_r, 4096)
        _reap(waiting)
        if sock.fileno() not in ready:
            continue
        message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
        if not message:
            break  # the test process has closed its end: the session is over
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            # the child: what a fresh `python tests/routes.py ROUTE ARGV` would have
            sock.close()
            os.close(wakeup_r)
            os.close(wakeup_w)
            signal.set_wakeup_fd(-1)
            for fd in waiting.values():
                os.close(fd)
            stdout, stderr, status = fds
            os.close(status)
            devnull = os.open(os.devnull, os.O_RDONLY)
            for target, fd in ((0, devnull), (1, stdout), (2, stderr)):
                os.dup2(fd, target)
                os.close(fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for signum in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            if request["file_size"] is not None:
                file_size_limit(request["file_size"])()
            os.chdir(request["cwd"])
            os.umask(request["umask"])
            os.environ.clear()
            os.environ.update(request["env"])
            if request["route"] == "command":
                # what `python -m dnnmask_xr.cli ARGV` does once its module is imported
                from dnnmask_xr._program import run_program
                from dnnmask_xr.cli import main

                sys.argv = [sys.modules["dnnmask_xr.cli"].__file__, *request["argv"]]
                raise SystemExit(run_program(main))
            sys.argv = [str(TESTS / "routes.py"), request["route"], *request["argv"]]
            from routes import run

            raise SystemExit(run(request["route"], request["argv"]))
        os.close(fds[0])
        os.close(fds[1])
        waiting[pid] = fds[2]
        sock.sendall(str(pid).encode())
    while waiting:
        _reap(waiting, block=True)


def _reap(waiting: dict[int, int], block: bool = False) -> None:
    while waiting:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = waiting.pop(pid, None)
        if fd is not None:
            os.write(fd, str(os.waitstatus_to_exitcode(status)).encode())
            os.close(fd)


def _preload_routes() -> None:
    """Import what a route's run imports, once for all its runs."""
    sys.path.insert(0, str(TESTS))
    import h5netcdf  # noqa: F401
    import pandas  # noqa: F401
    import routes  # noqa: F401
    import xarray  # noqa: F401

    import dnnmask_xr.cli  # noqa: F401
    from dnnmask_xr import open_act  # noqa: F401

    try:
        import dask.array  # noqa: F401  (xarray imports it for its first array)
    except ImportError:
        pass


if __name__ == "__main__":
    if sys.argv[2] == "command":
        # what every run of the command imports (the core, NumPy, h5py), nothing more:
        # what it imports for some runs only (pandas for -stim, h5netcdf for a .nc,
        # xarray for a store) each run imports as a fresh one does, while its signals
        # are handled; a signal during the imports of the start is the console
        # script's test (test_93), which never comes here
        import dnnmask_xr._program
        import dnnmask_xr.act.checks
        import dnnmask_xr.act.files
        import dnnmask_xr.act.mask
        import dnnmask_xr.act.select
        import dnnmask_xr.act.write
        import dnnmask_xr.cli
        import dnnmask_xr.formats.dmask  # noqa: F401
    else:
        _preload_routes()
    _serve(socket.socket(fileno=int(sys.argv[1])))
