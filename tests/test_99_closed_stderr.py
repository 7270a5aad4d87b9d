"""A closed or broken stderr changes no exit status.

``dnn_mask ... 2>&-`` (stderr closed) and ``dnn_mask ... 2>&1 | true``
(a pipe whose reader has gone) make printing the error line raise, and
Python's flush of stderr at exit fail again. The status must still say
what happened: 130, 143 or 129 for a signal mid-write, 1 for a bad file,
2 for misused flags; and nothing is left at ``-out``.

Closed stderr is tried on the command (a Python program that closes its
own stderr is its own affair); a broken one on every route
(``tests/routes.py``), which report their errors with the command's own
``_fail``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import digest
from reliability import (
    ROUTES,
    SUFFIXES,
    TIMEOUT,
    BigInput,
    command,
    default_signals,
    start_route,
    wait_for_temp,
)
from zygote import Run

pytestmark = pytest.mark.reliability

STDERRS = ["closed", "broken"]


def start(args: list[object], route: str, how: str) -> subprocess.Popen[str] | Run:
    """Start ``dnn_mask args`` through ``route`` with stderr closed (``2>&-``) or a pipe
    nobody reads; a Python route as the other reliability tests start it (the zygote).
    """
    if how == "closed":
        assert route == "command", "a Python program that closes its stderr is its own affair"
        return subprocess.Popen(command(*args), stdout=subprocess.PIPE, text=True,
                                preexec_fn=_close_stderr)
    reader, writer = os.pipe()
    os.close(reader)
    try:
        if route != "command":
            return start_route(route, args, stderr=writer)
        return subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=writer,
                                text=True, preexec_fn=default_signals)
    finally:
        os.close(writer)


def _close_stderr() -> None:
    default_signals()
    os.close(2)


def finish(proc: subprocess.Popen[str] | Run) -> tuple[int, str]:
    stdout, _ = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, stdout


SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
INTERRUPTS = [(route, suffix, signum, how) for route in ROUTES for suffix in SUFFIXES
              for signum in SIGNALS for how in STDERRS
              if route == "command" or (signum == signal.SIGINT and how == "broken")]


@pytest.mark.parametrize(("route", "suffix", "signum", "how"), INTERRUPTS,
                         ids=[f"{r}-{x}-{s.name}-stderr-{h}" for r, x, s, h in INTERRUPTS])
def test_an_interrupt_keeps_its_status(big: BigInput, tmp_path: Path, route: str, suffix: str,
                                       signum: signal.Signals, how: str):
    # bug: the interrupt line could not be printed, the exception escaped, status 1
    before = digest(big.act)
    out = tmp_path / f"out{suffix}"
    proc = start(["-act", big.act, "-dmask", big.dmask, "-out", out], route, how)
    wait_for_temp(proc, out, 2**20)
    proc.send_signal(signum)
    assert finish(proc) == (128 + signum, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert digest(big.act) == before


def _not_hdf5(folder: Path, act: Path) -> list[object]:
    text = folder / "text.act.h5"
    text.write_text("not HDF5\n")
    return ["-act", text, "-layer", "conv5", "-out", folder / "out.act.h5"]


def _out_is_act(folder: Path, act: Path) -> list[object]:
    return ["-act", act, "-layer", "conv5", "-out", act]


def _bad_flag(folder: Path, act: Path) -> list[object]:
    return ["-act", act, "-layer", "conv5", "-bogus", "-out", folder / "out.act.h5"]


ERRORS: dict[str, tuple[Callable[[Path, Path], list[object]], int]] = {
    "not-hdf5": (_not_hdf5, 1), "out-is-act": (_out_is_act, 2), "unknown-flag": (_bad_flag, 2),
}
CASES = [(route, name, how) for route in ROUTES for name in ERRORS for how in STDERRS
         if route == "command" or how == "broken"]


@pytest.mark.parametrize(("route", "name", "how"), CASES,
                         ids=[f"{r}-{n}-stderr-{h}" for r, n, h in CASES])
def test_an_error_keeps_its_status(act_file: Path, tmp_path: Path, route: str, name: str,
                                   how: str):
    # bug: the error line could not be printed, the exception escaped, status 1 for all
    make, status = ERRORS[name]
    before = digest(act_file)
    folder = tmp_path / "run"
    folder.mkdir()
    argv = make(folder, act_file)
    made = sorted(p.name for p in folder.iterdir())
    assert finish(start(argv, route, how)) == (status, "")
    assert sorted(p.name for p in folder.iterdir()) == made
    assert digest(act_file) == before
