r"""Read the project's text files: UTF-8, lines as DNNBrain splits them.

DNNBrain reads ``.dmask.csv`` and ``.stim.csv`` files in text mode and then
with ``str.splitlines()``, so ``\r\n``, a lone ``\r`` and ``\n`` all end a
line for it. Both parsers split lines here, the same way, so that a file
means the same to them as to DNNBrain and line numbers in errors match what
an editor shows.

Both read their files through :func:`read_utf8`, which refuses, before
reading a byte, what is not a regular file (a FIFO would block forever,
``/dev/zero`` would be read until memory runs out) or is larger than
:data:`MAX_TEXT_BYTES`; and both read integers through
:func:`integer_value`, which takes any number of digits.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from decimal import Decimal

from dnnmask_xr._args import path_arg
from dnnmask_xr.errors import FormatError
from dnnmask_xr.formats._kind import is_hdf5, wrong_kind

BOM = "\ufeff"
LINE_END = re.compile(r"\r\n|\r|\n")
_LINE_END_BYTES = re.compile(rb"\r\n|\r|\n")
# str.splitlines() also breaks at these. Inside a line they would split it
# for DNNBrain but not for a person reading the file, so they are refused.
_OTHER_BREAK = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")

#: The largest text file read, in bytes (256 MiB). A mask naming every unit
#: of AlexNet's layers, or a table of a million stimuli, is a few tens of
#: MiB; a larger ``.dmask.csv`` or ``.stim.csv`` is some other file.
MAX_TEXT_BYTES = 256 * 2**20
# Regular files only: what else os.stat can say a path is, for the error.
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISSOCK, "a socket"),
)
# O_NONBLOCK: opening a FIFO put there after the os.stat must not wait for a writer.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
               | getattr(os, "O_CLOEXEC", 0))

# ASCII digits only: int() and Decimal() also take '1_000' and other scripts' digits.
_INTEGER_TEXT = re.compile(r"([+-]?)0*([0-9]+)")
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: What :func:`integer_value` gives for a number of more than 20 significant
#: digits: larger than any int64 (and any unit count), with the number's sign.
BEYOND_INT64 = 10**20


def text_lines(text: str, path: str | os.PathLike[str] | None = None,
               kind: str = "text") -> Iterator[tuple[int, str]]:
    r"""Yield the 1-based number and stripped text of each non-blank line.

    A leading byte order mark is dropped; ``\r\n``, ``\r`` and ``\n`` end
    lines and are counted as one line end each, blank lines included.

    Parameters
    ----------
    text
        The file's content.
    path
        The file the text came from, named in errors.
    kind
        What the file is, for errors: ``'.dmask.csv'``, ``'.stim.csv'``.

    Yields
    ------
    tuple of (int, str)
        Line number and the line without surrounding whitespace.

    Raises
    ------
    FormatError
        If a line holds another character that ``str.splitlines()`` breaks
        at (``\v``, ``\f``, ``\x1c``-``\x1e``, ``\x85``, ``\u2028``,
        ``\u2029``) between its first and last visible characters; holds a
        NUL character; or starts with ``#``: the formats have no comments,
        and DNNBrain reads ``#conv5=chn`` as a layer named ``#conv5`` and
        ``# block A`` after a ``data=`` line as a stimulus, where a person
        reads comments.
    """
    for number, raw in enumerate(LINE_END.split(text.removeprefix(BOM)), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            shown = line if len(line) <= 40 else f"{line[:37]}... ({len(line)} characters)"
            raise FormatError(f"line {shown!r} starts with '#'; a {kind} file has no comments: "
                              "delete the line, or remove the '#'", path, number)
        if "\0" in line:
            # no text file holds one; DNNBrain's reader drops it at a value's end, a
            # person does not see it, and HDF5 cannot store it in a name or a label
            raise FormatError(f"line {line!r} holds a NUL character ('\\x00'); a {kind} file is "
                              "text: remove it", path, number)
        found = _OTHER_BREAK.search(line)
        if found:
            raise FormatError(
                f"line {line!r} holds the line break {found.group()!r} inside it; "
                "only '\\n', '\\r\\n' or '\\r' may end a line",
                path,
                number,
            )
        yield number, line


def integer_value(text: str, *, decimals: bool = False) -> int | None:
    """Return the integer ``text`` spells, whatever its number of digits.

    :func:`int` refuses text of more than 4300 digits, even ``0...01``;
    here leading zeros never count, and a number too large for int64 comes
    back as a stand-in that the caller's range check refuses, quoting the
    text rather than converting it.

    Parameters
    ----------
    text
        ASCII digits with an optional sign (``'3'``, ``'-3'``, ``'+003'``).
    decimals
        Also take decimal notation whose value is an integer (``'3.0'``,
        ``'3.'``, ``'30e-1'``, ``'1e2'``), as DNNBrain's writer produces
        when pandas turned a row into floats.

    Returns
    -------
    int or None
        The value, exact when it has at most 20 significant digits, else
        ``±BEYOND_INT64``; None if ``text`` is not such a number or (with
        ``decimals``) not a whole one (``'1.5'``, ``'nan'``, ``'inf'``).
    """
    match = _INTEGER_TEXT.fullmatch(text)
    if match:
        sign, digits = match.groups()
        value = BEYOND_INT64 if len(digits) > 20 else int(digits)
        return -value if sign == "-" else value
    if not decimals or not _DECIMAL_TEXT.fullmatch(text):
        return None
    # Decimal is exact (a float would round 2**63 + 1) and not limited in digits
    number = Decimal(text)
    if number == 0:
        return 0
    if number.adjusted() >= 20:  # checked first: 1e999999999 must not be expanded
        return BEYOND_INT64 if number > 0 else -BEYOND_INT64
    if number != number.to_integral_value():
        return None
    return int(number)


def read_utf8(path: str | os.PathLike[str], kind: str = "text") -> str:
    """Return a text file's content, decoded as UTF-8.

    The path is checked before anything is read: it must be a regular file
    (``os.stat`` does not block on a FIFO) of at most
    :data:`MAX_TEXT_BYTES`. The file is then opened without blocking and
    checked again, so that one swapped in meanwhile is refused too, and
    read as bytes, at most one byte past the limit, so that line numbers
    count the line ends as written.

    Parameters
    ----------
    path
        The file.
    kind
        What the file should be, for errors: ``'.dmask.csv'``, ``'.stim.csv'``.

    Raises
    ------
    FormatError
        If the path is missing or unreadable, is not a regular file (a FIFO,
        a device, a folder, a socket), is larger than :data:`MAX_TEXT_BYTES`,
        or is not UTF-8; names the file, and the line of a bad byte.
    """
    path = path_arg(path, "file")
    try:
        _check_regular(os.stat(path), path, kind)
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        raise FormatError(f"cannot read it: {err.strerror or err}", path) from None
    with open(fd, "rb", closefd=True) as file:
        _check_regular(os.fstat(fd), path, kind)
        # one byte more than allowed tells a file that grew since it was measured
        data = file.read(MAX_TEXT_BYTES + 1)
    if len(data) > MAX_TEXT_BYTES:
        raise FormatError(f"grew past {MAX_TEXT_BYTES} bytes while it was read; "
                          f"{_valid(kind)}", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        if is_hdf5(data):
            raise wrong_kind(path, kind, ".act.h5") from None
        bad = data[error.start : error.start + 1]
        raise FormatError(
            f"byte {bad!r} is not UTF-8; save the file as UTF-8 text",
            path,
            len(_LINE_END_BYTES.findall(data, 0, error.start)) + 1,
        ) from None


def _check_regular(status: os.stat_result, path: str, kind: str) -> None:
    for test, what in _KINDS:
        if test(status.st_mode):
            raise FormatError(f"is {what}, not a regular file; {_valid(kind)}", path)
    if not stat.S_ISREG(status.st_mode):
        raise FormatError(f"is not a regular file; {_valid(kind)}", path)
    if status.st_size > MAX_TEXT_BYTES:
        # activation files are often this large: say what it is, not only its size
        if _starts_hdf5(path):
            raise wrong_kind(path, kind, ".act.h5")
        raise FormatError(f"holds {status.st_size} bytes, more than the {MAX_TEXT_BYTES} "
                          f"allowed; {_valid(kind)}", path)


def _starts_hdf5(path: str) -> bool:
    try:
        # without blocking, and only a regular file: the path may have been swapped
        with open(os.open(path, _OPEN_FLAGS), "rb", closefd=True) as file:
            return stat.S_ISREG(os.fstat(file.fileno()).st_mode) and is_hdf5(file.read(4096))
    except OSError:
        return False


def _valid(kind: str) -> str:
    # MAX_TEXT_BYTES is read when the error is made, so that tests may lower it
    return (f"a {kind} file is a regular file of UTF-8 text of at most "
            f"{MAX_TEXT_BYTES / 2**20:g} MiB")
