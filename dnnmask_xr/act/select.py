"""From a request (a mask, or ``-layer``/``-chn``) to positions on each axis.

Numbers are 1-based and are turned into 0-based positions here and nowhere
else, after checking them against the layer they select from.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from dnnmask_xr.act.layout import NUMBERED_DIMS, axis_names, is_text
from dnnmask_xr.errors import SelectionError, UsageError
from dnnmask_xr.formats.dmask import DnnMask, LayerMask

if TYPE_CHECKING:
    pass

#: How mask numbers are read: ``"label"``, looked up among the labels of
#: the ``channel``/``row``/``column`` coordinates (like ``.sel``), or
#: ``"ordinal"``, number *n* as the *n*-th unit stored, counted from 1
#: (DNNBrain's reading). The two agree on every file that no mask has cut yet.
NumberMeaning = Literal["label", "ordinal"]
MEANINGS: tuple[str, ...] = ("label", "ordinal")


def check_meaning(by: object) -> NumberMeaning:
    """Check how mask numbers are to be read; the old spelling ``"position"`` still works.

    Raises
    ------
    UsageError
        If ``by`` is neither ``"label"`` nor ``"ordinal"``.
    """
    if by == "position":
        warnings.warn('by="position" is now spelled by="ordinal" (1-based, as stored), so '
                      'that "position" keeps the 0-based meaning of .isel', DeprecationWarning,
                      stacklevel=3)
        return "ordinal"
    if by not in MEANINGS:
        raise UsageError(f"by={by!r} is not a way to read mask numbers; use 'label' (the "
                         "coordinates' labels, like .sel) or 'ordinal' (the n-th unit stored, "
                         "from 1, as DNNBrain reads them)")
    return by  # type: ignore[return-value]


def mask_from_flags(layers: Sequence[str], channels: Sequence[int] | None = None) -> DnnMask:
    """Build a mask from ``dnn_mask``'s ``-layer`` and ``-chn`` flags, by its rules.

    Parameters
    ----------
    layers
        Layer names, in output order.
    channels
        Channel numbers (1-based), or ``None`` for whole layers.

    Returns
    -------
    DnnMask
        One layer with those channels; several layers whole; or several
        layers with one channel each, paired in order.

    Raises
    ------
    UsageError
        If no layer is given, a layer is named twice, or several layers come
        with a number of channels other than one per layer.
    """
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise UsageError(f"layers {layers!r} are not a list of layer names")
    if channels is not None and (isinstance(channels, str) or not isinstance(channels, Sequence)):
        raise UsageError(f"channels {channels!r} are not a list of channel numbers")
    if not layers:
        raise UsageError("no layer given; name at least one layer with -layer")
    seen = set()
    for layer in layers:
        if layer in seen:
            raise UsageError(f"layer {layer!r} is named twice in -layer; name each layer once")
        seen.add(layer)
    if channels is None:
        return DnnMask({layer: {} for layer in layers})
    if len(layers) == 1:
        return DnnMask({layers[0]: {"channel": channels}})
    if len(channels) != len(layers):
        raise UsageError(
            f"-chn gives {len(channels)} channel number(s) for {len(layers)} layers; give "
            "exactly one channel per layer (paired in order), or a single -layer with any "
            "number of channels"
        )
    pairs = zip(layers, channels, strict=True)
    return DnnMask({layer: {"channel": [chn]} for layer, chn in pairs})


def layer_positions(
    layer: str,
    mask: LayerMask,
    labels: Mapping[str, np.ndarray],
    by: NumberMeaning = "label",
    unit_dims: tuple[str, ...] = NUMBERED_DIMS,
) -> dict[str, np.ndarray]:
    """Turn one layer's mask into 0-based positions, checking every number.

    A mask's ``channel``, ``row`` and ``column`` numbers (``chn``, ``row``,
    ``col`` in a ``.dmask.csv``, ``-chn`` of ``dnn_mask``) address the
    layer's first, second and third unit dim, whatever their names, as
    they are stored.

    Parameters
    ----------
    layer
        The layer's name, for errors.
    mask
        The numbers of interest.
    labels
        The layer's current labels along the stored ``channel``, ``row``
        and ``column`` axes.
    by
        ``"label"`` to look numbers up among the labels, ``"ordinal"`` to
        take number *n* as the *n*-th unit of the layer as stored.
    unit_dims
        The names of the layer's unit dims, which errors use; a mask may
        list only as many axes as the layer has unit dims.

    Returns
    -------
    dict
        Axis name to int64 positions, for the axes the mask lists, in the
        order of the numbers given.

    Raises
    ------
    SelectionError
        If a number is not a unit of the layer; the message names the layer,
        the axis, the number and the valid numbers.
    """
    by = check_meaning(by)
    names = axis_names(unit_dims)
    positions = {}
    for axis, numbers in mask.numbers.items():
        wanted = np.asarray(numbers, dtype=np.int64)
        dim = names[axis]
        if NUMBERED_DIMS.index(axis) >= len(unit_dims):
            raise SelectionError(
                f"layer {layer!r} has {len(unit_dims)} unit dim(s) "
                f"({', '.join(unit_dims)}), but the mask gives {_LINES[axis]} numbers, which "
                f"address unit dim {NUMBERED_DIMS.index(axis) + 1}; a mask's chn, row and col "
                "address a layer's first, second and third unit dim"
            )
        axis_labels = np.asarray(labels[axis])
        if by == "ordinal":
            found = wanted - 1
            bad = (wanted < 1) | (wanted > axis_labels.size)
            if bad.any():
                raise SelectionError(_out_of_range(layer, axis, int(wanted[bad][0]), wanted,
                                                   axis_labels, dim))
        else:
            if axis_labels.dtype.kind not in "iuf":
                # np.unique and searchsorted of text (object) raise numpy's TypeError
                what = f"text ({axis_labels.dtype})" if is_text(axis_labels) else (
                    str(axis_labels.dtype))
                raise SelectionError(
                    f"layer {layer!r}: its {dim} labels are {what}, not numbers, so mask "
                    f"numbers cannot be looked up among them; select the n-th {dim} stored "
                    f'with by="ordinal", or by label with .sel({dim}=[...])')
            found, missing, count = _look_up(axis_labels, wanted)
            if missing.any():
                raise SelectionError(
                    f"{dim} {int(wanted[missing][0])} is not in layer {layer!r} "
                    f"(valid: {describe_numbers(axis_labels)}); numbers are 1-based"
                    + _addressed(axis, dim)
                )
            if (count > 1).any():
                # the first of them alone would be taken without a word
                number = wanted[count > 1][0]
                places = np.flatnonzero(axis_labels == number) + 1
                raise SelectionError(
                    f"{dim} {int(number)} labels more than one {dim} of layer {layer!r} (the "
                    f"{dim}s at positions {describe_numbers(places)}), so a number cannot tell "
                    f'them apart; select by position with by="ordinal"' + _addressed(axis, dim))
        positions[axis] = found.astype(np.int64)
    return positions


#: The ``.dmask.csv`` line (and ``dnn_mask`` flag) of each stored axis.
_LINES = {"channel": "chn", "row": "row", "column": "col"}


def _addressed(axis: str, dim: str) -> str:
    """Say which mask line reached a unit dim not named like the stored axis."""
    return "" if axis == dim else f" (the mask's {_LINES[axis]} numbers address {dim})"


def _look_up(labels: np.ndarray,
             wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find each wanted label's first position; flag those not found; count each one."""
    # labels repeat after a mask that repeated a number, so no pandas Index
    unique, first, counts = np.unique(labels, return_index=True, return_counts=True)
    if unique.size == 0:
        return np.zeros_like(wanted), np.ones(wanted.shape, dtype=bool), np.zeros_like(wanted)
    at = np.searchsorted(unique, wanted).clip(max=unique.size - 1)
    return first[at], unique[at] != wanted, counts[at]


