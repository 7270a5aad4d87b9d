"""DNNBrain's ``dnnbrain.dnn.core``: ``Activation``, ``Mask``, ``Stimulus`` and ``RDM``.

The classes keep DNNBrain's signatures, return types and results; their
files go through :mod:`dnnmask_xr.dnnbrain.io.fileio`, so through this
package's readers and writers. Where DNNBrain is wrong this module keeps
this package's rules: mask numbers 0 and below are errors (not a count from
the end), numbers in any order or repeated are kept as given, and every
error is one of :mod:`dnnmask_xr.errors`, in one line naming the layer,
axis or file. Mapping activations to brain or behaviour data
(``DnnProbe``, scikit-learn) is out of scope.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np

from dnnmask_xr.dnnbrain import missing_names
from dnnmask_xr.dnnbrain.dnn.base import array_statistic, dnn_fe, dnn_mask
from dnnmask_xr.dnnbrain.io import fileio as fio
from dnnmask_xr.errors import DnnMaskError, IndexSelectionError, SelectionError, UsageError

__all__ = ["RDM", "Activation", "Mask", "Stimulus"]

__getattr__ = missing_names(__name__, (
    "DnnProbe", "UnivariateMapping", "MultivariateMapping",
), "mapping activations to behaviour or brain data, with scikit-learn")

#: What indexes stimuli: a position, positions, or a slice.
Rows = int | list[int] | slice


def _missing(kind: str, name: object, names: Sequence[str], holder: str) -> SelectionError:
    """Say that ``holder`` (the activation, the mask, ...) has no such layer, item or key."""
    return SelectionError(f"{kind} {name!r} is not in the {holder} "
                          f"({kind}s: {', '.join(map(str, names)) or 'none'})")


def _take_rows(values: Any, rows: Rows, what: str) -> np.ndarray:
    """Give ``values[rows]``, saying in one line which rows do not fit ``what``."""
    array = np.asarray(values)
    try:
        return array[rows]
    except IndexError as error:
        n_stim = len(array) if array.ndim else 0
        raise IndexSelectionError(f"{what}: stimuli {rows!r} are not rows of its {n_stim} "
                                  f"stimuli ({' '.join(str(error).split())}); rows are "
                                  f"positions 0..{n_stim - 1} or -{n_stim}..-1, a list of them "
                                  "or a slice") from None


class Stimulus:
    """Stimuli: a header (``type``, ``path``, ...) and one array per item.

    Parameters
    ----------
    header
        The header's keys and values.
    data
        Item (field) name to an array of shape ``(n_stim,)``; ``stimID`` is
        required.

    Raises
    ------
    DnnMaskError
        If the header is not a dict, or an item is not an array of one
        value per stimulus.
    """

    def __init__(self, header: dict[str, Any] | None = None,
                 data: dict[str, np.ndarray] | None = None) -> None:
        if header is not None and not isinstance(header, dict):
            raise UsageError(f"header is a dict, not a {type(header).__name__}")
        self.header: dict[str, Any] = {} if header is None else header
        if data is None:
            self._data: dict[str, np.ndarray] = {}
            return
        if not isinstance(data, Mapping) or "stimID" not in data:
            raise DnnMaskError("stimulus data is a dict of item name to array with the item "
                               "'stimID'")
        n_stim = len(data["stimID"])
        for key, value in data.items():
            if not isinstance(value, np.ndarray) or value.shape != (n_stim,):
                raise DnnMaskError(f"stimulus item {key!r} is a {type(value).__name__} of "
                                   f"shape {np.shape(value)}; items are arrays of shape "
                                   f"({n_stim},), one value per stimulus")
        self._data = data

    def load(self, fname: str) -> None:
        """Load the header and items from a ``.stim.csv`` file, replacing these.

        Parameters
        ----------
        fname
            The file.
        """
        stimuli = fio.StimulusFile(fname).read()
        self._data = stimuli.pop("data")
        self.header = stimuli

    def save(self, fname: str) -> None:
        """Save the header and items to a ``.stim.csv`` file, as DNNBrain writes it.

        Parameters
        ----------
        fname
            The file.

        Raises
        ------
        DnnMaskError
            If the header has no ``type`` or ``path``, a key that is not
            text or is ``data``, or the items would not read back as
            written.
        """
        header = self.header.copy()
        for key in ("type", "path"):
            if key not in header:
                raise DnnMaskError(f"{fname}: the stimuli's header has no {key!r}; 'type' and "
                                   "'path' are required")
        for key in header:
            if not isinstance(key, str) or key == "data":
                # passed on as keywords: Python's TypeError otherwise
                raise DnnMaskError(f"{fname}: header key {key!r} cannot be written; keys are "
                                   "text, and 'data' is the line naming the items")
        fio.StimulusFile(fname).write(header.pop("type"), header.pop("path"), self._data,
                                      **header)

    def get(self, item: str) -> np.ndarray:
        """Give an item's array.

        Raises
        ------
        SelectionError
            If there is no such item.
        """
        if item not in self._data:
            raise _missing("item", item, self.items, "stimuli")
        return self._data[item]

    def set(self, item: str, value: Any) -> None:
        """Set an item to ``numpy.asarray(value)``, of shape ``(n_stim,)``.

        Raises
        ------
        DnnMaskError
            If the value is not one value per stimulus: 1-D, as long as
            the other items.
        """
        array = np.asarray(value)
        others = [other for other in self._data if other != item]
        n_stim = len(self._data[others[0]]) if others else None
        if array.ndim != 1 or (n_stim is not None and len(array) != n_stim):
            wanted = "(n_stim,)" if n_stim is None else f"({n_stim},)"
            raise DnnMaskError(f"stimulus item {item!r} would be of shape {array.shape}; items "
                               f"are arrays of shape {wanted}, one value per stimulus")
        self._data[item] = array

    def delete(self, item: str) -> None:
        """Delete an item.

        Raises
        ------
        SelectionError
            If there is no such item.
        """
        self.get(item)
        self._data.pop(item)

    def permutate(self, item: str) -> Stimulus:
        """Give a copy with one item's values shuffled (with :mod:`random`).

        Parameters
        ----------
        item
            The item to shuffle.

        Returns
        -------
        Stimulus
            A copy, the item shuffled, placed first as DNNBrain places it.
        """
        indices = list(range(len(self)))
        random.shuffle(indices)
        stim = Stimulus()
        stim.header = deepcopy(self.header)
        stim.set(item, self.get(item)[indices])
        for other in self.items:
            if other != item:
                stim.set(other, deepcopy(self.get(other)))
        return stim

    @property
    def items(self) -> list[str]:
        """The item names, in order."""
        return list(self._data.keys())

    def __len__(self) -> int:
        # the rows of any item: stimuli without stimID (stim[rows, 'RT']) or items have them too
        return len(next(iter(self._data.values()))) if self._data else 0

    def __getitem__(self, indices: Rows | tuple[Any, ...]) -> Stimulus:
        """Give some stimuli (rows) and items (columns), as a 2-D array is indexed.

        ``stim[rows]`` or ``stim[rows, cols]``: rows by an int, a list of
        ints or a slice; cols by an int, a name, a list of either, or a
        slice.

        Raises
        ------
        UsageError
            If an index is none of those.
        IndexSelectionError
            If a row or item number is out of range (a
            :class:`~dnnmask_xr.errors.SelectionError` and an ``IndexError``).
        """
        rows: Any
        cols: Any = self.items
        if isinstance(indices, int):
            rows = [indices]
        elif isinstance(indices, (slice, list)):
            rows = indices
        elif isinstance(indices, tuple) and len(indices) <= 2:
            rows = indices[0] if indices else slice(None)
            if isinstance(rows, int):
                rows = [rows]
            elif not isinstance(rows, (slice, list)):
                raise UsageError("stimulus rows are an int, a list of ints or a slice, not "
                                 f"{rows!r}")
            if len(indices) == 2:
                cols = self._columns(indices[1])
        else:
            raise UsageError("stimuli are indexed as stim[rows] or stim[rows, items], not "
                             f"stim[{indices!r}]")
        stim = Stimulus()
        stim.header = deepcopy(self.header)
        for item in cols:
            stim.set(item, _take_rows(self.get(item), rows, f"stimulus item {item!r}"))
        return stim

    def _columns(self, cols: Any) -> list[str]:
        items = self.items
        if isinstance(cols, list) and all(isinstance(col, int) for col in cols):
            for col in cols:
                if not -len(items) <= col < len(items):
                    raise IndexSelectionError(
                        f"item number {col} is not among the {len(items)} items "
                        f"({', '.join(items)}); numbers are 0..{len(items) - 1} or "
                        f"-{len(items)}..-1")
            return [items[col] for col in cols]
        if isinstance(cols, int):
            return self._columns([cols])
        if isinstance(cols, str):
            return [cols]
        if isinstance(cols, slice):
            return items[cols]
        if isinstance(cols, list) and all(isinstance(col, str) for col in cols):
            return cols
        raise UsageError("stimulus items are an int, a name, a list of either or a slice, "
                         f"not {cols!r}")


class Activation:
    """DNN activations: layer name to a 4-D ``(n_stim, n_chn, n_row, n_col)`` array.

    Parameters
    ----------
    layer
        A first layer's name, or None for no layer.
    value
        That layer's array.

    Raises
    ------
    UsageError
        If a layer is named without a value.
    """

    def __init__(self, layer: str | None = None, value: np.ndarray | None = None) -> None:
        self._activation: dict[str, np.ndarray] = {}
        if layer is not None:
            if value is None:
                raise UsageError(f"layer {layer!r} is given without a value")
            self.set(layer, value)

    def load(self, fname: str, dmask: Mask | None = None) -> None:
        """Load layers from an ``.act.h5`` file, replacing these.

        Parameters
        ----------
        fname
            The file.
        dmask
            The layers, channels, rows and columns to load (all if None): a
            :class:`Mask`, or DNNBrain's mask dict (as ``MaskFile.read``
            gives); numbers are 1-based, kept in the order given.

        Raises
        ------
        ActFileError
            If the file cannot be read as activations.
        SelectionError
            If the mask names a layer the file lacks or a number outside a
            layer.
        """
        dmask_dict = None if dmask is None else _mask_dict(dmask)
        self._activation = fio.ActivationFile(fname).read(dmask_dict)

    def save(self, fname: str) -> None:
        """Save the layers to an ``.act.h5`` file that DNNBrain reads, atomically."""
        fio.ActivationFile(fname).write(self._activation)

    def get(self, layer: str) -> np.ndarray:
        """Give a layer's array.

        Raises
        ------
        SelectionError
            If there is no such layer.
        """
        if layer not in self._activation:
            raise _missing("layer", layer, self.layers, "activation")
        return self._activation[layer]

    def set(self, layer: str, value: np.ndarray) -> None:
        """Set a layer's array, ``(n_stim, n_chn, n_row, n_col)``."""
        self._activation[layer] = value

    def delete(self, layer: str) -> None:
        """Delete a layer.

        Raises
        ------
        SelectionError
            If there is no such layer.
        """
        self.get(layer)
        self._activation.pop(layer)

    def concatenate(self, activations: Sequence[Activation]) -> Activation:
        """Give these layers with those of other batches of stimuli after them.

        Parameters
        ----------
        activations
            Activations with the same layers.

        Returns
        -------
        Activation
            Each layer concatenated along the stimuli, in this one's layer
            order.

        Raises
        ------
        UsageError
            If an element is not an :class:`Activation`.
        SelectionError
            If an element's layers differ from these, or a layer's units
            (its shape after the stimuli) from this one's.
        """
        for i, other in enumerate(activations, 1):
            if not isinstance(other, Activation):
                raise UsageError(f"element {i} of activations is a {type(other).__name__}, "
                                 "not an Activation")
            if sorted(self.layers) != sorted(other.layers):
                raise SelectionError(f"element {i}'s layers ({', '.join(other.layers)}) are "
                                     f"not these ({', '.join(self.layers)})")
            for layer in self.layers:
                mine, theirs = np.shape(self.get(layer))[1:], np.shape(other.get(layer))[1:]
                if mine != theirs:
                    raise SelectionError(f"element {i}'s layer {layer!r} has units of shape "
                                         f"{theirs}, these {mine}; batches of stimuli join "
                                         "along the stimuli only")
        activation = Activation()
        for layer in self.layers:
            parts = [self.get(layer), *(other.get(layer) for other in activations)]
            activation.set(layer, np.concatenate(parts))
        return activation

    @property
    def layers(self) -> list[str]:
        """The layer names, in order."""
        return list(self._activation.keys())

    def mask(self, dmask: Mask) -> Activation:
        """Give the layers, channels, rows and columns a mask keeps.

        Parameters
        ----------
        dmask
            The mask (a :class:`Mask`, or DNNBrain's mask dict); its
            layers, in its order.

        Returns
        -------
        Activation
            The parts kept, numbers in the order given.

        Raises
        ------
        SelectionError
            If the mask names a layer not here, or a number that is not a
            unit of the layer.
        """
        activation = Activation()
        for layer, axes in _mask_dict(dmask).items():
            activation.set(layer, dnn_mask(self.get(layer), axes.get("chn"), axes.get("row"),
                                           axes.get("col"), layer=layer))
        return activation

    def pool(self, method: str) -> Activation:
        """Pool each channel's rows and columns, keeping ``(n_stim, n_chn, 1, 1)``.

        Parameters
        ----------
        method
            ``'max'``, ``'mean'``, ``'median'``, ``'L1'`` or ``'L2'`` (see
            :func:`~dnnmask_xr.dnnbrain.dnn.base.array_statistic`).

        Raises
        ------
        SelectionError
            If a layer is not 4-D.
        """
        activation = Activation()
        for layer, data in self._activation.items():
            _shape4(layer, data)
            activation.set(layer, array_statistic(data, method, (2, 3), True))
        return activation

    def fe(self, method: str, n_feat: int | float, axis: str | None = None) -> Activation:
        """Extract features of each layer (see :func:`~dnnmask_xr.dnnbrain.dnn.base.dnn_fe`).

        Parameters
        ----------
        method
            ``'pca'``, ``'hist'`` or ``'psd'``.
        n_feat
            The number of features.
        axis
            None, ``'chn'`` or ``'row_col'``.
        """
        activation = Activation()
        for layer, data in self._activation.items():
            activation.set(layer, dnn_fe(data, method, n_feat, axis))
        return activation

    def convolve_hrf(self, onsets: Sequence[float], durations: Sequence[float], n_vol: int,
                     tr: float, ops: int = 100) -> Activation:
        """Convolve each unit with SPM's canonical HRF, sampled at the volumes.

        See :func:`~dnnmask_xr.dnnbrain.dnn.hrf.convolve_hrf`; the stimuli
        are the events.

        Returns
        -------
        Activation
            Each layer ``(n_vol, n_chn, n_row, n_col)``.
        """
        from dnnmask_xr.dnnbrain.dnn.hrf import convolve_hrf

        activation = Activation()
        for layer, data in self._activation.items():
            n_stim, n_chn, n_row, n_col = _shape4(layer, data)
            values = convolve_hrf(data.reshape(n_stim, -1), onsets, durations, n_vol, tr, ops)
            activation.set(layer, values.reshape(n_vol, n_chn, n_row, n_col))
        return activation

    def _check_arithmetic(self, other: object) -> Activation:
        if not isinstance(other, Activation):
            raise UsageError(f"an Activation takes + - * / with an Activation, not a "
                             f"{type(other).__name__}")
        if sorted(self.layers) != sorted(other.layers):
            raise SelectionError(f"the two activations' layers differ: "
                                 f"{', '.join(self.layers)} and {', '.join(other.layers)}")
        for layer in self.layers:
            if np.shape(self.get(layer)) != np.shape(other.get(layer)):
                raise SelectionError(f"layer {layer!r} has shape {np.shape(self.get(layer))} "
                                     f"and {np.shape(other.get(layer))} in the other")
        return other

    def _combine(self, other: object, operation: Any) -> Activation:
        other = self._check_arithmetic(other)
        activation = Activation()
        for layer in self.layers:
            activation.set(layer, operation(self.get(layer), other.get(layer)))
        return activation

    def __add__(self, other: Activation) -> Activation:
        return self._combine(other, np.add)

    def __sub__(self, other: Activation) -> Activation:
        return self._combine(other, np.subtract)

    def __mul__(self, other: Activation) -> Activation:
        return self._combine(other, np.multiply)

    def __truediv__(self, other: Activation) -> Activation:
        return self._combine(other, np.true_divide)

    def __getitem__(self, indices: Rows) -> Activation:
        """Give some stimuli of every layer: an int, a list of ints or a slice.

        Raises
        ------
        UsageError
            If ``indices`` is none of those.
        IndexSelectionError
            If a position is out of range for a layer (a
            :class:`~dnnmask_xr.errors.SelectionError` and an ``IndexError``).
        """
        if isinstance(indices, int):
            indices = [indices]
        elif not isinstance(indices, (list, slice)):
            raise UsageError(f"stimuli are chosen by an int, a list of ints or a slice, not "
                             f"{indices!r}")
        activation = Activation()
        for layer in self.layers:
            activation.set(layer, _take_rows(self.get(layer), indices, f"layer {layer!r}"))
        return activation


