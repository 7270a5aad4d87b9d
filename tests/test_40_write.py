"""Saving: the .act.h5 layout, exact round trips, streaming, atomic files."""

from __future__ import annotations

import json
import os
import signal
import tracemalloc

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

import dnnmask_xr
import dnnmask_xr.act.layer_writer
from dnnmask_xr import (
    ActFileError,
    DnnMask,
    DnnMaskError,
    Stimuli,
    UsageError,
    open_act,
    save_act,
)
from dnnmask_xr.act._interrupt import Interrupted
from dnnmask_xr.act.chunking import CHUNK_BYTES, iter_blocks, output_chunks
from dnnmask_xr.act.layout import layer_names
from dnnmask_xr.cli import main
from dnnmask_xr.testing import read_reference_act


def test_round_trip_is_exact(act_file, tmp_path):
    out = tmp_path / "copy.act.h5"
    save_act(open_act(act_file), out)
    for name, layer in open_act(act_file).items():
        xr.testing.assert_identical(open_act(out)[name].load(), layer.load())


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "uint8"])
def test_values_and_dtype_survive(tmp_path, dtype):
    data = (np.random.default_rng(5).standard_normal((3, 4, 5, 6)) * 50).astype(dtype)
    layer = xr.DataArray(data, dims=("stimulus", "channel", "row", "column"))
    save_act({"layer": layer}, tmp_path / "x.act.h5")
    back = open_act(tmp_path / "x.act.h5")["layer"]
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.values, data)


def test_masked_numbers_survive_the_round_trip(act_file, layers, tmp_path):
    mask = DnnMask({"conv5": {"channel": [20, 3, 17], "row": [6, 1]}, "fc3": {}})
    save_act(open_act(act_file).mask(mask), tmp_path / "m.act.h5")
    back = open_act(tmp_path / "m.act.h5")
    assert list(back) == ["conv5", "fc3"]
    assert back["conv5"].channel.values.tolist() == [20, 3, 17]
    assert back["conv5"].row.values.tolist() == [6, 1]
    assert back["conv5"].column.values.tolist() == list(range(1, 8))
    expected = layers["conv5"][:, [19, 2, 16]][:, :, [5, 0]]
    np.testing.assert_array_equal(back["conv5"].values, expected)
    np.testing.assert_array_equal(back["fc3"].values, layers["fc3"])


def test_reference_reader_reads_our_files(act_file, layers, tmp_path):
    mask = DnnMask({"fc3": {"channel": [12, 1]}, "conv5": {"column": [7, 2]}})
    save_act(open_act(act_file).mask(mask), tmp_path / "m.act.h5")
    theirs = read_reference_act(tmp_path / "m.act.h5")
    # its layer order is h5py's: creation order in recent h5py, by name in older
    assert sorted(theirs) == ["conv5", "fc3"]
    np.testing.assert_array_equal(theirs["fc3"], layers["fc3"][:, [11, 0]])
    np.testing.assert_array_equal(theirs["conv5"], layers["conv5"][:, :, :, [6, 1]])
    # and a DNNBrain-style mask on our output, by position
    part = read_reference_act(tmp_path / "m.act.h5", {"conv5": {"chn": [2, 5], "col": [2]}})
    np.testing.assert_array_equal(part["conv5"], layers["conv5"][:, [1, 4]][:, :, :, [1]])


def test_root_holds_only_4d_gzip_layers_in_the_order_written(act_file, stim_file, tmp_path):
    acts = open_act(act_file, stim=stim_file).mask(DnnMask({"fc3": {}, "conv5": {}}))
    save_act(acts, tmp_path / "m.act.h5", attrs={"cmd": "dnn_mask -act ..."})
    with h5py.File(tmp_path / "m.act.h5", "r") as root:
        assert layer_names(root) == ["fc3", "conv5"]
        assert sorted(root) == ["conv5", "fc3"]
        for dataset in root.values():
            assert isinstance(dataset, h5py.Dataset)
            assert dataset.ndim == 4
            assert dataset.compression == "gzip"
            assert dataset.compression_opts == 4
        assert root.attrs["source"] == str(act_file)
        assert root.attrs["mask"] == "fc3=\nconv5=\n"
        assert root.attrs["mask_by"] == "label"
        assert root.attrs["cmd"] == "dnn_mask -act ..."
        assert root.attrs["software"].startswith("dnnmask_xr ")
        assert pd.Timestamp(root.attrs["date"]).tzinfo is not None
        assert json.loads(root.attrs["stimulus_header"]) == {"type": "image",
                                                             "path": "/data/images"}


def test_stimuli_survive_at_any_number(tmp_path):
    n = 100_000
    table = pd.DataFrame({"stimID": [f"stimulus_{i:06d}.jpg" for i in range(n)],
                          "label": np.arange(n) % 1000,
                          "condition": np.where(np.arange(n) % 2, "animate", "inanimate"),
                          "onset": np.arange(n) * 0.25})
    stimuli = Stimuli(header={"type": "image", "path": "/data/things"}, table=table)
    layer = xr.DataArray(np.zeros((n, 2, 1, 1), dtype="float32"),
                         dims=("stimulus", "channel", "row", "column"))
    acts = dnnmask_xr.Activations({"fc": layer}).with_stimuli(stimuli)
    save_act(acts, tmp_path / "big.act.h5")
    back = open_act(tmp_path / "big.act.h5")
    assert back.stimuli.equals(stimuli)
    assert back["fc"]["stimulus"].values[-1] == "stimulus_099999.jpg"


