"""The fast write path: chunks touched, chunks copied, memory held, same values.

Mechanisms are checked by counting (chunks inflated and deflated, bytes
held), never by timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import assert_one_line_error

import dnnmask_xr
import dnnmask_xr.act.layer_writer
import dnnmask_xr.act.mask
from dnnmask_xr import mask_file, open_act, save_act, write_dmask
from dnnmask_xr.act.chunking import aligned_chunks, output_chunks
from dnnmask_xr.cli import main
from dnnmask_xr.testing import as_dnnmask, naive_mask, relu_activations, write_reference_act

#: AlexNet-like shapes, small enough for tests; h5py picks chunks that cut
#: every axis, as it does for real files.
SHAPES = {"conv1": (16, 11, 11), "conv2": (24, 9, 9), "conv5": (64, 5, 5),
          "fc1": (300, 1, 1)}
N_STIMULI = 70

#: The benchmark's scenarios, scaled down: -dmask (as DNNBrain's keys),
#: unsorted, spread, a few channels, whole layers.
SCENARIOS = {
    "whole-layer": {"conv1": {}},
    "all-layers": {layer: {} for layer in SHAPES},
    "dmask": {"conv1": {"chn": list(range(1, 6)), "row": list(range(3, 8)),
                        "col": list(range(3, 8))},
              "fc1": {"chn": list(range(1, 101))}},
    "unsorted": {"conv5": {"chn": [30, 3, 17]}},
    "spread": {"conv2": {"chn": list(range(1, 25, 8))}},
    "few-channels": {"conv5": {"chn": [1, 2, 3]}},
    "repeats": {"conv5": {"chn": [2, 2, 9], "row": [5, 1], "col": [3, 3, 3]}},
}


@pytest.fixture(scope="module")
def alexnet(tmp_path_factory) -> Path:
    """A file written as DNNBrain writes, h5py's automatic chunks."""
    path = tmp_path_factory.mktemp("engine") / "alexnet.act.h5"
    write_reference_act(path, relu_activations(N_STIMULI, SHAPES, seed=3))
    return path


@pytest.fixture
def deflations(monkeypatch) -> list[int]:
    """Record every chunk the engine deflates, calling the real codec."""
    seen: list[int] = []
    real = dnnmask_xr.act.layer_writer.deflate

    def counting(data) -> bytes:
        seen.append(len(data))
        return real(data)

    monkeypatch.setattr(dnnmask_xr.act.layer_writer, "deflate", counting)
    return seen


def _flags(dmask: dict, folder: Path) -> list[str]:
    if all(not axes for axes in dmask.values()):
        return ["-layer", *dmask]
    path = folder / "job.dmask.csv"
    write_dmask(as_dnnmask(dmask), path)
    return ["-dmask", str(path)]


