"""The one writer: a :class:`~dnnmask_xr.act.plan.Plan` to a file, all or nothing.

Every route that writes comes here, so every guarantee is kept here once:

- the plan is checked before anything is created (names, labels,
  attributes, dtypes the reader would refuse);
- no file the layers are read from, and no HDF5 file this process holds
  open, is ever replaced;
- the output appears only once complete (a temporary file beside it,
  synced, renamed, its folder synced: :mod:`dnnmask_xr._atomic`), and an
  error, a full disk or a signal (SIGINT, SIGTERM, SIGHUP) leaves nothing
  behind, whatever the thread (a watchdog removes the temporary file of a
  process that ended without cleaning up);
- room on disk is taken before each step that writes metadata
  (:class:`RoomOnDisk`), where HDF5 would crash on a full disk;
- memory stays within the budget, chunks are coded on a thread pool;
- one report, one set of errors, for ``.act.h5`` and ``.nc`` alike.

The two suffixes differ only in how a layer's dataset and the stimulus
table are laid out (:class:`ActLayout` here, :mod:`dnnmask_xr.act.nc`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import h5py
import numpy as np

from dnnmask_xr._args import bool_arg, is_count, path_arg
from dnnmask_xr._atomic import FULL_DISK, atomic_path, start_writeback
from dnnmask_xr._version import __version__
from dnnmask_xr.act._interrupt import Interrupted, check_interrupt, deferred_interrupts
from dnnmask_xr.act.checks import (
    NC_SUFFIX,
    ZARR_SUFFIX,
    check_header_keys,
    check_names_apart,
    check_not_input,
    check_output,
    check_plan,
)
from dnnmask_xr.act.layer_writer import (
    Budget,
    LayerReport,
    Sink,
    ValuesFailed,
    gzip_options,
    write_deflated,
    write_selection,
    write_stacked,
    write_values,
)
from dnnmask_xr.act.layout import encode_stimulus, encode_units, is_text, plain_text
from dnnmask_xr.act.plan import FileSelection, Plan, PlannedLayer, StackedParts
from dnnmask_xr.act.pool import default_threads
from dnnmask_xr.act.stimulus import StimulusTable
from dnnmask_xr.errors import ActFileError, DnnMaskError, UsageError

#: Default memory budget: bytes of activations held at once while writing.
DEFAULT_MEMORY = 128 * 2**20
#: Bytes of values stored between two requests that the kernel write the file out.
WRITEBACK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class WriteOptions:
    """How to write, whatever the route: one set of options, checked once.

    Attributes
    ----------
    memory
        Most bytes of activations held at once (a positive integer).
    threads
        Threads that inflate and deflate chunks; all available cores if None.
    verify
        Also inflate the compressed chunks copied unchanged, so that a
        damaged input chunk stops the write rather than being copied.
    on_progress
        Called with a layer's name, bytes just done and bytes in all.

    Raises
    ------
    UsageError
        If ``memory`` or ``threads`` is not a positive integer, or
        ``verify`` not a bool.
    """

    memory: int = DEFAULT_MEMORY
    threads: int | None = None
    verify: bool = False
    on_progress: Callable[[str, int, int], None] | None = None

    def __post_init__(self) -> None:
        if not is_count(self.memory):
            raise UsageError(f"memory budget {self.memory!r} is not a positive number of bytes")
        if self.threads is not None and not is_count(self.threads):
            raise UsageError(f"threads={self.threads!r} is not a positive number of threads")
        bool_arg(self.verify, "verify")


@dataclass(frozen=True)
class SaveReport:
    """What writing a file did, layer by layer.

    Attributes
    ----------
    path
        The file written.
    layers
        One :class:`~dnnmask_xr.act.layer_writer.LayerReport` per layer: how it was
        written (``copied``, ``re-encoded``, ``encoded``) and how many chunks
        were read, inflated and written.
    """

    path: str
    layers: tuple[LayerReport, ...]

    def __str__(self) -> str:
        return "\n".join(
            f"{layer.name}: {layer.method}; {layer.chunks_read} chunk(s) read, "
            f"{layer.chunks_inflated} inflated, {layer.chunks_written} written"
            for layer in self.layers
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # a notebook shows a report as print() does, not as the dataclass it is
        printer.text(f"SaveReport of {self.path!r}\n{self}")


class Layout(Protocol):
    """How one suffix lays a plan out in an open HDF5 file."""

    #: Whether each layer stores the stimulus table again (room is reserved for it).
    stimulus_in_every_layer: bool

    def __init__(self, root: h5py.File) -> None: ...

    @staticmethod
    def check(plan: Plan) -> None:
        """Refuse what this suffix cannot store, with one-line errors."""

    def write_root(self, attrs: Mapping[str, Any], stimulus: StimulusTable) -> None:
        """Store the provenance and the stimulus table."""

    def sink(self, layer: PlannedLayer) -> Sink:
        """Where a layer's dataset goes."""

    def finish_layer(self, layer: PlannedLayer, dataset: h5py.Dataset) -> None:
        """Store a written layer's unit labels and attributes."""

    def close(self) -> None:
        """Complete the file's own bookkeeping before HDF5 closes it."""


