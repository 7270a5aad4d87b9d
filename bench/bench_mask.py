"""Benchmark dnn_mask against a naive implementation of the same semantics.

Run on demand, not in the test suite::

    python bench/bench_mask.py                 # every scenario, 5 runs each
    python bench/bench_mask.py --runs 3 --only dmask unsorted
    python bench/bench_mask.py --no-big        # skip the 3.5 GB layer

The first run writes the input files into ``--data`` (default
``bench/data``, about 3 GB), the way DNNBrain writes them
(``create_dataset(name, data=array, compression="gzip")``: h5py's automatic
chunks, gzip level 4), with ReLU-like activations:

- ``alexnet.act.h5``: 1000 stimuli, AlexNet's eight layers (2 GB raw);
- ``big.act.h5``: one 20 000 x 256 x 13 x 13 float32 layer (3.5 GB raw),
  far over the default memory budget.

Each scenario runs, as whole processes started the same way:

- ``ours``: ``python -m dnnmask_xr.cli ...`` (``dnn_mask``);
- ``naive``: ``python bench/naive_mask.py ...``: h5py fancy indexing, numpy
  and an h5py gzip write (``dnnmask_xr.testing.naive_mask``).

It prints, per scenario, the median wall time of each over ``--runs`` runs,
the ratio naive/ours, and the peak RSS of each process; then, in-process,
the median time of ``mask_file`` against the physical limit on this machine:
for masks, reading and inflating only the chunks the mask touches and
deflating only the output, on every core with the codec we ship; for whole
layers, copying the compressed chunks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from dnnmask_xr import mask_file, write_dmask
from dnnmask_xr.act.codec import CODEC, deflate, inflate
from dnnmask_xr.act.write import default_threads
from dnnmask_xr.testing import ALEXNET_SHAPES, as_dnnmask, relu_activations

HERE = Path(__file__).resolve().parent
N_STIMULI = 1000
BIG_SHAPE = (20_000, 256, 13, 13)
TIME = "/usr/bin/time"


@dataclass
class Scenario:
    """One job: the command's flags and the same mask for the naive way."""

    name: str
    act: str
    flags: list[str]
    mask: dict[str, dict[str, list[int]]]
    whole: bool = False
    results: dict[str, object] = field(default_factory=dict)


def scenarios(data: Path, big: bool) -> list[Scenario]:
    """The jobs of the issue: whole layers, masks, unsorted and spread channels."""
    alexnet = str(data / "alexnet.act.h5")
    every_8th = list(range(1, 193, 8))
    dmask = {"conv1": {"chn": list(range(1, 11)), "row": list(range(20, 31)),
                       "col": list(range(20, 31))},
             "fc1": {"chn": list(range(1, 101))}}
    dmask_file = data / "bench.dmask.csv"
    write_dmask(as_dnnmask(dmask), dmask_file)
    jobs = [
        Scenario("conv1 whole", alexnet, ["-layer", "conv1"], {"conv1": {}}, whole=True),
        Scenario("all layers", alexnet, ["-layer", *ALEXNET_SHAPES],
                 {layer: {} for layer in ALEXNET_SHAPES}, whole=True),
        Scenario("dmask", alexnet, ["-dmask", str(dmask_file)], dmask),
        Scenario("unsorted", alexnet, ["-layer", "conv5", "-chn", "200", "3", "17"],
                 {"conv5": {"chn": [200, 3, 17]}}),
        Scenario("spread", alexnet, ["-layer", "conv2", "-chn", *map(str, every_8th)],
                 {"conv2": {"chn": every_8th}}),
        Scenario("small", alexnet, ["-layer", "conv5", "-chn", "1", "2", "3"],
                 {"conv5": {"chn": [1, 2, 3]}}),
    ]
    if big:
        jobs.append(Scenario("big whole", str(data / "big.act.h5"), ["-layer", "conv5"],
                             {"conv5": {}}, whole=True))
    return jobs


