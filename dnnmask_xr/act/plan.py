"""What a write produces: output layers, one stimulus table, provenance (the types).

Every route that writes (``dnn_mask``, :func:`~dnnmask_xr.mask_file`,
:func:`~dnnmask_xr.save_act` of any container) describes its output as a
:class:`Plan` and hands it to :func:`~dnnmask_xr.act.write.write`. A layer's
values come either from a file selection (positions in an ``.act.h5``
layer, copied chunk by chunk) or from a block reader (anything else).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from dnnmask_xr.act.describe import count, describe_layers, format_bytes
from dnnmask_xr.act.layout import NUMBERED_DIMS
from dnnmask_xr.act.stimulus import StimulusTable

if TYPE_CHECKING:
    from dnnmask_xr.formats.dmask import DnnMask
    from dnnmask_xr.formats.stim import Stimuli

#: Reads the values of an output block: (stimulus slice, channel slice) -> array.
BlockReader = Callable[[slice, slice], np.ndarray]
#: Compressed chunks computed elsewhere (dask's workers), within a memory budget (bytes):
#: yields, a few at a time, each chunk's offset in the layer and its deflated bytes.
DeflatedChunks = Callable[[int], Iterator[list[tuple[tuple[int, ...], bytes]]]]
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
    or dask-backed layer computed from a file). ``chunks`` fixes the
    output's chunks (the parts of a streamed write share theirs); the
    writer chooses them if None. ``deflated``, with ``chunks``, gives the
    output's chunks compressed where the values are computed (a dask
    layer's tasks): the writer then only stores them, and ``read_block``
    is not called.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    read_block: BlockReader
    sources: frozenset[str] = frozenset()
    chunks: tuple[int, ...] | None = None
    deflated: DeflatedChunks | None = None


@dataclass(frozen=True)
class StackedParts:
    """One layer stored in parts, one after the other along ``stimulus``.

    The parts of a streamed write (:mod:`~dnnmask_xr.act.parts`): the
    same layer of each part file, chunked alike, each part but the last a
    whole number of chunks long along ``stimulus``, so that the output's
    chunks are the parts' compressed chunks, copied as they are.
    """

    parts: tuple[h5py.Dataset, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the output layer."""
        first = self.parts[0].shape
        return (sum(part.shape[0] for part in self.parts), *first[1:])

    @property
    def dtype(self) -> np.dtype:
        """The layer's dtype."""
        return self.parts[0].dtype


@dataclass(frozen=True)
class PlannedLayer:
    """One output layer: its name, unit labels, attributes and where its values come from.

    Its values are 4-D, ``(stimulus, channel, row, column)`` as stored; a
    layer of fewer unit dims pads the last axes with length 1. ``dims``
    names the layer's unit dims (``("token", "channel")`` for a transformer
    layer stored as ``(stimulus, token, channel, 1)``). ``labels`` holds the
    labels along the stored ``channel``, ``row`` and ``column`` axes: the
    network's 1-based unit numbers, kept through every mask.
    """

    name: str
    labels: Mapping[str, np.ndarray]
    values: FileSelection | ComputedValues | StackedParts
    attrs: Mapping[str, Any] = field(default_factory=dict)
    dims: tuple[str, ...] = NUMBERED_DIMS

    @property
    def unit_labels(self) -> dict[str, np.ndarray]:
        """The labels of each unit dim, by the layer's own dim names."""
        return {dim: self.labels[stored]
                for stored, dim in zip(NUMBERED_DIMS, self.dims, strict=False)}

    @property
    def own_shape(self) -> tuple[int, ...]:
        """The layer's shape along its own dims: ``stimulus``, then :attr:`dims`."""
        return self.shape[:1 + len(self.dims)]

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
            elif isinstance(layer.values, StackedParts):
                found.update(part.file.filename for part in layer.values.parts)
            else:
                found.update(layer.values.sources)
        return frozenset(found)

    def described(self, n_stimuli: int | None = None) -> Plan:
        """Give the layers as a description of ``n_stimuli`` stimuli, without their values.

        What a streamed write holds its parts to: names, labels, dtypes,
        attributes and shapes past ``stimulus`` (``n_stimuli``: the
        stimulus table's length if None), and no reference to the values,
        which are never read from it.
        """
        n_stimuli = len(self.stimulus.ids) if n_stimuli is None else n_stimuli
        return dataclasses.replace(self, layers=tuple(
            dataclasses.replace(layer, values=ComputedValues(
                (n_stimuli, *layer.shape[1:]), layer.dtype, _described_only))
            for layer in self.layers))

    def describe(self) -> str:
        """Describe each output layer on one line."""
        return describe_layers((layer.name, layer.own_shape, layer.dtype, layer.unit_labels)
                               for layer in self.layers)

    def summary(self, out: str) -> str:
        """Say what would be written at ``out``."""
        return (f"would write {out!r}: {len(self.layers)} layer(s), "
                f"{count(self.stimulus.ids.size, 'stimulus')}, {format_bytes(self.nbytes)} before "
                "compression")


def _described_only(stimuli: slice, channels: slice) -> np.ndarray:
    raise AssertionError("a described plan holds no values; it is never written")


def text_inputs(mask: DnnMask | None = None, stimuli: Stimuli | None = None) -> dict[str, str]:
    """Name the files a mask and a stimulus table were read from, for :attr:`Plan.inputs`."""
    found = {}
    if mask is not None and mask.source is not None:
        found[mask.source] = "mask"
    if stimuli is not None and stimuli.source is not None:
        found[stimuli.source] = "stimulus table"
    return found
