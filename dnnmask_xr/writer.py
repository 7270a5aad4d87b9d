"""Write an ``.act.h5`` file, layer by layer, all or nothing.

Knows nothing of xarray: layers arrive as :class:`OutputLayer` records whose
values come from a file selection or a block reader (see
:mod:`dnnmask_xr.engine`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dnnmask_xr._atomic import atomic_path
from dnnmask_xr._interrupt import deferred_interrupts
from dnnmask_xr._version import __version__
from dnnmask_xr.coding import NUMBERED_DIMS, encode_layer_numbers, encode_stimulus
from dnnmask_xr.engine import (
    BlockReader,
    Budget,
    FileSelection,
    LayerReport,
    default_threads,
    write_selection,
    write_values,
)
from dnnmask_xr.errors import ActFileError, DnnMaskError, UsageError

#: Default memory budget: bytes of activations held at once while writing.
DEFAULT_MEMORY = 128 * 2**20
SUFFIX = ".act.h5"
#: The suffix of netCDF4 outputs (written by :mod:`dnnmask_xr.netcdf`).
NC_SUFFIX = ".nc"


@dataclass(frozen=True)
class ComputedValues:
    """Values of a layer that come a block at a time from a callable."""

    shape: tuple[int, ...]
    dtype: np.dtype
    read_block: BlockReader


@dataclass(frozen=True)
class OutputLayer:
    """One layer to write: its name, unit numbers and where its values come from."""

    name: str
    numbers: Mapping[str, np.ndarray]
    values: FileSelection | ComputedValues

    @property
    def shape(self) -> tuple[int, ...]:
        """The layer's shape."""
        return self.values.shape

    @property
    def dtype(self) -> np.dtype:
        """The layer's dtype."""
        if isinstance(self.values, FileSelection):
            return self.values.dataset.dtype
        return self.values.dtype


@dataclass(frozen=True)
class Stimulus:
    """The stimulus table of a file: IDs, fields and the table's header."""

    ids: np.ndarray
    fields: Mapping[str, np.ndarray]
    header: Mapping[str, str]


