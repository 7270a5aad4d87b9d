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
  can take, and exactly a chunk's bytes where no filter applies (HDF5
  would read the rest from uninitialised memory);
- a chunk read by coordinate is the one the index lists there.

The layer's own description is checked too, since raw chunks are decoded
here, not by HDF5: chunks are decoded here only for a pipeline of gzip
with a valid level (HDF5 refuses to read other levels), after HDF5's byte
shuffle or not, before its fletcher32 checksum or not, and for values of
a standard numpy type (a damaged type that HDF5 converts on reading would
be decoded as the standard one); other layers are left to HDF5. Decoding
gzip here is what bounds its inflation at the chunk's size (HDF5 grows
its buffer as long as the stream goes on). A damaged fill value is
refused, as reading it crashes h5py, and so is a layer HDF5 decodes whose
chunks never written it would leave unset (:func:`layer_index`).

One pass over the index (``chunk_iter``) costs a few milliseconds per
10 000 chunks.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import h5py
import numpy as np

from dnnmask_xr.errors import ActFileError

#: Slack over a chunk's raw size that any codec's output stays within (zlib
#: adds 5 bytes per 16 KiB block, other filters a header or a checksum).
_SLACK_BYTES = 4096


class StoredChunk(NamedTuple):
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

    Attributes
    ----------
    dtype
        The layer's values' type.
    decoded_here
        Whether chunks are decoded here (gzip with a valid level, after
        the byte shuffle or not, before HDF5's fletcher32 checksum or not,
        and a standard type), not by HDF5.
    level
        The gzip level if chunks are decoded here and may be copied as
        they are stored into an output of gzip alone (no other filter);
        None otherwise.
    shuffled
        Whether the pipeline shuffles bytes before gzip (filter 0), which
        :func:`~dnnmask_xr.act.chunk_read.decode_chunk` undoes.
    checksummed
        Whether the pipeline ends with a fletcher32 checksum, which
        :func:`~dnnmask_xr.act.chunk_read.decode_chunk` checks.
    fillvalue
        What chunks never written read as; None if HDF5 leaves them unset
        (no fill value, or a fill time of "never").
    unset
        Why chunks never written hold no values, if they hold none.
    unfiltered
        The filter mask of a chunk stored raw: filter ``i`` of the pipeline
        is skipped when bit ``i`` is set, and bits past the pipeline mean
        nothing, as in HDF5.

    Raises
    ------
    ActFileError
        If the index cannot be read, or lists a chunk off the grid, outside
        the layer, twice, outside the file or larger than any chunk can be;
        if the layer's chunk shape or fill value is damaged.
    """

    def __init__(self, dataset: h5py.Dataset) -> None:
        self.dataset = dataset
        self.dtype = dataset.dtype
        self.where = _where(dataset)
        self.chunks: dict[tuple[int, ...], StoredChunk] = {}
        shape, steps = dataset.shape, dataset.chunks
        if len(steps) != len(shape) or not all(step >= 1 for step in steps):
            raise self.damaged(f"has chunks of {steps} for a layer of shape {shape}")
        try:
            # a chunk holds values of the file's type, which may be narrower than the
            # numpy type h5py reads them as (a 16-bit float of another layout: float32)
            raw_size = math.prod(steps) * dataset.id.get_type().get_size()
            plist = dataset.id.get_create_plist()
            filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
            self.fillvalue, self.unset = _fill_value(dataset, plist)
            standard = dataset.id.get_type().equal(h5py.h5t.py_create(dataset.dtype))
            file_size = dataset.file.id.get_filesize()
            infos = _chunk_infos(dataset)
        except (OSError, RuntimeError, ValueError, TypeError, MemoryError) as err:
            raise ActFileError(f"{self.where} is damaged: its storage cannot be read "
                               f"({err})") from None
        largest = raw_size + raw_size // 16 + _SLACK_BYTES
        codes = [code for code, *_ in filters]
        # HDF5 unshuffles with the element size the filter stores: only the
        # layer's own is undone here
        self.shuffled = (codes[:1] == [h5py.h5z.FILTER_SHUFFLE]
                         and tuple(filters[0][2]) == (dataset.dtype.itemsize,))
        self.checksummed = codes[-1:] == [h5py.h5z.FILTER_FLETCHER32]
        at = int(self.shuffled)  # where gzip is in the pipeline
        levels = tuple(filters[at][2]) if len(filters) > at else ()
        self.decoded_here = (standard and len(codes) == at + 1 + self.checksummed
                             and codes[at] == h5py.h5z.FILTER_DEFLATE
                             and len(levels) == 1 and 0 <= levels[0] <= 9)
        self.level = (int(levels[0]) if self.decoded_here and len(codes) == 1 else None)
        #: the filter mask bits that skip gzip, and the checksum (0: none)
        self.gzip_skipped = 1 << at
        self.checksum_skipped = 1 << (len(codes) - 1) if self.checksummed else 0
        # a chunk whose every filter was skipped (or that has none) is stored raw
        self.unfiltered = (1 << len(filters)) - 1
        self._check(infos, raw_size, largest, file_size)

    def stored_raw(self, filter_mask: int) -> bool:
        """Tell whether a chunk with ``filter_mask`` skipped every filter (is stored raw)."""
        return (filter_mask & self.unfiltered) == self.unfiltered

    def _check(self, infos: list, raw_size: int, largest: int, file_size: int) -> None:
        """Check every entry at once (numpy), then name the first bad one."""
        shape, steps = self.dataset.shape, self.dataset.chunks
        if any(len(info.chunk_offset) != len(shape) for info in infos):
            bad = next(info for info in infos if len(info.chunk_offset) != len(shape))
            raise self.damaged(f"lists a chunk at {tuple(bad.chunk_offset)}, which is not a "
                               f"chunk of a layer of shape {shape}")
        count = len(infos)
        # HDF5 stores offsets and addresses as unsigned 64-bit numbers; a
        # damaged one may be anything up to 2**64 - 1
        offsets = np.array([info.chunk_offset for info in infos],
                           dtype=np.uint64).reshape(count, len(shape))
        missing = np.array([info.byte_offset is None for info in infos], dtype=bool)
        where = np.minimum(np.array([info.byte_offset or 0 for info in infos],
                                    dtype=np.uint64), 2**62).astype(np.int64)
        sizes = np.minimum(np.array([info.size for info in infos], dtype=np.uint64),
                           2**62).astype(np.int64)
        masks = np.array([info.filter_mask for info in infos], dtype=np.uint64)
        unfiltered = np.uint64(self.unfiltered)
        keys = [tuple(offset) for offset in offsets.tolist()]
        checks = [
            (~(((offsets < np.array(shape, dtype=np.uint64))
                & (offsets % np.array(steps, dtype=np.uint64) == 0)).all(axis=1)),
             lambda i: f"lists a chunk at {keys[i]}, which is not a chunk of a layer of "
                       f"shape {shape} in chunks of {steps}"),
            (missing | (sizes <= 0) | (sizes > largest),
             lambda i: f"gives the chunk at {keys[i]} {sizes[i]} bytes; a chunk of {steps} "
                       f"takes 1 to {largest}"),
            (((masks & unfiltered) == unfiltered) & (sizes != raw_size),
             lambda i: f"gives the unfiltered chunk at {keys[i]} {sizes[i]} bytes; it holds "
                       f"{raw_size}"),
            (where + sizes > file_size,
             lambda i: f"places the chunk at {keys[i]} at bytes {where[i]} to "
                       f"{where[i] + sizes[i]}, beyond the file's {file_size}"),
        ]
        for bad, say in checks:
            if bad.any():
                raise self.damaged(say(int(np.argmax(bad))))
        self.chunks = dict(zip(keys, map(StoredChunk._make, zip(
            masks.tolist(), where.tolist(), sizes.tolist(), strict=True)), strict=True))
        if len(self.chunks) != count:
            seen: set[tuple[int, ...]] = set()
            twice = next(key for key in keys if key in seen or seen.add(key))
            raise self.damaged(f"lists the chunk at {twice} twice")

    def first_unwritten(self) -> tuple[int, ...] | None:
        """Give the offset of the first chunk never written, None if all were."""
        shape, steps = self.dataset.shape, self.dataset.chunks
        grid = [range(0, size, step) for size, step in zip(shape, steps, strict=True)]
        if len(self.chunks) == math.prod(len(axis) for axis in grid):
            return None
        return next(offset for offset in itertools.product(*grid)
                    if offset not in self.chunks)

    def unset_error(self, offset: tuple[int, ...]) -> ActFileError:
        """Make the error for a chunk never written in a layer HDF5 leaves unset there."""
        # HDF5 would read such a chunk from uninitialised memory
        return ActFileError(f"{self.where}: the chunk at {offset} was never written and "
                            f"{self.unset}, so it holds no values")

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


def layer_index(dataset: h5py.Dataset, *, hdf5_decodes: bool = False) -> ChunkIndex | None:
    """Check a layer's storage before any value is read; give its chunk index if chunked.

    A layer HDF5 decodes whose parts never written hold no values (fill
    time "never", or no fill value) is refused here whole, where HDF5
    would give whatever memory held; a layer decoded here refuses such a
    chunk when a read touches it.

    Parameters
    ----------
    dataset
        The layer, or a dataset HDF5 reads values of the layer from.
    hdf5_decodes
        Whether HDF5 decodes every chunk whatever the pipeline (a virtual
        dataset's source), so that it is refused whole as above.

    Raises
    ------
    ActFileError
        As :class:`ChunkIndex` does; for a chunk (or a contiguous layer)
        never written whose values HDF5 leaves unset.
    """
    if dataset.chunks:
        index = ChunkIndex(dataset)
        if (hdf5_decodes or not index.decoded_here) and index.unset:
            offset = index.first_unwritten()
            if offset is not None:
                raise index.unset_error(offset)
        return index
    try:
        plist = dataset.id.get_create_plist()
        unwritten = (plist.get_layout() == h5py.h5d.CONTIGUOUS
                     and not plist.get_external_count() and dataset.size
                     and dataset.id.get_storage_size() == 0)
        unset = _fill_value(dataset, plist)[1] if unwritten else ""
    except (OSError, RuntimeError, ValueError, TypeError) as err:
        raise ActFileError(f"{_where(dataset)} is damaged: its storage cannot be read "
                           f"({err})") from None
    if unset:
        raise ActFileError(f"{_where(dataset)} was never written and {unset}, so it holds "
                           "no values")
    return None


def layer_name(dataset: h5py.Dataset) -> str:
    """Give the layer's name: its dataset's path without the leading slash.

    A ``.nc`` layer is the variable of its group's name (``/conv5/conv5``):
    its name is that name, as the reader and the command call it.
    """
    path = dataset.name.lstrip("/")
    group, _, variable = path.partition("/")
    return group if variable == group else path


def _where(dataset: h5py.Dataset) -> str:
    """Name a layer in errors: its file and its name."""
    return f"{dataset.file.filename!r}: layer {layer_name(dataset)!r}"


def _fill_value(dataset: h5py.Dataset, plist: h5py.h5p.PropDCID) -> tuple[object, str]:
    """Give what chunks never written read as, or None and why they hold no values.

    As HDF5 reads them: with a fill time of "never" it leaves such chunks
    unset whatever the fill value (h5py then gives whatever memory held),
    and so it does without a fill value.
    """
    if plist.get_fill_time() == h5py.h5d.FILL_TIME_NEVER:
        return None, "the layer's fill time is 'never' (HDF5 leaves such chunks unset)"
    # h5py's Dataset.fillvalue crashes the process on a damaged fill value
    # message; asking whether one is defined fails cleanly instead
    if plist.fill_value_defined() == h5py.h5d.FILL_VALUE_UNDEFINED:
        return None, "the layer has no fill value"
    return dataset.fillvalue, ""


def _chunk_infos(dataset: h5py.Dataset) -> list:
    """Every stored chunk's info, in one pass where HDF5 can (1.14 and later)."""
    infos: list = []
    try:
        dataset.id.chunk_iter(infos.append)
    except (AttributeError, NotImplementedError):
        return chunk_infos_one_by_one(dataset)
    return infos


def chunk_infos_one_by_one(dataset: h5py.Dataset) -> list:
    """Every stored chunk's info, one call each: HDF5 before 1.14 has no ``chunk_iter``."""
    return [dataset.id.get_chunk_info(i) for i in range(dataset.id.get_num_chunks())]