def make_inputs(data: Path, big: bool) -> None:
    """Write the input files the way DNNBrain does, once."""
    data.mkdir(parents=True, exist_ok=True)
    alexnet = data / "alexnet.act.h5"
    if not alexnet.exists():
        print(f"writing {alexnet} (once; about a minute)", flush=True)
        with h5py.File(alexnet.with_suffix(".tmp"), "w") as root:
            for seed, (name, shape) in enumerate(ALEXNET_SHAPES.items()):
                layer = relu_activations(N_STIMULI, {name: shape}, seed=seed)[name]
                root.create_dataset(name, data=layer, compression="gzip")
        alexnet.with_suffix(".tmp").rename(alexnet)
    target = data / "big.act.h5"
    if big and not target.exists():
        print(f"writing {target} (once; a few minutes)", flush=True)
        rng = np.random.default_rng(8)
        with h5py.File(target.with_suffix(".tmp"), "w") as root:
            # h5py picks the chunks it would pick for data=array (chunks=True)
            layer = root.create_dataset("conv5", shape=BIG_SHAPE, dtype="float32",
                                        chunks=True, compression="gzip")
            step = layer.chunks[0] * 8
            for start in range(0, BIG_SHAPE[0], step):
                stop = min(start + step, BIG_SHAPE[0])
                values = rng.standard_normal((stop - start, *BIG_SHAPE[1:]), dtype="float32")
                layer[start:stop] = np.maximum(values, 0)
        target.with_suffix(".tmp").rename(target)


def run_process(argv: list[str]) -> tuple[float, float]:
    """Run a command; return its wall time (s) and peak RSS (MiB).

    The peak comes from GNU time (``/usr/bin/time -f %M``): a child's own
    rusage would also count the memory of this process, from which it forks.
    """
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        done = subprocess.run([TIME, "-f", "%M", "-o", report.name, *argv],
                              stdout=subprocess.DEVNULL, check=False)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{' '.join(argv)} failed with status {done.returncode}")
        peak_kib = int(report.read().split()[-1])
    return seconds, peak_kib / 1024


def whole_processes(job: Scenario, runs: int, out: Path) -> None:
    """Time ours and naive as whole processes, alternating."""
    import json

    ours_argv = [sys.executable, "-m", "dnnmask_xr.cli", "-act", job.act, *job.flags,
                 "-out", str(out / "ours.act.h5"), "-q"]
    naive_argv = [sys.executable, str(HERE / "naive_mask.py"), job.act,
                  str(out / "naive.act.h5"), json.dumps(job.mask)]
    times: dict[str, list[float]] = {"ours": [], "naive": []}
    peaks: dict[str, float] = {"ours": 0.0, "naive": 0.0}
    naive_runs = 1 if job.name == "big whole" else runs  # naive takes minutes there
    for run in range(runs):
        for who, argv in (("ours", ours_argv), ("naive", naive_argv)):
            if who == "naive" and run >= naive_runs:
                continue
            _clear(out)
            seconds, peak = run_process(argv)
            times[who].append(seconds)
            peaks[who] = max(peaks[who], peak)
    job.results.update(
        ours=statistics.median(times["ours"]), naive=statistics.median(times["naive"]),
        ours_rss=peaks["ours"], naive_rss=peaks["naive"],
    )


def in_process(job: Scenario, runs: int, out: Path) -> None:
    """Time mask_file in this process, and the physical limit of the job."""
    mask = as_dnnmask(job.mask)
    times = []
    for _ in range(runs):
        _clear(out)
        start = time.perf_counter()
        mask_file(job.act, out / "inproc.act.h5", mask)
        times.append(time.perf_counter() - start)
    limits = []
    for _ in range(runs):
        _clear(out)
        limits.append(copy_limit(job, out) if job.whole else reencode_limit(job))
    job.results.update(inproc=statistics.median(times), limit=statistics.median(limits))


