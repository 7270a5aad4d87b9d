"""Check the arguments of public functions: the project's errors, not Python's.

Bad arguments are bad input like any other: they raise
:class:`~dnnmask_xr.errors.UsageError`, never a ``TypeError`` or
``AttributeError`` from deep inside, and a number is never taken for a file
descriptor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from dnnmask_xr.errors import UsageError

#: The suffix of the one kind of activations that is a folder: a zarr v3 store.
STORE_SUFFIX = ".act.zarr"


def path_arg(value: object, what: str) -> str:
    """Return ``value`` as a path string (a store's without trailing slashes).

    Raises
    ------
    UsageError
        If ``value`` is not a ``str`` or ``os.PathLike`` naming a path, or
        is empty or holds a NUL character (which the OS would refuse with
        Python's bare ``ValueError``).
    """
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if isinstance(path, str) and "\x00" in path:
            raise UsageError(f"{what} {path!r} holds a NUL character, which no file name "
                             "holds; name the file without it")
        if isinstance(path, str) and path:
            return as_named(path)
        if path == "":
            # a str, but naming nothing: "give a str" would not help (-stim "" on the command line)
            raise UsageError(f"{what} {value!r} is an empty path; give the path of a file")
    raise UsageError(f"{what} {value!r} is not a path; give a str or pathlib.Path")


def as_named(path: str) -> str:
    """Give a store's path as its suffix names it: ``run.act.zarr/`` is ``run.act.zarr``.

    A shell's completion ends a folder's name with ``/``; every other path
    is given as it is.
    """
    stripped = path.rstrip("/")
    return stripped if stripped.endswith(STORE_SUFFIX) else path


def mapping_arg(value: object, what: str, example: str = "{'cmd': '...'}") -> Mapping[str, Any]:
    """Return ``value`` as a mapping, ``{}`` for None; ``example`` shows one in errors.

    Raises
    ------
    UsageError
        If ``value`` is neither None nor a mapping.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UsageError(f"{what} {value!r} is not a mapping; give a dict such as {example}")
    return value


def bool_arg(value: object, what: str) -> bool:
    """Return ``value`` as a bool.

    Raises
    ------
    UsageError
        If ``value`` is neither True nor False (numpy's bools included).
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise UsageError(f"{what}={value!r} is neither True nor False")


def is_count(value: object) -> bool:
    """Tell whether ``value`` is a positive integer (a bool is not one)."""
    return (isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
            and value >= 1)


def lock_arg(value: object) -> Any:
    """Return ``lock=`` as a lock, False for none, or None for xarray's HDF5 lock.

    True means the default lock, as None does.

    Raises
    ------
    UsageError
        If ``value`` is neither None, a bool, nor a lock (an object with
        ``acquire``, ``release`` and the context-manager methods).
    """
    if value is None or value is True or value is False:
        return None if value is True else value
    if all(hasattr(value, name) for name in ("acquire", "release", "__enter__", "__exit__")):
        return value
    raise UsageError(f"lock={value!r} is not a lock; give None (xarray's HDF5 lock), False "
                     "(h5py's own alone), or a lock such as dask.utils.SerializableLock()")
