"""Let Ctrl-C and SIGTERM stop a write only where it can be undone cleanly."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_received: list[int] = []


class Interrupted(KeyboardInterrupt):
    """A write was stopped by a signal; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the next :func:`check_interrupt`.

    A KeyboardInterrupt raised at an arbitrary point can land inside a
    callback that Python only reports as "ignored" (h5py's weak references
    do this), and the write then completes as if nothing happened. Here the
    signal is recorded, and raised as :class:`Interrupted` at the points the
    writer chooses. A signal whose handling the program changed (its own
    handler, or ignored) is left alone, and so is everything outside the
    main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    previous = {
        signum: signal.getsignal(signum)
        for signum, default in defaults.items()
        if signal.getsignal(signum) is default
    }
    _received.clear()
    for signum in previous:
        signal.signal(signum, _record)
    try:
        yield
        check_interrupt()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()


def check_interrupt() -> None:
    """Raise :class:`Interrupted` if a signal arrived since it was deferred."""
    if _received:
        raise Interrupted(_received[0])


def _record(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
