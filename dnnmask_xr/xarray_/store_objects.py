"""A zarr store read as one that holds every chunk: an object missing from it is an error.

zarr reads a chunk it does not find as the array's fill value (NaN, ``''``,
0), as it must for a store written without the chunks that equal it. The
stores :func:`~dnnmask_xr.save_act` writes hold every chunk (their root says
so: :data:`~dnnmask_xr.act.layout.EXACT_STORE`), so there a missing object
is damage (a copy cut short, a program that stopped writing): values and
labels read as fill values without a word. zarr is the ``zarr`` extra's,
imported by this module, which :mod:`~dnnmask_xr.xarray_.zarr_store` imports
only once zarr is found.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore


class MissingObjectError(Exception):
    """An object of a store that holds every chunk is not there.

    Not a :class:`~dnnmask_xr.errors.DnnMaskError`: the read path says it
    as the reason why a layer or the store cannot be read, naming them
    (:func:`~dnnmask_xr.xarray_.array.read_failures_said`).
    """


class EveryObject(WrapperStore[Store]):
    """A store read with every object it is asked for there, metadata aside."""

    def _with_store(self, store: Store) -> EveryObject:
        # zarr makes read-only and opened copies: they check alike
        return type(self)(store)

    async def get(self, key: str, prototype: BufferPrototype,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        """Give the object at ``key``; raise :class:`MissingObjectError` if a chunk is absent."""
        found = await self._store.get(key, prototype, byte_range)
        name = key.rsplit("/", 1)[-1]
        # zarr asks for metadata that may be absent (zarr.json of a node it probes,
        # zarr 2's .zarray and .zattrs); anything else is a chunk
        if found is None and name != "zarr.json" and not name.startswith("."):
            raise MissingObjectError(f"object {key!r} is missing, and a store dnnmask_xr "
                                     "wrote holds every chunk")
        return found

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]
                                 ) -> list[Buffer | None]:
        """Give the objects at ``key_ranges``, each checked as :meth:`get` checks it."""
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def _get_many(self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
                        ) -> AsyncIterator[tuple[str, Buffer | None]]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)
