"""Open the netCDF4 files (``.nc``) that :func:`~dnnmask_xr.save_act` writes.

Their layout is described in :mod:`dnnmask_xr.act.nc`, which writes them.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any, Literal

import xarray as xr

from dnnmask_xr.act.external import check_objects
from dnnmask_xr.errors import ActFileError, DnnMaskError
from dnnmask_xr.xarray_.activations import Activations
from dnnmask_xr.xarray_.array import LayerArray, as_variable_data, file_manager
from dnnmask_xr.xarray_.dask_layers import Chunks, chunk_layer
from dnnmask_xr.xarray_.datatree import from_datatree


def open_nc(
    path: str | os.PathLike[str], *, chunks: Chunks | None = None, cache: bool = True,
    allow_external: bool = False,
    lock: AbstractContextManager[Any] | Literal[False] | None = None,
) -> Activations:
    """Open the layers of a netCDF4 file written by :func:`save_nc`.

    :func:`~dnnmask_xr.open_act` calls this for paths ending in ``.nc``.

    Parameters
    ----------
    path
        The ``.nc`` file.
    chunks
        As for :func:`~dnnmask_xr.open_act`: ``None`` for lazy numpy-backed
        layers, otherwise dask-backed layers chunked like the file.
    cache
        Keep values once read; :func:`~dnnmask_xr.open_act` passes its own.
    allow_external
        As for :func:`~dnnmask_xr.open_act`: objects (in any group) that
        read other files are refused unless True, and then followed only as
        far as they are checked.
    lock
        As for :func:`~dnnmask_xr.open_act` (None, False or a lock; checked
        there): held around the HDF5 calls that read labels and values.

    Returns
    -------
    Activations
        Labelled like the ``.act.h5`` file the layers came from: stimulus
        IDs and text fields as Python strings (dtype ``object``).

    Raises
    ------
    ActFileError
        If the file is not netCDF4 or its groups are not layers, or an
        object reads another file that is not allowed or cannot be followed.
    """
    where = os.fspath(path)
    # identified before the labels are read: values are read only from this
    # file; its objects are checked before h5netcdf opens it, which would
    # follow an external link blindly (a FIFO blocks it) and read a virtual
    # dataset's missing sources as fill values
    manager = file_manager(where, allow_external=allow_external,
                           check=lambda root: check_objects(root, repr(where), allow_external))
    try:
        # phony_dims: a file not written here may lack dimension scales; it
        # then fails the layout check below rather than on opening
        tree = xr.open_datatree(where, engine="h5netcdf", cache=False, phony_dims="access",
                                decode_times=False, decode_timedelta=False, lock=lock)
    except (OSError, ValueError) as err:
        raise ActFileError(f"cannot read {where!r} as netCDF4 ({err})") from None
    try:
        acts = from_datatree(tree)
    except DnnMaskError as err:
        tree.close()
        raise ActFileError(f"{where!r}: {err}") from None
    # values are read by the chunk reader, as for .act.h5; h5netcdf gives
    # the labels and the storage's description (encoding)
    layers = {}
    for name, array in acts.items():
        # the labels are read now, from the file identified above: read later
        # (through h5netcdf's own file manager) they could come from a file put
        # at its path since. h5netcdf gives text as fixed-width numpy strings;
        # .act.h5 text is object
        labels = {key: coord.astype(object) if coord.dtype.kind == "U" else coord.compute()
                  for key, coord in array.coords.items()
                  if coord.dtype.kind == "U" or key not in array.xindexes}
        variable = next(iter(tree[name].data_vars))
        values = LayerArray(manager, where, f"/{name}/{variable}", array.shape, array.dtype,
                            lock)
        encoding = array.encoding
        array = xr.DataArray(xr.Variable(array.dims, as_variable_data(values, cache),
                                         attrs=array.attrs),
                             coords=array.coords, name=name).assign_coords(labels)
        array.encoding = encoding
        layers[name] = array if chunks is None else chunk_layer(array, chunks)
    return Activations(layers, attrs=acts.attrs, stim_header=acts.stim_header, source=where,
                       closers=[tree.close, manager.close])
