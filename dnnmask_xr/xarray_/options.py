"""Settings of lazy reads, set for a block of code or for the session.

As with ``xarray.set_options``::

    with dx.set_options(read_threads=1):
        values = acts["conv5"].values

    dx.set_options(read_memory=64 * 2**20)   # from now on
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from dnnmask_xr._args import is_count
from dnnmask_xr.errors import UsageError

#: Bytes of chunks a lazy read holds in flight besides its output: the
#: memory budget of ``dnn_mask`` and ``save_act``.
DEFAULT_READ_MEMORY = 128 * 2**20

OPTIONS: dict[str, Any] = {"read_threads": None, "read_memory": DEFAULT_READ_MEMORY}

_RULES = {
    "read_threads": "a positive number of threads, or None for every core",
    "read_memory": "a positive number of bytes",
}


def _shown(value: Any) -> str:
    """Name a refused value on one line: its repr, or its type if it has none.

    Some reprs span lines (a 2-D NumPy array) and some fail (an int of more
    than 4300 digits raises Python's ``ValueError``).
    """
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return " ".join(text.split()) if len(text.splitlines()) > 1 else text


class set_options:
    """Set how lazy layers are read, for a ``with`` block or from now on.

    Parameters
    ----------
    read_threads
        Threads that inflate the chunks of a read made from the main thread
        (``.values``, ``.load()``, a save). None (default): every core this
        process may use. Reads made from other threads (dask's workers,
        your own pool) inflate their chunks in that thread, so that the
        scheduler's thread count sets how many cores are used.
    read_memory
        Most bytes of chunks a read holds besides its output (default
        128 MiB). A chunk decoded whole (gzip, lzf, shuffle, fletcher32,
        scale-offset) takes twice its size while in flight; a read of a
        layer whose chunks do not fit is refused with an ``ActFileError``
        that gives the ``read_memory`` it needs. The setting holds in this
        process (dask's process workers read with their own).

    Raises
    ------
    UsageError
        If an option is unknown or its value out of range.
    """

    def __init__(self, **options: Any) -> None:
        for name, value in options.items():
            if name not in OPTIONS:
                raise UsageError(f"set_options() has no option {name!r}; options: "
                                 f"{', '.join(OPTIONS)}")
            if not (is_count(value) or (value is None and name == "read_threads")):
                raise UsageError(f"{name}={_shown(value)} is not valid; give {_RULES[name]}")
        self._previous = {name: OPTIONS[name] for name in options}
        OPTIONS.update({name: None if value is None else int(value)
                        for name, value in options.items()})

    def __enter__(self) -> set_options:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        OPTIONS.update(self._previous)
