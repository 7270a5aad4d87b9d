"""What a write produces: output layers, one stimulus table, provenance.

Every route that writes (``dnn_mask``, :func:`~dnnmask_xr.mask_file`,
:func:`~dnnmask_xr.save_act` of any container) describes its output as a
:class:`Plan` and hands it to :func:`~dnnmask_xr.act.write.write`. A layer's
values come either from a file selection (positions in an ``.act.h5``
layer, copied chunk by chunk) or from a block reader (anything else).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from dnnmask_xr.act.describe import count, describe_layers, format_bytes
from dnnmask_xr.act.layout import (
    DIMS,
    NUMBERED_DIMS,
    count_from_one,
    decode_stimulus,
    decode_unit_labels,
    is_reserved,
    layer_datasets,
    read_attrs,
)
from dnnmask_xr.act.select import (
    NumberMeaning,
    blaming,
    check_meaning,
    layer_positions,
    stimulus_labels,
)
from dnnmask_xr.errors import DnnMaskError, SelectionError

if TYPE_CHECKING:
    from dnnmask_xr.formats.dmask import DnnMask
    from dnnmask_xr.formats.stim import Stimuli

#: Reads the values of an output block: (stimulus slice, channel slice) -> array.
BlockReader = Callable[[slice, slice], np.ndarray]
#: The key of a layer's ``encoding`` that names the text files it was masked
#: or labelled with (path to what it held, see :attr:`Plan.inputs`). Kept in
#: the layer, not in a container, so that a dict of layers or a DataTree
#: still knows them; xarray carries ``encoding`` through ``isel``,
#: ``assign_coords`` and conversions, and its writers ignore unknown keys.
INPUTS_KEY = "dnnmask_xr_inputs"


@dataclass(frozen=True)
class FileSelection:
    """Units of one layer of an open file: 0-based positions per axis.

    Positions may come in any order and repeat; the output follows them.
    """

    dataset: h5py.Dataset
    positions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the output layer."""
        return tuple(axis.size for axis in self.positions)

    @property
    def dtype(self) -> np.dtype:
        """The layer's dtype."""
        return self.dataset.dtype


@dataclass(frozen=True)
class ComputedValues:
    """Values of a layer that come a block at a time from a callable.

    ``sources`` names the files the values are read from, if any (a lazy
    or dask-backed layer computed from a file).
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    read_block: BlockReader
    sources: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PlannedLayer:
    """One output layer: its name, unit labels, attributes and where its values come from.

    ``labels`` holds the ``channel``, ``row`` and ``column`` labels: the
    network's 1-based unit numbers, kept through every mask.
    """

    name: str
    labels: Mapping[str, np.ndarray]
    values: FileSelection | ComputedValues
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """The layer's shape."""
        return self.values.shape

    @property
    def dtype(self) -> np.dtype:
        """The layer's dtype."""
        return np.dtype(self.values.dtype)

    @property
    def nbytes(self) -> int:
        """Bytes of the layer's values before compression."""
        return int(np.prod(self.shape)) * self.dtype.itemsize


@dataclass(frozen=True)
class StimulusTable:
    """The stimulus table of a file: IDs, fields and the ``.stim.csv`` header.

    The numpy-only form of :class:`~dnnmask_xr.Stimuli` (which holds a
    pandas table), so that ``dnn_mask`` writes stimuli without pandas.
    """

    ids: np.ndarray
    fields: Mapping[str, np.ndarray] = field(default_factory=dict)
    header: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def counted(cls, size: int) -> StimulusTable:
        """Label stimuli nobody labelled: IDs ``1..size``."""
        return cls(count_from_one(size))

    def difference(self, other: StimulusTable) -> str | None:
        """Say how ``other`` labels the stimuli differently, or None if it does not.

        NaN equals NaN here: a float field left empty is the same in both.
        """
        if not same_values(self.ids, other.ids):
            return "stimulus IDs differ"
        if list(self.fields) != list(other.fields):
            return (f"fields {list(other.fields)} differ from {list(self.fields)}")
        for name, values in self.fields.items():
            if not same_values(values, other.fields[name]):
                return f"values of field {name!r} differ"
        return None


