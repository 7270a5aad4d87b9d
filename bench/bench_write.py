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
- ``stream``: ``--stimuli`` stimuli of an AlexNet-shaped model (its 8
  layers, ReLU-like float32 values) appended ``--batch`` at a time with
  ``dx.ActWriter`` (without ``resume``, the output growing; with it,
  parts joined at the end), against ``save_act`` of the same arrays held in memory,
  against h5py's ``create_dataset(..., compression="gzip")`` filled batch
  by batch by hand, and against the limit: deflating the same bytes in
  1 MiB pieces on every core with ISA-L, writing nothing, and that limit
  with the compressed bytes written in order to one file and synced
  ("limit+disk": what any writer of the file must do). ``--model-ms``
  makes the "model" take that long a batch (waiting, as on an
  accelerator), adds the model alone as a way, and says each way's time
  against it: what writing adds to an extraction run. Each runs in a
  process of its own, which reports its wall time and its peak RSS above
  what it held before writing (the batches the "model" cycles through).
  Run it with ``--folder`` on a real disk for numbers that include syncing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
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


#: AlexNet's layers as torchvision's model gives them for a 224 x 224 image.
ALEXNET = {"conv1": (64, 55, 55), "conv2": (192, 27, 27), "conv3": (384, 13, 13),
           "conv4": (256, 13, 13), "conv5": (256, 13, 13), "fc6": (4096,), "fc7": (4096,),
           "fc8": (1000,)}
STREAM_WAYS = ("limit", "limit+disk", "ActWriter", "ActWriter-resume", "save_act", "h5py")


def _model_batches(batch: int) -> list[dict[str, np.ndarray]]:
    """Two batches of ReLU-like values (about half zeros), which the "model" alternates."""
    rng = np.random.default_rng(0)
    return [{name: np.maximum(rng.standard_normal((batch, *shape), dtype=np.float32), 0)
             for name, shape in ALEXNET.items()} for _ in range(2)]


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stream_one(way: str, out: Path, stimuli: int, batch: int, model_s: float = 0.0) -> None:
    """Write one way (in a process of its own) and print wall seconds and RSS growth.

    ``model_s``: seconds the "model" takes for each batch before it is handed
    over (a forward pass on an accelerator: the thread waits, the cores are
    free), for every way but the limits.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import h5py

    from dnnmask_xr.act.codec import deflate
    from dnnmask_xr.act.pool import default_threads

    batches = _model_batches(batch)
    steps = range(stimuli // batch)
    # what a process pays once, before its first write, is no way's: imported here for
    # every way, as the limit's codec and pool and h5py are above (the package's API,
    # and dask, which xarray imports for its first array when dask is installed)
    warm = time.perf_counter()
    _ = dx.ActWriter, dx.save_act, xr.DataArray(np.zeros(1))
    imports = time.perf_counter() - warm

    def model(step: int) -> dict[str, np.ndarray]:
        time.sleep(model_s)
        return batches[step % 2]

    before = _peak_rss()
    start = time.perf_counter()
    if way == "model":
        for step in steps:
            model(step)
    elif way.startswith("ActWriter"):
        # without resume the output grows as the parts come; with it, the parts are files
        # of their own, joined by close()
        with dx.ActWriter(out, resume=way.endswith("resume")) as writer:
            for step in steps:
                writer.append(model(step))
    elif way == "save_act":
        held = {name: np.concatenate([batches[step % 2][name] for step in steps])
                for name in ALEXNET}
        before = _peak_rss()  # the arrays are the caller's, held before the save
        start = time.perf_counter()
        for step in steps:
            model(step)
        dx.save_act(held, out)
    elif way == "h5py":
        with h5py.File(out, "w") as root:
            for name, shape in ALEXNET.items():
                root.create_dataset(name, shape=(stimuli, *shape), dtype=np.float32,
                                    compression="gzip")
            for step in steps:
                values = model(step)
                for name in ALEXNET:
                    root[name][step * batch:(step + 1) * batch] = values[name]
    else:
        # the limit: the same bytes deflated on every core, nothing written; with
        # "+disk", the compressed bytes also written to one file in order and synced
        # (what any writer of the file has to do on this disk)
        lock = threading.Lock()
        with ThreadPoolExecutor(default_threads()) as pool, open(out, "wb") as sink:
            for step in steps:
                pieces = [memoryview(values).cast("B")[i:i + 2**20]
                          for values in batches[step % 2].values()
                          for i in range(0, values.nbytes, 2**20)]
                with lock:
                    for packed in pool.map(deflate, pieces):
                        if way == "limit+disk":
                            sink.write(packed)
            sink.flush()
            os.fsync(sink.fileno())
    wall = time.perf_counter() - start
    print(f"{wall:.3f} {_peak_rss() - before} {imports:.3f}")


def stream(folder: Path, stimuli: int, batch: int, model_s: float = 0.0) -> None:
    import subprocess
    import sys

    nbytes = sum(batch * int(np.prod(shape)) * 4 for shape in ALEXNET.values())
    print(f"{stimuli} stimuli of AlexNet's 8 layers in batches of {batch} "
          f"({nbytes / 2**20:.0f} MiB a batch), in {folder}"
          + (f", the model taking {model_s:.3f} s a batch" if model_s else ""))
    results = {}
    for way in ("model", *STREAM_WAYS) if model_s else STREAM_WAYS:
        out = folder / "stream.act.h5"
        done = subprocess.run([sys.executable, __file__, "--stream-one", way, str(out),
                               str(stimuli), str(batch), str(model_s)], capture_output=True,
                              text=True, check=True)
        wall, rss, imports = done.stdout.split()
        results[way] = (float(wall), int(rss))
        if out.exists():
            out.unlink()
    print(f"  (importing the package's API and xarray's dask support took {float(imports):.2f} "
          "s, once per process, before any way's clock starts)")
    limit, disk = results["limit"][0], results["limit+disk"][0]
    for way, (wall, rss) in results.items():
        print(f"  {way:16} {wall:7.2f} s  {wall / limit:5.2f}x the limit  "
              f"{wall / disk:5.2f}x limit+disk  "
              f"peak RSS +{rss / 2**20:6.0f} MiB ({rss / nbytes:4.2f} batches)"
              + (f"  {wall / results['model'][0]:5.2f}x the model alone" if model_s else ""))


def main() -> None:
    if sys.argv[1:2] == ["--stream-one"]:
        way, out, stimuli, batch, model_s = sys.argv[2:]
        stream_one(way, Path(out), int(stimuli), int(batch), float(model_s))
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=("many-layers", "sync", "stream"),
                        default=["many-layers", "sync", "stream"])
    parser.add_argument("--stimuli", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--model-ms", type=float, default=0.0,
                        help="milliseconds the model takes a batch (stream; default 0)")
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
        if "stream" in args.only:
            stream(Path(folder), args.stimuli, args.batch, args.model_ms / 1e3)


if __name__ == "__main__":
    main()
