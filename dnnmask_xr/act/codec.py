"""Deflate and inflate HDF5 gzip chunks, on any thread.

HDF5's gzip filter stores each chunk as one zlib stream. Any zlib-compatible
encoder gives chunks every HDF5 reader opens; ISA-L's (the ``isal``
package) is several times faster than zlib's at the same compression ratio,
so it is used when installed. Both release the GIL, so chunks are coded in
parallel on a thread pool.
"""

from __future__ import annotations

import zlib

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
