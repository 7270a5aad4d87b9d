"""Open an ``.act.h5`` file as labelled, lazy layers."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import xarray as xr
from xarray.backends import CachingFileManager
from xarray.core import indexing

from dnnmask_xr.activations import Activations
from dnnmask_xr.array import LayerArray
from dnnmask_xr.coding import DIMS, decode_layer_numbers, decode_stimulus, is_reserved
from dnnmask_xr.dask_layers import Chunks, chunk_layer
from dnnmask_xr.errors import ActFileError, SelectionError
from dnnmask_xr.stim import Stimuli, read_stim
from dnnmask_xr.writer import NC_SUFFIX


def open_act(
    path: str | os.PathLike[str],
    *,
    stim: str | os.PathLike[str] | Stimuli | None = None,
    chunks: Chunks | None = None,
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
        A ``.stim.csv`` path or a :class:`~dnnmask_xr.stim.Stimuli` table
        describing the stimuli, one row per stimulus. Without it the file's
        own stimulus labels are used (``1..n`` if it has none).
    chunks
        ``None`` (default): lazy layers backed by the file. Otherwise
        dask-backed layers (dask must be installed), chunked as xarray's
        ``open_dataset`` does: ``{}`` follows the file's HDF5 chunks; a
        mapping such as ``{"stimulus": 1000}`` sets some dimensions (``-1``
        for whole) and leaves the others to the file; ``"auto"`` lets dask
        choose multiples of the file's chunks.

    Returns
    -------
    Activations
        Layers in file order. Values are read only when used, and only the
        part of the file a selection touches.

    Raises
    ------
    ActFileError
        If the file is missing, unreadable, not HDF5, or holds a root object
        that is not a 4-D numeric dataset.
    UsageError
        If ``chunks`` names a dimension layers do not have.
    """
    where = os.fspath(path)
    _check_readable(where)
    if where.endswith(NC_SUFFIX):
        from dnnmask_xr.netcdf import open_nc

        acts = open_nc(where, chunks=chunks)
        return acts if stim is None else _with_stim(acts, stim)
    # HDF5's default locking, not a custom one: within a process HDF5 shares
    # one handle per file and refuses opens whose locking flags differ.
    manager = CachingFileManager(h5py.File, where, mode="r")
    try:
        layers, attrs, header = _read_metadata(manager.acquire(), where, manager)
    except BaseException as err:
        manager.close()
        if isinstance(err, OSError):
            raise ActFileError(f"cannot read {where!r}: the file is damaged ({err})") from None
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
    if isinstance(stim, Stimuli):
        return acts.with_stimuli(stim)
    try:
        return acts.with_stimuli(read_stim(stim))
    except SelectionError as err:
        raise SelectionError(f"{os.fspath(stim)}: {err}") from None


def _check_readable(where: str) -> None:
    file = Path(where)
    if not file.exists():
        raise ActFileError(f"cannot open {where!r}: no such file")
    if file.is_dir():
        raise ActFileError(f"cannot open {where!r}: it is a folder, not an .act.h5 file")
    if not os.access(file, os.R_OK):
        raise ActFileError(f"cannot open {where!r}: permission denied")
    try:
        is_hdf5 = h5py.is_hdf5(where)
    except OSError as err:
        raise ActFileError(f"cannot open {where!r}: {err.strerror or err}") from None
    if not is_hdf5:
        raise ActFileError(f"{where!r} is not an HDF5 file; an .act.h5 file is HDF5 with "
                           "one 4-D dataset per layer")


def _read_metadata(
    root: h5py.File, where: str, manager: CachingFileManager
) -> tuple[dict[str, xr.DataArray], dict[str, object], dict[str, str]]:
    try:
        names = layer_names(root)
    except (OSError, RuntimeError, KeyError) as err:
        raise ActFileError(f"{where!r} is damaged: cannot list its layers ({err})") from None
    layers = {}
    for name in names:
        dataset = _layer_dataset(root, name, where)
        variable = xr.Variable(
            DIMS, indexing.LazilyIndexedArray(
                LayerArray(manager, name, dataset.shape, dataset.dtype)
            )
        )
        numbers = decode_layer_numbers(dataset, repr(where))
        layers[name] = xr.DataArray(variable, coords=numbers, name=name)
        if dataset.chunks:
            # how xarray (and chunks=) learns the HDF5 chunk shape
            layers[name].encoding["preferred_chunks"] = dict(zip(DIMS, dataset.chunks,
                                                                 strict=True))
    n_stim = {array.sizes["stimulus"] for array in layers.values()}
    if len(n_stim) > 1:
        listing = ", ".join(f"{name!r}: {a.sizes['stimulus']}" for name, a in layers.items())
        raise ActFileError(f"{where!r}: layers describe different numbers of stimuli "
                           f"({listing}); every layer must have one row per stimulus")
    attrs = {key: value for key, value in root.attrs.items() if not is_reserved(key)}
    header: dict[str, str] = {}
    if layers:
        ids, fields, header = decode_stimulus(root.attrs, n_stim.pop(), repr(where))
        coords = {"stimulus": ids, **{key: ("stimulus", v) for key, v in fields.items()}}
        layers = {name: array.assign_coords(coords) for name, array in layers.items()}
    return layers, attrs, header


def layer_names(root: h5py.Group) -> list[str]:
    """List the root's objects in creation order where the file tracks it.

    Files this package writes track creation order, so layers come back in
    the order written. h5py iterates in that order only from some version
    on (older ones list by name), so the order is asked for explicitly.
    Files without tracking (DNNBrain's) list by name, as h5py does.
    """
    if not root["/"].id.get_create_plist().get_link_creation_order():
        return list(root)
    names: list[bytes] = []
    root.id.links.iterate(names.append, idx_type=h5py.h5.INDEX_CRT_ORDER)
    return [name.decode("utf-8") for name in names]


def _layer_dataset(root: h5py.File, name: str, where: str) -> h5py.Dataset:
    try:
        node = root[name]
    except (OSError, KeyError, RuntimeError) as err:
        raise ActFileError(f"{where!r}: cannot read layer {name!r} ({err})") from None
    kind = ("a group" if isinstance(node, h5py.Group) else
            f"a {node.ndim}-D dataset" if isinstance(node, h5py.Dataset) else "not a dataset")
    if not isinstance(node, h5py.Dataset) or node.ndim != 4:
        raise ActFileError(f"{where!r}: root object {name!r} is {kind}; every root object of "
                           "an .act.h5 file must be a 4-D dataset (stimulus, channel, row, "
                           "column)")
    if node.dtype.kind not in "biufc":
        raise ActFileError(f"{where!r}: layer {name!r} holds {node.dtype} values; layers "
                           "hold numbers (integer, float or complex)")
    return node
