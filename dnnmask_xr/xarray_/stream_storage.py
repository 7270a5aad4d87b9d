"""Where a streamed write stores its parts, on the thread that writes them.

:class:`PartFiles`: a resumable run's (and a ``.nc`` or ``.act.zarr``
output's) parts, each a file of its own (:mod:`~dnnmask_xr.act.parts`),
joined into the output at the end. :class:`GrowingOutput`: any other
``.act.h5`` run's, stored straight into the output's temporary file, its
layers growing (:mod:`~dnnmask_xr.act.growing`). Both take the same calls
from :class:`~dnnmask_xr.xarray_.stream.ActWriter`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import xarray as xr

from dnnmask_xr.act._interrupt import deferred_interrupts
from dnnmask_xr.act.checks import ZARR_SUFFIX
from dnnmask_xr.act.growing import GrowingWrite
from dnnmask_xr.act.parts import Parts, refuse_interrupted_parts
from dnnmask_xr.act.plan import Plan
from dnnmask_xr.act.write import SaveReport, WriteOptions, write
from dnnmask_xr.xarray_.activations import Activations
from dnnmask_xr.xarray_.reader import open_act
from dnnmask_xr.xarray_.save import save_act


class PartFiles:
    """Where a resumable run (or a ``.nc`` output) stores its parts: files joined at the end."""

    def __init__(self, path: str, resume: bool) -> None:
        self.parts = Parts(path, resume=resume)
        #: stimuli stored, an earlier run's included
        self.stored = 0

    def add(self, plan: Plan, options: WriteOptions, chunks: Mapping[str, Any]) -> None:
        """Store a part as a file of its own (synced, with ``resume``, before it counts)."""
        self.parts.add(plan, options)
        self.stored += len(plan.stimulus.ids)

    def finish(self, inputs: Mapping[str, str], options: WriteOptions,
               attrs: Mapping[str, Any]) -> SaveReport:
        """Join the parts into the output, through the one writer (or zarr's, for a store).

        ``attrs`` are the output's root attributes (the run's, once every batch is in).

        Every part is checked against the first (:meth:`Parts.stacked`), for a
        store too: xarray would join parts of other unit numbers, attributes
        or dtypes without a word.
        """
        # the check of every part against the first, for a store too
        stacked = self.parts.stacked(inputs)
        if self.parts.target.endswith(ZARR_SUFFIX):
            return _store_of_parts(self.parts.paths, self.parts.target, options, attrs)
        return write(replace(stacked, attrs=dict(attrs)), self.parts.target, options)

    def abandon(self) -> None:
        """End without an output: keep the parts if resuming, else remove them."""
        self.parts.close(keep=self.parts.resume)

    def close(self) -> None:
        """Remove the parts, once the output is in place."""
        self.parts.close(keep=False)


class GrowingOutput:
    """Where a run that is not to be resumed stores its parts: in the output, growing."""

    def __init__(self, path: str) -> None:
        # a day of extraction is not to be lost to a missing resume=True
        refuse_interrupted_parts(path)
        self.path = path
        self.output: GrowingWrite | None = None

    @property
    def stored(self) -> int:
        """Stimuli stored in the output's temporary file."""
        return 0 if self.output is None else self.output.n_stimuli

    def add(self, plan: Plan, options: WriteOptions,
            chunks: Mapping[str, tuple[int, ...]]) -> None:
        """Store a part after those stored, the first creating the output's layers."""
        if self.output is None:
            self.output = GrowingWrite(plan, self.path, options, chunks)
        self.output.add(plan)

    def finish(self, inputs: Mapping[str, str], options: WriteOptions,
               attrs: Mapping[str, Any]) -> SaveReport:
        """Store the stimulus table, labels and attributes, and put the output in place."""
        # on the caller's thread, whose signals a write defers: one that comes while
        # the file is completed stops it, or is raised after saying it was written
        with deferred_interrupts() as deferral:
            report = self.output.finish(inputs, attrs)
            deferral.commit(self.path)
        return report

    def abandon(self) -> None:
        """End without an output: the temporary file is removed."""
        if self.output is not None:
            self.output.abandon()

    def close(self) -> None:
        """Nothing is left to release: the output is in place."""


def _store_of_parts(paths: Sequence[os.PathLike[str]], target: str,
                    options: WriteOptions, attrs: Mapping[str, Any]) -> SaveReport:
    """Save the parts, joined along ``stimulus``, to the zarr store ``target``.

    Each part is read a dask chunk at a time (a stimulus may be in two
    parts, which a set of files refuses: the parts are joined here).
    """
    opened = [open_act(path, chunks={}) for path in paths]
    try:
        first = opened[0]
        layers = {name: xr.concat([acts[name] for acts in opened], dim="stimulus")
                  for name in first}
        # the parts' own date and software give way to the store's
        return save_act(Activations(layers, attrs=dict(attrs), stim_header=first.stim_header),
                        target, memory=options.memory, threads=options.threads)
    finally:
        for acts in opened:
            acts.close()


def end_storage(writer: ThreadPoolExecutor, store: PartFiles | GrowingOutput,
                pid: int) -> None:
    """Stop without an output: finish the part being written, keep the parts if resuming."""
    if os.getpid() != pid:
        # a forked child's copy of the writer (a data loader's worker): the run is the parent's
        return
    writer.shutdown(wait=True)
    store.abandon()