def _mask_dict(dmask: object) -> dict[str, Any]:
    """Give a :class:`Mask` (or DNNBrain's mask dict, as ``MaskFile.read`` gives) as that dict.

    Raises
    ------
    UsageError
        If ``dmask`` is neither.
    DnnMaskError
        If the dict is no mask (no layer, an axis not ``chn``, ``row`` or
        ``col``, a number that is no integer).
    """
    if isinstance(dmask, Mask):
        return {layer: dmask.get(layer) for layer in dmask.layers}
    if isinstance(dmask, Mapping):
        from dnnmask_xr.formats.dmask import DnnMask

        # checked and spelt out as MaskFile.read gives it: every axis, 'all' or numbers
        return dict(DnnMask(dmask).to_dnnbrain())
    raise UsageError(f"dmask is a Mask (or a dict of layer to {{'chn': ..., 'row': ..., "
                     f"'col': ...}}, as MaskFile.read gives), not a {type(dmask).__name__}")


def _shape4(layer: str, data: np.ndarray) -> tuple[int, int, int, int]:
    shape = np.shape(data)
    if len(shape) != 4:
        raise SelectionError(f"layer {layer!r} has shape {shape}; this takes 4-D activations "
                             "(n_stim, n_chn, n_row, n_col)")
    return shape  # type: ignore[return-value]


