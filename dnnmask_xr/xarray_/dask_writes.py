"""A dask-backed layer's output chunks, deflated by dask's tasks where the values are.

When :func:`~dnnmask_xr.save_act` writes a layer backed by dask (a set of
files opened with ``chunks=``, a lazy z-score, a mask of them), each task
computes one block of the layer and deflates the output chunks inside it,
and the writer (:func:`~dnnmask_xr.act.layer_writer.write_deflated`) only
stores the compressed bytes it gets back: on a ``dask.distributed``
cluster the values never pass through the client, only compressed chunks.
The output's chunks are chosen so that no chunk spans two blocks (the
blocks are rechunked first where their edges leave no such chunks), so
every chunk is deflated once, by one task, and no two tasks share one.

With a distributed client the whole layer is one submission, its results
stored as they complete; with any other scheduler the blocks are computed
a few at a time, as many as the memory budget holds.

Writes whose tasks write themselves (a zarr store's chunks, stored by
dask's tasks) are computed under :func:`every_task_ended`, so that a
failed computation comes out only once none of its tasks can write any
more, and what it wrote can be removed for good.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr

from dnnmask_xr.act._interrupt import interruptible
from dnnmask_xr.act.chunking import chunk_grid, output_chunks
from dnnmask_xr.act.layer_writer import deflated_chunk
from dnnmask_xr.act.plan import ComputedValues

#: An axis whose block edges allow only chunks this many times shorter than wanted is
#: rechunked to whole chunks instead.
_WORST_SHRINK = 4


def deflated_by_tasks(array: xr.DataArray, stored: tuple[int, ...],
                      values: ComputedValues) -> ComputedValues:
    """Give ``values`` the chunks a dask-backed layer's tasks deflate, if it is dask-backed.

    Parameters
    ----------
    array
        The layer.
    stored
        Its shape as stored: its own dims, then length-1 axes up to 4.
    values
        How the layer's values are read otherwise.
    """
    if array.chunks is None or 0 in stored:
        # not dask-backed; and .data would read a lazily read layer whole, past the budget
        return values
    data = array.data
    if not hasattr(data, "__dask_graph__"):  # chunked, but not by dask
        return values
    data = data.reshape(stored) if data.ndim != len(stored) else data
    steps, data = aligned_chunks(data, output_chunks(data.shape, array.dtype.itemsize,
                                                     data.chunks[0][0]))

    def deflated(memory: int) -> Iterator[list[tuple[tuple[int, ...], bytes]]]:
        return _computed(data, steps, memory)

    return dataclasses.replace(values, chunks=steps, deflated=deflated)


def blocks_as_declared(name: str, array: xr.DataArray) -> xr.DataArray:
    """Give a dask-backed layer whose tasks give blocks as its graph declares them.

    A graph says each block's shape and the dtype (``map_blocks(...,
    dtype=...)``, ``apply_ufunc(..., output_dtypes=...)``); a task may give
    another. Every write takes the blocks through here: a block of another
    dtype or byte order becomes the declared dtype, as NumPy's route and
    xarray store such values, and a block of another shape is refused (its
    values cannot be placed).

    Raises
    ------
    DnnMaskError
        From the task of a block of another shape, naming the layer.
    """
    if array.chunks is None or array.size == 0:
        return array  # not dask-backed (.data would read a lazily read layer whole)
    data = array.data
    if not hasattr(data, "__dask_graph__"):
        return array
    return array.copy(data=data.map_blocks(_block_as_declared, name, dtype=data.dtype,
                                           meta=np.empty((0,) * data.ndim, data.dtype)))


def _block_as_declared(block: Any, name: str, block_info: dict | None = None) -> np.ndarray:
    """Give one block (in a dask task) as its array declares it, or refuse its shape."""
    from dnnmask_xr.errors import DnnMaskError

    declared = block_info[None]
    values = np.asarray(block, dtype=declared["dtype"])
    if values.shape != tuple(declared["chunk-shape"]):
        raise DnnMaskError(
            f"layer {name!r}: a dask task gave a block of shape {values.shape} where the "
            f"layer's graph says {tuple(declared['chunk-shape'])} (block "
            f"{tuple(declared['chunk-location'])}); give map_blocks or apply_ufunc the "
            "chunks its function returns")
    return values


def aligned_chunks(data: Any, wanted: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
    """Choose regular output chunks that tile a dask array's blocks, near ``wanted``.

    Along each axis the chunk length is the longest at most ``wanted`` that
    divides every edge between blocks, so that no chunk spans two blocks
    (no two tasks write one chunk, and none is computed twice); an axis
    whose edges allow only much shorter chunks is rechunked to blocks of
    whole chunks first.

    Returns
    -------
    steps, data
        The chunks, and the array (rechunked where needed).
    """
    steps, rechunk = [], {}
    for axis, (blocks, want, size) in enumerate(zip(data.chunks, wanted, data.shape,
                                                    strict=True)):
        want = max(1, min(want, size))
        edges = np.cumsum(blocks)[:-1]
        common = math.gcd(*map(int, edges)) if len(edges) else 0
        step = want if not common else max(d for d in range(1, min(want, common) + 1)
                                           if common % d == 0)
        if step * _WORST_SHRINK < want:
            # blocks of whole chunks, about as long as they were
            rechunk[axis] = want * max(1, round(float(np.median(blocks)) / want))
            step = want
        steps.append(step)
    return tuple(steps), (data.rechunk(rechunk) if rechunk else data)


def _computed(data: Any, steps: tuple[int, ...],
              memory: int) -> Iterator[list[tuple[tuple[int, ...], bytes]]]:
    """Compute every block's deflated chunks; yield them as they come."""
    import dask

    tasks = data.map_blocks(_deflated_block, steps, dtype=object,
                            chunks=tuple((1,) * len(blocks) for blocks in data.chunks),
                            meta=np.empty((0,) * data.ndim, dtype=object))
    delayed = list(tasks.to_delayed().ravel())
    client = _distributed_client()
    if client is not None:
        yield from _on_cluster(client, delayed)
        return
    block_bytes = max(math.prod(max(blocks) for blocks in data.chunks) * data.dtype.itemsize, 1)
    # a block's values and its compressed chunks are held at once, per block computed
    batch = max(1, memory // (2 * block_bytes))
    for start in range(0, len(delayed), batch):
        # a block can take seconds to compute: a signal stops it where it is
        with interruptible():
            results = dask.compute(*delayed[start:start + batch])
        for result in results:
            yield result.item()


def _on_cluster(client: Any, delayed: list[Any]) -> Iterator[list[tuple[tuple[int, ...], bytes]]]:
    """Submit every block at once; take each one's chunks as it completes, then let it go."""
    from distributed import as_completed

    futures = client.compute(delayed)
    try:
        for future in as_completed(futures):
            with interruptible():
                chunks = future.result().item()
            future.release()
            yield chunks
    finally:
        # an error or an interrupt stops what the workers have not done yet
        client.cancel(futures)


def _distributed_client() -> Any | None:
    """Give the ``dask.distributed`` client dask computes with now, or None."""
    import dask.base

    scheduler = dask.base.get_scheduler()
    owner = getattr(scheduler, "__self__", None)
    try:
        from distributed import Client
    except ImportError:
        return None
    return owner if isinstance(owner, Client) else None


def _deflated_block(block: np.ndarray, steps: tuple[int, ...],
                    block_info: dict | None = None) -> np.ndarray:
    """Deflate the output chunks of one block (in a dask task); give them with their offsets."""
    origin = [start for start, _ in block_info[0]["array-location"]]
    chunks = []
    for index in chunk_grid(block.shape, steps):
        local = tuple(i * step for i, step in zip(index, steps, strict=True))
        piece = block[tuple(slice(start, start + step)
                            for start, step in zip(local, steps, strict=True))]
        offset = tuple(int(start + first) for start, first in zip(local, origin, strict=True))
        chunks.append((offset, deflated_chunk(piece, steps)))
    result = np.empty((1,) * block.ndim, dtype=object)
    result[(0,) * block.ndim] = chunks
    return result


@contextlib.contextmanager
def every_task_ended() -> Iterator[None]:
    """Compute with dask in the block so that a failure comes out only once every task ended.

    dask's local threads give a task's error back at once, while the tasks
    other threads run go on (nothing stops a thread), and a distributed
    client's ``get`` gives it back while the workers' tasks go on: tasks
    that write (zarr's chunks) would then write after the caller removed
    what the failed computation wrote. Here dask's scheduler is wrapped
    for the block: with threads, each computation gets a pool of its own,
    whose tasks not yet begun are cancelled on an error and whose running
    ones are waited for; on a distributed cluster, every task's future is
    waited for (tasks begun on a worker cannot be stopped, and a cancelled
    future does not say when its task ends). The synchronous scheduler has
    no other task running, and dask's process pool is shut down, waiting,
    at the end of each computation; any other scheduler is used as it is.
    """
    import dask
    import dask.base
    import dask.threaded

    scheduler = dask.base.get_scheduler()
    client = _distributed_client()

    def get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        if client is not None:
            return _waited_on_cluster(client, dsk, keys, **kwargs)
        if scheduler is None or scheduler is dask.threaded.get:
            return _waited_in_threads(dsk, keys, **kwargs)
        return scheduler(dsk, keys, **kwargs)

    with dask.config.set(scheduler=get):
        yield


def _waited_in_threads(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """Compute with dask's threads, on a pool of its own ended (waiting) before returning."""
    from concurrent.futures import ThreadPoolExecutor

    import dask
    import dask.threaded
    from dask.system import CPU_COUNT

    workers = (kwargs.pop("num_workers", None) or dask.config.get("num_workers", None)
               or CPU_COUNT)
    kwargs.pop("pool", None)
    # dask's own executor where it has one: it carries contextvars into the tasks
    executor = getattr(dask.threaded, "ContextAwareThreadPoolExecutor", ThreadPoolExecutor)
    pool = executor(workers)
    try:
        return dask.threaded.get(dsk, keys, pool=pool, **kwargs)
    finally:
        # after an error: the tasks not begun are dropped, the running ones waited for
        pool.shutdown(wait=True, cancel_futures=True)


def _waited_on_cluster(client: Any, dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """Compute on a distributed cluster; on an error, wait for every working task to end first.

    The keys dask asks for are the tasks that do the work (zarr's: each
    stores one chunk) or, in later dask, one task that gathers theirs. A
    future is held for each task the keys depend on too, so that the
    cluster runs every one to its end and each is waited for: a task begun
    on a worker cannot be stopped, and a cancelled future does not say when
    its task ends. Each of those futures is let go as its task completes,
    so that their values are not kept.
    """
    from dask.core import flatten, get_dependencies
    from distributed import as_completed, wait

    graph = dict(dsk.__dask_graph__() if hasattr(dsk, "__dask_graph__") else dsk)
    asked = list(flatten(keys))
    working = {dependency for key in asked
               for dependency in get_dependencies(graph, key)}.difference(asked)
    results, futures = client.get(graph, [keys, list(working)], sync=False, **kwargs)
    held = {future.key: future for future in [*flatten(results), *futures]}
    try:
        for future in as_completed(list(held.values())):
            if future.status == "error":
                future.result()  # raises the task's error
            if future.key in working:
                held.pop(future.key).release()
        return client.gather(results)
    except BaseException:
        wait(list(held.values()))
        raise