def test_layers_that_disagree_on_stimuli_are_refused(tmp_path):
    dims = ("stimulus", "channel", "row", "column")
    first = xr.DataArray(np.zeros((2, 1, 1, 1)), dims=dims, coords={"stimulus": ["a", "b"]})
    second = xr.DataArray(np.zeros((2, 1, 1, 1)), dims=dims, coords={"stimulus": ["a", "c"]})
    with pytest.raises(DnnMaskError, match="layer 'second' labels its stimuli differently"):
        save_act({"first": first, "second": second}, tmp_path / "x.act.h5")
    assert list(tmp_path.iterdir()) == []


def test_the_input_is_never_the_output(act_file):
    before = act_file.read_bytes()
    with pytest.raises(ActFileError, match="is the input file"):
        save_act(open_act(act_file).mask(DnnMask({"fc3": {}})), act_file)
    assert act_file.read_bytes() == before


def test_suffix_is_required(act_file, tmp_path):
    with pytest.raises(UsageError, match=r"does not end in '\.act\.h5'"):
        save_act(open_act(act_file), tmp_path / "x.h5")


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(act_file, tmp_path, monkeypatch):
    out = tmp_path / "out.act.h5"
    out.write_bytes(b"previous result")
    real = dnnmask_xr.act.write._write_layer
    calls = []

    def fail_on_second_layer(*args):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(dnnmask_xr.act.write, "_write_layer", fail_on_second_layer)
    with pytest.raises(KeyboardInterrupt):
        save_act(open_act(act_file), out)
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.act.h5", "out.act.h5"]


def test_empty_layers_are_written(tmp_path):
    layer = xr.DataArray(np.zeros((0, 3, 2, 2), dtype="float32"),
                         dims=("stimulus", "channel", "row", "column"))
    save_act({"empty": layer}, tmp_path / "e.act.h5")
    assert open_act(tmp_path / "e.act.h5")["empty"].shape == (0, 3, 2, 2)


def test_memory_does_not_grow_with_layer_size(tmp_path):
    # a 32 MiB layer on disk in 512 KiB chunks, saved through the lazy reader, 2 MiB budget
    data = np.random.default_rng(2).random((128, 64, 32, 32), dtype="float32")
    with h5py.File(tmp_path / "big.act.h5", "w") as root:
        root.create_dataset("conv", data=data, chunks=(16, 8, 32, 32))
    del data
    acts = open_act(tmp_path / "big.act.h5")
    tracemalloc.start()
    try:
        save_act(acts, tmp_path / "copy.act.h5", memory=2**21)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20
    np.testing.assert_array_equal(open_act(tmp_path / "copy.act.h5")["conv"][-1, -1].values,
                                  acts["conv"][-1, -1].values)


def test_chunks_cut_only_stimuli_and_channels():
    for shape in [(1000, 64, 55, 55), (1000, 4096, 1, 1), (7, 3, 2, 2), (5, 1, 600, 600)]:
        chunks = output_chunks(shape, 4)
        assert chunks[2:] == shape[2:]
        assert all(1 <= c <= s for c, s in zip(chunks, shape, strict=True))
        assert np.prod(chunks) * 4 <= max(CHUNK_BYTES, shape[2] * shape[3] * 4)


@settings(max_examples=examples(200), deadline=None)
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 5),
                    st.integers(1, 5)),
    itemsize=st.sampled_from([1, 2, 4, 8]),
    budget=st.integers(1, 20_000),
)
def test_blocks_cover_the_layer_once_within_budget(shape, itemsize, budget):
    chunks = (max(1, shape[0] // 3), max(1, shape[1] // 4), *shape[2:])
    covered = np.zeros(shape[:2], dtype=int)
    chunk_bytes = int(np.prod(chunks)) * itemsize
    for stimuli, channels in iter_blocks(shape, chunks, itemsize, budget):
        covered[stimuli, channels] += 1
        block_bytes = (stimuli.stop - stimuli.start) * (channels.stop - channels.start) \
            * shape[2] * shape[3] * itemsize
        assert block_bytes <= max(budget, chunk_bytes)
        # blocks start on chunk boundaries, so no chunk is written twice
        assert stimuli.start % chunks[0] == 0 and channels.start % chunks[1] == 0
    assert (covered == 1).all()


def _signal_after_first_block(signum):
    real = dnnmask_xr.act.layer_writer.iter_blocks

    def blocks(*args):
        for number, block in enumerate(real(*args)):
            yield block
            if number == 0:
                os.kill(os.getpid(), signum)

    return blocks


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_write_cleanly(tmp_path, monkeypatch, signum):
    # two chunks of 1 MiB, so two blocks: the signal comes between them
    data = np.arange(4 * 8 * 128 * 128, dtype="float32").reshape(4, 8, 128, 128)
    layer = xr.DataArray(data, dims=("stimulus", "channel", "row", "column"))
    monkeypatch.setattr(dnnmask_xr.act.layer_writer, "iter_blocks",
                        _signal_after_first_block(signum))
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as stopped:
        save_act({"layer": layer}, tmp_path / "x.act.h5", memory=1024)
    assert stopped.value.signum == signum
    assert list(tmp_path.iterdir()) == []
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def test_the_command_reports_a_signal_and_writes_nothing(act_file, tmp_path, monkeypatch,
                                                         capsys):
    monkeypatch.setattr(dnnmask_xr.act.layer_writer, "iter_blocks", _signal_after_first_block(
        signal.SIGINT))
    out = tmp_path / "out.act.h5"
    # unsorted channels: values are re-encoded block by block, not copied as chunks
    assert main(["-act", str(act_file), "-layer", "conv5", "-chn", "3", "1", "2", "-out",
                 str(out)]) == 130
    assert capsys.readouterr().err == ("dnn_mask: error: interrupted by SIGINT; nothing was "
                                       "written\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.act.h5"]