@dataclass(frozen=True)
class Plan:
    """Everything one write produces.

    Attributes
    ----------
    layers
        The output layers, in order.
    stimulus
        The one stimulus table all layers share.
    attrs
        Provenance for the file's root (``date`` and ``software`` are added
        by the writer).
    inputs
        The text files the plan was made from, other than :attr:`sources`:
        absolute path to what was read from it (``"mask"``, ``"stimulus
        table"``). The writer refuses to replace them as it refuses the
        sources.
    """

    layers: tuple[PlannedLayer, ...]
    stimulus: StimulusTable
    attrs: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of the output's values before compression."""
        return sum(layer.nbytes for layer in self.layers)

    @property
    def sources(self) -> frozenset[str]:
        """The files the layers' values are read from."""
        found: set[str] = set()
        for layer in self.layers:
            if isinstance(layer.values, FileSelection):
                found.add(layer.values.dataset.file.filename)
            else:
                found.update(layer.values.sources)
        return frozenset(found)

    def describe(self) -> str:
        """Describe each output layer on one line."""
        return describe_layers((layer.name, layer.shape, layer.dtype, layer.labels)
                               for layer in self.layers)

    def summary(self, out: str) -> str:
        """Say what would be written at ``out``."""
        return (f"would write {out!r}: {len(self.layers)} layer(s), "
                f"{count(self.stimulus.ids.size, 'stimulus')}, {format_bytes(self.nbytes)} before "
                "compression")


def text_inputs(mask: DnnMask | None = None, stimuli: Stimuli | None = None) -> dict[str, str]:
    """Name the files a mask and a stimulus table were read from, for :attr:`Plan.inputs`."""
    found = {}
    if mask is not None and mask.source is not None:
        found[mask.source] = "mask"
    if stimuli is not None and stimuli.source is not None:
        found[stimuli.source] = "stimulus table"
    return found


def shared_stimulus(tables: Iterable[tuple[str, StimulusTable]]) -> StimulusTable:
    """Return the stimulus table that every layer shares: the one rule for all routes.

    Parameters
    ----------
    tables
        ``(layer name, table)`` pairs, in layer order.

    Raises
    ------
    DnnMaskError
        If a layer labels its stimuli differently from the first (IDs, field
        names or any field's values; NaN equals NaN).
    """
    first: tuple[str, StimulusTable] | None = None
    for name, table in tables:
        if first is None:
            first = (name, table)
            continue
        difference = first[1].difference(table)
        if difference:
            raise DnnMaskError(f"layer {name!r} labels its stimuli differently from layer "
                               f"{first[0]!r} ({difference}); all layers of a file share one "
                               "stimulus table")
    return StimulusTable.counted(0) if first is None else first[1]


def same_values(first: np.ndarray, second: np.ndarray) -> bool:
    """Tell whether two label arrays are equal, NaN equal to NaN."""
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        return False
    if first.dtype.kind in "fc" and second.dtype.kind in "fc":
        return bool(np.array_equal(first, second, equal_nan=True))
    if first.dtype.kind == "O" or second.dtype.kind == "O":
        return all(_same_item(a, b) for a, b in zip(first.tolist(), second.tolist(),
                                                    strict=True))
    return bool(np.array_equal(first, second))


def _same_item(first: Any, second: Any) -> bool:
    # float('nan') in an object array: a field left empty in a text table
    return bool(first == second) or (first != first and second != second)


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
    from dnnmask_xr.formats.dmask import format_dmask

    by = check_meaning(by)
    where = root.filename
    datasets = layer_datasets(root, where, allow_external=allow_external)
    missing = [layer for layer in mask if layer not in datasets]
    if missing:
        raise SelectionError(f"layer {missing[0]!r} is not in {where!r} "
                             f"(layers: {', '.join(datasets) or 'none'})")
    layers = []
    for name, layer_mask in mask.items():
        dataset = datasets[name]
        labels = decode_unit_labels(dataset, repr(where))
        chosen = layer_positions(name, layer_mask, labels, by)
        positions = tuple(chosen.get(dim, np.arange(size, dtype=np.int64))
                          for dim, size in zip(DIMS, dataset.shape, strict=True))
        kept = {dim: labels[dim][positions[axis]]
                for axis, dim in enumerate(NUMBERED_DIMS, start=1)}
        layers.append(PlannedLayer(name, kept, FileSelection(dataset, positions)))
    n_stim = next(iter(datasets.values())).shape[0] if datasets else 0
    table = None
    if stim is None:
        stored = read_attrs(root, repr(where), is_reserved)
        stimulus = StimulusTable(*decode_stimulus(stored, n_stim, repr(where)))
    else:
        stimulus, table = _stimulus_table(stim, n_stim, where)
    provenance = {"source": where, "mask": format_dmask(mask), "mask_by": by, **(attrs or {})}
    return Plan(tuple(layers), stimulus, provenance, text_inputs(mask, table))


def _stimulus_table(
    stim: str | os.PathLike[str] | Stimuli, n_stim: int, where: str
) -> tuple[StimulusTable, Stimuli]:
    # pandas is imported only when a stimulus table is given
    from dnnmask_xr.formats.stim import Stimuli, read_stim

    table = stim if isinstance(stim, Stimuli) else read_stim(stim)
    with blaming(stim):
        ids, fields = stimulus_labels(table, n_stim, repr(where))
    return StimulusTable(ids, fields, table.header), table