def write(plan: Plan, path: str | os.PathLike[str], options: WriteOptions | None = None,
          *, part_of: str | None = None) -> SaveReport:
    """Write a plan to ``path``: ``.act.h5`` (DNNBrain's layout) or ``.nc`` (netCDF4).

    Parameters
    ----------
    plan
        The layers, stimulus table and provenance.
    path
        The output; it appears only once complete, and replaces a file
        there only then.
    options
        Memory, threads, verification and progress.
    part_of
        The output ``path`` is a part of (a streamed write's), named in
        errors instead of the part: what the user asked to write.

    Returns
    -------
    SaveReport
        How each layer was written.

    Raises
    ------
    UsageError
        If ``path`` ends in neither ``.act.h5`` nor ``.nc``.
    OutputIsInputError
        If ``path`` is a file the layers are read from, or one this process
        holds open.
    ActFileError
        If the output cannot be written; nothing is left at ``path``.
    DnnMaskError
        If the plan holds what the output could not store.
    """
    options = options or WriteOptions()
    target = path_arg(path, "output")
    refuse_store(target)
    plan, layout_of = checked(plan, target)
    total = plan.nbytes
    root_attrs = {**plan.attrs, **provenance_stamp()}
    reports = []
    with output_file(target, options, part_of) as out:
        with contextlib.closing(layout_of(out.root)) as layout:
            out.room.reserve(metadata_bytes(root_attrs, plan.stimulus))
            layout.write_root(root_attrs, plan.stimulus)
            for layer in plan.layers:
                out.room.reserve(metadata_bytes(
                    layer.attrs, layer.labels,
                    plan.stimulus if layout_of.stimulus_in_every_layer else None))
                reports.append(_write_layer(layout, layer, out.budget(layer.name, total)))
            # the layout's own bookkeeping, written as it closes
            out.room.reserve(RESERVED_BYTES + BOOKKEEPING_BYTES * len(plan.layers))
    return SaveReport(target, tuple(reports))


@dataclass
class OutputFile:
    """The temporary HDF5 file of a write under way, and what writing it takes.

    Attributes
    ----------
    root
        The file, open for writing.
    room
        Takes room on disk before each step that writes metadata.
    pool, threads
        The threads that deflate chunks, and how many there are.
    options
        The write's options.
    """

    root: h5py.File
    room: RoomOnDisk
    pool: ThreadPoolExecutor
    threads: int
    options: WriteOptions

    #: Bytes of values stored since the kernel was last told to write the file out.
    _unflushed: int = field(default=0, init=False, repr=False)

    def budget(self, name: str, total: int) -> Budget:
        """Give the memory, threads and progress of writing layer ``name`` (of ``total`` bytes)."""
        progress = _layer_progress(self.options.on_progress, name, total)

        def on_progress(done: int) -> None:
            self._stored(done)
            progress(done)

        return Budget(self.options.memory, self.pool, self.threads, on_progress,
                      self.options.verify)

    def _stored(self, nbytes: int) -> None:
        # every few dozen MB the disk starts on what is stored, so that the sync before
        # the rename does not find the whole file still to write
        self._unflushed += nbytes
        if self._unflushed >= WRITEBACK_BYTES:
            self._unflushed = 0
            start_writeback(self.root.id.get_vfd_handle())


