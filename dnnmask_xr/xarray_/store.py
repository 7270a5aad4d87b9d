"""The one read path: activation files to labelled, lazy layers.

:func:`open_layers` opens an ``.act.h5`` file, a ``.nc`` file that
:func:`~dnnmask_xr.save_act` wrote, or a list of either as one set, and
gives :class:`~dnnmask_xr.Activations` whose values are
:class:`~dnnmask_xr.xarray_.array.LayerArray` objects behind xarray's lazy
indexing, uncached and without dask: the ``dnnact`` backend hands them to
xarray, which applies ``cache=`` and ``chunks=`` (from each layer's
``encoding["preferred_chunks"]``, the file's HDF5 chunks) as it does for
its own backends. :func:`~dnnmask_xr.open_act` goes through that backend.

Every layer's ``encoding`` records where it was read from, in xarray's
keys (``source``, ``chunksizes``, ``zlib``, ...): ``to_netcdf`` keeps the
storage, and :func:`~dnnmask_xr.save_act` never replaces the file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

import h5py
import xarray as xr
from xarray.backends import CachingFileManager

from dnnmask_xr._args import bool_arg, lock_arg, path_arg
from dnnmask_xr.act.checks import (
    NC_SUFFIX,
    ZARR_SUFFIX,
    check_unit_labels,
    is_url,
    own_attrs,
    storage_options_for,
)
from dnnmask_xr.act.external import check_objects
from dnnmask_xr.act.layout import (
    NUMBERED_DIMS,
    decode_stimulus,
    decode_units,
    is_reserved,
    layer_datasets,
    layer_name,
    read_attrs,
)
from dnnmask_xr.act.stimulus import blaming
from dnnmask_xr.errors import ActFileError, DnnMaskError, UsageError
from dnnmask_xr.formats.stim import StimArg, Stimuli, read_stim
from dnnmask_xr.xarray_.activations import Activations, stored_unit_labels, unit_dims_of
from dnnmask_xr.xarray_.array import LayerArray, file_manager, held_file, lazy_values
from dnnmask_xr.xarray_.datatree import from_datatree
from dnnmask_xr.xarray_.file_set import concatenated

#: ``lock=`` once checked: None for xarray's HDF5 lock, False for h5py's alone, or a lock.
Lock = AbstractContextManager[Any] | Literal[False] | None


def open_layers(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    stim: StimArg | Sequence[StimArg] = None,
    allow_external: bool = False,
    lock: bool | AbstractContextManager[Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Activations:
    """Open the layers of a file, or of a set of files, lazily and uncached.

    Parameters are those of :func:`~dnnmask_xr.open_act`; a list of paths is
    opened as one set along ``stimulus``, with ``stim`` one table per file.

    Returns
    -------
    Activations
        Lazily indexed layers, in file order; closing them closes the files.
    """
    allow_external = bool_arg(allow_external, "allow_external")
    lock = lock_arg(lock)
    one_file = not isinstance(path, list | tuple)
    where = [path_arg(one, "activation file") for one in ([path] if one_file else path)]
    if not where:
        raise UsageError("open_act was given no file; give a path or a list of paths")
    _check_urls(where)
    storage_options = storage_options_for(where, storage_options)
    if not one_file:
        with contextlib.ExitStack() as undo:
            opened = []
            for one, table in zip(where, _stim_per_file(stim, len(where)), strict=True):
                acts = _open_file(one, table, allow_external, lock, storage_options)
                undo.callback(acts.close)
                opened.append(acts)
            acts = concatenated(where, opened)
            undo.pop_all()
        return acts
    if isinstance(stim, list | tuple):
        raise UsageError(f"stim= lists {len(stim)} stimulus tables for one file; give one "
                         "table, or a list of files (path=[...]) with one table each")
    return _open_file(where[0], stim, allow_external, lock, storage_options)


def _check_urls(where: list[str]) -> None:
    """Refuse a URL of what only a local file system opens (HDF5 files)."""
    for one in where:
        if is_url(one) and not one.endswith(ZARR_SUFFIX):
            raise UsageError(f"{one!r} is a URL: only a zarr store ({ZARR_SUFFIX!r}) is read "
                             "from one; copy an .act.h5 or .nc file to a local path first")


def _open_file(where: str, stim: StimArg, allow_external: bool, lock: Lock,
               storage_options: Mapping[str, Any] | None) -> Activations:
    if where.endswith(ZARR_SUFFIX):
        if lock is not None:
            raise UsageError("lock= is HDF5's; a zarr store is read without one")
        # zarr is imported only for a store
        from dnnmask_xr.xarray_.zarr_store import open_store

        return _labelled(_checked_labels(open_store(where, storage_options), where), stim)
    if where.endswith(NC_SUFFIX):
        # identified before the labels are read: values are read only from this
        # file; its objects are checked before h5netcdf opens it, which would
        # follow an external link blindly (a FIFO blocks it) and read a virtual
        # dataset's missing sources as fill values
        manager = file_manager(where, allow_external=allow_external,
                               check=lambda root: check_objects(root, repr(where),
                                                                allow_external))
        read = _read_nc_labels
    else:
        manager = file_manager(where, allow_external=allow_external)
        read = _read_layers
    try:
        layers, attrs, header = read(where, manager, allow_external, lock)
        acts = Activations(layers, attrs=attrs, stim_header=header, source=where,
                           closers=[manager.close])
    except BaseException:
        manager.close()
        raise
    # an .act.h5's labels were checked as they were decoded
    return _labelled(acts if read is _read_layers else _checked_labels(acts, where), stim)


def _checked_labels(acts: Activations, where: str) -> Activations:
    """Refuse unit labels that are not int64 numbers, as the ``.act.h5`` layout does.

    An ``.act.h5`` stores them as integer attributes (checked as they are
    read, :func:`~dnnmask_xr.act.layout.decode_units`); a ``.nc`` file or a
    store written by another tool may hold fractions, NaN, text or numbers
    beyond int64, which no mask can look up and no save can store. Closes
    ``acts`` when it refuses them.

    Raises
    ------
    ActFileError
        Naming the file, the layer and the dim.
    """
    try:
        for name, array in acts.items():
            try:
                check_unit_labels(name, stored_unit_labels(array), None, unit_dims_of(array))
            except DnnMaskError as err:
                raise ActFileError(f"{where!r}: {err}") from None
    except BaseException:
        acts.close()
        raise
    return acts


def _labelled(acts: Activations, stim: StimArg) -> Activations:
    """Label a file's layers with ``stim`` (its own table if None); close them if that fails."""
    if stim is None:
        return acts
    try:
        with blaming(stim):
            return acts.with_stimuli(stim if isinstance(stim, Stimuli) else read_stim(stim))
    except BaseException:
        acts.close()
        raise


