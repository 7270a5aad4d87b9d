"""Several activation files of one network, opened as one set along ``stimulus``.

A study extracts activations per scanning session or run, one file and one
stimulus table each. :func:`concatenated` (what
``open_act([p1, p2, ...], stim=[s1, s2, ...])`` comes to) checks that the files
hold the same layers with the same units, that no stimulus is in two files,
and gives their layers concatenated, still lazy: a selection reads from
each file only what it selects there. The files are ``.act.h5`` or ``.nc``
files or ``.act.zarr`` stores, in any mix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from dnnmask_xr.act.chunking import file_chunks
from dnnmask_xr.act.layout import is_text
from dnnmask_xr.act.plan import INPUTS_KEY
from dnnmask_xr.act.select import describe_numbers
from dnnmask_xr.act.stimulus import StimulusTable, same_values
from dnnmask_xr.errors import ActFileError, SelectionError
from dnnmask_xr.xarray_.activations import Activations, unit_dims_of
from dnnmask_xr.xarray_.array import (
    SOURCES_KEY,
    ConcatenatedArray,
    LayerArray,
    StoredPart,
    lazy_values,
    whole_layer,
)

#: The encoding key of a set's layer that lists its files' lengths along ``stimulus``.
FILES_KEY = "stimuli_per_file"


def concatenated(where: list[str], opened: list[Activations]) -> Activations:
    """Give files of one network as one set of layers, concatenated along ``stimulus``.

    Parameters
    ----------
    where
        The files' paths, in the order their stimuli are to follow.
    opened
        Each file's layers, lazy and uncached, labelled with its stimulus
        table (:func:`~dnnmask_xr.xarray_.store.open_layers`).

    Returns
    -------
    Activations
        The layers of the first file, each concatenated with the same layer
        of the others; the stimulus fields concatenated likewise, under
        the one header all files share. Root and layer attributes keep
        what every file agrees on; ``attrs["sources"]`` lists the files.
        Closing them closes every file.

    Raises
    ------
    ActFileError
        If the files hold different layers, or a layer's units or dtype
        differ between files.
    SelectionError
        If a stimulus ID is in two files, or the files' stimulus tables
        have different fields or headers.
    """
    _check_layers(where, opened)
    tables = [acts.stimulus_table() for acts in opened]
    _check_distinct_stimuli(where, tables)
    header = _shared_header(where, tables)
    coords = _stimulus_coords(where, tables)
    layers = {name: _concatenated(name, [acts[name] for acts in opened], coords)
              for name in opened[0]}
    attrs = {**_agreed([acts.attrs for acts in opened]), "sources": where}
    return Activations(layers, attrs=attrs, stim_header=header,
                       closers=[acts.close for acts in opened])


def _check_layers(where: list[str], opened: list[Activations]) -> None:
    first, names = where[0], list(opened[0])
    for path, acts in zip(where[1:], opened[1:], strict=True):
        if list(acts) != names:
            raise ActFileError(f"{path!r} holds the layers {', '.join(acts) or 'none'} but "
                               f"{first!r} holds {', '.join(names) or 'none'}; the files of one "
                               "set hold the same layers, in the same order")
        for name in names:
            mine, theirs = acts[name], opened[0][name]
            if mine.dtype != theirs.dtype:
                raise ActFileError(f"{path!r} stores layer {name!r} as {mine.dtype} but "
                                   f"{first!r} as {theirs.dtype}; the files of one set store "
                                   "a layer alike")
            if mine.dims != theirs.dims:
                raise ActFileError(f"{path!r} stores layer {name!r} with dims {mine.dims} but "
                                   f"{first!r} with {theirs.dims}; the files of one set store "
                                   "a layer alike")
            for dim in unit_dims_of(theirs):
                if not same_values(mine[dim].values, theirs[dim].values):
                    raise ActFileError(
                        f"{path!r}: layer {name!r} has the {dim}s "
                        f"{describe_numbers(mine[dim].values)} but in {first!r} "
                        f"{describe_numbers(theirs[dim].values)}; the files of one set hold "
                        "the same units of each layer")


def _check_distinct_stimuli(where: list[str], tables: list[StimulusTable]) -> None:
    seen: dict[Any, str] = {}
    for path, table in zip(where, tables, strict=True):
        ids = table.ids.tolist()
        for stim_id in set(ids):
            if stim_id in seen:
                raise SelectionError(
                    f"stimulus {stim_id!r} is in both {seen[stim_id]!r} and {path!r}; the files "
                    "of one set describe distinct stimuli: give each file its own stimulus "
                    "table (stim=[...], one per file) so that the IDs tell them apart")
        seen.update(dict.fromkeys(ids, path))


def _shared_header(where: list[str], tables: list[StimulusTable]) -> dict[str, str]:
    """Give the one stimulus header of the set: every file's, which must agree."""
    first = tables[0].header
    for path, table in zip(where[1:], tables[1:], strict=True):
        for key in dict.fromkeys([*first, *table.header]):
            if table.header.get(key) != first.get(key):
                raise SelectionError(
                    f"the stimulus tables of {where[0]!r} and {path!r} differ in their header: "
                    f"{key}={_shown(first.get(key))} and {key}={_shown(table.header.get(key))}; "
                    "a set of files has one stimulus table, so give every file's table the "
                    "same header (for stimuli in several folders: one path, and IDs relative "
                    "to it, such as ses-02/img1.png)")
    return dict(first)