#: Mask.set's keywords and the axes of DNNBrain's mask dicts they set.
_SET_AXES = {"channels": "chn", "rows": "row", "columns": "col"}


class Mask:
    """A DNN mask: layers, each with the channels, rows and columns to keep.

    Parameters
    ----------
    layer
        A first layer's name, or None for an empty mask.
    channels, rows, columns
        That layer's 1-based numbers (a list), or ``'all'``.
    """

    def __init__(self, layer: str | None = None, channels: list[int] | str = "all",
                 rows: list[int] | str = "all", columns: list[int] | str = "all") -> None:
        self._dmask: dict[str, dict[str, list[int] | str]] = {}
        if layer is not None:
            self.set(layer, channels=channels, rows=rows, columns=columns)

    def load(self, fname: str) -> None:
        """Load a ``.dmask.csv`` file, replacing the whole mask."""
        self._dmask = fio.MaskFile(fname).read()

    def save(self, fname: str) -> None:
        """Save the mask as a ``.dmask.csv`` file, as DNNBrain writes it, atomically."""
        fio.MaskFile(fname).write(self._dmask)

    def get(self, layer: str) -> dict[str, list[int] | str]:
        """Give a layer's ``{'chn': ..., 'row': ..., 'col': ...}`` (the mask's own dict).

        Raises
        ------
        SelectionError
            If the mask has no such layer.
        """
        if layer not in self._dmask:
            raise _missing("layer", layer, self.layers, "mask")
        return self._dmask[layer]

    def set(self, layer: str, **kwargs: list[int] | str) -> None:
        """Set a layer's channels, rows or columns; a new layer starts with all of each.

        Parameters
        ----------
        layer
            The layer's name.
        **kwargs
            ``channels``, ``rows``, ``columns``: a list of 1-based numbers,
            or ``'all'``.

        Raises
        ------
        UsageError
            If a keyword is not one of those, or a value is neither a list
            nor ``'all'``.
        """
        for key, value in kwargs.items():
            if key not in _SET_AXES:
                raise UsageError(f"Mask.set takes channels=, rows= and columns=, not {key}=")
            if not (isinstance(value, list) or (isinstance(value, str) and value == "all")):
                raise UsageError(f"layer {layer!r}: {key} is 'all' or a list of 1-based "
                                 f"numbers, not {value!r}")
        axes = self._dmask.setdefault(layer, {"chn": "all", "row": "all", "col": "all"})
        for key, value in kwargs.items():
            axes[_SET_AXES[key]] = value

    def copy(self) -> Mask:
        """Give a deep copy."""
        dmask = Mask()
        dmask._dmask = deepcopy(self._dmask)
        return dmask

    def delete(self, layer: str) -> None:
        """Delete a layer.

        Raises
        ------
        SelectionError
            If the mask has no such layer.
        """
        self.get(layer)
        self._dmask.pop(layer)

    def clear(self) -> None:
        """Empty the mask."""
        self._dmask.clear()

    @property
    def layers(self) -> list[str]:
        """The layer names, in order."""
        return list(self._dmask.keys())