def _touched(dataset: h5py.Dataset, axes: dict) -> int:
    """Chunks an orthogonal selection intersects, counted with numpy."""
    count = 1
    for axis, key in enumerate(("stim", "chn", "row", "col")):
        numbers = axes.get(key)
        positions = (np.arange(dataset.shape[axis]) if numbers is None
                     else np.asarray(numbers) - 1)
        count *= np.unique(positions // dataset.chunks[axis]).size
    return count


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_output_equals_the_naive_implementation(alexnet, tmp_path, name):
    dmask = SCENARIOS[name]
    naive = tmp_path / "naive.act.h5"
    naive_mask(alexnet, naive, dmask)
    ours = tmp_path / "ours.act.h5"
    assert main(["-act", str(alexnet), *_flags(dmask, tmp_path), "-out", str(ours)]) == 0
    with h5py.File(naive, "r") as expected, h5py.File(ours, "r") as got:
        assert list(got) == list(dmask)
        for layer in dmask:
            assert got[layer].dtype == expected[layer].dtype
            np.testing.assert_array_equal(got[layer][()], expected[layer][()])


@pytest.mark.parametrize("name", [name for name, job in SCENARIOS.items()
                                  if any(job.values())])
def test_a_mask_inflates_each_touched_chunk_once(alexnet, tmp_path, inflations, name):
    dmask = SCENARIOS[name]
    # a small budget: many blocks, and still no chunk inflated twice
    report = mask_file(alexnet, tmp_path / "o.act.h5", as_dnnmask(dmask), memory=2**16)
    with h5py.File(alexnet, "r") as source:
        expected = sum(_touched(source[layer], axes) for layer, axes in dmask.items())
        total = sum(np.prod([-(-n // c) for n, c in zip(source[layer].shape,
                                                          source[layer].chunks, strict=True)])
                    for layer in dmask)
    assert len(inflations) == expected < total
    assert sum(layer.chunks_inflated for layer in report.layers) == expected


def test_whole_layers_are_copied_without_decoding(alexnet, tmp_path, inflations, deflations):
    out = tmp_path / "o.act.h5"
    report = mask_file(alexnet, out, {layer: {} for layer in SHAPES})
    assert inflations == [] and deflations == []
    assert {layer.method for layer in report.layers} == {"copied"}
    with h5py.File(alexnet, "r") as source, h5py.File(out, "r") as copy:
        for layer in SHAPES:
            assert copy[layer].chunks == source[layer].chunks
            assert copy[layer].compression == "gzip"
            chunks = [source[layer].id.get_chunk_info(i)
                      for i in range(source[layer].id.get_num_chunks())]
            assert copy[layer].id.get_num_chunks() == len(chunks)
            for info in chunks:
                assert (copy[layer].id.read_direct_chunk(info.chunk_offset)
                        == source[layer].id.read_direct_chunk(info.chunk_offset))
            np.testing.assert_array_equal(copy[layer][()], source[layer][()])


def test_selections_on_chunk_boundaries_are_copied(tmp_path, inflations):
    values = np.random.default_rng(2).random((10, 70, 2, 2)).astype(np.float32)
    source = tmp_path / "in.act.h5"
    with h5py.File(source, "w") as root:
        root.create_dataset("fc", data=values, chunks=(4, 32, 2, 2), compression="gzip")
    # the second chunk of channels, then the first, then the short last one
    channels = [*range(33, 65), *range(1, 33), *range(65, 71)]
    out = tmp_path / "o.act.h5"
    report = mask_file(source, out, {"fc": {"channel": channels}})
    assert report.layers[0].method == "copied" and inflations == []
    np.testing.assert_array_equal(open_act(out)["fc"].values,
                                  values[:, np.asarray(channels) - 1])
    # the short chunk anywhere but last cannot be copied: it is re-encoded
    report = mask_file(source, out, {"fc": {"channel": [*range(65, 71), *range(1, 33)]}})
    assert report.layers[0].method == "re-encoded"


@pytest.mark.parametrize(("positions", "size", "chunk", "expected"), [
    ([0, 1, 2, 3], 4, 2, [0, 1]),
    ([2, 3, 0, 1], 4, 2, [1, 0]),
    ([4, 0, 1, 2, 3], 5, 4, None),          # the short last chunk must come last
    ([0, 1, 2, 3, 4], 5, 4, [0, 1]),
    ([0, 1, 2, 3, 4, 5, 6, 7], 10, 4, [0, 1]),
    ([0, 1, 8, 9], 10, 4, None),            # split chunk
    ([1, 2], 10, 2, None),                  # not on a boundary
    ([0, 1, 0, 1], 2, 2, [0, 0]),           # a chunk kept twice
    ([8, 9, 0, 1, 2, 3], 10, 4, None),      # the short last chunk in the middle
])
def test_aligned_chunks(positions, size, chunk, expected):
    got = aligned_chunks(np.asarray(positions), size, chunk)
    assert (got is None and expected is None) or got.tolist() == expected


@pytest.mark.reliability
def test_memory_stays_within_a_small_budget(tmp_path):
    # 32 MiB of values re-encoded under a 4 MiB budget
    values = np.random.default_rng(0).random((512, 16, 32, 32), dtype=np.float32)
    source = tmp_path / "in.act.h5"
    with h5py.File(source, "w") as root:
        root.create_dataset("conv", data=values, chunks=(64, 4, 16, 16), compression="gzip")
    budget = 4 * 2**20
    channels = list(range(16, 0, -1))  # reversed: every chunk is re-encoded
    tracemalloc.start()
    try:
        report = mask_file(source, tmp_path / "o.act.h5", {"conv": {"channel": channels}},
                           memory=budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.layers[0].method == "re-encoded"
    assert peak < budget, f"held {peak / 2**20:.1f} MiB under a 4 MiB budget"
    np.testing.assert_array_equal(open_act(tmp_path / "o.act.h5")["conv"].values,
                                  values[:, ::-1])


def test_output_chunks_follow_the_input_stimulus_chunks():
    # 1000 stimuli in chunks of 63: output chunks hold a multiple of 63 stimuli
    assert output_chunks((1000, 64, 55, 55), 4, stimulus_step=63) == (63, 1, 55, 55)
    assert output_chunks((1000, 24, 27, 27), 4, stimulus_step=63) == (315, 1, 27, 27)
    # a step bigger than 1 MiB: a divisor of it
    assert output_chunks((1000, 8, 512, 512), 4, stimulus_step=6) == (1, 1, 512, 512)
    assert output_chunks((1000, 8, 256, 256), 4, stimulus_step=6) == (3, 1, 256, 256)


@pytest.mark.parametrize("kind", ["contiguous", "shuffle-gzip", "lzf", "fletcher32",
                                  "uncompressed-chunks", "big-endian", "unwritten-chunks"])
def test_inputs_of_any_layout_are_masked_exactly(tmp_path, kind):
    values = np.random.default_rng(1).random((9, 10, 4, 3)).astype(np.float32)
    options = {
        "contiguous": {},
        "shuffle-gzip": {"chunks": (4, 3, 2, 3), "compression": "gzip", "shuffle": True},
        "lzf": {"chunks": (4, 3, 2, 3), "compression": "lzf"},
        "fletcher32": {"chunks": (4, 3, 2, 3), "compression": "gzip", "fletcher32": True},
        "uncompressed-chunks": {"chunks": (4, 3, 2, 3)},
        "big-endian": {"chunks": (4, 3, 2, 3), "compression": "gzip", "dtype": ">f4"},
        "unwritten-chunks": {"chunks": (4, 3, 2, 3), "compression": "gzip",
                             "fillvalue": -1.5},
    }[kind]
    source = tmp_path / "in.act.h5"
    with h5py.File(source, "w") as root:
        if kind == "unwritten-chunks":
            layer = root.create_dataset("conv", shape=values.shape, dtype="f4", **options)
            layer[:4, :3] = values[:4, :3]  # the other chunks are never written
        else:
            root.create_dataset("conv", data=values, **options)
        expected = root["conv"][()]
    for channels in ([7, 1, 4], list(range(1, 11))):
        out = tmp_path / f"o{len(channels)}.act.h5"
        assert main(["-act", str(source), "-layer", "conv", "-chn", *map(str, channels),
                     "-out", str(out)]) == 0
        got = open_act(out)["conv"].values
        np.testing.assert_array_equal(got, expected[:, np.asarray(channels) - 1])
        assert got.dtype == expected.dtype


def test_nan_and_infinity_pass_through_bit_for_bit(tmp_path):
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 1.5, 0.0], dtype=np.float32)
    values = np.resize(values, (6, 4, 3, 2))
    source = tmp_path / "in.act.h5"
    write_reference_act(source, {"conv": values})
    for flags in (["-layer", "conv"], ["-layer", "conv", "-chn", "4", "1"]):
        out = tmp_path / "o.act.h5"
        assert main(["-act", str(source), *flags, "-out", str(out)]) == 0
        got = open_act(out)["conv"].values
        channels = [3, 0] if "-chn" in flags else [0, 1, 2, 3]
        assert got.view(np.uint32).tolist() == values[:, channels].view(np.uint32).tolist()


