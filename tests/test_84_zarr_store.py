"""Zarr v3 stores (``.act.zarr``): written by ``save_act``, read by ``open_act`` and by xarray.

The compatibility matrix (``tests/test_76_compat_matrix.py``) holds the round
trips between the suffixes; here: what a store must never do (appear half
written, replace its input or a folder that is not a store) and what it
keeps (layers of any dims, the order of layers and fields, lazy and dask
reads).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import pickle
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from reliability import run_cli

import dnnmask_xr as dx
import dnnmask_xr.cli
from dnnmask_xr.testing import read_reference_act

zarr = pytest.importorskip("zarr", minversion="3")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HEADER = {"type": "image", "path": "/data/images"}


def _layers() -> dx.Activations:
    rng = np.random.default_rng(5)
    ids = [f"img{i}.png" for i in range(4)]
    coords = {"stimulus": ids, "onset": ("stimulus", [0.5, 1.0, np.nan, 2.0]),
              "condition": ("stimulus", ["cat", "dog", "dog", "cat"])}
    return dx.Activations({
        "tokens": xr.DataArray(rng.standard_normal((4, 5, 3)).astype(np.float32),
                               dims=("stimulus", "token", "channel"), coords=coords),
        "conv": xr.DataArray(rng.integers(-9, 9, (4, 3, 2, 2)).astype(np.int16),
                             dims=("stimulus", "channel", "row", "column"), coords=coords),
        "fc": xr.DataArray(rng.random((4, 6)), dims=("stimulus", "channel"), coords=coords),
    }, attrs={"model": "alexnet"}, stim_header=HEADER)


def test_a_store_gives_back_every_layer_label_and_order(tmp_path):
    acts = _layers()
    report = dx.save_act(acts, tmp_path / "run.act.zarr")
    assert [layer.name for layer in report.layers] == ["tokens", "conv", "fc"]
    with dx.open_act(tmp_path / "run.act.zarr") as back:
        assert list(back) == ["tokens", "conv", "fc"]
        assert dict(back.stim_header) == HEADER
        assert back.attrs["model"] == "alexnet" and "layer_order" not in back.attrs
        for name, layer in acts.items():
            got = back[name]
            assert got.dims == layer.dims and got.dtype == layer.dtype
            np.testing.assert_array_equal(got.values, layer.values, strict=True)
            assert [str(c) for c in got.coords if c not in got.dims] == ["onset", "condition"]
            for coord in layer.coords:
                np.testing.assert_array_equal(got[coord].values.astype(layer[coord].dtype),
                                              layer[coord].values)
        # and on to an .act.h5 that DNNBrain's reader reads as the values saved
        dx.save_act(back, tmp_path / "run.act.h5")
    stored = read_reference_act(tmp_path / "run.act.h5")
    np.testing.assert_array_equal(stored["conv"], acts["conv"].values)
    np.testing.assert_array_equal(stored["fc"][:, :, 0, 0], acts["fc"].values)


def _read_by_xarray(store: Path) -> dx.Activations:
    """A store as a user reads it with xarray's own zarr engine, then ``from_datatree``."""
    return dx.from_datatree(xr.open_datatree(store, engine="zarr"))


def test_a_store_read_by_xarrays_engine_keeps_the_order_saved(tmp_path):
    # bug: from_datatree kept the store's own root attributes (layer_order, ...), so the
    # activations of a store read with engine="zarr" could not be saved anywhere, and the
    # layers and fields came in zarr's order (by name), not in the order saved
    acts = _layers()
    dx.save_act(acts, tmp_path / "run.act.zarr")
    back = _read_by_xarray(tmp_path / "run.act.zarr")
    assert list(back) == ["tokens", "conv", "fc"]
    assert back.attrs == {key: value for key, value in back.attrs.items()
                          if key not in ("layer_order", "stimulus_field_order",
                                         "act_zarr_exact")}
    assert back.attrs["model"] == "alexnet" and dict(back.stim_header) == HEADER
    assert list(back.stimulus_table().fields) == ["onset", "condition"]
    dx.save_act(back, tmp_path / "run.act.h5")
    stored = read_reference_act(tmp_path / "run.act.h5")
    assert list(stored) == ["tokens", "conv", "fc"]
    np.testing.assert_array_equal(stored["conv"], acts["conv"].values)
    with dx.open_act(tmp_path / "run.act.h5") as again:
        assert list(again.stimulus_table().fields) == ["onset", "condition"]
        assert "layer_order" not in again.attrs and again.attrs["model"] == "alexnet"


def test_a_store_named_with_a_trailing_slash_is_that_store(tmp_path, monkeypatch, capsys):
    # bug: a shell's completion ends a folder's name with '/': open_act said "it is a folder,
    # not an .act.h5 file", save_act and dnn_mask that the path did not end in .act.zarr
    monkeypatch.chdir(tmp_path)
    acts = _layers()
    dx.save_act(acts, "run.act.zarr/")
    with dx.open_act("run.act.zarr//") as back:
        np.testing.assert_array_equal(back["conv"].values, acts["conv"].values)
    assert dnnmask_xr.cli.main(["-act", "run.act.zarr/", "-layer", "conv", "-chn", "2",
                                "-out", "masked.act.zarr/"]) == 0
    assert capsys.readouterr().err == ""
    with dx.open_act("masked.act.zarr") as masked:
        np.testing.assert_array_equal(masked["conv"].values, acts["conv"].values[:, [1]])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["masked.act.zarr",
                                                                  "run.act.zarr"]


def test_a_store_is_named_as_given_in_provenance_and_errors(tmp_path, monkeypatch, capsys):
    # bug: dnn_mask -act run.act.zarr recorded the store's absolute path as the output's
    # source (the -act path as given, for .act.h5 and .nc), and named it so in errors
    monkeypatch.chdir(tmp_path)
    dx.save_act(_layers(), "run.act.zarr")
    assert dnnmask_xr.cli.main(["-act", "run.act.zarr", "-layer", "conv",
                                "-out", "masked.act.h5"]) == 0
    with dx.open_act("masked.act.h5") as masked:
        assert masked.attrs["source"] == "run.act.zarr"
    assert dnnmask_xr.cli.main(["-act", "run.act.zarr", "-layer", "nope",
                                "-out", "masked.act.h5"]) == 1
    assert "layer 'nope' is not in 'run.act.zarr' (" in capsys.readouterr().err
    with dx.open_act("run.act.zarr") as acts:
        assert acts.source == "run.act.zarr"
        # what no save may replace is the store itself, wherever the process goes
        assert acts["conv"].encoding["source"] == str(tmp_path / "run.act.zarr")


def test_a_store_opens_lazily_or_with_dask_chunks(tmp_path):
    acts = _layers()
    dx.save_act(acts, tmp_path / "run.act.zarr")
    with dx.open_act(tmp_path / "run.act.zarr", chunks={}) as back:
        assert back["conv"].chunks is not None
        np.testing.assert_array_equal(back["conv"].mean("stimulus").values,
                                      acts["conv"].mean("stimulus").values)
    with dx.open_act(tmp_path / "run.act.zarr") as back:
        assert back["conv"].chunks is None
        masked = back.mask({"conv": {"channel": [3, 1]}})
        np.testing.assert_array_equal(masked["conv"].values,
                                      acts["conv"].values[:, [2, 0]])


def test_the_example_masked_to_a_store_equals_the_mask_to_act_h5(tmp_path):
    acts = dx.open_act(EXAMPLES / "test.act.h5", stim=EXAMPLES / "test.stim.csv")
    mask = dx.read_dmask(EXAMPLES / "test.dmask.csv")
    masked = acts.mask(mask, by="ordinal")
    dx.save_act(masked, tmp_path / "m.act.zarr")
    dx.save_act(masked, tmp_path / "m.act.h5")
    with dx.open_act(tmp_path / "m.act.zarr") as store, dx.open_act(tmp_path / "m.act.h5") as h5:
        assert list(store) == list(h5)
        for name in h5:
            xr.testing.assert_identical(store[name].drop_encoding().load(),
                                        h5[name].drop_encoding().load())
    acts.close()


