"""The parts of a streamed write: what has been stored, durably, so far.

A streamed write (:class:`~dnnmask_xr.ActWriter`) stores each run of
stimuli as a part: an ``.act.h5`` file written by the one writer
(:func:`~dnnmask_xr.act.write.write`), so that each part is complete,
synced and renamed into place, or not there at all. The parts live in a
hidden folder beside the output: ``.<output name>.parts`` for a run that may be resumed, a
temporary name like the writer's (``.dnnmask-<random>.tmp``) for one that
may not, so that runs of the latter kind never meet. Closing the
write copies the parts' compressed chunks into the output
(:class:`~dnnmask_xr.act.plan.StackedParts`, through the one writer again)
and removes the folder. A run that crashed leaves its parts when it asked
to be resumable; resuming reads them back and goes on after the stimuli
they hold. A run that did not ask leaves nothing: its folder is removed
on any error, and by a watchdog if the process is killed.

Numpy and h5py only: the xarray side turns batches into plans.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dnnmask_xr._atomic import (
    TEMP_PREFIX,
    TEMP_SUFFIX,
    real_target,
    removed_if_the_process_ends,
    sync_path,
)
from dnnmask_xr.act.checks import own_attrs
from dnnmask_xr.act.files import open_file
from dnnmask_xr.act.layout import (
    decode_stimulus,
    decode_units,
    is_reserved,
    layer_datasets,
    read_attrs,
)
from dnnmask_xr.act.plan import Plan, PlannedLayer, StackedParts
from dnnmask_xr.act.stimulus import StimulusTable, same_values
from dnnmask_xr.act.write import WriteOptions, write
from dnnmask_xr.errors import ActFileError

#: How parts are named in their folder, numbered from 1 in the order written.
PART_NAME = "part-{:06d}.act.h5"
_PART = re.compile(r"part-(\d{6})\.act\.h5")
#: Root attributes of a part that the output gets anew from its own write.
STAMPED = ("date", "software")


def parts_folder(target: str) -> Path:
    """Name the folder that holds the parts of a resumable streamed write to ``target``."""
    real = real_target(target)
    return real.parent / f".{real.name}.parts"


class Parts:
    """The parts folder of one streamed write: created or found, locked, written, removed.

    Parameters
    ----------
    target
        The output the parts are for.
    resume
        Go on from the parts an interrupted run left in
        :func:`parts_folder` (and keep them if this run is interrupted
        too); if False, the parts go to a new folder of a temporary name,
        removed if the run ends without an output.

    Raises
    ------
    ActFileError
        If the folder cannot be created, or another resumable streamed
        write to ``target`` holds it.
    """

    def __init__(self, target: str, *, resume: bool) -> None:
        self.target = target
        self.resume = resume
        self.folder = parts_folder(target)
        self._held = contextlib.ExitStack()
        created = False
        try:
            created = self._create()
            self.paths = self._found()
        except BaseException:
            self._held.close()
            if created:
                shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def _create(self) -> bool:
        """Create the folder or find it (resuming), lock it; say whether it was created."""
        created = False
        try:
            if self.resume:
                self.folder.mkdir()
            else:
                refuse_interrupted_parts(self.target)
                self.folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX,
                                                    dir=self.folder.parent))
            created = True
        except FileExistsError:
            if self.folder.is_symlink() or not self.folder.is_dir():
                raise ActFileError(f"{str(self.folder)!r} is in the way of the parts of a "
                                   f"streamed write to {self.target!r}; it is not a folder "
                                   "of parts") from None
        except OSError as err:
            raise ActFileError(f"cannot create {str(self.folder)!r} for the parts of "
                               f"{self.target!r}: {err.strerror}") from None
        else:
            # the folder survives a power loss before its first part does
            sync_path(self.folder.parent)
        if not self.resume:
            self._held.enter_context(removed_if_the_process_ends(self.folder))
        self._lock()
        return created

    def _lock(self) -> None:
        # two writers adding parts to one folder would interleave them
        try:
            fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise ActFileError(f"cannot lock {str(self.folder)!r}: {err.strerror}") from None
        self._held.callback(os.close, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ActFileError(f"another streamed write to {self.target!r} is under way "
                               f"(it holds {str(self.folder)!r})") from None

    def _found(self) -> list[Path]:
        numbers = sorted(int(match[1]) for name in os.listdir(self.folder)
                         if (match := _PART.fullmatch(name)))
        if numbers != list(range(1, len(numbers) + 1)):
            gap = next(n for n, found in enumerate(numbers, start=1) if found != n)
            raise ActFileError(f"{str(self.folder)!r} lacks part {gap} of a streamed write; "
                               "its parts cannot be put together (remove the folder to "
                               "start again)")
        return [self.folder / PART_NAME.format(number) for number in numbers]

    def add(self, plan: Plan, options: WriteOptions) -> None:
        """Store the next part: written whole, synced and renamed into place, or not at all."""
        path = self.folder / PART_NAME.format(len(self.paths) + 1)
        write(plan, path, options, part_of=self.target)
        self.paths.append(path)

    def stacked(self, inputs: Mapping[str, str] | None = None) -> Plan:
        """Plan the output: every part's layers, one after the other, opened until :meth:`close`.

        Raises
        ------
        ActFileError
            If a part is damaged or does not store what the first stores.
        """
        roots = [self._held.enter_context(open_file(os.fspath(path))) for path in self.paths]
        first = part_plan(roots[0])
        tables = [first.stimulus]
        datasets = {layer.name: [layer.values.parts[0]] for layer in first.layers}
        for root in roots[1:]:
            plan = part_plan(root)
            problem = plan_difference(first, plan)
            if problem:
                raise ActFileError(f"{root.filename!r}: {problem}; the parts of a streamed "
                                   "write were changed")
            tables.append(plan.stimulus)
            for layer in plan.layers:
                datasets[layer.name].append(layer.values.parts[0])
        stimulus = StimulusTable.joined(tables)
        layers = tuple(PlannedLayer(layer.name, layer.labels,
                                    StackedParts(tuple(datasets[layer.name])), layer.attrs,
                                    layer.dims) for layer in first.layers)
        return Plan(layers, stimulus, first.attrs, dict(inputs or {}))

    def close(self, *, keep: bool) -> None:
        """Release the folder (and the parts opened); remove it with the parts unless ``keep``.

        A folder of no part is removed all the same: it holds nothing to go on
        from, and would stop the next run without ``resume``. The parts are
        removed the last first, while the folder is locked (and watched, for a
        run without ``resume``): a kill on the way leaves parts ``1..k``, which
        a resumed run goes on from, never parts with a gap, which it refuses.
        """
        if not keep or not self.paths:
            # removed while locked: no other run can have taken it meanwhile
            for path in reversed(self.paths):
                with contextlib.suppress(OSError):
                    path.unlink()
            shutil.rmtree(self.folder, ignore_errors=True)
        self._held.close()


def refuse_interrupted_parts(target: str) -> None:
    """Refuse to start a streamed write to ``target`` over an interrupted run's parts.

    For a run without ``resume``: a day of extraction is not to be lost to
    a missing ``resume=True``.

    Raises
    ------
    ActFileError
        If :func:`parts_folder` of ``target`` exists.
    """
    folder = parts_folder(target)
    if os.path.lexists(folder):  # False too for a name too long to exist
        raise ActFileError(f"{str(folder)!r} holds the parts of an interrupted streamed write "
                           f"to {target!r}; go on from them with resume=True, or remove the "
                           "folder to start again")


def part_plan(root: h5py.File) -> Plan:
    """Read one part back as a plan: its layers (whole), stimuli and provenance."""
    where = repr(root.filename)
    datasets = layer_datasets(root, where)
    layers = []
    for name, dataset in datasets.items():
        stored = read_attrs(dataset, where)
        dims, labels = decode_units(dataset, where, stored)
        layers.append(PlannedLayer(name, labels, StackedParts((dataset,)),
                                   own_attrs(stored, dims), dims))
    stored = read_attrs(root, where)
    n_stim = next(iter(datasets.values())).shape[0] if datasets else 0
    stimulus = StimulusTable(*decode_stimulus(stored, n_stim, where))
    attrs = {key: value for key, value in stored.items()
             if not is_reserved(key) and key not in STAMPED}
    return Plan(tuple(layers), stimulus, attrs)


def plan_difference(first: Plan, other: Plan) -> str | None:
    """Say how ``other`` lays its layers and stimuli out differently from ``first``.

    Compared: the layers and their order, each layer's unit dims, unit
    numbers, dtype (but its byte order), shape past ``stimulus`` and attributes, the stimulus
    fields, their kinds, and the table's header. None if they agree.
    """
    names = [layer.name for layer in first.layers]
    if [layer.name for layer in other.layers] != names:
        return (f"it has the layers {[layer.name for layer in other.layers]}; the first batch "
                f"has {names}")
    for mine, theirs in zip(first.layers, other.layers, strict=True):
        where = f"layer {mine.name!r}"
        if theirs.dims != mine.dims:
            return f"{where} has the unit dims {theirs.dims}; the first batch's are {mine.dims}"
        if theirs.shape[1:] != mine.shape[1:]:
            return (f"{where} has {theirs.own_shape[1:]} units; the first batch's has "
                    f"{mine.own_shape[1:]}")
        if theirs.dtype.newbyteorder("=") != mine.dtype.newbyteorder("="):
            # the same numbers in the other byte order are stored in the first's
            return f"{where} holds {theirs.dtype}; the first batch's holds {mine.dtype}"
        for dim, numbers in mine.unit_labels.items():
            if not np.array_equal(theirs.unit_labels[dim], numbers):
                return f"{where} numbers its {dim} units differently from the first batch"
        if not _same_attrs(mine.attrs, theirs.attrs):
            return f"{where} has other attributes than in the first batch"
    fields = {name: np.asarray(values).dtype.kind
              for name, values in first.stimulus.fields.items()}
    theirs = {name: np.asarray(values).dtype.kind
              for name, values in other.stimulus.fields.items()}
    if list(theirs) != list(fields):
        return f"its stimuli have the fields {list(theirs)}; the first batch's have {list(fields)}"
    # the values of a batch of no stimulus have no kind (numpy calls them floats)
    if len(first.stimulus.ids) and len(other.stimulus.ids):
        kinds = [name for name in fields if _kind(fields[name]) != _kind(theirs[name])]
        if kinds:
            return f"its stimulus field {kinds[0]!r} holds other values than the first batch's"
        if _kind(first.stimulus.ids.dtype.kind) != _kind(other.stimulus.ids.dtype.kind):
            return ("its stimulus IDs are of another kind (text or numbers) than the first "
                    "batch's")
        joined = {"stimulus IDs are": (first.stimulus.ids, other.stimulus.ids),
                  **{f"stimulus field {name!r} holds": (values, other.stimulus.fields[name])
                     for name, values in first.stimulus.fields.items()}}
        for what, (mine, yours) in joined.items():
            mine, yours = np.asarray(mine).dtype, np.asarray(yours).dtype
            if {mine.kind, yours.kind} <= set("iu") and np.result_type(mine, yours).kind == "f":
                return (f"its {what} {yours}, which NumPy joins with the first batch's "
                        f"{mine} only as floats (losing digits); give integers of one type")
    if dict(other.stimulus.header) != dict(first.stimulus.header):
        return "its stimulus table has another header than the first batch's"
    return None


def changed_attrs(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Name the attributes of ``given`` that the stored parts lack or hold otherwise."""
    return [key for key, value in given.items()
            if key not in stored or not same_values(stored[key], value)]


def _kind(kind: str) -> str:
    # what a file tells apart: text, integers, floats (and bools, complex)
    return {"U": "T", "S": "T", "O": "T", "T": "T", "u": "i"}.get(kind, kind)


def _same_attrs(first: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    return list(first) == list(other) and all(same_values(first[key], other[key])
                                              for key in first)
