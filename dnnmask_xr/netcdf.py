"""Activations as a netCDF4 file (``.nc``), written with h5netcdf.

The file holds the tree of :func:`~dnnmask_xr.to_datatree`, as any netCDF4
reader expects it:

- the root group: the dimension ``stimulus`` with its coordinate variable
  (the stimulus IDs; its attributes are the ``.stim.csv`` header), one
  variable per stimulus field, listed in the root attribute
  ``coordinates`` so that xarray opens them as coordinates, and the
  provenance as root attributes;
- one group per layer, named after it, in order: the dimensions
  ``channel``, ``row`` and ``column`` with their coordinate variables (the
  network's 1-based numbers), and the variable named after the layer, of
  dims ``(stimulus, channel, row, column)``, in gzip-compressed chunks.

So ``xr.open_datatree(path)`` opens it with named dims, and
:func:`~dnnmask_xr.open_act` reads it back exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import h5netcdf
import h5py
import numpy as np
import xarray as xr

from dnnmask_xr._atomic import atomic_path
from dnnmask_xr._interrupt import check_interrupt, deferred_interrupts
from dnnmask_xr.activations import Activations
from dnnmask_xr.chunking import iter_blocks, output_chunks
from dnnmask_xr.coding import DIMS, NUMBERED_DIMS
from dnnmask_xr.dask_layers import Chunks, chunk_layer
from dnnmask_xr.datatree import from_datatree, to_datatree
from dnnmask_xr.errors import ActFileError, DnnMaskError
from dnnmask_xr.writer import (
    DEFAULT_MEMORY,
    NC_SUFFIX,
    check_not_input,
    check_output,
    check_unit_numbers,
    layer_progress,
    progress_bar,
    provenance_stamp,
)


def save_nc(
    acts: Activations,
    path: str | os.PathLike[str],
    *,
    attrs: Mapping[str, Any] | None = None,
    memory: int = DEFAULT_MEMORY,
    progress: bool = False,
) -> None:
    """Write layers to a netCDF4 file, block by block, all or nothing.

    :func:`~dnnmask_xr.save_act` calls this for paths ending in ``.nc``;
    the parameters are its own.

    Raises
    ------
    ActFileError
        If the output cannot be written; nothing is left at ``path``.
    DnnMaskError
        If a layer holds values netCDF4 cannot store (float16, booleans,
        complex numbers) or the layers disagree on their stimuli.
    """
    target = os.fspath(path)
    check_output(target, (NC_SUFFIX,))
    check_not_input(acts.source, target)
    for name, array in acts.items():
        _check_layer(name, array)
    tree = to_datatree(acts)
    spaced = [str(field) for field in tree.coords if len(str(field).split()) != 1]
    if spaced:
        raise DnnMaskError(f"stimulus field {spaced[0]!r} has white space in its name, which "
                           "netCDF's list of coordinates cannot hold; rename the field")
    root_attrs = {**tree.attrs, **(attrs or {}), **provenance_stamp()}
    try:
        with atomic_path(target) as tmp, deferred_interrupts(), \
                progress_bar(progress) as on_progress, h5netcdf.File(tmp, "w") as root:
            _write_root(root, tree.to_dataset(inherit=False), root_attrs)
            for name, node in tree.children.items():
                group = root.create_group(name)
                done = layer_progress(on_progress, name, acts.nbytes)
                _write_layer(group, node.to_dataset(inherit=False), name, memory, done)
    except (OSError, RuntimeError) as err:  # h5py reports HDF5's failures as either
        raise ActFileError(f"cannot write {target!r}: {err}") from None


def open_nc(path: str | os.PathLike[str], *, chunks: Chunks | None = None) -> Activations:
    """Open the layers of a netCDF4 file written by :func:`save_nc`.

    :func:`~dnnmask_xr.open_act` calls this for paths ending in ``.nc``.

    Parameters
    ----------
    path
        The ``.nc`` file.
    chunks
        As for :func:`~dnnmask_xr.open_act`: ``None`` for lazy numpy-backed
        layers, otherwise dask-backed layers chunked like the file.

    Returns
    -------
    Activations
        Labelled like the ``.act.h5`` file the layers came from: stimulus
        IDs and text fields as Python strings (dtype ``object``).

    Raises
    ------
    ActFileError
        If the file is not netCDF4 or its groups are not layers.
    """
    where = os.fspath(path)
    try:
        # phony_dims: a file not written here may lack dimension scales; it
        # then fails the layout check below rather than on opening
        tree = xr.open_datatree(where, engine="h5netcdf", cache=False, phony_dims="access",
                                decode_times=False, decode_timedelta=False)
    except (OSError, ValueError) as err:
        raise ActFileError(f"cannot read {where!r} as netCDF4 ({err})") from None
    try:
        acts = from_datatree(tree)
    except DnnMaskError as err:
        tree.close()
        raise ActFileError(f"{where!r}: {err}") from None
    layers = {}
    for name, array in acts.items():
        # h5netcdf gives text as fixed-width numpy strings; .act.h5 text is object
        text = {key: coord.astype(object) for key, coord in array.coords.items()
                if coord.dtype.kind == "U"}
        array = array.assign_coords(text)
        layers[name] = array if chunks is None else chunk_layer(array, chunks)
    return Activations(layers, attrs=acts.attrs, stim_header=acts.stim_header, source=where,
                       closers=[tree.close])


def _write_root(root: h5netcdf.File, dataset: xr.Dataset, attrs: Mapping[str, Any]) -> None:
    root.attrs.update(attrs)
    if "stimulus" not in dataset.coords:
        return
    root.dimensions["stimulus"] = dataset.sizes["stimulus"]
    for name, coord in dataset.coords.items():
        variable = root.create_variable(str(name), ("stimulus",), data=_storable(coord.values),
                                        dtype=_dtype(coord.values))
        variable.attrs.update(coord.attrs)
    fields = [str(name) for name in dataset.coords if name != "stimulus"]
    if fields:
        # xarray reads the variables a root 'coordinates' attribute lists as coordinates
        root.attrs["coordinates"] = " ".join(fields)


def _write_layer(
    group: h5netcdf.Group, dataset: xr.Dataset, name: str, memory: int,
    done: Callable[[int], None],
) -> None:
    array = dataset[name]
    group.dimensions.update({dim: array.sizes[dim] for dim in NUMBERED_DIMS})
    for dim in NUMBERED_DIMS:
        group.create_variable(dim, (dim,), data=np.asarray(array[dim].values, dtype=np.int64))
    shape, itemsize = array.shape, array.dtype.itemsize
    chunks = output_chunks(shape, itemsize) if 0 not in shape else None
    variable = group.create_variable(
        name, DIMS, dtype=array.dtype, chunks=chunks,
        **({"compression": "gzip", "compression_opts": 4} if chunks else {}),
    )
    variable.attrs.update(array.attrs)
    if chunks is None:
        return
    for stimuli, channels in iter_blocks(shape, chunks, itemsize, memory):
        block = array.isel(stimulus=stimuli, channel=channels).values
        variable[stimuli, channels] = block
        done(block.nbytes)
        check_interrupt()


def _check_layer(name: str, array: xr.DataArray) -> None:
    dtype = array.dtype
    # float16, booleans and complex numbers have no netCDF4 type
    if not (dtype.kind in "iu" or (dtype.kind == "f" and dtype.itemsize in (4, 8))):
        raise DnnMaskError(f"layer {name!r} holds {dtype} values, which netCDF4 cannot store "
                           "(it stores integers of 1 to 8 bytes, float32 and float64); save "
                           "it as .act.h5, or cast it")
    check_unit_numbers(name, {dim: array[dim].values for dim in NUMBERED_DIMS})


def _storable(values: np.ndarray) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object) if values.dtype.kind in "OUS" else (
        values)


def _dtype(values: np.ndarray) -> Any:
    return h5py.string_dtype() if values.dtype.kind in "OUS" else values.dtype
