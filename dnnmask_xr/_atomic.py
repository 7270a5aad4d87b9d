"""Write files so that they appear whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dnnmask_xr._args import path_arg
from dnnmask_xr.errors import ActFileError, OutputIsInputError

#: Temporary files are named ``.dnnmask-<random>.tmp``: hidden, recognisable, and short
#: whatever the target's name, so that any name the file system takes can be written.
TEMP_PREFIX = ".dnnmask-"
TEMP_SUFFIX = ".tmp"


def real_target(path: str | os.PathLike[str]) -> Path:
    """Name the file that writing ``path`` replaces: ``path``, or what its links lead to.

    A symbolic link is written through, as ``open(path, "w")`` does: the
    file it points to is replaced and the link stays. A dangling link gives
    the file it would point to.

    Raises
    ------
    OSError
        ``ELOOP`` if the links lead in a circle (or too deep).
    """
    name = path_arg(path, "output")
    try:
        os.stat(name)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name) from None
    return Path(os.path.realpath(name))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``'s file; move it there on success.

    The temporary file (``.dnnmask-<random>.tmp``) lives in the folder of
    the file replaced, so that the final ``os.replace`` is a rename on one
    file system: readers see either the old file or the complete new one.
    A symbolic link at ``path`` is written through (see :func:`real_target`):
    the file it points to is replaced, the link is kept. A file replaced
    keeps its permission bits (``rwx`` for owner, group and others) and,
    where the process may set them, its owner and group; a new file gets
    ``0o666 & ~umask``, as any new file. On any exception
    (``KeyboardInterrupt`` included) the temporary file is removed and the
    target is left as it was.

    The file is synced to disk (``fsync``) before the rename, and its folder
    after: without the first, a power loss soon after could leave the new
    name on a file whose blocks never reached the disk (an empty or partial
    output where a whole one was); without the second, the rename itself
    could be lost.

    Parameters
    ----------
    path
        The file to create or replace.

    Yields
    ------
    Path
        Where to write; it exists (empty) when yielded.
    """
    named = Path(os.path.abspath(path_arg(path, "output")))
    with _said_for(path, _WHY, named.parent):
        target = real_target(path)
        with contextlib.suppress(FileNotFoundError):
            os.lstat(target)  # a name too long for the file system fails here, not at the end
    refuse_non_regular(path, target)
    refuse_held_open(path, target)
    # named before it is created, and watched from then on: a Ctrl-C the moment it is
    # created (inside mkstemp, which had not yet said its name) finds it removed too
    tmp = target.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    with _removed_unless_whole(tmp, functools.partial(_remove_file, tmp)):
        with _said_for(path, FULL_DISK):
            with _said_for(path, _WHY, target.parent):
                # 64 random bits: no other file has the name (O_EXCL would refuse it)
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            yield tmp
            _take_permissions(tmp, target)
            sync_path(tmp)
        refuse_held_open(path, target)  # opened while the file was written
        with _said_for(path, _WHY, target.parent):
            os.replace(tmp, target)
    sync_path(target.parent)


def refuse_non_regular(path: str | os.PathLike[str], target: Path) -> None:
    """Refuse to replace a device, a FIFO or a socket (``target``, what ``path`` leads to).

    Renamed over, ``/dev/null`` or a FIFO a program reads would become a
    plain file: a ``.dmask.csv`` written through a link to ``/dev/null``
    replaced the device itself, as root. A folder is said where the rename
    fails.

    Raises
    ------
    ActFileError
        If ``target`` exists and is neither a regular file nor a folder.
    """
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    name = os.fspath(path)
    linked = (f" (the symbolic link {name!r} points to {str(target)!r})"
              if os.path.islink(name) else "")
    raise ActFileError(f"cannot write {name!r}: it is not a regular file but a device, a "
                       f"FIFO or a socket{linked}; name a file")


def input_refused(path: str | os.PathLike[str], why: str) -> str:
    """Say that the output ``path`` is an input (``why``), and what to do instead."""
    return (f"output {os.fspath(path)!r} is the input file ({why}); dnnmask_xr never "
            "overwrites its input: choose another output path")


#: Why a file this process holds open is not replaced.
HELD_OPEN = "this process holds it open; close what was opened from it first"


