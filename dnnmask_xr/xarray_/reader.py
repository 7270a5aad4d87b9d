"""``open_act``: activation files as labelled, lazy layers.

A thin layer over ``xr.open_groups(path, engine="dnnact")``: the backend
(:mod:`~dnnmask_xr.xarray_.backend`) reads the files through the one read
path (:mod:`~dnnmask_xr.xarray_.store`), xarray applies ``cache=`` and
``chunks=`` as it does for its own backends, and the groups (the root's
stimuli, a dataset per layer) come back as :class:`~dnnmask_xr.Activations`.
``xr.open_groups`` rather than ``xr.open_datatree``: a tree checks every
node's alignment with the root as it is built, which made opening a file of
1 000 layers take twice as long.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import xarray as xr

from dnnmask_xr._args import bool_arg
from dnnmask_xr.act.chunking import file_chunks
from dnnmask_xr.errors import UsageError
from dnnmask_xr.formats.stim import StimArg
from dnnmask_xr.xarray_.activations import Activations
from dnnmask_xr.xarray_.backend import DnnActBackendEntrypoint
from dnnmask_xr.xarray_.datatree import from_groups
from dnnmask_xr.xarray_.file_set import FILES_KEY

#: Most bytes of a chunk ``chunks="auto"`` makes. A mean over a 560 MB layer on 2
#: threads took 1.4 s with chunks of about 32 MiB, 1.9 s with 16 or 64 MiB
#: and 2.0 s with dask's default of 128 MiB (docs/dask.md): large enough
#: that each task reads many file chunks, small enough that every thread
#: gets several tasks and holds little memory.
AUTO_CHUNK_BYTES = 32 * 2**20

#: What ``chunks=`` accepts: ``{}``, ``{"stimulus": 100}``, ``"auto"``, ``-1``, ``64``.
Chunks = int | str | Mapping[str, int | str | None]


def open_act(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    stim: StimArg | Sequence[StimArg] = None,
    chunks: Chunks | None = None,
    cache: bool | None = None,
    allow_external: bool = False,
    lock: bool | AbstractContextManager[Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Activations:
    """Open the layers of an ``.act.h5`` file, reading metadata only.

    Parameters
    ----------
    path
        The activation file: one 4-D dataset per layer at its root, as
        DNNBrain writes it (plain gzip datasets, any attributes or none).
        A path ending in ``.nc`` is read as the netCDF4 file
        :func:`~dnnmask_xr.save_act` writes there, one ending in
        ``.act.zarr`` as the zarr v3 store it writes there (with the
        ``zarr`` extra), in a local folder or at an fsspec URL
        (``s3://bucket/run.act.zarr``). A list of paths opens files of
        one network (one per session or run) as one set, concatenated
        along ``stimulus`` in that order (see
        :mod:`~dnnmask_xr.xarray_.file_set`): ``.act.h5`` and ``.nc``
        files and ``.act.zarr`` stores, in any mix.
    stim
        A ``.stim.csv`` path or a :class:`~dnnmask_xr.formats.stim.Stimuli` table
        describing the stimuli, one row per stimulus. Without it the file's
        own stimulus labels are used (``1..n`` if it has none). For a list
        of files, a list of as many (None for a file's own).
    chunks
        ``None`` (default): lazy layers backed by the file. Otherwise
        dask-backed layers (dask must be installed), chunked as xarray's
        ``open_dataset`` does: ``{}`` follows the file's HDF5 chunks; a
        mapping such as ``{"stimulus": 1000}`` sets some dimensions (``-1``
        for whole) and leaves the others to the file; ``"auto"`` lets dask
        choose multiples of the file's chunks, of at most
        :data:`AUTO_CHUNK_BYTES` (or dask's ``array.chunk-size`` if smaller).
        xarray applies it, as ``xr.open_datatree(path, engine="dnnact",
        chunks=...)`` does.
    cache
        Keep a layer's values in memory once read, so that later
        computations on the same layer do not read the file again (and so
        that values can be assigned to), as ``xr.open_dataset(cache=...)``
        does. Selections stay lazy: ``layer.sel(...)`` reads, and keeps,
        only what it selects. None (default): True unless ``chunks`` is
        given.
    allow_external
        Follow layers whose values live in other files (external links,
        virtual datasets, external raw storage), after checking that every file on the
        way (up to 16 deep) is a regular file; such layers are refused by
        default. The files behind a layer are identified at open, and a
        read refuses one that changed since. For ``.nc`` files, every
        object in every group is checked alike.
    lock
        Held around each call into the HDF5 library when values are read:
        None or True (default) for xarray's HDF5 lock, which its own HDF5
        backends hold too; False for none but the global lock h5py holds
        around every HDF5 call (still safe in threads, but no longer
        excluding netCDF4 readers of the same HDF5 library); or a lock of
        your own (picklable, such as ``dask.utils.SerializableLock()``,
        for dask's process or distributed schedulers).
    storage_options
        For stores at a URL: fsspec's options for its file system
        (credentials, ``{"anon": True}``, ...), as ``xr.open_zarr`` takes
        them.

    Returns
    -------
    Activations
        Layers in file order. Values are read only when used, and only the
        part of the file a selection touches.

    Raises
    ------
    ActFileError
        If the file is missing, unreadable, not HDF5, or holds a root object
        that is not a 4-D numeric dataset stored in the file.
    UsageError
        If ``chunks`` names a dimension layers do not have, ``lock`` is
        not a lock, a URL names no zarr store, or ``storage_options`` is
        given for local paths only.
    SelectionError
        If the stimulus table does not fit, or (for a list of files) a
        stimulus ID is in two files.
    """
    _check_chunks(chunks)
    cache = chunks is None if cache is None else bool_arg(cache, "cache")
    # dask's "auto" along stimulus would join part of one file of a set to the next
    # (150-stimulus files in chunks of 190): a set is chunked here instead
    by_files = not isinstance(path, str | os.PathLike) and _auto_along_stimulus(chunks)
    with _auto_chunk_limit(chunks), warnings.catch_warnings():
        # chunks that split the file's (a stimulus count, say) are the caller's
        # choice, which open_act takes silently; docs/dask.md says what it costs
        warnings.filterwarnings("ignore", "The specified chunks separate", UserWarning)
        groups = xr.open_groups(path, engine=DnnActBackendEntrypoint,
                                chunks=None if by_files else chunks,
                                cache=False if by_files else cache, stim=stim,
                                allow_external=allow_external, lock=lock,
                                storage_options=storage_options)
        if by_files:
            groups = {name: _chunked_by_files(group, chunks) for name, group in groups.items()}
    root = groups["/"]
    if chunks is not None:
        # the values alone are dask arrays: stimulus fields as dask arrays
        # would be computed at each use (a groupby, a to_zarr that must
        # look at object text to type it)
        groups = {path: _fields_in_memory(group) for path, group in groups.items()}
    try:
        _check_chunked_dims(chunks, groups)
        return from_groups(groups, source=root.encoding.get("source"), closers=[root.close])
    except BaseException:
        root.close()
        raise


def _check_chunked_dims(chunks: Chunks | None, groups: Mapping[str, xr.Dataset]) -> None:
    """Refuse ``chunks`` naming a dim no layer has, which xarray would ignore silently."""
    if not isinstance(chunks, Mapping):
        return
    dims = list(dict.fromkeys(str(dim) for group in groups.values() for dim in group.dims))
    unknown = [dim for dim in chunks if dim not in dims]
    if unknown:
        raise UsageError(f"chunks name dimension {unknown[0]!r}, which layers do not have "
                         f"(dimensions: {', '.join(dims) or 'none'})")


def _check_chunks(chunks: object) -> None:
    """Refuse a ``chunks=`` that xarray would reject or silently ignore."""
    if chunks is None or chunks == "auto" or (
            isinstance(chunks, int) and not isinstance(chunks, bool) and (chunks >= 1
                                                                          or chunks == -1)):
        return
    if not isinstance(chunks, Mapping):
        raise UsageError(f"chunks={chunks!r} is not valid; give {{}} for the file's chunks, "
                         "a mapping like {'stimulus': 100}, a size, or 'auto'")
    for dim, size in chunks.items():
        if size is not None and not isinstance(size, str) and (
                isinstance(size, bool) or not isinstance(size, int) or (size < 1 and size != -1)):
            raise UsageError(f"chunks={{{dim!r}: {size!r}}} is not a chunk size; give a "
                             "positive number of elements, -1 for the whole axis, or 'auto'")


@contextlib.contextmanager
def _auto_chunk_limit(chunks: object) -> Iterator[None]:
    """Cap the chunks ``"auto"`` makes at :data:`AUTO_CHUNK_BYTES` while xarray chunks."""
    if chunks is None:
        yield
        return
    try:
        import dask
        from dask.utils import parse_bytes
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "chunks= needs dask: install it with python -m pip install 'dnnmask_xr[dask]'"
        ) from err
    limit = min(AUTO_CHUNK_BYTES, parse_bytes(dask.config.get("array.chunk-size")))
    with dask.config.set({"array.chunk-size": limit}):
        yield


def _auto_along_stimulus(chunks: Chunks | None) -> bool:
    """Tell whether ``chunks`` leaves the chunks along ``stimulus`` to dask's "auto"."""
    return chunks == "auto" or (isinstance(chunks, Mapping) and chunks.get("stimulus") == "auto")


def _chunked_by_files(group: xr.Dataset, chunks: Chunks) -> xr.Dataset:
    """Chunk a set's layers as dask's "auto" would, then along ``stimulus`` by its files.

    Each chunk along ``stimulus`` lies within one file or covers whole
    files (:func:`~dnnmask_xr.act.chunking.file_chunks`), at most as long
    as the chunks "auto" makes; the other dims are chunked as ``chunks``
    asks (or "auto" and the file's chunks decide).
    """
    from dask.array.core import normalize_chunks

    for layer in group.data_vars.values():  # a group holds one layer
        lengths = layer.encoding.get(FILES_KEY)
        if lengths is None:
            continue
        preferred = layer.encoding.get("preferred_chunks", {})
        # the files' own chunks, as dask takes them: one length per dim
        previous = tuple(max(preferred[dim]) if isinstance(preferred.get(dim), tuple)
                         else preferred.get(dim, size)
                         for dim, size in zip(layer.dims, layer.shape, strict=True))
        asked = tuple("auto" if chunks == "auto" else chunks.get(dim, step)
                      for dim, step in zip(layer.dims, previous, strict=True))
        normalized = normalize_chunks(asked, shape=layer.shape, dtype=layer.dtype,
                                      previous_chunks=previous)
        by_files = file_chunks(lengths, max(1, *normalized[0]), join=True)
        # named as xarray names the arrays it chunks as it opens a file
        return group.chunk(dict(zip(layer.dims, (by_files, *normalized[1:]), strict=True)),
                           name_prefix="open_dataset-")
    return group


def _fields_in_memory(group: xr.Dataset) -> xr.Dataset:
    fields = {name: coord.variable.compute() for name, coord in group.coords.items()
              if name not in group.xindexes}
    return group.assign_coords(fields) if fields else group