def test_one_thread_and_two_write_the_same_chunks(alexnet, tmp_path):
    mask = as_dnnmask(SCENARIOS["dmask"])
    mask_file(alexnet, tmp_path / "one.act.h5", mask, threads=1)
    mask_file(alexnet, tmp_path / "two.act.h5", mask, threads=2)
    with h5py.File(tmp_path / "one.act.h5", "r") as one, \
            h5py.File(tmp_path / "two.act.h5", "r") as two:
        for layer in mask:
            assert one[layer].id.get_num_chunks() == two[layer].id.get_num_chunks()
            for i in range(one[layer].id.get_num_chunks()):
                offset = one[layer].id.get_chunk_info(i).chunk_offset
                assert (one[layer].id.read_direct_chunk(offset)
                        == two[layer].id.read_direct_chunk(offset))


def test_save_act_takes_the_fast_path_for_file_layers(alexnet, tmp_path, inflations):
    acts = open_act(alexnet)
    report = save_act(acts.mask(as_dnnmask(SCENARIOS["unsorted"])), tmp_path / "o.act.h5")
    assert report.layers[0].method == "re-encoded"
    with h5py.File(alexnet, "r") as source:
        assert len(inflations) == _touched(source["conv5"], SCENARIOS["unsorted"]["conv5"])
    report = save_act({"conv5": acts["conv5"]}, tmp_path / "whole.act.h5")
    assert report.layers[0].method == "copied"
    # computed values have no file behind them: encoded block by block
    report = save_act({"conv5": acts["conv5"] * 2}, tmp_path / "double.act.h5")
    assert report.layers[0].method == "encoded"
    np.testing.assert_array_equal(open_act(tmp_path / "double.act.h5")["conv5"].values,
                                  acts["conv5"].values * 2)


