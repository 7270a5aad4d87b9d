"""Read and write ``.dmask.csv`` files: which units of which layers to keep.

A ``.dmask.csv`` names layers and, per layer, the 1-based numbers of interest
along some of its axes::

    conv5=chn,row,col
    1,2,3
    4,5
    6,7,8
    fc3=chn
    1,2,3

The model speaks the user's words for axes (``channel``, ``row``,
``column``); the file's abbreviations (``chn``, ``row``, ``col``) appear only
in this module. Files are written exactly as DNNBrain writes them, and read
strictly: where DNNBrain would silently misread a file, this module reports
the file, the line and what would be valid.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType

import numpy as np

from dnnmask_xr._args import mapping_arg
from dnnmask_xr._atomic import atomic_path
from dnnmask_xr.errors import DnnMaskError, FormatError
from dnnmask_xr.formats._kind import parse_as
from dnnmask_xr.formats._lines import integer_value, read_utf8, text_lines

__all__ = [
    "AXES",
    "DnnMask",
    "LayerMask",
    "format_dmask",
    "parse_dmask",
    "read_dmask",
    "write_dmask",
]

AXES: tuple[str, ...] = ("channel", "row", "column")

_FILE_AXIS = {"channel": "chn", "row": "row", "column": "col"}
#: The axis names of DNNBrain's files and dicts (``chn``, ``row``, ``col``) to ours.
DNNBRAIN_AXES = {short: long for long, short in _FILE_AXIS.items()}
_FILE_AXES_TEXT = ", ".join(repr(short) for short in _FILE_AXIS.values())
_AXES_TEXT = ", ".join(repr(name) for name in AXES) + " (or DNNBrain's 'chn', 'col')"
_LAYER_LINE_EXAMPLE = "a layer line looks like 'conv5=chn,row,col'"
#: DNNBrain's word for an axis kept whole, in its mask dicts.
_ALL = "all"
# Positions are int64 when the file is read; a larger number fits no layer.
_LARGEST = int(np.iinfo(np.int64).max)


class LayerMask:
    """Numbers of interest of one layer, per axis, in the order listed.

    Parameters
    ----------
    numbers
        Axis name (one of :data:`AXES`) to the 1-based numbers of interest
        along it, kept in the order given, repeats included. Axes keep the
        order given too; an axis left out means all of it. Signs and ranges
        are not checked here: that needs the activation file. DNNBrain's
        names ``chn`` and ``col`` (as in its ``{'conv5': {'chn': [1, 2]}}``)
        are taken for ``channel`` and ``column``, and its ``'all'`` (or
        ``None``, which older DNNBrain read the same way) for an axis kept
        whole: the dicts DNNBrain's ``MaskFile.read`` and ``Mask.get``
        return work unchanged.

    Raises
    ------
    DnnMaskError
        If an axis is unknown or given twice (``chn`` and ``channel``), a
        number is not an integer, an axis has no number, or its numbers come
        in a set or a mapping, which keep no order.
    """

    __slots__ = ("_numbers",)

    def __init__(self, numbers: Mapping[str, Iterable[int]] | None = None) -> None:
        numbers = mapping_arg(numbers, "layer mask", "{'channel': [1, 2, 3]}")
        checked: dict[str, tuple[int, ...]] = {}
        given_as: dict[str, str] = {}
        for name, values in numbers.items():
            # the one place DNNBrain's abbreviations become the model's names
            axis = DNNBRAIN_AXES.get(name, name)
            if axis not in AXES:
                raise DnnMaskError(f"unknown axis {name!r}; valid axes are {_AXES_TEXT}")
            if axis in given_as:
                raise DnnMaskError(
                    f"axis {axis!r} is given twice, as {given_as[axis]!r} and {name!r}; "
                    "give its numbers once, under one name"
                )
            given_as[axis] = name
            if values is None or (isinstance(values, str) and values == _ALL):
                continue  # DNNBrain's way to keep an axis whole
            checked[axis] = _check_numbers(axis, values)
        self._numbers = MappingProxyType(checked)

    def to_dnnbrain(self) -> dict[str, list[int] | str]:
        """Give the mask as DNNBrain's dicts hold a layer's: ``{'chn': [...], 'row': 'all', ...}``.

        Every axis is there, in DNNBrain's order (``chn``, ``row``, ``col``),
        ``'all'`` for one kept whole, as ``MaskFile.read`` and ``Mask.get``
        give it.
        """
        return {_FILE_AXIS[axis]: list(self._numbers[axis]) if axis in self._numbers else _ALL
                for axis in AXES}

    @property
    def numbers(self) -> Mapping[str, tuple[int, ...]]:
        """Read-only axis name to numbers, in the order listed."""
        return self._numbers

    @property
    def axes(self) -> tuple[str, ...]:
        """The listed axes, in order; the others are kept whole."""
        return tuple(self._numbers)

    @property
    def channel(self) -> tuple[int, ...] | None:
        """Channel numbers of interest, or ``None`` for all channels."""
        return self._numbers.get("channel")

    @property
    def row(self) -> tuple[int, ...] | None:
        """Row numbers of interest, or ``None`` for all rows."""
        return self._numbers.get("row")

    @property
    def column(self) -> tuple[int, ...] | None:
        """Column numbers of interest, or ``None`` for all columns."""
        return self._numbers.get("column")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerMask):
            return NotImplemented
        # Axis order matters: it is the order of the lines in the file.
        return tuple(self._numbers.items()) == tuple(other._numbers.items())

    def __hash__(self) -> int:
        return hash(tuple(self._numbers.items()))

    def __repr__(self) -> str:
        return f"LayerMask({dict(self._numbers)!r})"


def _check_numbers(axis: str, values: Iterable[int]) -> tuple[int, ...]:
    # A str is iterable, but its characters are never what the caller meant.
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise DnnMaskError(
            f"{axis} numbers {values!r} are not a list of integers; give e.g. [1, 2, 3], "
            f"or {_ALL!r} for every {axis}"
        )
    if isinstance(values, (AbstractSet, Mapping)):
        # a set's order is its hash order: {200, 3, 17} would keep 200, 17, 3
        raise DnnMaskError(
            f"{axis} numbers {values!r} are a {type(values).__name__}, not a list; give them "
            "as a list, in the order to keep, e.g. [200, 3, 17] (a set keeps no order)"
        )
    checked = []
    for value in values:
        # bool is an int subclass, but True as a channel number is a mistake.
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise DnnMaskError(
                f"{axis} number {value!r} is a {type(value).__name__}, not an integer; "
                "numbers are 1-based integers"
            )
        if not -_LARGEST <= int(value) <= _LARGEST:
            raise DnnMaskError(
                f"{axis} number {_shorten(str(int(value)))} is out of range for any layer; "
                f"numbers are 1-based and at most {_LARGEST}"
            )
        checked.append(int(value))
    if not checked:
        raise DnnMaskError(
            f"no {axis} number given; list at least one, or leave the axis out to keep all"
        )
    return tuple(checked)


class DnnMask(Mapping[str, LayerMask]):
    """Layers to keep, in order, each with its :class:`LayerMask`.

    Parameters
    ----------
    layers
        Layer name to its mask (a :class:`LayerMask` or a mapping accepted by
        it, such as DNNBrain's ``{'chn': [1, 2], 'row': 'all', 'col': [4]}``).
        Layer order is kept; layers not named are dropped by a mask.
    source
        The ``.dmask.csv`` file the mask was read from, if any (set by
        :func:`read_dmask`). Not part of the mask's value: two masks with the
        same layers are equal wherever they came from. A write refuses to
        replace this file.

    Raises
    ------
    DnnMaskError
        If a layer name cannot be written to a ``.dmask.csv`` line, or a
        layer mask is invalid.
    """

    __slots__ = ("_layers", "_source")

    def __init__(
        self,
        layers: Mapping[str, LayerMask | Mapping[str, Iterable[int]]] | None = None,
        *,
        source: str | os.PathLike[str] | None = None,
    ) -> None:
        layers = mapping_arg(layers, "mask", "{'conv5': {'channel': [1, 2, 3]}}")
        checked: dict[str, LayerMask] = {}
        for name, mask in layers.items():
            _check_layer_name(name)
            try:
                checked[name] = mask if isinstance(mask, LayerMask) else LayerMask(mask)
            except DnnMaskError as error:
                # a mask of many layers: say which one is at fault
                raise type(error)(f"layer {name!r}: {error}") from None
        self._layers = checked
        # absolute, so that it still names the file after a chdir
        self._source = None if source is None else os.path.abspath(source)

    @property
    def source(self) -> str | None:
        """The absolute path of the file the mask was read from, or None."""
        return self._source

    def __getitem__(self, name: str) -> LayerMask:
        return self._layers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DnnMask):
            return NotImplemented
        # Layer order matters: it is the order of the layers in the output.
        return list(self.items()) == list(other.items())

    def __hash__(self) -> int:
        return hash(tuple(self._layers.items()))

    def __repr__(self) -> str:
        return f"DnnMask({self._layers!r})"

    def to_dnnbrain(self) -> dict[str, dict[str, list[int] | str]]:
        """Give the mask as DNNBrain's ``MaskFile.read`` returns it.

        Returns
        -------
        dict
            Layer name to ``{'chn': [...] or 'all', 'row': ..., 'col': ...}``,
            in the mask's layer order. DNNBrain's dict has no place for the
            order of the axis lines: ``DnnMask(mask.to_dnnbrain())`` lists
            the axes as ``chn``, ``row``, ``col``.
        """
        return {name: mask.to_dnnbrain() for name, mask in self._layers.items()}


def _check_layer_name(name: object) -> None:
    problem = None
    if not isinstance(name, str):
        problem = "is not a string"
    elif not name:
        problem = "is empty"
    elif "=" in name:
        problem = "contains '='"
    elif name.splitlines() != [name]:
        problem = "contains a line break"
    elif name != name.strip():
        problem = "starts or ends with whitespace"
    elif "\0" in name:
        # reading refuses it (no text file holds one), and HDF5 names cannot hold it
        problem = "contains a NUL character"
    elif name.startswith("#"):
        # its layer line would start with '#', which reading refuses
        problem = "starts with '#'"
    elif name.startswith("\ufeff"):
        # first in a file, reading takes it for a byte order mark and drops it
        problem = "starts with a byte order mark (U+FEFF)"
    if problem:
        raise DnnMaskError(
            f"layer name {name!r} {problem}; a layer name is non-empty text without '=', "
            "line breaks, surrounding whitespace or a leading '#' or byte order mark, e.g. "
            "'conv5' or 'features.3'"
        )


def parse_dmask(text: str, path: str | os.PathLike[str] | None = None) -> DnnMask:
    r"""Parse the text of a ``.dmask.csv`` file.

    Blank lines, a leading byte order mark, ``\r\n`` or ``\r`` line ends,
    whitespace around items and a trailing comma are tolerated; anything
    else that DNNBrain would misread is an error.

    Parameters
    ----------
    text
        The file's content.
    path
        The file the text came from, named in errors.

    Returns
    -------
    DnnMask
        The layers in file order, axes in the order listed.

    Raises
    ------
    FormatError
        If the text breaks the format; the error gives the line number.
    """
    lines = list(text_lines(text, path, ".dmask.csv"))
    layers: dict[str, LayerMask] = {}
    named_on: dict[str, int] = {}
    previous: tuple[str, list[str]] | None = None
    index = 0
    while index < len(lines):
        number, line = lines[index]
        if "=" not in line:
            raise FormatError(_stray_line_message(line, previous), path, number)
        name, file_axes = _parse_layer_line(line, path, number)
        if name in named_on:
            raise FormatError(
                f"layer {name!r} is named twice, on lines {named_on[name]} and {number}; "
                "name each layer once",
                path,
                number,
            )
        numbers_lines = lines[index + 1 : index + 1 + len(file_axes)]
        found = next(
            (i for i, (_, text_) in enumerate(numbers_lines) if "=" in text_), len(numbers_lines)
        )
        if found < len(file_axes):
            at = numbers_lines[found][0] if found < len(numbers_lines) else number
            raise FormatError(_missing_numbers_message(name, file_axes, found), path, at)
        layers[name] = LayerMask(
            {
                DNNBRAIN_AXES[axis]: _parse_numbers(text_, axis, name, path, at)
                for axis, (at, text_) in zip(file_axes, numbers_lines, strict=True)
            }
        )
        named_on[name] = number
        previous = (name, file_axes)
        index += 1 + len(file_axes)
    if not layers:
        raise FormatError(f"no layer found; {_LAYER_LINE_EXAMPLE}", path)
    return DnnMask(layers)


def _parse_layer_line(
    line: str, path: str | os.PathLike[str] | None, number: int
) -> tuple[str, list[str]]:
    if line.count("=") > 1:
        raise FormatError(
            f"layer line {line!r} has {line.count('=')} '='; a layer line has exactly one, "
            "e.g. 'conv5=chn,row,col'",
            path,
            number,
        )
    name, _, axes_text = line.partition("=")
    name = name.strip()
    if not name:
        raise FormatError(
            f"layer line {line!r} has no layer name before '='; {_LAYER_LINE_EXAMPLE}",
            path,
            number,
        )
    try:
        # what is left to check after the line's own checks: a byte order mark
        _check_layer_name(name)
    except DnnMaskError as error:
        raise FormatError(str(error), path, number) from None
    # DNNBrain drops empty axis items too, so 'conv5=chn,' means 'conv5=chn'.
    file_axes = [axis.strip() for axis in axes_text.split(",") if axis.strip()]
    for i, axis in enumerate(file_axes):
        if axis not in DNNBRAIN_AXES:
            raise FormatError(
                f"unknown axis {axis!r} in layer {name!r}; valid axes are {_FILE_AXES_TEXT}",
                path,
                number,
            )
        if axis in file_axes[:i]:
            raise FormatError(
                f"axis {axis!r} is listed twice in layer {name!r}; list each axis at most once",
                path,
                number,
            )
    return name, file_axes


def _parse_numbers(
    line: str, axis: str, layer: str, path: str | os.PathLike[str] | None, number: int
) -> tuple[int, ...]:
    items = [item.strip() for item in line.split(",")]
    if len(items) > 1 and not items[-1]:
        items.pop()
    where = f"{axis} numbers of layer {layer!r}"
    values = []
    for item in items:
        if not item:
            raise FormatError(
                f"empty item in {_shorten(line)!r} ({where}); separate numbers with single "
                "commas, e.g. '1,2,3'",
                path,
                number,
            )
        value = integer_value(item)
        if value is None:
            raise FormatError(
                f"{_shorten(item)!r} in {_shorten(line)!r} is not an integer ({where}); "
                "numbers are 1-based integers, e.g. '1,2,3'",
                path,
                number,
            )
        if abs(value) > _LARGEST:
            raise FormatError(
                f"{_shorten(item)!r} in {_shorten(line)!r} is out of range for any layer "
                f"({where}); numbers are 1-based and at most {_LARGEST}",
                path,
                number,
            )
        values.append(value)
    return tuple(values)


def _shorten(text: str, most: int = 40) -> str:
    return text if len(text) <= most else f"{text[:most - 3]}... ({len(text)} characters)"


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _stray_line_message(line: str, previous: tuple[str, list[str]] | None) -> str:
    if previous is None:
        return f"{line!r} is not a layer line and no layer comes before it; {_LAYER_LINE_EXAMPLE}"
    name, file_axes = previous
    if file_axes:
        listed = f"lists only {_count(len(file_axes), 'axis', 'axes')} ({', '.join(file_axes)})"
    else:
        listed = "lists no axes"
    return (
        f"{line!r} is not a layer line and layer {name!r} {listed}; "
        f"{_LAYER_LINE_EXAMPLE}, followed by one line of numbers per listed axis"
    )


def _missing_numbers_message(name: str, file_axes: list[str], found: int) -> str:
    listed = _count(len(file_axes), "axis", "axes")
    if found == 0:
        follows = "no line of numbers follows"
    else:
        follows = f"only {_count(found, 'line of numbers follows', 'lines of numbers follow')}"
    return (
        f"layer {name!r} lists {listed} ({', '.join(file_axes)}) but {follows}; "
        "give one line of numbers per listed axis, in the order listed"
    )


def format_dmask(mask: DnnMask) -> str:
    r"""Write a mask as ``.dmask.csv`` text, exactly as DNNBrain writes it.

    Parameters
    ----------
    mask
        The mask; a plain mapping is accepted and checked as by
        :class:`DnnMask`.

    Returns
    -------
    str
        The file's content, ``\n`` line ends, no byte order mark.

    Raises
    ------
    DnnMaskError
        If the mask has no layer: such a file could not be read back.
    """
    if not isinstance(mask, DnnMask):
        mask = DnnMask(mask)
    if not mask:
        raise DnnMaskError("mask has no layer; name at least one layer to keep")
    parts = []
    for name, layer in mask.items():
        parts.append(f"{name}={','.join(_FILE_AXIS[axis] for axis in layer.axes)}\n")
        parts.extend(",".join(map(str, numbers)) + "\n" for numbers in layer.numbers.values())
    return "".join(parts)


def read_dmask(path: str | os.PathLike[str]) -> DnnMask:
    """Read a ``.dmask.csv`` file.

    Parameters
    ----------
    path
        The file, UTF-8 text (a leading byte order mark is ignored).

    Returns
    -------
    DnnMask
        The layers in file order; its ``source`` is the file.

    Raises
    ------
    FormatError
        If the path is missing, unreadable or not a regular file of at most
        256 MiB, or the file is not UTF-8 or breaks the format; the error
        names the file (and line). A file that breaks the format but is an
        HDF5 file or looks like a ``.stim.csv`` is said to be one.
    """
    text = read_utf8(path, ".dmask.csv")
    mask = parse_as(text, path, ".dmask.csv", parse_dmask)
    return DnnMask(mask, source=path)


def write_dmask(mask: DnnMask, path: str | os.PathLike[str]) -> None:
    """Write a ``.dmask.csv`` file that DNNBrain reads unchanged.

    The file appears whole or not at all: it is written beside ``path`` and
    then renamed.

    Parameters
    ----------
    mask
        The mask to write.
    path
        The file to create or replace.

    Raises
    ------
    DnnMaskError
        If the mask has no layer.
    """
    # Format first, so an invalid mask leaves no file and no temporary behind.
    data = format_dmask(mask).encode("utf-8")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
