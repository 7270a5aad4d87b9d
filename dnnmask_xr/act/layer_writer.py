"""Write one layer of an output file, chunk by chunk, on every core.

Three ways, fastest first:

- **copied**: the output keeps whole chunks of a gzip-compressed input
  layer, so their compressed bytes are copied as they are, one chunk at a
  time, each looked up as a read looks it up (never by HDF5's object copy,
  which trusts a damaged index where a read does not);
- **re-encoded**: every input chunk the selection touches is read once and
  inflated, its selected values placed into the output block, and the
  output's chunks deflated;
- **encoded**: values come from elsewhere (memory, dask, any lazy array) a
  block at a time, and the output's chunks are deflated.

The output is written from the calling thread; the input's touched chunks
are read, inflated and scattered by the chunk reader
(:mod:`~dnnmask_xr.act.chunk_read`) and the output's chunks deflated on a
thread pool (the codecs release the GIL). Memory held at
once is one output block plus a few chunks in flight per thread; a layer
whose chunks alone would not fit the budget is refused before anything is
read. Every chunked input's index is checked first
(:mod:`~dnnmask_xr.act.chunk_index`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import h5py
import numpy as np

from dnnmask_xr.act._interrupt import check_interrupt, interruptible
from dnnmask_xr.act.chunk_index import ChunkIndex, layer_index, layer_name
from dnnmask_xr.act.chunk_read import (
    IN_FLIGHT_PER_THREAD,
    decode_chunk,
    fill_from_chunks,
)
from dnnmask_xr.act.chunk_read import size_text as _size
from dnnmask_xr.act.chunking import (
    aligned_chunks,
    axis_pieces,
    chunk_grid,
    iter_blocks,
    output_chunks,
)
from dnnmask_xr.act.codec import deflate
from dnnmask_xr.act.plan import BlockReader, ComputedValues, FileSelection, StackedParts
from dnnmask_xr.errors import ActFileError, DnnMaskError

# Layers are created with track_order=True: it gives them the newer object
# header (HDF5 1.8's), whose attributes may exceed 64 KiB, so the unit
# numbers of a layer of any width fit.
#: A chunk needs this many times its size of the budget: the output block
#: takes a third, and a chunk in flight is held compressed and inflated.
_BUDGET_PER_CHUNK = 3

#: Level recorded in the output's gzip filter, DNNBrain's (h5py's default).
GZIP_LEVEL = 4


class Sink(Protocol):
    """Where one output layer goes: the file format's way to create its dataset."""

    #: The layer's name in the output.
    name: str
    #: The dataset once created.
    dataset: h5py.Dataset | None

    def create(
        self, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...] | None,
        level: int | None, fillvalue: Any,
    ) -> h5py.Dataset:
        """Create the layer's dataset: chunked and gzip at ``level``, or plain if None."""


@dataclass
class LayerReport:
    """What writing one layer did.

    Attributes
    ----------
    name
        The layer.
    method
        ``"copied"`` (compressed chunks copied unchanged), ``"re-encoded"``
        (touched input chunks inflated, output deflated), ``"encoded"``
        (values computed or in memory, output deflated) or ``"empty"``.
    chunks_read
        Input chunks read from the file (compressed bytes).
    chunks_inflated
        Input chunks inflated.
    chunks_written
        Output chunks stored.
    bytes_written
        Compressed bytes stored.
    """

    name: str
    method: str = "empty"
    chunks_read: int = 0
    chunks_inflated: int = 0
    chunks_written: int = 0
    bytes_written: int = 0


