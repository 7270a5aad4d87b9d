"""Zarr stores at fsspec URLs (``s3://``, ``gs://``, ``memory://``, ...), whole or absent.

An object store has no rename, so a store at a URL cannot be written
beside its place and moved there as a local one is
(:func:`~dnnmask_xr._atomic.atomic_folder`). It is written in place with
its root ``zarr.json`` held back until everything else is written: zarr,
xarray and this package open a store by that object, so until it is
written nothing opens the store. A write that fails or is interrupted
removes what it wrote. A store already at the URL is refused rather than
replaced, since writing over it would leave it half old, half new for a
while; so is a second write begun while one is under way (each puts a
mark first and removes it last, and checks before its root that no other
mark is there). zarr's ``FsspecStore`` does the writing, with the caller's
``storage_options``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import fsspec
from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import FsspecStore, WrapperStore

from dnnmask_xr.errors import ActFileError, UsageError

#: The object that makes a folder of objects a zarr store (its root group's metadata).
ROOT = "zarr.json"
#: The start of the name of the object a write puts first and removes last, a random end.
WRITING = ".dnnmask-writing-"


def is_store_at(url: str, storage_options: Mapping[str, Any] | None) -> bool:
    """Tell whether a zarr store is at ``url`` (its root ``zarr.json`` is there).

    Raises
    ------
    UsageError
        If fsspec knows no file system for the URL, or not with these options.
    ActFileError
        If the file system cannot be asked (no access, no network).
    """
    fs, path = _file_system(url, storage_options)
    try:
        return bool(fs.exists(f"{path}/{ROOT}"))
    except OSError as err:
        raise ActFileError(f"cannot open {url!r}: {err}") from None


def _file_system(url: str, storage_options: Mapping[str, Any] | None
                 ) -> tuple[fsspec.AbstractFileSystem, str]:
    """Give fsspec's file system for ``url`` and the path in it, or say in one line why not."""
    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ValueError, ImportError, TypeError) as err:
        # an unknown protocol, a file system whose package is missing (s3fs), an option
        # it does not take
        raise UsageError(f"cannot reach {url!r}: {' '.join(str(err).split())}") from None
    return fs, path.rstrip("/")


@contextlib.contextmanager
def store_at_url(url: str, storage_options: Mapping[str, Any] | None
                 ) -> Iterator[_RootWrittenLast]:
    """Give a zarr store to write at ``url``, which appears whole when the block ends.

    Raises
    ------
    ActFileError
        If anything is at ``url`` already.
    UsageError
        If fsspec knows no file system for the URL, or not with these options.
    """
    fs, path = _file_system(url, storage_options)
    _check_free(fs, path, url)
    store = _RootWrittenLast(FsspecStore.from_url(url, storage_options=dict(
        storage_options or {})), _HeldRoot())
    # the first object: a write that begins later finds something there and is refused
    mark = f"{path}/{WRITING}{uuid.uuid4().hex}"
    try:
        try:
            fs.pipe_file(mark, b"")
        except FileNotFoundError:
            # the mark is the first object: its error would name it, not the store
            raise ActFileError(f"cannot write {url!r}: the file system has no folder to put "
                               "it in (fsspec's local file system, file://, makes one with "
                               "storage_options={'auto_mkdir': True})") from None
        yield store
        root = store.held.value
        if root is None:
            raise ActFileError(f"cannot write {url!r}: zarr wrote no root group")
        _check_alone(fs, path, mark, url)
        # the last object: from now on the store opens
        fs.pipe_file(f"{path}/{ROOT}", root.to_bytes())
        fs.rm(mark)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path, recursive=True)
        raise


def check_free(url: str, storage_options: Mapping[str, Any] | None) -> None:
    """Check that nothing is at ``url``, where :func:`store_at_url` would write a store.

    What a dry run asks before it says that a write would go ahead.

    Raises
    ------
    ActFileError
        If anything is at ``url``, or the file system cannot be asked.
    UsageError
        If fsspec knows no file system for the URL, or not with these options.
    """
    fs, path = _file_system(url, storage_options)
    _check_free(fs, path, url)


