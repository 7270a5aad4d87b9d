"""The netCDF4 layout (``.nc``): what makes the file netCDF, through h5netcdf.

The writer (:func:`~dnnmask_xr.act.write.write`) does everything else,
as for ``.act.h5``: the values go chunk by chunk into the datasets created
here. The file holds, as any netCDF4 reader expects:

- the root group: the dimension ``stimulus`` with its coordinate variable
  (the stimulus IDs; its attributes are the ``.stim.csv`` header), one
  variable per stimulus field, listed in the root attribute ``coordinates``
  so that xarray opens them as coordinates, and the provenance as root
  attributes;
- one group per layer, named after it, in order: the dimensions
  ``stimulus`` and the layer's unit dims (``channel``, ``row`` and
  ``column``; ``token`` and ``channel``; ...) with their coordinate
  variables (the stimulus IDs again, without the header, and the
  network's 1-based numbers); one variable per stimulus field, listed in
  the group's attribute ``coordinates``; and the variable named after the
  layer, of dims ``(stimulus, *unit dims)``, in gzip-compressed chunks. A
  netCDF variable has named dims, so a layer of fewer than three unit dims
  is stored without the padded axes of an ``.act.h5`` layer.

The stimuli are in every group because a group is what
``xr.open_dataset(path, group="conv5")`` and ``xr.open_mfdataset`` open:
without them a layer would have no stimulus labels there, and a layer node
of ``xr.open_datatree(path)`` no fields (xarray's nodes inherit indexes
only). The tree opens because the group's ``stimulus`` holds the same
values as the root's. Each group has a ``stimulus`` dimension of its own
(files written before this used the root's, and still open): a dimension
shared by every layer would list all their variables in one attribute that
HDF5 rewrites whole on each new one, so that writing n layers took time
and space in n**2.

So ``xr.open_datatree(path)`` opens it with named dims, and
:func:`~dnnmask_xr.open_act` reads it back exactly (also the files written
before the groups held the stimuli). Nothing here imports xarray.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import h5netcdf
import h5py
import numpy as np

from dnnmask_xr.act.checks import check_header_keys, check_names_apart
from dnnmask_xr.act.layer_writer import gzip_options
from dnnmask_xr.act.layout import is_text
from dnnmask_xr.act.plan import Plan, PlannedLayer
from dnnmask_xr.act.stimulus import StimulusTable
from dnnmask_xr.errors import DnnMaskError


class NcLayout:
    """Lays a plan out as netCDF4 groups and variables in an open HDF5 file.

    The writer reserves room on disk before each step (h5netcdf makes a
    dimension by creating a dataset, detaching and deleting it; a full disk
    then crashes HDF5): see :class:`~dnnmask_xr.act.write.RoomOnDisk`.
    """

    #: each group holds the stimulus table again (see the module's docstring)
    stimulus_in_every_layer = True

    def __init__(self, root: h5py.File) -> None:
        # h5netcdf leaves a file it was handed open: the writer closes it
        self.root = root
        self.nc = h5netcdf.File(root, "w")
        # set by write_root, which the writer calls before any layer's sink
        self.stimulus = StimulusTable(np.empty(0, dtype=object))

    @staticmethod
    def check(plan: Plan) -> None:
        """Refuse what netCDF4 has no type or name for."""
        for layer in plan.layers:
            dtype = layer.dtype
            # float16, booleans and complex numbers have no netCDF4 type
            if not (dtype.kind in "iu" or (dtype.kind == "f" and dtype.itemsize in (4, 8))):
                raise DnnMaskError(
                    f"layer {layer.name!r} holds {dtype} values, which netCDF4 cannot store "
                    "(it stores integers of 1 to 8 bytes, float32 and float64); save it as "
                    ".act.h5, or cast it")
        check_names_apart(plan, "a netCDF4 file")
        for what, values in (("stimulus IDs hold", plan.stimulus.ids),
                             *((f"stimulus field {name!r} holds", values)
                               for name, values in plan.stimulus.fields.items())):
            untyped = _untyped(values)
            if untyped:
                instead = "integers (.astype(int))" if untyped == "booleans" else (
                    "float32 (.astype('float32'))")
                raise DnnMaskError(f"{what} {untyped}, which netCDF4 cannot store; give them "
                                   f"as {instead}, or save as .act.h5")
        for where, attrs in (("the file's root", plan.attrs),
                             *((f"layer {layer.name!r}", layer.attrs) for layer in plan.layers)):
            for key, value in attrs.items():
                _check_attr(key, value, where)
        check_header_keys(plan, "a netCDF4 file")
        spaced = [name for name in plan.stimulus.fields if name.split() != [name]]
        if spaced:
            raise DnnMaskError(f"stimulus field {spaced[0]!r} has white space in its name, "
                               "which netCDF's list of coordinates cannot hold; rename the "
                               "field")
        dotted = [name for name in plan.stimulus.fields if name in (".", "..")]
        if dotted:
            # each field is a variable of the root group, and HDF5 reserves these names
            raise DnnMaskError(f"stimulus field {dotted[0]!r} cannot name a variable of a "
                               "netCDF4 file ('.' and '..' are reserved); rename the field, "
                               "or save as .act.h5")

    def write_root(self, attrs: Mapping[str, Any], stimulus: StimulusTable) -> None:
        """Store provenance as root attributes, the stimulus table as root variables."""
        self.stimulus = stimulus
        root = self.nc
        root.attrs.update(attrs)
        ids = _write_stimuli(root, stimulus)
        ids.attrs.update(stimulus.header)

    def sink(self, layer: PlannedLayer) -> _VariableSink:
        """Create the layer's group, its dimensions and their coordinate variables."""
        group = self.nc.create_group(layer.name)
        for dim, labels in layer.unit_labels.items():
            group.dimensions[dim] = labels.size
            group.create_variable(dim, (dim,), data=np.asarray(labels, dtype=np.int64))
        _write_stimuli(group, self.stimulus)
        return _VariableSink(group, layer.name, ("stimulus", *layer.dims))

    def finish_layer(self, layer: PlannedLayer, dataset: h5py.Dataset) -> None:
        """Store the layer's attributes on its variable."""
        self.nc[layer.name][layer.name].attrs.update(layer.attrs)

    def close(self) -> None:
        """Write h5netcdf's own bookkeeping (dimension ids, ``_NCProperties``)."""
        self.nc.close()