@contextlib.contextmanager
def output_file(target: str, options: WriteOptions, part_of: str | None = None,
                ) -> Iterator[OutputFile]:
    """Create the temporary file of a write of ``target``; put it in place as the block ends.

    The one place where a write becomes all or nothing: the file is created
    beside ``target`` and renamed over it, synced, only when the block ends
    without an error; an error, a signal or a full disk leaves nothing (see
    the module's docstring), and a failure to write is raised as
    ``ActFileError`` naming ``part_of`` or ``target``.
    """
    threads = options.threads or default_threads()
    with write_failures_said(part_of or target), deferred_interrupts() as deferral:
        # atomic_path is inside the deferral, so a signal during the rename
        # is seen after it, as "written"
        with atomic_path(target) as tmp, ThreadPoolExecutor(
                threads, thread_name_prefix="dnnmask-codec") as pool:
            # HDF5 is slow to close a file it truncated (seconds per GB),
            # so the empty placeholder goes and HDF5 creates the file; "x"
            # fails rather than write over a file that took its place.
            # libver up to v108 keeps the file readable by HDF5 1.8;
            # creation order keeps the layers in the order written and
            # stores attributes densely, so 100 000 stimulus IDs fit.
            tmp.unlink()
            with _ignored_hdf5_errors() as ignored, h5py.File(
                    tmp, "x", libver=("earliest", "v108"), track_order=True) as root:
                with RoomOnDisk(root) as room:
                    yield OutputFile(root, room, pool, threads, options)
                    room.give_back()
            if ignored:
                # a write HDF5 could only report as "ignored": the file is not whole
                raise ignored[0]
            check_interrupt()
        deferral.commit(target)


def checked(plan: Plan, target: str) -> tuple[Plan, type[Layout]]:
    """Make every check of a write of ``plan`` to ``target``, before anything is created.

    Returns
    -------
    plan, layout
        The plan with its text as Python strings, and the layout of
        ``target``'s suffix.

    Raises
    ------
    UsageError, OutputIsInputError, ActFileError, DnnMaskError
        As :func:`write` does, for what would make it fail.
    """
    check_output(target)
    check_not_input(plan, target)
    return storable(plan, target)


def storable(plan: Plan, target: str) -> tuple[Plan, type[Layout]]:
    """Check that a file at ``target`` could store what ``plan`` holds (not the path).

    Returns and raises as :func:`checked` does.
    """
    check_plan(plan)
    plan = _with_plain_text(plan)
    layout_of = layout_for(target)
    layout_of.check(plan)
    return plan, layout_of


def _write_layer(layout: Layout, layer: PlannedLayer, budget: Budget) -> LayerReport:
    sink = layout.sink(layer)
    values = layer.values
    if 0 in values.shape:
        # no value, whatever the source: stored unchunked, nothing to read or deflate
        sink.create(values.shape, np.dtype(values.dtype), None, None, None)
        report = LayerReport(sink.name)
    elif isinstance(values, FileSelection):
        report = write_selection(sink, values, budget)
    elif isinstance(values, StackedParts):
        report = write_stacked(sink, values, budget)
    elif values.deflated is not None:
        report = write_deflated(sink, values, budget)
    else:
        report = write_values(sink, values.shape, np.dtype(values.dtype), values.read_block,
                              budget, values.chunks)
    layout.finish_layer(layer, sink.dataset)
    return report


class ActLayout:
    """DNNBrain's layout: one 4-D dataset per layer at the root, labels in attributes."""

    stimulus_in_every_layer = False

    def __init__(self, root: h5py.File) -> None:
        self.root = root

    @staticmethod
    def check(plan: Plan) -> None:
        """Refuse values HDF5 cannot store as numbers."""
        for layer in plan.layers:
            if layer.dtype.kind not in "biufc":
                raise DnnMaskError(f"layer {layer.name!r} holds {layer.dtype} values; only "
                                   "numbers can be saved")

    def write_root(self, attrs: Mapping[str, Any], stimulus: StimulusTable) -> None:
        """Store provenance and the stimulus table as root attributes."""
        _store_attrs(self.root.attrs, attrs, "the file's root")
        encode_stimulus(self.root.attrs, stimulus.ids, stimulus.fields, stimulus.header)

    def sink(self, layer: PlannedLayer, *, growing: bool = False) -> Sink:
        """Create the layer at the root; ``growing``: to be lengthened along ``stimulus``."""
        return _GroupSink(self.root, layer.name, growing)

    def finish_layer(self, layer: PlannedLayer, dataset: h5py.Dataset) -> None:
        """Store the unit labels and the layer's own attributes as the dataset's attributes."""
        encode_units(dataset, layer.dims, layer.labels)
        _store_attrs(dataset.attrs, layer.attrs, f"layer {layer.name!r}")

    def close(self) -> None:
        """Nothing to complete: the layout is plain HDF5."""


