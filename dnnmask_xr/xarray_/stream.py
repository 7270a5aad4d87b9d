"""Write activations a batch at a time, as a model produces them: :class:`ActWriter`.

Each batch is checked against the first on the caller's thread, then
stored by the one writer on a thread of its own, deflating on every core
while the caller computes the next batch. Stored where: straight into the
output's temporary file, its layers growing (:mod:`~dnnmask_xr.act.growing`,
each byte written once); or, for a run that may be resumed and for a
``.nc`` output, in parts (:mod:`~dnnmask_xr.act.parts`) whose compressed
chunks closing copies into the output, through the one writer again.
Either way (:mod:`~dnnmask_xr.xarray_.stream_storage`) the output obeys
every check of a write, and appears whole or not at all.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Mapping, Sequence, Set
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr

from dnnmask_xr._args import bool_arg, is_count, mapping_arg, path_arg
from dnnmask_xr.act._interrupt import LostInterrupts, signals_held
from dnnmask_xr.act.checks import (
    NC_SUFFIX,
    ZARR_SUFFIX,
    check_not_input,
    check_output,
    is_url,
)
from dnnmask_xr.act.chunking import output_chunks
from dnnmask_xr.act.files import open_file
from dnnmask_xr.act.layout import count_from_one
from dnnmask_xr.act.parts import STAMPED, changed_attrs, part_plan, plan_difference
from dnnmask_xr.act.plan import BlockReader, ComputedValues, Plan, PlannedLayer
from dnnmask_xr.act.stimulus import StimulusTable
from dnnmask_xr.act.write import (
    DEFAULT_MEMORY,
    SaveReport,
    WriteOptions,
    progress_bar,
    storable,
)
from dnnmask_xr.errors import ActFileError, DnnMaskError, UsageError
from dnnmask_xr.formats.stim import Stimuli
from dnnmask_xr.xarray_.activations import DIMS_BY_RANK, Activations
from dnnmask_xr.xarray_.save import plan_layers, save_act
from dnnmask_xr.xarray_.stream_storage import GrowingOutput, PartFiles, end_storage


class ActWriter:
    """Write activations to one file a batch at a time, surviving a crash if asked.

    Use it as a context manager: :meth:`append` each batch as the model
    produces it; leaving the ``with`` (or :meth:`close`) writes the file
    and returns the same :class:`~dnnmask_xr.SaveReport` as
    :func:`~dnnmask_xr.save_act`. Nothing is at ``path`` until then, and the
    file equals what :func:`~dnnmask_xr.save_act` of all the batches
    joined along ``stimulus`` would hold (values, labels, stimulus table).

    Batches are stored as they come, a part at a time, by a thread of its
    own that deflates on every core, so the model's next batch is computed
    while the last one is written; :meth:`append` waits only while a part
    is still being written. An ``.act.h5`` run without ``resume`` stores
    each part straight into the output's temporary file; a resumable run,
    and a ``.nc`` output, store each part as a file of its own, which
    closing joins. Memory held: the part being written, plus the stimuli
    waiting to fill the next part (fewer than ``part_size``). Batches
    appended from several threads go in one at a time, each whole.

    Parameters
    ----------
    path
        The output, ending in ``.act.h5``, ``.nc`` or ``.act.zarr``.
    resume
        Keep what is stored if the run ends without an output (an
        exception, Ctrl-C, a kill, a power loss), and go on from what an
        earlier run with ``resume=True`` stored: :attr:`stimuli_done` says
        how many stimuli that is, and the next batch appended starts after
        them. Without it, a run that ends without an output leaves nothing.
    part_size
        Stimuli per part: each part is stored (with ``resume``, durably:
        written whole and synced) before it counts in :attr:`stimuli_done`.
        The first batch's length if None. A resumed run goes on in the
        stored parts' steps (their chunks' length along ``stimulus``),
        whatever is given.
    attrs
        Provenance for the file's root, as for :func:`~dnnmask_xr.save_act`:
        over the root attributes all ``Activations`` batches agree on.
    memory, threads
        The memory budget and threads of each write (see
        :func:`~dnnmask_xr.save_act`).
    progress
        Show a progress bar on stderr while the parts are joined at the end
        (an ``.act.h5`` run without ``resume`` has none to join).

    Raises
    ------
    UsageError
        If ``path`` ends in none of ``.act.h5``, ``.nc`` and ``.act.zarr``,
        is a URL (``s3://...``: save a local store there afterwards), or an
        option is out of range.
    ActFileError
        If ``path`` cannot be written, another writer streams to it, or
        (without ``resume``) an interrupted run's parts are in the way.

    Examples
    --------
    >>> with dx.ActWriter("run.act.h5") as out:               # doctest: +SKIP
    ...     for images, ids in loader:
    ...         out.append({"fc1": model(images)}, stimuli=ids)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resume: bool = False,
        part_size: int | None = None,
        attrs: Mapping[str, Any] | None = None,
        memory: int = DEFAULT_MEMORY,
        threads: int | None = None,
        progress: bool = False,
    ) -> None:
        self.path = path_arg(path, "output")
        # a path that cannot take the output is said before any batch is computed
        check_output(self.path)
        if is_url(self.path):
            # its parts are files beside the output, and a resumed run finds them there
            raise UsageError(f"ActWriter writes to a local path, not to the URL {self.path!r}; "
                             "stream to a local .act.zarr, then save_act(open_act(it), url)")
        if part_size is not None and not is_count(part_size):
            raise UsageError(f"part_size={part_size!r} is not a positive number of stimuli")
        resume, progress = bool_arg(resume, "resume"), bool_arg(progress, "progress")
        self._options = WriteOptions(memory=memory, threads=threads)
        #: the attrs given, over every batch's own
        self._given = dict(mapping_arg(attrs, "attrs"))
        #: the root attributes every Activations batch agrees on (None before the first)
        self._agreed: dict[str, Any] | None = None
        #: the file's: those agreed on under those given (or the stored run's)
        self._attrs = dict(self._given)
        self._progress = progress
        self._part_size = part_size
        #: what every batch is checked against: the first batch, or the first part
        self._first: Plan | None = None
        self._chunks: dict[str, tuple[int, ...]] = {}
        #: stimuli appended but not yet sent to a part: per layer, arrays in order
        self._waiting: list[tuple[dict[str, np.ndarray], StimulusTable]] = []
        self._batches = 0
        #: the .dmask.csv and .stim.csv files the batches were made with
        self._inputs: dict[str, str] = {}
        #: stimuli appended (an earlier run's stored ones included)
        self._appended = 0
        self._ended = False
        #: storing a part failed: the run takes no more batches
        self._failed = False
        # batches appended from several threads go in one at a time, whole
        self._serial = threading.RLock()
        self._report: SaveReport | None = None
        self._writing: Future | None = None
        #: the values of the part being written, and per layer an array a written part
        #: left, which the next batch is copied into: no new memory (and no page the
        #: kernel has to clear) for every batch
        self._in_flight: dict[str, np.ndarray] = {}
        self._spare: dict[str, np.ndarray] = {}
        #: the arrays this writer copied batches into, by id: only those are copied into
        #: again (a layer read into an array may be the caller's own memory)
        self._mine: weakref.WeakValueDictionary[int, np.ndarray] = (
            weakref.WeakValueDictionary())
        self._store: PartFiles | GrowingOutput = (
            PartFiles(self.path, resume)
            if resume or self.path.endswith((NC_SUFFIX, ZARR_SUFFIX))
            else GrowingOutput(self.path))
        if isinstance(self._store, PartFiles):
            try:
                if self._store.parts.paths:
                    self._resume()
            except BaseException:
                self._store.parts.close(keep=True)
                raise
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="dnnmask-stream")
        #: a Ctrl-C that Python could only report as "ignored" while this writer is open
        self._lost_interrupts = LostInterrupts()
        # a writer dropped without close() or abandon() lets go of what it stored (its
        # folder of parts and their lock, or its temporary file) as abandon() would
        self._ending = weakref.finalize(self, end_storage, self._writer, self._store, os.getpid())

    def _resume(self) -> None:
        """Take the first part as the first batch, and count the stimuli stored."""
        for path in self._store.parts.paths:
            with open_file(os.fspath(path)) as root:
                plan = part_plan(root)
                if self._first is None:
                    changed = changed_attrs(plan.attrs, self._attrs)
                    if changed:
                        # the file's provenance is the first part's: it would keep the run's
                        key = changed[0]
                        raise UsageError(
                            f"attrs gives {key}={self._attrs[key]!r}, but the run resumed "
                            f"from {str(self._store.parts.folder)!r} stored "
                            + (f"{key}={plan.attrs[key]!r}" if key in plan.attrs else
                               f"no {key!r}")
                            + "; a resumed run is given the attrs of the run it goes on from")
                    # what batches are held to, without the part's datasets (closed below)
                    self._first = plan.described()
                    self._chunks = {layer.name: layer.values.parts[0].chunks
                                    for layer in plan.layers}
                    first = len(plan.stimulus.ids)
                self._store.stored += len(plan.stimulus.ids)
                last = len(plan.stimulus.ids)
                # each part stores the attributes agreed on so far
                self._attrs = dict(plan.attrs)
        self._agreed = dict(self._attrs)
        self._appended = self._store.stored
        # a layer of no unit is stored unchunked (None): it sets no step (parts of such
        # layers alone go on in the first part's)
        lengths = [chunks[0] for chunks in self._chunks.values() if chunks is not None]
        steps = math.lcm(*lengths) if lengths else first
        # a part the size of no whole chunk is the last one a run wrote as it closed
        self._ended = last % steps != 0
        self._part_size = steps

    @property
    def stimuli_done(self) -> int:
        """Stimuli stored (with ``resume``, durably): what a resumed run goes on after."""
        return self._store.stored

    @property
    def n_stimuli(self) -> int:
        """Stimuli appended so far, stored or not yet (an earlier run's included)."""
        return self._appended

    def append(
        self,
        layers: Mapping[str, Any] | Activations,
        stimuli: Sequence[Any] | np.ndarray | Stimuli | None = None,
    ) -> None:
        """Add a batch: the same layers for the next stimuli.

        Parameters
        ----------
        layers
            Layer name to values: a NumPy array, a ``DataArray``, or
            anything ``numpy.asarray`` takes (a CPU tensor), with
            ``stimulus`` first, as :class:`~dnnmask_xr.Activations` takes
            them; or ``Activations``. The values are copied: the caller may
            reuse its buffers. An append interrupted (Ctrl-C) while it waits
            for the part before to be stored leaves the batch out, as
            ``n_stimuli`` says: append it again.
        stimuli
            The batch's stimulus IDs, or a :class:`~dnnmask_xr.Stimuli`
            table with one row per stimulus of the batch. None: the layers'
            own ``stimulus`` labels if they have any, else numbers that go
            on from the last batch's (``1..n`` over the whole run).

        Raises
        ------
        DnnMaskError
            If the batch differs from the first (layers, unit dims, unit
            numbers, dtypes, stimulus fields or header), or holds what the
            output could not store; the error names the batch and the layer.
        ActFileError
            If storing an earlier batch failed.
        """
        with self._serial:
            self._append(layers, stimuli)

    def _append(self, layers: Mapping[str, Any] | Activations, stimuli: object) -> None:
        self._lost_interrupts.raise_if_lost()
        if self._report is not None or self._writer is None:
            raise UsageError(f"the streamed write to {self.path!r} {self._ended_how()}; no "
                             "batch can be added")
        if self._ended:
            raise UsageError(f"the streamed write to {self.path!r} holds its last batch "
                             "already (a run stopped as it closed); close() writes the file")
        self._batches += 1
        number = self._batches
        try:
            given, plan = self._batch_plan(layers, stimuli)
        except DnnMaskError as err:
            raise type(err)(f"batch {number}: {err}") from None
        # the text files the batch was masked or labelled with are never replaced
        check_not_input(plan, self.path)
        self._inputs.update(plan.inputs)
        n = len(plan.stimulus.ids)
        if n == 0:
            return
        stored = {layer.name: layer.dtype for layer in self._first.layers}
        values = {layer.name: self._owned(layer.name, given[layer.name], stored[layer.name]
                                          ).reshape(layer.shape)
                  for layer in plan.layers}
        batch = (values, plan.stimulus)
        self._waiting.append(batch)
        self._appended += n
        try:
            self._check_writing()
            self._send(whole_parts=True)
        except BaseException:
            if self._waiting and self._waiting[-1] is batch:
                # not sent (a Ctrl-C while the part before is stored): the batch is out, as
                # the caller sees it, so that appending it again stores it once
                self._waiting.pop()
                self._appended -= n
                self._batches -= 1
            raise

    def _batch_plan(self, layers: Mapping[str, Any] | Activations,
                    stimuli: Sequence[Any] | np.ndarray | Stimuli | None,
                    ) -> tuple[Mapping[str, Any], Plan]:
        """Plan a batch, checked as any write and against the first; give its values too."""
        plain = self._plain_plan(layers, stimuli)
        if plain is not None:
            given, plan = plain
        else:
            acts = layers if isinstance(layers, Activations) else Activations(
                layers if isinstance(layers, Mapping) else _not_layers(layers))
            if not len(acts):
                raise DnnMaskError("a batch holds at least one layer")
            given = self._labelled(acts, layers, stimuli)
            plan = plan_layers(given, self._given)
        storable(plan, self.path)
        if self._first is None:
            # described: what batches are held to, without holding the caller's first batch
            self._first = plan.described()
        else:
            problem = plan_difference(self._first, plan)
            if problem:
                raise DnnMaskError(problem)
            if not len(self._first.stimulus.ids) and len(plan.stimulus.ids):
                # a batch of no stimulus tells no kind of IDs or fields: the first with some does
                self._first = plan.described()
        if isinstance(layers, Activations):
            self._agree(plan.attrs)
        return given, plan

    def _agree(self, attrs: Mapping[str, Any]) -> None:
        """Keep the root attributes every ``Activations`` batch agrees on, as a set of files.

        The provenance of such batches (``open_act``'s ``attrs``) is the
        file's, under the attrs given, as :func:`open_act` of a list of files
        keeps what they all agree on; the writer stamps its own ``date`` and
        ``software``. A mapping of layers has no root attributes to agree on.
        """
        own = {key: value for key, value in attrs.items() if key not in STAMPED}
        self._agreed = own if self._agreed is None else {
            key: value for key, value in self._agreed.items()
            if key in own and not changed_attrs({key: value}, {key: own[key]})}
        self._attrs = {**self._agreed, **self._given}

    def _plain_plan(self, layers: object, stimuli: object,
                    ) -> tuple[dict[str, np.ndarray], Plan] | None:
        """Plan a batch of NumPy arrays laid out as the first batch was, without xarray.

        The plan :func:`plan_layers` makes of the same arrays labelled as
        :class:`Activations` labels plain arrays, at a fraction of its cost on
        the caller's thread; None for a batch of anything else, or one that
        differs from the first in any way, which the labelled route plans
        (and says how it differs).
        """
        first = self._first
        if (first is None or type(layers) is not dict or isinstance(stimuli, Stimuli)
                or list(layers) != [layer.name for layer in first.layers]
                or first.stimulus.fields or first.stimulus.header):
            return None
        n = None
        for layer in first.layers:
            array = layers[layer.name]
            if (type(array) is not np.ndarray or not array.shape
                    or array.shape[1:] != layer.own_shape[1:] or array.dtype != layer.dtype
                    or n not in (None, array.shape[0]) or not _plainly_labelled(layer)):
                return None
            n = array.shape[0]
        if not n:
            return None
        if stimuli is None:
            ids = self._numbers(n)
        else:
            # copied, as the values are: the caller may refill one array of IDs every batch
            ids = np.array(stimuli)
            if ids.ndim != 1 or ids.size != n or ids.dtype.kind not in "iuU":
                return None
        plan = Plan(tuple(replace(layer, values=ComputedValues(
            (n, *layer.shape[1:]), layer.dtype,
            _block_of(layers[layer.name].reshape(n, *layer.shape[1:]))))
            for layer in first.layers), StimulusTable(ids), self._given)
        return layers, plan

    def _labelled(self, acts: Activations, given: object, stimuli: object) -> Activations:
        if isinstance(stimuli, Stimuli):
            return acts.with_stimuli(stimuli)
        n = acts.n_stimuli
        if stimuli is None:
            if isinstance(given, Activations) or any(
                    isinstance(layer, xr.DataArray) and "stimulus" in layer.coords
                    for layer in given.values()):
                return acts
            ids = self._numbers(n)
        else:
            # copied, as the values are: the caller may refill one array of IDs every batch
            ids = np.array(stimuli)
            if (ids.ndim != 1 or isinstance(stimuli, str | bytes | Set | Mapping)
                    or not hasattr(stimuli, "__len__")):
                raise DnnMaskError(f"stimuli is a {type(stimuli).__name__}, not a list of "
                                   "stimulus IDs; give one ID per stimulus (a list or 1-D "
                                   "array), or a Stimuli table")
            if ids.size != n:
                raise DnnMaskError(f"stimuli gives {ids.size} stimulus ID(s) for a batch of "
                                   f"{n} stimuli; give one ID per stimulus, or a Stimuli table")
        return Activations({name: layer.assign_coords(stimulus=ids)
                            for name, layer in acts.items()},
                           attrs=acts.attrs, stim_header=acts.stim_header)

    def _numbers(self, n: int) -> np.ndarray:
        """Give the IDs of ``n`` unlabelled stimuli: numbered over the run, as in one file."""
        return np.arange(self._appended + 1, self._appended + n + 1)

    def _send(self, *, whole_parts: bool) -> None:
        """Hand the waiting stimuli to the writing thread: whole parts, or all of them."""
        waiting = sum(len(table.ids) for _, table in self._waiting)
        if not waiting:
            return
        if self._part_size is None:
            self._part_size = waiting
        if not self._chunks:
            self._chunks = {layer.name: output_chunks(
                (self._part_size, *layer.shape[1:]), layer.dtype.itemsize, self._part_size)
                for layer in self._first.layers}
        size = waiting - waiting % self._part_size if whole_parts else waiting
        if not size:
            return
        # what is stored or being written counts before the next part goes
        self._wait()
        values, table, rest = _split(self._waiting, size)
        self._waiting = rest
        self._in_flight = values
        plan = Plan(tuple(
            PlannedLayer(layer.name, layer.labels,
                         ComputedValues(values[layer.name].shape, layer.dtype,
                                        _block_of(values[layer.name]),
                                        chunks=self._chunks[layer.name]),
                         layer.attrs, layer.dims)
            for layer in self._first.layers), table, self._attrs)
        # the writing thread holds the store, not this writer: a writer dropped while
        # a part is written ends as soon as it is
        with signals_held():  # the executor's locks: see signals_held
            self._writing = self._writer.submit(self._store.add, plan, self._options,
                                                dict(self._chunks))

    def _check_writing(self) -> None:
        if self._writing is not None and _done(self._writing):
            self._wait()

    def _wait(self) -> None:
        if self._writing is not None:
            writing = self._writing
            try:
                while not _done(writing, WAITED):
                    pass  # a signal comes through between two waits
                writing.result()
            except BaseException:
                if not _done(writing):
                    raise  # a signal while waiting: the part is still being stored
                # the part is not stored: no later batch may go on as if it were (nor
                # touch an output its failure closed)
                self._writing = None
                self._failed = True
                self._abandon()
                raise
            self._writing = None
            # stored: the next batch is copied into its arrays (a part cut from a longer
            # batch is a view: its base, which the part held, is the caller's batch size)
            for name, array in self._in_flight.items():
                base = array if array.base is None else array.base
                if self._mine.get(id(base)) is base:
                    self._spare[name] = base
            self._in_flight = {}

    def _owned(self, name: str, layer: xr.DataArray | np.ndarray, dtype: np.dtype
               ) -> np.ndarray:
        """Give a layer's values in an array of this writer's own, copied once.

        Copied into the array a stored part left for the layer if it has the
        batch's shape and ``dtype`` (the first batch's: a batch in the other
        byte order is stored in the first's), else into a new one.
        """
        data = layer.data if isinstance(layer, xr.DataArray) else layer
        if not isinstance(data, np.ndarray):
            # read or computed (lazy, dask), or a duck array's values, which may be the
            # very memory it wraps: the caller's
            data = layer.values
        # the caller's array: copied, so that it may reuse it once append returns
        spare = self._spare.pop(name, None)
        if spare is not None and spare.shape == data.shape and spare.dtype == dtype:
            np.copyto(spare, data)
            return spare
        copy = np.array(data, dtype=dtype, order="C")
        self._mine[id(copy)] = copy
        return copy

    def close(self) -> SaveReport:
        """Store what waits, join the parts into the output, and remove them.

        Returns
        -------
        SaveReport
            How each layer was written, as :func:`~dnnmask_xr.save_act` says it.

        Raises
        ------
        ActFileError
            If no stimulus was appended, or the output cannot be written:
            nothing is at ``path`` then, and the parts are kept if
            ``resume=True``.
        """
        with self._serial:
            return self._close()

    def _close(self) -> SaveReport:
        if self._report is not None:
            return self._report
        if self._writer is None:
            raise UsageError(f"the streamed write to {self.path!r} {self._ended_how()}")
        try:
            self._lost_interrupts.raise_if_lost()
            if self._first is None:
                raise ActFileError(f"the streamed write to {self.path!r} has no stimuli to "
                                   "write")
            self._send(whole_parts=False)
            self._wait()
            self._spare = {}
            self._writer.shutdown()
            with progress_bar(self._progress) as on_progress:
                options = replace(self._options, on_progress=on_progress)
                if self._store.stored:
                    self._report = self._store.finish(self._inputs, options, self._attrs)
                else:
                    # batches of no stimulus: the layers, empty, as save_act writes them
                    self._report = save_act(_empty_layers(self._first, self._attrs), self.path,
                                            memory=options.memory, threads=options.threads)
        except BaseException:
            self.abandon()
            raise
        self._ending.detach()
        self._store.close()
        self._writer = None
        self._lost_interrupts.stop()
        return self._report

    def _ended_how(self) -> str:
        """Say how a run that takes no more batches ended."""
        if self._report is not None:
            return "is closed"
        if not self._failed:
            return "was abandoned"
        again = ("ActWriter(path, resume=True) goes on after the parts stored"
                 if isinstance(self._store, PartFiles) and self._store.parts.resume
                 else "the run starts again")
        return f"stopped when a part failed to be stored, as an earlier call said ({again})"

    def abandon(self) -> None:
        """Stop without an output: the parts are removed, or kept if ``resume=True``.

        A part being written is finished first (a part is written whole or
        not at all).
        """
        with self._serial:
            self._abandon()

    def _abandon(self) -> None:
        if self._writer is None or self._report is not None:
            return
        self._writer = None
        self._waiting, self._in_flight, self._spare = [], {}, {}
        self._ending()
        self._lost_interrupts.stop()

    def __enter__(self) -> ActWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()

    def __repr__(self) -> str:
        return (f"<ActWriter {self.path!r}: {self.n_stimuli} stimuli appended, "
                f"{self.stimuli_done} stored>")


