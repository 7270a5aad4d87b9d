"""Benchmark reading layers with open_act against h5py, xarray + h5netcdf and the limit.

Run on demand, not in the test suite::

    python bench/bench_read.py                  # every job, 5 runs each
    python bench/bench_read.py --runs 3 --only 1 2
    python bench/bench_read.py --only mean      # both dask jobs (4 and 5)

The first run writes ``alexnet.act.h5`` into ``--data`` (default
``bench/data``) with bench_mask.py's ``make_inputs``: 1000 stimuli, AlexNet's
eight layers, gzip and h5py's automatic chunks, as DNNBrain writes them.

Jobs (``--only`` takes their numbers or the first words of their names):

0. ``open only``: import dnnmask_xr and ``open_act`` the file; always run,
   its peak RSS is the baseline of the memory target;
1. ``whole``: ``open_act(path)["conv2"].values`` (560 MB of float32);
2. ``every 8th``: conv2, ``.sel(channel=[1, 9, ..., 185]).values``;
3. ``3 channels``: conv5, ``.sel(channel=[1, 2, 3]).values``: few chunks, so
   any start-up cost of the read path shows;
4. ``mean threads``: ``open_act(path, chunks="auto")["conv2"].mean("stimulus")
   .compute()`` on dask's threaded scheduler with 1 and with 2 workers;
5. ``mean cluster``: the same on a ``distributed.LocalCluster`` of two worker
   processes of one thread each (started, and their imports done, first);
6. ``two reductions``: ``c = open_act(path)["conv5"]; c.mean(); c.std()``,
   with the bytes the process reads meanwhile (``rchar`` of ``/proc/self/io``):
   about the layer's stored size if it is read once, twice that if twice.
7. ``set whole``: conv2 as a study of four sessions (``ses-1.act.h5`` ..
   ``ses-4.act.h5`` of 250 stimuli each, written once into ``--data/sessions``
   as DNNBrain writes them, with a ``.stim.csv`` each): ``open_act([...],
   stim=[...])["conv2"].values`` against h5py reading each file and
   ``np.concatenate``, and the limit over the four files' chunks.
8. ``strided``: every other channel, row and column
   (``[:, ::2, ::2, ::2]``) of an (8, 256, 56, 56) float32 layer stored
   contiguous and one stored with lzf (h5py's automatic chunks), both in
   ``--data/strided.act.h5`` (written once): ``open_act(path)[layer]
   [key].values`` against h5py's own strided read ``root[layer][key]``,
   the file opened before the clock for both (job 0 gives the cost of
   ``open_act``): the read alone is timed.

Jobs 1-3 also run, each in its own process, the ways a user would without
this package: ``h5py`` (``root["conv2"][...]``, ``[:, list_of_channels]``),
``xarray + h5netcdf`` (``xr.open_dataset(path, engine="h5netcdf",
phony_dims="access")``, then ``.values`` or ``.isel`` on the layer's second
phony dimension), and the ``limit``: ``read_direct_chunk`` of exactly the
chunks the job touches and ISA-L inflate, on a pool of ``os.cpu_count()``
threads, without placing the values into an output array. Job 4 also runs
h5py's whole read followed by numpy's mean, job 6 h5py's read and numpy's
two reductions.

Every run is a fresh process (``python bench/bench_read.py --child ...``)
timed inside, around opening the file and the job: interpreter start-up and
imports are not counted (the public modules, and the dask xarray imports on
first use where it is installed, are imported before the clock); whatever
else the library imports or starts on first use is. Before the timed runs, each way of each
job runs once more and checks its result against h5py (exactly for jobs
1-3, to float32 rounding for the reductions), exiting non-zero on a
mismatch; that run also warms the page cache, so the timed runs read the
file from memory. The table gives the median over ``--runs`` runs and the
largest peak RSS of any run's process (GNU time's ``%M``), then checks the
targets the read path aims at.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TIME = "/usr/bin/time"
MIB = 2**20
EVERY_8TH = list(range(1, 193, 8))
#: job number -> (layer, 1-based channels or None for all) for the plain reads
READS: dict[int, tuple[str, list[int] | None]] = {
    1: ("conv2", None),
    2: ("conv2", EVERY_8TH),
    3: ("conv5", [1, 2, 3]),
}
BASELINES = ("ours", "h5py", "h5netcdf", "limit")


@dataclass
class Job:
    """One job: the ways it runs and, per way, its times and peaks."""

    number: int
    name: str
    ways: tuple[str, ...]
    times: dict[str, list[float]] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)
    rchar: dict[str, list[int]] = field(default_factory=dict)

    def median(self, way: str) -> float:
        return statistics.median(self.times[way])


JOBS = [
    Job(0, "open only", ("ours",)),
    Job(1, "whole", BASELINES),
    Job(2, "every 8th", BASELINES),
    Job(3, "3 channels", BASELINES),
    Job(4, "mean threads", ("threads1", "threads2", "h5py")),
    Job(5, "mean cluster", ("ours",)),
    Job(6, "two reductions", ("ours", "h5py")),
    Job(7, "set whole", ("ours", "h5py", "limit")),
    Job(8, "strided", ("ours-contiguous", "h5py-contiguous", "ours-lzf", "h5py-lzf")),
]
#: Sessions the study of job 7 is cut into, and stimuli per session.
SESSIONS, PER_SESSION = 4, 250
#: Job 8: the layer's shape, and every other channel, row and column of it.
STRIDED_SHAPE, STRIDED_KEY = (8, 256, 56, 56), (slice(None),) + (slice(None, None, 2),) * 3


# ---------------------------------------------------------------- child side

Run = Callable[[], Any]


def import_xarray() -> None:
    """Do before the clock the imports xarray and open_act do on first use.

    xarray imports dask, where it is installed, the first time it builds a
    variable (to ask whether the data are a dask array): most of a second.
    """
    import importlib
    import importlib.util

    import xarray  # noqa: F401

    if importlib.util.find_spec("dask") is not None:
        importlib.import_module("dask.array")
    # what open_act imports on its first call: the dnnact backend imports the read
    # path only when a file is opened (xarray imports every backend at its start)
    importlib.import_module("dnnmask_xr.xarray_.store")


def prepare(number: int, way: str, path: str) -> tuple[Run, Run | None]:
    """Import what a job needs; return the job and what to close after it."""
    if number == 0:
        import dnnmask_xr as dx

        import_xarray()

        open_act = dx.open_act
        return lambda: open_act(path), None
    if number in READS:
        return prepare_read(number, way, path), None
    if number == 4:
        return prepare_mean(way, path), None
    if number == 5:
        return prepare_cluster(path)
    if number == 6:
        return prepare_reductions(way, path), None
    if number == 7:
        return prepare_set(way, session_paths(path)), None
    if number == 8:
        return prepare_strided(way, strided_path(path))
    raise SystemExit(f"no job {number}")


def strided_path(path: str) -> str:
    """The file of job 8, beside the benchmark's file."""
    return str(Path(path).parent / "strided.act.h5")


