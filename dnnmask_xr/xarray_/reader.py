"""Open an ``.act.h5`` file as labelled, lazy layers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

import h5py
import xarray as xr
from xarray.backends import CachingFileManager

from dnnmask_xr._args import bool_arg, lock_arg, path_arg
from dnnmask_xr.act.checks import NC_SUFFIX, SYSTEM_ATTRS
from dnnmask_xr.act.files import check_readable
from dnnmask_xr.act.layout import (
    DIMS,
    NUMBERED_DIMS,
    decode_stimulus,
    decode_unit_labels,
    is_reserved,
    layer_datasets,
    layer_name,
    read_attrs,
)
from dnnmask_xr.act.stimulus import blaming
from dnnmask_xr.errors import ActFileError, UsageError
from dnnmask_xr.formats.stim import StimArg, Stimuli, read_stim
from dnnmask_xr.xarray_.activations import Activations
from dnnmask_xr.xarray_.array import LayerArray, as_variable_data, file_manager, held_file
from dnnmask_xr.xarray_.dask_layers import Chunks, chunk_layer


def open_act(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    stim: StimArg | Sequence[StimArg] = None,
    chunks: Chunks | None = None,
    cache: bool | None = None,
    allow_external: bool = False,
    lock: bool | AbstractContextManager[Any] | None = None,
) -> Activations:
    """Open the layers of an ``.act.h5`` file, reading metadata only.

    Parameters
    ----------
    path
        The activation file: one 4-D dataset per layer at its root, as
        DNNBrain writes it (plain gzip datasets, any attributes or none).
        A path ending in ``.nc`` is read as the netCDF4 file
        :func:`~dnnmask_xr.save_act` writes there. A list of paths opens
        files of one network (one per session or run) as one set,
        concatenated along ``stimulus`` in that order (see
        :func:`~dnnmask_xr.xarray_.file_set.open_file_set`).
    stim
        A ``.stim.csv`` path or a :class:`~dnnmask_xr.formats.stim.Stimuli` table
        describing the stimuli, one row per stimulus. Without it the file's
        own stimulus labels are used (``1..n`` if it has none). For a list
        of files, a list of as many (None for a file's own).
    chunks
        ``None`` (default): lazy layers backed by the file. Otherwise
        dask-backed layers (dask must be installed), chunked as xarray's
        ``open_dataset`` does: ``{}`` follows the file's HDF5 chunks; a
        mapping such as ``{"stimulus": 1000}`` sets some dimensions (``-1``
        for whole) and leaves the others to the file; ``"auto"`` lets dask
        choose multiples of the file's chunks.
    cache
        Keep a layer's values in memory once read, so that later
        computations on the same layer do not read the file again (and so
        that values can be assigned to), as ``xr.open_dataset(cache=...)``
        does. Selections stay lazy: ``layer.sel(...)`` reads, and keeps,
        only what it selects. None (default): True unless ``chunks`` is
        given.
    allow_external
        Follow layers whose values live in other files (external links,
        virtual datasets, external raw storage), after checking that every file on the
        way (up to 16 deep) is a regular file; such layers are refused by
        default. The files behind a layer are identified at open, and a
        read refuses one that changed since. For ``.nc`` files, every
        object in every group is checked alike.
    lock
        Held around each call into the HDF5 library when values are read:
        None or True (default) for xarray's HDF5 lock, which its own HDF5
        backends hold too; False for none but the global lock h5py holds
        around every HDF5 call (still safe in threads, but no longer
        excluding netCDF4 readers of the same HDF5 library); or a lock of
        your own (picklable, such as ``dask.utils.SerializableLock()``,
        for dask's process or distributed schedulers).

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
        If ``chunks`` names a dimension layers do not have, or ``lock`` is
        not a lock.
    SelectionError
        If the stimulus table does not fit, or (for a list of files) a
        stimulus ID is in two files.
    """
    lock = lock_arg(lock)
    cache = chunks is None if cache is None else bool_arg(cache, "cache")
    if isinstance(path, list | tuple):
        from dnnmask_xr.xarray_.file_set import open_file_set

        allow = bool_arg(allow_external, "allow_external")
        return open_file_set(
            path, stim,
            lambda one, table: open_act(one, stim=table, cache=False, allow_external=allow,
                                        lock=lock),
            chunks=chunks, cache=cache)
    if isinstance(stim, list | tuple):
        raise UsageError(f"stim= lists {len(stim)} stimulus tables for one file; give one "
                         "table, or a list of files (path=[...]) with one table each")
    where = path_arg(path, "activation file")
    if where.endswith(NC_SUFFIX):
        from dnnmask_xr.xarray_.netcdf import open_nc

        check_readable(where)
        acts = open_nc(where, chunks=chunks, cache=cache,
                       allow_external=bool_arg(allow_external, "allow_external"), lock=lock)
        return acts if stim is None else _with_stim(acts, stim)
    allow_external = bool_arg(allow_external, "allow_external")
    manager = file_manager(where, allow_external=allow_external)
    try:
        with held_file(manager, None) as root:
            layers, attrs, header = _read_metadata(root, where, manager, allow_external,
                                                   cache, lock)
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


def _with_stim(acts: Activations, stim: StimArg) -> Activations:
    with blaming(stim):
        return acts.with_stimuli(stim if isinstance(stim, Stimuli) else read_stim(stim))


def _read_metadata(
    root: h5py.File, where: str, manager: CachingFileManager, allow_external: bool,
    cache: bool, lock: AbstractContextManager[Any] | Literal[False] | None,
) -> tuple[dict[str, xr.DataArray], dict[str, object], dict[str, str]]:
    layers = {}
    for name, dataset in layer_datasets(root, where, allow_external=allow_external).items():
        # the chunk index is checked on the layer's first read (a damaged one
        # is refused then, as the writer refuses it), so that opening a file
        # of many layers costs only what the layers used need
        data = as_variable_data(LayerArray(manager, where, name, dataset.shape,
                                           dataset.dtype, lock), cache)
        # one read of the layer's attributes: its unit numbers, and its own
        # attributes (DNNBrain ignores them)
        stored_here = read_attrs(dataset, repr(where))
        numbers = decode_unit_labels(dataset, repr(where), stored_here)
        own = {key: value for key, value in stored_here.items() if not _is_label(key)}
        layers[name] = xr.DataArray(xr.Variable(DIMS, data, attrs=own), coords=numbers,
                                    name=name)
        layers[name].encoding = _encoding(dataset, where)
    stored = read_attrs(root, repr(where))
    attrs = {key: value for key, value in stored.items() if not is_reserved(key)}
    header: dict[str, str] = {}
    if layers:
        n_stim = next(iter(layers.values())).sizes["stimulus"]
        ids, fields, header = decode_stimulus(stored, n_stim, repr(where))
        coords = {"stimulus": ids, **{key: ("stimulus", v) for key, v in fields.items()}}
        layers = {name: array.assign_coords(coords) for name, array in layers.items()}
    return layers, attrs, header


def _is_label(key: str) -> bool:
    return key in NUMBERED_DIMS or key in SYSTEM_ATTRS


def _encoding(dataset: h5py.Dataset, where: str) -> dict[str, object]:
    """Describe a layer's storage as xarray's h5netcdf backend does.

    ``to_netcdf`` then keeps its chunks and compression, ``chunks=`` and
    xarray its chunk shape (``preferred_chunks``); ``original_shape`` lets
    xarray drop the chunk shape once a selection changes the layer's shape.
    """
    try:
        filters = h5py.filters.get_filters(dataset.id.get_create_plist())
    except (OSError, RuntimeError, ValueError, TypeError) as err:
        raise ActFileError(f"{where!r}: layer {layer_name(dataset)!r} is damaged: its "
                           f"filters cannot be read ({err})") from None
    encoding: dict[str, object] = {
        "dtype": dataset.dtype, "source": where, "original_shape": dataset.shape,
        "contiguous": dataset.chunks is None, "chunksizes": dataset.chunks,
        "shuffle": "shuffle" in filters, "fletcher32": "fletcher32" in filters,
    }
    if dataset.chunks:
        encoding["preferred_chunks"] = dict(zip(DIMS, dataset.chunks, strict=True))
    if "gzip" in filters:
        encoding.update(zlib=True, complevel=filters["gzip"])
    else:
        encoding["zlib"] = False
        other = [name for name in filters if name not in ("shuffle", "fletcher32")]
        if other:
            encoding.update(compression=other[0], compression_opts=filters[other[0]])
    return encoding
