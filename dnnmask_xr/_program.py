"""The ``dnn_mask`` program's signals, handled from its first line to its last.

:func:`run_program` records a signal while modules are imported: an
exception raised inside an import can come out as another error (numpy
turns it into an ``ImportError`` with a traceback). Once they are imported
(:func:`interruptible`) a signal stops the program at once, until the writer
takes the signals over (:func:`writing`), and after the write it is only
said. Only the program installs these handlers:
:func:`dnnmask_xr.cli.main` called from Python leaves a process's signals
alone. The console script's entry point is :func:`dnnmask_xr._start.run`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

from dnnmask_xr.act._interrupt import (
    STOPPING,
    Interrupted,
    signal_name,
    written_output,
    yield_to_writes,
)

PROG = "dnn_mask"
#: Signals that reached the program's handlers, in order.
_received: list[int] = []
#: The output, once the write has put it in place.
_written: list[str] = []


def run_program(main: Callable[[], int]) -> int:
    """Run ``main`` as the ``dnn_mask`` program, signals handled from before it starts.

    Parameters
    ----------
    main
        What runs the program (it may import it first): a signal before
        it handles them is recorded, then stops it in one line.

    Returns
    -------
    int
        The exit status: ``main``'s, or ``128 + n`` for signal ``n``
        before it (130 for Ctrl-C, 143 for SIGTERM).
    """
    _received.clear()
    _written.clear()
    mine = [signum for signum, default in STOPPING.items()
            if signal.getsignal(signum) is default]
    for signum in mine:
        signal.signal(signum, _record)
    try:
        status = main()
        _ignore(mine)
    except KeyboardInterrupt as stop:  # main() was not yet, or no longer, handling it
        _ignore(mine)
        signum = getattr(stop, "signum", signal.SIGINT)
        status = fail(f"interrupted by {signal_name(signum)}; nothing was written", 128 + signum)
    if _written and _received:
        say(written_line(_received[0], _written[0]))
    return status


def interruptible() -> None:
    """Stop at a signal that came while modules were imported, and at once from now on."""
    ours = [signum for signum in STOPPING if signal.getsignal(signum) is _record]
    if ours and _received:
        raise Interrupted(_received[0])
    yield_to_writes(_stop)
    for signum in ours:
        signal.signal(signum, _stop)


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
    """Mark a write to ``path``; after it, signals are only recorded.

    While the write plans, a signal stops the program at once; the writer
    then takes the signals over (it defers them, stops where it can clean
    up, and says whether the output was complete) and gives them back
    once the output is in place. A signal after that cannot undo the
    write: :func:`run_program` says it on stderr and the status stays 0. Outside
    :func:`run_program`, this does nothing.
    """
    ours = [signum for signum in STOPPING if signal.getsignal(signum) is _stop]
    if ours and _received:  # raised before, where Python reported it as "ignored"
        raise Interrupted(_received[0])
    try:
        yield
        if ours:
            _written.append(path)
    finally:
        for signum in ours:
            signal.signal(signum, _record)


def written_line(signum: int, path: str) -> str:
    """Say that a signal came once the output was in place, as ``dnn_mask`` does."""
    return (f"{PROG}: interrupted by {signal_name(signum)} after -out {path!r} was written; "
            "the output is complete")


def fail(error: object, status: int) -> int:
    """Say ``error`` on one line of stderr, as ``dnn_mask`` does; return ``status``."""
    message = " ".join(str(error).split("\n"))
    say(f"{PROG}: error: {message}")
    return status


def say(line: str) -> None:
    """Print one line on stderr, if it can be printed: the exit status matters more.

    A closed or broken stderr (``2>&-``, a pipe whose reader has gone) makes
    printing raise; then stderr is pointed at ``/dev/null``, so that
    Python's flush of it at exit cannot fail again and change the status.
    """
    stream = sys.stderr
    if stream is None:  # Python found no stderr at start-up
        return
    try:
        print(line, file=stream, flush=True)
    except (OSError, ValueError):  # closed, broken, or a closed file object
        with contextlib.suppress(OSError, ValueError):
            fd = stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


def _ignore(signals: list[int]) -> None:
    # The run is over and its status stands: the interpreter's shutdown is not
    # interrupted (SIG_IGN, unlike a handler, outlives it).
    for signum in signals:
        signal.signal(signum, signal.SIG_IGN)


def _stop(signum: int, frame: FrameType | None) -> None:
    # Recorded too: an exception raised inside a callback that Python only
    # reports as "ignored" (h5py's weak references) would be lost, and the
    # hand-over to the writer raises it again.
    _received.append(signum)
    # between the writer giving the handler back and writing() replacing it,
    # the output is in place: a signal is only said then
    if written_output() is None:
        raise Interrupted(signum)


def _record(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
