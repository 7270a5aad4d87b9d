"""Save a lazily z-scored set of files from a dask.distributed cluster: where the work runs.

Writes ``--files`` files of 150 stimuli each of one ``(256, 13, 13)`` float32
layer (ReLU-like values) into ``--folder``, opens them as one set with
``chunks="auto"``, z-scores the layer lazily over the stimuli, and saves it
(``.act.h5``, ``.nc`` and ``.act.zarr``) three ways, each in a process of
its own:

- ``cluster``: ``save_act`` with a 2-worker ``LocalCluster`` (processes, one
  thread each) as the active client: the workers compute and deflate each
  output chunk, the client only stores compressed bytes;
- ``threads``: the same ``save_act`` with dask's threaded scheduler in the
  client process;
- ``to_zarr``: xarray's own ``to_zarr(zarr_format=3)`` of the same layer on
  the cluster (the workers write their own chunks), rechunked to the
  regular chunks zarr takes, if zarr is installed.

Prints each way's wall time and its client's peak RSS above what it held
before saving. This file is also the runnable example of docs/dask.md
("Writing at scale"): the cluster is started under ``__main__``, as
``dask.distributed`` needs.

    python bench/bench_dask_write.py --folder /tmp
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

import dnnmask_xr as dx

N_STIM = 150
SHAPE = (256, 13, 13)


def write_set(folder: Path, files: int) -> tuple[list[Path], list[Path]]:
    """Write the set: one file and one stimulus table per run."""
    paths, stims = [], []
    for run in range(files):
        rng = np.random.default_rng(run)
        values = np.maximum(rng.standard_normal((N_STIM, *SHAPE), dtype=np.float32), 0)
        path = folder / f"run-{run}.act.h5"
        dx.save_act({"conv5": xr.DataArray(values, dims=("stimulus", "channel", "row",
                                                         "column"))}, path)
        stim = folder / f"run-{run}.stim.csv"
        stim.write_text("type=image\npath=/data\ndata=stimID\n" + "".join(
            f"run{run}_img{i}.png\n" for i in range(N_STIM)))
        paths.append(path)
        stims.append(stim)
    return paths, stims


def z_scored(paths: list[Path], stims: list[Path]) -> dx.Activations:
    """The set's layer z-scored over the stimuli, lazily: every block needs the whole set."""
    acts = dx.open_act(paths, stim=stims, chunks="auto")
    layer = acts["conv5"]
    scored = ((layer - layer.mean("stimulus")) / layer.std("stimulus")).astype(np.float32)
    return dx.Activations({"conv5": scored}, stim_header=acts.stim_header)


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def save_one(way: str, folder: Path, files: int, suffix: str) -> None:
    """Save one way, in this process, and print wall seconds and peak RSS growth."""
    paths = sorted(folder.glob("run-*.act.h5"), key=lambda p: int(p.stem.split("-")[1]
                                                                    .split(".")[0]))
    stims = [path.with_name(path.name.replace(".act.h5", ".stim.csv")) for path in paths]
    scored = z_scored(paths, stims)
    out = folder / f"z-{way}{suffix if way != 'to_zarr' else '.zarr'}"
    if way == "threads":
        import dask

        before, start = _peak_rss(), time.perf_counter()
        with dask.config.set(scheduler="threads"):
            dx.save_act(scored, out)
    else:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster):
            before, start = _peak_rss(), time.perf_counter()
            if way == "cluster":
                dx.save_act(scored, out)
            else:
                # zarr takes regular chunks only: one file's stimuli, a quarter of the channels
                layer = scored["conv5"].chunk({"stimulus": N_STIM, "channel": SHAPE[0] // 4})
                layer.to_dataset(name="conv5").to_zarr(out, zarr_format=3, mode="w")
    print(f"{time.perf_counter() - start:.3f} {_peak_rss() - before}")


def main() -> None:
    if sys.argv[1:2] == ["--save-one"]:
        way, folder, files, suffix = sys.argv[2:]
        save_one(way, Path(folder), int(files), suffix)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--folder", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        write_set(Path(folder), args.files)
        mib = args.files * N_STIM * int(np.prod(SHAPE)) * 4 / 2**20
        print(f"{args.files} files of {N_STIM} stimuli x {SHAPE}, {mib:.0f} MiB z-scored")
        ways = ["cluster", "threads"]
        try:
            import zarr  # noqa: F401
            ways.append("to_zarr")
        except ImportError:
            pass
        for suffix in (".act.h5", ".nc", ".act.zarr"):
            for way in ways:
                if way == "to_zarr" and suffix != ".act.h5":
                    continue
                done = subprocess.run([sys.executable, __file__, "--save-one", way, folder,
                                       str(args.files), suffix], capture_output=True,
                                      text=True, check=True)
                wall, rss = done.stdout.split()[-2:]
                what = "to_zarr(zarr_format=3)" if way == "to_zarr" else f"save_act {suffix}"
                print(f"  {what:24} {way:8} {float(wall):6.2f} s  client peak RSS "
                      f"+{int(rss) / 2**20:5.0f} MiB")


if __name__ == "__main__":
    main()
