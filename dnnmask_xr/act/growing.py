"""An ``.act.h5`` written a part at a time, its layers growing along ``stimulus``.

The one-pass route of a streamed write (:class:`~dnnmask_xr.ActWriter`)
that need not survive a crash: each part's values are deflated and stored
straight into the output's temporary file, every layer a dataset that
grows along ``stimulus`` by the part's length, so each byte is written
once. The stimulus table, the unit labels and the attributes go in last,
once every part is in, then the file is put in place as any write's is
(:func:`~dnnmask_xr.act.write.output_file`): whole, or not at all. The
final plan passes every check of :func:`~dnnmask_xr.act.write.write`
before the file is put in place.

A run that may be resumed stores its parts as files of their own instead
(:mod:`~dnnmask_xr.act.parts`), and so does a ``.nc`` output, whose
dimensions are fixed as each layer's group is created.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import h5py

from dnnmask_xr._args import path_arg
from dnnmask_xr.act.layer_writer import (
    GZIP_LEVEL,
    ChunksInOrder,
    LayerReport,
    store_values,
)
from dnnmask_xr.act.plan import Plan
from dnnmask_xr.act.stimulus import StimulusTable
from dnnmask_xr.act.write import (
    BOOKKEEPING_BYTES,
    RESERVED_BYTES,
    ActLayout,
    OutputFile,
    SaveReport,
    WriteOptions,
    checked,
    metadata_bytes,
    output_file,
    provenance_stamp,
)
from dnnmask_xr.errors import UsageError


class GrowingWrite:
    """The output of a streamed write, open from its first part until :meth:`finish`.

    Every method is called from one thread (HDF5 errors that h5py can only
    report as "ignored" are kept for the thread that writes).

    Parameters
    ----------
    first
        The first part: its layers (names, unit labels, dtypes, attributes)
        are every part's.
    path
        The output; an ``.act.h5``.
    options
        Memory and threads.
    chunks
        Each layer's chunks; every part but the last is a whole number of
        chunks long along ``stimulus``.

    Raises
    ------
    UsageError
        If ``path`` is not an ``.act.h5``.
    ActFileError
        If the output cannot be created.
    """

    def __init__(self, first: Plan, path: str | os.PathLike[str], options: WriteOptions,
                 chunks: Mapping[str, tuple[int, ...]]) -> None:
        self.target = path_arg(path, "output")
        first, layout_of = checked(first, self.target)
        # what every part is, without the first part's values (not held once stored)
        self._first = first.described()
        if layout_of is not ActLayout:
            raise UsageError(f"{self.target!r}: only an .act.h5 grows a part at a time")
        self._stack = contextlib.ExitStack()
        self._tables: list[StimulusTable] = []
        self._reports = {layer.name: LayerReport(layer.name, "encoded")
                         for layer in self._first.layers}
        with self._failing():
            self._out: OutputFile = self._stack.enter_context(output_file(self.target, options))
            _OPEN.add(self)
            self._layout = self._stack.enter_context(
                contextlib.closing(ActLayout(self._out.root)))
            self._datasets: dict[str, h5py.Dataset] = {}
            for layer in self._first.layers:
                self._out.room.reserve(metadata_bytes(layer.attrs))
                sink = self._layout.sink(layer, growing=True)
                self._datasets[layer.name] = sink.create(
                    (0, *layer.shape[1:]), layer.dtype,
                    tuple(max(1, step) for step in chunks[layer.name]), GZIP_LEVEL, None)

    @property
    def n_stimuli(self) -> int:
        """Stimuli stored so far."""
        return sum(len(table.ids) for table in self._tables)

    def add(self, part: Plan) -> None:
        """Store the next part's values after those stored.

        ``part`` holds the first part's layers, in order, with computed
        values (checked by the caller against the first part).
        """
        with self._failing():
            start = self.n_stimuli
            n = len(part.stimulus.ids)
            self._out.room.reserve(BOOKKEEPING_BYTES * len(part.layers))
            # the part is in memory: its layers' chunks go to the pool as one stream
            deflating = ChunksInOrder(self._out.pool)
            for layer in part.layers:
                dataset = self._datasets[layer.name]
                dataset.resize(start + n, axis=0)
                store_values(dataset, start, layer.shape, layer.values.read_block,
                             self._out.budget(layer.name, part.nbytes),
                             self._reports[layer.name], deflating)
            deflating.finish()
            self._tables.append(part.stimulus)
            if len(self._tables) >= _JOINED_EVERY:
                # a run of many parts holds its stimulus IDs, not a table per part
                self._tables = [StimulusTable.joined(self._tables)]

    def finish(self, inputs: Mapping[str, str], attrs: Mapping[str, Any]) -> SaveReport:
        """Store the stimulus table, labels and attributes, and put the file in place.

        Parameters
        ----------
        inputs
            The text files the batches were read with, never to be replaced.
        attrs
            The root attributes (those every batch agreed on, under the
            run's own).

        Raises
        ------
        DnnMaskError, OutputIsInputError
            If the whole output holds what a write refuses (stimulus IDs
            repeated across parts): nothing is written.
        ActFileError
            If the file cannot be completed.
        """
        with self._failing():
            stimulus = StimulusTable.joined(self._tables)
            whole = replace(self._first.described(len(stimulus.ids)), stimulus=stimulus,
                            inputs=dict(inputs), attrs=dict(attrs))
            # the same checks as any write of the whole, now that it is known
            whole, _ = checked(whole, self.target)
            root_attrs = {**whole.attrs, **provenance_stamp()}
            room = self._out.room
            room.reserve(metadata_bytes(root_attrs, whole.stimulus))
            self._layout.write_root(root_attrs, whole.stimulus)
            for layer in whole.layers:
                room.reserve(metadata_bytes(layer.attrs, layer.labels))
                self._layout.finish_layer(layer, self._datasets[layer.name])
            room.reserve(RESERVED_BYTES)
        # the file is closed, synced and renamed into place
        self._end()
        return SaveReport(self.target, tuple(self._reports.values()))

    def abandon(self) -> None:
        """Stop without an output: the temporary file is removed."""
        with contextlib.suppress(_Abandoned):
            self._end(_Abandoned())

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """End the write on an error: the temporary file is removed, the error said once."""
        try:
            yield
        except BaseException as err:
            self._end(err)
            raise

    def _end(self, err: BaseException | None = None) -> None:
        _OPEN.discard(self)
        stack, self._stack = self._stack, contextlib.ExitStack()
        if err is None:
            stack.close()
        elif not stack.__exit__(type(err), err, err.__traceback__):
            raise err


#: Parts whose stimulus tables are held apart before they are joined.
_JOINED_EVERY = 32
#: The outputs growing in this process, which a forked child must leave alone.
_OPEN: weakref.WeakSet[GrowingWrite] = weakref.WeakSet()


def _leave_to_the_parent() -> None:
    """In a forked child: send its copy's writes to the growing outputs nowhere.

    A child that ends as a program does (``sys.exit`` after ``os.fork``)
    runs HDF5's exit handler, which closes every file HDF5 holds open: the
    parent's output, as it was at the fork, flushed and cut to that length
    under the parent writing on. Its file descriptor now leads to
    ``/dev/null`` in the child; the temporary file and its watchdog are
    left to the parent by :func:`~dnnmask_xr._atomic.atomic_path`.
    """
    for write in list(_OPEN):
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            fd = write._out.root.id.get_vfd_handle()
            nowhere = os.open(os.devnull, os.O_RDWR)
            os.dup2(nowhere, fd)
            os.close(nowhere)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_leave_to_the_parent)


class _Abandoned(Exception):
    """The run stopped without an output."""
