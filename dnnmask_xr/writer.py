"""Write layers to an ``.act.h5`` file, block by block, all or nothing."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from tqdm import tqdm

from dnnmask_xr._atomic import atomic_path
from dnnmask_xr._interrupt import check_interrupt, deferred_interrupts
from dnnmask_xr._version import __version__
from dnnmask_xr.activations import Activations, stimulus_fields
from dnnmask_xr.coding import NUMBERED_DIMS, encode_layer_numbers, encode_stimulus
from dnnmask_xr.errors import ActFileError, DnnMaskError, UsageError

#: Default memory budget: bytes of activations held at once while writing.
DEFAULT_MEMORY = 128 * 2**20
#: Target bytes of one HDF5 chunk of the output, before compression.
CHUNK_BYTES = 2**20
SUFFIX = ".act.h5"
NC_SUFFIX = ".nc"


def save_act(
    acts: Activations | Mapping[str, xr.DataArray] | xr.DataTree,
    path: str | os.PathLike[str],
    *,
    attrs: Mapping[str, Any] | None = None,
    memory: int = DEFAULT_MEMORY,
    progress: bool = False,
) -> None:
    """Write layers to an ``.act.h5`` file that DNNBrain reads as its own.

    One gzip-compressed 4-D dataset per layer at the root, in order, and
    nothing else there. Coordinates, the stimulus table and provenance go
    into HDF5 attributes. The file appears at ``path`` only once complete.
    A path ending in ``.nc`` gets a netCDF4 file instead, one group per
    layer (see :mod:`dnnmask_xr.netcdf`).

    Parameters
    ----------
    acts
        The layers, lazy, dask-backed or in memory; lazy and dask-backed
        ones are read (computed) block by block. A ``DataTree`` is read
        as :func:`~dnnmask_xr.from_datatree` reads it.
    path
        The output, ending in ``.act.h5`` (or ``.nc``). An existing file
        there is replaced, but never the file the layers are read from.
    attrs
        More provenance for the file's root (``cmd``, for instance).
    memory
        Memory budget: most bytes of activations held at once while writing.
    progress
        Show a progress bar on stderr for writes that take a while.

    Raises
    ------
    ActFileError
        If the output cannot be written; nothing is left at ``path``.
    UsageError
        If ``path`` does not end in ``.act.h5`` or ``.nc``.
    DnnMaskError
        If the layers disagree on their stimuli.
    """
    if isinstance(acts, xr.DataTree):
        from dnnmask_xr.datatree import from_datatree
        acts = from_datatree(acts)
    if os.fspath(path).endswith(NC_SUFFIX):
        from dnnmask_xr.netcdf import save_nc
        return save_nc(acts if isinstance(acts, Activations) else Activations(acts), path,
                       attrs=attrs, memory=memory, progress=progress)
    if not isinstance(acts, Activations):
        acts = Activations(acts)
    target = os.fspath(path)
    check_output(target)
    if acts.source and same_file(acts.source, target):
        raise ActFileError(f"output {target!r} is the input file; writing it would replace the "
                           "activations being read: choose another output path")
    stimulus = _shared_stimulus(acts)
    root_attrs = {**acts.attrs, **(attrs or {}), "date": _now(), "software": _software()}
    try:
        # signals are checked before the rename that makes the file appear
        with atomic_path(target) as tmp, deferred_interrupts(), tqdm(
            total=acts.nbytes, unit="B", unit_scale=True, delay=0.5,
            disable=not progress, leave=False,
        ) as bar:
            # libver 'earliest'..'v108' keeps the file readable by HDF5 1.8;
            # creation-order tracking keeps the layers in the order written
            # and stores attributes densely, so 100 000 stimulus IDs fit.
            with h5py.File(tmp, "w", libver=("earliest", "v108"), track_order=True) as root:
                for key, value in root_attrs.items():
                    root.attrs[key] = value
                encode_stimulus(root.attrs, *stimulus, acts.stim_header)
                for name, array in acts.items():
                    bar.set_description(name)
                    _write_layer(root, name, array, memory, bar)
    except OSError as err:
        raise ActFileError(f"cannot write {target!r}: {err}") from None


def output_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Choose chunks of about 1 MiB that cut only stimuli and channels.

    Whole rows and columns per chunk make reading one channel for all
    stimuli touch that channel's chunks only.
    """
    n_stim, n_chn, n_row, n_col = shape
    plane = max(1, n_row * n_col * itemsize)
    if n_stim * plane <= CHUNK_BYTES:
        return (n_stim, max(1, min(n_chn, CHUNK_BYTES // (n_stim * plane))), n_row, n_col)
    return (max(1, min(n_stim, CHUNK_BYTES // plane)), 1, n_row, n_col)


def iter_blocks(
    shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int, block_bytes: int
) -> Iterator[tuple[slice, slice]]:
    """Cut a layer into blocks of whole chunks, each at most ``block_bytes``.

    Yields ``(stimulus slice, channel slice)`` pairs covering the layer once.
    A single chunk larger than the budget is still one block.
    """
    n_stim, n_chn = shape[:2]
    stim_chunk, chn_chunk = chunks[:2]
    chunk_bytes = stim_chunk * chn_chunk * shape[2] * shape[3] * itemsize
    per_block = max(1, block_bytes // max(1, chunk_bytes))
    chunks_across = -(-n_chn // chn_chunk)
    if per_block >= chunks_across:
        stim_step, chn_step = stim_chunk * (per_block // chunks_across), n_chn
    else:
        stim_step, chn_step = stim_chunk, chn_chunk * per_block
    for start in range(0, n_stim, stim_step):
        for first in range(0, n_chn, chn_step):
            yield (slice(start, min(start + stim_step, n_stim)),
                   slice(first, min(first + chn_step, n_chn)))


def same_file(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    """Tell whether two paths name the same file (links and ``..`` included)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return Path(first).resolve() == Path(second).resolve()


def _write_layer(
    root: h5py.File, name: str, array: xr.DataArray, block_bytes: int, bar: tqdm
) -> None:
    shape, dtype = array.shape, array.dtype
    if dtype.kind not in "biufc":
        raise DnnMaskError(f"layer {name!r} holds {dtype} values; only numbers can be saved")
    numbers = {dim: array[dim].values for dim in NUMBERED_DIMS}
    for dim, labels in numbers.items():
        if labels.dtype.kind not in "iu":
            raise DnnMaskError(f"layer {name!r}: {dim} labels are {labels.dtype}, not integers; "
                               f"{dim} labels are the 1-based numbers of the network's units")
    if 0 in shape:
        # HDF5 cannot chunk an empty axis; an empty layer needs no compression
        dataset = root.create_dataset(name, shape=shape, dtype=dtype)
    else:
        chunks = output_chunks(shape, dtype.itemsize)
        dataset = root.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks,
                                      compression="gzip", compression_opts=4)
        for stimuli, channels in iter_blocks(shape, chunks, dtype.itemsize, block_bytes):
            block = array.isel(stimulus=stimuli, channel=channels).values
            dataset[stimuli, channels] = block
            bar.update(block.nbytes)
            check_interrupt()
    encode_layer_numbers(dataset, numbers)


def _shared_stimulus(acts: Activations) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    arrays = list(acts.values())
    if not arrays:
        return np.arange(1, 1), {}
    ids, fields = arrays[0]["stimulus"].values, stimulus_fields(arrays[0])
    for name, array in zip(acts, arrays, strict=True):
        if not np.array_equal(array["stimulus"].values, ids) or list(
            stimulus_fields(array)
        ) != list(fields):
            raise DnnMaskError(f"layer {name!r} labels its stimuli differently from layer "
                               f"{next(iter(acts))!r}; all layers of a file share one "
                               "stimulus table")
    return ids, fields


def check_output(target: str) -> None:
    """Check that an ``.act.h5`` (or ``.nc``) file can be created at ``target``.

    Raises
    ------
    UsageError
        If the name ends in neither ``.act.h5`` nor ``.nc``.
    ActFileError
        If its folder is missing, not a folder or not writable, or the
        target is a folder.
    """
    if not target.endswith((SUFFIX, NC_SUFFIX)):
        raise UsageError(f"output {target!r} does not end in {SUFFIX!r} or {NC_SUFFIX!r}; "
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


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _software() -> str:
    return f"dnnmask_xr {__version__}"