def _check_free(fs: fsspec.AbstractFileSystem, path: str, url: str) -> None:
    try:
        there = fs.exists(path)
    except OSError as err:
        raise ActFileError(f"cannot write {url!r}: {err}") from None
    if there:
        raise ActFileError(f"cannot write {url!r}: something is there already, and a store at "
                           "a URL is never replaced (an object store has no rename to replace "
                           "it whole); remove it first or name another URL")


def _check_alone(fs: fsspec.AbstractFileSystem, path: str, mark: str, url: str) -> None:
    """Refuse to complete a store that another write began at the same moment.

    Two writes that both found nothing at the URL (an object store cannot
    create an object only if it is absent) write into each other's store:
    the one that completes would open with chunks of the other (zarr does
    not write a chunk of fill values, so the other's stays). Each sees the
    other's mark here, or its own gone (the other failed and removed
    everything), or, if the other looked before this one's mark was there
    and is done, its root; it fails, and what both wrote is removed.
    """
    # the path holds no pattern of its own (check_output refuses one); file systems give
    # their paths with or without the leading slash
    if {found.lstrip("/") for found in fs.glob(f"{path}/{WRITING}*")} != {mark.lstrip("/")}:
        raise ActFileError(f"cannot write {url!r}: another write to it began at the same "
                           "time, and each would leave the other's objects in the store; "
                           "write again, one at a time")
    if fs.exists(f"{path}/{ROOT}"):
        # the other began in the same instant and is done: its store holds objects of
        # this write, and goes with them (absent is found out, mixed values are not)
        raise ActFileError(f"cannot write {url!r}: another write to it began at the same "
                           "time and completed a store holding objects of both, which is "
                           "removed; write again, one at a time")


class _HeldRoot:
    """The root's metadata as zarr last wrote it, shared by every copy of the store."""

    def __init__(self) -> None:
        self.value: Buffer | None = None


class _RootWrittenLast(WrapperStore[FsspecStore]):
    """A store that keeps its root ``zarr.json`` in memory, for :func:`store_at_url` to write.

    Every other object goes to the wrapped store as zarr writes it; dask's
    tasks write chunks only, so a copy of this store in a worker process
    holds no root.
    """

    def __init__(self, store: FsspecStore, held: _HeldRoot | None = None) -> None:
        super().__init__(store)
        self.held = _HeldRoot() if held is None else held

    def _with_store(self, store: FsspecStore) -> _RootWrittenLast:
        # zarr makes read-only and opened copies: they see the same held root
        return type(self)(store, self.held)

    async def get(self, key: str, prototype: BufferPrototype,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        if key != ROOT:
            return await self._store.get(key, prototype, byte_range)
        if self.held.value is None:
            return None
        if byte_range is not None:
            # zarr reads metadata whole, never a range of it
            raise ActFileError(f"zarr asked for part of {key!r}, which a store being written "
                               "keeps whole")
        return prototype.buffer.from_bytes(self.held.value.to_bytes())

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]
                                 ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        if key == ROOT:
            return self.held.value is not None
        return await self._store.exists(key)

    async def set(self, key: str, value: Buffer) -> None:
        if key == ROOT:
            self.held.value = value
        else:
            await self._store.set(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        if key == ROOT:
            if self.held.value is None:
                self.held.value = value
        else:
            await self._store.set_if_not_exists(key, value)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        for key, value in values:
            await self.set(key, value)

    async def delete(self, key: str) -> None:
        if key == ROOT:
            self.held.value = None
        else:
            await self._store.delete(key)

    # the mark of this write is not zarr's: zarr lists no such object (consolidating
    # the metadata would warn of it), nor clears it away

    def list(self) -> AsyncIterator[str]:
        return _unmarked(self._store.list())

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        return _unmarked(self._store.list_prefix(prefix))

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        return _unmarked(self._store.list_dir(prefix))

    async def delete_dir(self, prefix: str) -> None:
        # zarr clears the place of a store it creates (mode "w"): nothing is there but
        # the mark of this write (store_at_url), which stays
        if not prefix:
            self.held.value = None
        async for key in self.list_prefix(prefix):
            await self._store.delete(key)

    async def _get_many(self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
                        ) -> AsyncIterator[tuple[str, Buffer | None]]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)


async def _unmarked(keys: AsyncIterator[str]) -> AsyncIterator[str]:
    """Give ``keys`` without the marks of writes under way (:data:`WRITING`)."""
    async for key in keys:
        if not key.startswith(WRITING):
            yield key
