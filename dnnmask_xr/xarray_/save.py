"""Save labelled layers (xarray) to a file: containers become one write plan.

Whatever holds the layers (:class:`~dnnmask_xr.Activations`, a mapping of
name to ``DataArray``, a ``DataTree``), each becomes a
:class:`~dnnmask_xr.act.plan.PlannedLayer`: a file selection where its
values come straight from an ``.act.h5`` layer, a block reader otherwise
(:func:`~dnnmask_xr.xarray_.array.layer_values` tells which).
:func:`~dnnmask_xr.act.write.write` does the rest, as for ``dnn_mask``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import xarray as xr

from dnnmask_xr._args import mapping_arg, path_arg
from dnnmask_xr.act.checks import ZARR_SUFFIX, storage_options_for
from dnnmask_xr.act.plan import INPUTS_KEY, Plan, PlannedLayer
from dnnmask_xr.act.write import DEFAULT_MEMORY, SaveReport, WriteOptions, progress_bar, write
from dnnmask_xr.errors import DnnMaskError
from dnnmask_xr.xarray_.activations import Activations, stored_unit_labels, unit_dims_of
from dnnmask_xr.xarray_.array import layer_values
from dnnmask_xr.xarray_.dask_writes import blocks_as_declared


def save_act(
    acts: Activations | Mapping[str, xr.DataArray] | xr.DataTree,
    path: str | os.PathLike[str],
    *,
    attrs: Mapping[str, Any] | None = None,
    memory: int = DEFAULT_MEMORY,
    threads: int | None = None,
    progress: bool = False,
    verify: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> SaveReport:
    """Write layers to an ``.act.h5`` file that DNNBrain reads as its own, or to ``.nc``.

    ``.act.h5``: one gzip-compressed 4-D dataset per layer at the root, in
    order, and nothing else there; coordinates, the stimulus table and
    provenance go into HDF5 attributes. ``.nc``: a netCDF4 file, one group
    per layer (see :mod:`dnnmask_xr.act.nc`). Either appears at ``path``
    only once complete.

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
        The output, ending in ``.act.h5``, ``.nc`` or ``.act.zarr`` (a zarr v3
        store, :mod:`~dnnmask_xr.xarray_.zarr_store`, written by dask's
        scheduler: ``memory``, ``threads``, ``progress`` and ``verify`` do
        not apply to it), in a local folder or at an fsspec URL
        (``s3://bucket/run.act.zarr``, where nothing may be yet). An
        existing file there is replaced, but never a file the layers are
        read from or that this process holds open.
    attrs
        More provenance for the file's root (``cmd``, for instance). ``date``
        and ``software`` are the writer's: when (UTC) and by what the file
        is written, whatever ``attrs`` or the layers' source say.
    memory
        Memory budget: most bytes of activations held at once while writing.
    threads
        Threads that inflate and deflate chunks; all cores if None.
    progress
        Show a progress bar on stderr for writes that take a while.
    verify
        Also inflate the compressed chunks copied unchanged, so that a
        damaged input chunk stops the write rather than being copied.
    storage_options
        For a store at a URL: fsspec's options for its file system
        (credentials, ...), as ``to_zarr`` takes them.

    Returns
    -------
    SaveReport
        How each layer was written and how many chunks were read and written.

    Raises
    ------
    ActFileError
        If the output cannot be written, or (at a URL) something is there
        already; nothing is left at ``path``.
    OutputIsInputError
        If the output is a file or store the layers are read from.
    UsageError
        If ``path`` ends in none of ``.act.h5``, ``.nc`` and ``.act.zarr``,
        is a URL but not a store's, ``storage_options`` is given for a
        local path, ``memory`` or ``threads`` is not positive, or
        ``progress`` or ``verify`` is neither True nor False.
    DnnMaskError
        If ``acts`` is not a container of layers, the layers disagree on
        their stimuli, or hold names, labels or attributes a file cannot
        store, or a dask task gives a block of another shape than the
        layer's graph says (a block of another dtype is stored as the
        dtype the graph says, as NumPy's values are).
    Exception
        Whatever computing a dask-backed or lazily read layer raises (the
        caller's model, a file its graph reads), as it was raised; nothing
        is left at ``path``. In a ``.act.zarr`` store, zarr computes and
        writes in the same tasks, and such an error is an ``ActFileError``.
    """
    options = WriteOptions(memory=memory, threads=threads, verify=verify)
    acts = as_activations(acts)
    checked = {name: blocks_as_declared(name, layer) for name, layer in acts.items()}
    if any(checked[name] is not layer for name, layer in acts.items()):
        acts = acts._derive(checked, attrs=acts.attrs)
    plan = plan_layers(acts, mapping_arg(attrs, "attrs"))
    target = path_arg(path, "output")
    storage_options = storage_options_for([target], storage_options)
    with progress_bar(progress) as on_progress:
        if target.endswith(ZARR_SUFFIX):
            # a zarr store is written through xarray (zarr and dask are imported only then)
            from dnnmask_xr.xarray_.zarr_store import save_store

            return save_store(acts, plan, target, storage_options)
        return write(plan, path, replace(options, on_progress=on_progress))


def as_activations(acts: object) -> Activations:
    """Take any container of layers as :class:`~dnnmask_xr.Activations`.

    Raises
    ------
    DnnMaskError
        If ``acts`` is none of Activations, a mapping of name to layer, or
        a DataTree.
    """
    if isinstance(acts, Activations):
        return acts
    if isinstance(acts, xr.DataTree):
        from dnnmask_xr.xarray_.datatree import from_datatree

        return from_datatree(acts)
    if isinstance(acts, Mapping) and not isinstance(acts, xr.Dataset):
        return Activations(acts)
    hint = ""
    if isinstance(acts, xr.DataArray):
        hint = f"; for one layer give {{{str(acts.name or 'conv5')!r}: layer}}"
    raise DnnMaskError(f"cannot save a {type(acts).__name__}: give Activations, a mapping of "
                       f"layer name to DataArray, or a DataTree{hint}")


def plan_layers(acts: Activations, attrs: Mapping[str, Any] | None = None) -> Plan:
    """Plan the write of labelled layers: a file selection where possible.

    Raises
    ------
    DnnMaskError
        If the layers disagree on their stimuli, or a layer carries a
        coordinate that a file has no place for.
    """
    stimulus = acts.stimulus_table()
    layers = []
    # the .dmask.csv and .stim.csv files the layers were masked or labelled with
    inputs: dict[str, str] = {}
    for name, array in acts.items():
        inputs.update(array.encoding.get(INPUTS_KEY, {}))
        _check_coords(name, array)
        # stored 4-D: the unit dims along channel, row and column, the rest padded
        layers.append(PlannedLayer(name, stored_unit_labels(array), layer_values(array),
                                   dict(array.attrs), unit_dims_of(array)))
    return Plan(tuple(layers), stimulus, {**acts.attrs, **(attrs or {})}, inputs)


def _check_coords(name: str, array: xr.DataArray) -> None:
    # every coordinate has a place in the file, or the save says so
    for key, coord in array.coords.items():
        if key in array.dims or coord.dims == ("stimulus",):
            continue
        where = f"along {', '.join(map(str, coord.dims))}" if coord.dims else "scalar"
        raise DnnMaskError(f"layer {name!r} has the coordinate {str(key)!r} ({where}), which "
                           "a file has no place for (it keeps stimulus fields and the "
                           "numbers of the units along each dim); drop it with "
                           f".drop_vars({str(key)!r}) or make it a stimulus field")