def refuse_held_open(path: str | os.PathLike[str], target: Path) -> None:
    """Refuse to replace an HDF5 file this process holds open, or a folder holding one.

    Every output is put in place here, whatever wrote it (the activations'
    writer, the text files', DNNBrain's): a file still open for reading,
    replaced, would be gone from the disk while its layers are still read.
    The file HDF5 holds is compared (device and inode), not only the name
    it was opened by, which a rename since, or ``os.chdir`` after a
    relative name, points elsewhere.

    Raises
    ------
    OutputIsInputError
        If ``target`` (the file ``path`` names) is such a file, or a folder
        (a zarr store) holding one.
    """
    h5py = sys.modules.get("h5py")
    if h5py is None:  # no HDF5 file can be open before h5py is imported
        return
    try:
        status = os.stat(target)
    except OSError:
        return
    folder = stat.S_ISDIR(status.st_mode)
    for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        try:
            name = os.fsdecode(file_id.name)
        except Exception:  # closed meanwhile, by another thread
            continue
        if _held_identity(h5py, file_id) == (status.st_dev, status.st_ino) or (
                _same_file(name, target)):
            raise OutputIsInputError(input_refused(path, HELD_OPEN))
        if folder and any(_same_file(parent, target)
                          for parent in Path(os.path.realpath(name)).parents):
            raise OutputIsInputError(input_refused(
                path, f"it holds {name!r}, which replacing the folder would remove; "
                      + HELD_OPEN.replace(" it ", " that file ")))


def _held_identity(h5py: Any, file_id: Any) -> tuple[int, int] | None:
    """Give the device and inode of the file HDF5 holds open, None without a descriptor."""
    try:
        if file_id.get_access_plist().get_driver() != h5py.h5fd.SEC2:
            return None  # another driver's handle is not a descriptor (an in-memory file)
        held = os.fstat(file_id.get_vfd_handle())
    except (OSError, RuntimeError, ValueError, TypeError, OverflowError):
        return None
    return held.st_dev, held.st_ino