def make_strided(path: Path) -> None:
    """Write job 8's file once: the same values stored contiguous and with lzf."""
    import h5py
    import numpy as np

    target = Path(strided_path(str(path)))
    if target.exists():
        return
    values = np.random.default_rng(8).standard_normal(STRIDED_SHAPE).astype("float32")
    with h5py.File(target, "w") as root:
        root.create_dataset("contiguous", data=values)
        root.create_dataset("lzf", data=values, chunks=True, compression="lzf")


def prepare_strided(way: str, path: str) -> tuple[Run, Run]:
    """Open job 8's file before the clock: the job times the strided read alone."""
    who, layer = way.split("-")
    if who == "ours":
        import dnnmask_xr as dx

        import_xarray()
        acts = dx.open_act(path)
        lazy = acts[layer]
        return (lambda: lazy[STRIDED_KEY].values), acts.close
    import h5py

    root = h5py.File(path, "r")
    dataset = root[layer]
    return (lambda: dataset[STRIDED_KEY]), root.close


def session_paths(path: str) -> list[tuple[str, str]]:
    """The ``(activation file, stimulus table)`` of each session of job 7."""
    folder = Path(path).parent / "sessions"
    return [(str(folder / f"ses-{k}.act.h5"), str(folder / f"ses-{k}.stim.csv"))
            for k in range(1, SESSIONS + 1)]