@dataclass
class Budget:
    """How a layer may be written: memory, threads, progress.

    Attributes
    ----------
    memory
        Most bytes of activations held at once.
    pool
        The threads that inflate and deflate chunks.
    threads
        How many threads the pool has.
    on_progress
        Called with bytes of output done, for a progress bar.
    verify
        Inflate chunks that are copied unchanged, to check them: a damaged
        input chunk then stops the write instead of being copied as it is.
    """

    memory: int
    pool: Executor
    threads: int
    on_progress: Callable[[int], None] = field(default=lambda done: None)
    verify: bool = False

    @property
    def block_bytes(self) -> int:
        """Bytes of one output block: a third of the budget.

        The rest is for its compressed chunks and the chunks in flight.
        """
        return max(1, self.memory // 3)


def write_selection(sink: Sink, selection: FileSelection, budget: Budget) -> LayerReport:
    """Write the selected units of a file's layer as a new gzip dataset.

    Parameters
    ----------
    sink
        Creates the new dataset.
    selection
        The input layer and the positions to keep.
    budget
        Memory, threads and progress.

    Returns
    -------
    LayerReport
        How it was written and how many chunks were read and written.
    """
    source = selection.dataset
    shape, dtype = selection.shape, source.dtype
    report = LayerReport(sink.name)
    with _reading(source):
        chunked = source.chunks is not None
    index = layer_index(source)
    if chunked:
        _check_chunk_fits(source, budget)
    gzip_chunks = index is not None and index.level is not None
    if gzip_chunks:
        mapping = [aligned_chunks(positions, size, step) for positions, size, step
                   in zip(selection.positions, source.shape, source.chunks, strict=True)]
        # HDF5 wants chunks no larger than the dataset: an output that keeps
        # just one short edge chunk along an axis is re-encoded instead
        fits = all(step <= size for step, size in zip(source.chunks, shape, strict=True))
        if fits and all(axis is not None for axis in mapping):
            target = sink.create(shape, dtype, source.chunks, index.level, index.fillvalue)
            _copy_chunks(index, target, mapping, budget, report)
            return report
    stimulus_step = None
    if chunked and _is_identity(selection.positions[0], source.shape[0]):
        stimulus_step = source.chunks[0]
    target = _create_output(sink, shape, dtype, stimulus_step)
    _reencode(selection, target, budget, report,
              index if index is not None and index.decoded_here else None)
    return report


def write_values(
    sink: Sink,
    shape: tuple[int, ...],
    dtype: np.dtype,
    read_block: BlockReader,
    budget: Budget,
    chunks: tuple[int, ...] | None = None,
) -> LayerReport:
    """Write a layer whose values come a block at a time from ``read_block``.

    Parameters
    ----------
    sink
        Creates the new dataset.
    shape, dtype
        The layer's shape and dtype.
    read_block
        Returns the values of ``(stimulus slice, channel slice)``, all rows
        and columns; called once per block, in order.
    budget
        Memory, threads and progress.
    chunks
        The output's chunks; chosen here (about 1 MiB) if None.
    """
    report = LayerReport(sink.name, "encoded")
    if chunks is None:
        target = _create_output(sink, shape, dtype, None)
    else:
        # HDF5 wants chunks no longer than the layer
        chunks = tuple(min(step, size) for step, size in zip(chunks, shape, strict=True))
        target = sink.create(shape, dtype, chunks, GZIP_LEVEL, None)
    store_values(target, 0, shape, read_block, budget, report)
    return report


def store_values(
    target: h5py.Dataset,
    start: int,
    shape: tuple[int, ...],
    read_block: BlockReader,
    budget: Budget,
    report: LayerReport,
    deflating: ChunksInOrder | None = None,
) -> None:
    """Store values of ``shape`` from ``read_block`` in ``target``, from stimulus ``start`` on.

    ``start`` is a multiple of the target's chunk length along ``stimulus``
    (a streamed write's part goes after the whole chunks of those before).
    With ``deflating``, the layer's last chunks may still be deflating when
    this returns, stored by that queue as the next chunks come or at its
    :meth:`~ChunksInOrder.finish`: for values held in memory already, whose
    blocks cost nothing to keep.
    """
    dtype = target.dtype
    if 0 in shape:
        return  # no value (a part of a layer of no unit)
    for stimuli, channels in iter_blocks(shape, target.chunks, dtype.itemsize,
                                         budget.block_bytes):
        # a block of a dask graph or a computation can take seconds: a signal stops it
        with interruptible(), computing():
            block = np.asarray(read_block(stimuli, channels), dtype=dtype)
        _store_block(target, block, (start + stimuli.start, channels.start, 0, 0), budget,
                     report, deflating)


class ChunksInOrder:
    """Chunks deflating on a pool, each stored once it and those before it are deflated.

    A block's last chunks deflate while the next block's first ones are
    handed in, so that the pool's threads do not wait for one another at
    the end of every block (a streamed part holds a block per layer, and a
    fully connected layer's block is a single chunk).
    """

    def __init__(self, pool: Executor) -> None:
        self._pool = pool
        self._pending: deque[tuple[h5py.Dataset, tuple[int, ...], Future, LayerReport]] = (
            deque())

    def add(self, target: h5py.Dataset, offset: tuple[int, ...], piece: np.ndarray,
            report: LayerReport, limit: int) -> None:
        """Deflate ``piece`` as ``target``'s chunk at ``offset``; at most ``limit`` pending."""
        self._pending.append((target, offset,
                              self._pool.submit(deflated_chunk, piece, target.chunks), report))
        while len(self._pending) >= limit:
            self._store_next()

    def finish(self) -> None:
        """Store every chunk handed in."""
        while self._pending:
            self._store_next()

    def _store_next(self) -> None:
        target, offset, done, report = self._pending.popleft()
        data = done.result()
        target.id.write_direct_chunk(offset, data)
        report.chunks_written += 1
        report.bytes_written += len(data)


def write_deflated(sink: Sink, values: ComputedValues, budget: Budget) -> LayerReport:
    """Store a layer's chunks compressed elsewhere (by dask's workers), as they come.

    The output is chunked as ``values.chunks`` says, gzip at
    :data:`GZIP_LEVEL`; each chunk arrives deflated, padded to the whole
    chunk at the layer's edges, and is stored as it is.
    """
    report = LayerReport(sink.name, "encoded")
    target = sink.create(values.shape, np.dtype(values.dtype), values.chunks, GZIP_LEVEL, None)
    chunk_bytes = math.prod(values.chunks) * np.dtype(values.dtype).itemsize
    computed = values.deflated(budget.memory)
    while True:
        with computing():
            deflated = next(computed, None)
        if deflated is None:
            break
        for offset, data in deflated:
            target.id.write_direct_chunk(offset, data)
            report.chunks_written += 1
            report.bytes_written += len(data)
        budget.on_progress(len(deflated) * chunk_bytes)
        check_interrupt()
    return report


class ValuesFailed(Exception):
    """What computing a layer's values raised, carried out of the write as it is.

    The values are the caller's (a dask graph, a lazy array, a model's
    output): their ``RuntimeError`` or ``OSError`` is not a failure to
    write the output, and :func:`~dnnmask_xr.act.write.write_failures_said`
    raises it unchanged, once the output is removed.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


@contextlib.contextmanager
def computing() -> Iterator[None]:
    """Mark what the computation of values raises as the caller's (:class:`ValuesFailed`)."""
    try:
        yield
    except DnnMaskError:
        raise  # this package's own (a damaged input read lazily): said as it is
    except Exception as err:
        raise ValuesFailed(err) from None


def deflated_chunk(piece: np.ndarray, steps: tuple[int, ...]) -> bytes:
    """Deflate one chunk's values as HDF5's gzip filter stores them, padded to ``steps``."""
    if piece.shape != steps:
        # HDF5 stores edge chunks whole; the part outside the layer is never read
        padded = np.zeros(steps, dtype=piece.dtype)
        padded[tuple(slice(0, size) for size in piece.shape)] = piece
        piece = padded
    return deflate(np.ascontiguousarray(piece).data)


def write_stacked(sink: Sink, parts: StackedParts, budget: Budget) -> LayerReport:
    """Write a layer stored in parts (a streamed write's) by copying their chunks.

    The parts were written chunked alike, each but the last a whole number
    of chunks long along ``stimulus`` (:mod:`~dnnmask_xr.act.parts`), so
    every output chunk is one stored chunk of one part, its compressed bytes
    copied as they are. A last part shorter than one chunk (HDF5 shortened
    its chunks to its length) is read and deflated again into the output's
    last, padded chunks. The method reported is ``encoded``: the values
    were deflated as the parts were written.

    Raises
    ------
    ActFileError
        If the parts are not chunked so (a part file changed since), or a
        chunk cannot be read.
    """
    report = LayerReport(sink.name, "encoded")
    first = parts.parts[0]
    steps = first.chunks
    indexes = [layer_index(part) for part in parts.parts]
    for number, (part, index) in enumerate(zip(parts.parts, indexes, strict=True), start=1):
        last = number == len(parts.parts)
        short = last and number > 1 and part.shape[0] < steps[0]
        if (index is None or index.level is None or part.shape[1:] != first.shape[1:]
                or part.dtype != first.dtype or index.first_unwritten()
                or (part.chunks != steps and not short)
                or (not last and part.shape[0] % steps[0])):
            raise ActFileError(f"{part.file.filename!r}: layer {layer_name(part)!r} is not "
                               f"stored as the first part stores it (chunks {steps}); the "
                               "parts of a streamed write were changed")
    target = sink.create(parts.shape, parts.dtype, steps, indexes[0].level,
                         indexes[0].fillvalue)
    start = 0
    for part, index in zip(parts.parts, indexes, strict=True):
        if part.chunks != steps:
            with _reading(part):
                block = part[...]
            _store_block(target, block, (start, 0, 0, 0), budget, report)
            continue
        for offset in sorted(index.chunks):
            filter_mask, data = index.read(offset)
            target.id.write_direct_chunk((start + offset[0], *offset[1:]), data, filter_mask)
            report.chunks_read += 1
            report.chunks_written += 1
            report.bytes_written += len(data)
        start += part.shape[0]
        budget.on_progress(part.size * part.dtype.itemsize)
        check_interrupt()
    return report


def gzip_options(chunks: tuple[int, ...] | None, level: int | None) -> dict[str, Any]:
    """HDF5 creation options for a layer: gzip at ``level`` if chunked, none if not."""
    return {} if chunks is None else {"compression": "gzip", "compression_opts": level}


def _create_output(
    sink: Sink, shape: tuple[int, ...], dtype: np.dtype, stimulus_step: int | None
) -> h5py.Dataset:
    chunks = output_chunks(shape, dtype.itemsize, stimulus_step)
    return sink.create(shape, dtype, chunks, GZIP_LEVEL, None)


def _check_chunk_fits(source: h5py.Dataset, budget: Budget) -> None:
    """Refuse a layer whose chunks are too large to read within the budget."""
    chunk_bytes = int(np.prod(source.chunks)) * source.dtype.itemsize
    needed = _BUDGET_PER_CHUNK * chunk_bytes
    if needed > budget.memory:
        raise ActFileError(
            f"{source.file.filename!r}: layer {layer_name(source)!r} is stored in chunks of "
            f"{_size(chunk_bytes)} (shape {source.chunks}); reading them needs a memory "
            f"budget of at least {_size(needed)} (--memory {_memory_flag(needed)}, or "
            f"memory={needed}), more than the {_size(budget.memory)} given")


def _memory_flag(nbytes: int) -> str:
    """Give the smallest round ``--memory`` value of at least ``nbytes``."""
    if nbytes <= 2**20:
        return f"{-(-nbytes // 2**10)}K"
    return f"{-(-nbytes // 2**20)}M"


def _copy_chunks(
    index: ChunkIndex, target: h5py.Dataset, mapping: list[np.ndarray],
    budget: Budget, report: LayerReport,
) -> None:
    report.method = "copied"
    source = index.dataset
    steps = source.chunks
    pending: deque[Future] = deque()
    limit = budget.threads * IN_FLIGHT_PER_THREAD
    # a chunk the input never wrote reads as its fill value: an output that
    # could not take that fill value gets the chunk written out
    unwritten = None
    # compared bit for bit: -0.0 equals 0.0, and NaNs never equal
    if index.fillvalue is not None and (np.asarray(target.fillvalue, source.dtype).tobytes()
                                        != np.asarray(index.fillvalue, source.dtype).tobytes()):
        unwritten = (0, deflate(np.full(steps, index.fillvalue, dtype=source.dtype).data))
    # per axis, for each output chunk: where it is read, where it goes, and
    # how much of the layer it holds (edge chunks are short); the loop below
    # runs once per chunk, so it only looks these up
    axes = [[(int(read) * step, start, min(step, size - start))
             for read, start in zip(positions, range(0, size, step), strict=True)]
            for positions, step, size in zip(mapping, steps, target.shape, strict=True)]
    itemsize = source.dtype.itemsize
    raw_bytes = math.prod(steps) * itemsize
    done = 0
    for count, pieces in enumerate(itertools.product(*axes)):
        offset = tuple(piece[0] for piece in pieces)
        stored = index.read(offset)
        report.chunks_read += stored is not None
        if stored is None and index.fillvalue is None:
            raise index.unset_error(offset)
        stored = stored or unwritten
        if stored is not None:
            filter_mask, data = stored
            # a partial edge chunk of a whole chunk's raw size is decoded before
            # it is copied: HDF5 stores such chunks unfiltered under filter mask
            # 0 when asked to (H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS, which h5py
            # cannot ask about), and copied so, no reader could open the output
            suspect = (len(data) == raw_bytes and not filter_mask and any(
                piece[0] + step > size
                for piece, step, size in zip(pieces, steps, source.shape, strict=True)))
            if budget.verify or suspect:
                pending.append(budget.pool.submit(decode_chunk, stored, steps, index))
                report.chunks_inflated += not index.stored_raw(filter_mask)
            target.id.write_direct_chunk(tuple(piece[1] for piece in pieces), data,
                                         filter_mask)
            report.chunks_written += 1
            report.bytes_written += len(data)
        while len(pending) >= limit:
            pending.popleft().result()
        done += math.prod(piece[2] for piece in pieces) * itemsize
        if count % 256 == 255:
            budget.on_progress(done)
            done = 0
            check_interrupt()
    budget.on_progress(done)
    while pending:
        pending.popleft().result()


def _reencode(
    selection: FileSelection, target: h5py.Dataset, budget: Budget, report: LayerReport,
    index: ChunkIndex | None,
) -> None:
    """Inflate the touched input chunks and deflate the output, block by block.

    With the ``index`` of an input chunked with gzip alone, its chunks are
    read compressed and inflated here; without, HDF5 decodes them.
    """
    report.method = "re-encoded"
    source = selection.dataset
    steps = source.chunks or output_chunks(source.shape, source.dtype.itemsize)
    stim, chn, rows, cols = selection.positions
    inner = [axis_pieces(rows, steps[2]), axis_pieces(cols, steps[3])]
    for stimuli, channels in iter_blocks(target.shape, target.chunks, source.dtype.itemsize,
                                         budget.block_bytes):
        pieces = [axis_pieces(stim[stimuli], steps[0]), axis_pieces(chn[channels], steps[1]),
                  *inner]
        block = np.empty((stimuli.stop - stimuli.start, channels.stop - channels.start,
                          rows.size, cols.size), dtype=source.dtype)
        with interruptible():
            fill_from_chunks(source, steps, index, pieces, block, report, pool=budget.pool,
                             threads=budget.threads, spare=budget.memory - block.nbytes)
        _store_block(target, block, (stimuli.start, channels.start, 0, 0), budget, report)


def _store_block(
    target: h5py.Dataset, block: np.ndarray, origin: tuple[int, ...], budget: Budget,
    report: LayerReport, deflating: ChunksInOrder | None = None,
) -> None:
    """Deflate a block's chunks on the pool and store them in order.

    Every chunk is stored before this returns, unless ``deflating`` (a
    queue the caller finishes) is given.
    """
    steps = target.chunks
    queue = deflating or ChunksInOrder(budget.pool)
    chunk_bytes = int(np.prod(steps)) * block.dtype.itemsize
    limit = max(1, min(budget.threads * IN_FLIGHT_PER_THREAD,
                       (budget.memory - block.nbytes) // (2 * chunk_bytes)))
    for index in chunk_grid(block.shape, steps):
        local = tuple(i * step for i, step in zip(index, steps, strict=True))
        piece = block[tuple(slice(start, start + step) for start, step in zip(local, steps,
                                                                               strict=True))]
        offset = tuple(start + first for start, first in zip(local, origin, strict=True))
        queue.add(target, offset, piece, report, limit)
    if deflating is None:
        queue.finish()
    budget.on_progress(block.nbytes)
    check_interrupt()


@contextlib.contextmanager
def _reading(source: h5py.Dataset) -> Iterator[None]:
    """Turn HDF5's errors reading a damaged input into a one-line error."""
    try:
        yield
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        raise ActFileError(f"{source.file.filename!r}: cannot read layer "
                           f"{layer_name(source)!r} ({err})") from None


def _is_identity(positions: np.ndarray, size: int) -> bool:
    return positions.size == size and bool(np.all(positions == np.arange(size)))
