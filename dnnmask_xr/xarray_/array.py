"""The lazy layer arrays and their inverse.

:class:`LayerArray` (a file's layer) and :class:`ConcatenatedArray` (a
set's) read from disk only what an indexer touches, through the file
manager :func:`file_manager` gives. :func:`layer_values` finds, behind
xarray's wrappers (and dask's graphs), which file layer and positions a
lazily selected layer reads, so that saving it copies chunks rather than
values, and never replaces the file it comes from. It is the one place
that looks inside xarray's wrappers (``Variable._data``): a layer's
``encoding`` survives ``layer.copy(data=...)``, so only the data itself
tells that the values are still the file's.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Literal

import h5py
import numpy as np
import xarray as xr
from xarray.backends import BackendArray, CachingFileManager
from xarray.backends.locks import HDF5_LOCK
from xarray.core import indexing

from dnnmask_xr.act.chunk_index import ChunkIndex, layer_index, layer_name
from dnnmask_xr.act.chunk_read import (
    CHUNK_COPIES,
    fill_from_chunks,
    read_box,
    size_text,
)
from dnnmask_xr.act.chunking import CHUNK_BYTES, as_slice, axis_pieces, read_boxes
from dnnmask_xr.act.files import HeldFile, SourceFiles, file_identity, open_file, source_files
from dnnmask_xr.act.layout import DIMS as STORED_DIMS
from dnnmask_xr.act.plan import BlockReader, ComputedValues, FileSelection
from dnnmask_xr.act.pool import default_threads, shared_pool
from dnnmask_xr.errors import ActFileError, DnnMaskError
from dnnmask_xr.xarray_.dask_writes import deflated_by_tasks
from dnnmask_xr.xarray_.options import OPTIONS

#: The encoding key of a set's layer that names the files it is read from (``source``
#: names one): kept when the values are cached in memory, where no wrapper names them.
SOURCES_KEY = "sources"

#: xarray's wrappers that hold another array as ``.array`` and index it as it is.
_PLAIN_WRAPPERS = (indexing.CopyOnWriteArray, indexing.MemoryCachedArray)


class LayerArray(BackendArray):
    """One layer of an ``.act.h5`` file, indexed lazily by xarray.

    Parameters
    ----------
    manager
        Opens the file on demand; picklable, so the array can travel to
        other processes.
    path
        The file's path, as it was opened.
    name
        The layer's dataset name at the file's root.
    shape, dtype
        The dataset's shape and dtype, read once when the file was opened.
    lock
        Held around each HDF5 call: None for xarray's HDF5 lock (the one its
        h5netcdf and netCDF4 backends hold, so that no two threads are in
        the HDF5 library at once), False for none but h5py's own, or a lock
        of the caller's (picklable, such as dask's ``SerializableLock``, for
        the array to travel to other processes).

    Notes
    -----
    A gzip layer is read by the chunk reader ``dnn_mask`` uses
    (:func:`~dnnmask_xr.act.chunk_read.fill_from_chunks`): each chunk a key
    touches is read as stored (one HDF5 call under the lock), inflated
    outside the lock and placed into the output, on the shared read pool
    when the read is made from the main thread, in the reading thread
    otherwise (a dask worker's). Other layers go through the same reader,
    HDF5 decoding each touched chunk (or box) in one call under the lock
    (:func:`read_outer`).

    Without a lock of ours (``lock=False``) reads are still safe: h5py
    holds its own global lock around every call into the HDF5 library,
    which is not thread-safe, and the file manager's lock guards opening
    the file. What is lost is the exclusion of other HDF5 users that do not
    go through h5py (netCDF4 linked to the same HDF5 library) and hold
    xarray's lock instead.
    """

    def __init__(
        self,
        manager: CachingFileManager,
        path: str,
        name: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        lock: contextlib.AbstractContextManager[Any] | Literal[False] | None = None,
    ) -> None:
        self.manager = manager
        self.path = path
        self.name = name
        self.shape = shape
        self.dtype = dtype
        # None is looked up at each read: an array pickled into another process
        # then holds that process's HDF5 lock, the one its xarray backends hold
        self.lock = lock
        # the open file and the layer's checked gzip index in it (None: HDF5
        # reads it), from the first read in this process
        self._opened: tuple[h5py.File, ChunkIndex | None] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # an open file does not travel; the other process checks its own index
        return {**self.__dict__, "_opened": None}

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return outer_read(self, key, self.read)

    def read(self, key: tuple[Any, ...], out: np.ndarray | None = None) -> np.ndarray:
        """Read an outer key (positive-step slices, increasing positions, integers).

        With ``out`` (the key's shape, no integer in the key), the values
        are placed there rather than into a new array.
        """
        lock = HDF5_LOCK if self.lock is None else None if self.lock is False else self.lock
        # held until the last chunk is placed, inflation on the pool included
        with held_file(self.manager, lock) as root:
            with contextlib.nullcontext() if lock is None else lock:
                try:
                    index = self._chunk_index(root)
                    if index is None:
                        values = read_outer(root[self.name], key)
                        if out is None:
                            return values
                        out[...] = values
                        return out
                except OSError as err:
                    # h5py reports damaged chunks as OSError; say which file and layer
                    raise ActFileError(
                        f"{root.filename!r}: cannot read layer {self.name!r} ({err})"
                    ) from None
            return read_chunks(index, key, lock=lock, out=out)

    def _chunk_index(self, root: h5py.File) -> ChunkIndex | None:
        """Give the layer's checked gzip index in ``root``, None to let HDF5 read it."""
        # read once: a read on another thread may put another file's index here
        opened = self._opened
        if opened is None or opened[0] is not root:
            # first read in this process, or the file was closed and reopened;
            # a damaged index is refused before any chunk is read through it
            dataset = root[self.name]
            index = layer_index(dataset)
            opened = (root, index if index is not None and index.decoded_here else None)
            self._opened = opened
        return opened[1]


def file_manager(
    where: str, *, allow_external: bool, check: Callable[[h5py.File], None] | None = None,
) -> CachingFileManager:
    """Give the file manager lazy layers read ``where`` through, each reopen and read checked.

    The file is identified now (:func:`~dnnmask_xr.act.files.file_identity`)
    and so are, with ``allow_external``, the other files its objects read
    from (:func:`~dnnmask_xr.act.files.source_files`); the identities
    travel with the manager, into dask workers too, and
    :func:`~dnnmask_xr.act.files.open_file` checks them. The file is
    reopened by its absolute path, as xarray's backends do, so that a
    reopen after ``os.chdir`` (or in a worker started elsewhere) finds the
    file that was opened. ``check`` is run on the file first, when given.

    Raises
    ------
    ActFileError
        If the file cannot be looked at, or ``check`` refuses it.
    """
    path = os.path.abspath(where)
    identity = file_identity(where)
    sources: SourceFiles = ()
    if check is not None or allow_external:
        with open_file(path, identity=identity) as root:
            if check is not None:
                check(root)
            if allow_external:
                sources = source_files(root)
    # mode="r" is passed on to open_file: a manager unpickled in another
    # process (a dask worker) passes its mode when it reopens the file
    return CachingFileManager(open_file, path, mode="r",
                              kwargs={"identity": identity, "sources": sources})


@contextlib.contextmanager
def held_file(
    manager: CachingFileManager, lock: contextlib.AbstractContextManager[Any] | None,
) -> Iterator[HeldFile]:
    """Hold a file manager's file open from the first HDF5 call of a read to the last.

    Parameters
    ----------
    manager
        Opens the file (:func:`~dnnmask_xr.act.files.open_file`, which
        checks that a file opened again is the one first opened).
    lock
        Held around opening and closing the file; None for the manager's own.

    Notes
    -----
    xarray's file cache closes the file it evicts, from whichever thread
    opens another file, and :meth:`Activations.close` closes files too:
    while held, such a close waits for the read to let go.
    """
    root = hold_file(manager, lock)
    try:
        yield root
    finally:
        root.release(lock)


def hold_file(manager: CachingFileManager,
              lock: contextlib.AbstractContextManager[Any] | None) -> HeldFile:
    """Give a file manager's file, held (see :func:`held_file`); the caller releases it."""
    guard = contextlib.nullcontext() if lock is None else lock
    closed = None
    while True:
        with guard:
            root = manager.acquire(needs_lock=lock is None)
            if root is closed:
                # closed and still cached (closed behind the cache's back): let
                # the next acquire open the file again
                manager.close(needs_lock=lock is None)
                continue
        if root.hold():
            return root
        # closed between the manager giving it and the hold: open it again
        closed = root


class ConcatenatedArray(BackendArray):
    """Layers of several files read as one, along the first axis (stimulus).

    Parameters
    ----------
    parts
        Each file's layer, in order; they agree on every axis but the first.
        Layers of ``.act.h5`` and ``.nc`` files as they are stored
        (:class:`LayerArray`), or, in a set with a zarr store, every part's
        layer as it is opened (:class:`StoredPart`).

    Notes
    -----
    A key reads, from each part it touches, only the positions it selects
    there, through that part's reader (the chunk reader for a gzip layer),
    straight into the output.
    """

    def __init__(self, parts: list[LayerArray] | list[StoredPart]) -> None:
        self.parts = parts
        sizes = [part.shape[0] for part in parts]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return outer_read(self, key, self._read)

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        # the key is outer: slices of positive step, increasing positions, integers
        positions, squeeze = _outer_positions(key, self.shape)
        out = np.empty(tuple(axis.size for axis in positions), dtype=self.dtype)
        rest = tuple(_as_run(axis) for axis in positions[1:])
        part_of = np.searchsorted(self.starts, positions[0], side="right") - 1
        for part in np.unique(part_of):
            # increasing positions: each part's are one run of the output
            chosen = np.flatnonzero(part_of == part)
            local = positions[0][chosen] - self.starts[part]
            self.parts[part].read((_as_run(local), *rest),
                                  out=out[chosen[0]:chosen[-1] + 1])
        return out.squeeze(axis=tuple(squeeze)) if squeeze else out


class StoredPart:
    """A layer of one file or store of a set, read through its own lazy variable.

    What :class:`ConcatenatedArray` reads from a part that is not an HDF5
    file's layer (a zarr store's, read by zarr): ``read`` takes the outer
    keys a :class:`LayerArray` takes, which a variable indexes as they are.

    Parameters
    ----------
    variable
        The part's layer, lazily indexed and not yet read.
    source
        Where its values are stored, so that no save replaces it.
    name
        The layer's name, said with ``source`` when reading fails.
    """

    def __init__(self, variable: xr.Variable, source: str, name: str) -> None:
        self.variable = variable
        self.source = source
        self.name = name
        self.shape = variable.shape
        self.dtype = variable.dtype

    def read(self, key: tuple[Any, ...], out: np.ndarray | None = None) -> np.ndarray:
        """Read an outer key, into ``out`` if given (as :meth:`LayerArray.read`).

        Raises
        ------
        ActFileError
            If the store cannot be read there (a damaged chunk, a missing
            object), naming the store and the layer.
        """
        with read_failures_said(f"{self.source!r}: cannot read layer {self.name!r}"):
            # a variable indexes several position arrays along their own axes (outer)
            values = self.variable[key].values
        if out is None:
            return values
        out[...] = values
        return out


@contextlib.contextmanager
def read_failures_said(what: str) -> Iterator[None]:
    """Raise what reading a store raised as one ``ActFileError`` line: ``what (reason)``.

    zarr's, fsspec's and the codecs' errors have no common class; this
    package's own pass unchanged.
    """
    try:
        yield
    except DnnMaskError:
        raise
    except Exception as err:
        raise ActFileError(f"{what} ({' '.join(str(err).split())})") from None


class StoredLayer(BackendArray):
    """A store's layer as a lazily read array: :class:`StoredPart` read by xarray.

    What the layers of one ``.act.zarr`` are, so that a damaged chunk is
    said in one line naming the store and the layer, as an HDF5 file's.
    """

    def __init__(self, part: StoredPart) -> None:
        self.part = part
        self.shape = part.shape
        self.dtype = part.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return outer_read(self, key, self.part.read)

    @classmethod
    def layer(cls, layer: xr.DataArray, source: str) -> xr.DataArray:
        """Give ``layer`` (lazy, as xarray's zarr backend gives it) read through a StoredLayer."""
        part = StoredPart(layer.variable, source, str(layer.name))
        variable = xr.Variable(layer.dims, indexing.LazilyIndexedArray(cls(part)),
                               attrs=layer.attrs)
        stored = xr.DataArray(variable, coords=layer.coords, name=layer.name)
        # set after: a DataArray made from a Variable drops its encoding, whose
        # preferred_chunks (the store's chunks) chunks={} follows
        stored.encoding = dict(layer.encoding)
        return stored


def outer_read(array: BackendArray, key: indexing.ExplicitIndexer,
               read: Any) -> np.ndarray:
    """Index a lazily read array as xarray's backends do: ``read`` takes outer keys."""
    # xarray's slice decomposition fails on empty reversed slices such as
    # slice(0, 0, -1) (IndexError); they select nothing, like slice(0, 0).
    key = type(key)(tuple(
        slice(0, 0) if isinstance(item, slice) and not range(*item.indices(size)) else item
        for item, size in zip(key.tuple, array.shape, strict=True)
    ))
    return indexing.explicit_indexing_adapter(key, array.shape,
                                              indexing.IndexingSupport.OUTER, read)


def _as_run(positions: np.ndarray) -> slice | np.ndarray:
    """Give increasing consecutive positions as a slice (a copy, not a gather)."""
    if positions.size and positions[-1] - positions[0] == positions.size - 1 and (
            positions.size == 1 or bool(np.all(np.diff(positions) == 1))):
        return slice(int(positions[0]), int(positions[-1]) + 1)
    return positions


def read_chunks(
    index: ChunkIndex, key: tuple[Any, ...],
    lock: contextlib.AbstractContextManager[Any] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Read an outer selection of a gzip layer through the chunk reader.

    Parameters
    ----------
    index
        The layer's checked chunk index, with a gzip level.
    key
        One entry per axis: a slice with a positive step, an integer, or an
        array of positions (in any order, repeats allowed).
    lock
        Held around each HDF5 call.
    out
        Where to place the values (of the key's shape; no integer in the
        key); a new array if None.

    Returns
    -------
    numpy.ndarray
        ``dataset[...]`` as numpy would index it orthogonally; axes given
        by an integer are dropped.

    Raises
    ------
    ActFileError
        If a chunk cannot be read, or a chunk in flight (stored and
        inflated) would not fit ``read_memory``.
    """
    threads = OPTIONS["read_threads"] or default_threads()
    in_main = threading.current_thread() is threading.main_thread()
    pool = shared_pool(threads) if threads > 1 and in_main else None
    return _read_by_chunks(index.dataset, index.dataset.chunks, index, key, out, pool=pool,
                           threads=threads, lock=lock)


def _read_by_chunks(
    dataset: h5py.Dataset, steps: tuple[int, ...], index: ChunkIndex | None,
    key: tuple[Any, ...], out: np.ndarray | None, whole: bool = True, **how: Any,
) -> np.ndarray:
    """Read a key through the chunk reader, each chunk (or box) of ``steps`` once.

    The one place lazy reads meet ``read_memory``: a chunk in flight is
    held as stored and as decoded, so a layer whose chunks are decoded
    ``whole`` needs twice a chunk; one that needs more is refused before
    anything is read, as the writer refuses a ``--memory`` its chunks do
    not fit. Boxes HDF5 reads in part (``whole=False``) are chosen to fit.
    """
    positions, squeeze = _outer_positions(key, dataset.shape)
    if out is None:
        out = np.empty(tuple(axis.size for axis in positions), dtype=dataset.dtype)
    if out.size:
        spare = OPTIONS["read_memory"]
        chunk_bytes = math.prod(steps) * dataset.dtype.itemsize
        if whole and CHUNK_COPIES * chunk_bytes > spare:
            needed = CHUNK_COPIES * chunk_bytes
            raise ActFileError(
                f"{dataset.file.filename!r}: layer {layer_name(dataset)!r} is stored in "
                f"chunks of {size_text(chunk_bytes)} (shape {steps}), each read whole; "
                f"reading them needs read_memory of at least {size_text(needed)} "
                f"(dx.set_options(read_memory={needed})), more than the "
                f"{size_text(spare)} set")
        spaced = [as_slice(axis) for axis in positions]
        if index is None and all(isinstance(item, slice) for item in spaced) and (
                dataset.chunks is None or all(item.step in (None, 1) for item in spaced)):
            # one box, or evenly spaced positions of a contiguous layer: HDF5
            # reads them straight into the output in one call, as h5py does
            # (its strided reads of chunked layers are the slow ones)
            read_box(dataset, tuple(spaced), out=out)
        else:
            pieces = [axis_pieces(axis, step)
                      for axis, step in zip(positions, steps, strict=True)]
            fill_from_chunks(dataset, steps, index, pieces, out, spare=spare, **how)
    return out.squeeze(axis=tuple(squeeze)) if squeeze else out


def _outer_positions(
    key: tuple[Any, ...], shape: tuple[int, ...]
) -> tuple[list[np.ndarray], list[int]]:
    """Turn an outer key into positions per axis, and the axes an integer drops."""
    positions, squeeze = [], []
    for axis, (item, size) in enumerate(zip(key, shape, strict=True)):
        if isinstance(item, slice):
            positions.append(np.arange(*item.indices(size), dtype=np.int64))
        else:
            positions.append(np.atleast_1d(np.asarray(item, dtype=np.int64)))
            if np.ndim(item) == 0:
                squeeze.append(axis)
    return positions, squeeze


def read_outer(dataset: h5py.Dataset, key: tuple[Any, ...]) -> np.ndarray:
    """Read an outer (orthogonal) selection of a layer HDF5 decodes, chunk by chunk.

    Parameters
    ----------
    dataset
        The HDF5 dataset: contiguous, or chunked with filters other than
        gzip alone (lzf, shuffle, fletcher32, scale-offset) or none.
    key
        One entry per axis: a slice with a positive step, an integer, or an
        array of positions (in any order, repeats allowed).

    Returns
    -------
    numpy.ndarray
        ``dataset[...]`` as numpy would index it orthogonally; axes given by
        an integer are dropped.

    Notes
    -----
    Each chunk the selection touches is read by HDF5 once, in one call for
    the box the selection spans in it, and its values are placed into the
    output in memory (a strided copy where the positions are evenly
    spaced): the time goes with the chunks touched, not with the number of
    runs of positions, whose product HDF5 would otherwise take one
    hyperslab each for. Layers HDF5 can read in any box (contiguous, or
    chunked without filters) are read in boxes that fit ``read_memory``
    instead of their chunks, if theirs would not.

    Raises
    ------
    ActFileError
        If a filtered layer's chunks (decoded whole) would not fit
        ``read_memory``.
    """
    steps = dataset.chunks
    itemsize = dataset.dtype.itemsize
    box_bytes = min(CHUNK_BYTES, OPTIONS["read_memory"] // CHUNK_COPIES)
    whole = steps is not None and dataset.id.get_create_plist().get_nfilters() > 0
    if not whole and (steps is None or math.prod(steps) * itemsize > box_bytes):
        steps = read_boxes(dataset.shape, itemsize, box_bytes)
    # the caller holds the lock around the whole read: HDF5 decodes here
    return _read_by_chunks(dataset, steps, None, key, None, whole, pool=None, threads=1)


def layer_values(array: xr.DataArray) -> FileSelection | ComputedValues:
    """Say where a write takes a layer's values from.

    Returns
    -------
    FileSelection or ComputedValues
        The file layer and positions behind a lazily selected layer (its
        chunks are then copied, or read once each); otherwise blocks read
        from the layer, naming the files they are read from.
    """
    stored = array.shape + (1,) * (len(STORED_DIMS) - array.ndim)
    return file_selection(array) or deflated_by_tasks(
        array, stored, ComputedValues(stored, array.dtype, _block_reader(array),
                                      layer_sources(array)))


def _block_reader(array: xr.DataArray) -> BlockReader:
    # blocks are read along stimulus and the first unit dim, and stored 4-D
    first = array.dims[1]

    def read_block(stimuli: slice, channels: slice) -> np.ndarray:
        values = array.isel({"stimulus": stimuli, first: channels}).values
        return values.reshape(values.shape + (1,) * (len(STORED_DIMS) - values.ndim))

    return read_block


def file_selection(array: xr.DataArray) -> FileSelection | None:
    """Find the file layer and positions behind a lazily selected layer.

    Returns
    -------
    FileSelection or None
        None if the values do not come straight from an ``.act.h5`` layer
        (in memory, dask-backed, or computed).
    """
    data = _lazily_indexed_layer(array)
    if data is None or data.array.ndim != len(STORED_DIMS) or not _padding_last(data.key.tuple):
        # a .nc layer of fewer dims than an .act.h5 layer is read, not copied
        return None
    layer = data.array
    positions = []
    for item, size in zip(data.key.tuple, layer.shape, strict=True):
        if isinstance(item, slice):
            positions.append(np.arange(*item.indices(size), dtype=np.int64))
        else:
            positions.append(np.asarray(item, dtype=np.int64).reshape(-1))
    root = hold_file(layer.manager, None)
    try:
        dataset = root[layer.name]
    except BaseException:
        root.release()
        raise
    # the writer reads the dataset after this returns: the file stays open
    # (whatever xarray's cache evicts meanwhile) until the selection is dropped
    weakref.finalize(dataset, root.release)
    return FileSelection(dataset, tuple(positions))


def lazy_values(values: BackendArray, unit_dims: tuple[str, ...]) -> indexing.LazilyIndexedArray:
    """Wrap a stored layer for xarray, lazily, along its own dims.

    The axes a layer of fewer than three unit dims pads (length 1, after
    its unit dims) are indexed away; the key still reaches the stored
    axes, so a selection reads, and a save copies, the file's chunks.
    """
    data = indexing.LazilyIndexedArray(values)
    padded = len(values.shape) - 1 - len(unit_dims)
    if padded:
        data = data[indexing.BasicIndexer((slice(None),) * (1 + len(unit_dims)) + (0,) * padded)]
    return data


def _padding_last(key: tuple[Any, ...]) -> bool:
    """Tell whether the axes a key drops (integers) all come after those it keeps.

    Only then are the stored positions those of the layer stored padded: a
    layer with a middle axis dropped (``.isel(row=0)`` of a conv layer)
    is stored with the remaining axes moved up, so its values are read.
    """
    dropped = [np.ndim(item) == 0 and not isinstance(item, slice) for item in key]
    return dropped == sorted(dropped)


def whole_layer(array: xr.DataArray) -> LayerArray | None:
    """Give the file layer behind a layer opened and not selected from, or None."""
    data = _lazily_indexed_layer(array)
    if data is None or any(
            item != slice(None) and not (isinstance(item, int | np.integer) and size == 1)
            for item, size in zip(data.key.tuple, data.array.shape, strict=True)):
        return None
    return data.array


def _lazily_indexed_layer(array: xr.DataArray) -> indexing.LazilyIndexedArray | None:
    # behind xarray's copy-on-write and cache wrappers, a lazy key on a file layer
    data = array.variable._data
    while isinstance(data, _PLAIN_WRAPPERS):
        data = data.array
    if isinstance(data, indexing.LazilyIndexedArray) and isinstance(data.array, LayerArray):
        return data
    return None


def layer_sources(array: xr.DataArray) -> frozenset[str]:
    """Name the files a layer's values are read from, however they are wrapped.

    First the ``source`` its ``encoding`` records (this package's read path
    and xarray's file backends record it there), or a set's ``sources``;
    then, for layers computed
    from others (whose encoding is gone), the lazy wrappers and, for a
    dask-backed layer, the dask graph are looked through for the layer
    arrays of files and stores opened here (a set's parts too) and the
    arrays of xarray's own file backends (``netcdf4``, ``h5netcdf``), open
    or closed.
    """
    found = {source} if isinstance(source := array.encoding.get("source"), str) else set()
    found.update(array.encoding.get(SOURCES_KEY, ()))
    data = array.variable._data
    if hasattr(data, "__dask_graph__"):
        return frozenset(found.union(path for task in data.__dask_graph__().values()
                                     for path in _paths(task, depth=0)))
    return frozenset(found.union(_paths(data, depth=0)))


def _zarr_store_of(item: Any) -> str | None:
    """Name the store a zarr array reads, if ``item`` is one or xarray's wrapper of one.

    xarray's zarr backend's arrays name no file (and neither does a computed
    layer's encoding), nor does the array ``dask.array.from_zarr`` puts in
    its graph: the zarr array knows its store, a folder or an fsspec URL.
    """
    if type(item).__module__ == "xarray.backends.zarr":
        item = getattr(item, "_array", None)
    if not type(item).__module__.startswith("zarr."):
        return None
    store = getattr(getattr(item, "store_path", None), "store", None)
    root = getattr(store, "root", None)  # zarr's LocalStore
    if root is not None:
        return os.fspath(root)
    fs, path = getattr(store, "fs", None), getattr(store, "path", None)  # FsspecStore
    if fs is not None and isinstance(path, str):
        return str(fs.unstrip_protocol(path))
    return None


def _paths(item: Any, depth: int) -> Iterator[str]:
    if depth > 16:  # graphs nest tasks; wrappers never nest this deep
        return
    if isinstance(item, LayerArray):
        yield item.path
    elif isinstance(item, ConcatenatedArray):
        yield from _paths(item.parts, depth + 1)
    elif isinstance(item, StoredPart):
        yield item.source
    elif isinstance(item, StoredLayer):  # a store's layer: zarr reads it
        yield item.part.source
    elif isinstance(getattr(getattr(item, "datastore", None), "_filename", None), str):
        # the arrays of xarray's own file backends (netcdf4, h5netcdf, scipy):
        # netCDF4 brings its own HDF5 library, whose open files h5py cannot list
        yield item.datastore._filename
    elif (store := _zarr_store_of(item)) is not None:
        yield store
    elif isinstance(item, tuple | list):
        for part in item:
            yield from _paths(part, depth + 1)
    elif type(item).__module__.startswith("xarray.") and hasattr(item, "array"):
        # xarray's indexing wrappers (and the adapter dask arrays hold) keep
        # what they wrap as .array
        yield from _paths(item.array, depth + 1)
    else:
        # dask's task objects keep their arguments (and data nodes their value)
        for name in ("value", "args"):
            inner = getattr(item, name, None)
            if isinstance(inner, tuple | list) or isinstance(inner, indexing.ExplicitlyIndexed):
                yield from _paths(inner, depth + 1)