def make_sessions(path: Path) -> None:
    """Cut conv2 of the benchmark file into the sessions of job 7, once."""
    import h5py

    sessions = session_paths(str(path))
    if all(Path(act).exists() for act, _ in sessions):
        return
    Path(sessions[0][0]).parent.mkdir(exist_ok=True)
    with h5py.File(path, "r") as root:
        for k, (act, stim) in enumerate(sessions):
            part = root["conv2"][k * PER_SESSION:(k + 1) * PER_SESSION]
            with h5py.File(act, "w") as out:
                out.create_dataset("conv2", data=part, compression="gzip")
            rows = "".join(f"ses{k + 1}_img{i:03d}.jpg,{i % 2}\n" for i in range(PER_SESSION))
            Path(stim).write_text("type=image\npath=/data/stimuli\ndata=stimID,label\n" + rows)
            del part


def prepare_set(way: str, sessions: list[tuple[str, str]]) -> Run:
    acts, stims = [act for act, _ in sessions], [stim for _, stim in sessions]
    if way == "ours":
        import dnnmask_xr as dx

        import_xarray()
        import pandas  # noqa: F401  (the stimulus tables need it; imported before the clock)

        def run() -> Any:
            return dx.open_act(acts, stim=stims)["conv2"].values

        return run
    if way == "h5py":
        import h5py
        import numpy as np

        def run() -> Any:
            parts = []
            for act in acts:
                with h5py.File(act, "r") as root:
                    parts.append(root["conv2"][...])
            return np.concatenate(parts)

        return run
    if way == "limit":
        import_limit()

        def run() -> Any:
            # every chunk of every file, inflated on one pool, as the limit of job 1
            with ThreadPoolExecutor(os.cpu_count()) as pool:
                return [inflate_touched(pool, act, "conv2", None) for act in acts]

        return run
    raise SystemExit(f"job 7 has no way {way!r}")


def prepare_read(number: int, way: str, path: str) -> Run:
    layer, channels = READS[number]
    zero = None if channels is None else [c - 1 for c in channels]
    if way == "ours":
        import dnnmask_xr as dx

        import_xarray()
        open_act = dx.open_act

        def run() -> Any:
            lazy = open_act(path)[layer]
            return (lazy if channels is None else lazy.sel(channel=channels)).values

        return run
    if way == "h5py":
        import h5py

        def run() -> Any:
            with h5py.File(path, "r") as root:
                return root[layer][...] if zero is None else root[layer][:, zero]

        return run
    if way == "h5netcdf":
        import importlib

        import xarray as xr

        importlib.import_module("h5netcdf")
        import_xarray()
        xr.backends.list_engines()  # finds the backends once, before the clock

        def run() -> Any:
            with xr.open_dataset(path, engine="h5netcdf", phony_dims="access") as dataset:
                variable = dataset[layer]  # dims phony_dim_0, phony_dim_N, ...
                if zero is not None:
                    variable = variable.isel({variable.dims[1]: zero})
                return variable.values

        return run
    if way == "limit":
        return prepare_limit(path, layer, zero)
    raise SystemExit(f"job {number} has no way {way!r}")