def test_a_failed_write_leaves_nothing_and_keeps_the_previous_store(tmp_path, monkeypatch):
    out = tmp_path / "run.act.zarr"
    dx.save_act(_layers(), out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    real = xr.DataTree.to_zarr

    def half_written(self, store, *args, **kwargs):
        real(self, store, *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.DataTree, "to_zarr", half_written)
    bigger = _layers().isel(stimulus=slice(0, 2))
    with pytest.raises(dx.ActFileError, match="No space left on device"):
        dx.save_act(bigger, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.act.zarr"]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    with dx.open_act(out) as back:
        assert back.n_stimuli == 4


@pytest.mark.parametrize("what", ["folder", "file"])
def test_only_a_store_is_replaced(what, tmp_path):
    out = tmp_path / "run.act.zarr"
    if what == "folder":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        message = r"it is a folder but not a zarr store"
    else:
        out.write_text("mine")
        message = r"it is a file, not a zarr store"
    with pytest.raises(dx.ActFileError, match=message):
        dx.save_act(_layers(), out)
    assert (out / "notes.txt").read_text() == "mine" if what == "folder" else (
        out.read_text() == "mine")


def test_a_store_is_never_replaced_by_its_own_layers(tmp_path):
    out = tmp_path / "run.act.zarr"
    dx.save_act(_layers(), out)
    with dx.open_act(out) as back, pytest.raises(dx.OutputIsInputError):
        dx.save_act(back.mask({"conv": {"channel": [1]}}), out)
    with dx.open_act(out) as back:
        assert list(back) == ["tokens", "conv", "fc"]


def _bytes_of(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_chunks_of_a_store_and_of_a_set_of_stores_are_the_stores_own(tmp_path):
    # bug: a store's layers lost the encoding xarray's zarr engine gives (preferred_chunks),
    # so chunks={} made one dask chunk of the whole layer, alone and in a set
    da = pytest.importorskip("dask.array")
    paths, arrays = [], []
    for number, length in enumerate((10, 7)):
        values = np.arange(length * 6 * 4, dtype=np.float32).reshape(length, 6, 2, 2)
        layer = xr.DataArray(da.from_array(values, chunks=(4, 3, 2, 2)),
                             dims=("stimulus", "channel", "row", "column"),
                             coords={"stimulus": [f"s{number}_{i}" for i in range(length)]})
        paths.append(tmp_path / f"run-{number}.act.zarr")
        dx.save_act({"conv": layer}, paths[-1])
        arrays.append(values)
    with dx.open_act(paths[0], chunks={}) as back:
        assert back["conv"].chunks == ((4, 4, 2), (3, 3), (2,), (2,))
    with dx.open_act(paths, chunks={}) as back:
        assert back["conv"].chunks == ((4, 4, 2, 4, 3), (3, 3), (2,), (2,))
        np.testing.assert_array_equal(back["conv"].values, np.concatenate(arrays))


@pytest.mark.parametrize("chunks", [{}, {"stimulus": 2}])
def test_a_dask_graph_built_on_a_store_is_never_saved_over_it(chunks, tmp_path):
    pytest.importorskip("dask")
    out = tmp_path / "run.act.zarr"
    dx.save_act(_layers(), out)
    before = _bytes_of(out)
    with dx.open_act(out, chunks=chunks) as back:
        zscored = {name: (layer - layer.mean("stimulus")) / layer.std("stimulus")
                   for name, layer in back.items()}
        assert all(layer.chunks is not None and not layer.encoding
                   for layer in zscored.values())
        with pytest.raises(dx.OutputIsInputError, match="is the input file"):
            dx.save_act(zscored, out)
    assert _bytes_of(out) == before


@pytest.mark.parametrize(("opener", "chunks", "computed"), [
    *itertools.product(["open_datatree", "open_dataset"], [None, {}], [False]),
    ("open_datatree", {}, True), ("open_dataset", {}, True), ("from_zarr", None, True),
    ("open_datatree-file-url", {}, True)])
def test_a_store_read_by_xarray_or_zarr_alone_is_never_saved_over(opener, chunks, computed,
                                                                   tmp_path):
    # bug: layers xarray's own zarr engine (or dask's from_zarr) reads lazily (their
    # arrays name no source, and no encoding does once dask computes on them) were saved
    # over the store they read (without dask, arithmetic reads the values into memory)
    out = tmp_path / "run.act.zarr"
    dx.save_act(_layers(), out)
    before = _bytes_of(out)
    if opener.startswith("open_datatree"):
        # at a file:// URL, fsspec's store reads it: named by its URL
        where = out.as_uri() if opener.endswith("url") else out
        opened = xr.open_datatree(where, engine="zarr", chunks=chunks)
        layer = opened["conv/conv"]
    elif opener == "open_dataset":
        opened = xr.open_dataset(out, engine="zarr", group="conv", chunks=chunks)
        layer = opened["conv"]
    else:
        import dask.array as da

        opened = contextlib.nullcontext()
        # the array opened by zarr, as the lowest dask's from_zarr(path) cannot open a
        # zarr 3 array itself
        layer = xr.DataArray(da.from_zarr(zarr.open_array(str(out), path="conv/conv",
                                                          mode="r")),
                             dims=("stimulus", "channel", "row", "column"))
    with opened:
        if computed:
            layer = layer * 2
        with pytest.raises(dx.OutputIsInputError, match="is the input file"):
            dx.save_act({"conv": layer}, out)
    assert _bytes_of(out) == before


@pytest.mark.parametrize("held", [True, False])
def test_a_store_holding_an_input_is_never_replaced(held, tmp_path):
    out = tmp_path / "run.act.zarr"
    dx.save_act(_layers(), out)
    inside = out / "kept" / "masked.act.h5"  # a file kept in the store's folder
    inside.parent.mkdir()
    dx.save_act(_session(0, 3), inside)
    before = _bytes_of(out)
    acts = dx.open_act(inside)
    if not held:  # in memory, the file closed: the layers still name it
        for layer in acts.values():
            layer.load()
        acts.close()
    try:
        with pytest.raises(dx.OutputIsInputError, match=r"is the input file \(it holds "
                           r".*masked\.act\.h5', which replacing the folder would remove"):
            dx.save_act(acts, out)
    finally:
        acts.close()
    assert _bytes_of(out) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run.act.zarr"]


@pytest.mark.parametrize("inside", ["masked.act.zarr", "conv/masked.act.h5", "masked.nc"])
def test_nothing_is_written_inside_the_store_the_layers_are_read_from(inside, tmp_path,
                                                                     capsys):
    # bug: an output inside the input store was written there, adding a group (or files)
    # to the store the layers were read from
    store = tmp_path / "run.act.zarr"
    dx.save_act(_layers(), store)
    before = _bytes_of(store)
    refused = r"is the input file \(it lies inside '.*run\.act\.zarr', which the layers are"
    with dx.open_act(store) as acts, pytest.raises(dx.OutputIsInputError, match=refused):
        dx.save_act(acts.sel(layer=["conv"]), store / inside)
    assert dnnmask_xr.cli.main(["-act", str(store), "-layer", "conv",
                                "-out", str(store / inside)]) == 2
    assert re.fullmatch(f"dnn_mask: error: output .*{refused}.*\n", capsys.readouterr().err)
    assert _bytes_of(store) == before


def test_what_a_store_cannot_hold_is_refused_in_one_line(tmp_path):
    acts = _layers()
    clash = dx.Activations({"onset": acts["fc"]}, stim_header=HEADER)
    with pytest.raises(dx.DnnMaskError, match=r"^layer 'onset' has the name of a dimension "
                       r"or stimulus field, which a zarr store cannot tell apart"):
        dx.save_act(clash, tmp_path / "x.act.zarr")
    assert list(tmp_path.iterdir()) == []


def test_mask_file_which_writes_hdf5_refuses_a_store(tmp_path):
    out = tmp_path / "x.act.zarr"
    with pytest.raises(dx.UsageError, match="a zarr store is written by save_act"):
        dx.mask_file(EXAMPLES / "test.act.h5", out, {"fc3": {}})
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "b.act.zarr").mkdir()
    with pytest.raises(dx.ActFileError, match="it is not a zarr store"):
        dx.open_act(tmp_path / "b.act.zarr")


def test_a_store_that_is_not_there_is_said_so(tmp_path):
    # it said "it is not a zarr store", as of a folder of something else
    with pytest.raises(dx.ActFileError, match=r"^cannot open '.*c\.act\.zarr': no such folder$"):
        dx.open_act(tmp_path / "c.act.zarr")


def _session(first: int, count: int) -> dx.Activations:
    """A session's layers, its stimuli numbered from ``first``."""
    rng = np.random.default_rng(first)
    ids = [f"img{i}.png" for i in range(first, first + count)]
    coords = {"stimulus": ids, "onset": ("stimulus", np.arange(count) * 0.5)}
    return dx.Activations({
        "conv": xr.DataArray(rng.standard_normal((count, 3, 2, 2)).astype(np.float32),
                             dims=("stimulus", "channel", "row", "column"), coords=coords),
        "tokens": xr.DataArray(rng.standard_normal((count, 5, 3)).astype(np.float32),
                               dims=("stimulus", "token", "channel"), coords=coords),
    }, stim_header=HEADER)


SUFFIX_MIXES = [(".act.zarr", ".act.zarr"), (".act.zarr", ".act.h5"), (".nc", ".act.zarr")]


@pytest.mark.parametrize("suffixes", SUFFIX_MIXES)
def test_a_set_with_stores_reads_what_numpy_concatenates(suffixes, tmp_path):
    sessions = [_session(0, 5), _session(5, 4)]
    paths = [tmp_path / f"ses{i}{suffix}" for i, suffix in enumerate(suffixes)]
    for acts, path in zip(sessions, paths, strict=True):
        dx.save_act(acts, path)
    for name in ("conv", "tokens"):
        expected = np.concatenate([acts[name].values for acts in sessions])
        ids = np.concatenate([acts[name].stimulus.values for acts in sessions])
        with dx.open_act(paths) as acts:
            layer = acts[name]
            np.testing.assert_array_equal(layer.stimulus.values, ids)
            np.testing.assert_array_equal(layer.onset.values,
                                          np.r_[np.arange(5), np.arange(4)] / 2)
            # outer selections across the files' border, and an integer one
            picked = layer.isel(stimulus=[0, 4, 5, 8], channel=[0, 2])
            np.testing.assert_array_equal(picked.values, expected[[0, 4, 5, 8]].take(
                [0, 2], axis=layer.get_axis_num("channel")))
            np.testing.assert_array_equal(layer.isel(stimulus=6).values, expected[6])
            np.testing.assert_array_equal(pickle.loads(pickle.dumps(layer)).values, expected)
            assert dict(acts.stim_header) == HEADER
            out = tmp_path / f"all-{name}.act.h5"
            dx.save_act(acts, out)
        np.testing.assert_array_equal(read_reference_act(out)[name], expected.reshape(
            expected.shape + (1,) * (4 - expected.ndim)))
        with dx.open_act(paths, chunks="auto") as acts:
            # chunks along stimulus never join part of one file to another
            assert acts[name].chunks[0] in ((5, 4), (9,))
            np.testing.assert_array_equal(acts[name].values, expected)


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize("member", [0, 1])
def test_a_set_with_a_store_never_replaces_its_members(member, cached, tmp_path):
    paths = [tmp_path / "ses0.act.zarr", tmp_path / "ses1.act.h5"]
    for acts, path in zip([_session(0, 5), _session(5, 4)], paths, strict=True):
        dx.save_act(acts, path)
    before = {path: _stored(path) for path in paths}
    with dx.open_act(paths) as acts:
        if cached:  # values in memory: no lazy wrapper names the files any more
            acts["conv"].values  # noqa: B018
        with pytest.raises(dx.OutputIsInputError, match="is the input file"):
            dx.save_act(acts, paths[member])
    for path in paths:
        after = _stored(path)
        assert list(after) == list(before[path])
        for name, values in before[path].items():
            np.testing.assert_array_equal(after[name], values)


def _stored(path: Path) -> dict[str, np.ndarray]:
    """Read a file's or store's layers with DNNBrain's reader or zarr's, not this package's."""
    if path.suffix == ".h5":
        return read_reference_act(path)
    group = zarr.open_group(path, mode="r")
    return {name: group[name][name][...] for name in group.attrs["layer_order"]}


def test_stim_relabels_a_store(tmp_path):
    shutil.copy(EXAMPLES / "test.act.h5", tmp_path)
    with dx.open_act(tmp_path / "test.act.h5") as acts:
        dx.save_act(acts, tmp_path / "plain.act.zarr")
    with dx.open_act(tmp_path / "plain.act.zarr", stim=EXAMPLES / "test.stim.csv") as acts, \
            dx.open_act(EXAMPLES / "test.act.h5", stim=EXAMPLES / "test.stim.csv") as h5:
        np.testing.assert_array_equal(acts["conv5"].stimulus.values,
                                      h5["conv5"].stimulus.values)
        assert dict(acts.stim_header) == dict(h5.stim_header)


def test_importing_the_package_imports_no_zarr():
    code = "import sys, dnnmask_xr; print('zarr' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


def _dnn_mask(*argv) -> tuple[int, str]:
    """``dnn_mask argv`` in a process of its own: its status and stderr."""
    done = run_cli(*argv)
    return done.returncode, done.stderr


@pytest.mark.processes
def test_dnn_mask_on_a_store_equals_dnn_mask_on_the_act_h5(tmp_path):
    # the example to a store, then the command from the store and from the .act.h5 file
    assert _dnn_mask("-act", EXAMPLES / "test.act.h5", "-layer", "conv5", "fc3",
                     "-stim", EXAMPLES / "test.stim.csv", "-out", tmp_path / "all.act.zarr",
                     "-q") == (0, "")
    flags = ("-dmask", EXAMPLES / "test.dmask.csv", "-q")
    assert _dnn_mask("-act", tmp_path / "all.act.zarr", *flags, "-out",
                     tmp_path / "from_store.act.h5") == (0, "")
    assert _dnn_mask("-act", tmp_path / "all.act.zarr", *flags, "-out",
                     tmp_path / "to_store.act.zarr") == (0, "")
    assert _dnn_mask("-act", EXAMPLES / "test.act.h5", "-stim", EXAMPLES / "test.stim.csv",
                     *flags, "-out", tmp_path / "from_h5.act.h5") == (0, "")
    expected = read_reference_act(tmp_path / "from_h5.act.h5")
    got = read_reference_act(tmp_path / "from_store.act.h5")
    assert list(got) == list(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name], values, strict=True)
    with dx.open_act(tmp_path / "to_store.act.zarr") as store, \
            dx.open_act(tmp_path / "from_h5.act.h5") as h5:
        assert list(store) == list(h5)
        for name in h5:
            xr.testing.assert_identical(store[name].drop_encoding().load(),
                                        h5[name].drop_encoding().load())
        assert store.attrs["cmd"].startswith("dnn_mask -act ")


@pytest.mark.processes
def test_dnn_mask_reads_a_store_by_its_url(tmp_path):
    # a file system that needs no options (s3 and gcs take credentials from the
    # environment); file:// stands for them here
    dx.save_act(_layers(), tmp_path / "run.act.zarr")
    flags = ("-layer", "conv", "-chn", "1", "3", "-q")
    assert _dnn_mask("-act", f"file://{tmp_path}/run.act.zarr", *flags,
                     "-out", tmp_path / "by_url.act.h5") == (0, "")
    assert _dnn_mask("-act", tmp_path / "run.act.zarr", *flags,
                     "-out", tmp_path / "by_path.act.h5") == (0, "")
    by_url, by_path = (read_reference_act(tmp_path / f"by_{way}.act.h5")
                       for way in ("url", "path"))
    np.testing.assert_array_equal(by_url["conv"], by_path["conv"], strict=True)
    np.testing.assert_array_equal(by_url["conv"], _layers()["conv"].values[:, [0, 2]])
    # fsspec's local file system makes no folder unless told to, which the command
    # cannot say: one line, nothing left
    status, stderr = _dnn_mask("-act", tmp_path / "run.act.zarr", *flags,
                               "-out", f"file://{tmp_path}/out/x.act.zarr")
    assert status == 1 and stderr.startswith("dnn_mask: error: cannot write 'file://")
    assert stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.processes
def test_dnn_mask_dry_run_on_a_store_says_what_it_says_on_the_act_h5(tmp_path):
    dx.save_act(_layers(), tmp_path / "run.act.zarr")
    dx.save_act(_layers(), tmp_path / "run.act.h5")
    said = []
    for source in ("run.act.zarr", "run.act.h5"):
        done = run_cli("-act", tmp_path / source, "-layer", "conv", "-chn", "2", "-out",
                       tmp_path / "out.act.h5", "--dry-run")
        assert done.returncode == 0, done.stderr
        said.append(done.stdout)
    assert said[0] == said[1]
    assert "conv  4 x 1 x 2 x 2  int16" in said[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.act.h5", "run.act.zarr"]


@pytest.mark.processes
def test_dnn_mask_errors_on_a_store_are_one_line(tmp_path):
    dx.save_act(_layers(), tmp_path / "run.act.zarr")
    status, stderr = _dnn_mask("-act", tmp_path / "run.act.zarr", "-layer", "conv6",
                               "-out", tmp_path / "out.act.h5")
    assert status == 1
    assert stderr.count("\n") == 1 and "conv6" in stderr and "Traceback" not in stderr
    status, stderr = _dnn_mask("-act", tmp_path / "missing.act.zarr", "-layer", "conv",
                               "-out", tmp_path / "out.act.h5")
    assert status == 1 and stderr.count("\n") == 1 and "missing.act.zarr" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.act.zarr"]


def _damage_a_chunk(store: Path, array: str = "conv") -> None:
    """Overwrite the start of one stored chunk of the conv group's ``array``."""
    chunk = next(path for path in sorted((store / "conv" / array).rglob("*"))
                 if path.is_file() and path.name != "zarr.json")
    with chunk.open("r+b") as file:
        file.write(b"\xff" * 16)


DAMAGED = r"^'.*run\.act\.zarr': cannot read layer 'conv' \(.+\)$"


@pytest.mark.processes
def test_a_damaged_chunk_of_a_store_is_said_in_one_line_naming_it(tmp_path):
    # bug: zarr's codec error came out of dnn_mask as a traceback (or, before the
    # caller's errors were told from the writer's, as "cannot write" the output)
    store = tmp_path / "run.act.zarr"
    dx.save_act(_session(0, 5), store)
    _damage_a_chunk(store)
    status, stderr = _dnn_mask("-act", store, "-layer", "conv", "-out", tmp_path / "out.act.h5")
    assert status == 1 and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert "run.act.zarr': cannot read layer 'conv'" in stderr
    for chunks in (None, {}):  # read by zarr, or by dask's tasks
        with dx.open_act(store, chunks=chunks) as acts:
            with pytest.raises(dx.ActFileError, match=DAMAGED):
                acts["conv"].values  # noqa: B018 - reading is the test
            with pytest.raises(dx.ActFileError, match=DAMAGED):
                dx.save_act(acts, tmp_path / "out.nc")
    dx.save_act(_session(5, 2), tmp_path / "more.act.h5")
    with dx.open_act([store, tmp_path / "more.act.h5"]) as acts, \
            pytest.raises(dx.ActFileError, match=DAMAGED):
        acts["conv"].values  # noqa: B018
    assert sorted(p.name for p in tmp_path.iterdir()) == ["more.act.h5", "run.act.zarr"]


@pytest.mark.processes
def test_a_damaged_label_of_a_store_is_said_in_one_line_naming_it(tmp_path):
    # zarr reads the unit labels when the store is opened: its codec's error was a
    # traceback from dnn_mask
    store = tmp_path / "run.act.zarr"
    dx.save_act(_session(0, 5), store)
    _damage_a_chunk(store, "channel")
    status, stderr = _dnn_mask("-act", store, "-layer", "conv", "-out", tmp_path / "out.act.h5")
    assert status == 1 and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert "run.act.zarr': the store is damaged (" in stderr
    with pytest.raises(dx.ActFileError, match=r"^cannot read '.*run\.act\.zarr': the store "
                                              r"is damaged \(.+\)$"):
        dx.open_act(store)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.act.zarr"]


def _assert_same_store(path, expected):
    with dx.open_act(path) as got, dx.open_act(expected) as want:
        assert list(got) == list(want)
        assert dict(got.stim_header) == dict(want.stim_header)
        for name in want:
            xr.testing.assert_identical(got[name].drop_encoding().load(),
                                        want[name].drop_encoding().load())


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_streamed_to_a_store_equals_save_act_of_it(resume, tmp_path):
    acts = _layers()
    out = tmp_path / "streamed.act.zarr"
    if resume:
        # a run that dies after its first batches, then one that goes on from its parts
        with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True, part_size=1) as writer:
            writer.append(acts.isel(stimulus=slice(0, 2)))
            raise RuntimeError("killed")
        assert not out.exists()
    with dx.ActWriter(out, resume=resume, part_size=1) as writer:
        for start in range(writer.stimuli_done, 4, 2):
            writer.append(acts.isel(stimulus=slice(start, start + 2)))
    dx.save_act(acts, tmp_path / "saved.act.zarr")
    _assert_same_store(out, tmp_path / "saved.act.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved.act.zarr", "streamed.act.zarr"]


@pytest.mark.parametrize("chunks", [{"stimulus": 7, "channel": 2}, "auto", {}])
def test_a_set_in_chunks_that_cut_its_files_saves_exactly(chunks, tmp_path):
    # tasks of the user's chunks (7 stimuli across 5-stimulus files): the store's chunks
    # are the output's own, regular, so no two tasks write into one chunk
    paths, stims, arrays = [], [], []
    for run in range(3):
        values = np.arange(5 * 4 * 2 * 2, dtype=np.float32).reshape(5, 4, 2, 2) + 100 * run
        dx.save_act({"conv": xr.DataArray(values, dims=("stimulus", "channel", "row",
                                                        "column"))}, tmp_path / f"r{run}.act.h5")
        stim = tmp_path / f"r{run}.stim.csv"
        stim.write_text("type=image\npath=/data\ndata=stimID\n" + "".join(
            f"r{run}_{i}.png\n" for i in range(5)))
        paths.append(tmp_path / f"r{run}.act.h5")
        stims.append(stim)
        arrays.append(values)
    with dx.open_act(paths, stim=stims, chunks=chunks) as acts:
        dx.save_act(acts, tmp_path / "set.act.zarr")
    with dx.open_act(tmp_path / "set.act.zarr") as back:
        np.testing.assert_array_equal(back["conv"].values, np.concatenate(arrays))
        assert list(back["conv"].stimulus.values[:6]) == [
            *(f"r0_{i}.png" for i in range(5)), "r1_0.png"]


def test_zarr_2_is_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(zarr, "__version__", "2.18.3")
    with pytest.raises(dx.UsageError, match=r"^writing '.*x\.act\.zarr' needs zarr 3 \(zarr "
                       r"2\.18\.3 is installed; it needs Python 3\.11\): install them with "):
        dx.save_act(_layers(), tmp_path / "x.act.zarr")
    assert list(tmp_path.iterdir()) == []


def test_a_store_takes_no_hdf5_lock_and_is_claimed_by_the_dnnact_engine(tmp_path):
    from dnnmask_xr.xarray_.backend import DnnActBackendEntrypoint

    dx.save_act(_layers(), tmp_path / "run.act.zarr")
    with pytest.raises(dx.UsageError, match=r"^lock= is HDF5's; a zarr store is read without"):
        dx.open_act(tmp_path / "run.act.zarr", lock=False)
    assert DnnActBackendEntrypoint().guess_can_open(tmp_path / "run.act.zarr")
    with xr.open_datatree(tmp_path / "run.act.zarr", engine="dnnact") as tree:
        assert list(tree.children) == ["tokens", "conv", "fc"]


# Stores at fsspec URLs: fsspec's in-memory file system stands for an object store (no
# rename), and file:// URLs show that storage_options reach fsspec.

@pytest.fixture
def url():
    """A URL of fsspec's in-memory file system, emptied after the test."""
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    yield "memory://runs/run.act.zarr"
    if memory.exists("/runs"):
        memory.rm("/runs", recursive=True)


def _objects(url: str) -> list[str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    return sorted(fs.find(path.rsplit("/", 1)[0]))


@pytest.mark.parametrize("chunks", [None, {"stimulus": 2}])
def test_a_store_at_a_url_gives_back_what_was_saved(chunks, url, tmp_path):
    acts = _layers()
    dx.save_act(acts, tmp_path / "local.act.h5")
    with dx.open_act(tmp_path / "local.act.h5", chunks=chunks) as source:
        dx.save_act(source, url)
    with dx.open_act(url) as back:
        assert list(back) == list(acts)
        assert back["conv"].encoding["source"] == url
        for name in acts:
            np.testing.assert_array_equal(back[name].values, acts[name].values)
            assert back[name].dims == acts[name].dims
        np.testing.assert_array_equal(back["conv"].condition.values, ["cat", "dog", "dog", "cat"])
        assert dict(back.stim_header) == HEADER
    # xarray alone reads it, every label
    tree = xr.open_datatree(url, engine="zarr")
    np.testing.assert_array_equal(tree["tokens"]["token"].values, np.arange(1, 6))
    np.testing.assert_array_equal(tree["conv"]["conv"].values, acts["conv"].values)


def test_the_dnnact_engine_opens_a_store_at_a_url_with_its_options(tmp_path, monkeypatch):
    import fsspec

    url = f"file://{tmp_path}/run.act.zarr"
    dx.save_act(_layers(), url, storage_options={"auto_mkdir": True})
    # fsspec's local file system takes any option: what it was given is recorded, both
    # where this package looks for the store and where zarr opens it
    given = []
    real_fs, real_store = fsspec.core.url_to_fs, zarr.storage.FsspecStore.from_url

    def url_to_fs(where, **options):
        given.append(("fsspec", options))
        return real_fs(where, **options)

    def from_url(where, storage_options=None, **rest):
        given.append(("zarr", storage_options))
        return real_store(where, storage_options=storage_options, **rest)

    monkeypatch.setattr(fsspec.core, "url_to_fs", url_to_fs)
    monkeypatch.setattr(zarr.storage.FsspecStore, "from_url", from_url)
    layer = xr.open_dataarray(url, engine="dnnact", group="tokens",
                              storage_options={"token": "t0"})
    np.testing.assert_array_equal(layer.values, _layers()["tokens"].values)
    assert layer.encoding["source"] == url
    assert {where for where, _ in given} == {"fsspec", "zarr"}
    assert all(options.get("token") == "t0" for _, options in given), given


def test_a_set_mixes_a_store_at_a_url_with_a_local_file(url, tmp_path):
    first, second = _session(0, 5), _session(5, 4)
    dx.save_act(first, url)
    dx.save_act(second, tmp_path / "ses1.act.h5")
    with dx.open_act([url, tmp_path / "ses1.act.h5"], storage_options={}) as acts:
        np.testing.assert_array_equal(acts["conv"].values, np.concatenate(
            [first["conv"].values, second["conv"].values]))


@pytest.mark.parametrize("inside", ["/masked.act.zarr", "/conv/masked.act.zarr"])
def test_nothing_is_written_inside_the_store_at_a_url_the_layers_are_read_from(inside, url):
    dx.save_act(_layers(), url)
    before = _objects(url)
    with dx.open_act(url) as acts, pytest.raises(dx.OutputIsInputError, match=r"it lies "
                                                 r"inside 'memory://runs/run\.act\.zarr'"):
        dx.save_act(acts.sel(layer=["conv"]), url + inside)
    assert _objects(url) == before


def test_a_store_at_a_url_opens_only_once_whole(url, monkeypatch):
    real = xr.DataTree.to_zarr
    seen = []

    def written_then_looked_at(tree, store, **kwargs):
        real(tree, store, **kwargs)
        # every object but the root's metadata is written: nothing opens the store yet
        seen.append(len(_objects(url)))
        with pytest.raises(dx.ActFileError, match="no zarr store is there"):
            dx.open_act(url)
        with pytest.raises(FileNotFoundError):
            xr.open_datatree(url, engine="zarr")

    monkeypatch.setattr(xr.DataTree, "to_zarr", written_then_looked_at)
    dx.save_act(_layers(), url)
    assert seen and seen[0] > 1
    assert "/runs/run.act.zarr/zarr.json" in _objects(url)


@pytest.mark.parametrize("when", ["during", "after"])
def test_a_failed_write_to_a_url_leaves_nothing_there(when, url, monkeypatch):
    real = xr.DataTree.to_zarr
    written = []

    def failing(tree, store, **kwargs):
        if when == "during":  # some of the objects (of another tree: not its encoding)
            tree = xr.DataTree(xr.Dataset({"x": ("a", np.arange(3))}))
            kwargs.pop("encoding")
        real(tree, store, **kwargs)
        written.append(len(_objects(url)))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.DataTree, "to_zarr", failing)
    with pytest.raises(dx.ActFileError, match=r"^cannot write 'memory://runs/run\.act\.zarr'.*"
                                              r"No space left on device"):
        dx.save_act(_layers(), url)
    assert written[0] > 1
    assert _objects(url) == []


def test_an_interrupted_write_to_a_url_leaves_nothing_there(url, monkeypatch):
    real = xr.DataTree.to_zarr

    def interrupted(tree, store, **kwargs):
        real(tree, store, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C while the store is being written

    monkeypatch.setattr(xr.DataTree, "to_zarr", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dx.save_act(_layers(), url)
    assert _objects(url) == []


def _failing_while_another_task_runs(values: np.ndarray) -> tuple[xr.DataArray, list[bool],
                                                                   threading.Event]:
    """A layer of two dask blocks: the first raises while the second still runs.

    The second waits (half a second at most) for the event given back, which
    the test sets once ``save_act`` returned, and records whether it was
    set: a write that returned before its tasks ended records True, and
    that task's chunk is written after the failed write was removed.
    """
    dsa = pytest.importorskip("dask.array")
    running, returned, ended = threading.Event(), threading.Event(), []

    def block(part, block_info=None):
        if block_info[0]["chunk-location"][0] == 0:
            running.wait(10)
            raise RuntimeError("the GPU fell over")
        running.set()
        returned.wait(0.5)
        ended.append(returned.is_set())
        return part

    data = dsa.from_array(values, chunks=(1, values.shape[1])).map_blocks(block,
                                                                            dtype=values.dtype)
    return xr.DataArray(data, dims=("stimulus", "channel")), ended, returned


@pytest.mark.parametrize("where", ["folder", "url"])
def test_a_failed_task_leaves_nothing_from_the_tasks_still_running(where, url, tmp_path):
    dask = pytest.importorskip("dask")
    out = url if where == "url" else str(tmp_path / "run.act.zarr")
    failed = np.arange(6, dtype=np.float32).reshape(2, 3) + 100
    layer, ended, returned = _failing_while_another_task_runs(failed)
    with dask.config.set(scheduler="threads", num_workers=2):
        try:
            with pytest.raises(dx.ActFileError, match="the GPU fell over"):
                dx.save_act({"fc": layer}, out)
        finally:
            returned.set()
    # every task ended before the failed write removed what it wrote, and returned
    assert ended == [False]
    if where == "url":
        assert _objects(url) == []
    else:
        assert list(tmp_path.iterdir()) == []
    # a write made at once gives back its own values, none of the failed one's
    retry = np.zeros((2, 3), dtype=np.float32)
    dx.save_act({"fc": xr.DataArray(retry, dims=("stimulus", "channel"))}, out)
    with dx.open_act(out) as back:
        np.testing.assert_array_equal(back["fc"].values, retry, strict=True)


def test_a_url_is_never_written_over(url):
    dx.save_act(_layers(), url)
    before = {path: bytes(_memory().cat_file(path)) for path in _objects(url)}
    with pytest.raises(dx.ActFileError, match="something is there already, and a store at a "
                                              "URL is never replaced"):
        dx.save_act(_session(0, 3), url)
    with dx.open_act(url) as acts, pytest.raises(dx.OutputIsInputError,
                                                 match="is the input file"):
        dx.save_act(acts, url)
    assert {path: bytes(_memory().cat_file(path)) for path in _objects(url)} == before


@pytest.mark.parametrize("dry_run", [False, True])
def test_dnn_mask_to_an_occupied_url_is_refused_by_its_dry_run_too(url, dry_run):
    # bug: --dry-run to a URL holding a store said what it would write, where the run
    # itself is refused: a dry run refuses what the run refuses before writing
    dx.save_act(_layers(), url)
    before = {path: bytes(_memory().cat_file(path)) for path in _objects(url)}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        # the command in this process: fsspec's memory is the process's own
        status = dnnmask_xr.cli.main(["-act", str(EXAMPLES / "test.act.h5"), "-layer",
                                      "conv5", "-out", url, "-q"] + ["--dry-run"] * dry_run)
    assert (status, err.getvalue(), out.getvalue()) == (
        1, f"dnn_mask: error: cannot write {url!r}: something is there already, and a store "
           "at a URL is never replaced (an object store has no rename to replace it whole); "
           "remove it first or name another URL\n", "")
    assert {path: bytes(_memory().cat_file(path)) for path in _objects(url)} == before


def test_dnn_mask_dry_run_to_a_free_url_writes_nothing_there(url):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = dnnmask_xr.cli.main(["-act", str(EXAMPLES / "test.act.h5"), "-layer",
                                      "conv5", "-out", url, "--dry-run"])
    assert status == 0 and out.getvalue().startswith(f"would write {url!r}: 1 layer(s)")
    assert not _memory().exists(url)


@pytest.mark.parametrize("name", ["a[1b]", "a?", "a*"])
@pytest.mark.parametrize("route", ["save_act", "dnn_mask"])
def test_a_url_that_fsspec_reads_as_a_pattern_is_refused_and_touches_nothing(
        route, name, url):
    # bug: a write to memory://runs/a[1]/... refused itself ("another write began at the
    # same time"), left its objects there, and removing them removed runs/a1's store
    others = ["memory://runs/a1/run.act.zarr", "memory://runs/ab/run.act.zarr"]
    for other in others:
        dx.save_act(_layers(), other)
    before = {path: bytes(_memory().cat_file(path)) for path in _objects(url)}
    target = f"memory://runs/{name}/run.act.zarr"
    message = (f"output {target!r} holds '*', '?' or '[', which fsspec reads as a pattern: "
               "removing a failed write would remove whatever it matches; name the store "
               "without them")
    if route == "save_act":
        with pytest.raises(dx.UsageError) as caught:
            dx.save_act(_layers(), target)
        assert str(caught.value) == message
    else:
        # the command in this process: fsspec's memory is the process's own
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = dnnmask_xr.cli.main(["-act", str(EXAMPLES / "test.act.h5"), "-layer",
                                          "conv5", "-out", target])
        assert (status, err.getvalue()) == (2, f"dnn_mask: error: {message}\n")
    assert {path: bytes(_memory().cat_file(path)) for path in _objects(url)} == before
    for other in others:
        with dx.open_act(other) as acts:
            np.testing.assert_array_equal(acts["conv"].values, _layers()["conv"].values)


def _during_the_write(monkeypatch, second) -> list[bool]:
    """Run ``second()`` once inside the next write to a store, when every object but its
    root is written; give a list that holds True once it ran."""
    real, ran = xr.DataTree.to_zarr, []

    def with_a_second_write(tree, store, **kwargs):
        real(tree, store, **kwargs)
        if not ran:
            ran.append(True)
            second()

    monkeypatch.setattr(xr.DataTree, "to_zarr", with_a_second_write)
    return ran


class _LateView:
    """A file system as a write that looked a moment too early saw it (subclasses say how)."""

    def __init__(self, fs):
        self._fs = fs

    def __getattr__(self, name):
        return getattr(self._fs, name)


@contextlib.contextmanager
def _seen_as(view: type[_LateView]):
    """Let the writes in the block see the file system through ``view``."""
    from dnnmask_xr.xarray_ import url_store

    real = url_store._file_system

    def seen(where, options):
        fs, path = real(where, options)
        return view(fs), path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(url_store, "_file_system", seen)
        yield


def test_a_write_to_a_url_begun_while_another_is_under_way_is_refused(url, monkeypatch):
    def second():
        with pytest.raises(dx.ActFileError, match="something is there already"):
            dx.save_act(_session(0, 3), url)

    ran = _during_the_write(monkeypatch, second)
    dx.save_act(_layers(), url)
    assert ran
    # the first is whole, its own values, and holds no object of its write's
    with dx.open_act(url) as back:
        for name, layer in _layers().items():
            np.testing.assert_array_equal(back[name].values, layer.values)
    assert not [path for path in _objects(url) if ".dnnmask-writing-" in path]


class _FoundNothing(_LateView):
    """The first write had written nothing yet."""

    def exists(self, path):
        return False


def test_two_writes_to_a_url_that_began_at_once_both_fail_and_leave_nothing(url, monkeypatch):
    """An object store cannot create an object only if it is absent: two writes can both
    find nothing at the URL. Neither may complete a store holding the other's chunks."""
    errors = []

    def second():
        with _seen_as(_FoundNothing), pytest.raises(dx.ActFileError) as raised:
            dx.save_act(_session(0, 4), url)
        errors.append(str(raised.value))

    _during_the_write(monkeypatch, second)
    with pytest.raises(dx.ActFileError) as first:
        dx.save_act(_layers(), url)
    message = ("another write to it began at the same time, and each would leave the "
               "other's objects in the store")
    assert message in errors[0] and message in str(first.value)
    assert "\n" not in errors[0] + str(first.value)
    assert _objects(url) == []


class _SawOnlyItself(_LateView):
    """No store and no mark but the write's own (its marks are recorded as it puts them)."""

    def __init__(self, fs):
        super().__init__(fs)
        self.mine: set[str] = set()

    def exists(self, path):
        return path.endswith("zarr.json") and self._fs.exists(path)

    def glob(self, pattern):
        return [found for found in self._fs.glob(pattern) if found.lstrip("/") in self.mine]

    def pipe_file(self, path, value):
        self.mine.add(path.lstrip("/"))
        return self._fs.pipe_file(path, value)


def test_a_write_to_a_url_that_another_completed_meanwhile_removes_both(url, monkeypatch):
    """The other write began in the same instant, looked before this one's mark was there,
    and completed: its store holds objects of this one, and neither may stay."""

    def other():
        with _seen_as(_SawOnlyItself):
            dx.save_act(_session(0, 4), url)  # completes, unaware of this write

    ran = _during_the_write(monkeypatch, other)
    with pytest.raises(dx.ActFileError, match=r"^cannot write 'memory://runs/run\.act\.zarr': "
                                              r"another write to it began at the same time "
                                              r"and completed a store holding objects of both"):
        dx.save_act(_layers(), url)
    assert ran and _objects(url) == []


def _memory():
    import fsspec

    return fsspec.filesystem("memory")


def test_storage_options_reach_fsspec(tmp_path):
    url = f"file://{tmp_path}/run.act.zarr"
    # fsspec's local file system makes no folder for an object unless told to
    with pytest.raises(dx.ActFileError, match=r"^cannot write 'file://.*': the file system has "
                       r"no folder to put it in \(fsspec's local file system, file://, makes "
                       r"one with storage_options=\{'auto_mkdir': True\}\)$"):
        dx.save_act(_layers(), url)
    assert list(tmp_path.iterdir()) == []
    dx.save_act(_layers(), url, storage_options={"auto_mkdir": True})
    with dx.open_act(tmp_path / "run.act.zarr") as acts:
        np.testing.assert_array_equal(acts["conv"].values, _layers()["conv"].values)
        # the same store by its URL and by its path: never replaced
        with pytest.raises(dx.OutputIsInputError):
            dx.save_act(acts, url)
    with dx.open_act(url) as acts, pytest.raises(dx.OutputIsInputError):
        dx.save_act(acts, tmp_path / "run.act.zarr")


@pytest.mark.parametrize(("call", "message"), [
    (lambda url, tmp: dx.save_act(_layers(), url.replace(".act.zarr", ".act.h5")),
     r"is a URL: only a zarr store \('\.act\.zarr'\) is written to one"),
    (lambda url, tmp: dx.open_act(url.replace(".act.zarr", ".nc")),
     r"is a URL: only a zarr store \('\.act\.zarr'\) is read from one"),
    (lambda url, tmp: dx.save_act(_layers(), tmp / "x.act.zarr", storage_options={}),
     r"^storage_options= is for zarr stores at a URL \(s3://\.\.\.\); '.*x\.act\.zarr' is a "
     r"local path$"),
    (lambda url, tmp: dx.save_act(_layers(), tmp / "x.act.h5", storage_options={}),
     r"^storage_options= is for zarr stores at a URL"),
    (lambda url, tmp: dx.open_act(EXAMPLES / "test.act.h5", storage_options={}),
     r"storage_options= is for zarr stores at a URL"),
    (lambda url, tmp: dx.save_act(_layers(), url, storage_options=["anon"]),
     r"storage_options \['anon'\] is not a mapping"),
    (lambda url, tmp: dx.ActWriter(url),
     r"ActWriter writes to a local path, not to the URL"),
    (lambda url, tmp: dx.open_act("nosuch://runs/run.act.zarr"),
     r"^cannot reach 'nosuch://runs/run\.act\.zarr': Protocol not known: nosuch$"),
    (lambda url, tmp: dx.save_act(_layers(), "nosuch://runs/run.act.zarr"),
     r"^cannot reach 'nosuch://runs/run\.act\.zarr': Protocol not known: nosuch$"),
])
def test_what_a_url_cannot_take_is_refused_in_one_line(call, message, url, tmp_path):
    with pytest.raises(dx.UsageError, match=message) as caught:
        call(url, tmp_path)
    assert "\n" not in str(caught.value)
    assert _objects(url) == [] and list(tmp_path.iterdir()) == []


# What a store gives back is what was saved, as an .act.h5 gives it, or one line saying why
# not.

def _stored_array(store: Path, path: str) -> np.ndarray:
    """Read an array of a store with zarr alone, as stored."""
    return zarr.open_array(str(store), path=path, mode="r")[...]


#: Layer attributes that CF conventions give a meaning to, and the values they were applied to.
CF_ATTRS = {
    "scale": ({"scale_factor": 0.5, "add_offset": 1.0}, "i1"),
    "missing": ({"missing_value": 3.0}, "f4"),
    "fill": ({"_FillValue": 3.0}, "f4"),
    "times": ({"units": "days since 2000-01-01", "calendar": "noleap"}, "u2"),
    "unsigned": ({"_Unsigned": "true"}, "i1"),
    "encoding": ({"_Encoding": "utf-8"}, "i2"),
}


@pytest.mark.parametrize("case", list(CF_ATTRS))
def test_layer_attributes_are_kept_and_never_change_the_values(case, tmp_path):
    # bug: xarray's CF decoding applied them when a store was read: int8 halves came back
    # as float64, 3.0 as NaN, numbers as dates; the attribute was gone
    attrs, dtype = CF_ATTRS[case]
    values = (np.arange(-4, 8).reshape(3, 4) % 5).astype(dtype)
    layer = xr.DataArray(values, dims=("stimulus", "channel"), attrs=attrs)
    for suffix in (".act.h5", ".act.zarr"):
        dx.save_act({"fc": layer}, tmp_path / f"run{suffix}")
        with dx.open_act(tmp_path / f"run{suffix}") as back:
            np.testing.assert_array_equal(back["fc"].values, values, strict=True)
            assert dict(back["fc"].attrs) == attrs
    np.testing.assert_array_equal(_stored_array(tmp_path / "run.act.zarr", "fc/fc"), values,
                                  strict=True)


@pytest.mark.parametrize(("header", "ids"), [
    ({"type": "image", "path": "images", "missing_value": "b.png"}, ["a.png", "b.png"]),
    ({"type": "video", "path": "run.mp4", "units": "seconds since 2000-01-01"}, [10, 20]),
], ids=["missing-value", "units"])
def test_stimulus_header_keys_never_change_the_stimulus_ids(header, ids, tmp_path):
    # bug: an ID equal to missing_value came back NaN, frame numbers as dates, and the key
    # was gone from the header
    stim = dx.Stimuli(header, __import__("pandas").DataFrame({"stimID": ids}))
    acts = dx.Activations({"fc": np.ones((2, 3), "f4")}).with_stimuli(stim)
    dx.save_act(acts, tmp_path / "run.act.zarr")
    with dx.open_act(tmp_path / "run.act.zarr") as back:
        assert back["fc"].stimulus.values.tolist() == ids
        assert dict(back.stim_header) == header


def test_an_all_nan_chunk_keeps_every_bit(tmp_path):
    # bug: zarr stored no chunk equal to the fill value (NaN), which read back as +NaN
    # without its sign and payload; so did a chunk of -0.0 of a layer whose fill is 0
    da = pytest.importorskip("dask.array")
    values = np.zeros((3, 4), "f4")
    values.view("u4")[0] = 0xFFC00001
    values[1] = -0.0
    values[2] = [1, 2, 3, 4]
    layer = xr.DataArray(da.from_array(values, chunks=(1, 4)), dims=("stimulus", "channel"))
    for name, data in {"fc": layer, "conv": xr.DataArray(values, dims=("stimulus", "channel"))
                       .chunk({"stimulus": 1})}.items():
        dx.save_act({name: data}, tmp_path / f"{name}.act.zarr")
        with dx.open_act(tmp_path / f"{name}.act.zarr") as back:
            assert back[name].values.tobytes() == values.tobytes()
        stored = zarr.open_array(str(tmp_path / f"{name}.act.zarr"), path=f"{name}/{name}")
        assert stored.nchunks_initialized == stored.nchunks == 3


MISSING = r"object '{}' is missing, and a store dnnmask_xr wrote holds every chunk\)$"


@pytest.mark.parametrize("chunks", [None, {}])
def test_a_chunk_missing_from_a_store_is_said_in_one_line(chunks, tmp_path):
    # bug: a chunk missing (a copy cut short) read as NaN without a word
    store = tmp_path / "run.act.zarr"
    dx.save_act(_layers(), store)
    (store / "fc" / "fc" / "c" / "0" / "0").unlink()
    with dx.open_act(store, chunks=chunks) as acts:
        np.testing.assert_array_equal(acts["conv"].values, _layers()["conv"].values)
        with pytest.raises(dx.ActFileError, match=r"^'.*run\.act\.zarr': cannot read layer "
                                                  r"'fc' \(" + MISSING.format("fc/fc/c/0/0")):
            acts["fc"].values  # noqa: B018 - reading is the test
        with pytest.raises(dx.ActFileError, match="cannot read layer 'fc'"):
            dx.save_act(acts, tmp_path / "out.act.h5")
    assert not (tmp_path / "out.act.h5").exists()


@pytest.mark.parametrize("label", ["stimulus/c/0", "fc/channel/c/0", "fc/condition/c/0"])
def test_a_label_missing_from_a_store_is_said_in_one_line(label, tmp_path):
    # bug: missing stimulus IDs read as '', channel numbers as 0, fields as ''
    store = tmp_path / "run.act.zarr"
    dx.save_act(_layers(), store)
    (store / label).unlink()
    # older xarray (the lowest pyproject.toml allows) puts "Failed to decode variable" first
    with pytest.raises(dx.ActFileError, match=r"^cannot read '.*run\.act\.zarr': the store is "
                                              r"damaged \((Failed to decode variable '\w+': )?"
                                              + MISSING.format(label)):
        dx.open_act(store)


def test_a_store_xarray_wrote_reads_its_chunks_left_out_as_fill_values(tmp_path):
    # xarray leaves out chunks equal to the fill value: such a store is read as xarray
    # reads it, not refused
    values = np.zeros((4, 3), "f4")
    values[2:] = np.nan
    acts = dx.Activations({"fc": xr.DataArray(values, dims=("stimulus", "channel"))
                           .chunk({"stimulus": 2})})
    dx.to_datatree(acts).to_zarr(tmp_path / "x.act.zarr", zarr_format=3, consolidated=False)
    with dx.open_act(tmp_path / "x.act.zarr") as back:
        np.testing.assert_array_equal(back["fc"].values, values)


@pytest.mark.parametrize(("labels", "message"), [
    ([1.0, 2.5], "token labels are float64, not integers"),
    (np.array(["a", "b"], dtype=object), "token labels are "),
], ids=["fractional", "text"])
def test_a_store_whose_unit_labels_are_not_int64_numbers_is_refused(labels, message,
                                                                    tmp_path):
    # bug: such a store (xarray wrote it) opened, as an .act.h5 with them does not;
    # masking it by label then raised TypeError, and every save refused it
    layer = xr.DataArray(np.ones((2, 2, 3), "f4"), dims=("stimulus", "token", "channel"),
                         coords={"token": labels})
    xr.DataTree.from_dict({"/": xr.Dataset(coords={"stimulus": [1, 2]}),
                           "/vit": layer.to_dataset(name="vit")}).to_zarr(
        tmp_path / "x.act.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(dx.ActFileError, match=r"^'.*x\.act\.zarr': layer 'vit': "
                                              + re.escape(message)):
        dx.open_act(tmp_path / "x.act.zarr")


def _edit_root(store: Path, **attrs) -> None:
    group = zarr.open_group(str(store), mode="r+")
    group.attrs.update(attrs)


@pytest.mark.parametrize(("order", "problem"), [
    (["tokens", "conv"], r"leaves out the group\(s\) 'fc'"),
    (["tokens", "conv", "fc", "conv"], r"lists layer\(s\) 'conv' more than once"),
    (["tokens", "conv", "fc", "pca"], r"lists layer\(s\) 'pca', which the store has no group"),
], ids=["left-out", "twice", "absent"])
@pytest.mark.parametrize("read", [dx.open_act, _read_by_xarray], ids=["open_act", "xarray"])
def test_a_layer_order_that_is_not_the_stores_layers_is_refused(read, order, problem,
                                                                 tmp_path):
    # bug: a layer the order left out was dropped without a word, one listed twice was
    # read twice
    store = tmp_path / "run.act.zarr"
    dx.save_act(_layers(), store)
    _edit_root(store, layer_order=order)
    with pytest.raises(dx.ActFileError, match=r"^'.*run\.act\.zarr': the root's attribute "
                                              r"'layer_order' " + problem):
        read(store)


def test_a_layer_put_into_a_store_by_xarray_is_not_dropped(tmp_path):
    store = tmp_path / "run.act.zarr"
    dx.save_act({"fc": np.ones((2, 3), "f4")}, store)
    pca = xr.Dataset({"pca": (("stimulus", "channel"), np.full((2, 2), 7, "f4"))},
                     coords={"channel": [1, 2]})
    pca.to_zarr(store, group="pca", mode="w", zarr_format=3, consolidated=False)
    with pytest.warns(UserWarning, match="Consolidated"):
        zarr.consolidate_metadata(str(store))
    with pytest.raises(dx.ActFileError, match=r"leaves out the group\(s\) 'pca'"):
        dx.open_act(store)


@pytest.mark.parametrize("name", ["layer_order", "stimulus_field_order", "act_zarr_exact"])
def test_root_attributes_a_store_keeps_for_itself_are_refused(name, tmp_path):
    # bug: the store wrote its own over them, and they were lost without a word
    with pytest.raises(dx.DnnMaskError, match=f"^attribute '{name}' of the file's root is "
                                              "reserved"):
        dx.save_act(_layers(), tmp_path / "run.act.zarr", attrs={name: ["x"]})
    assert not (tmp_path / "run.act.zarr").exists()


@pytest.mark.parametrize("key", ["coordinates", "CLASS", "_FillValue", "_Encoding"])
def test_a_header_key_a_store_keeps_for_itself_is_refused(key, tmp_path):
    # the header is the stimulus array's attributes: 'coordinates' was dropped, and
    # '_FillValue' of text raised xarray's ValueError as the store was written
    stimuli = dx.Stimuli({"type": "image", "path": "p", key: "x"},
                         pd.DataFrame({"stimID": ["a", "b"]}))
    acts = dx.Activations({"fc": np.ones((2, 3), np.float32)}).with_stimuli(stimuli)
    with pytest.raises(dx.DnnMaskError, match=(
            rf"^stimulus header key '{key}' names an attribute a zarr store keeps for itself "
            r"on the stimulus variable; rename the key, or save as \.act\.h5$")):
        dx.save_act(acts, tmp_path / "run.act.zarr")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("where", "name"), [
    ("layer", "zarr.json"), ("layer", "__meta"), ("field", "zarr.json"), ("dim", "zarr.json")])
def test_a_node_named_as_zarr_names_its_own_is_refused(where, name, tmp_path):
    # a field named zarr.json raised zarr's ValueError ("delete_dir was passed a prefix
    # that is a file"), a layer so named an OSError
    dims = ("stimulus", name if where == "dim" else "channel")
    layer = xr.DataArray(np.ones((2, 3), np.float32), dims=dims,
                         coords={name: ("stimulus", [1.0, 2.0])} if where == "field" else {})
    what = {"layer": "layer", "field": "stimulus field", "dim": "unit dim of layer 'fc'"}[where]
    with pytest.raises(dx.DnnMaskError, match=(
            rf"^{re.escape(what)} '{re.escape(name)}' cannot name a node of a zarr store")):
        dx.save_act({name if where == "layer" else "fc": layer}, tmp_path / "run.act.zarr")
    assert list(tmp_path.iterdir()) == []