def copy_limit(job: Scenario, out: Path) -> float:
    """Copy the layers' compressed chunks to a new file, nothing else."""
    start = time.perf_counter()
    with h5py.File(job.act, "r") as source, h5py.File(out / "copy.h5", "w") as target:
        for layer in job.mask:
            dataset = source[layer]
            copy = target.create_dataset(layer, shape=dataset.shape, dtype=dataset.dtype,
                                         chunks=dataset.chunks, compression="gzip")
            for index in np.ndindex(*(-(-n // c) for n, c in zip(dataset.shape,
                                                                 dataset.chunks, strict=True))):
                offset = tuple(i * c for i, c in zip(index, dataset.chunks, strict=True))
                mask, chunk = dataset.id.read_direct_chunk(offset)
                copy.id.write_direct_chunk(offset, chunk, mask)
    return time.perf_counter() - start


def reencode_limit(job: Scenario) -> float:
    """Read and inflate the touched chunks, deflate the output's bytes, all cores."""
    threads = default_threads()
    start = time.perf_counter()
    with h5py.File(job.act, "r") as source, ThreadPoolExecutor(threads) as pool:
        for layer, axes in job.mask.items():
            dataset = source[layer]
            chunks = dataset.chunks
            kept = [np.arange(dataset.shape[0])]
            for axis, key in enumerate(("chn", "row", "col"), start=1):
                numbers = axes.get(key)
                kept.append(np.arange(dataset.shape[axis]) if numbers is None
                            else np.asarray(numbers) - 1)
            touched = [np.unique(positions // step)
                       for positions, step in zip(kept, chunks, strict=True)]
            grid = np.array(np.meshgrid(*touched, indexing="ij")).reshape(4, -1).T
            raw = [dataset.id.read_direct_chunk(tuple(int(i) * c for i, c in zip(ids, chunks,
                                                                                 strict=True)))[1]
                   for ids in grid]
            size = [int(np.prod(chunks)) * dataset.dtype.itemsize] * len(raw)
            inflated = list(pool.map(inflate, raw, size))
            out_bytes = int(np.prod([k.size for k in kept])) * dataset.dtype.itemsize
            # deflate as many bytes as the output holds, taken from real values
            stream = b"".join(inflated)
            pieces = [stream[i:i + 2**20] for i in range(0, min(out_bytes, len(stream)), 2**20)]
            list(pool.map(deflate, pieces))
    return time.perf_counter() - start


def _clear(out: Path) -> None:
    """Remove earlier outputs, so no run pays for freeing the last one's disk space."""
    for path in out.iterdir():
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="+", help="scenario names (first word)")
    parser.add_argument("--no-big", dest="big", action="store_false")
    args = parser.parse_args()
    make_inputs(args.data, args.big)
    jobs = [job for job in scenarios(args.data, args.big)
            if not args.only or job.name.split()[0] in args.only]
    print(f"{os.cpu_count()} cores, codec {CODEC}, {args.runs} runs, medians; "
          "whole processes unless said")
    header = (f"{'scenario':<12} {'naive s':>8} {'ours s':>7} {'ratio':>6} "
              f"{'naive MiB':>9} {'ours MiB':>8} | {'in-proc s':>9} {'limit s':>7} "
              f"{'/limit':>6}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(dir=args.data) as scratch:
        out = Path(scratch)
        for job in jobs:
            whole_processes(job, args.runs, out)
            in_process(job, args.runs, out)
            r = job.results
            print(f"{job.name:<12} {r['naive']:8.2f} {r['ours']:7.2f} "
                  f"{r['naive'] / r['ours']:6.1f} {r['naive_rss']:9.0f} {r['ours_rss']:8.0f} | "
                  f"{r['inproc']:9.3f} {r['limit']:7.3f} {r['inproc'] / r['limit']:6.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