def _span(size: int) -> str:
    return f"1..{size}" if size else "none, the axis is empty"


def _out_of_range(layer: str, axis: str, number: int, wanted: np.ndarray,
                  labels: np.ndarray, dim: str, most: int = 8) -> str:
    """Say that a number is past an axis; on an axis a mask has cut, how to reach its labels."""
    message = (f"{dim} number {number} is out of range for layer {layer!r} "
               f"(valid: {_span(labels.size)}); numbers are 1-based")
    if not labels.size or np.array_equal(labels, np.arange(1, labels.size + 1)):
        return message + _addressed(axis, dim)  # the labels are the positions: no mask cut them
    message += (f" positions in the file (the n-th {dim} stored, as DNNBrain reads them), "
                f"not labels, and this layer's {dim}s are labelled {describe_numbers(labels)}")
    found, missing, _ = _look_up(labels, wanted)
    chosen = "[...]"
    if not missing.any():  # every number asked for is a label: say where each one is
        named = dim if wanted.size == 1 else f"{dim}s"
        if wanted.size > most:
            message += (f": {named} {describe_numbers(wanted)} are positions "
                        f"{describe_numbers(found + 1)}")
        else:
            places = [str(int(n) + 1) for n in found]
            chosen = "[" + ", ".join(str(int(n)) for n in wanted) + "]"
            line = _LINES[axis]
            flag = (f"dnn_mask -layer {layer} -chn {' '.join(places)}; "
                    if axis == "channel" else "")
            at = "is at position" if wanted.size == 1 else "are at positions"
            message += (f": {named} {chosen[1:-1]} {at} {', '.join(places)} "
                        f"({flag}{','.join(places)} on the {line} line of a .dmask.csv)")
    return (message + '; in Python, by="label" selects by label (the default of '
            f'Activations.mask; mask_file(..., by="label")), as does .sel({dim}={chosen})')


def describe_numbers(labels: np.ndarray, most: int = 8) -> str:
    """Write labels briefly: ``1..13`` for a run of integers, else the first few."""
    labels = np.asarray(labels)
    if labels.size == 1:
        return str(labels.flat[0])
    if labels.size and labels.dtype.kind in "iu" and np.array_equal(
            labels, np.arange(labels[0], labels[0] + labels.size)):
        return f"{labels[0]}..{labels[-1]}"
    shown = ", ".join(str(label) for label in labels[:most])
    return shown + (f", ... ({labels.size} in all)" if labels.size > most else "") or "none"


def missing_layer(name: object, where: str, layers: Iterable[str]) -> SelectionError:
    """Give the one error for a layer asked for that is not there.

    Parameters
    ----------
    name
        The layer asked for.
    where
        The file (quoted) or ``"the activations"``.
    layers
        The layers that are there, in order.
    """
    return SelectionError(f"layer {name!r} is not in {where} "
                          f"(layers: {', '.join(layers) or 'none'})")