def touched_offsets(dataset: Any, zero: list[int] | None) -> list[tuple[int, ...]]:
    """The offsets of the chunks a selection of channels touches, in file order."""
    chunks = dataset.chunks
    axes: list[Any] = [range(0, n, c) for n, c in zip(dataset.shape, chunks, strict=True)]
    if zero is not None:
        axes[1] = sorted({i // chunks[1] * chunks[1] for i in zero})
    return list(itertools.product(*axes))


def import_limit() -> None:
    """Do before the clock the imports the limit's work needs."""
    import h5py  # noqa: F401
    from isal import isal_zlib  # noqa: F401


def prepare_limit(path: str, layer: str, zero: list[int] | None) -> Run:
    import_limit()

    def run() -> Any:
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            return inflate_touched(pool, path, layer, zero)

    return run


def inflate_touched(pool: ThreadPoolExecutor, path: str, layer: str,
                    zero: list[int] | None) -> tuple[list[tuple[int, ...]], list[bytes]]:
    """The limit's work: read the chunks a selection touches as stored, and inflate them."""
    import h5py
    from isal import isal_zlib

    with h5py.File(path, "r") as root:
        dataset = root[layer]
        nbytes = math.prod(dataset.chunks) * dataset.dtype.itemsize
        read = dataset.id.read_direct_chunk
        offsets = touched_offsets(dataset, zero)

        def inflate(offset: tuple[int, ...]) -> bytes:
            return isal_zlib.decompress(read(offset)[1], bufsize=nbytes)

        return offsets, list(pool.map(inflate, offsets))


def prepare_mean(way: str, path: str) -> Run:
    if way == "h5py":
        import h5py

        def run() -> Any:
            with h5py.File(path, "r") as root:
                return root["conv2"][...].mean(axis=0)

        return run
    import dnnmask_xr as dx

    import_xarray()
    open_act = dx.open_act
    workers = {"threads1": 1, "threads2": 2}[way]

    def run() -> Any:
        layer = open_act(path, chunks="auto")["conv2"]
        return layer.mean("stimulus").compute(scheduler="threads", num_workers=workers).values

    return run


def _warm_worker() -> None:
    """Do a worker's imports before the clock, as the client's were."""
    import importlib

    for name in ("dask.array", "dnnmask_xr.xarray_.reader", "dnnmask_xr.xarray_.store",
                 "xarray"):
        importlib.import_module(name)


def prepare_cluster(path: str) -> tuple[Run, Run]:
    import logging

    from distributed import Client, LocalCluster

    import dnnmask_xr as dx

    import_xarray()
    open_act = dx.open_act
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster)
    client.run(_warm_worker)

    def run() -> Any:
        layer = open_act(path, chunks="auto")["conv2"]
        return layer.mean("stimulus").compute().values  # the client is the default

    def close() -> None:
        client.close()
        cluster.close()

    return run, close


def prepare_reductions(way: str, path: str) -> Run:
    if way == "h5py":
        import h5py

        def run() -> Any:
            with h5py.File(path, "r") as root:
                values = root["conv5"][...]
                return float(values.mean()), float(values.std())

        return run
    import dnnmask_xr as dx

    import_xarray()
    open_act = dx.open_act

    def run() -> Any:
        c = open_act(path)["conv5"]
        return float(c.mean()), float(c.std())

    return run


def check(number: int, way: str, path: str, value: Any) -> None:
    """Compare a job's result with h5py's; exit non-zero if they differ."""
    import h5py
    import numpy as np

    def fail(what: str) -> None:
        raise SystemExit(f"job {number} ({way}): {what}")

    with h5py.File(path, "r") as root:
        if number == 0:
            if value["conv2"].shape != root["conv2"].shape:
                fail("conv2 has the wrong shape")
        elif number in READS and way == "limit":
            check_limit(number, root, value, fail)
        elif number in READS:
            layer, channels = READS[number]
            expected = root[layer][...]  # all of it, then numpy: not h5py's fancy path
            if channels is not None:
                expected = expected[:, [c - 1 for c in channels]]
            if not (isinstance(value, np.ndarray) and value.dtype == expected.dtype
                    and np.array_equal(value, expected)):
                fail("values differ from h5py's")
        elif number in (4, 5):
            expected = root["conv2"][...].mean(axis=0, dtype=np.float64)
            if np.shape(value) != expected.shape or not np.allclose(value, expected,
                                                                    rtol=1e-4, atol=1e-6):
                fail("the means differ from h5py's")
        elif number == 7 and way != "limit":
            if not np.array_equal(value, root["conv2"][...]):
                fail("the set's values differ from the layer's")
        elif number == 8:
            with h5py.File(strided_path(path), "r") as strided:
                expected = strided[way.split("-")[1]][...][STRIDED_KEY]  # numpy's striding
            if not (isinstance(value, np.ndarray) and value.dtype == expected.dtype
                    and np.array_equal(value, expected)):
                fail("values differ from h5py's")
        elif number == 6:
            values = root["conv5"][...].astype(np.float64)
            if not np.allclose(value, (values.mean(), values.std()), rtol=1e-4):
                fail(f"mean and std {value} differ from h5py's")


def check_limit(number: int, root: Any, value: Any, fail: Callable[[str], None]) -> None:
    """The limit inflated every touched chunk, whole, and the first and last right."""
    import numpy as np

    layer, channels = READS[number]
    dataset = root[layer]
    offsets, pieces = value
    per_channel_chunk = dataset.id.get_num_chunks() // -(-dataset.shape[1] // dataset.chunks[1])
    touched = len({o[1] for o in offsets})
    nbytes = math.prod(dataset.chunks) * dataset.dtype.itemsize
    if len(pieces) != per_channel_chunk * touched or {len(p) for p in pieces} != {nbytes}:
        fail("the limit did not inflate every touched chunk whole")
    if channels is not None and touched != len({(c - 1) // dataset.chunks[1] for c in channels}):
        fail("the limit read the wrong channel chunks")
    for index in (0, -1):
        box = tuple(slice(o, min(o + c, n)) for o, c, n in zip(offsets[index], dataset.chunks,
                                                                dataset.shape, strict=True))
        chunk = np.frombuffer(pieces[index], dtype=dataset.dtype).reshape(dataset.chunks)
        inside = tuple(slice(0, b.stop - b.start) for b in box)
        if not np.array_equal(chunk[inside], dataset[box]):
            fail(f"the chunk at {offsets[index]} inflates to other values than h5py's")


def rchar() -> int | None:
    """Bytes this process has read so far, or None where /proc/self/io is missing."""
    try:
        with open("/proc/self/io") as io:
            for line in io:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def child(number: int, way: str, path: str, verify: bool) -> None:
    """Run one job once in this fresh process; print its time as a JSON line."""
    run, close = prepare(number, way, path)
    before = rchar()
    start = time.perf_counter()
    value = run()
    seconds = time.perf_counter() - start
    after = rchar()
    if close is not None:
        close()
    if verify:
        check(number, way, path, value)
    read = None if before is None or after is None else after - before
    print("RESULT " + json.dumps({"seconds": seconds, "rchar": read}), flush=True)


# --------------------------------------------------------------- parent side


def run_child(number: int, way: str, path: Path, verify: bool) -> tuple[float, float, int | None]:
    """Run a job in a fresh process; its time inside (s), peak RSS (MiB) and bytes read.

    The peak comes from GNU time (``/usr/bin/time -f %M``): the largest
    resident set of the process or of any child it waited for.
    """
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", str(number), way,
            "--data", str(path.parent)]
    if verify:
        argv.append("--verify")
    with tempfile.NamedTemporaryFile("r") as report:
        done = subprocess.run([TIME, "-f", "%M", "-o", report.name, *argv],
                              stdout=subprocess.PIPE, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"job {number} ({way}) failed with status {done.returncode}")
        peak_kib = int(report.read().split()[-1])
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    return result["seconds"], peak_kib / 1024, result["rchar"]


def measure(job: Job, runs: int, path: Path) -> None:
    """Check every way of a job once, then time them, alternating, in fresh processes."""
    for way in job.ways:
        run_child(job.number, way, path, verify=True)
    for _ in range(runs):
        for way in job.ways:
            seconds, peak, read = run_child(job.number, way, path, verify=False)
            job.times.setdefault(way, []).append(seconds)
            job.peaks[way] = max(job.peaks.get(way, 0.0), peak)
            if read is not None:
                job.rchar.setdefault(way, []).append(read)


def selected(only: list[str] | None) -> list[Job]:
    if not only:
        return JOBS
    wanted = set(only)
    return [job for job in JOBS if job.number == 0 or str(job.number) in wanted
            or job.name.split()[0] in wanted]


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="+",
                        help="job numbers or first words of job names (0 always runs)")
    parser.add_argument("--child", nargs=2, metavar=("JOB", "WAY"), help=argparse.SUPPRESS)
    parser.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = args.data / "alexnet.act.h5"
    if args.child:
        child(int(args.child[0]), args.child[1], str(path), args.verify)
        return

    known = {str(job.number) for job in JOBS} | {job.name.split()[0] for job in JOBS}
    unknown = sorted(set(args.only or ()) - known)
    if unknown:
        parser.error(f"no job {unknown[0]!r}; give numbers or first words: {sorted(known)}")
    sys.path.insert(0, str(HERE))  # bench_mask.py, however this script was started
    from bench_mask import make_inputs

    make_inputs(args.data, big=False)
    if any(job.number == 7 for job in selected(args.only)):
        make_sessions(path)
    if any(job.number == 8 for job in selected(args.only)):
        make_strided(path)
    jobs = selected(args.only)
    print(f"{os.cpu_count()} cores, {args.runs} runs, medians of the time inside fresh "
          "processes (open + job, imports excluded); peak RSS of the process (GNU time %M)")
    done: dict[int, Job] = {}
    header = (f"{'job':<14} {'ours s':>7} {'h5py s':>7} {'h5netcdf s':>10} {'limit s':>7} "
              f"{'h5py/ours':>9} {'ours/limit':>10} {'ours MiB':>8} {'h5py MiB':>8}")
    for job in jobs:
        measure(job, args.runs, path)
        done[job.number] = job
        if job.number == 0:
            print(f"baseline, import dnnmask_xr + open_act only: {job.median('ours'):.3f} s, "
                  f"peak {job.peaks['ours']:.0f} MiB")
            if any(j.number in READS for j in jobs):
                print()
                print(header)
                print("-" * len(header))
        elif job.number in READS:
            ours, h5, nc, limit = (job.median(way) for way in BASELINES)
            print(f"{job.name:<14} {ours:7.3f} {h5:7.3f} {nc:10.3f} {limit:7.3f} "
                  f"{h5 / ours:9.2f} {ours / limit:10.2f} {job.peaks['ours']:8.0f} "
                  f"{job.peaks['h5py']:8.0f}", flush=True)
        elif job.number == 4:
            one, two, h5 = (job.median(way) for way in job.ways)
            print(f"\nmean threads: 1 thread {one:.3f} s, 2 threads {two:.3f} s, "
                  f"1/2 ratio {one / two:.2f}; h5py whole read + numpy mean {h5:.3f} s; "
                  f"peak {job.peaks['threads1']:.0f} / {job.peaks['threads2']:.0f} / "
                  f"{job.peaks['h5py']:.0f} MiB", flush=True)
        elif job.number == 5:
            print(f"mean cluster: 2 worker processes x 1 thread {job.median('ours'):.3f} s "
                  "(compute only; cluster started and workers' imports done first); "
                  f"peak of the largest process {job.peaks['ours']:.0f} MiB", flush=True)
        elif job.number == 6:
            import h5py

            with h5py.File(path, "r") as root:
                stored = root["conv5"].id.get_storage_size()
            line = (f"two reductions (conv5 mean, std): ours {job.median('ours'):.3f} s, "
                    f"h5py read once + numpy {job.median('h5py'):.3f} s")
            if job.rchar:
                ours_read = statistics.median(job.rchar["ours"])
                h5_read = statistics.median(job.rchar["h5py"])
                line += (f"; read {ours_read / MIB:.0f} MiB = {ours_read / stored:.2f}x the "
                         f"layer's {stored / MIB:.0f} MiB on disk (h5py {h5_read / stored:.2f}x)")
            print(line, flush=True)
        elif job.number == 7:
            ours, h5, limit = (job.median(way) for way in job.ways)
            print(f"\nset of {SESSIONS} files, conv2 .values: ours {ours:.3f} s, h5py + "
                  f"np.concatenate {h5:.3f} s, limit {limit:.3f} s; h5py/ours {h5 / ours:.2f}, "
                  f"ours/limit {ours / limit:.2f}; peak {job.peaks['ours']:.0f} / "
                  f"{job.peaks['h5py']:.0f} MiB", flush=True)

        elif job.number == 8:
            parts = []
            for layer in ("contiguous", "lzf"):
                ours, h5 = job.median(f"ours-{layer}"), job.median(f"h5py-{layer}")
                parts.append(f"{layer} ours {ours:.4f} s, h5py {h5:.4f} s, "
                             f"ours/h5py {ours / h5:.2f}")
            print(f"\nevery other channel, row, column of {STRIDED_SHAPE}: "
                  + "; ".join(parts), flush=True)

    targets = []
    if 1 in done:
        job = done[1]
        ours, h5, limit = job.median("ours"), job.median("h5py"), job.median("limit")
        targets.append((f"whole .values >= 2x faster than h5py: {h5 / ours:.2f}x", h5 / ours >= 2))
        targets.append((f"whole .values <= 1.25x the limit: {ours / limit:.2f}x",
                        ours / limit <= 1.25))
        out_mib = 1000 * 192 * 27 * 27 * 4 / MIB
        baseline = done[0].peaks["ours"]
        budget = out_mib + 128 + baseline
        targets.append((f"whole-layer peak RSS <= {out_mib:.0f} MiB output + 128 MiB + "
                        f"{baseline:.0f} MiB baseline = {budget:.0f} MiB: "
                        f"{job.peaks['ours']:.0f} MiB", job.peaks["ours"] <= budget))
    if 7 in done:
        job = done[7]
        ours, h5 = job.median("ours"), job.median("h5py")
        targets.append((f"a set of files as fast as one file (>= 2x h5py): {h5 / ours:.2f}x",
                        h5 / ours >= 2))
    if 2 in done:
        job = done[2]
        ratio = job.median("h5py") / job.median("ours")
        targets.append((f"every 8th >= 2.5x faster than h5py: {ratio:.2f}x", ratio >= 2.5))
    if 8 in done:
        for layer in ("contiguous", "lzf"):
            ratio = done[8].median(f"ours-{layer}") / done[8].median(f"h5py-{layer}")
            targets.append((f"strided {layer} within 1.2x of h5py's strided read: "
                            f"{ratio:.2f}x", ratio <= 1.2))
    if 4 in done:
        ratio = done[4].median("threads1") / done[4].median("threads2")
        targets.append((f"dask 2 threads >= 1.6x faster than 1: {ratio:.2f}x", ratio >= 1.6))
    if targets:
        print("\ntargets:")
        for text, ok in targets:
            print(f"  {text:<86} {met(ok)}")


if __name__ == "__main__":
    main()
