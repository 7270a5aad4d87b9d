"""Opening ``.act.h5`` files for reading, and knowing them again.

A file is identified when first opened (:class:`FileIdentity`), and every
reopen (after a close, in a dask worker) checks that it is the same file,
as every read checks the other files its layers read from
(``allow_external``). Reads hold the file open (:class:`HeldFile`), so a
close that xarray's cache asks for meanwhile waits for them. Knows nothing
of xarray.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import h5py

from dnnmask_xr.act.external import files_read
from dnnmask_xr.errors import ActFileError


class FileIdentity(NamedTuple):
    """What tells an open file from another one put at its path since.

    A file replaced by a rename (what ``dnn_mask`` and ``save_act`` do to an
    existing output) has another inode; one rewritten in place, another size
    or modification time. The status change time is kept too: no program
    can set it, so a rewrite whose modification time is set back (``os.utime``,
    ``cp -p``, ``rsync -t``) still shows; it also moves when the file's
    permissions or links change, which is then refused as a change too.
    The device is left out: machines that mount one share (a dask cluster's
    workers) see the same file on different devices.
    """

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


#: The other files a layer reads from (``allow_external``), each as it was at open.
SourceFiles = tuple[tuple[str, FileIdentity], ...]


def file_identity(where: str) -> FileIdentity:
    """Identify the file at ``where`` now, before it is opened.

    Raises
    ------
    ActFileError
        If the file cannot be looked at (missing, permission denied).
    """
    try:
        return _identity(os.stat(where))
    except OSError as err:
        failed = err
    check_readable(where)  # says why in the words every open uses
    raise ActFileError(f"cannot open {where!r}: {failed.strerror or failed}")


def _identity(status: os.stat_result) -> FileIdentity:
    return FileIdentity(status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def source_files(root: h5py.File) -> SourceFiles:
    """Identify every other file the objects of ``root`` read from, at every depth.

    HDF5 opens them again by name at each read (a virtual dataset's
    sources, external links' targets, external raw storage), so each read
    checks them (:meth:`HeldFile.hold`), where the file itself is checked
    when it is opened again. ``root`` is opened by its absolute path, as it
    is read later: links' and virtual datasets' files are then named
    absolutely too, and found again after ``os.chdir`` (raw storage files
    stay named from the working folder, as HDF5 finds them).
    """
    return tuple((file, file_identity(file)) for file in sorted(files_read(root)))


def _check_sources(sources: SourceFiles, where: str) -> None:
    for file, identity in sources:
        try:
            same = _identity(os.stat(file)) == identity
        except OSError:
            same = False
        if not same:
            raise ActFileError(f"{where!r}: {file!r}, which its layers read from, changed "
                               "since the file was opened (it was replaced, rewritten or "
                               "removed), so its values no longer match the labels read then; "
                               "open the file again to read what it holds now") from None


class HeldFile(h5py.File):
    """An open file that reads hold: closing it waits for the last read to let go.

    xarray's file cache closes the file it evicts when another file is
    opened, from whichever thread opens it; a read that is still inflating
    chunks of the evicted file on other threads would then read through
    closed identifiers. A read holds the file (:meth:`hold`) from before
    its first HDF5 call to after its last, and a close asked for meanwhile
    happens when it lets go (:meth:`release`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = threading.Lock()
        self._holders = 0
        self._closing = False
        self.sources: SourceFiles = ()

    def hold(self) -> bool:
        """Hold the file open; False if it is closed or closing (open it again).

        Raises
        ------
        ActFileError
            If a file its layers read from (:attr:`sources`) changed since
            the file was first opened.
        """
        with self._guard:
            if self._closing or not self.id.valid:
                return False
            if self.sources:
                _check_sources(self.sources, self.filename)
            self._holders += 1
            return True

    def release(self, lock: AbstractContextManager[Any] | None = None) -> None:
        """Let go of a hold; the last to let go of a file asked to close closes it.

        ``lock`` is held around that close, an HDF5 call.
        """
        with self._guard:
            self._holders -= 1
            close = self._closing and not self._holders
        if close:
            with lock if lock is not None else nullcontext():
                super().close()

    def close(self) -> None:
        """Close the file now, or once the reads that hold it let go."""
        with self._guard:
            self._closing = True
            if self._holders:
                return
        super().close()


def open_file(where: str, mode: str = "r", identity: FileIdentity | None = None,
              sources: SourceFiles = ()) -> HeldFile:
    """Open an ``.act.h5`` file for reading, even while another process writes it.

    HDF5's default locking comes first: within a process HDF5 shares one
    handle per file and refuses opens whose locking flags differ. Reading
    never changes the file, so a lock it cannot take (another process has
    the file open for writing, or the file system has no locks) must not
    make the activations unreadable: the file is then opened without one.
    A file a SWMR writer holds open (``swmr_mode=True``) is opened in
    HDF5's SWMR read mode, which sees what the writer had flushed.

    Parameters
    ----------
    where
        The file's path.
    mode
        Must be ``"r"``; it is there for ``CachingFileManager``, which
        passes it on.
    identity
        The file as it was when first opened (:func:`file_identity`): a
        lazy layer's file manager reopens it with this, in this process
        (after a close, or after xarray's cache closed it) or in a dask
        worker, so that values are never read from another file under
        the labels read from the first.
    sources
        The other files its layers read from (:func:`source_files`), which
        every read of the opened file checks (:meth:`HeldFile.hold`).

    Raises
    ------
    ActFileError
        If the file is missing, a folder, unreadable, not HDF5 or damaged,
        marked open for writing by a program that is not a SWMR writer, or
        not the file ``identity`` describes.
    """
    if mode != "r":
        raise ValueError(f"mode={mode!r}: .act.h5 inputs are opened read-only ('r')")
    check_readable(where)
    root = _open_read_only(where)
    if identity is not None and _opened_identity(root, where) != identity:
        root.close()
        raise ActFileError(f"{where!r} changed since it was opened (it was replaced or "
                           "rewritten, or its permissions changed), so its values may no "
                           "longer match the labels read then; open it again to read what it "
                           "holds now") from None
    root.sources = sources
    return root


def _open_read_only(where: str) -> HeldFile:
    error = None
    for options in ({}, {"locking": False}, {"swmr": True}, {"swmr": True, "locking": False}):
        try:
            return HeldFile(where, "r", **options)
        except (OSError, RuntimeError, ValueError) as err:
            error = error or err
            if not _may_retry(err, options):
                break
    if "already open for write" in str(error):
        raise ActFileError(f"cannot read {where!r}: HDF5 marks it as open for writing by "
                           "another program (or by one that stopped before closing it; "
                           "'h5clear -s' clears the mark once no program writes it)") from None
    raise ActFileError(f"cannot read {where!r}: the file is damaged ({error})") from None


def _opened_identity(root: h5py.File, where: str) -> FileIdentity:
    """Identify the file HDF5 opened: its own descriptor, not the path, which may have moved on."""
    try:
        return _identity(os.fstat(root.id.get_vfd_handle()))
    except (OSError, TypeError, ValueError, RuntimeError):  # a driver without a descriptor
        return file_identity(where)


def _may_retry(err: Exception, tried: dict[str, bool]) -> bool:
    """Tell whether another way of opening might succeed where ``tried`` failed."""
    text = str(err).lower()
    return "lock" in text or ("already open for write" in text and not tried.get("swmr"))


def check_readable(where: str, what: str = "an .act.h5 file",
                   holding: str = "one 4-D dataset per layer") -> None:
    """Check that ``where`` is a readable HDF5 file, with one-line errors.

    Each error is raised ``from None``: called by xarray's file manager on a
    cache miss, it would otherwise be shown chained to the manager's
    ``KeyError``, which says nothing of the file.

    Parameters
    ----------
    where
        The file's path.
    what, holding
        What the file should be and what it holds, for the errors: ``"an
        .act.h5 file"`` is HDF5 with ``"one 4-D dataset per layer"``.
    """
    file = Path(where)
    if not file.exists():
        raise ActFileError(f"cannot open {where!r}: no such file") from None
    if file.is_dir():
        raise ActFileError(f"cannot open {where!r}: it is a folder, not {what}") from None
    if not os.access(file, os.R_OK):
        raise ActFileError(f"cannot open {where!r}: permission denied") from None
    try:
        is_hdf5 = h5py.is_hdf5(where)
    except OSError as err:
        raise ActFileError(f"cannot open {where!r}: {err.strerror or err}") from None
    if not is_hdf5:
        raise ActFileError(f"{where!r} is not an HDF5 file; {what} is HDF5 with {holding}"
                           ) from None