class _GroupSink:
    """Creates a layer's dataset in an h5py group."""

    def __init__(self, group: h5py.Group, name: str, growing: bool = False) -> None:
        self.group, self.name, self.growing = group, name, growing
        self.dataset: h5py.Dataset | None = None

    def create(self, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...] | None,
               level: int | None, fillvalue: Any) -> h5py.Dataset:
        # a growing layer has no end along stimulus (nor along a unit axis of no
        # unit, which no chunk would fit)
        maxshape = tuple(None if axis == 0 or not size else size
                         for axis, size in enumerate(shape)) if self.growing else None
        self.dataset = self.group.create_dataset(self.name, shape=shape, dtype=dtype,
                                                 chunks=chunks, fillvalue=fillvalue,
                                                 maxshape=maxshape, track_order=True,
                                                 **gzip_options(chunks, level))
        return self.dataset


class StoreLayout:
    """A zarr store's checks: the store is written through xarray by ``save_act``, not here."""

    stimulus_in_every_layer = False

    @staticmethod
    def check(plan: Plan) -> None:
        """Refuse what a store cannot name or keep.

        Layers named as a dimension or a stimulus field (groups beside them),
        zarr's own names, and the header's keys that the stimulus variable
        keeps for itself.
        """
        check_names_apart(plan, "a zarr store")
        check_header_keys(plan, "a zarr store")
        for what, name in (*(("layer", layer.name) for layer in plan.layers),
                           *((f"unit dim of layer {layer.name!r}", dim)
                             for layer in plan.layers for dim in layer.dims),
                           *(("stimulus field", name) for name in plan.stimulus.fields)):
            if name in (".", "..", "zarr.json") or name.startswith("__"):
                raise DnnMaskError(f"{what} {name!r} cannot name a node of a zarr store "
                                   "('.', '..', 'zarr.json' and names starting with '__' "
                                   "are zarr's); rename it, or save as .act.h5")


def refuse_store(target: str) -> None:
    """Refuse a zarr store as the output of a route that writes HDF5 files.

    Raises
    ------
    UsageError
        If ``target`` ends in ``.act.zarr``.
    """
    if target.endswith(ZARR_SUFFIX):
        raise UsageError(f"{target!r}: a zarr store is written by save_act; this route "
                         "writes .act.h5 and .nc files")


def layout_for(target: str) -> type[Layout] | type[StoreLayout]:
    """Give the layout of an output by its suffix."""
    if target.endswith(ZARR_SUFFIX):
        return StoreLayout
    if target.endswith(NC_SUFFIX):
        # h5netcdf is imported only for netCDF outputs
        from dnnmask_xr.act.nc import NcLayout

        return NcLayout
    return ActLayout


# -- small pieces shared by the routes -------------------------------------------------------

