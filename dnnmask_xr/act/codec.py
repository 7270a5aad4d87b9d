"""Deflate and inflate HDF5 gzip chunks, on any thread.

HDF5's gzip filter stores each chunk as one zlib stream. Any zlib-compatible
encoder gives chunks every HDF5 reader opens; ISA-L's (the ``isal``
package) is several times faster than zlib's at the same compression ratio,
so it is used when installed. Both release the GIL, so chunks are coded in
parallel on a thread pool.
"""

from __future__ import annotations

import zlib

import numpy as np

try:
    from isal import isal_zlib as _zlib

    #: The library that codes chunks.
    CODEC = "isal"
    #: Its level for new chunks (ISA-L's levels run 0-3).
    LEVEL = 1
except ImportError:  # pragma: no cover - isal has wheels for the usual platforms
    _zlib = zlib
    CODEC = "zlib"
    LEVEL = 4

#: Errors that a damaged compressed chunk raises.
CodecError = (zlib.error, _zlib.error)


def deflate(data: bytes | memoryview) -> bytes:
    """Compress one chunk's bytes into a zlib stream (HDF5's gzip filter)."""
    return _zlib.compress(data, LEVEL)


def inflate(data: bytes, size: int) -> bytes:
    """Decompress one gzip-filtered chunk of ``size`` bytes, never more.

    Inflating stops at ``size`` bytes, so a stream that would inflate to
    gigabytes (a few hundred kilobytes of zeros can) allocates no more
    than the chunk before it is refused.

    Raises
    ------
    zlib.error
        If the stream is damaged or does not hold exactly ``size`` bytes.
    """
    # ``decompress(data, bufsize=size)`` only sizes the first buffer: it
    # goes on growing it to the end of the stream
    stream = _zlib.decompressobj()
    raw = stream.decompress(data, size)
    if len(raw) < size:
        if not stream.eof:
            raise zlib.error(f"chunk stream ends after {len(raw)} bytes, expected {size}")
        raise zlib.error(f"chunk holds {len(raw)} bytes, expected {size}")
    if not stream.eof:
        # the end of the stream (and its checksum) may be all that is left;
        # one byte more is enough to tell it from a longer stream
        if stream.decompress(stream.unconsumed_tail, 1):
            raise zlib.error(f"chunk holds more than the {size} bytes expected")
        if not stream.eof:
            raise zlib.error(f"chunk stream does not end after its {size} bytes")
    return raw


#: Bytes of the checksum HDF5's fletcher32 filter puts after a chunk.
CHECKSUM_BYTES = 4
_MOD = 65535
_PIECE = 1 << 22


def unchecksum(data: bytes) -> bytes:
    """Check and strip the checksum HDF5's fletcher32 filter appended to a chunk.

    HDF5's Fletcher-32 sums the data as big-endian 16-bit words (a last
    odd byte as the high byte of one more), keeping each sum in 1..65535
    (0 only while every word so far is 0). HDF5 stores it little-endian,
    and also accepts it with the bytes of each half swapped (HDF5 1.6
    wrote it so).

    Raises
    ------
    zlib.error
        If the chunk is shorter than a checksum or its checksum differs.
    """
    if len(data) < CHECKSUM_BYTES:
        raise zlib.error(f"chunk of {len(data)} bytes has no room for its checksum")
    body, stored = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    computed = _fletcher32(body)
    swapped = bytes((computed[1], computed[0], computed[3], computed[2]))
    if stored not in (computed, swapped):
        raise zlib.error("fletcher32 checksum does not match the chunk")
    return body


def _fletcher32(data: bytes) -> bytes:
    """Give HDF5's Fletcher-32 checksum of ``data`` as it stores it (4 bytes)."""
    words = np.frombuffer(data[: len(data) // 2 * 2], dtype=">u2").astype(np.int64)
    if len(data) % 2:
        words = np.append(words, np.int64(data[-1] << 8))
    count = len(words)
    # sum1 is the sum of the words; sum2 the sum of sum1 after each word,
    # that is word i counted count - i times: per piece, (count - start)
    # times its sum less each word times its place in the piece, which
    # int64 holds for pieces of 2**22 words (Python's ints hold the rest)
    sum1 = sum2 = 0
    places = np.arange(min(count, _PIECE), dtype=np.int64)
    for start in range(0, count, _PIECE):
        piece = words[start:start + _PIECE]
        total = int(piece.sum())
        sum1 += total
        sum2 += (count - start) * total - int(np.dot(piece, places[:len(piece)]))
    if not words.any():
        return bytes(4)
    # HDF5's sums, once past 0, stay in 1..65535
    sum1 = (sum1 - 1) % _MOD + 1
    sum2 = (sum2 - 1) % _MOD + 1
    return ((sum2 << 16) | sum1).to_bytes(4, "little")