#: How long the caller's thread waits for a part at a time, with signals held (seconds).
WAITED = 0.05


def _done(writing: Future[Any], timeout: float = 0) -> bool:
    """Tell whether a part's writing has ended, waiting up to ``timeout`` seconds.

    With signals held (:func:`~dnnmask_xr.act._interrupt.signals_held`): a
    Ctrl-C taken inside the future's lock would leave it taken, and the
    writing thread, which takes it to say it is done, would wait forever.
    """
    with signals_held():
        wait((writing,), timeout)
        return writing.done()


def _empty_layers(first: Plan, attrs: Mapping[str, Any]) -> Activations:
    """Give the layers of ``first`` with no stimulus: labels, attributes, stimulus fields."""
    table = first.stimulus.rows(slice(0, 0))
    stimulus = {"stimulus": table.ids, **{name: ("stimulus", values)
                                          for name, values in table.fields.items()}}
    layers = {layer.name: xr.DataArray(
        np.empty((0, *layer.own_shape[1:]), layer.dtype), dims=("stimulus", *layer.dims),
        coords={**stimulus, **layer.unit_labels}, attrs=dict(layer.attrs))
        for layer in first.layers}
    return Activations(layers, attrs=attrs, stim_header=dict(first.stimulus.header))


def _plainly_labelled(layer: PlannedLayer) -> bool:
    """Tell whether a layer is labelled as a plain array of its rank is: no names, no attrs."""
    return (not layer.attrs and layer.dims == DIMS_BY_RANK[1 + len(layer.dims)][1:]
            and all(np.array_equal(numbers, count_from_one(len(numbers)))
                    for numbers in layer.unit_labels.values()))