def provenance_stamp() -> dict[str, str]:
    """Say when and by what a file is written: ``date`` (UTC) and ``software``."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"date": now, "software": f"dnnmask_xr {__version__}"}


@contextlib.contextmanager
def progress_bar(shown: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """Give a progress callback for :class:`WriteOptions` that draws a bar on stderr.

    The bar appears only if ``shown`` and only for writes that take over
    half a second; the callback is None when nothing is shown.

    Raises
    ------
    UsageError
        If ``shown`` is neither True nor False (``progress="no"`` would show one).
    """
    if not bool_arg(shown, "progress"):
        yield None
        return
    from tqdm import tqdm

    with tqdm(unit="B", unit_scale=True, delay=0.5, leave=False) as bar:
        def on_progress(layer: str, done: int, total: int) -> None:
            bar.total = total
            bar.set_description(layer, refresh=False)
            bar.update(done)

        yield on_progress


def _layer_progress(
    on_progress: Callable[[str, int, int], None] | None, name: str, total: int
) -> Callable[[int], None]:
    if on_progress is None:
        return lambda done: None
    return lambda done: on_progress(name, done, total)


def _with_plain_text(plan: Plan) -> Plan:
    """Give every text of a plan (labels, attributes) as Python strings, as files store it.

    numpy's fixed-width unicode and NumPy 2's StringDType (zarr's and
    pandas' text) have no HDF5 type of their own.
    """
    def attrs(values: Mapping[str, Any]) -> dict[str, Any]:
        return {key: plain_text(value) for key, value in values.items()}

    stimulus = StimulusTable(plain_text(np.asarray(plan.stimulus.ids)),
                             {name: plain_text(np.asarray(values))
                              for name, values in plan.stimulus.fields.items()},
                             plan.stimulus.header)
    layers = tuple(dataclasses.replace(layer, attrs=attrs(layer.attrs)) for layer in plan.layers)
    return dataclasses.replace(plan, layers=layers, stimulus=stimulus, attrs=attrs(plan.attrs))


def _store_attrs(attrs: h5py.AttributeManager, values: Mapping[str, Any], where: str) -> None:
    for key, value in values.items():
        try:
            attrs[key] = value
        except (TypeError, ValueError) as err:
            raise DnnMaskError(f"attribute {key!r} of {where} cannot be stored "
                               f"({err})") from None


# -- room on disk for metadata --------------------------------------------------------------

#: Room reserved beyond what the values take: HDF5's object headers, B-trees and heaps.
RESERVED_BYTES = 256 * 2**10
#: Room per layer for what a layout writes as it closes (h5netcdf's dimension ids).
BOOKKEEPING_BYTES = 4 * 2**10
#: What HDF5 stores besides a variable-length string's bytes: its global heap object's
#: header and padding, and the reference to it in the attribute or dataset.
_PER_STRING = 48


def metadata_bytes(*parts: Any) -> int:
    """Bound the bytes HDF5 writes to store ``parts``: attributes, labels, a stimulus table.

    The values' own size, an eighth more, plus :data:`RESERVED_BYTES`.
    ``parts`` are mappings of name to value,
    :class:`~dnnmask_xr.act.stimulus.StimulusTable` or None.
    """
    values: list[Any] = []
    for part in parts:
        if isinstance(part, StimulusTable):
            values += [part.ids, *part.fields.values(), dict(part.header)]
        elif isinstance(part, Mapping):
            values += [*part.keys(), *part.values()]
    nbytes = sum(map(_stored_bytes, values))
    return nbytes + nbytes // 8 + RESERVED_BYTES


def _stored_bytes(value: Any) -> int:
    if isinstance(value, Mapping):
        return sum(map(_stored_bytes, (*value.keys(), *value.values())))
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return len(repr(value).encode("utf-8", "surrogatepass"))
    if not is_text(array):
        return array.nbytes
    return sum(len(item if isinstance(item, bytes) else
                   str(item).encode("utf-8", "surrogatepass")) + _PER_STRING
               for item in array.ravel().tolist())


class RoomOnDisk:
    """Room on disk for the metadata HDF5 writes next, taken ahead or refused here.

    HDF5 does not survive a full disk while it writes metadata: a large
    attribute or a variable of strings that fails half-written crashes the
    process (segmentation fault) inside ``attrs.create`` or
    ``create_dataset``, leaving the temporary file. So :meth:`reserve`
    allocates the file's disk blocks up to ``nbytes`` past HDF5's end (holes
    HDF5 left included) before each step: the metadata then lands on blocks
    that exist, and a full disk is an ``OSError`` (``ENOSPC``, or ``EFBIG``
    under ``ulimit -f``) there, which the writer reports in one line. Each
    call allocates only past what earlier calls did, so a write of n layers
    costs n small allocations. :meth:`give_back` cuts the file back to
    HDF5's end, once the layout is closed (HDF5 writes nothing past its end
    as it closes the file).
    """

    def __init__(self, root: h5py.File) -> None:
        self.root = root
        self.fd = os.open(root.filename, os.O_WRONLY)
        #: the file's blocks below this are allocated
        self.allocated = 0

    def __enter__(self) -> RoomOnDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def reserve(self, nbytes: int) -> None:
        """Allocate the file up to ``nbytes`` past HDF5's end, or raise ``OSError``."""
        end = self.root.id.get_filesize() + nbytes
        if end <= self.allocated:
            return
        try:
            os.posix_fallocate(self.fd, self.allocated, end - self.allocated)
        except OSError as err:
            # a file system that cannot allocate ahead leaves HDF5 on its own
            if err.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        self.allocated = end

    def give_back(self) -> None:
        """Cut the file back to HDF5's own end."""
        os.ftruncate(self.fd, self.root.id.get_filesize())


