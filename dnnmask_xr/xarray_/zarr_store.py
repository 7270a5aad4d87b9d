"""Zarr v3 stores of activations (``.act.zarr``), written and read through xarray.

The layout is the tree of :func:`~dnnmask_xr.to_datatree` as xarray's
``DataTree.to_zarr(zarr_format=3)`` stores it (docs/formats.md): the root
group holds the ``stimulus`` coordinate (its attributes are the stimulus
table's header), one array per stimulus field and the provenance as
attributes; one group per layer, in order, holds the layer's array, named
after it, with its dims, and the numbers of its units as coordinate
arrays. So ``xr.open_datatree(store, engine="zarr")`` reads every label
without this package, and :func:`~dnnmask_xr.open_act` reads the store back
as the layers saved.

Writing takes the checks of every write (the output path, inputs never
replaced, what the store cannot hold: :func:`~dnnmask_xr.act.write.checked`)
and appears whole or not at all (:func:`~dnnmask_xr._atomic.atomic_folder`).
Layers not in memory are written a dask chunk at a time (the output's
chunks, about 1 MiB each), so memory stays bounded; zarr and dask are the
``zarr`` extra's, imported only here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import xarray as xr

from dnnmask_xr._atomic import atomic_folder
from dnnmask_xr.act._interrupt import check_interrupt, deferred_interrupts
from dnnmask_xr.act.checks import is_url, is_zarr_store
from dnnmask_xr.act.chunking import output_chunks
from dnnmask_xr.act.layer_writer import LayerReport
from dnnmask_xr.act.layout import EXACT_STORE, FIELD_ORDER, LAYER_ORDER, plain_text
from dnnmask_xr.act.plan import Plan
from dnnmask_xr.act.write import SaveReport, checked, provenance_stamp, write_failures_said
from dnnmask_xr.errors import ActFileError, UsageError
from dnnmask_xr.xarray_.activations import Activations
from dnnmask_xr.xarray_.array import StoredLayer, read_failures_said
from dnnmask_xr.xarray_.dask_writes import aligned_chunks, every_task_ended
from dnnmask_xr.xarray_.datatree import from_datatree, to_datatree

#: How xarray reads a store written exactly (:data:`EXACT_STORE`): the values as stored and
#: every attribute as given, none taken as CF conventions' (``scale_factor``,
#: ``missing_value``, ``_FillValue``, ``units`` of times, ``_Unsigned``, ``_Encoding``).
#: xarray turns a variable whose attribute ``dtype`` is ``bool`` into booleans whatever
#: it is told; the coordinates are still found by the attribute ``coordinates``.
_AS_STORED = {"mask_and_scale": False, "decode_times": False, "decode_timedelta": False,
              "concat_characters": False}
#: What writing and reading a store needs, and how to install it.
_NEEDS = "install them with python -m pip install 'dnnmask_xr[zarr]'"


def save_store(acts: Activations, plan: Plan, target: str,
               storage_options: Mapping[str, Any] | None = None) -> SaveReport:
    """Write layers to the zarr v3 store ``target`` (``.act.zarr``), whole or not at all.

    ``plan`` is the layers' plan (:func:`~dnnmask_xr.xarray_.save.plan_layers`),
    which every write is checked by. ``target`` is a local path or an
    fsspec URL, opened with ``storage_options`` (checked by the caller:
    :func:`~dnnmask_xr.act.checks.storage_options_for`;
    :mod:`~dnnmask_xr.xarray_.url_store`).

    Raises
    ------
    UsageError
        If zarr or dask is not installed.
    ActFileError, OutputIsInputError, DnnMaskError
        As every write does (:func:`~dnnmask_xr.act.write.checked`).
    """
    plan, _ = checked(plan, target)
    _need_zarr_3(f"writing {target!r}")
    try:
        import dask.array  # noqa: F401
    except ModuleNotFoundError:
        raise UsageError(f"writing {target!r} needs dask: {_NEEDS}") from None
    layers = {}
    reports = []
    for planned, (name, layer) in zip(plan.layers, acts.items(), strict=True):
        # the file's encoding (HDF5 chunks, gzip) is not the store's
        layer = layer.drop_encoding()
        if layer.chunks is not None and layer.size:
            # dask's blocks, as large as they are, tiled by regular chunks (zarr's kind):
            # each task writes its own chunks, on a cluster's workers too
            steps, data = aligned_chunks(layer.data, tuple(map(max, layer.chunks)))
            layer = layer.copy(data=data)
        else:
            steps = output_chunks(planned.shape, layer.dtype.itemsize)[:layer.ndim]
            steps = tuple(max(1, min(step, size)) for step, size in zip(steps, layer.shape,
                                                                        strict=True))
        # text as Python strings: zarr 3 stores them as variable-length UTF-8, whose
        # specification v3 has, where numpy's fixed-width unicode has none
        layer = layer.assign_coords({key: (coord.dims, plain_text(coord.values))
                                     for key, coord in layer.coords.items()
                                     if coord.dtype.kind in "UT"})
        # the values alone are chunked (text fields as dask arrays would be computed to be
        # typed)
        layers[name] = layer.copy(data=layer.variable.chunk(
            dict(zip(layer.dims, steps, strict=True))).data)
        reports.append(LayerReport(name, "encoded" if layer.size else "empty",
                                   chunks_written=int(np.prod(layers[name].data.numblocks))
                                   if layer.size else 0))
    # zarr lists a group's members in its own order: the layers' and fields' are kept here
    stamped = {**plan.attrs, **provenance_stamp(), LAYER_ORDER: list(acts),
               FIELD_ORDER: list(plan.stimulus.fields), EXACT_STORE: 1}
    tree = to_datatree(Activations(layers, attrs=stamped, stim_header=acts.stim_header))
    # no fill value of xarray's: it would add the attribute _FillValue, which is the
    # caller's to give (a layer's attributes and the stimulus header are stored as given)
    encoding = {node.path: {name: {"_FillValue": None}
                            for name in node.to_dataset(inherit=False).variables}
                for node in tree.subtree}
    with write_failures_said(target), deferred_interrupts() as deferral:
        with _written_whole(target, storage_options) as store:
            # dask's tasks write the chunks: a failed write is removed only once none of
            # them can write any more (late chunks stayed, at a URL or in the temporary
            # folder, which zarr made again)
            with warnings.catch_warnings(), every_task_ended():
                # zarr says that consolidated metadata is not in the v3 specification yet;
                # xarray and zarr read it, and readers that ignore it list the groups
                warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
                # every chunk: zarr leaves out one that equals the fill value, which reads
                # back as the fill value (a NaN of another sign or payload, 0.0 for -0.0),
                # and a chunk missing from the store could not be told from one left out
                tree.to_zarr(store, mode="w", zarr_format=3, consolidated=True,
                             encoding=encoding, write_empty_chunks=True)
            check_interrupt()
        deferral.commit(target)
    return SaveReport(target, tuple(reports))


def _written_whole(target: str, storage_options: Mapping[str, Any] | None
                   ) -> AbstractContextManager[Any]:
    """Give where to write the store: a folder renamed into place, or a store at a URL."""
    if is_url(target):
        from dnnmask_xr.xarray_.url_store import store_at_url

        return store_at_url(target, storage_options)
    return atomic_folder(target)


def open_store(path: str, storage_options: Mapping[str, Any] | None = None) -> Activations:
    """Read the layers of a zarr store this package (or ``to_datatree(...).to_zarr``) wrote.

    ``path`` is a local folder or an fsspec URL (``s3://...``, opened with
    ``storage_options``, which the caller checked; a local folder takes none).

    The layers are lazy: zarr reads a chunk when asked (the one read path,
    :mod:`~dnnmask_xr.xarray_.store`, opens stores here, and xarray applies
    ``chunks=`` as for files). Each records the store in
    ``encoding["source"]``, so that no save replaces the store its layers
    are read from.

    Raises
    ------
    UsageError
        If zarr is not installed.
    ActFileError
        If ``path`` is not a zarr store, or not laid out as activations.
    """
    _need_zarr_3(f"reading {path!r}")
    url = is_url(path)
    if url:
        from dnnmask_xr.xarray_.url_store import is_store_at

        found = is_store_at(path, storage_options)
    else:
        found = is_zarr_store(path)
    if not found:
        raise ActFileError(f"cannot open {path!r}: " + (
            "no zarr store is there (no zarr.json)" if url else
            "no such folder" if not os.path.lexists(path) else
            "it is not a zarr store (a folder with zarr.json)"))
    # zarr reads the index coordinates at once
    with read_failures_said(f"cannot read {path!r}: the store is damaged"):
        acts = _read_labels(path, storage_options if url else None)
    source = path if url else os.path.abspath(path)
    # read by zarr through this package's lazy array: a damaged chunk names the store
    layers = {name: StoredLayer.layer(layer, source) for name, layer in acts.items()}
    for layer in layers.values():
        layer.encoding["source"] = source
    # named as given, as a file is (the output's provenance, errors); the layers record
    # the store itself, which no save may replace wherever the process goes
    return Activations(layers, attrs=acts.attrs, stim_header=acts.stim_header, source=path)


def _read_labels(path: str, storage_options: Mapping[str, Any] | None) -> Activations:
    """Open a store's layers in the order saved, with their labels.

    A store this package wrote (its root says :data:`EXACT_STORE`) is read
    as stored: values and attributes as given, and an object missing from it
    is an error, since it holds every chunk. Another (written by xarray
    alone, ``to_datatree(...).to_zarr``) is read as xarray reads it.
    """
    store = _read_only_store(path, storage_options)
    import zarr

    exact = EXACT_STORE in zarr.open_group(store, mode="r", zarr_format=3).attrs
    if exact:
        from dnnmask_xr.xarray_.store_objects import EveryObject

        store = EveryObject(store)
    with warnings.catch_warnings():
        # a store written without consolidated metadata (to_zarr(consolidated=False)) is
        # read by listing its groups, as xarray does, without its warning
        warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated",
                                RuntimeWarning)
        # uncached, as every layer of the read path: xarray caches what open_act asks it to
        tree = xr.open_datatree(store, engine="zarr", zarr_format=3, cache=False,
                                **(_AS_STORED if exact else {}))
    # named by the URL or folder given (what the store object was made from)
    tree.encoding["source"] = path
    return from_datatree(tree)


def _read_only_store(path: str, storage_options: Mapping[str, Any] | None) -> Any:
    """Give zarr's store for ``path``: a local folder, or an fsspec URL with its options."""
    from zarr.storage import FsspecStore, LocalStore

    if storage_options is None and not is_url(path):
        return LocalStore(path, read_only=True)
    return FsspecStore.from_url(path, storage_options=dict(storage_options or {}),
                                read_only=True)


def _need_zarr_3(what: str) -> None:
    """Refuse in one line, before anything is written, where zarr 3 is missing."""
    try:
        import zarr
    except ModuleNotFoundError:
        raise UsageError(f"{what} needs zarr 3: {_NEEDS}") from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise UsageError(f"{what} needs zarr 3 (zarr {zarr.__version__} is installed; it "
                         f"needs Python 3.11): {_NEEDS}")