@dataclass(frozen=True)
class SaveReport:
    """What writing a file did, layer by layer.

    Attributes
    ----------
    path
        The file written.
    layers
        One :class:`~dnnmask_xr.engine.LayerReport` per layer: how it was
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


def write_act(
    path: str,
    layers: Sequence[OutputLayer],
    *,
    stimulus: Stimulus,
    attrs: Mapping[str, Any],
    memory: int = DEFAULT_MEMORY,
    threads: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    verify: bool = False,
) -> SaveReport:
    """Write layers to an ``.act.h5`` file that appears only once complete.

    Parameters
    ----------
    path
        The output; checked with :func:`check_output` first.
    layers
        The layers, in order.
    stimulus
        The stimulus table shared by all layers.
    attrs
        Provenance for the root (``date`` and ``software`` are added).
    memory
        Most bytes of activations held at once.
    threads
        Threads that code chunks; all available cores if None.
    on_progress
        Called with a layer's name, bytes just done and bytes in all.
    verify
        Also inflate the compressed chunks copied unchanged, so that a
        damaged input chunk stops the write rather than being copied.

    Returns
    -------
    SaveReport
        How each layer was written.
    """
    check_output(path, (SUFFIX,))
    check_memory(memory)
    for layer in layers:
        _check_layer(layer)
    threads = threads or default_threads()
    total = sum(int(np.prod(layer.shape)) * layer.dtype.itemsize for layer in layers)
    root_attrs = {**attrs, **provenance_stamp()}
    reports = []
    try:
        # signals are checked between blocks and before the rename that
        # makes the file appear
        with atomic_path(path) as tmp, deferred_interrupts(), \
                ThreadPoolExecutor(threads, thread_name_prefix="dnnmask-codec") as pool:
            # libver 'earliest'..'v108' keeps the file readable by HDF5 1.8;
            # creation-order tracking keeps the layers in the order written
            # and stores attributes densely, so 100 000 stimulus IDs fit.
            # HDF5 is slow to close a file it truncated (seconds per GB written),
            # so the empty placeholder goes and HDF5 creates the file itself;
            # "x" fails rather than write over a file that took its place.
            tmp.unlink()
            with h5py.File(tmp, "x", libver=("earliest", "v108"), track_order=True) as root:
                for key, value in root_attrs.items():
                    root.attrs[key] = value
                encode_stimulus(root.attrs, stimulus.ids, stimulus.fields, stimulus.header)
                for layer in layers:
                    budget = Budget(memory, pool, threads,
                                    layer_progress(on_progress, layer.name, total), verify)
                    reports.append(_write_layer(root, layer, budget))
    except (OSError, RuntimeError) as err:  # h5py reports HDF5's failures as either
        raise ActFileError(f"cannot write {path!r}: {err}") from None
    return SaveReport(path, tuple(reports))


def _write_layer(root: h5py.File, layer: OutputLayer, budget: Budget) -> LayerReport:
    values = layer.values
    if isinstance(values, FileSelection):
        report = write_selection(root, layer.name, values, budget)
    else:
        report = write_values(root, layer.name, values.shape, np.dtype(values.dtype),
                              values.read_block, budget)
    encode_layer_numbers(root[layer.name], layer.numbers)
    return report


def _check_layer(layer: OutputLayer) -> None:
    if layer.dtype.kind not in "biufc":
        raise DnnMaskError(f"layer {layer.name!r} holds {layer.dtype} values; only numbers "
                           "can be saved")
    check_unit_numbers(layer.name, layer.numbers)


def check_unit_numbers(name: str, numbers: Mapping[str, np.ndarray]) -> None:
    """Check that a layer's channel, row and column labels are integers.

    Raises
    ------
    DnnMaskError
        If one of them is not.
    """
    for dim in NUMBERED_DIMS:
        labels = np.asarray(numbers[dim])
        if labels.dtype.kind not in "iu":
            raise DnnMaskError(f"layer {name!r}: {dim} labels are {labels.dtype}, not "
                               f"integers; {dim} labels are the 1-based numbers of the "
                               "network's units")


def check_not_input(source: str | None, target: str) -> None:
    """Refuse to write over the file the layers are read from.

    Raises
    ------
    ActFileError
        If ``target`` is ``source`` (by any path, links included).
    """
    if source and same_file(source, target):
        raise ActFileError(f"output {target!r} is the input file; writing it would replace the "
                           "activations being read: choose another output path")


def layer_progress(
    on_progress: Callable[[str, int, int], None] | None, name: str, total: int
) -> Callable[[int], None]:
    """Turn a file's progress callback into one layer's: called with bytes done."""
    if on_progress is None:
        return lambda done: None
    return lambda done: on_progress(name, done, total)


def check_output(target: str, suffixes: tuple[str, ...] = (SUFFIX, NC_SUFFIX)) -> None:
    """Check that an output file can be created at ``target``.

    Parameters
    ----------
    target
        The output path.
    suffixes
        The endings allowed: ``.act.h5`` and ``.nc`` unless told otherwise.

    Raises
    ------
    UsageError
        If the name ends in none of ``suffixes``.
    ActFileError
        If its folder is missing, not a folder or not writable, or the
        target is a folder.
    """
    if not target.endswith(suffixes):
        allowed = " or ".join(repr(suffix) for suffix in suffixes)
        raise UsageError(f"output {target!r} does not end in {allowed}; "
                         f"name it like 'masked{SUFFIX}'")
    folder = Path(target).parent
    if folder.exists() and not folder.is_dir():
        raise ActFileError(f"cannot write {target!r}: {str(folder)!r} is a file, not a folder")
    if not folder.is_dir():
        raise ActFileError(f"cannot write {target!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ActFileError(f"cannot write {target!r}: folder {str(folder)!r} is not writable")
    if Path(target).is_dir():
        raise ActFileError(f"cannot write {target!r}: it is a folder")


def check_memory(memory: int) -> None:
    """Check a memory budget: a positive number of bytes.

    Whatever the budget, one output chunk (about 1 MiB at most) and the
    input chunks being inflated are held at once.

    Raises
    ------
    UsageError
        If it is not a positive integer.
    """
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
        raise UsageError(f"memory budget {memory!r} is not a positive number of bytes")


def same_file(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    """Tell whether two paths name the same file (links and ``..`` included)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return Path(first).resolve() == Path(second).resolve()


def provenance_stamp() -> dict[str, str]:
    """Say when and by what a file is written: ``date`` (UTC) and ``software``."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"date": now, "software": f"dnnmask_xr {__version__}"}


@contextlib.contextmanager
def progress_bar(shown: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """Give a progress callback for :func:`write_act` that draws a bar on stderr.

    The bar appears only if ``shown`` and only for writes that take over
    half a second; the callback is None when nothing is shown.
    """
    if not shown:
        yield None
        return
    from tqdm import tqdm

    with tqdm(unit="B", unit_scale=True, delay=0.5, leave=False) as bar:
        def on_progress(layer: str, done: int, total: int) -> None:
            bar.total = total
            bar.set_description(layer, refresh=False)
            bar.update(done)

        yield on_progress
