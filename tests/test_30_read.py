"""Opening .act.h5 files: labels, laziness, reading only what is asked for."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnmask_xr import Activations, open_act, save_act
from dnnmask_xr.testing import read_reference_act, write_reference_act


def test_layers_open_as_labelled_dataarrays(act_file, layers):
    acts = open_act(act_file)
    assert isinstance(acts, Activations)
    assert list(acts) == list(read_reference_act(act_file))
    for name, array in layers.items():
        layer = acts[name]
        assert layer.name == name
        assert layer.dims == ("stimulus", "channel", "row", "column")
        for dim, size in zip(layer.dims, array.shape, strict=True):
            np.testing.assert_array_equal(layer[dim].values, np.arange(1, size + 1))
        assert layer.dtype == array.dtype
        np.testing.assert_array_equal(layer.values, array)


def test_sel_numbers_mean_what_chn_means(act_file, layers):
    conv5 = open_act(act_file)["conv5"]
    np.testing.assert_array_equal(conv5.sel(channel=[7, 3]).values, layers["conv5"][:, [6, 2]])
    np.testing.assert_array_equal(conv5.isel(channel=[7, 3]).values, layers["conv5"][:, [7, 3]])


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "uint16", "int64"])
def test_any_dtype_is_kept(tmp_path, dtype):
    array = (np.arange(2 * 3 * 4 * 5) % 7).reshape(2, 3, 4, 5).astype(dtype)
    write_reference_act(tmp_path / "x.act.h5", {"layer": array})
    layer = open_act(tmp_path / "x.act.h5")["layer"]
    assert layer.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(layer.values, array)


def test_reference_attributes_are_tolerated(tmp_path, layers):
    path = tmp_path / "old.act.h5"
    write_reference_act(path, layers, attrs={"title": "alexnet", "cmd": "dnn_act ...",
                                             "date": "Mon Jan  6 10:00:00 2020"})
    with h5py.File(path, "a") as root:
        root["conv5"].attrs["note"] = "anything"
    acts = open_act(path)
    assert acts.attrs == {"title": "alexnet", "cmd": "dnn_act ...",
                          "date": "Mon Jan  6 10:00:00 2020"}
    np.testing.assert_array_equal(acts["conv5"].values, layers["conv5"])


def test_stimulus_table_labels_the_stimuli(act_file, stim_file, layers):
    acts = open_act(act_file, stim=stim_file)
    conv5 = acts["conv5"]
    assert conv5["stimulus"].values.tolist() == [f"img{i}.png" for i in range(5)]
    assert conv5["condition"].dims == ("stimulus",)
    assert conv5["label"].values.tolist() == [0, 1, 0, 1, 0]
    cats = conv5.where(conv5.condition == "cat", drop=True)
    np.testing.assert_array_equal(cats.values, layers["conv5"][[1, 3]])
    assert acts.stimuli.header == {"type": "image", "path": "/data/images"}
    assert acts.stimuli.table.columns.tolist() == ["stimID", "label", "condition", "onset"]


def test_context_manager_closes_and_data_reopens_on_use(act_file, layers):
    with open_act(act_file) as acts:
        conv5 = acts["conv5"]
    # the file manager reopens the file when data is asked for again
    np.testing.assert_array_equal(conv5[:, :2].values, layers["conv5"][:, :2])


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture
def chunked_file(tmp_path):
    """A layer of random float64 (incompressible), one chunk per channel."""
    data = np.random.default_rng(0).standard_normal((20, 64, 16, 16))
    path = tmp_path / "chunked.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", data=data, chunks=(20, 1, 16, 16), compression="gzip")
    return path, data


def test_opening_reads_metadata_only(chunked_file):
    path, data = chunked_file
    before = _bytes_read()
    acts = open_act(path)
    assert acts["conv"].shape == data.shape
    assert _bytes_read() - before < data.nbytes / 20


def test_a_selection_reads_only_the_chunks_it_touches(chunked_file):
    path, data = chunked_file
    conv = open_act(path)["conv"]
    chunk_bytes = data[:, 0].nbytes
    before = _bytes_read()
    values = conv.sel(channel=[7, 3]).values
    read = _bytes_read() - before
    np.testing.assert_array_equal(values, data[:, [6, 2]])
    # two chunks hold the values; anything beyond is HDF5's index, not data
    assert 2 * chunk_bytes * 0.9 < read < 3 * chunk_bytes


def test_lazy_selections_stay_lazy_until_values(chunked_file):
    path, _ = chunked_file
    conv = open_act(path)["conv"]
    before = _bytes_read()
    picked = conv.isel(channel=[5, 1]).sel(row=[3, 4]).isel(stimulus=slice(2, 9))
    assert picked.shape == (7, 2, 2, 16)
    assert _bytes_read() - before < 4096


# Hypothesis: every kind of indexer on the lazy layer equals numpy's outer
# indexing of the same array.
SHAPE = (4, 9, 5, 6)


@pytest.fixture(scope="module")
def lazy_and_eager(tmp_path_factory):
    data = np.random.default_rng(3).standard_normal(SHAPE).astype("float32")
    path = tmp_path_factory.mktemp("lazy") / "lazy.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("layer", data=data, chunks=(3, 2, 2, 4), compression="gzip")
    # uncached: every example reads the file, never values an earlier one loaded
    return open_act(path, cache=False)["layer"], data


def indexers(size: int) -> st.SearchStrategy:
    positions = st.integers(-size, size - 1)
    return st.one_of(
        positions,
        st.lists(positions, max_size=2 * size).map(lambda items: np.array(items, dtype=np.int64)),
        st.builds(slice, st.none() | positions, st.none() | positions,
                  st.none() | st.integers(1, 3) | st.integers(-3, -1)),
    )


@settings(max_examples=examples(150), deadline=None)
@given(key=st.tuples(*(indexers(size) for size in SHAPE)))
def test_lazy_indexing_equals_numpy(lazy_and_eager, key):
    lazy, data = lazy_and_eager
    expected = data
    # numpy's outer indexing, one axis at a time, integers dropping axes last
    for axis in reversed(range(4)):
        item = key[axis]
        expected = np.take(expected, np.arange(SHAPE[axis])[item], axis=axis)
    got = lazy.isel(dict(zip(lazy.dims, key, strict=True))).values
    np.testing.assert_array_equal(got, expected)


def test_layers_in_memory_and_on_disk_behave_alike(act_file, layers):
    lazy = open_act(act_file)["conv5"]
    eager = xr.DataArray(layers["conv5"], dims=lazy.dims, coords=lazy.coords)
    picked = {"channel": [20, 1, 1], "row": [6, 2], "column": [7]}
    xr.testing.assert_identical(lazy.sel(picked).load(), eager.sel(picked).rename("conv5"))


def test_uncompressed_files_of_older_dnnbrain_open_lazily(tmp_path):
    # older DNNBrain wrote create_dataset(name, data=array): contiguous, no gzip
    data = np.random.default_rng(4).standard_normal((20, 128, 16, 16))
    path = tmp_path / "plain.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", data=data)
    conv = open_act(path)["conv"]
    before = _bytes_read()
    np.testing.assert_array_equal(conv.sel(channel=[9], row=[2, 1]).values,
                                  data[:, [8]][:, :, [1, 0]])
    # HDF5 reads a contiguous layout through its 64 KiB sieve buffer: about
    # one window per stimulus here (its selected rows are one run), not the file
    assert _bytes_read() - before <= 1.25 * 20 * 64 * 1024 < data.nbytes / 2


def test_pointwise_indexing_equals_numpy(lazy_and_eager):
    lazy, data = lazy_and_eager
    channels, rows = [8, 0, 8], [4, 2, 0]
    points = lazy.isel(channel=xr.DataArray(channels, dims="point"),
                       row=xr.DataArray(rows, dims="point"))
    assert points.dims == ("stimulus", "point", "column")
    np.testing.assert_array_equal(points.values, data[:, channels, rows, :])


@pytest.mark.parametrize("suffix", [".act.h5", ".nc"])
def test_byte_string_attributes_read_as_text_and_save(tmp_path, suffix):
    # Julia's HDF5.jl, MATLAB and h5py's np.bytes_ store text as fixed-length bytes;
    # they came back as bytes, which save_act of the opened file then refused
    path = tmp_path / "foreign.act.h5"
    values = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", data=values).attrs["note"] = np.bytes_(b"layer note")
        root.attrs["title"] = np.bytes_("caf\u00e9 run".encode())
        root.attrs["tags"] = np.array([b"a", b"bc"])
        root.attrs["raw"] = np.bytes_(b"\xff\xfe")  # no UTF-8: kept as it is
    with open_act(path) as acts:
        assert acts.attrs["title"] == "caf\u00e9 run"
        assert acts.attrs["tags"].tolist() == ["a", "bc"]
        assert acts.attrs["raw"] == b"\xff\xfe"
        assert acts["conv"].attrs == {"note": "layer note"}
        out = tmp_path / f"out{suffix}"
        kept = {key: value for key, value in acts.attrs.items() if key != "raw"}
        save_act(Activations(dict(acts.items()), attrs=kept), out)
    with open_act(out) as back:
        assert back.attrs["title"] == "caf\u00e9 run"
        assert list(back.attrs["tags"]) == ["a", "bc"]
        assert back["conv"].attrs == {"note": "layer note"}
        np.testing.assert_array_equal(back["conv"].values, values)