def _same_file(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


@contextlib.contextmanager
def _said_for(path: str | os.PathLike[str], reasons: dict[int, str],
              folder: Path | None = None) -> Iterator[None]:
    """Say an ``OSError`` of one of the ``reasons`` (by errno) in one line naming ``path``.

    The outputs the one writer makes are checked before anything is
    written (:func:`~dnnmask_xr.act.checks.check_output`); the text files
    (``.dmask.csv``, ``.stim.csv``) are not, and are written with Python's
    own calls, whose error named the temporary file, or no file. ``folder``
    is the one a reason may name.
    """
    try:
        yield
    except OSError as err:
        why = reasons.get(err.errno)
        if why is not None:
            raise ActFileError(f"cannot write {os.fspath(path)!r}: "
                               + why.format(folder=str(folder))) from None
        raise


#: A full disk, by the errno a write fails with, and the reason said for it (the
#: activations' writer says HDF5's failures in the same words:
#: :func:`~dnnmask_xr.act.write.write_failure`).
FULL_DISK = {errno.ENOSPC: "No space left on device",
             errno.EFBIG: "File too large for the file-size limit of this process (ulimit -f)"}


#: Why a file cannot be made or put in place, by the errno of the error Python raised.
_WHY = {errno.ENOENT: "folder {folder!r} does not exist",
        errno.ENOTDIR: "a folder on its path is a file",
        errno.EISDIR: "it is a folder; name a file in it",
        errno.EACCES: "folder {folder!r} is not writable",
        errno.EPERM: "folder {folder!r} is not writable",
        errno.EROFS: "folder {folder!r} is not writable (a read-only file system)",
        errno.ELOOP: "its symbolic links lead in a circle (or too deep)",
        errno.ENAMETOOLONG: "its name is longer than the file system takes"}


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; put it at ``path`` on success.

    For outputs that are folders (a zarr store). The folder
    (``.dnnmask-<random>.tmp``) is removed on any exception, and by a
    watchdog if the process dies. On success every file and folder in it is
    synced, then it is renamed to ``path``; a folder already there (the
    caller checked that it may be replaced) is first renamed aside and
    removed after. Between those two renames, which follow each other at
    once, ``path`` does not exist: a folder cannot be renamed over one that
    holds files.

    Yields
    ------
    Path
        The empty folder to write in.
    """
    target = real_target(path)
    refuse_held_open(path, target)
    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=target.parent))
    with _removed_unless_whole(tmp, lambda: shutil.rmtree(tmp, ignore_errors=True)):
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                sync_path(Path(folder, name))
            sync_path(Path(folder))
        refuse_held_open(path, target)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX,
                                        dir=target.parent))
            os.replace(target, old)  # over the empty folder just made
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    sync_path(target.parent)


def _remove_file(tmp: Path) -> None:
    # never made (its folder is missing or a file) or gone already: nothing to remove
    with contextlib.suppress(OSError):
        tmp.unlink()


@contextlib.contextmanager
def _removed_unless_whole(tmp: Path, remove: Callable[[], None]) -> Iterator[None]:
    """Call ``remove`` (of ``tmp``) on any exception in the block; watch ``tmp`` meanwhile.

    Starting the watchdog is inside the ``try``: a Ctrl-C while it starts
    (a fork and an exec, the longest step of a small write) removes the
    file too.
    """
    pid = os.getpid()
    try:
        with removed_if_the_process_ends(tmp):
            yield
    except BaseException:
        # a forked child ending (its copy of the caller's generator closed) leaves
        # the parent's write alone
        if os.getpid() == pid:
            remove()
        raise


#: The watchdog: waits for "done" on its stdin; if the pipe closes first (every process
#: that could write to it has ended), removes the temporary file (or folder) named by $1.
_WATCHDOG = 'read -r line; [ "$line" = done ] || exec rm -rf -- "$1"'


@contextlib.contextmanager
def removed_if_the_process_ends(tmp: Path) -> Iterator[None]:
    """Remove ``tmp`` (a file, or a folder and all in it) even if the process dies.

    A signal whose default action ends the process (SIGTERM or SIGHUP while
    the write runs outside the main thread, where Python cannot install a
    handler), SIGKILL, a crash, or the interpreter leaving a daemon thread
    mid-write: none lets this process clean up. So a small shell process,
    in a session of its own (a terminal's SIGHUP or Ctrl-C does not reach
    it), holds the other end of a pipe and removes the file when the pipe
    closes without the word ``done``. Without ``/bin/sh`` the write goes on
    unwatched.
    """
    try:
        watchdog = subprocess.Popen(
            ["/bin/sh", "-c", _WATCHDOG, "dnnmask-watchdog", os.fspath(tmp)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
    except OSError:
        yield
        return
    pid = os.getpid()
    try:
        yield
    finally:
        # said only by this process: a forked child's copy ending says nothing
        if os.getpid() == pid:
            # "done" once the file is renamed into place; a file still here is a write
            # that failed, removed by the watchdog as well as by the caller, so that a
            # second Ctrl-C that cuts the caller's removal short leaves nothing either
            done = b"" if os.path.lexists(tmp) else b"done\n"
            with contextlib.suppress(OSError):
                watchdog.communicate(done)


#: What fsync of a folder gives on file systems that cannot sync one: nothing to do there.
_CANNOT_SYNC = (errno.EINVAL, errno.EBADF, errno.ENOTSUP)


def sync_path(path: Path) -> None:
    """Flush a file's (or a folder's) data and metadata to the disk (``fsync``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if not (path.is_dir() and err.errno in _CANNOT_SYNC):
            raise
    finally:
        os.close(fd)


def start_writeback(fd: int) -> None:
    """Have the kernel start writing a file's changed pages to the disk, without waiting.

    A large write's data then go to the disk while the next are deflated,
    and the sync before the rename waits for the last of them only: for a
    1 GB streamed write on this project's test machine, 0.9 s at close
    became 0.25 s. Linux's ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, as
    databases use it to spread their checkpoints; elsewhere nothing is
    done, and the sync before the rename does it all. It promises nothing:
    durability is :func:`sync_path`'s.
    """
    call = _sync_file_range()
    if call is not None:
        call(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # a failure changes nothing: not checked


#: ``sync_file_range``'s flag: start writing the range's dirty pages, wait for nothing.
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only where it is used: dnn_mask starts without it

    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # a C library without it
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    return call


def _take_permissions(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the permissions of the file it replaces, or of a new file."""
    try:
        old = os.stat(target)
    except FileNotFoundError:
        # mkstemp (and HDF5) create files as they please; give the result the
        # permissions an ordinary new file would get
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        return
    # owner and group first: changing them may clear mode bits
    for uid in (old.st_uid, -1):
        try:
            os.chown(tmp, uid, old.st_gid)
            break
        except PermissionError:
            continue
    os.chmod(tmp, stat.S_IMODE(old.st_mode) & 0o777)
