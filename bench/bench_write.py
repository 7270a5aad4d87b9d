"""Benchmark the writer: many small layers, and what syncing to disk costs.

Run on demand, not in the test suite::

    python bench/bench_write.py                       # both jobs
    python bench/bench_write.py --only many-layers --layers 1000 10000
    python bench/bench_write.py --only sync --runs 5

- ``many-layers``: ``save_act`` of ``--layers`` small in-memory layers
  (4 stimuli x 3 x 2 x 2 float32 each) to ``.act.h5`` and ``.nc``; prints
  the wall and CPU time of each write and, per suffix, the ratio of the
  largest count's time to the smallest's against the ratio of the counts
  (linear when the two agree).
- ``sync``: ``save_act`` of one layer of ``--mb`` MB (random float32, so
  gzip cannot shrink it) and of a small one, to each suffix in ``--folder``
  (default: a temporary folder on the disk of the current directory, not a
  tmpfs, where ``fsync`` costs nothing), with the file and its folder
  synced (the default) and with the syncs replaced by nothing; prints the
  median of ``--runs`` runs of each and the difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import xarray as xr

import dnnmask_xr as dx
from dnnmask_xr import _atomic

SUFFIXES = (".act.h5", ".nc")
DIMS = ("stimulus", "channel", "row", "column")


def _layers(count: int) -> dict[str, xr.DataArray]:
    return {f"layer{i:05d}": xr.DataArray(np.full((4, 3, 2, 2), i, np.float32), dims=DIMS)
            for i in range(count)}


def many_layers(counts: list[int], folder: Path) -> None:
    print(f"save_act of n small layers (4 x 3 x 2 x 2 float32 each), in {folder}")
    for suffix in SUFFIXES:
        times = {}
        for count in counts:
            layers = _layers(count)
            out = folder / f"many{suffix}"
            wall, cpu = time.perf_counter(), time.process_time()
            dx.save_act(layers, out)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            times[count] = wall
            print(f"  {suffix:8} {count:6} layers: {wall:7.2f} s wall, {cpu:7.2f} s CPU, "
                  f"{out.stat().st_size / 2**20:7.1f} MiB, {1e3 * wall / count:.2f} ms/layer")
            out.unlink()
        low, high = min(counts), max(counts)
        if low != high:
            print(f"  {suffix:8} time ratio {high}/{low} layers: {times[high] / times[low]:.1f} "
                  f"(linear: {high / low:.1f})")


def _median_time(write: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        write()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sync_cost(folder: Path, mb: int, runs: int) -> None:
    rng = np.random.default_rng(0)
    sizes = {f"{mb} MB": (mb * 2**20) // (4 * 64 * 16 * 16), "small": 4}
    print(f"save_act with and without fsync (file and folder), median of {runs}, in {folder}")
    for label, stimuli in sizes.items():
        layer = xr.DataArray(rng.standard_normal((stimuli, 64, 16, 16), dtype=np.float32),
                             dims=DIMS)
        for suffix in SUFFIXES:
            out = folder / f"sync{suffix}"

            def write(layer=layer, out=out) -> None:
                dx.save_act({"conv": layer}, out)

            synced = _median_time(write, runs)
            with mock.patch.object(_atomic, "sync_path", lambda path: None):
                unsynced = _median_time(write, runs)
            out.unlink()
            print(f"  {label:7} {suffix:8} synced {synced:7.3f} s, not synced {unsynced:7.3f} s,"
                  f" cost {1e3 * (synced - unsynced):+8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=("many-layers", "sync"),
                        default=["many-layers", "sync"])
    parser.add_argument("--layers", nargs="+", type=int, default=[1000, 10_000])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder or os.getcwd(),
                                     prefix="bench-write-") as folder:
        if "many-layers" in args.only:
            many_layers(sorted(args.layers), Path(folder))
        if "sync" in args.only:
            sync_cost(Path(folder), args.mb, args.runs)


if __name__ == "__main__":
    main()