#: The shape of each RDM type's squares, for messages (fileio has the upper triangles').
_SQUARE_SHAPES = {"bRDM": "(n_item, n_item)", "dRDM": "(n_iter, n_item, n_item)"}


def _upper(n_item: int) -> np.ndarray:
    """Give the positions of an ``n_item`` square's upper triangle, as DNNBrain takes them."""
    return np.tri(n_item, k=-1, dtype=bool).T


class RDM:
    """Representation distance matrices, kept as their upper triangles.

    ``rdm_type`` is ``'bRDM'`` (of brain activations: one RDM per key) or
    ``'dRDM'`` (of DNN activations: ``n_iter`` RDMs per key); set it before
    :meth:`set`.
    """

    def __init__(self) -> None:
        self.rdm_type: str | None = None
        self._rdm_dict: dict[str, np.ndarray] = {}

    def load(self, fname: str) -> None:
        """Load an ``.rdm.h5`` file."""
        self.rdm_type, self._rdm_dict = fio.RdmFile(fname).read()

    def save(self, fname: str) -> None:
        """Save to an ``.rdm.h5`` file, atomically."""
        fio.RdmFile(fname).write(self.rdm_type, self._rdm_dict)  # type: ignore[arg-type]

    def _type(self) -> str:
        if not (isinstance(self.rdm_type, str) and self.rdm_type in fio.RDM_TYPES):
            raise UsageError(f"rdm_type is {self.rdm_type!r}; set it to 'bRDM' or 'dRDM' first")
        return self.rdm_type

    def get(self, key: str, triu: bool = False) -> np.ndarray:
        """Give an RDM: the upper triangle (``triu=True``) or the square, zeros elsewhere.

        Returns
        -------
        numpy.ndarray
            bRDM: ``((n_item^2-n_item)/2,)`` or ``(n_item, n_item)``; dRDM:
            ``(n_iter, (n_item^2-n_item)/2)`` or ``(n_iter, n_item, n_item)``.

        Raises
        ------
        SelectionError
            If there is no such key.
        DnnMaskError
            If its length is no upper triangle's (``(n_item^2-n_item)/2``).
        """
        if key not in self._rdm_dict:
            raise _missing("key", key, list(self._rdm_dict), "RDM")
        rdm_arr = self._rdm_dict[key]
        if triu:
            return rdm_arr
        rdm_type = self._type()
        # this key's own size: another key's (n_item's) may differ
        n_item = fio.rdm_items(np.shape(rdm_arr)[-1], f"{rdm_type} {key!r}")
        index = _upper(n_item)
        if rdm_type == "bRDM":
            square = np.zeros((n_item, n_item))
            square[index] = rdm_arr
        else:
            square = np.zeros((rdm_arr.shape[0], n_item, n_item))
            square[:, index] = rdm_arr
        return square

    def set(self, key: str, rdm_arr: np.ndarray, triu: bool = False) -> None:
        """Set an RDM, given as its upper triangle (``triu=True``) or as the square.

        Raises
        ------
        UsageError
            If ``rdm_type`` is not set, or the shape is not the type's.
        DnnMaskError
            If an upper triangle's length is no ``(n_item^2-n_item)/2``.
        """
        rdm_type = self._type()
        ndim = fio.RDM_TYPES[rdm_type] + (0 if triu else 1)
        shape = np.shape(rdm_arr)
        square = triu or shape[-1] == shape[-2] if len(shape) >= 2 else triu
        if len(shape) != ndim or not square:
            wanted = (fio.RDM_SHAPES if triu else _SQUARE_SHAPES)[rdm_type]
            raise UsageError(f"RDM {key!r} has shape {shape}; with triu={triu} a {rdm_type}'s "
                             f"shape is {wanted}")
        if triu:
            fio.rdm_items(shape[-1], f"{rdm_type} {key!r}")
            self._rdm_dict[key] = rdm_arr
        elif rdm_type == "bRDM":
            self._rdm_dict[key] = rdm_arr[_upper(shape[0])]
        else:
            self._rdm_dict[key] = rdm_arr[:, _upper(shape[1])]

    @property
    def keys(self) -> list[str]:
        """The keys, in order.

        Raises
        ------
        SelectionError
            If there is no RDM.
        """
        if not self._rdm_dict:
            raise SelectionError("the RDM dictionary is empty")
        return list(self._rdm_dict.keys())

    @property
    def n_item(self) -> int:
        """The number of items an RDM compares."""
        key = self.keys[0]
        return fio.rdm_items(np.shape(self._rdm_dict[key])[-1], f"{self._type()} {key!r}")