_ERRNO = re.compile(r"\berrno = (\d+)")
_MESSAGE = re.compile(r"\berror message = '([^']*)'")


@contextlib.contextmanager
def write_failures_said(target: str) -> Iterator[None]:
    """Raise a failure to write ``target`` as one line: ``ActFileError`` with its reason.

    The reason is :func:`write_failure`'s; errors that are not failures to
    write pass unchanged.
    """
    try:
        yield
    except ValuesFailed as failed:
        # the caller's computation failed, not the write: its error, as it was raised
        raise failed.error from failed.error.__cause__
    except Exception as err:
        reason = write_failure(err)
        if reason is None:
            raise
        raise ActFileError(f"cannot write {target!r}: {reason}") from None


def write_failure(err: BaseException) -> str | None:
    """Say in a few words why writing the output failed, or None if ``err`` is not that.

    The one place HDF5's failures become a reason: a full disk or the
    file-size limit, whatever the exception and however deep it was
    raised (HDF5's raw text embedded in one of this package's errors
    included), is said as ``No space left on device`` or ``File too large
    ...``; any other ``OSError`` or ``RuntimeError`` (how h5py reports HDF5's
    failures) gives HDF5's error message without its timestamp, file
    descriptor and buffer address. Errors of this package that are not
    about a full disk are not write failures: they keep their own message.
    """
    text = str(err)
    numbers = {getattr(err, "errno", None), *map(int, _ERRNO.findall(text))}
    for number, reason in FULL_DISK.items():
        if number in numbers or os.strerror(number) in text:
            return reason
    if isinstance(err, DnnMaskError) or not isinstance(err, OSError | RuntimeError):
        return None
    message = _MESSAGE.search(text)
    if message:
        return message[1]
    return " ".join(text.split())


#: The errors kept for each write under way, by the thread writing (see below).
_KEPT: dict[int, list[BaseException]] = {}
_KEPT_LOCK = threading.Lock()
#: The program's own hook, put back when the last write under way ends.
_PROGRAM_HOOK: list[Callable[[Any], object]] = []


@contextlib.contextmanager
def _ignored_hdf5_errors() -> Iterator[list[BaseException]]:
    """Collect the errors h5py can only hand to Python's "Exception ignored" printer.

    h5py closes HDF5 objects when Python frees them; a write that fails
    then (a full disk) is not raised but printed, raw, on stderr. Here it is
    kept instead, for the writer to raise once the file is closed.

    Writes in several threads at once share one hook, installed by the
    first and removed by the last (each saving and restoring its own would
    leave one installed for good when they end out of order). An error is
    kept for the write of the thread that freed the object, or, freed on
    another thread (the garbage collector's), for every write under way:
    failing a good write is better than passing a broken one.
    """
    ignored: list[BaseException] = []
    me = threading.get_ident()
    with _KEPT_LOCK:
        if not _KEPT:
            _PROGRAM_HOOK[:] = [sys.unraisablehook]
            sys.unraisablehook = _keep_unraisable
        outer = _KEPT.get(me)
        _KEPT[me] = ignored
    try:
        yield ignored
    finally:
        with _KEPT_LOCK:
            if outer is None:
                del _KEPT[me]
            else:  # a write within a write (a progress callback that saves)
                _KEPT[me] = outer
            if not _KEPT and sys.unraisablehook is _keep_unraisable:
                # a hook the program set meanwhile is left in place
                sys.unraisablehook = _PROGRAM_HOOK[0]


def _keep_unraisable(unraisable: Any) -> None:
    error = unraisable.exc_value
    if isinstance(error, Interrupted):
        return  # a signal is also recorded, and raised at the writer's next check
    if isinstance(error, OSError | RuntimeError):
        with _KEPT_LOCK:
            mine = _KEPT.get(threading.get_ident())
            writes = [mine] if mine is not None else list(_KEPT.values())
        for kept in writes:
            kept.append(error)
        if writes:
            return
    _PROGRAM_HOOK[0](unraisable)