def _not_layers(layers: object) -> Mapping[str, Any]:
    raise DnnMaskError(f"a batch is a mapping of layer name to values, not a "
                       f"{type(layers).__name__}")


def _split(
    waiting: list[tuple[dict[str, np.ndarray], StimulusTable]], size: int,
) -> tuple[dict[str, np.ndarray], StimulusTable,
           list[tuple[dict[str, np.ndarray], StimulusTable]]]:
    """Take the first ``size`` stimuli of the waiting batches; give the rest, copied."""
    table = StimulusTable.joined([table for _, table in waiting])
    if len(waiting) == 1:
        values = waiting[0][0]
        if len(table.ids) == size:
            return values, table, []
    else:
        values = {name: np.concatenate([batch[name] for batch, _ in waiting])
                  for name in waiting[0][0]}
    rest = []
    if len(table.ids) > size:
        # copied: once the part is written, the stimuli left waiting must not keep the
        # joined batches alive
        rest = [({name: array[size:].copy() for name, array in values.items()},
                 table.rows(slice(size, None)))]
    return ({name: array[:size] for name, array in values.items()},
            table.rows(slice(None, size)), rest)


def _block_of(values: np.ndarray) -> BlockReader:
    def read_block(stimuli: slice, channels: slice) -> np.ndarray:
        return values[stimuli, channels]

    return read_block
