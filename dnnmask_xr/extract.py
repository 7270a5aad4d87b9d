"""Mask one ``.act.h5`` file into another, straight from HDF5.

What ``dnn_mask`` does, without xarray: the file's layers, the mask's
numbers and the stimulus table become :class:`~dnnmask_xr.writer.OutputLayer`
records, and :func:`~dnnmask_xr.writer.write_act` copies the selected units
chunk by chunk. The result equals ``save_act(open_act(act).mask(mask))``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from dnnmask_xr.coding import NUMBERED_DIMS, decode_layer_numbers, decode_stimulus
from dnnmask_xr.describe import describe_layers, format_bytes
from dnnmask_xr.dmask import DnnMask, format_dmask
from dnnmask_xr.engine import FileSelection
from dnnmask_xr.errors import SelectionError
from dnnmask_xr.h5 import layer_datasets, open_file
from dnnmask_xr.selection import NumberMeaning, layer_positions, stimulus_labels
from dnnmask_xr.writer import (
    DEFAULT_MEMORY,
    SUFFIX,
    OutputLayer,
    SaveReport,
    Stimulus,
    check_memory,
    check_not_input,
    check_output,
    write_act,
)

if TYPE_CHECKING:
    from dnnmask_xr.stim import Stimuli


@dataclass(frozen=True)
class MaskPlan:
    """The layers and stimulus table a mask keeps of a file.

    Attributes
    ----------
    layers
        Output layers, in the mask's order.
    stimulus
        The stimulus table of the output.
    """

    layers: tuple[OutputLayer, ...]
    stimulus: Stimulus

    @property
    def nbytes(self) -> int:
        """Bytes of the output's values before compression."""
        return sum(int(np.prod(layer.shape)) * layer.dtype.itemsize for layer in self.layers)

    def describe(self) -> str:
        """Describe each output layer on one line."""
        return describe_layers((layer.name, layer.shape, layer.dtype, layer.numbers)
                               for layer in self.layers)

    def summary(self, out: str) -> str:
        """Say what would be written at ``out``."""
        n_stim = self.stimulus.ids.size
        return (f"would write {out!r}: {len(self.layers)} layer(s), {n_stim} stimuli, "
                f"{format_bytes(self.nbytes)} before compression")


def plan_mask(
    root: h5py.File,
    where: str,
    mask: DnnMask,
    *,
    stim: str | os.PathLike[str] | Stimuli | None = None,
    by: NumberMeaning = "position",
) -> MaskPlan:
    """Check a mask and a stimulus table against an open file.

    Parameters
    ----------
    root
        The open ``.act.h5`` file.
    where
        Its path, for errors.
    mask
        The units to keep.
    stim
        A ``.stim.csv`` path or table for the stimuli, if any.
    by
        How the mask's numbers are read: ``"position"`` (DNNBrain's way) or
        ``"label"`` (the file's channel/row/column numbers).

    Raises
    ------
    SelectionError
        If a layer or a number is not in the file, or the stimulus table
        does not fit.
    ActFileError
        If the file is not a valid ``.act.h5`` file.
    """
    datasets = layer_datasets(root, where)
    missing = [layer for layer in mask if layer not in datasets]
    if missing:
        raise SelectionError(f"layer {missing[0]!r} is not in {where!r} "
                             f"(layers: {', '.join(datasets) or 'none'})")
    layers = []
    for name, layer_mask in mask.items():
        dataset = datasets[name]
        labels = decode_layer_numbers(dataset, repr(where))
        chosen = layer_positions(name, layer_mask, labels, by)
        positions = [chosen.get(dim, np.arange(size, dtype=np.int64))
                     for dim, size in zip(("stimulus", *NUMBERED_DIMS), dataset.shape,
                                          strict=True)]
        numbers = {dim: labels[dim][positions[axis]]
                   for axis, dim in enumerate(NUMBERED_DIMS, start=1)}
        layers.append(OutputLayer(name, numbers, FileSelection(dataset, tuple(positions))))
    n_stim = next(iter(datasets.values())).shape[0] if datasets else 0
    ids, fields, header = decode_stimulus(root.attrs, n_stim, repr(where))
    if stim is not None:
        ids, fields, header = _stimulus_table(stim, n_stim, where)
    return MaskPlan(tuple(layers), Stimulus(ids, fields, header))


def mask_file(
    act: str | os.PathLike[str],
    out: str | os.PathLike[str],
    mask: DnnMask | Mapping[str, Any],
    *,
    stim: str | os.PathLike[str] | Stimuli | None = None,
    by: NumberMeaning = "position",
    attrs: Mapping[str, Any] | None = None,
    memory: int = DEFAULT_MEMORY,
    threads: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    verify: bool = False,
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
        The output, ending in ``.act.h5``; it appears only once complete.
    mask
        The layers and units to keep, in order.
    stim
        A ``.stim.csv`` path or table describing the input's stimuli.
    by
        ``"position"`` (default, as ``dnn_mask`` and DNNBrain): number *n*
        is the *n*-th unit stored; ``"label"``: numbers are looked up among
        the file's channel/row/column numbers.
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

    Returns
    -------
    SaveReport
        How each layer was written.

    Raises
    ------
    UsageError
        If ``out`` does not end in ``.act.h5``.
    ActFileError
        If ``out`` is the input, or the input is not a valid ``.act.h5``
        file; nothing is written.
    SelectionError, FormatError
        For a bad mask or stimulus table; nothing is written.
    """
    where, target = os.fspath(act), os.fspath(out)
    if not isinstance(mask, DnnMask):
        mask = DnnMask(mask)
    check_output(target, (SUFFIX,))
    check_memory(memory)
    check_not_input(where, target)
    with open_file(where) as root:
        plan = plan_mask(root, where, mask, stim=stim, by=by)
        provenance = {"source": where, "mask": format_dmask(mask), "mask_by": by,
                      **(attrs or {})}
        return write_act(target, plan.layers, stimulus=plan.stimulus, attrs=provenance,
                         memory=memory, threads=threads, on_progress=on_progress,
                         verify=verify)


def _stimulus_table(
    stim: str | os.PathLike[str] | Stimuli, n_stim: int, where: str
) -> tuple[np.ndarray, dict[str, np.ndarray], Mapping[str, str]]:
    # pandas is imported only when a stimulus table is given
    from dnnmask_xr.stim import Stimuli, read_stim

    table = stim if isinstance(stim, Stimuli) else read_stim(stim)
    try:
        ids, fields = stimulus_labels(table, n_stim, repr(where))
    except SelectionError as err:
        if isinstance(stim, Stimuli):
            raise
        raise SelectionError(f"{os.fspath(stim)}: {err}") from None
    return ids, fields, table.header
