"""Chunk geometry: which chunks a selection touches, and the output's chunks.

Everything here is arithmetic on shapes and 0-based positions; nothing reads
a file.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

#: Target bytes of one chunk of a written layer, before compression.
CHUNK_BYTES = 2**20


def output_chunks(
    shape: Sequence[int], itemsize: int, stimulus_step: int | None = None
) -> tuple[int, int, int, int]:
    """Choose the chunks of a written layer: about 1 MiB, whole rows and columns.

    Chunks cut only the stimulus and channel axes, so reading one channel
    for every stimulus touches that channel's chunks and no other; a chunk
    holds several channels only when it holds every stimulus.

    Parameters
    ----------
    shape
        The layer's shape, ``(stimulus, channel, row, column)``.
    itemsize
        Bytes per value.
    stimulus_step
        The input's chunk length along ``stimulus`` when the stimuli are
        copied in order: chunk lengths are then multiples (or divisors) of
        it, so no input chunk is split between two output blocks.
    """
    n_stim, n_chn, n_row, n_col = (max(1, int(size)) for size in shape)
    plane = max(1, n_row * n_col * itemsize)
    if n_stim * plane <= CHUNK_BYTES:
        return (n_stim, max(1, min(n_chn, CHUNK_BYTES // (n_stim * plane))), n_row, n_col)
    fits = max(1, CHUNK_BYTES // plane)
    if stimulus_step:
        if stimulus_step <= fits:
            length = stimulus_step * (fits // stimulus_step)
        else:
            length = max(d for d in range(1, fits + 1) if stimulus_step % d == 0)
    else:
        length = fits
    return (min(n_stim, length), 1, n_row, n_col)


def aligned_chunks(positions: np.ndarray, size: int, chunk: int) -> np.ndarray | None:
    """Map output chunks to input chunks along one axis, if the selection allows.

    A selection keeps whole input chunks when it is a sequence of complete
    chunks ``[k * chunk, (k + 1) * chunk)`` (the axis' last, shorter chunk
    allowed only at the end). Output chunk ``j`` is then input chunk
    ``result[j]``, and its compressed bytes can be copied as they are.

    Returns
    -------
    numpy.ndarray or None
        Input chunk indices, one per output chunk; None if the selection
        splits a chunk.
    """
    n = positions.size
    if n == 0:
        return None
    starts = positions[::chunk]
    if np.any(starts % chunk):
        return None
    expected = starts[:, None] + np.arange(chunk)
    full = expected.ravel()[:n]
    if not np.array_equal(full, positions):
        return None
    last_length = n - chunk * (starts.size - 1)
    if last_length != chunk and starts[-1] + last_length != size:
        return None  # a short run that is not the axis' own last chunk
    return starts // chunk


@dataclass(frozen=True)
class AxisPieces:
    """How one axis of a selection falls into the input's chunks.

    For each touched input chunk: its index, the positions of the output
    (within a block) that come from it, and where they sit in the chunk.
    """

    chunk_ids: tuple[int, ...]
    out_index: tuple[np.ndarray | slice, ...]
    in_index: tuple[np.ndarray | slice, ...]


def axis_pieces(positions: np.ndarray, chunk: int) -> AxisPieces:
    """Group an axis' positions by the input chunk they fall in.

    Runs of consecutive positions become slices, so copying from a chunk
    into the output is a plain strided copy where the selection allows.
    """
    ids = positions // chunk
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
    chunk_ids, out_index, in_index = [], [], []
    for group in np.split(order, bounds):
        chunk_id = int(ids[group[0]])
        local = positions[group] - chunk_id * chunk
        chunk_ids.append(chunk_id)
        out_index.append(as_slice(group))
        in_index.append(as_slice(local))
    return AxisPieces(tuple(chunk_ids), tuple(out_index), tuple(in_index))


def chunk_grid(shape: Sequence[int], chunks: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Yield the index of every chunk of a chunked array, in C order."""
    return itertools.product(*(range(-(-size // step)) for size, step in zip(shape, chunks,
                                                                              strict=True)))


def as_slice(index: np.ndarray) -> np.ndarray | slice:
    """Give evenly spaced increasing positions as a slice, a strided copy rather than a gather."""
    if index.size == 1:
        return slice(int(index[0]), int(index[0]) + 1)
    if index.size:
        steps = np.diff(index)
        if steps[0] > 0 and np.all(steps == steps[0]):
            return slice(int(index[0]), int(index[-1]) + 1, int(steps[0]))
    return index


def read_boxes(shape: Sequence[int], itemsize: int, nbytes: int) -> tuple[int, ...]:
    """Cut a layer HDF5 reads in any box into boxes of at most ``nbytes``, where it can.

    Boxes cut the first axes first, so that each is a few long runs of the
    file's bytes; a box of one value is the smallest there is.
    """
    steps = [max(1, int(size)) for size in shape]
    for axis in range(len(steps)):
        inner = math.prod(steps[axis + 1:]) * itemsize
        if inner <= nbytes:
            steps[axis] = max(1, min(steps[axis], nbytes // inner))
            break
        steps[axis] = 1
    return tuple(steps)


def iter_blocks(
    shape: Sequence[int], chunks: Sequence[int], itemsize: int, block_bytes: int
) -> Iterator[tuple[slice, slice]]:
    """Cut a layer into blocks of whole chunks, each at most ``block_bytes``.

    Yields ``(stimulus slice, channel slice)`` pairs covering the layer
    once, in order. A single chunk larger than the budget is still one block.
    """
    n_stim, n_chn = shape[:2]
    stim_chunk, chn_chunk = chunks[:2]
    chunk_bytes = stim_chunk * chn_chunk * shape[2] * shape[3] * itemsize
    per_block = max(1, block_bytes // max(1, chunk_bytes))
    chunks_across = -(-n_chn // chn_chunk)
    if per_block >= chunks_across:
        stim_step, chn_step = stim_chunk * (per_block // chunks_across), n_chn
    else:
        stim_step, chn_step = stim_chunk, chn_chunk * per_block
    for start in range(0, n_stim, stim_step):
        for first in range(0, n_chn, chn_step):
            yield (slice(start, min(start + stim_step, n_stim)),
                   slice(first, min(first + chn_step, n_chn)))


def file_chunks(lengths: Sequence[int], size: int, *, join: bool) -> tuple[int, ...]:
    """Chunk a set of files along ``stimulus`` so that no chunk joins part of one file to another.

    Parameters
    ----------
    lengths
        Each file's stimuli, in the set's order.
    size
        The most stimuli of a chunk (positive); a file longer than that is
        cut into chunks of ``size`` from its start (the file's own chunks
        start there too), the last one shorter.
    join
        Whether whole files shorter than ``size`` share a chunk, as many in
        a row as fit; if not, every file is chunked on its own.

    Returns
    -------
    tuple of int
        The chunks' lengths, in order; they add up to ``sum(lengths)``.
        Files of no stimulus at all give one chunk of 0, as dask chunks an
        empty axis.
    """
    chunks: list[int] = []
    run = 0  # whole files gathered into the next chunk
    for length in lengths:
        if join and length <= size and run + length <= size:
            run += length
            continue
        if run:
            chunks.append(run)
            run = 0
        if join and length <= size:
            run = length
            continue
        whole, rest = divmod(length, size)
        chunks += [size] * whole + ([rest] if rest else [])
    if run:
        chunks.append(run)
    return tuple(chunks) or (0,)
