"""Tell a file given in the wrong place by what it holds.

``dnn_mask -dmask test.stim.csv`` fails on the stimulus table's first line
(``unknown axis 'image' in layer 'type'``), which says nothing of the real
mistake. The readers ask this module what a file they could not read looks
like and, if it is one of the project's other files, say so instead.

These tests run only once a file has failed to read as what it was given
as, so that no valid file is ever refused for looking like another kind.
Pure text and bytes: nothing here imports numpy or pandas.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import TypeVar

from dnnmask_xr.errors import FormatError

#: What a parser gives: a mask or a stimulus table.
T = TypeVar("T")

#: The first bytes of every HDF5 file (an ``.act.h5``, a netCDF4 ``.nc``).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: Kind (as the readers name it) -> what it is, the flag and the function that take it.
_KINDS = {
    ".dmask.csv": ("a mask (.dmask.csv)", "-dmask", "read_dmask"),
    ".stim.csv": ("a stimulus table (.stim.csv)", "-stim", "read_stim"),
    ".act.h5": ("an HDF5 file (such as an .act.h5 activation file)", "-act", "open_act"),
}
_LINE_END = re.compile(r"\r\n|\r|\n")
_DMASK_AXES = frozenset({"chn", "row", "col"})
_NUMBERS_LINE = re.compile(r"[+-]?[0-9]+(?:\s*,\s*[+-]?[0-9]+)*\s*,?")


def is_hdf5(data: bytes) -> bool:
    """Tell whether ``data``, a file's first bytes, start an HDF5 file.

    HDF5 also looks for its signature after a user block, at 512 bytes and
    every doubling of that.
    """
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= len(data):
        if data[offset : offset + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE:
            return True
        offset = max(512, 2 * offset)
    return False


def looks_like_stim(text: str) -> bool:
    """Tell whether ``text`` starts like a ``.stim.csv``.

    That is: ``key=value`` lines, among them ``type=`` or ``path=``, up to a
    ``data=`` line (naming ``stimID`` or not: a table without it is still a
    table, given in the wrong place).
    """
    keys = set()
    for line in _lines(text):
        key, sep, _ = line.partition("=")
        if not sep:
            return False
        key = key.strip()
        if key == "data":
            return bool(keys & {"type", "path"})
        keys.add(key)
    return False


def looks_like_dmask(text: str) -> bool:
    """Tell whether ``text`` holds a ``.dmask.csv`` layer.

    That is: a line ``name=axes`` listing only ``chn``, ``row`` and ``col``
    followed by a line of comma-separated integers.
    """
    previous = None
    for line in _lines(text):
        if previous is not None and _NUMBERS_LINE.fullmatch(line):
            _, _, axes = previous.partition("=")
            listed = {axis.strip() for axis in axes.split(",")} - {""}
            if listed and listed <= _DMASK_AXES:
                return True
        previous = line if line.count("=") == 1 else None
    return False


def wrong_kind(path: str | os.PathLike[str], expected: str, found: str) -> FormatError:
    """Make the error for a file of kind ``found`` read as kind ``expected``."""
    looks, flag, function = _KINDS[found]
    what = _KINDS[expected][0] if expected in _KINDS else f"a {expected} file"
    verb, what_to_pass = ("is", "activations") if found == ".act.h5" else ("looks like", "it")
    return FormatError(f"{verb} {looks}, not {what}; pass {what_to_pass} with {flag} "
                       f"({function} in Python)", path)


def parse_as(text: str, path: str | os.PathLike[str], kind: str,
             parse: Callable[[str, str | os.PathLike[str]], T]) -> T:
    """Parse ``text`` as a file of ``kind``; a text of the other kind is said to be one.

    Only a text that fails to parse is looked at, so a valid file is never
    refused for looking like the other kind.
    """
    try:
        return parse(text, path)
    except FormatError:
        other, looks_like = ((".stim.csv", looks_like_stim) if kind == ".dmask.csv"
                             else (".dmask.csv", looks_like_dmask))
        if looks_like(text):
            raise wrong_kind(path, kind, other) from None
        raise


def _lines(text: str) -> Iterator[str]:
    for raw in _LINE_END.split(text.removeprefix("\ufeff")):
        line = raw.strip()
        if line:
            yield line
