"""Read the project's text files: UTF-8, errors with the line at fault."""

from __future__ import annotations

import os

from dnnmask_xr.errors import FormatError


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
    with open(path, "rb") as file:
        data = file.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = data[error.start : error.start + 1]
        raise FormatError(
            f"byte {bad!r} is not UTF-8; save the file as UTF-8 text",
            path,
            data.count(b"\n", 0, error.start) + 1,
        ) from None
