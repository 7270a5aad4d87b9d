"""Let Ctrl-C, SIGTERM and SIGHUP stop a write only where it can be undone cleanly."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import weakref
from collections.abc import Iterator
from types import FrameType
from typing import Any

#: The signals that stop a write (and the ``dnn_mask`` program), with the handlers
#: Python starts with.
STOPPING = {
    signal.SIGINT: signal.default_int_handler,
    signal.SIGTERM: signal.SIG_DFL,
    # what closing the terminal sends to `dnn_mask ... &`
    signal.SIGHUP: signal.SIG_DFL,
}
_received: list[int] = []
#: Handlers a program installed that a write may take over, as it takes over Python's own.
_YIELDING: list[object] = []
#: The output of the last write whose output is in place (see :func:`written_output`).
_committed: list[str] = []
#: Whether a signal raises at once (see :func:`interruptible`) besides being recorded.
_raising: list[bool] = [False]


class Interrupted(KeyboardInterrupt):
    """A write was stopped by a signal; ``signum`` says which.

    ``written`` is the output's path when the signal came after the output
    was complete and in place, and None when nothing was written.
    """

    def __init__(self, signum: int, written: str | None = None) -> None:
        name = signal_name(signum)
        super().__init__(name if written is None else f"{name} after {written!r} was written")
        self.signum = signum
        self.written = written


def signal_name(signum: int) -> str:
    """Name a signal as people know it: ``SIGINT``."""
    return signal.Signals(signum).name


class Deferral:
    """The state of one deferred write: whether its output is in place yet."""

    def __init__(self) -> None:
        self.written: str | None = None

    def commit(self, path: str) -> None:
        """Record that ``path`` now holds the complete output."""
        self.written = path
        _committed[:] = [path]


def yield_to_writes(handler: object) -> None:
    """Let writes take over ``handler`` as they take over Python's own handlers.

    For a program's handler that stops it at once (``dnn_mask``'s): a write
    defers the signal instead while it runs and puts ``handler`` back after.
    """
    if handler not in _YIELDING:
        _YIELDING.append(handler)


def written_output() -> str | None:
    """Give the output of the last deferred write in this process, once it is in place.

    None from the start of a write until it commits: a program's handler
    tells by it whether a signal came before the output was written or
    after (then it cannot be undone, only said).
    """
    return _committed[0] if _committed else None


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Deferral]:
    """Hold SIGINT, SIGTERM and SIGHUP until the next :func:`check_interrupt`.

    A KeyboardInterrupt raised at an arbitrary point can land inside a
    callback that Python only reports as "ignored" (h5py's weak references
    do this), and the write then completes as if nothing happened. Here the
    signal is recorded, and raised as :class:`Interrupted` at the points the
    writer chooses; one that arrives after :meth:`Deferral.commit` is raised
    on leaving, saying that the output was written. A signal whose handling
    the program changed (its own handler, or ignored) is left alone, and so
    is everything outside the main thread (where Python lets no handler be
    installed: there a signal ends the process as it would have, and the
    watchdog of :func:`~dnnmask_xr._atomic.atomic_path` removes the
    temporary file).
    """
    deferral = Deferral()
    if threading.current_thread() is not threading.main_thread():
        yield deferral
        return
    handlers = {signum: signal.getsignal(signum) for signum in STOPPING}
    previous = {signum: handler for signum, handler in handlers.items()
                if handler is STOPPING[signum] or handler in _YIELDING}
    _received.clear()
    _committed.clear()
    for signum in previous:
        signal.signal(signum, _record)
    try:
        yield deferral
        if _received:
            raise Interrupted(_received[0], deferral.written)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP over a short call that takes a lock other threads need.

    ``threading.Condition.__enter__`` (a ``Semaphore``'s, a ``Future``'s, a
    ``ThreadPoolExecutor``'s) is Python code: a ``KeyboardInterrupt`` raised
    in it just after it took the lock leaves the lock taken, and the thread
    that needs it next waits forever. Inside the block such a signal only
    comes through: once it ends, the signal is sent again, to the handler
    that was there (Python's ``KeyboardInterrupt``, the default action,
    ``dnn_mask``'s own), outside any lock. Outside the main thread, and for
    handlers a program set itself, nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {signum: handler for signum in STOPPING
                if (handler := signal.getsignal(signum)) is STOPPING[signum]
                or handler in _YIELDING}
    for signum in previous:
        signal.signal(signum, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        # sent again even while the block raises: a Ctrl-C is never lost
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)


def check_interrupt() -> None:
    """Raise :class:`Interrupted` if a signal arrived since it was deferred."""
    if _received:
        raise Interrupted(_received[0])


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Let a deferred signal raise :class:`Interrupted` at once, inside the block.

    For work that leaves the output untouched (computing a block of values,
    reading the input's chunks), which can take seconds: a signal then
    stops it where it is, not at the next :func:`check_interrupt`. The
    signal is recorded as well, so one that lands where Python can only
    print it as "ignored" is still raised at the next check.
    """
    check_interrupt()
    # handlers run in the main thread: only a write there may be stopped by one
    main = threading.current_thread() is threading.main_thread()
    _raising[0] = main
    try:
        yield
    finally:
        if main:
            _raising[0] = False


