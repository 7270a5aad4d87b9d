r"""Read the project's text files: UTF-8, lines as DNNBrain splits them.

DNNBrain reads ``.dmask.csv`` and ``.stim.csv`` files in text mode and then
with ``str.splitlines()``, so ``\r\n``, a lone ``\r`` and ``\n`` all end a
line for it. Both parsers split lines here, the same way, so that a file
means the same to them as to DNNBrain and line numbers in errors match what
an editor shows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from dnnmask_xr._args import path_arg
from dnnmask_xr.errors import FormatError

BOM = "\ufeff"
LINE_END = re.compile(r"\r\n|\r|\n")
_LINE_END_BYTES = re.compile(rb"\r\n|\r|\n")
# str.splitlines() also breaks at these. Inside a line they would split it
# for DNNBrain but not for a person reading the file, so they are refused.
_OTHER_BREAK = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def text_lines(text: str, path: str | os.PathLike[str] | None = None) -> Iterator[tuple[int, str]]:
    r"""Yield the 1-based number and stripped text of each non-blank line.

    A leading byte order mark is dropped; ``\r\n``, ``\r`` and ``\n`` end
    lines and are counted as one line end each, blank lines included.

    Parameters
    ----------
    text
        The file's content.
    path
        The file the text came from, named in errors.

    Yields
    ------
    tuple of (int, str)
        Line number and the line without surrounding whitespace.

    Raises
    ------
    FormatError
        If a line holds another character that ``str.splitlines()`` breaks
        at (``\v``, ``\f``, ``\x1c``-``\x1e``, ``\x85``, ``\u2028``,
        ``\u2029``) between its first and last visible characters.
    """
    for number, raw in enumerate(LINE_END.split(text.removeprefix(BOM)), start=1):
        line = raw.strip()
        if not line:
            continue
        found = _OTHER_BREAK.search(line)
        if found:
            raise FormatError(
                f"line {line!r} holds the line break {found.group()!r} inside it; "
                "only '\\n', '\\r\\n' or '\\r' may end a line",
                path,
                number,
            )
        yield number, line


def read_utf8(path: str | os.PathLike[str]) -> str:
    """Return a text file's content, decoded as UTF-8.

    The file is read as bytes so that line numbers count the line ends as
    written.

    Raises
    ------
    FormatError
        If the file is not UTF-8; names the file and the line of the bad byte.
    OSError
        If the file cannot be read.
    """
    path = path_arg(path, "file")
    with open(path, "rb") as file:
        data = file.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = data[error.start : error.start + 1]
        raise FormatError(
            f"byte {bad!r} is not UTF-8; save the file as UTF-8 text",
            path,
            len(_LINE_END_BYTES.findall(data, 0, error.start)) + 1,
        ) from None
