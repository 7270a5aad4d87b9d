"""Mask one ``.act.h5`` file into another, straight from HDF5.

What ``dnn_mask`` does, without xarray: :func:`plan_mask` turns the file's
layers, the mask's numbers and the stimulus table into a plan, and
:func:`~dnnmask_xr.act.write.write` copies the selected units chunk by chunk.
The result equals ``save_act(open_act(act).mask(mask, by="ordinal"), out)``:
mask numbers are read as DNNBrain reads them, positions in the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from dnnmask_xr._args import bool_arg, mapping_arg, path_arg
from dnnmask_xr.act.checks import NC_SUFFIX
from dnnmask_xr.act.files import open_file
from dnnmask_xr.act.layout import (
    DIMS,
    NUMBERED_DIMS,
    decode_stimulus,
    decode_units,
    is_reserved,
    layer_datasets,
    read_attrs,
)
from dnnmask_xr.act.plan import FileSelection, Plan, PlannedLayer, text_inputs
from dnnmask_xr.act.select import (
    NumberMeaning,
    check_meaning,
    layer_positions,
    missing_layer,
)
from dnnmask_xr.act.stimulus import StimulusTable, read_table
from dnnmask_xr.act.write import DEFAULT_MEMORY, SaveReport, WriteOptions, write
from dnnmask_xr.errors import ActFileError
from dnnmask_xr.formats.dmask import DnnMask, format_dmask

if TYPE_CHECKING:
    from dnnmask_xr.formats.stim import Stimuli


def mask_file(
    act: str | os.PathLike[str],
    out: str | os.PathLike[str],
    mask: DnnMask | Mapping[str, Any],
    *,
    stim: str | os.PathLike[str] | Stimuli | None = None,
    by: NumberMeaning = "ordinal",
    attrs: Mapping[str, Any] | None = None,
    memory: int = DEFAULT_MEMORY,
    threads: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    verify: bool = False,
    allow_external: bool = False,
) -> SaveReport:
    """Write the units a mask keeps of one ``.act.h5`` file to another.

    The fast path behind ``dnn_mask``: compressed chunks are copied
    unchanged where the mask keeps them whole; otherwise only the chunks the
    mask touches are read, each once, on every core, within ``memory``.

    Parameters
    ----------
    act
        The input ``.act.h5`` file (never modified).
    out
        The output, ending in ``.act.h5`` or ``.nc``; it appears only once
        complete.
    mask
        The layers and units to keep, in order.
    stim
        A ``.stim.csv`` path or table describing the input's stimuli.
    by
        ``"ordinal"`` (default, as ``dnn_mask`` and DNNBrain): number *n*
        is the *n*-th unit stored, from 1; ``"label"``: numbers are looked
        up among the file's channel/row/column numbers.
    attrs
        More provenance for the output's root.
    memory
        Memory budget: most bytes of activations held at once.
    threads
        Threads that inflate and deflate chunks; all cores if None.
    on_progress
        Called with a layer's name, bytes just done and bytes in all.
    verify
        Also inflate the compressed chunks copied unchanged, so that a
        damaged input chunk stops the write rather than being copied.
    allow_external
        Follow layers whose values live in other files (external links,
        virtual datasets, external raw storage), after checking that every file on the
        way (up to 16 deep) is a regular file and not the output; refused by default.

    Returns
    -------
    SaveReport
        How each layer was written.

    Raises
    ------
    UsageError
        If ``out`` ends in neither ``.act.h5`` nor ``.nc``, or an option is
        out of range.
    OutputIsInputError
        If ``out`` is the input, or the ``.dmask.csv`` or ``.stim.csv`` the
        mask and stimuli were read from; nothing is written.
    ActFileError
        If the input is not a valid ``.act.h5`` file, or the output cannot
        be written; nothing is written.
    SelectionError, FormatError
        For a bad mask or stimulus table; nothing is written.
    """
    options = WriteOptions(memory=memory, threads=threads, verify=verify,
                           on_progress=on_progress)
    if not isinstance(mask, DnnMask):
        mask = DnnMask(mask)
    attrs = mapping_arg(attrs, "attrs")
    target = path_arg(out, "output")
    source = path_arg(act, "input")
    if source.endswith(NC_SUFFIX):
        # its layers are groups, not root datasets: read as an .act.h5, its root's
        # stimulus variable was blamed for not being a 4-D layer
        raise ActFileError(f"{source!r} is a netCDF4 file (.nc), and mask_file reads .act.h5 "
                           f"files; mask it with save_act(open_act({source!r}).mask(mask, "
                           "by='ordinal'), out), as dnn_mask -act does")
    with open_file(source) as root:
        plan = plan_mask(root, mask, stim=stim, by=by, attrs=attrs,
                         allow_external=bool_arg(allow_external, "allow_external"))
        return write(plan, target, options)


def plan_mask(
    root: h5py.File,
    mask: DnnMask,
    *,
    stim: str | os.PathLike[str] | Stimuli | None = None,
    by: NumberMeaning = "ordinal",
    attrs: Mapping[str, Any] | None = None,
    allow_external: bool = False,
) -> Plan:
    """Plan the units a mask keeps of an open ``.act.h5`` file.

    Parameters
    ----------
    root
        The open input file.
    mask
        The layers and units to keep, in order.
    stim
        A ``.stim.csv`` path or table for the stimuli; the file's own if None.
    by
        How the mask's numbers are read (see :data:`~dnnmask_xr.act.select.NumberMeaning`).
    attrs
        More provenance for the output's root.
    allow_external
        Follow root objects whose values live in other files
        (:mod:`~dnnmask_xr.act.external`); refused by default.

    Raises
    ------
    SelectionError
        If a layer or a number is not in the file, or the stimulus table
        does not fit.
    ActFileError
        If the file is not a valid ``.act.h5`` file.
    UsageError
        If ``by`` is not a known meaning.
    """
    by = check_meaning(by)
    where = root.filename
    datasets = layer_datasets(root, where, allow_external=allow_external)
    missing = [layer for layer in mask if layer not in datasets]
    if missing:
        raise missing_layer(missing[0], repr(where), datasets)
    layers = []
    for name, layer_mask in mask.items():
        dataset = datasets[name]
        unit_dims, labels = decode_units(dataset, repr(where))
        chosen = layer_positions(name, layer_mask, labels, by, unit_dims)
        positions = tuple(chosen.get(dim, np.arange(size, dtype=np.int64))
                          for dim, size in zip(DIMS, dataset.shape, strict=True))
        kept = {dim: labels[dim][positions[axis]]
                for axis, dim in enumerate(NUMBERED_DIMS, start=1)}
        layers.append(PlannedLayer(name, kept, FileSelection(dataset, positions),
                                   dims=unit_dims))
    n_stim = next(iter(datasets.values())).shape[0] if datasets else 0
    table = None
    stored = read_attrs(root, repr(where), is_reserved)
    if stim is None:
        stimulus = StimulusTable(*decode_stimulus(stored, n_stim, repr(where)))
    else:
        dims = {dim for layer in layers for dim in layer.dims}
        try:
            carried = decode_stimulus(stored, n_stim, repr(where))[0]
        except ActFileError:
            carried = None  # stored labels that cannot be read are replaced, not compared
        stimulus, table = read_table(stim, n_stim, repr(where), dims, carried)
    provenance = {"source": where, "mask": format_dmask(mask), "mask_by": by, **(attrs or {})}
    return Plan(tuple(layers), stimulus, provenance, text_inputs(mask, table))
