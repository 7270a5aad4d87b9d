"""Lazy reads go through the chunk reader: counted, not timed.

Each touched chunk is read and inflated once per read and no other chunk is
read; inflation runs on the shared pool's threads for reads from the main
thread, in the reading thread otherwise (dask's workers); tiny reads start
no thread; layers are cached as xarray's backends cache them; memory held
besides the output stays within ``read_memory``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import signal
import threading
import time
import tracemalloc

import h5py
import numpy as np
import pytest
import xarray as xr

import dnnmask_xr.act.chunk_read
import dnnmask_xr.act.pool
import dnnmask_xr.xarray_.array
from dnnmask_xr import UsageError, open_act, save_act, set_options
from dnnmask_xr.act.chunk_index import ChunkIndex

SHAPE = (40, 24, 9, 10)
CHUNKS = (8, 6, 4, 5)


@pytest.fixture
def gzip_file(tmp_path):
    # small whole numbers: sums are exact in float32, whatever the order
    data = np.random.default_rng(11).integers(0, 100, SHAPE).astype("float32")
    path = tmp_path / "layer.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", data=data, chunks=CHUNKS, compression="gzip")
        root.create_dataset("plain", data=data, chunks=CHUNKS)
    return path, data


@pytest.fixture(scope="module")
def many_chunks(tmp_path_factory):
    """16 MiB in chunks of 256 KiB: a read of it is many batches."""
    shape, chunks = (64, 64, 32, 32), (4, 16, 32, 32)
    data = np.random.default_rng(2).standard_normal(shape).astype("float32")
    path = tmp_path_factory.mktemp("many") / "big.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", data=data, chunks=chunks, compression="gzip")
    return path, data


@pytest.fixture
def chunk_reads(monkeypatch) -> list[tuple[int, ...]]:
    """Record the offset of every chunk read as stored, by any reader."""
    seen: list[tuple[int, ...]] = []
    real = ChunkIndex.read

    def recording(self, offset):
        seen.append(offset)
        return real(self, offset)

    monkeypatch.setattr(ChunkIndex, "read", recording)
    return seen


@pytest.fixture
def inflating_threads(monkeypatch) -> list[int]:
    """Record the thread of every inflation; the first few wait, so that all threads get work."""
    seen: list[int] = []
    real = dnnmask_xr.act.chunk_read.inflate

    def recording(data, size):
        seen.append(threading.get_ident())
        if len(seen) <= 8:
            time.sleep(0.01)
        return real(data, size)

    monkeypatch.setattr(dnnmask_xr.act.chunk_read, "inflate", recording)
    return seen


def touched(key: dict[str, object], chunks: tuple[int, ...] = CHUNKS
            ) -> set[tuple[int, ...]]:
    """The chunk offsets an outer selection touches, worked out with numpy alone."""
    axes = []
    for dim, size, step in zip(("stimulus", "channel", "row", "column"), SHAPE, chunks,
                               strict=True):
        positions = np.arange(size)[key.get(dim, slice(None))]
        axes.append(np.unique(np.atleast_1d(positions) // step) * step)
    return {tuple(int(i) for i in offset) for offset in itertools.product(*axes)}


KEYS = [
    {},
    {"channel": [0, 7, 23, 7]},
    {"channel": slice(0, 24, 8), "row": [8]},
    {"stimulus": slice(3, 30, 2), "column": [9, 0]},
    {"stimulus": 5, "channel": 5, "row": 5, "column": 5},
]


@pytest.mark.parametrize("key", KEYS, ids=lambda key: ",".join(key) or "whole")
def test_each_touched_chunk_is_read_and_inflated_once(gzip_file, chunk_reads, inflations, key):
    path, data = gzip_file
    layer = open_act(path, cache=False)["conv"]
    got = layer.isel(key).values
    expected = data
    for axis, dim in reversed(list(enumerate(layer.dims))):
        expected = np.take(expected, np.arange(SHAPE[axis])[key.get(dim, slice(None))],
                           axis=axis)
    np.testing.assert_array_equal(got, expected)
    assert sorted(chunk_reads) == sorted(touched(key))
    assert len(inflations) == len(chunk_reads)


def test_nc_layers_are_read_by_the_chunk_reader(gzip_file, tmp_path, chunk_reads):
    path, data = gzip_file
    nc = tmp_path / "layer.nc"
    save_act(open_act(path), nc)
    with h5py.File(nc) as root:
        chunks = root["conv/conv"].chunks
    chunk_reads.clear()
    layer = open_act(nc)["conv"]
    np.testing.assert_array_equal(layer.isel(channel=[3, 20]).values, data[:, [3, 20]])
    assert sorted(chunk_reads) == sorted(touched({"channel": [3, 20]}, chunks))


def test_a_second_read_of_an_uncached_layer_reads_again(gzip_file, chunk_reads):
    path, _ = gzip_file
    layer = open_act(path, cache=False)["conv"]
    layer.mean().values  # noqa: B018
    layer.std().values  # noqa: B018
    assert len(chunk_reads) == 2 * len(touched({}))


@pytest.mark.parametrize("suffix", [".act.h5", ".nc"])
def test_two_reductions_of_a_cached_layer_read_its_chunks_once(gzip_file, tmp_path,
                                                               chunk_reads, suffix):
    path, data = gzip_file
    if suffix == ".nc":
        save_act(open_act(path), tmp_path / "layer.nc")
        path = tmp_path / "layer.nc"
    layer = open_act(path)["conv"]
    with h5py.File(path) as root:
        chunks = (root["conv"] if suffix == ".act.h5" else root["conv/conv"]).chunks
    chunk_reads.clear()
    assert float(layer.mean()) == pytest.approx(float(data.mean()), rel=1e-6)
    assert float(layer.std()) == pytest.approx(float(data.std()), rel=1e-6)
    assert sorted(chunk_reads) == sorted(touched({}, chunks))


@pytest.mark.parametrize(("cache", "reads"), [(True, 1), (False, 2)])
def test_the_backend_caches_as_xarray_is_told(gzip_file, chunk_reads, cache, reads):
    path, _ = gzip_file
    layer = xr.open_dataarray(path, engine="dnnact", group="conv", cache=cache)
    layer.mean().values  # noqa: B018
    layer.std().values  # noqa: B018
    assert len(chunk_reads) == reads * len(touched({}))


def test_a_cached_layer_stays_lazy_under_selection(gzip_file, chunk_reads):
    path, data = gzip_file
    layer = open_act(path)["conv"]
    picked = layer.isel(channel=[2])
    assert chunk_reads == []
    np.testing.assert_array_equal(picked.values, data[:, [2]])
    assert sorted(chunk_reads) == sorted(touched({"channel": [2]}))


def test_values_can_be_assigned_to_without_touching_the_file(gzip_file):
    path, data = gzip_file
    before = path.read_bytes()
    acts = open_act(path)
    acts["conv"][0, 0] = 0.0
    assert float(abs(acts["conv"][0, 0]).max()) == 0.0
    np.testing.assert_array_equal(acts["conv"][1:].values, data[1:])
    acts.close()
    assert path.read_bytes() == before


@pytest.mark.parametrize("suffix", [".act.h5", ".nc"])
def test_cache_is_a_bool(gzip_file, tmp_path, suffix):
    path, _ = gzip_file
    if suffix == ".nc":
        save_act(open_act(path), tmp_path / "layer.nc")
        path = tmp_path / "layer.nc"
    with pytest.raises(UsageError, match=r"^cache='yes' is neither True nor False$"):
        open_act(path, cache="yes")


def test_inflation_runs_on_several_threads_for_a_read_from_the_main_thread(
        many_chunks, inflating_threads):
    path, data = many_chunks
    with set_options(read_threads=2):
        np.testing.assert_array_equal(open_act(path)["conv"].values, data)
    assert threading.get_ident() not in inflating_threads
    assert len(set(inflating_threads)) == 2


def test_by_default_reads_use_every_core(many_chunks, inflating_threads, monkeypatch):
    path, data = many_chunks
    monkeypatch.setattr(dnnmask_xr.xarray_.array, "default_threads", lambda: 2)  # a 2-core machine
    np.testing.assert_array_equal(open_act(path)["conv"].values, data)
    assert len(set(inflating_threads)) == 2


def test_reads_from_another_thread_inflate_in_that_thread(many_chunks, inflating_threads):
    path, data = many_chunks
    layer = open_act(path)["conv"]
    got, reader = {}, []

    def read():
        reader.append(threading.get_ident())
        got["values"] = layer.values

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    np.testing.assert_array_equal(got["values"], data)
    assert set(inflating_threads) == set(reader)


def test_a_tiny_read_starts_no_thread(gzip_file, monkeypatch, inflating_threads):
    path, data = gzip_file
    monkeypatch.setattr(dnnmask_xr.act.pool, "_shared", None)
    layer = open_act(path)["conv"]
    threads_before = threading.active_count()
    np.testing.assert_array_equal(layer.isel(stimulus=[1], channel=[2, 3]).values,
                                  data[[1]][:, [2, 3]])
    assert threading.active_count() == threads_before
    assert set(inflating_threads) == {threading.get_ident()}


def test_one_thread_reads_in_the_calling_thread(many_chunks, inflating_threads):
    path, data = many_chunks
    with set_options(read_threads=1):
        np.testing.assert_array_equal(open_act(path)["conv"].values, data)
    assert set(inflating_threads) == {threading.get_ident()}


def test_a_read_holds_at_most_its_output_and_the_memory_budget(many_chunks):
    path, data = many_chunks
    layer = open_act(path, cache=False)["conv"]
    budget = 2**21
    with set_options(read_threads=2, read_memory=budget):
        tracemalloc.start()
        try:
            values = layer.values
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    np.testing.assert_array_equal(values, data)
    assert peak - values.nbytes <= budget


def test_a_small_budget_still_inflates_on_every_thread(many_chunks, monkeypatch):
    # a task holds one chunk at a time: a budget of 4 chunks pairs (2 MiB)
    # keeps both threads busy, rather than one task at a time
    path, data = many_chunks
    real = dnnmask_xr.act.chunk_read.inflate
    running, most = [0], [0]
    guard = threading.Lock()

    def overlapping(stream, size):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.005)
        try:
            return real(stream, size)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(dnnmask_xr.act.chunk_read, "inflate", overlapping)
    with set_options(read_threads=2, read_memory=2**21):
        np.testing.assert_array_equal(open_act(path, cache=False)["conv"].values, data)
    assert most[0] == 2


def test_a_layer_that_is_not_gzip_is_read_by_hdf5(gzip_file, chunk_reads):
    path, data = gzip_file
    np.testing.assert_array_equal(open_act(path)["plain"].isel(channel=[3]).values,
                                  data[:, [3]])
    assert chunk_reads == []


@pytest.mark.parametrize(("options", "message"), [
    ({"read_threads": 0}, r"^read_threads=0 is not valid; give a positive number of threads"),
    ({"read_memory": None}, r"^read_memory=None is not valid; give a positive number of bytes"),
    ({"read_memory": True}, r"^read_memory=True is not valid"),
    ({"threads": 2}, r"^set_options\(\) has no option 'threads'; options: read_threads, "),
])
def test_set_options_refuses_bad_values(options, message):
    with pytest.raises(UsageError, match=message):
        set_options(**options)


class _ReprFails:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize("name", ["read_threads", "read_memory"])
@pytest.mark.parametrize(("value", "shown"), [
    # an int of more than 4300 digits has no repr (Python's ValueError)
    (-10**5000, "<int>"),
    # numpy prints a 2-D array on several lines
    (np.array([[1, 2], [3, 4]]), "array([[1, 2], [3, 4]])"),
    (_ReprFails(), "<_ReprFails>"),
], ids=["huge-int", "2-d-array", "repr-fails"])
def test_set_options_refuses_any_bad_value_in_one_short_line(name, value, shown):
    from dnnmask_xr.xarray_.options import OPTIONS

    before = dict(OPTIONS)
    with pytest.raises(UsageError, match=rf"^{name}=") as caught:
        set_options(**{name: value})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name}={shown} is not valid; give ")
    assert OPTIONS == before


def test_set_options_is_restored_after_a_with_block():
    from dnnmask_xr.xarray_.options import OPTIONS

    before = dict(OPTIONS)
    with set_options(read_threads=3, read_memory=10):
        assert OPTIONS == {"read_threads": 3, "read_memory": 10}
    assert before == OPTIONS


# dask: each task reads the chunks inside its block, and no other

def test_a_dask_task_reads_its_own_chunks_only(gzip_file, chunk_reads):
    path, data = gzip_file
    layer = open_act(path, chunks={"stimulus": 16, "channel": 12})["conv"]
    block = layer.data.blocks[1, 1]
    np.testing.assert_array_equal(block.compute(scheduler="sync"), data[16:32, 12:24])
    assert sorted(chunk_reads) == sorted(touched({"stimulus": slice(16, 32),
                                                  "channel": slice(12, 24)}))


def test_dask_threads_read_every_chunk_once_and_inflate_in_their_own_threads(
        gzip_file, chunk_reads, inflating_threads):
    path, data = gzip_file
    layer = open_act(path, chunks={"stimulus": 8})["conv"]
    got = layer.sum("stimulus").compute(scheduler="threads", num_workers=2)
    np.testing.assert_array_equal(got.values, data.sum(axis=0))
    assert sorted(chunk_reads) == sorted(touched({}))
    pool_threads = {thread.ident for thread in threading.enumerate()
                    if thread.name.startswith("dnnmask_xr-read")}
    assert not set(inflating_threads) & pool_threads
    assert threading.get_ident() not in inflating_threads


def test_groupby_reads_a_layer_once(gzip_file, chunk_reads):
    import flox  # noqa: F401 - a dependency of the dask extra: xarray uses it when present

    path, data = gzip_file
    conditions = np.array(["a", "b", "c", "d"] * (SHAPE[0] // 4))
    layer = open_act(path)["conv"].assign_coords(condition=("stimulus", conditions))
    sums = layer.groupby("condition").sum()
    np.testing.assert_array_equal(sums.sel(condition="b").values, data[1::4].sum(axis=0))
    assert sorted(chunk_reads) == sorted(touched({}))


# encoding: as xarray's h5netcdf backend fills it

def test_encoding_describes_the_storage_as_h5netcdf_does(tmp_path):
    data = np.arange(np.prod(SHAPE), dtype="float32").reshape(SHAPE)
    path = tmp_path / "kinds.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("gzip", data=data, chunks=CHUNKS, compression="gzip",
                            compression_opts=6, shuffle=True)
        root.create_dataset("lzf", data=data, chunks=CHUNKS, compression="lzf")
        root.create_dataset("contiguous", data=data)
    acts = open_act(path)
    theirs = {name: xr.open_dataset(path, engine="h5netcdf", phony_dims="sort")[name].encoding
              for name in acts}
    for name, layer in acts.items():
        ours = layer.encoding
        for key in ("chunksizes", "contiguous", "zlib", "complevel", "shuffle", "fletcher32",
                    "compression", "compression_opts", "dtype", "original_shape", "source"):
            if key not in theirs[name]:
                # older xarray (2025.6 too) says less: no 'contiguous', no 'zlib' when unfiltered
                continue
            assert ours.get(key) == theirs[name].get(key), (name, key)
    assert acts["gzip"].encoding["preferred_chunks"] == dict(zip(acts["gzip"].dims, CHUNKS,
                                                                 strict=True))


@pytest.mark.parametrize("engine", ["h5netcdf", "netcdf4"])
def test_to_netcdf_keeps_the_chunks_and_compression(gzip_file, tmp_path, engine):
    path, data = gzip_file
    layer = open_act(path)["conv"]
    out = tmp_path / "conv.nc"
    layer.drop_vars(list(layer.coords)).to_netcdf(out, engine=engine)
    with h5py.File(out) as root:
        written = root["conv"]
        assert written.chunks == CHUNKS
        assert written.compression == "gzip" and written.compression_opts == 4
        np.testing.assert_array_equal(written[...], data)


def test_to_netcdf_of_a_selection_chooses_its_own_chunks(gzip_file, tmp_path):
    path, data = gzip_file
    picked = open_act(path)["conv"].isel(channel=[1], row=[2])
    out = tmp_path / "picked.nc"
    picked.drop_vars(list(picked.coords)).to_netcdf(out, engine="h5netcdf")
    with h5py.File(out) as root:
        assert root["conv"].compression == "gzip"
        np.testing.assert_array_equal(root["conv"][...], data[:, [1]][:, :, [2]])


def test_to_zarr_writes_the_values_compressed(gzip_file, tmp_path):
    import zarr

    path, data = gzip_file
    layer = open_act(path)["conv"]
    store = tmp_path / "conv.zarr"
    layer.drop_vars(list(layer.coords)).to_dataset().to_zarr(store, consolidated=False)
    written = zarr.open_group(store, mode="r")["conv"]
    np.testing.assert_array_equal(written[...], data)
    # zarr's default compressor applies (whatever zarr's version)
    stored = sum(path.stat().st_size for path in store.rglob("*") if path.is_file())
    assert stored < data.nbytes / 2


# attacks: an interrupt in the middle of a read, a fork after one

def test_an_interrupted_read_stops_and_the_next_read_is_exact(many_chunks, monkeypatch):
    path, data = many_chunks
    real = dnnmask_xr.act.chunk_read.inflate
    calls = []

    def interrupting(stream, size):
        calls.append(size)
        if len(calls) == 10:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return real(stream, size)

    monkeypatch.setattr(dnnmask_xr.act.chunk_read, "inflate", interrupting)
    layer = open_act(path, cache=False)["conv"]
    with set_options(read_threads=2), pytest.raises(KeyboardInterrupt):
        layer.values  # noqa: B018
    stopped_at = len(calls)
    assert stopped_at < 64  # the read stopped instead of running to the end
    time.sleep(0.2)
    assert len(calls) == stopped_at  # and nothing still runs on the pool
    with set_options(read_threads=2):
        np.testing.assert_array_equal(layer.values, data)


def test_a_forked_child_reads_on_its_own_pool(many_chunks):
    path, data = many_chunks
    with set_options(read_threads=2):
        open_act(path)["conv"].values  # noqa: B018 - the parent's pool now has threads
        context = multiprocessing.get_context("fork")
        with context.Pool(1) as children:
            result = children.apply_async(_checksum, (str(path),))
            assert result.get(timeout=60) == float(data.astype("float64").sum())


def _checksum(path: str) -> float:
    return float(open_act(path)["conv"].values.astype("float64").sum())