def _record(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if _raising[0] and not _in_threading(frame):
        _raising[0] = False
        raise Interrupted(signum)


#: Where a signal raised in the main thread could leave a lock taken: the Python code of
#: ``threading.Condition`` (a ``Semaphore``'s, a ``Future``'s, an executor's) between
#: taking its lock and the ``with`` that gives it back.
_LOCKING = (threading.__file__, frozenset({"__enter__", "__exit__", "_acquire_restore",
                                           "_release_save"}))


def _in_threading(frame: FrameType | None) -> bool:
    """Tell whether the main thread was stopped inside a ``Condition``'s taking of its lock.

    Raised there, the exception would leave the lock taken, and a pool's
    thread that needs it (to say its task is done) would wait forever, and
    the write with it. The signal is recorded; the write's next check raises
    it. Anywhere else, a wait for a pool included, it is raised at once.
    """
    return (frame is not None and frame.f_code.co_filename == _LOCKING[0]
            and frame.f_code.co_name in _LOCKING[1])


class LostInterrupts:
    """Ctrl-C that Python swallowed while a long run (a streamed write) is open.

    A ``KeyboardInterrupt`` raised inside a weak reference's callback
    (h5py's, xarray's) is only printed as "Exception ignored", and the run
    would go on as if Ctrl-C had not been pressed: while a watcher is open,
    such an interrupt is not printed but noted, and :meth:`raise_if_lost`
    raises it at the run's next step. Python's hook is replaced while any
    watcher is open, and put back when the last one stops (or is dropped).
    """

    def __init__(self) -> None:
        self._lost = False
        with _HOOK_LOCK:
            _WATCHING.add(self)
            if sys.unraisablehook is not _note_lost_interrupt:
                _HOOK[:] = [sys.unraisablehook]
                sys.unraisablehook = _note_lost_interrupt

    def raise_if_lost(self) -> None:
        """Raise the ``KeyboardInterrupt`` Python swallowed since the last call, if any."""
        if self._lost:
            self._lost = False
            raise KeyboardInterrupt

    def stop(self) -> None:
        """Stop watching; put the program's hook back once no watcher is open."""
        _stop_watching(self)


#: The watchers open in this process, and the hook :func:`_note_lost_interrupt` replaced.
_WATCHING: weakref.WeakSet[LostInterrupts] = weakref.WeakSet()
_HOOK: list[Any] = []
_HOOK_LOCK = threading.Lock()


def _stop_watching(watcher: LostInterrupts | None = None) -> None:
    # also called with none, by the hook itself: watchers dropped unstopped leave the set
    # by themselves
    with _HOOK_LOCK:
        if watcher is not None:
            _WATCHING.discard(watcher)
        if not _WATCHING and sys.unraisablehook is _note_lost_interrupt and _HOOK:
            sys.unraisablehook = _HOOK.pop()


def _note_lost_interrupt(unraisable: Any) -> None:
    previous = _HOOK[0] if _HOOK else sys.__unraisablehook__
    watchers = list(_WATCHING)
    _stop_watching()
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and watchers:
        for watcher in watchers:
            watcher._lost = True
        return
    previous(unraisable)
