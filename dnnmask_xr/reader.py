"""Open an ``.act.h5`` file as labelled, lazy layers."""

from __future__ import annotations

import os

import h5py
import xarray as xr
from xarray.backends import CachingFileManager
from xarray.core import indexing

from dnnmask_xr._args import bool_arg, path_arg
from dnnmask_xr.act.checks import NC_SUFFIX
from dnnmask_xr.act.chunk_index import ChunkIndex
from dnnmask_xr.act.layout import (
    DIMS,
    check_readable,
    decode_stimulus,
    decode_unit_labels,
    is_reserved,
    layer_datasets,
    open_file,
    read_attrs,
)
from dnnmask_xr.act.select import blaming
from dnnmask_xr.activations import Activations
from dnnmask_xr.dask_layers import Chunks, chunk_layer
from dnnmask_xr.formats.stim import Stimuli, read_stim
from dnnmask_xr.lazy import LayerArray


def open_act(
    path: str | os.PathLike[str],
    *,
    stim: str | os.PathLike[str] | Stimuli | None = None,
    chunks: Chunks | None = None,
    allow_external: bool = False,
) -> Activations:
    """Open the layers of an ``.act.h5`` file, reading metadata only.

    Parameters
    ----------
    path
        The activation file: one 4-D dataset per layer at its root, as
        DNNBrain writes it (plain gzip datasets, any attributes or none).
        A path ending in ``.nc`` is read as the netCDF4 file
        :func:`~dnnmask_xr.save_act` writes there.
    stim
        A ``.stim.csv`` path or a :class:`~dnnmask_xr.formats.stim.Stimuli` table
        describing the stimuli, one row per stimulus. Without it the file's
        own stimulus labels are used (``1..n`` if it has none).
    chunks
        ``None`` (default): lazy layers backed by the file. Otherwise
        dask-backed layers (dask must be installed), chunked as xarray's
        ``open_dataset`` does: ``{}`` follows the file's HDF5 chunks; a
        mapping such as ``{"stimulus": 1000}`` sets some dimensions (``-1``
        for whole) and leaves the others to the file; ``"auto"`` lets dask
        choose multiples of the file's chunks.
    allow_external
        Follow layers whose values live in other files (external links,
        virtual datasets, external raw storage), after checking that each
        target is a regular file; such layers are refused by default.

    Returns
    -------
    Activations
        Layers in file order. Values are read only when used, and only the
        part of the file a selection touches.

    Raises
    ------
    ActFileError
        If the file is missing, unreadable, not HDF5, or holds a root object
        that is not a 4-D numeric dataset stored in the file.
    UsageError
        If ``chunks`` names a dimension layers do not have.
    """
    where = path_arg(path, "activation file")
    if where.endswith(NC_SUFFIX):
        from dnnmask_xr.netcdf import open_nc

        check_readable(where)
        acts = open_nc(where, chunks=chunks)
        return acts if stim is None else _with_stim(acts, stim)
    # mode="r" is passed on to open_file: a manager unpickled in another
    # process (a dask worker) passes its mode when it reopens the file
    allow_external = bool_arg(allow_external, "allow_external")
    manager = CachingFileManager(open_file, where, mode="r")
    try:
        layers, attrs, header = _read_metadata(manager.acquire(), where, manager,
                                               allow_external)
    except BaseException:
        manager.close()
        raise
    if chunks is not None:
        try:
            layers = {name: chunk_layer(array, chunks) for name, array in layers.items()}
        except BaseException:
            manager.close()
            raise
    acts = Activations(layers, attrs=attrs, stim_header=header, source=where,
                       closers=[manager.close])
    return acts if stim is None else _with_stim(acts, stim)


def _with_stim(acts: Activations, stim: str | os.PathLike[str] | Stimuli) -> Activations:
    with blaming(stim):
        return acts.with_stimuli(stim if isinstance(stim, Stimuli) else read_stim(stim))


def _read_metadata(
    root: h5py.File, where: str, manager: CachingFileManager, allow_external: bool
) -> tuple[dict[str, xr.DataArray], dict[str, object], dict[str, str]]:
    layers = {}
    for name, dataset in layer_datasets(root, where, allow_external=allow_external).items():
        variable = xr.Variable(
            DIMS, indexing.LazilyIndexedArray(
                LayerArray(manager, where, name, dataset.shape, dataset.dtype)
            )
        )
        if dataset.chunks:
            # a damaged chunk index is refused here, as the writer refuses it,
            # rather than read as whatever HDF5 finds through it
            ChunkIndex(dataset)
        numbers = decode_unit_labels(dataset, repr(where))
        layers[name] = xr.DataArray(variable, coords=numbers, name=name)
        if dataset.chunks:
            # how xarray (and chunks=) learns the HDF5 chunk shape
            layers[name].encoding["preferred_chunks"] = dict(zip(DIMS, dataset.chunks,
                                                                 strict=True))
    stored = read_attrs(root, repr(where))
    attrs = {key: value for key, value in stored.items() if not is_reserved(key)}
    header: dict[str, str] = {}
    if layers:
        n_stim = next(iter(layers.values())).sizes["stimulus"]
        ids, fields, header = decode_stimulus(stored, n_stim, repr(where))
        coords = {"stimulus": ids, **{key: ("stimulus", v) for key, v in fields.items()}}
        layers = {name: array.assign_coords(coords) for name, array in layers.items()}
    return layers, attrs, header