def _stim_per_file(stim: StimArg | Sequence[StimArg], count: int) -> list[StimArg]:
    if stim is None:
        return [None] * count
    if isinstance(stim, str | os.PathLike | Stimuli) or not isinstance(stim, Sequence):
        given = repr(os.fspath(stim)) if isinstance(stim, str | os.PathLike) else (
            f"a {type(stim).__name__}")
        raise UsageError(f"stim= gives one stimulus table ({given}) for {count} files; give a "
                         f"list of {count}, one per file (None for a file's own table)")
    if len(stim) != count:
        raise UsageError(f"stim= lists {len(stim)} stimulus table(s) for {count} files; give "
                         "one per file, in the same order (None for a file's own table)")
    return list(stim)


def _read_layers(
    where: str, manager: CachingFileManager, allow_external: bool, lock: Lock,
) -> tuple[dict[str, xr.DataArray], dict[str, object], dict[str, str]]:
    """Read the labels of an ``.act.h5`` file, and give its layers lazily."""
    with held_file(manager, None) as root:
        return _labelled_layers(root, where, manager, allow_external, lock)


def _labelled_layers(
    root: h5py.File, where: str, manager: CachingFileManager, allow_external: bool,
    lock: Lock,
) -> tuple[dict[str, xr.DataArray], dict[str, object], dict[str, str]]:
    datasets = layer_datasets(root, where, allow_external=allow_external)
    stored = read_attrs(root, repr(where))
    attrs = {key: value for key, value in stored.items() if not is_reserved(key)}
    header: dict[str, str] = {}
    if not datasets:
        return {}, attrs, header
    n_stim = next(iter(datasets.values())).shape[0]
    ids, fields, header = decode_stimulus(stored, n_stim, repr(where))
    # the stimulus labels of every layer: built once, not once per layer
    stimuli = {"stimulus": xr.Variable("stimulus", ids),
               **{key: xr.Variable("stimulus", values) for key, values in fields.items()}}
    layers = {}
    for name, dataset in datasets.items():
        # the chunk index is checked on the layer's first read (a damaged one
        # is refused then, as the writer refuses it), so that opening a file
        # of many layers costs only what the layers used need
        values = LayerArray(manager, where, name, dataset.shape, dataset.dtype, lock)
        # one read of the layer's attributes: its dims and unit numbers, and
        # its own attributes (DNNBrain ignores them)
        stored_here = read_attrs(dataset, repr(where))
        unit_dims, numbers = decode_units(dataset, repr(where), stored_here)
        clash = [dim for dim in unit_dims if dim in fields]
        if clash:
            raise ActFileError(f"{where!r}: layer {name!r} has the unit dim {clash[0]!r}, "
                               "which is also the name of a stimulus field of the file")
        own = own_attrs(stored_here, unit_dims)
        labels = {dim: numbers[stored]
                  for stored, dim in zip(NUMBERED_DIMS, unit_dims, strict=False)}
        layers[name] = _lazy_layer(name, values, own, {**stimuli, **labels},
                                   _encoding(dataset, where, ("stimulus", *unit_dims)),
                                   unit_dims)
    return layers, attrs, header


