"""A dask-backed reduction over a file larger than a memory budget.

Makes an ``.act.h5`` file of one layer larger than the budget (written as
DNNBrain writes one: gzip, h5py's automatic chunks), then, in a fresh
process, opens it with ``open_act(path, chunks={})`` and computes the mean
activation of every channel over stimuli, rows and columns. Prints the wall
time, the peak resident memory of that process, and whether it stayed
under the budget; checks the means against a plain h5py loop.

Run on demand, not in the test suite (it writes about 1 GiB)::

    python bench/dask_reduce.py                      # 512 MiB budget, 1 GiB file
    python bench/dask_reduce.py --chunks '{}' --chunks auto
    python bench/dask_reduce.py --budget 256 --size 768 --folder DIR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

MIB = 2**20
LAYER = "conv"
#: (channels, rows, columns): 1 MiB of float32 per stimulus
MAP_SHAPE = (256, 32, 32)


def make_file(path: Path, size_mib: int) -> tuple[int, ...]:
    """Write a ReLU-like layer of about ``size_mib`` MiB, 32 stimuli at a time."""
    per_stimulus = np.prod(MAP_SHAPE) * 4
    n_stim = max(1, size_mib * MIB // per_stimulus)
    shape = (n_stim, *MAP_SHAPE)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as root:
        dataset = root.create_dataset(LAYER, shape=shape, dtype=np.float32,
                                      chunks=True, compression="gzip")
        for start in range(0, n_stim, 32):
            stop = min(start + 32, n_stim)
            block = rng.standard_normal((stop - start, *MAP_SHAPE), dtype=np.float32)
            dataset[start:stop] = np.maximum(block, 0)
    return shape


def reduce_file(path: str, chunks: str) -> None:
    """Child process: the dask-backed reduction; prints seconds and peak RSS."""
    import dnnmask_xr as dx

    start = time.perf_counter()
    layer = dx.open_act(path, chunks=json.loads(chunks) if chunks != "auto" else chunks)[LAYER]
    means = layer.astype(np.float64).mean(["stimulus", "row", "column"]).values
    seconds = time.perf_counter() - start
    np.save(path + ".means.npy", means)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(f"{seconds:.2f} {peak} {layer.data.npartitions} {layer.data.chunksize}")


def reference_means(path: Path) -> np.ndarray:
    """Per-channel means with h5py, 16 stimuli at a time."""
    with h5py.File(path) as root:
        dataset = root[LAYER]
        total = np.zeros(dataset.shape[1])
        for start in range(0, dataset.shape[0], 16):
            total += dataset[start:start + 16].astype(np.float64).sum(axis=(0, 2, 3))
        return total / (dataset.shape[0] * dataset.shape[2] * dataset.shape[3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=512, help="memory budget, MiB")
    parser.add_argument("--size", type=int, default=1024, help="layer size, MiB (in memory)")
    parser.add_argument("--folder", help="where to write the file (default: a temp folder)")
    parser.add_argument("--chunks", action="append",
                        help='open_act chunks=, as JSON or "auto"; repeat to compare '
                             "(default: {}, the file's HDF5 chunks)")
    parser.add_argument("--reduce", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reduce:
        reduce_file(args.reduce, args.chunks[0])
        return 0

    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "bench.act.h5"
        start = time.perf_counter()
        shape = make_file(path, args.size)
        print(f"file: {' x '.join(map(str, shape))} float32, "
              f"{np.prod(shape) * 4 / MIB:.0f} MiB in memory, "
              f"{path.stat().st_size / MIB:.0f} MiB on disk "
              f"(written in {time.perf_counter() - start:.1f} s)")
        reference = reference_means(path)
        status = 0
        for chunks in args.chunks or ["{}"]:
            done = subprocess.run([sys.executable, __file__, "--reduce", str(path),
                                   "--chunks", chunks], capture_output=True, text=True,
                                  check=True)
            seconds, peak, tasks, chunk = done.stdout.split(maxsplit=3)
            means = np.load(str(path) + ".means.npy")
            exact = np.allclose(means, reference, rtol=1e-12, atol=0)
            peak_mib = int(peak) / MIB
            under = peak_mib < args.budget
            print(f"chunks={chunks}: {tasks} chunks of {chunk.strip()}, "
                  f"{os.cpu_count()} threads; per-channel mean in {float(seconds):.1f} s, "
                  f"peak RSS {peak_mib:.0f} MiB: {'under' if under else 'OVER'} the "
                  f"{args.budget} MiB budget; matches an h5py loop: {exact}")
            status |= not (exact and under)
        return status


if __name__ == "__main__":
    sys.exit(main())