class _VariableSink:
    """Creates a layer's variable in its netCDF group."""

    def __init__(self, group: h5netcdf.Group, name: str, dims: tuple[str, ...]) -> None:
        self.group, self.name, self.dims = group, name, dims
        self.dataset: h5py.Dataset | None = None

    def create(self, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...] | None,
               level: int | None, fillvalue: Any) -> h5py.Dataset | PaddedDataset:
        # no fill value: h5netcdf would store it as _FillValue, which readers
        # decode as missing values; the chunk copier writes chunks the input
        # never wrote when the fill values differ
        ndim = len(self.dims)
        variable = self.group.create_variable(
            self.name, self.dims, dtype=dtype, chunks=None if chunks is None else chunks[:ndim],
            **gzip_options(chunks, level))
        self.dataset = variable._h5ds
        return self.dataset if ndim == len(shape) else PaddedDataset(self.dataset, len(shape))


class PaddedDataset:
    """A dataset of fewer dims seen by the writer as the 4-D layer it stores.

    The axes a layer pads have length 1 (and chunks of 1), so a chunk holds
    the same bytes in either shape: the writer's chunks go in unchanged,
    at the offset along the dataset's own axes.
    """

    def __init__(self, dataset: h5py.Dataset, ndim: int) -> None:
        self.dataset = dataset
        padding = (1,) * (ndim - dataset.ndim)
        self.shape = dataset.shape + padding
        self.chunks = None if dataset.chunks is None else dataset.chunks + padding
        self.dtype = dataset.dtype
        self.fillvalue = dataset.fillvalue
        self.id = self  # the writer stores chunks through ``target.id``

    def write_direct_chunk(self, offset: tuple[int, ...], data: bytes,
                           filter_mask: int = 0) -> None:
        """Store one chunk, its offset along the padded axes (always 0) left out."""
        self.dataset.id.write_direct_chunk(offset[:self.dataset.ndim], data, filter_mask)


def _write_stimuli(group: h5netcdf.Group, stimulus: StimulusTable) -> h5netcdf.Variable:
    """Store the stimulus IDs and fields in ``group``, the fields listed as coordinates."""
    # each group a stimulus dimension of its own, not the root's (see the module's docstring)
    group.dimensions["stimulus"] = stimulus.ids.size
    ids = group.create_variable("stimulus", ("stimulus",), data=_storable(stimulus.ids),
                                dtype=_dtype(stimulus.ids))
    for name, values in stimulus.fields.items():
        group.create_variable(name, ("stimulus",), data=_storable(values), dtype=_dtype(values))
    if stimulus.fields:
        # xarray reads the variables a group's 'coordinates' attribute lists as coordinates
        group.attrs["coordinates"] = " ".join(stimulus.fields)
    return ids


def _check_attr(key: str, value: Any, where: str) -> None:
    if key.startswith("_"):
        raise DnnMaskError(f"attribute {key!r} of {where}: netCDF keeps names that start with "
                           "'_' for itself; rename the attribute")
    untyped = _untyped(value)
    if untyped == "booleans":
        raise DnnMaskError(f"attribute {key!r} of {where} is boolean, which netCDF4 cannot "
                           "store; store it as an integer (0 or 1) or text")
    if untyped:
        raise DnnMaskError(f"attribute {key!r} of {where} is float16, which netCDF4 cannot "
                           "store; store it as float32 or text")


def _untyped(values: Any) -> str | None:
    """Name what netCDF4 has no type for in labels or an attribute: booleans, float16.

    h5netcdf writes them as HDF5 stores them: netCDF-C leaves such an
    attribute out, and the netCDF4 library crashed reading such a variable.
    """
    dtype = np.asarray(values).dtype
    return "booleans" if dtype.kind == "b" else (
        "float16 values" if dtype == np.float16 else None)


def _storable(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    return np.array([str(v) for v in values], dtype=object) if is_text(values) else (
        values)


def _dtype(values: np.ndarray) -> Any:
    return h5py.string_dtype() if is_text(values) else values.dtype