def _lazy_layer(name: str, values: LayerArray, attrs: Mapping[str, Any],
                coords: Mapping[str, Any], encoding: Mapping[str, Any],
                unit_dims: tuple[str, ...]) -> xr.DataArray:
    """Give a file's layer as xarray's backends give a variable: lazily indexed, uncached.

    The axes an ``.act.h5`` layer pads are indexed away (:func:`lazy_values`).
    """
    variable = xr.Variable(("stimulus", *unit_dims), lazy_values(values, unit_dims),
                           attrs=dict(attrs))
    layer = xr.DataArray(variable, coords=coords, name=name)
    layer.encoding = dict(encoding)  # after: a DataArray made from a Variable drops it
    return layer


def _encoding(dataset: h5py.Dataset, where: str, dims: tuple[str, ...]) -> dict[str, object]:
    """Describe a layer's storage as xarray's h5netcdf backend does.

    ``to_netcdf`` then keeps its chunks and compression, ``chunks=`` and
    xarray its chunk shape (``preferred_chunks``, along ``dims``, the
    layer's own); ``original_shape`` lets xarray drop the chunk shape once a
    selection changes the layer's shape.
    """
    try:
        filters = h5py.filters.get_filters(dataset.id.get_create_plist())
    except (OSError, RuntimeError, ValueError, TypeError) as err:
        raise ActFileError(f"{where!r}: layer {layer_name(dataset)!r} is damaged: its "
                           f"filters cannot be read ({err})") from None
    # along the layer's own dims: the axes a layer pads have length 1
    ndim = len(dims)
    chunks = None if dataset.chunks is None else dataset.chunks[:ndim]
    encoding: dict[str, object] = {
        "dtype": dataset.dtype, "source": where, "original_shape": dataset.shape[:ndim],
        "contiguous": dataset.chunks is None, "chunksizes": chunks,
        "shuffle": "shuffle" in filters, "fletcher32": "fletcher32" in filters,
    }
    if chunks:
        encoding["preferred_chunks"] = dict(zip(dims, chunks, strict=True))
    if "gzip" in filters:
        encoding.update(zlib=True, complevel=filters["gzip"])
    else:
        encoding["zlib"] = False
        other = [name for name in filters if name not in ("shuffle", "fletcher32")]
        if other:
            encoding.update(compression=other[0], compression_opts=filters[other[0]])
    return encoding


def _netcdfs_own(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split attributes read undecoded into the caller's and those netCDF keeps for itself.

    Names starting with ``_`` (``_FillValue``, which xarray's ``to_netcdf``
    adds to floats) describe the storage: the writer of ``.nc`` refuses them
    as attributes, so they go to the layer's ``encoding``, as xarray puts
    them, and no value is decoded by them.
    """
    given = {key: value for key, value in attrs.items() if not str(key).startswith("_")}
    return given, {key: value for key, value in attrs.items() if key not in given}


def _read_nc_labels(
    where: str, manager: CachingFileManager, allow_external: bool, lock: Lock,
) -> tuple[dict[str, xr.DataArray], dict[str, Any], dict[str, str]]:
    """Read the labels of a netCDF4 file written by :func:`~dnnmask_xr.save_act`.

    Its layout is described in :mod:`dnnmask_xr.act.nc`, which writes it.
    h5netcdf reads the labels and the storage's description (encoding) and
    is closed again; the values are read by the chunk reader, through the
    one file manager, as for ``.act.h5``. Text labels come back as Python
    strings (dtype ``object``), as from an ``.act.h5`` file.
    """
    try:
        # phony_dims: a file not written here may lack dimension scales; it
        # then fails the layout check below rather than on opening
        # nothing is decoded as CF metadata: a layer's or the header's scale_factor,
        # missing_value or units are attributes as any other (the values are read raw)
        tree = xr.open_datatree(where, engine="h5netcdf", cache=False, phony_dims="access",
                                mask_and_scale=False, decode_times=False,
                                decode_timedelta=False, lock=lock)
    except (OSError, ValueError) as err:
        raise ActFileError(f"cannot read {where!r} as netCDF4 ({err})") from None
    # every label is read now, from the file identified above, and h5netcdf's
    # handle closed: read later (through h5netcdf's own file manager) a label
    # could come from a file put at its path since
    try:
        try:
            acts = from_datatree(tree)
        except DnnMaskError as err:
            raise ActFileError(f"{where!r}: {err}") from None
        layers = {}
        for name, array in acts.items():
            # h5netcdf gives text as fixed-width numpy strings; .act.h5 text is object
            labels = {key: coord.astype(object) if coord.dtype.kind == "U" else coord.compute()
                      for key, coord in array.coords.items()
                      if coord.dtype.kind == "U" or key not in array.xindexes}
            array = array.assign_coords(labels)
            variable = next(iter(tree[name].data_vars))
            values = LayerArray(manager, where, f"/{name}/{variable}", array.shape,
                                array.dtype, lock)
            attrs, own = _netcdfs_own(array.attrs)
            layers[name] = _lazy_layer(name, values, attrs, array.coords,
                                       {**array.encoding, **own}, unit_dims_of(array))
        header = None if acts.stim_header is None else _netcdfs_own(acts.stim_header)[0]
        return layers, acts.attrs, header
    finally:
        tree.close()
