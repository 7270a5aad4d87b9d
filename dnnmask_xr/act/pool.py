"""Threads that code chunks: how many there are, and the pool reads share.

Writes make their own pool for the length of a write. Lazy reads (a
layer's ``.values``, a dask task) are many and short, so they share one
pool, started on the first read that needs it and rebuilt if the thread
count asked for changes; a forked child starts its own.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor


def default_threads() -> int:
    """Threads to code chunks with: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


_lock = threading.Lock()
_shared: ThreadPoolExecutor | None = None
_shared_threads = 0


def shared_pool(threads: int) -> ThreadPoolExecutor:
    """Return the pool of ``threads`` threads that reads share."""
    global _shared, _shared_threads
    with _lock:
        if _shared is None or _shared_threads != threads:
            if _shared is not None:
                # reads still running on the old pool finish there
                _shared.shutdown(wait=False)
            _shared = ThreadPoolExecutor(threads, thread_name_prefix="dnnmask_xr-read")
            _shared_threads = threads
        return _shared


def _forget_pool() -> None:
    # a forked child has none of its parent's threads, only their objects
    global _shared, _lock
    _shared, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)
