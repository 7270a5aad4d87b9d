"""Save labelled layers (xarray) to an ``.act.h5`` file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from xarray.core import indexing

from dnnmask_xr.activations import Activations, stimulus_fields
from dnnmask_xr.array import LayerArray
from dnnmask_xr.coding import NUMBERED_DIMS
from dnnmask_xr.engine import FileSelection
from dnnmask_xr.errors import DnnMaskError
from dnnmask_xr.writer import (
    DEFAULT_MEMORY,
    NC_SUFFIX,
    ComputedValues,
    OutputLayer,
    SaveReport,
    Stimulus,
    check_not_input,
    check_output,
    progress_bar,
    write_act,
)


def save_act(
    acts: Activations | Mapping[str, xr.DataArray] | xr.DataTree,
    path: str | os.PathLike[str],
    *,
    attrs: Mapping[str, Any] | None = None,
    memory: int = DEFAULT_MEMORY,
    threads: int | None = None,
    progress: bool = False,
    verify: bool = False,
) -> SaveReport | None:
    """Write layers to an ``.act.h5`` file that DNNBrain reads as its own.

    One gzip-compressed 4-D dataset per layer at the root, in order, and
    nothing else there. Coordinates, the stimulus table and provenance go
    into HDF5 attributes. The file appears at ``path`` only once complete.
    A path ending in ``.nc`` gets a netCDF4 file instead, one group per
    layer (see :func:`dnnmask_xr.netcdf.save_nc`).

    Layers opened with :func:`~dnnmask_xr.open_act` and selected with
    ``.isel``/``.sel``/:meth:`~dnnmask_xr.Activations.mask` are copied from
    their file chunk by chunk: compressed chunks are copied unchanged where
    the selection keeps them whole, and otherwise only the chunks the
    selection touches are read, each once. Other layers (in memory, dask,
    computed) are read a block at a time.

    Parameters
    ----------
    acts
        The layers, lazy, dask-backed or in memory; a ``DataTree`` is read
        as :func:`~dnnmask_xr.from_datatree` reads it.
    path
        The output, ending in ``.act.h5`` (or ``.nc``). An existing file
        there is replaced, but never the file the layers are read from.
    attrs
        More provenance for the file's root (``cmd``, for instance).
    memory
        Memory budget: most bytes of activations held at once while writing.
    threads
        Threads that inflate and deflate chunks; all cores if None.
    progress
        Show a progress bar on stderr for writes that take a while.
    verify
        Also inflate the compressed chunks copied unchanged, so that a
        damaged input chunk stops the write rather than being copied.

    Returns
    -------
    SaveReport or None
        How each layer was written and how many chunks were read and
        written; None for a ``.nc`` file.

    Raises
    ------
    ActFileError
        If the output cannot be written; nothing is left at ``path``.
    UsageError
        If ``path`` ends in neither ``.act.h5`` nor ``.nc``, or ``memory`` is
        not positive.
    DnnMaskError
        If the layers disagree on their stimuli.
    """
    if isinstance(acts, xr.DataTree):
        from dnnmask_xr.datatree import from_datatree

        acts = from_datatree(acts)
    if not isinstance(acts, Activations):
        acts = Activations(acts)
    target = os.fspath(path)
    if target.endswith(NC_SUFFIX):
        from dnnmask_xr.netcdf import save_nc

        return save_nc(acts, target, attrs=attrs, memory=memory, progress=progress)
    check_output(target)
    check_not_input(acts.source, target)
    ids, fields = _shared_stimulus(acts)
    layers = [_output_layer(name, array) for name, array in acts.items()]
    with progress_bar(progress) as on_progress:
        return write_act(
            target, layers, stimulus=Stimulus(ids, fields, acts.stim_header),
            attrs={**acts.attrs, **(attrs or {})}, memory=memory, threads=threads,
            on_progress=on_progress, verify=verify,
        )


def file_selection(array: xr.DataArray) -> FileSelection | None:
    """Find the file layer and positions behind a lazily selected layer.

    Returns
    -------
    FileSelection or None
        None if the values do not come straight from an ``.act.h5`` layer
        (in memory, dask-backed, or computed).
    """
    data = array.variable._data
    while isinstance(data, indexing.CopyOnWriteArray | indexing.MemoryCachedArray):
        data = data.array
    if not (isinstance(data, indexing.LazilyIndexedArray)
            and isinstance(data.array, LayerArray)):
        return None
    layer = data.array
    positions = []
    for item, size in zip(data.key.tuple, layer.shape, strict=True):
        if isinstance(item, slice):
            positions.append(np.arange(*item.indices(size), dtype=np.int64))
        else:
            positions.append(np.asarray(item, dtype=np.int64).reshape(-1))
    dataset = layer.manager.acquire()[layer.name]
    return FileSelection(dataset, tuple(positions))


def _output_layer(name: str, array: xr.DataArray) -> OutputLayer:
    numbers = {dim: array[dim].values for dim in NUMBERED_DIMS}
    values = file_selection(array)
    if values is None:
        def read_block(stimuli: slice, channels: slice) -> np.ndarray:
            return array.isel(stimulus=stimuli, channel=channels).values

        values = ComputedValues(array.shape, array.dtype, read_block)
    return OutputLayer(name, numbers, values)


def _shared_stimulus(acts: Activations) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    arrays = list(acts.values())
    if not arrays:
        return np.arange(1, 1), {}
    ids, fields = arrays[0]["stimulus"].values, stimulus_fields(arrays[0])
    for name, array in zip(acts, arrays, strict=True):
        if not _same_labels(array["stimulus"].values, ids) or list(
            stimulus_fields(array)
        ) != list(fields):
            raise DnnMaskError(f"layer {name!r} labels its stimuli differently from layer "
                               f"{next(iter(acts))!r}; all layers of a file share one "
                               "stimulus table")
    return ids, fields


def _same_labels(first: np.ndarray, second: np.ndarray) -> bool:
    # NaN labels (a float stimulus ID left empty) equal themselves here
    nan_aware = first.dtype.kind in "fc" and second.dtype.kind in "fc"
    return bool(np.array_equal(first, second, equal_nan=nan_aware))
