"""The ``.stim.csv`` stimulus table: parse, format, read and write.

A ``.stim.csv`` file is a header of ``key=value`` lines (``type=`` and
``path=`` required), a ``data=`` line naming the fields, then one
comma-separated row per stimulus. A field's type follows from its name, as
DNNBrain types it: ``stimID`` is a string, or an integer frame number for
``type=video``; ``label`` is an integer; ``condition`` is a string; every
other field is a float, unless the header's ``text=`` key lists it (a
comma-separated list of fields, this package's addition; DNNBrain keeps it as
a free header key): then it is a string too. This module knows nothing of
xarray.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from dnnmask_xr._atomic import atomic_path
from dnnmask_xr.errors import DnnMaskError, FormatError, UsageError
from dnnmask_xr.formats._kind import parse_as
from dnnmask_xr.formats._lines import integer_value, read_utf8, text_lines

__all__ = ["STIM_TYPES", "Stimuli", "format_stim", "parse_stim", "read_stim", "write_stim"]

STIM_TYPES = ("image", "video", "video_clip")

# Every character str.splitlines() breaks at: DNNBrain reads with
# splitlines(), so any of them inside a value would split its line there.
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_BREAK = re.compile(f"[{re.escape(_LINE_BREAKS)}]")
_INT64 = np.iinfo(np.int64)
#: The largest integer every smaller one of which a float64 holds exactly (2**53).
_EXACT_IN_FLOAT64 = 2**53
_EXAMPLE_DATA = "data=stimID,label"
#: The header key listing the fields other than stimID and condition that hold text.
TEXT_KEY = "text"
#: Fields whose type DNNBrain fixes by name.
_TYPED_BY_NAME = ("stimID", "label", "condition")


@dataclass(frozen=True, eq=False)
class Stimuli:
    """A stimulus table: the header and one row per stimulus.

    Building one checks it and normalises the column types with the rules
    the parser follows, so a table built in code equals the same table read
    from a file.

    Parameters
    ----------
    header
        ``type`` (one of :data:`STIM_TYPES`) and ``path`` are required; other
        keys are free, but for ``text``: the comma-separated names of the
        other fields that hold text (``text="object_name,image_file_name"``).
        Stored read-only with ``type`` and ``path`` first, the other keys in
        the order given; ``text`` lists the text fields in table order, and
        is left out when there is none.
    table
        One column per field, in ``data=`` order; ``stimID`` is required.
        Stored as a new frame with a ``RangeIndex`` (row *i* is stimulus *i*)
        and these dtypes: ``stimID`` ``int64`` for ``video``, else ``str``;
        ``label`` ``int64``; ``condition`` and the fields ``text`` lists
        ``str``; any other field ``float64``. Integer fields accept integers, integral floats and
        strings such as ``'+3'`` or ``'3.0'`` (as a file's values); float
        fields accept numbers and whatever :func:`float` accepts (missing
        values become NaN); string fields accept strings and integers.
    source
        The ``.stim.csv`` file the table was read from, if any (set by
        :func:`read_stim`; stored as an absolute path). Not part of the
        table's value (:meth:`equals` ignores it). A write refuses to
        replace this file.

    Raises
    ------
    DnnMaskError
        If a required key or field is missing, a name or value could not be
        written or read back, or a value does not convert to its field's type.
    """

    header: Mapping[str, str]
    table: pd.DataFrame
    source: str | None = dataclasses.field(default=None, kw_only=True, repr=False)

    def __post_init__(self) -> None:
        header = _normalise_header(self.header)
        text = _text_fields(header, self.table.columns if isinstance(self.table, pd.DataFrame)
                            else [])
        table = _normalise_table(self.table, header["type"], text)
        header.pop(TEXT_KEY, None)
        if text:
            header[TEXT_KEY] = ",".join(name for name in table.columns if name in text)
        # Frozen dataclass: normalised copies replace what was passed in.
        object.__setattr__(self, "header", MappingProxyType(header))
        object.__setattr__(self, "table", table)
        if self.source is not None:
            # absolute, so that it still names the file after a chdir
            object.__setattr__(self, "source", os.path.abspath(self.source))

    @property
    def type(self) -> str:
        """The stimulus type: ``'image'``, ``'video'`` or ``'video_clip'``."""
        return self.header["type"]

    @property
    def path(self) -> str:
        """The folder holding the images, or the video file."""
        return self.header["path"]

    @property
    def stim_ids(self) -> np.ndarray:
        """The ``stimID`` values, one per stimulus (int64 for video, else object)."""
        return self.table["stimID"].to_numpy()

    def __len__(self) -> int:
        return len(self.table)

    def equals(self, other: object) -> bool:
        """Whether ``other`` holds the same header and table.

        Floats compare by value with NaN equal to NaN (``DataFrame.equals``),
        so ``0.0`` equals ``-0.0``.
        """
        return (
            isinstance(other, Stimuli)
            and dict(self.header) == dict(other.header)
            and self.table.equals(other.table)
        )


#: A stimulus table as the readers take it: a ``.stim.csv`` path, a table, or None.
StimArg = str | os.PathLike[str] | Stimuli | None


def parse_stim(text: str, path: str | os.PathLike[str] | None = None) -> Stimuli:
    r"""Parse the text of a ``.stim.csv`` file.

    Lines end with ``\n``, ``\r\n`` or ``\r``; a leading byte order mark,
    blank lines and whitespace around keys, values and field names are
    ignored.

    Parameters
    ----------
    text
        The whole file.
    path
        The file the text came from, named in errors.

    Returns
    -------
    Stimuli
        The header and the typed table.

    Raises
    ------
    FormatError
        If the text breaks the format; the error gives the line number.
    """
    header: dict[str, str] = {}
    key_lines: dict[str, int] = {}
    fields: list[str] | None = None
    converters: list[Callable[[str], Any]] = []
    columns: list[list[Any]] = []
    data_line = 0
    for number, line in text_lines(text, path, ".stim.csv"):
        if fields is not None:
            values = [value.strip() for value in line.split(",")]
            if len(values) != len(fields):
                raise FormatError(
                    f"row {line!r} has {len(values)} value(s) but the data= line "
                    f"(line {data_line}) names {len(fields)} field(s): {','.join(fields)}",
                    path,
                    number,
                )
            for field, convert, column, value in zip(
                fields, converters, columns, values, strict=True
            ):
                try:
                    column.append(convert(value))
                except ValueError as error:
                    raise FormatError(f"field {field!r}: {error}", path, number) from None
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep:
            raise FormatError(
                f"header line {line!r} has no '='; before the data= line every "
                "line must be key=value (is the data= line missing?)",
                path,
                number,
            )
        if key == "data":
            fields = _parse_fields(value, path, number)
            stim_type = _header_type(header, path, number)
            try:
                text = _text_fields(header, fields)
            except DnnMaskError as error:
                raise FormatError(str(error), path, key_lines[TEXT_KEY]) from None
            converters = [_CONVERTERS[_field_kind(field, stim_type, text)] for field in fields]
            columns = [[] for _ in fields]
            data_line = number
            continue
        if not key:
            raise FormatError(
                f"header line {line!r} has an empty key; header lines are key=value",
                path,
                number,
            )
        if key in header:
            raise FormatError(
                f"header key {key!r} is repeated (first on line {key_lines[key]}); "
                "each key may appear once",
                path,
                number,
            )
        if key == "type" and value not in STIM_TYPES:
            raise FormatError(
                f"type {value!r} is not a stimulus type (valid: {', '.join(STIM_TYPES)})",
                path,
                number,
            )
        header[key] = value
        key_lines[key] = number
    if fields is None:
        raise FormatError(
            "the file ends without the data= line listing the fields "
            f"(e.g. {_EXAMPLE_DATA}); it must follow the header",
            path,
        )
    table = pd.DataFrame(dict(zip(fields, columns, strict=True)), columns=fields)
    try:
        return Stimuli(header, table)
    except DnnMaskError as error:
        # The checks above should leave nothing for the constructor to refuse;
        # if it does, the caller still gets a FormatError naming the file.
        raise FormatError(str(error), path) from None


def format_stim(stimuli: Stimuli) -> str:
    r"""Format stimuli as the text of a ``.stim.csv`` file.

    Floats are written with :func:`repr` so that they read back exactly.

    Parameters
    ----------
    stimuli
        What to write.

    Returns
    -------
    str
        The header, the ``data=`` line and one line per stimulus, each ended
        by ``\n``.

    Raises
    ------
    DnnMaskError
        If a string value holds ``','`` or a line break, has whitespace
        around it, or a row would be written as a blank line: it would not
        read back as it is; or a header value holds ``'='``, which
        DNNBrain's reader cannot read (this package's reader can); or an
        integer field (``label``, a video's ``stimID``) holds a value beyond
        ``±2**53``, which DNNBrain's reader, through float64, rounds; or the
        table has no row, which DNNBrain's reader cannot read.
    """
    if not isinstance(stimuli, Stimuli):
        raise UsageError(f"stimuli are a Stimuli table, not a {type(stimuli).__name__}; "
                         "build one with Stimuli(header=..., table=...) or read_stim")
    if not len(stimuli.table):
        # DNNBrain's StimulusFile.read transposes the rows: with none, it has no column
        raise DnnMaskError("the stimulus table has no row, and DNNBrain's reader cannot read "
                           "a .stim.csv of no stimulus; list at least one")
    for key, value in stimuli.header.items():
        if key.startswith("#"):
            raise DnnMaskError(f"header key {key!r} starts with '#', which reading refuses "
                               "(a .stim.csv has no comments); rename it")
        if "=" in value:
            # DNNBrain's reader splits a header line at every '=' into two parts
            raise DnnMaskError(
                f"header value {value!r} for key {key!r} contains '=', which DNNBrain's "
                "reader cannot read (it splits a header line at every '='); remove it"
            )
    lines = [f"{key}={value}" for key, value in stimuli.header.items()]
    lines.append("data=" + ",".join(stimuli.table.columns))
    text = _text_fields(stimuli.header, stimuli.table.columns)
    texts = [
        _format_column(name, stimuli.table[name], _field_kind(name, stimuli.type, text))
        for name in stimuli.table.columns
    ]
    for position, row in enumerate(zip(*texts, strict=True)):
        line = ",".join(row)
        if not line:
            raise DnnMaskError(
                f"stimulus number {position + 1} has the empty stimID '' and no other "
                "field, so its row would be a blank line, which reading skips; "
                "give it a stimID"
            )
        if line.startswith("#"):
            raise DnnMaskError(
                f"stimulus number {position + 1}: its row {_shorten(line)!r} would start with "
                "'#', which reading refuses (a .stim.csv has no comments); rename it"
            )
        lines.append(line)
    return "\n".join(lines) + "\n"


def read_stim(path: str | os.PathLike[str]) -> Stimuli:
    """Read a ``.stim.csv`` file (UTF-8, with or without a byte order mark).

    Parameters
    ----------
    path
        The file to read.

    Returns
    -------
    Stimuli
        The header and the typed table; its ``source`` is the file.

    Raises
    ------
    FormatError
        If the path is missing, unreadable or not a regular file of at most
        256 MiB, or the file is not UTF-8 or breaks the format; the error
        names the file (and line). A file that breaks the format but is an
        HDF5 file or looks like a ``.dmask.csv`` is said to be one.
    """
    text = read_utf8(path, ".stim.csv")
    stimuli = parse_as(text, path, ".stim.csv", parse_stim)
    # the table is already normalised: only the source is added
    object.__setattr__(stimuli, "source", os.path.abspath(path))
    return stimuli


def write_stim(stimuli: Stimuli, path: str | os.PathLike[str]) -> None:
    """Write stimuli to a ``.stim.csv`` file (UTF-8), atomically.

    Parameters
    ----------
    stimuli
        What to write.
    path
        The file to create or replace; left as it was if writing fails.

    Raises
    ------
    DnnMaskError
        If the stimuli cannot be written so that they read back (see
        :func:`format_stim`).
    """
    text = format_stim(stimuli)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def _parse_fields(value: str, path: str | os.PathLike[str] | None, number: int) -> list[str]:
    fields = [field.strip() for field in value.split(",")]
    for position, field in enumerate(fields, start=1):
        if not field:
            raise FormatError(
                f"the data= line {value!r} has an empty field name at position {position}; "
                f"list field names separated by single commas (e.g. {_EXAMPLE_DATA})",
                path,
                number,
            )
        try:
            _check_name("field name", field)
        except DnnMaskError as error:
            raise FormatError(str(error), path, number) from None
        if fields.index(field) != position - 1:
            raise FormatError(
                f"the data= line names the field {field!r} twice; each field may appear once",
                path,
                number,
            )
    if "stimID" not in fields:
        raise FormatError(
            f"the data= line {value!r} has no 'stimID' field; it is required "
            f"(e.g. {_EXAMPLE_DATA})",
            path,
            number,
        )
    return fields


def _header_type(
    header: Mapping[str, str],
    path: str | os.PathLike[str] | None,
    number: int,
) -> str:
    for key, example in (("type", "type=image"), ("path", "path=/data/images")):
        if key not in header:
            raise FormatError(
                f"the header has no {key!r} key; it is required before the data= line "
                f"(e.g. {example})",
                path,
                number,
            )
    return header["type"]


def _field_kind(field: str, stim_type: str, text: Iterable[str] = ()) -> str:
    if field == "stimID":
        return "int" if stim_type == "video" else "str"
    if field in text:
        return "str"
    return {"label": "int", "condition": "str"}.get(field, "float")


def _text_fields(header: Mapping[str, str], fields: Iterable[str]) -> frozenset[str]:
    """Give the fields the header's ``text`` key lists, checked against the table's fields.

    Raises
    ------
    DnnMaskError
        If it lists a field twice, a field the table lacks, or one whose type
        DNNBrain fixes (stimID, label, condition).
    """
    listed = header.get(TEXT_KEY)
    if listed is None:
        return frozenset()
    names = [name.strip() for name in listed.split(",")] if listed.strip() else []
    fields = list(fields)
    for name in names:
        problem = ("is listed twice" if names.count(name) > 1 else
                   "is typed by DNNBrain's rule (stimID and condition are text, label an "
                   "integer)" if name in _TYPED_BY_NAME else
                   "is not a field of the table" if name not in fields else None)
        if problem:
            raise DnnMaskError(f"header key {TEXT_KEY!r} lists the text fields "
                               f"{listed!r}: {name!r} {problem}; list the other fields "
                               f"that hold text (fields: {', '.join(fields)})")
    return frozenset(names)


def _parse_int(text: str) -> int:
    # DNNBrain's writer spells integers as '1.0' when pandas made a row float,
    # and its reader takes them back: whole numbers in decimal notation count
    value = integer_value(text, decimals=True)
    if value is None:
        raise ValueError(f"value {_shorten(text)!r} is not an integer "
                         "(e.g. 3, -3, +3, 3.0)")
    if not _INT64.min <= value <= _INT64.max:
        raise ValueError(f"value {_shorten(text)!r} is out of the int64 range "
                         f"({_INT64.min}..{_INT64.max})")
    return value


def _shorten(text: str, most: int = 40) -> str:
    return text if len(text) <= most else f"{text[:most - 3]}... ({len(text)} characters)"


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"value {text!r} is not a number (e.g. 1, -0.5, 1e-3, nan, inf)"
        ) from None


def _is_quoted(text: str) -> bool:
    return len(text) >= 2 and text[0] == text[-1] == '"'


def _unquoted(text: str) -> str:
    # a person reads "cat" in a .csv as cat, DNNBrain as the five characters: refuse
    if _is_quoted(text):
        raise ValueError(f"value {_shorten(text)!r} is in double quotes, which a .csv reader "
                         "takes away but a .stim.csv has no quoting; remove the quotes")
    return text


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "int": _parse_int,
    "float": _parse_float,
    "str": _unquoted,
}



def _in_int64(number: int) -> int:
    if not _INT64.min <= number <= _INT64.max:
        raise ValueError(f"value {number} is out of the int64 range ({_INT64.min}..{_INT64.max})")
    return number


def _to_int(value: Any) -> int:
    if isinstance(value, str):
        return _parse_int(value.strip())
    if isinstance(value, bool):
        raise ValueError(f"value {value!r} is a boolean, not an integer")
    if isinstance(value, numbers.Integral):
        return _in_int64(int(value))
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return _in_int64(int(value))
    raise ValueError(f"value {value!r} is not an integer (e.g. 3, -3, '+3')")


def _to_float(value: Any) -> float:
    if isinstance(value, str):
        return _parse_float(value.strip())
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return float("nan")
    raise ValueError(f"value {value!r} is not a number (e.g. 1, -0.5, 1e-3, nan, inf)")


#: Why text holding a NUL character is refused, made or written.
_NUL = ("holds a NUL character, which reading refuses (DNNBrain's reader drops it at a "
        "value's end); remove it")


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        if "\0" in value:
            # pandas 2's str columns (numpy's text arrays) drop a trailing NUL without a word
            raise ValueError(f"value {value!r} {_NUL}")
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    raise ValueError(f"value {value!r} is not a string (strings and integers are accepted)")


def _normalise_header(header: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(header, Mapping):
        raise DnnMaskError(f"header {header!r} is not a mapping of key to value")
    for key in ("type", "path"):
        if key not in header:
            raise DnnMaskError(f"the header has no {key!r} key; 'type' and 'path' are required")
    ordered = {"type": header["type"], "path": header["path"]}
    ordered.update(header)
    checked = {}
    for key, value in ordered.items():
        if not isinstance(key, str):
            raise DnnMaskError(f"header key {key!r} is not a string")
        _check_name("header key", key, forbidden="=")
        if key == "data":
            raise DnnMaskError(
                "header key 'data' is reserved for the line naming the fields; rename it"
            )
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise DnnMaskError(f"header value {value!r} for key {key!r} is not a string")
        _check_text(f"header value for key {key!r}", value)
        checked[key] = value
    if checked["type"] not in STIM_TYPES:
        raise DnnMaskError(
            f"type {checked['type']!r} is not a stimulus type (valid: {', '.join(STIM_TYPES)})"
        )
    return checked


def _normalise_table(table: pd.DataFrame, stim_type: str,
                     text: frozenset[str] = frozenset()) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise DnnMaskError(f"table of type {type(table).__name__} is not a pandas DataFrame")
    names = list(table.columns)
    for name in names:
        if not isinstance(name, str):
            raise DnnMaskError(f"field name {name!r} is not a string")
        _check_name("field name", name)
        if names.count(name) > 1:
            raise DnnMaskError(f"field name {name!r} appears twice; field names must be unique")
    if "stimID" not in names:
        raise DnnMaskError(f"the table has no 'stimID' field (fields: {names}); it is required")
    columns = {
        name: _normalise_column(name, table[name], _field_kind(name, stim_type, text))
        for name in names
    }
    return pd.DataFrame(columns, index=pd.RangeIndex(len(table)), columns=names)


def _normalise_column(name: str, column: pd.Series, kind: str) -> pd.Series:
    values = column.to_numpy()
    dtype = values.dtype
    # Numeric numpy columns convert in one step; anything else goes value by value.
    if kind == "float" and dtype.kind in "iuf":
        result: Any = values.astype(np.float64)
    elif kind == "int" and dtype.kind in "iu" and not (dtype.kind == "u" and dtype.itemsize == 8):
        result = values.astype(np.int64)
    elif (kind == "str" and pd.api.types.infer_dtype(values, skipna=False) in ("string", "empty")
          and not any("\0" in value for value in values)):
        result = pd.array(values, dtype=str)
    else:
        convert = {"int": _to_int, "float": _to_float, "str": _to_str}[kind]
        # a text field not declared: say how to declare it
        hint = (f"; a field of text is listed in the header's {TEXT_KEY!r} key "
                f"({TEXT_KEY}={name})" if kind == "float" and any(
                    isinstance(value, str) for value in values) else "")
        converted = _convert(name, values, convert, hint)
        if kind == "str":
            result = pd.array(converted, dtype=str)
        else:
            result = np.array(converted, dtype=np.int64 if kind == "int" else np.float64)
    return pd.Series(result, index=pd.RangeIndex(len(values)), name=name)


def _convert(name: str, values: Iterable[Any], convert: Callable[[Any], Any],
             hint: str = "") -> list[Any]:
    converted = []
    for position, value in enumerate(values, start=1):
        if isinstance(value, np.generic):
            # Quote and convert numpy scalars as the plain Python values they hold.
            value = value.item()
        try:
            converted.append(convert(value))
        except (TypeError, ValueError) as error:
            raise DnnMaskError(f"field {name!r}, stimulus number {position}: {error}"
                               f"{hint}") from None
    return converted


def _check_name(what: str, name: str, forbidden: str = ",=") -> None:
    if not name:
        raise DnnMaskError(f"{what} is empty; give it a name")
    for char in forbidden:
        if char in name:
            raise DnnMaskError(f"{what} {name!r} contains {char!r}, which the format reserves")
    _check_text(what, name)


def _check_text(what: str, text: str) -> None:
    found = _LINE_BREAK.search(text)
    if found:
        raise DnnMaskError(
            f"{what} {text!r} contains the line break {found.group()!r}; "
            "a .stim.csv value must fit on one line"
        )
    if text != text.strip():
        raise DnnMaskError(
            f"{what} {text!r} has whitespace around it, which reading strips; remove it"
        )
    if "\0" in text:
        # numpy's text arrays, which DNNBrain's reader makes, drop a value's trailing NULs
        raise DnnMaskError(f"{what} {text!r} {_NUL}")


def _format_column(name: str, column: pd.Series, kind: str) -> list[str]:
    if kind == "float":
        return [repr(float(value)) for value in column.to_numpy()]
    if kind == "int":
        values = [int(value) for value in column.to_numpy()]
        for position, value in enumerate(values, start=1):
            if abs(value) > _EXACT_IN_FLOAT64:
                # DNNBrain's reader takes integer fields through np.float64, which rounds
                raise DnnMaskError(
                    f"field {name!r}, stimulus number {position}: value {value} is beyond "
                    f"±2**53 ({_EXACT_IN_FLOAT64}), where DNNBrain's reader, which reads it "
                    f"as a float64, gives {int(np.float64(value))}; integers of a .stim.csv "
                    "are written within that range"
                )
        return [str(value) for value in values]
    texts = list(column.to_numpy())
    for position, text in enumerate(texts, start=1):
        if "," in text:
            raise DnnMaskError(
                f"field {name!r}, stimulus number {position}: value {text!r} contains ',', "
                "which separates values; remove it"
            )
        if _is_quoted(text):
            raise DnnMaskError(
                f"field {name!r}, stimulus number {position}: value {text!r} is in double "
                "quotes, which reading refuses (a .stim.csv has no quoting); remove them"
            )
        _check_text(f"field {name!r}, stimulus number {position}: value", text)
    return texts
