"""An input layer's chunk index, checked before any chunk is read raw.

Copying and inflating chunks ourselves trusts the index that says where
each chunk is stored. In a damaged file that index can lie: a flipped bit
in a B-tree key moves a chunk to another coordinate, off the chunk grid,
outside the layer or onto another chunk, and a flipped size makes HDF5
allocate gigabytes or read past the end of the file. HDF5's own object
copy follows such an index where a read would not (it wrote values that
differ from what h5py reads, or aborted the process), so layers are copied
chunk by chunk, each chunk looked up as a read looks it up, and the whole
index is checked first:

- every chunk's offset is on the chunk grid and inside the layer, once;
- its bytes lie inside the file and are no more than a compressed chunk
  can take;
- a chunk read by coordinate is the one the index lists there.

One pass over the index (``chunk_iter``) costs a few milliseconds per
10 000 chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import h5py

from dnnmask_xr.errors import ActFileError

#: Slack over a chunk's raw size that any codec's output stays within (zlib
#: adds 5 bytes per 16 KiB block, other filters a header or a checksum).
_SLACK_BYTES = 4096


@dataclass(frozen=True)
class StoredChunk:
    """Where one chunk's bytes are: its filter mask, file offset and size."""

    filter_mask: int
    byte_offset: int
    size: int


class ChunkIndex:
    """The checked chunk index of a chunked layer.

    Parameters
    ----------
    dataset
        A chunked layer of an open input file.

    Raises
    ------
    ActFileError
        If the index cannot be read, or lists a chunk off the grid, outside
        the layer, twice, outside the file or larger than any chunk can be.
    """

    def __init__(self, dataset: h5py.Dataset) -> None:
        self.dataset = dataset
        self.where = f"{dataset.file.filename!r}: layer {dataset.name.lstrip('/')!r}"
        self.chunks: dict[tuple[int, ...], StoredChunk] = {}
        shape, steps = dataset.shape, dataset.chunks
        largest = math.prod(steps) * dataset.dtype.itemsize
        largest += largest // 16 + _SLACK_BYTES
        try:
            file_size = dataset.file.id.get_filesize()
            infos = _chunk_infos(dataset)
        except (OSError, RuntimeError, ValueError, MemoryError) as err:
            raise ActFileError(f"{self.where} is damaged: its chunk index cannot be read "
                               f"({err})") from None
        for info in infos:
            offset = tuple(int(i) for i in info.chunk_offset)
            if len(offset) != len(shape) or not all(
                    0 <= start < size and start % step == 0
                    for start, size, step in zip(offset, shape, steps, strict=True)):
                raise self.damaged(f"lists a chunk at {offset}, which is not a chunk of a "
                                   f"layer of shape {shape} in chunks of {steps}")
            if offset in self.chunks:
                raise self.damaged(f"lists the chunk at {offset} twice")
            byte_offset, size = info.byte_offset, info.size
            if byte_offset is None or size <= 0 or size > largest:
                raise self.damaged(f"gives the chunk at {offset} {size} bytes; a chunk of "
                                   f"{steps} takes 1 to {largest}")
            if byte_offset < 0 or byte_offset + size > file_size:
                raise self.damaged(f"places the chunk at {offset} at bytes {byte_offset} to "
                                   f"{byte_offset + size}, beyond the file's {file_size}")
            self.chunks[offset] = StoredChunk(int(info.filter_mask), byte_offset, size)

    def damaged(self, what: str) -> ActFileError:
        """Make the error for a damaged index, naming the file, the layer and the fault."""
        return ActFileError(f"{self.where} is damaged: its chunk index {what}")

    def read(self, offset: tuple[int, ...]) -> tuple[int, bytes] | None:
        """Read one chunk's stored bytes and filter mask; None if never written.

        Raises
        ------
        ActFileError
            If HDF5 cannot read the chunk, or finds other bytes at ``offset``
            than the index lists there.
        """
        expected = self.chunks.get(offset)
        if expected is None:
            return None
        try:
            filter_mask, data = self.dataset.id.read_direct_chunk(offset)
        except (OSError, RuntimeError, ValueError, MemoryError) as err:
            raise ActFileError(f"{self.where}: cannot read the chunk at {offset} "
                               f"({err})") from None
        if len(data) != expected.size or filter_mask != expected.filter_mask:
            raise self.damaged(f"disagrees with itself about the chunk at {offset} "
                               f"({len(data)} bytes found where it lists {expected.size})")
        return filter_mask, data


def _chunk_infos(dataset: h5py.Dataset) -> list:
    """Every stored chunk's info, in one pass where HDF5 can (1.14 and later)."""
    infos: list = []
    try:
        dataset.id.chunk_iter(infos.append)
    except (AttributeError, NotImplementedError):
        # older HDF5: one call per chunk
        infos = [dataset.id.get_chunk_info(i) for i in range(dataset.id.get_num_chunks())]
    return infos
