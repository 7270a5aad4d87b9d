"""Dask-backed layers whose chunks follow the file's own chunks.

The rules are xarray's for ``open_dataset(..., chunks=...)``, so that
``open_act(path, chunks=c)`` and ``xr.open_datatree(path, engine="dnnact",
chunks=c)`` chunk alike: a dimension not named keeps the file's chunk size
(the whole axis for a contiguous layer), ``-1`` takes the whole axis,
``"auto"`` lets dask pick sizes that are multiples of the file's chunks, of
at most :data:`AUTO_CHUNK_BYTES` (or dask's ``array.chunk-size`` if
smaller). dask is imported only when chunks are asked for.
"""

from __future__ import annotations

from collections.abc import Mapping

import xarray as xr

from dnnmask_xr.errors import UsageError

#: Most bytes of a chunk ``"auto"`` makes. A mean over a 560 MB layer on 2
#: threads took 1.4 s with chunks of about 32 MiB, 1.9 s with 16 or 64 MiB
#: and 2.0 s with dask's default of 128 MiB (docs/dask.md): large enough
#: that each task reads many file chunks, small enough that every thread
#: gets several tasks and holds little memory.
AUTO_CHUNK_BYTES = 32 * 2**20

#: What ``chunks=`` accepts: ``{}``, ``{"stimulus": 100}``, ``"auto"``, ``-1``, ``64``.
Chunks = int | str | Mapping[str, int | str | None]


def chunk_layer(array: xr.DataArray, chunks: Chunks) -> xr.DataArray:
    """Back a layer with a dask array, chunked like its file.

    Parameters
    ----------
    array
        A layer, usually lazy; its ``encoding["preferred_chunks"]`` (set by
        :func:`~dnnmask_xr.open_act` and xarray's HDF5 backends) gives the
        file's chunk shape.
    chunks
        ``{}`` for the file's chunks; a mapping of dimension to size
        (``-1`` for the whole axis, ``"auto"``), other dimensions following
        the file; one size or ``"auto"`` for every dimension. ``"auto"``
        picks multiples of the file's chunks, up to :data:`AUTO_CHUNK_BYTES`
        per chunk (less if dask's ``array.chunk-size`` says less).

    Returns
    -------
    xarray.DataArray
        The same layer, its values dask-backed (nothing is read); its
        coordinates (the unit numbers, stimulus labels and fields) stay
        numpy arrays.

    Raises
    ------
    UsageError
        If ``chunks`` names a dimension the layer does not have.
    ModuleNotFoundError
        If dask is not installed.
    """
    try:
        import dask
        from dask.array.core import normalize_chunks
        from dask.utils import parse_bytes
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "chunks= needs dask: install it with python -m pip install 'dnnmask_xr[dask]'"
        ) from err
    if isinstance(chunks, (int, str)):
        chunks = dict.fromkeys(array.dims, chunks)
    if not isinstance(chunks, Mapping):
        raise UsageError(f"chunks={chunks!r} is not valid; give {{}} for the file's chunks, "
                         "a mapping like {'stimulus': 100}, a size, or 'auto'")
    unknown = [dim for dim in chunks if dim not in array.dims]
    if unknown:
        raise UsageError(f"chunks name dimension {unknown[0]!r}, which layer {array.name!r} "
                         f"does not have (dimensions: {', '.join(map(str, array.dims))})")
    for dim, size in chunks.items():
        if size is not None and not isinstance(size, str) and (
                isinstance(size, bool) or not isinstance(size, int) or (size < 1 and size != -1)):
            raise UsageError(f"chunks={{{dim!r}: {size!r}}} is not a chunk size; give a "
                             "positive number of elements, -1 for the whole axis, or 'auto'")
    preferred = array.encoding.get("preferred_chunks", {})
    previous = tuple(preferred.get(dim, size) for dim, size in array.sizes.items())
    wanted = tuple(
        before if chunks.get(dim) is None else chunks[dim]
        for dim, before in zip(array.dims, previous, strict=True)
    )
    limit = min(AUTO_CHUNK_BYTES, parse_bytes(dask.config.get("array.chunk-size")))
    sizes = normalize_chunks(wanted, array.shape, dtype=array.dtype, previous_chunks=previous,
                             limit=limit)
    chunked = array.chunk(dict(zip(array.dims, sizes, strict=True)))
    # the values alone: stimulus fields as dask arrays would be computed at each
    # use (a groupby, a to_zarr that must look at object text to type it)
    fields = {name: coord.variable.compute() for name, coord in array.coords.items()
              if name not in array.xindexes}
    return chunked.assign_coords(fields)
