"""Fill an array with the values of the input chunks a selection touches.

The one chunk reader behind every read of a chunked layer: ``dnn_mask``
and ``save_act`` re-encoding a selection, ``.values`` of a lazy layer, a
dask task. The touched chunks go to a thread pool in batches; each pool
thread reads a chunk as stored (one HDF5 call, under the lock when one is
given, and h5py's own), inflates it and scatters its selected values into
the output outside any lock (the codecs and numpy's copies release the
GIL), so one thread reads while the others inflate. Each touched chunk is
read once; chunks no selected position falls in are never read. A read of
one batch runs in the calling thread.

Without a checked gzip index (:class:`~dnnmask_xr.act.chunk_index.ChunkIndex`
with a level) HDF5 decodes each touched chunk itself, one box at a time.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from typing import Any, Protocol

import h5py
import numpy as np

from dnnmask_xr.act._interrupt import check_interrupt
from dnnmask_xr.act.chunk_index import ChunkIndex, layer_name
from dnnmask_xr.act.chunking import AxisPieces
from dnnmask_xr.act.codec import CodecError, inflate, unchecksum
from dnnmask_xr.errors import ActFileError

#: Chunks in flight per pool thread: enough to keep threads busy, few enough
#: to keep memory flat.
IN_FLIGHT_PER_THREAD = 4
#: Copies of a chunk in flight: as stored and as decoded. A chunk needs this
#: many times its size of the memory a read may hold besides its output.
CHUNK_COPIES = 2
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
    counts: ChunkCounts | None = None,
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
        Incremented by the chunks read and inflated, if given.
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
    chunk_bytes = math.prod(steps) * source.dtype.itemsize
    per_batch = max(1, BATCH_BYTES // chunk_bytes)
    if pool is not None and math.prod(len(axis.chunk_ids) for axis in pieces) <= per_batch:
        pool = None  # one batch: handing it over would cost more than it saves
    # a task holds one chunk at a time, stored and inflated; queued tasks hold
    # none: the tasks in flight bound the running ones, and so the memory
    limit = max(1, min(threads * IN_FLIGHT_PER_THREAD, spare // (CHUNK_COPIES * chunk_bytes)))
    read = functools.partial(_read_batch, source, tuple(steps), index, out, lock)
    # per axis, for each touched chunk: where it starts, where its values go
    # and where they are in it; the loop below runs once per chunk, so it
    # only looks these up
    axes = [list(zip([chunk_id * step for chunk_id in axis.chunk_ids], axis.out_index,
                     axis.in_index, strict=True))
            for axis, step in zip(pieces, steps, strict=True)]
    batches = _batches(itertools.product(*axes), per_batch)
    pending: deque[Future] = deque()
    try:
        for batch in batches:
            if pool is None:
                _count(counts, read(batch))
            else:
                pending.append(pool.submit(read, batch))
            check_interrupt()
            while len(pending) >= limit:
                _count(counts, _finish(pending))
        while pending:
            _count(counts, _finish(pending))
    finally:
        # a failed read leaves no task writing into ``out`` after it returns
        for done in pending:
            done.cancel()
        for done in pending:
            if not done.cancelled():
                with contextlib.suppress(Exception):
                    done.result()


def _batches(parts: Iterator[tuple], size: int) -> Iterator[list[tuple[tuple, ...]]]:
    """Group the touched chunks ``size`` at a time: offset, output and chunk index each."""
    while batch := [(tuple(part[0] for part in chunk), tuple(part[1] for part in chunk),
                     tuple(part[2] for part in chunk))
                    for chunk in itertools.islice(parts, size)]:
        yield batch


def _finish(pending: deque[Future]) -> tuple[int, int]:
    """Wait for the oldest task and drop it from ``pending`` only once it is done."""
    # popped before waiting, a task interrupted while awaited (Ctrl-C) would
    # escape the clean-up and go on writing into the output
    done = pending[0].result()
    pending.popleft()
    return done


def _count(counts: ChunkCounts | None, done: tuple[int, int]) -> None:
    if counts is not None:
        counts.chunks_read += done[0]
        counts.chunks_inflated += done[1]


def _read_batch(
    source: h5py.Dataset, steps: tuple[int, ...], index: ChunkIndex | None, out: np.ndarray,
    lock: contextlib.AbstractContextManager[Any], batch: list[tuple[tuple, ...]],
) -> tuple[int, int]:
    """Read, inflate and place a batch of chunks; give how many were read and inflated.

    Runs on a pool thread: the lock is held only for each HDF5 call, so that
    one thread reads while the others inflate.
    """
    read = inflated = 0
    for offset, out_index, in_index in batch:
        if index is not None:
            with lock:
                stored = index.read(offset)
            if stored is None and index.fillvalue is None:
                raise index.unset_error(offset)
            values = decode_chunk(stored, steps, index)
            read += stored is not None
            inflated += stored is not None and not index.stored_raw(stored[0])
        else:
            # HDF5 decodes the chunk (or reads the box) itself; only the part
            # the selection spans is copied out of it
            box, in_index = _span(offset, in_index)
            with lock:
                values = read_box(source, box)
            read += 1
        _scatter(out, out_index, in_index, values)
    return read, inflated


def _span(offset: tuple[int, ...], in_index: tuple) -> tuple[tuple[slice, ...], tuple]:
    """Give the box of a chunk that its selected positions span, and where they are in it."""
    box, local = [], []
    for start, item in zip(offset, in_index, strict=True):
        if isinstance(item, slice):  # increasing, and ``stop`` is one past the last
            first, last = item.start, item.stop - 1
            local.append(slice(0, last - first + 1, item.step))
        else:
            first, last = int(item.min()), int(item.max())
            local.append(item - first)
        box.append(slice(start + first, start + last + 1))
    return tuple(box), tuple(local)


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
    """Turn a gzip chunk's stored bytes into its values (its fill value if None).

    As HDF5 decodes it, the pipeline's filters undone last to first, each
    unless its bit of the filter mask is set (bits past the pipeline name
    no filter): the fletcher32 checksum checked and stripped, the stream
    inflated, never past the chunk's size, the bytes unshuffled.
    """
    dtype = index.dtype
    if stored is None:  # never written: HDF5 reads its fill value
        return np.full(chunk_shape, index.fillvalue, dtype=dtype)
    filter_mask, data = stored
    size = math.prod(chunk_shape) * dtype.itemsize
    try:
        if index.checksummed and not filter_mask & index.checksum_skipped:
            data = unchecksum(data)
        if not filter_mask & index.gzip_skipped:
            data = inflate(data, size)
        if index.shuffled and not filter_mask & 1:
            data = _unshuffle(data, dtype.itemsize)
        return np.frombuffer(data, dtype=dtype).reshape(chunk_shape)
    except (*CodecError, ValueError) as err:
        raise ActFileError(f"{index.dataset.file.filename!r}: cannot read layer "
                           f"{layer_name(index.dataset)!r} (damaged chunk: {err})") from None


def _unshuffle(data: bytes | np.ndarray, itemsize: int) -> np.ndarray:
    """Undo HDF5's byte shuffle: the k-th bytes of all values were stored together."""
    planes = np.frombuffer(data, dtype=np.uint8).reshape(itemsize, -1)
    return np.ascontiguousarray(planes.T)


def read_box(source: h5py.Dataset, box: tuple[slice, ...],
             out: np.ndarray | None = None) -> np.ndarray:
    """Read a box of a layer through HDF5 (into ``out`` if given), damage reported in one line."""
    try:
        if out is None:
            return source[box]
        source.read_direct(out, box)
        return out
    except OSError as err:
        raise ActFileError(f"{source.file.filename!r}: cannot read layer "
                           f"{layer_name(source)!r} ({err})") from None


def size_text(nbytes: int) -> str:
    """Give a number of bytes as people read it: ``8.0 MiB``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"

