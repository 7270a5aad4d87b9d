"""Fill an array with the values of the input chunks a selection touches.

The one chunk reader behind every read of a chunked layer: ``dnn_mask``
and ``save_act`` re-encoding a selection, ``.values`` of a lazy layer, a
dask task. Each touched chunk is read once, as stored (HDF5 called from the
calling thread, under a lock when one is given, for that call alone), then
inflated and its selected values scattered into the output on a thread
pool, outside any lock (the codecs and numpy's copies release the GIL).
Chunks no selected position falls in are never read.

Without a checked gzip index (:class:`~dnnmask_xr.act.chunk_index.ChunkIndex`
with a level) HDF5 decodes each touched chunk itself, one box at a time.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from typing import Any, Protocol

import h5py
import numpy as np

from dnnmask_xr.act._interrupt import check_interrupt
from dnnmask_xr.act.chunk_index import ChunkIndex
from dnnmask_xr.act.chunking import AxisPieces
from dnnmask_xr.act.codec import CodecError, inflate
from dnnmask_xr.errors import ActFileError

#: Chunks in flight per pool thread: enough to keep threads busy, few enough
#: to keep memory flat.
IN_FLIGHT_PER_THREAD = 4
#: Bytes of input chunks inflated per task on the pool: small chunks one
#: task each would spend more time handing over than inflating. A read of
#: no more than this is done in the calling thread.
BATCH_BYTES = 2**20


class ChunkCounts(Protocol):
    """Where a read counts its chunks (a write's report, or a read's own)."""

    chunks_read: int
    chunks_inflated: int


def fill_from_chunks(
    source: h5py.Dataset,
    steps: tuple[int, ...],
    index: ChunkIndex | None,
    pieces: Sequence[AxisPieces],
    out: np.ndarray,
    counts: ChunkCounts,
    *,
    pool: Executor | None,
    threads: int,
    spare: int,
    lock: contextlib.AbstractContextManager[Any] | None = None,
) -> None:
    """Read each input chunk the selection touches once and place its values.

    Parameters
    ----------
    source
        The input layer.
    steps
        Its chunk shape.
    index
        Its checked index if its chunks are inflated here; None to let HDF5
        decode them.
    pieces
        Per axis, how the selection falls into the chunks
        (:func:`~dnnmask_xr.act.chunking.axis_pieces`).
    out
        Receives the selection; every element is written.
    counts
        Incremented by the chunks read and inflated.
    pool
        The threads that inflate and scatter; None to do it all here.
    threads
        How many threads ``pool`` has.
    spare
        Bytes the chunks in flight may take (besides ``out``).
    lock
        Held around each HDF5 call, for callers that share the file with
        other threads.

    Raises
    ------
    ActFileError
        If a chunk cannot be read or inflated, or was never written in a
        layer without a fill value.
    """
    lock = lock if lock is not None else contextlib.nullcontext()
    chunk_shape = tuple(steps)
    chunk_bytes = math.prod(chunk_shape) * source.dtype.itemsize
    per_batch = max(1, BATCH_BYTES // chunk_bytes)
    if pool is not None and math.prod(len(axis.chunk_ids) for axis in pieces) <= per_batch:
        pool = None  # one batch: handing it over would cost more than it saves
    limit = max(1, min(threads * IN_FLIGHT_PER_THREAD, spare // (2 * per_batch * chunk_bytes)))
    pending: deque[Future] = deque()
    batch: list[tuple] = []
    # per axis, for each touched chunk: where it starts, where its values go
    # and where they are in it; the loop below runs once per chunk, so it
    # only looks these up
    axes = [list(zip([chunk_id * step for chunk_id in axis.chunk_ids], axis.out_index,
                     axis.in_index, strict=True))
            for axis, step in zip(pieces, steps, strict=True)]
    try:
        for parts in itertools.product(*axes):
            offset = tuple(part[0] for part in parts)
            out_index = tuple(part[1] for part in parts)
            in_index = tuple(part[2] for part in parts)
            if index is not None:
                with lock:
                    stored = index.read(offset)
                counts.chunks_read += stored is not None
                counts.chunks_inflated += stored is not None and not stored[0]
                if stored is None and index.fillvalue is None:
                    raise no_fill_value(index, offset)
                batch.append((_scatter_raw, out, out_index, in_index, stored, chunk_shape,
                              index))
            else:
                box = tuple(slice(start, min(start + step, size)) for start, step, size
                            in zip(offset, steps, source.shape, strict=True))
                with lock:
                    values = read_box(source, box)
                counts.chunks_read += 1
                batch.append((_scatter, out, out_index, in_index, values))
            if len(batch) >= per_batch:
                _hand_over(pool, batch, pending)
                batch = []
                check_interrupt()
            while len(pending) >= limit:
                pending.popleft().result()
        if batch:
            _hand_over(pool, batch, pending)
        while pending:
            pending.popleft().result()
    finally:
        # a failed read leaves no task writing into ``out`` after it returns
        for done in pending:
            done.cancel()
        for done in pending:
            if not done.cancelled():
                with contextlib.suppress(Exception):
                    done.result()


def _hand_over(pool: Executor | None, batch: list[tuple], pending: deque[Future]) -> None:
    if pool is None:
        _run_batch(batch)
    else:
        pending.append(pool.submit(_run_batch, batch))


def _run_batch(batch: list[tuple]) -> None:
    for function, *args in batch:
        function(*args)


def _scatter_raw(
    out: np.ndarray, out_index: tuple, in_index: tuple,
    stored: tuple[int, bytes] | None, chunk_shape: tuple[int, ...], index: ChunkIndex,
) -> None:
    _scatter(out, out_index, in_index, decode_chunk(stored, chunk_shape, index))


def _scatter(out: np.ndarray, out_index: tuple, in_index: tuple, values: np.ndarray) -> None:
    out[_outer(out_index, out.shape)] = values[_outer(in_index, values.shape)]


def _outer(index: tuple, shape: tuple[int, ...]) -> tuple:
    """Turn per-axis slices and position arrays into one orthogonal index."""
    if all(type(item) is slice for item in index):
        return index
    return np.ix_(*(np.arange(*item.indices(size)) if isinstance(item, slice) else item
                    for item, size in zip(index, shape, strict=True)))


def decode_chunk(
    stored: tuple[int, bytes] | None, chunk_shape: tuple[int, ...], index: ChunkIndex
) -> np.ndarray:
    """Turn a gzip chunk's stored bytes into its values (its fill value if None)."""
    dtype = index.dtype
    if stored is None:  # never written: HDF5 reads its fill value
        return np.full(chunk_shape, index.fillvalue, dtype=dtype)
    filter_mask, data = stored
    size = math.prod(chunk_shape) * dtype.itemsize
    try:
        data = data if filter_mask else inflate(data, size)
        return np.frombuffer(data, dtype=dtype).reshape(chunk_shape)
    except (*CodecError, ValueError) as err:
        raise ActFileError(f"{index.dataset.file.filename!r}: cannot read layer "
                           f"{layer_name(index.dataset)!r} (damaged chunk: {err})") from None


def no_fill_value(index: ChunkIndex, offset: tuple[int, ...]) -> ActFileError:
    """Make the error for a chunk never written in a layer without a fill value."""
    # HDF5 would read such a chunk from uninitialised memory
    return ActFileError(f"{index.where}: the chunk at {offset} was never written and the "
                        "layer has no fill value, so it holds no values")


def read_box(source: h5py.Dataset, box: tuple[slice, ...]) -> np.ndarray:
    """Read a box of a layer through HDF5, damage reported in one line."""
    try:
        return source[box]
    except OSError as err:
        raise ActFileError(f"{source.file.filename!r}: cannot read layer "
                           f"{layer_name(source)!r} ({err})") from None


def layer_name(dataset: h5py.Dataset) -> str:
    """Give the layer's name: its dataset's path without the leading slash."""
    return dataset.name.lstrip("/")
