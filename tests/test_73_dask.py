"""Dask-backed layers: chunked like the file, computed in process workers, saved block by block."""

from __future__ import annotations

import itertools
import pickle
import re
import subprocess
import sys
import tempfile
import warnings

import dask
import dask.array as da
import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import examples
from dask.callbacks import Callback
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnmask_xr import ActFileError, DnnMaskError, UsageError, open_act, save_act, to_datatree
from dnnmask_xr.act.layout import DIMS
from dnnmask_xr.xarray_ import dask_writes
from dnnmask_xr.xarray_.reader import AUTO_CHUNK_BYTES


@pytest.fixture
def chunked_file(tmp_path):
    """Values in sixteenths, so that sums and means are exact in any order."""
    rng = np.random.default_rng(7)
    data = (rng.integers(0, 64, size=(40, 6, 5, 4)) / 16).astype(np.float32)
    path = tmp_path / "chunked.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", data=data, chunks=(8, 2, 5, 4), compression="gzip")
    return path, data


class Computes(Callback):
    """Count the graphs dask computes (one per block written)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def _start(self, dsk) -> None:
        self.count += 1


def test_chunks_follow_the_file_by_default(chunked_file):
    path, data = chunked_file
    layer = open_act(path, chunks={})["conv"]
    assert isinstance(layer.data, da.Array)
    assert layer.chunks == ((8,) * 5, (2, 2, 2), (5,), (4,))
    np.testing.assert_array_equal(layer.values, data)


@pytest.mark.parametrize(("chunks", "expected"), [
    ({"stimulus": 20}, ((20, 20), (2, 2, 2), (5,), (4,))),
    ({"channel": -1}, ((8,) * 5, (6,), (5,), (4,))),
    (-1, ((40,), (6,), (5,), (4,))),
    ("auto", ((40,), (6,), (5,), (4,))),
])
def test_chunks_set_some_dimensions_and_the_file_the_rest(chunked_file, chunks, expected):
    path, data = chunked_file
    with warnings.catch_warnings():
        # sizes that split the file's chunks are taken silently, as they always were
        # (xarray's own open_* warn about them)
        warnings.simplefilter("error")
        layer = open_act(path, chunks=chunks)["conv"]
    assert layer.chunks == expected
    np.testing.assert_array_equal(layer.isel(channel=[4, 1]).values, data[:, [4, 1]])


@pytest.mark.parametrize(("setting", "largest"), [(None, AUTO_CHUNK_BYTES), ("1MiB", 2**20)])
def test_auto_chunks_are_multiples_of_the_files_of_a_bounded_size(tmp_path, setting, largest):
    # AlexNet's conv2 for 1000 stimuli, in h5py's automatic chunks; never
    # written, so the file is small
    shape, steps = (1000, 192, 27, 27), (63, 24, 4, 4)
    path = tmp_path / "conv2.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("conv2", shape=shape, dtype="float32", chunks=steps,
                            compression="gzip")
    config = {} if setting is None else {"array.chunk-size": setting}
    with dask.config.set(config):
        layer = open_act(path, chunks="auto")["conv2"]
    first = tuple(sizes[0] for sizes in layer.chunks)
    assert all(size % step == 0 or size == n for size, step, n in zip(first, steps, shape,
                                                                     strict=True))
    assert 4 * np.prod(first) <= largest
    if setting is None:  # large enough that a task reads many of the file's chunks
        assert 4 * np.prod(first) > largest / 4


@pytest.fixture(params=[".act.h5", ".nc"])
def labelled_file(request, act_file, stim_file, tmp_path):
    """A file that stores stimulus fields itself (no stim= at opening), of each format."""
    path = tmp_path / f"labelled{request.param}"
    save_act(open_act(act_file, stim=stim_file), path)
    return path


def test_only_the_values_are_dask_arrays(labelled_file, layers):
    acts = open_act(labelled_file, chunks={})
    for layer in (acts["conv5"], to_datatree(acts)["conv5"]["conv5"]):
        assert isinstance(layer.data, da.Array)
        for name, coord in layer.coords.items():
            # unit numbers and the stimulus index are indexes; the fields plain numpy
            assert not isinstance(coord.variable._data, da.Array), name
            assert isinstance(coord.values, np.ndarray)
        assert layer.condition.values.tolist() == ["dog", "cat", "dog", "cat", "dog"]
        means = layer.groupby("condition").mean()
        np.testing.assert_allclose(means.sel(condition="cat").values,
                                   layers["conv5"][[1, 3]].mean(axis=0), rtol=1e-6)


def test_to_zarr_of_a_chunked_layer_need_not_load_text_fields(labelled_file, tmp_path):
    pytest.importorskip("zarr")
    layer = open_act(labelled_file, chunks={})["conv5"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer.to_dataset().to_zarr(tmp_path / "out.zarr", mode="w")
    # xarray warns when a dask array of object dtype must be loaded to pick a type
    assert not [w for w in caught if "dtype=object" in str(w.message)]
    with xr.open_zarr(tmp_path / "out.zarr") as back:
        assert back["condition"].values.tolist() == ["dog", "cat", "dog", "cat", "dog"]


def test_chunks_naming_an_unknown_dimension_are_refused(chunked_file):
    path, _ = chunked_file
    with pytest.raises(UsageError, match=r"chunks name dimension 'time', which layers do not "
                                          r"have \(dimensions: stimulus, channel"):
        open_act(path, chunks={"time": 3})


@pytest.mark.parametrize("chunks", ["x", "10MB", 0, -2, 1.5, True, (1, 2)])
def test_chunks_xarray_would_refuse_or_ignore_are_refused_in_one_line(chunked_file, chunks):
    # a text other than 'auto' gave xarray's ValueError, and chunks=0 was taken
    path, _ = chunked_file
    with pytest.raises(UsageError, match=rf"^chunks={re.escape(repr(chunks))} is not valid; "
                                          r"give \{\} for the file's chunks, a mapping like "
                                          r"\{'stimulus': 100\}, a size, or 'auto'$"):
        open_act(path, chunks=chunks)


def test_a_layer_of_unknown_length_is_refused_with_the_way_to_compute_it(tmp_path):
    # dask indexed by a dask mask does not know its length: numpy's ValueError ("arange:
    # cannot compute length") came out of Activations and save_act
    values = da.from_array(np.arange(28, dtype=np.float32).reshape(7, 4), chunks=(2, 4))
    keep = da.from_array(np.array([1, 0, 1, 1, 0, 1, 1], bool), chunks=2)
    layer = xr.DataArray(values[keep], dims=("stimulus", "channel"))
    said = (r"^layer 'fc' has an unknown length along 'stimulus' \(a dask array indexed by "
            r"values not computed yet\); compute it first: "
            r"layer\.copy\(data=layer\.data\.compute_chunk_sizes\(\)\)$")
    with pytest.raises(DnnMaskError, match=said):
        save_act({"fc": layer}, tmp_path / "out.act.h5")
    assert list(tmp_path.iterdir()) == []
    known = layer.copy(data=layer.data.compute_chunk_sizes())  # as the message says
    save_act({"fc": known}, tmp_path / "out.act.h5")
    np.testing.assert_array_equal(open_act(tmp_path / "out.act.h5")["fc"].values,
                                  np.arange(28, dtype=np.float32).reshape(7, 4)[
                                      [0, 2, 3, 5, 6]])


def test_importing_the_package_does_not_import_dask():
    # xarray itself imports dask.array when it wraps data and dask is installed,
    # so what is checked here is the import of every module of the package
    code = ("import sys, dnnmask_xr, dnnmask_xr.xarray_.backend, dnnmask_xr.xarray_.reader, "
            "dnnmask_xr.xarray_.store, dnnmask_xr.xarray_.neuroid, dnnmask_xr.xarray_.datatree; "
            "print(sorted(m for m in sys.modules if m.startswith(('dask', 'distributed'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.sweep
@pytest.mark.parametrize("chunks", [None, {}])
def test_a_layer_pickled_into_a_fresh_process_reads_the_file_there(chunked_file, tmp_path,
                                                                   chunks):
    # what a dask worker process does: unpickle the layer, open the file itself
    path, data = chunked_file
    pickled = tmp_path / "layer.pickle"
    pickled.write_bytes(pickle.dumps(open_act(path, chunks=chunks)["conv"].isel(channel=[4, 1])))
    code = ("import pickle, sys, numpy; layer = pickle.loads(open(sys.argv[1], 'rb').read()); "
            "numpy.save(sys.argv[2], layer.values)")
    subprocess.run([sys.executable, "-c", code, str(pickled), str(tmp_path / "values.npy")],
                   check=True, capture_output=True)
    np.testing.assert_array_equal(np.load(tmp_path / "values.npy"), data[:, [4, 1]])


@pytest.mark.processes
def test_per_channel_mean_on_a_distributed_cluster_of_processes(chunked_file):
    distributed = pytest.importorskip("distributed")
    path, data = chunked_file
    layer = open_act(path, chunks={})["conv"]
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        # each worker process unpickles the layer and opens the file itself
        future = client.compute(layer.astype(np.float64).mean(["stimulus", "row", "column"]))
        means = future.result()
        workers = client.run(lambda: True)
    assert len(workers) == 2
    np.testing.assert_array_equal(means.values, data.astype(np.float64).mean(axis=(0, 2, 3)))
    assert list(means.channel.values) == [1, 2, 3, 4, 5, 6]


def test_a_dask_layer_larger_than_the_memory_budget_is_saved_exactly(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((16, 40, 32, 32)).astype(np.float32)  # 2.6 MB
    path = tmp_path / "big.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", data=data, chunks=(4, 8, 32, 32), compression="gzip")
    layer = open_act(path, chunks={})["conv"]
    out = tmp_path / "out.act.h5"
    with Computes() as computes:
        save_act({"conv": layer}, out, memory=2**20)
    # computed block by block, never the whole layer at once
    assert computes.count >= 2
    back = open_act(out)["conv"]
    np.testing.assert_array_equal(back.values, data)
    assert back.dtype == data.dtype


def test_a_computed_dask_layer_is_saved_exactly(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((30, 8, 3, 3)).astype(np.float32)
    layer = xr.DataArray(da.from_array(values, chunks=(7, 3, 3, 3)), dims=DIMS)
    derived = (layer * 2 + 1).rename("derived")
    with dask.config.set(scheduler="threads"):
        save_act({"derived": derived}, tmp_path / "d.act.h5", memory=values.nbytes // 4)
    np.testing.assert_array_equal(open_act(tmp_path / "d.act.h5")["derived"].values,
                                  values * 2 + 1)


# -- writes from the tasks: each output chunk deflated where its values are computed ----

SUFFIXES = (".act.h5", ".nc")


def _sparse_set(folder, lengths=(30, 30, 25)):
    """Files of one network, mostly zeros (what gzip shrinks), with their stimulus tables."""
    paths, stims, arrays = [], [], []
    for number, length in enumerate(lengths):
        rng = np.random.default_rng(number)
        values = (rng.integers(0, 64, (length, 16, 6, 6)) / 16).astype(np.float32)
        values *= rng.random((length, 16, 1, 1)) < 0.1
        path = folder / f"run-{number}.act.h5"
        with h5py.File(path, "w") as root:
            root.create_dataset("conv", data=values, chunks=(5, 4, 6, 6), compression="gzip")
        stim = folder / f"run-{number}.stim.csv"
        stim.write_text("type=image\npath=/data\ndata=stimID\n" + "".join(
            f"r{number}_{i}.png\n" for i in range(length)))
        paths.append(path)
        stims.append(stim)
        arrays.append(values)
    return paths, stims, np.concatenate(arrays)


def _stored(path):
    """A saved layer's values and stimulus IDs, read with h5py or netCDF4's reader."""
    with open_act(path) as acts:
        layer = acts["conv"]
        return layer.values, [str(s) for s in layer.stimulus.values]


@pytest.mark.processes
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_dask_set_saved_on_a_cluster_sends_the_client_compressed_chunks_only(
        suffix, tmp_path, monkeypatch):
    # measured: save_act of a dask set on a cluster brought every block back to the client,
    # which deflated and wrote alone (27 s for 198 MiB on two workers)
    distributed = pytest.importorskip("distributed")
    paths, stims, _ = _sparse_set(tmp_path)
    layer = open_act(paths, stim=stims, chunks="auto")["conv"]
    # a lazy z-score: each block needs the whole set's mean and spread
    scored = ((layer - layer.mean("stimulus")) / (layer.std("stimulus") + 1)).astype(np.float32)
    alone = tmp_path / f"alone{suffix}"
    save_act({"conv": scored}, alone)
    received = []
    real_result = distributed.Future.result

    def result(self, *args, **kwargs):
        value = real_result(self, *args, **kwargs)
        received.append(value)
        return value

    monkeypatch.setattr(distributed.Future, "result", result)
    out = tmp_path / f"cluster{suffix}"
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        report = save_act({"conv": scored}, out)
    # the client took compressed chunks, one list per block, and no values
    assert received and all(isinstance(value, np.ndarray) and value.dtype == object
                            for value in received)
    chunks = [data for value in received for _, data in value.item()]
    assert all(isinstance(data, bytes) for data in chunks)
    assert sum(map(len, chunks)) == report.layers[0].bytes_written
    assert report.layers[0].bytes_written < scored.nbytes / 3
    values, ids = _stored(out)
    expected_values, expected_ids = _stored(alone)
    np.testing.assert_array_equal(values, expected_values)
    assert ids == expected_ids


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("chunks", [{}, "auto", {"stimulus": 7, "channel": 3},
                                    {"stimulus": 11, "row": 4}])
def test_each_output_chunk_is_deflated_once_by_one_task(suffix, chunks, tmp_path, monkeypatch):
    paths, stims, whole = _sparse_set(tmp_path)
    layer = open_act(paths, stim=stims, chunks=chunks)["conv"]
    deflated = []
    real_block = dask_writes._deflated_block

    def block(values, steps, block_info=None):  # dask passes block_info to who names it
        result = real_block(values, steps, block_info=block_info)
        deflated.extend(offset for offset, _ in result.item())
        return result

    monkeypatch.setattr(dask_writes, "_deflated_block", block)
    out = tmp_path / f"out{suffix}"
    with dask.config.set(scheduler="threads"):
        report = save_act({"conv": layer + 0}, out, memory=2**16)
    values, _ = _stored(out)
    np.testing.assert_array_equal(values, whole)
    with h5py.File(out) as root:
        dataset = root["conv"] if suffix == ".act.h5" else root["conv/conv"]
        steps = dataset.chunks
    # every chunk of the output deflated by the tasks, each by one task only, none by the
    # writer (blocks are rechunked first where the layer's chunks leave no such grid)
    grid = [range(0, size, step) for size, step in zip(whole.shape, steps, strict=True)]
    assert sorted(deflated) == sorted(itertools.product(*grid))
    assert report.layers[0].chunks_written == len(deflated)


@pytest.mark.properties
@settings(max_examples=examples(20), deadline=None)
@given(data=st.data(), suffix=st.sampled_from(SUFFIXES))
def test_any_dask_chunks_save_the_values_numpy_holds(data, suffix):
    shape = data.draw(st.tuples(st.integers(1, 12), st.integers(1, 6), st.integers(1, 4),
                                st.integers(1, 3)))
    blocks = tuple(data.draw(st.integers(1, size)) for size in shape)
    values = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    layer = xr.DataArray(da.from_array(values, chunks=blocks), dims=DIMS)
    with tempfile.TemporaryDirectory() as folder:
        out = f"{folder}/out{suffix}"
        with dask.config.set(scheduler="threads"):
            save_act({"conv": layer * 3}, out, memory=data.draw(st.integers(64, 4096)))
        with open_act(out) as acts:
            np.testing.assert_array_equal(acts["conv"].values, values * 3)


def _failing_block(block, block_info=None):
    if block_info[0]["chunk-location"][0] == 2:
        raise RuntimeError("the model's third block failed")
    return block


FAILED = r"^the model's third block failed$"


@pytest.mark.parametrize("where", [
    "threads", pytest.param("cluster", marks=pytest.mark.processes)])
def test_a_task_that_fails_leaves_nothing_behind(where, tmp_path):
    values = np.ones((40, 4, 3, 3), dtype=np.float32)
    layer = xr.DataArray(da.from_array(values, chunks=(8, 4, 3, 3))
                         .map_blocks(_failing_block, dtype=np.float32), dims=DIMS)
    out = tmp_path / "out.act.h5"
    out.write_bytes(b"the previous output")
    if where == "threads":
        with dask.config.set(scheduler="threads"), pytest.raises(RuntimeError, match=FAILED):
            save_act({"conv": layer}, out)
    else:
        distributed = pytest.importorskip("distributed")
        with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster), pytest.raises(RuntimeError, match=FAILED) as raised:
            save_act({"conv": layer}, out)
        assert not isinstance(raised.value, ActFileError)
    # the model's own error, as it raised it (not a failure to write); the previous output
    # is untouched, and no temporary file is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.act.h5"]
    assert out.read_bytes() == b"the previous output"


@pytest.mark.processes
@pytest.mark.parametrize("at_url", [False, True])
def test_a_dask_set_saved_to_a_store_on_a_cluster_is_written_by_the_workers(
        at_url, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("zarr", minversion="3")
    from dask.sizeof import sizeof

    paths, stims, _ = _sparse_set(tmp_path)
    layer = open_act(paths, stim=stims, chunks="auto")["conv"]
    scored = ((layer - layer.mean("stimulus")) / (layer.std("stimulus") + 1)).astype(np.float32)
    save_act({"conv": scored}, tmp_path / "alone.act.zarr")
    received = []
    real_gather, real_result = distributed.Client.gather, distributed.Future.result

    def gather(self, *args, **kwargs):
        value = real_gather(self, *args, **kwargs)
        received.append(sizeof(value))
        return value

    def result(self, *args, **kwargs):
        value = real_result(self, *args, **kwargs)
        received.append(sizeof(value))
        return value

    monkeypatch.setattr(distributed.Client, "gather", gather)
    monkeypatch.setattr(distributed.Future, "result", result)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        if at_url:  # the workers write through fsspec, as to an object store
            save_act({"conv": scored}, f"file://{tmp_path}/cluster.act.zarr",
                     storage_options={"auto_mkdir": True})
        else:
            save_act({"conv": scored}, tmp_path / "cluster.act.zarr")
    # each worker wrote its own chunks: what came back to the client is bookkeeping
    assert sum(received) < scored.nbytes / 20, (sum(received), scored.nbytes)
    values, ids = _stored(tmp_path / "cluster.act.zarr")
    expected_values, expected_ids = _stored(tmp_path / "alone.act.zarr")
    np.testing.assert_array_equal(values, expected_values)
    assert ids == expected_ids


def _as_declared(values: np.ndarray, make, declared) -> xr.DataArray:
    """A layer whose tasks give ``make(block)``, while its graph says ``declared``."""
    return xr.DataArray(da.from_array(values, chunks=(3, 2, 5, 6))
                        .map_blocks(make, dtype=declared), dims=DIMS)


@pytest.mark.parametrize(("make", "declared"), [
    (lambda block: block.astype(np.float64) * 1.000001, np.float32),
    (lambda block: block.astype(">f4"), np.float32),
    (lambda block: block * 1000, np.int16),
    (lambda block: (block * 100).astype(np.int64), np.float32),
], ids=["float64-as-float32", "big-endian", "float32-as-int16", "int64-as-float32"])
@pytest.mark.parametrize("suffix", [".act.h5", ".nc", ".act.zarr"])
def test_blocks_of_another_dtype_than_the_graph_says_are_saved_as_the_graph_says(
        make, declared, suffix, tmp_path):
    # bug: .act.h5 and .nc stored the blocks' bytes as they came, as the dtype the graph
    # declares: big-endian floats as other numbers, float64 as damaged chunks, without a
    # word; numpy's route (and a zarr store) stores the values as that dtype
    values = np.random.default_rng(3).random((7, 4, 5, 6)).astype(np.float32) * 9
    layer = _as_declared(values, make, declared)
    expected = np.asarray(make(values), dtype=declared)
    save_act({"conv": layer}, tmp_path / f"out{suffix}")
    with open_act(tmp_path / f"out{suffix}") as acts:
        np.testing.assert_array_equal(acts["conv"].values, expected, strict=True)


@pytest.mark.parametrize(("make", "block"), [
    (lambda block: block[:-1] if block.shape[0] == 3 else block, r"\(2, 2, 5, 6\)"),
    (lambda block: np.concatenate([block, block[:1]]) if block.shape[0] == 1 else block,
     r"\(2, 2, 5, 6\)"),
    (lambda block: block[..., :1], r"\(\d, 2, 5, 1\)"),
    (lambda block: np.float32(1), r"\(\)"),
], ids=["short", "long", "narrow", "scalar"])
@pytest.mark.parametrize("suffix", [".act.h5", ".nc", ".act.zarr"])
def test_blocks_of_another_shape_than_the_graph_says_are_refused(make, block, suffix,
                                                                  tmp_path):
    # bug: .act.h5 and .nc filled what a short block left out with zeros (and dropped
    # what a long one held) without a word; a store raised NumPy's ValueError, or
    # (a scalar) stored it in every place of the block
    values = np.random.default_rng(3).random((7, 4, 5, 6)).astype(np.float32)
    with pytest.raises(DnnMaskError, match=r"^layer 'conv': a dask task gave a block of "
                                           r"shape " + block + r" where the layer's graph "
                                           r"says \(\d, 2, 5, 6\) \(block \(\d, \d, 0, 0\)\)"):
        save_act({"conv": _as_declared(values, make, np.float32)}, tmp_path / f"out{suffix}")
    assert list(tmp_path.iterdir()) == []