def _shown(value: str | None) -> str:
    return "(none)" if value is None else repr(value)


def _stimulus_coords(where: list[str], tables: list[StimulusTable]) -> dict[str, Any]:
    names = sorted(tables[0].fields)
    for path, table in zip(where[1:], tables[1:], strict=True):
        if sorted(table.fields) != names:
            raise SelectionError(f"{path!r} labels its stimuli with the fields "
                                 f"{sorted(table.fields) or 'none'} but {where[0]!r} with "
                                 f"{names or 'none'}; the files of one set have stimulus "
                                 "tables with the same columns")
    for path, table in zip(where[1:], tables[1:], strict=True):
        # numpy would join text and numbers into an object array no file can store
        for what, values, firsts in (("its stimuli", table.ids, tables[0].ids),
                                     *((f"the stimulus field {field!r}", table.fields[field],
                                        values) for field, values in tables[0].fields.items())):
            if is_text(values) != is_text(firsts):
                kinds = ("text", "numbers") if is_text(values) else ("numbers", "text")
                held = "stimulus IDs" if what == "its stimuli" else f"values of {what[4:]}"
                raise SelectionError(
                    f"{path!r} labels {what} with {kinds[0]} but {where[0]!r} with "
                    f"{kinds[1]}; the {held} of one set are all text or all numbers: give "
                    "each file a stimulus table (stim=[...], one per file)")
    coords: dict[str, Any] = {"stimulus": np.concatenate([table.ids for table in tables])}
    for name in tables[0].fields:
        coords[name] = ("stimulus", np.concatenate([table.fields[name] for table in tables]))
    return coords


def _concatenated(name: str, parts: list[xr.DataArray],
                  coords: Mapping[str, Any]) -> xr.DataArray:
    first = parts[0]
    unit_dims = unit_dims_of(first)
    data = lazy_values(ConcatenatedArray(_stored_parts(parts)), unit_dims)
    layer = xr.DataArray(
        xr.Variable(first.dims, data, attrs=_agreed([part.attrs for part in parts])),
        coords={dim: first[dim].values for dim in unit_dims}, name=name,
    ).assign_coords(coords)
    layer.encoding = _encoding(parts, layer.shape)
    return layer


def _stored_parts(parts: list[xr.DataArray]) -> list[LayerArray] | list[StoredPart]:
    """Give each part's layer as stored: an HDF5 file's, or (with a zarr store) as opened."""
    files = [whole_layer(part) for part in parts]
    if all(layer is not None for layer in files):
        # HDF5 layers are read by this package's chunk reader, and saved by copying chunks
        return files
    return [StoredPart(part.variable, part.encoding["source"], str(part.name))
            for part in parts]


def _encoding(parts: list[xr.DataArray], shape: tuple[int, ...]) -> dict[str, Any]:
    """Keep the storage description all parts share (chunks, compression) for the set.

    The set's chunks along ``stimulus`` (``preferred_chunks``, what
    ``chunks={}`` follows) are each file's own, from its start: none joins
    part of one file to another. ``stimuli_per_file`` keeps the files'
    lengths, by which ``open_act`` aligns ``chunks="auto"`` with them, and
    ``sources`` their paths, which no save replaces.
    """
    encoding = {key: value for key, value in _agreed([part.encoding for part in parts]).items()
                if key not in ("source", INPUTS_KEY, "preferred_chunks")}
    encoding["original_shape"] = shape
    encoding[SOURCES_KEY] = tuple(part.encoding["source"] for part in parts)
    lengths = tuple(part.shape[0] for part in parts)
    encoding[FILES_KEY] = lengths
    preferred = _preferred_chunks(parts, lengths)
    if preferred is not None:
        encoding["preferred_chunks"] = preferred
    inputs: dict[str, str] = {}
    for part in parts:
        inputs.update(part.encoding.get(INPUTS_KEY, {}))
    if inputs:
        encoding[INPUTS_KEY] = inputs
    return encoding


def _preferred_chunks(parts: list[xr.DataArray],
                      lengths: tuple[int, ...]) -> dict[str, Any] | None:
    """Give the set's chunks: each file's own along ``stimulus``, the smallest along the rest.

    Files of other lengths are chunked otherwise (h5py's automatic chunks
    depend on the shape), so the files' chunks need not agree; a unit dim
    takes the smallest of them, so that no chunk holds more than a file's.
    None if a file has no chunks to prefer.
    """
    dims = parts[0].dims
    preferred = [part.encoding.get("preferred_chunks") for part in parts]
    if not all(isinstance(chunks, Mapping) and all(isinstance(chunks.get(dim), int)
                                                   for dim in dims) for chunks in preferred):
        return None
    along_stimulus = tuple(
        size for chunks, length in zip(preferred, lengths, strict=True) if length
        for size in file_chunks([length], chunks["stimulus"], join=False))
    return {"stimulus": along_stimulus or (0,),
            **{dim: min(chunks[dim] for chunks in preferred) for dim in dims[1:]}}


def _agreed(mappings: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Keep the entries every mapping has, with equal values."""
    first = mappings[0]
    return {key: value for key, value in first.items()
            if all(key in other and _equal(other[key], value) for other in mappings[1:])}


def _equal(first: Any, second: Any) -> bool:
    try:
        if isinstance(first, np.ndarray | list | tuple):
            return same_values(np.asarray(first), np.asarray(second))
        return bool(first == second)
    except (TypeError, ValueError):  # values numpy cannot compare are taken as different
        return False