def test_mask_file_equals_save_act_of_a_mask(alexnet, tmp_path):
    mask = as_dnnmask(SCENARIOS["dmask"])
    mask_file(alexnet, tmp_path / "fast.act.h5", mask)
    save_act(open_act(alexnet).mask(mask, by="ordinal"), tmp_path / "lazy.act.h5")
    fast, lazy = open_act(tmp_path / "fast.act.h5"), open_act(tmp_path / "lazy.act.h5")
    assert list(fast) == list(lazy)
    for layer in fast:
        assert fast[layer].load().identical(lazy[layer].load())
    assert {key: fast.attrs[key] for key in ("source", "mask", "mask_by")} == \
        {key: lazy.attrs[key] for key in ("source", "mask", "mask_by")}


def test_the_command_starts_without_xarray_or_pandas(alexnet, tmp_path):
    code = ("import sys\nfrom dnnmask_xr.cli import main\n"
            f"status = main(['-act', {str(alexnet)!r}, '-layer', 'conv5', '-chn', '3', '1',"
            f" '-out', {str(tmp_path / 'o.act.h5')!r}])\n"
            "print(json.dumps([status, sorted(m for m in ('xarray', 'pandas', 'dask') "
            "if m in sys.modules)]))")
    done = subprocess.run([sys.executable, "-c", "import json\n" + code],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [0, []]


@pytest.mark.parametrize(("text", "expected"), [
    ("512M", 512 * 2**20), ("2G", 2 * 2**30), ("1.5GiB", int(1.5 * 2**30)),
    ("64k", 64 * 2**10), ("1000000", 1_000_000),
])
def test_memory_flag_reads_sizes(alexnet, tmp_path, monkeypatch, text, expected):
    seen = {}
    monkeypatch.setattr(dnnmask_xr.act.mask, "mask_file",
                        lambda *args, **kwargs: seen.update(kwargs))
    assert main(["-act", str(alexnet), "-layer", "conv5", "--memory", text,
                 "-out", str(tmp_path / "o.act.h5")]) == 0
    assert seen["memory"] == expected


@pytest.mark.parametrize(("flags", "message"), [
    (["--memory", "lots"], r"--memory: 'lots' is not a size"),
    (["--memory", "0"], r"--memory: '0' is not a positive size"),
    (["--threads", "0"], r"--threads 0 is not a positive number of threads"),
])
def test_bad_budget_flags_exit_2(alexnet, tmp_path, capsys, flags, message):
    out = tmp_path / "o.act.h5"
    assert main(["-act", str(alexnet), "-layer", "conv5", *flags, "-out", str(out)]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, message)
    assert not out.exists()


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_masks_equal_numpy(alexnet, tmp_path, data):
    layer = data.draw(st.sampled_from(list(SHAPES)))
    n_chn, n_row, n_col = SHAPES[layer]
    axes = {}
    for key, size in (("chn", n_chn), ("row", n_row), ("col", n_col)):
        if data.draw(st.booleans()):
            axes[key] = data.draw(st.lists(st.integers(1, size), min_size=1, max_size=12))
    with h5py.File(alexnet, "r") as source:
        expected = source[layer][()]
        # the least budget a layer's chunks fit in: 3 chunks' worth
        least = 3 * int(np.prod(source[layer].chunks)) * source[layer].dtype.itemsize
    memory = data.draw(st.sampled_from([least, max(least, 2**16), 2**27]))
    out = tmp_path / "random.act.h5"
    mask_file(alexnet, out, as_dnnmask({layer: axes}), memory=memory)
    index = [np.arange(expected.shape[0])]
    for key, size in (("chn", n_chn), ("row", n_row), ("col", n_col)):
        index.append(np.asarray(axes[key]) - 1 if key in axes else np.arange(size))
    got = open_act(out)[layer].values
    np.testing.assert_array_equal(got, expected[np.ix_(*index)])


def test_verify_inflates_copied_chunks_and_still_copies_them(alexnet, tmp_path, inflations):
    out = tmp_path / "o.act.h5"
    report = mask_file(alexnet, out, {"conv5": {}}, verify=True)
    (layer,) = report.layers
    assert layer.method == "copied"
    assert len(inflations) == layer.chunks_inflated == layer.chunks_read == layer.chunks_written
    with h5py.File(alexnet, "r") as source, h5py.File(out, "r") as copy:
        info = source["conv5"].id.get_chunk_info(0)
        assert (copy["conv5"].id.read_direct_chunk(info.chunk_offset)
                == source["conv5"].id.read_direct_chunk(info.chunk_offset))
        np.testing.assert_array_equal(copy["conv5"][()], source["conv5"][()])


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_whole_layers_of_any_format_are_copied_without_foreign_attributes(tmp_path, libver,
                                                                          inflations):
    values = np.random.default_rng(4).random((6, 5, 4, 3)).astype(np.float32)
    source = tmp_path / "in.act.h5"
    with h5py.File(source, "w", libver=libver) as root:
        layer = root.create_dataset("conv", data=values, chunks=(2, 2, 4, 3),
                                    compression="gzip")
        layer.attrs["note"] = "not a unit number"
    out = tmp_path / "o.act.h5"
    report = mask_file(source, out, {"conv": {}})
    assert report.layers[0].method == "copied" and inflations == []
    with h5py.File(out, "r") as root:
        assert sorted(root["conv"].attrs) == ["channel", "column", "row"]
        assert root["conv"].chunks == (2, 2, 4, 3)
        np.testing.assert_array_equal(root["conv"][()], values)


def test_many_channels_fit_as_attributes_of_a_copied_layer(tmp_path):
    # 20 000 channel numbers (160 kB) need the newer object header: still exact
    values = np.arange(2 * 20_000, dtype=np.float32).reshape(2, 20_000, 1, 1)
    source = tmp_path / "in.act.h5"
    write_reference_act(source, {"fc": values})
    out = tmp_path / "o.act.h5"
    assert mask_file(source, out, {"fc": {}}).layers[0].method == "copied"
    acts = open_act(out)
    np.testing.assert_array_equal(acts["fc"].channel.values, np.arange(1, 20_001))
    np.testing.assert_array_equal(acts["fc"].values, values)
    acts.close()  # an output still open for reading is never replaced
    reversed_channels = list(range(20_000, 0, -1))
    assert mask_file(source, out, {"fc": {"channel": reversed_channels}}).layers[0].method \
        == "re-encoded"
    acts = open_act(out)
    np.testing.assert_array_equal(acts["fc"].channel.values, reversed_channels)
    np.testing.assert_array_equal(acts["fc"].values, values[:, ::-1])


def test_mask_file_writes_netcdf_through_the_same_writer(alexnet, tmp_path):
    # one writer for both suffixes: .nc copies chunks too, and reports them
    out = tmp_path / "o.nc"
    report = mask_file(alexnet, out, {"conv5": {}, "fc1": {"channel": [3, 1]}})
    assert [layer.method for layer in report.layers] == ["copied", "re-encoded"]
    with h5py.File(alexnet) as source, open_act(out) as acts:
        np.testing.assert_array_equal(acts["conv5"].values, source["conv5"][()])
        np.testing.assert_array_equal(acts["fc1"].values, source["fc1"][()][:, [2, 0]])
        np.testing.assert_array_equal(acts["fc1"].channel.values, [3, 1])


def test_a_layer_read_lazily_by_another_backend_is_read_a_block_at_a_time(tmp_path):
    # bug: the writer asked such a layer for its .data to see whether dask was behind it,
    # which read the whole layer into memory before the first block, past any budget
    import xarray as xr
    from xarray.backends import BackendArray
    from xarray.core import indexing

    values = np.random.default_rng(4).random((256, 16, 16, 16), dtype=np.float32)  # 4 MiB
    read: list[int] = []

    class Recorded(BackendArray):
        shape, dtype = values.shape, values.dtype

        def __getitem__(self, key):
            return indexing.explicit_indexing_adapter(
                key, self.shape, indexing.IndexingSupport.BASIC, self._read)

        def _read(self, key):
            read.append(values[key].nbytes)
            return values[key]

    layer = xr.DataArray(xr.Variable(("stimulus", "channel", "row", "column"),
                                     indexing.LazilyIndexedArray(Recorded())))
    budget = 3 * 2**20  # a block is a third of it, or one chunk if that is more
    save_act({"conv": layer}, tmp_path / "out.act.h5", memory=budget)
    with h5py.File(tmp_path / "out.act.h5", "r") as root:
        chunk = int(np.prod(root["conv"].chunks)) * values.itemsize
    assert sum(read) == values.nbytes and max(read) <= max(budget // 3, chunk) < values.nbytes, (
        read, chunk)
    np.testing.assert_array_equal(open_act(tmp_path / "out.act.h5")["conv"].values, values)
