"""The chunk reader decodes what HDF5 would, within its bounds, on every route.

- A chunk's filter mask is read bit by bit: filter ``i`` is skipped only
  when bit ``i`` is set, so a gzip chunk with mask 2 is inflated, as HDF5
  inflates it (a raw-sized stream passes the index's size checks).
- Chunks never written in a layer whose fill time is "never" hold no
  values (HDF5 leaves them unset): refused in one line, as a layer without
  a fill value is, never read as the fill value.
  Layers HDF5 decodes (lzf, fletcher32, no filter, contiguous) with such
  parts are refused whole, since HDF5 would give whatever memory held.
- Byte-shuffled and fletcher32-checked gzip layers are decoded here too,
  mask bit by mask bit, a checksum that differs refused.
- Inflating stops at the chunk's size: a stream that inflates to 512 MiB
  is refused having allocated no more than the chunk, behind a shuffle too.
- Lazy reads refuse, in one line and before reading, chunks that do not
  fit ``read_memory`` twice (stored and decoded).
- Strided selections of layers HDF5 decodes are read one HDF5 call per
  chunk touched, not one hyperslab per combination of runs.

Memory is measured as the peak resident size of a child process, against
the same run on a well-formed file of the same shape; nothing is timed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability import assert_one_line_error, command, layer_dataset, run_route
from routes import READ_ROUTES

import dnnmask_xr.act.chunk_read
import dnnmask_xr.act.codec
import dnnmask_xr.xarray_.array
from dnnmask_xr import ActFileError, open_act, save_act, set_options

pytestmark = pytest.mark.sweep("route", "suffix")

SUFFIXES = (".act.h5", ".nc")
#: The lazy ways of reading a layer: ``.values``, and dask on each scheduler.
#: How a lazy layer is read; dask's process scheduler starts processes (a slow tier).
LAZY = ("values", "dask-threads",
        pytest.param("dask-processes", marks=pytest.mark.processes))


def _lazy_read(path: Path, name: str, how: str, key: tuple = ()) -> np.ndarray:
    """Read ``layer[key]`` of ``path`` through ``open_act`` the way ``how`` says."""
    with open_act(path, chunks=None if how == "values" else {}) as acts:
        layer = acts[name][key] if key else acts[name]
        if how == "values":
            return layer.values
        return layer.data.compute(scheduler=how.removeprefix("dask-"))


def _run(route: str, path: Path, flags: tuple[str, ...], out: Path):
    return run_route("-act", path, *flags, "-out", out, route=route)


def _assert_the_command_refuses(path: Path, error: str, out: Path) -> None:
    """``dnn_mask -chn 2 1`` fails with the one line ``error`` and writes nothing."""
    done = _run("command", path, ("-layer", "conv", "-chn", "2", "1"), out)
    assert done.returncode == 1, done.stderr
    assert_one_line_error(done.stderr, error)
    assert not out.exists()


# -- 1. filter masks, bit by bit --------------------------------------------------------------

SHAPE = (4, 8, 4, 4)
CHUNKS = (1, 8, 4, 4)  # 512 bytes of float32


def _masked_chunk_file(folder: Path) -> tuple[Path, np.ndarray]:
    """A gzip layer whose chunk (1, 0, 0, 0) has filter mask 2, padded to the raw size.

    Bit 1 names no filter of a gzip-only pipeline, so HDF5 still inflates
    the chunk; its stream, padded with zeros to the 512 bytes of a raw
    chunk, passes every size check of the index.
    """
    # small whole numbers: they compress, so the stream can be padded to a raw chunk
    data = np.random.default_rng(1).integers(0, 9, SHAPE).astype("f4")
    path = folder / "masked.act.h5"
    with h5py.File(path, "w") as root:
        layer = root.create_dataset("conv", data=data, chunks=CHUNKS, compression="gzip")
        stream = zlib.compress(data[1].tobytes())
        raw_size = data[1].nbytes
        assert len(stream) < raw_size
        layer.id.write_direct_chunk((1, 0, 0, 0), stream.ljust(raw_size, b"\0"), filter_mask=2)
    with h5py.File(path, "r") as root:  # h5py reads the right values
        np.testing.assert_array_equal(root["conv"][()], data)
    return path, data


MASK_FLAGS = (("-layer", "conv"), ("-layer", "conv", "--verify"),
              ("-layer", "conv", "-chn", "2", "1"))


@pytest.mark.parametrize("flags", MASK_FLAGS, ids=" ".join)
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("route", READ_ROUTES)
def test_a_chunk_with_an_unused_mask_bit_is_inflated_on_every_write_route(
        route: str, suffix: str, flags: tuple[str, ...], tmp_path: Path):
    path, data = _masked_chunk_file(tmp_path)
    out = tmp_path / f"out{suffix}"
    done = _run(route, path, flags, out)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    expected = data[:, [1, 0]] if "-chn" in flags else data
    with h5py.File(out, "r") as root:
        got = layer_dataset(root, "conv")[()]
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("how", LAZY)
def test_a_chunk_with_an_unused_mask_bit_is_inflated_by_lazy_reads(how: str, tmp_path: Path):
    path, data = _masked_chunk_file(tmp_path)
    assert _lazy_read(path, "conv", how).tobytes() == data.tobytes()


def test_a_mask_bit_past_the_pipeline_is_ignored_and_bit_zero_skips_gzip(tmp_path: Path):
    path, data = _masked_chunk_file(tmp_path)
    with h5py.File(path, "a") as root:
        # every bit but the gzip filter's set: inflated; bit 0 set: raw
        root["conv"].id.write_direct_chunk((2, 0, 0, 0), zlib.compress(data[2].tobytes()),
                                           filter_mask=0xFFFFFFFE)
        root["conv"].id.write_direct_chunk((3, 0, 0, 0), data[3].tobytes(), filter_mask=1)
    with h5py.File(path, "r") as root:
        np.testing.assert_array_equal(root["conv"][()], data)
    with open_act(path) as acts:
        assert acts["conv"].values.tobytes() == data.tobytes()


def fletcher32(data: bytes) -> bytes:
    """HDF5's Fletcher-32 of ``data`` as its filter appends it (H5checksum.c, line by line)."""
    sum1 = sum2 = 0
    words = len(data) // 2
    at = 0
    while words:
        block = min(words, 360)
        words -= block
        for _ in range(block):
            sum1 += (data[at] << 8) | data[at + 1]
            at += 2
            sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    if len(data) % 2:
        sum1 += data[at] << 8
        sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    return ((sum2 << 16) | sum1).to_bytes(4, "little")


#: Pipelines the chunk reader decodes besides gzip alone: h5py's options.
PIPELINES = {"shuffle-gzip": {"shuffle": True}, "gzip-fletcher32": {"fletcher32": True},
             "shuffle-gzip-fletcher32": {"shuffle": True, "fletcher32": True}}


def _encode(values: np.ndarray, options: dict, mask: int) -> bytes:
    """Encode one chunk as HDF5's pipeline would, skipping the filters ``mask`` names."""
    data, bit = values.tobytes(), 1
    if options.get("shuffle"):
        if not mask & bit:  # the k-th bytes of all values together
            data = values.view("u1").reshape(-1, values.dtype.itemsize).T.tobytes()
        bit <<= 1
    if not mask & bit:
        data = zlib.compress(data)
    bit <<= 1
    if options.get("fletcher32") and not mask & bit:
        data += fletcher32(data)
    return data


@pytest.mark.sweep
@pytest.mark.parametrize("dtype", ["f4", ">f8", "i1", "f2"])
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_chunks_of_other_gzip_pipelines_are_decoded_as_hdf5_decodes_them_mask_bit_by_bit(
        pipeline: str, dtype: str, tmp_path: Path):
    options = PIPELINES[pipeline]
    data = np.random.default_rng(2).integers(0, 100, SHAPE).astype(dtype)
    path = tmp_path / "piped.act.h5"
    with h5py.File(path, "w") as root:
        layer = root.create_dataset("conv", data=data, chunks=CHUNKS, compression="gzip",
                                    **options)
        n_filters = 1 + len(options)
        for stimulus, mask in enumerate([1, 2, (1 << n_filters) - 1, 0xFFFFFFFF << n_filters]):
            layer.id.write_direct_chunk((stimulus, 0, 0, 0),
                                        _encode(data[stimulus], options, mask),
                                        filter_mask=mask & 0xFFFFFFFF)
    with h5py.File(path, "r") as root:  # what HDF5 decodes is the reference
        expected = root["conv"][()]
    np.testing.assert_array_equal(expected, data)
    for how in ("values", "dask-threads"):
        got = _lazy_read(path, "conv", how)
        assert (got.dtype, got.tobytes()) == (expected.dtype, expected.tobytes()), how
    done = _run("command", path, ("-layer", "conv", "-chn", "2", "1"), tmp_path / "o.act.h5")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    with h5py.File(tmp_path / "o.act.h5", "r") as root:
        assert layer_dataset(root, "conv")[()].tobytes() == expected[:, [1, 0]].tobytes()


@pytest.mark.parametrize("how", ["values", "dask-threads", "command"])
def test_a_chunk_whose_checksum_differs_is_refused_in_one_line(how: str, tmp_path: Path):
    data = np.random.default_rng(3).integers(0, 100, SHAPE).astype("f4")
    path = tmp_path / "damaged.act.h5"
    with h5py.File(path, "w") as root:
        layer = root.create_dataset("conv", data=data, chunks=CHUNKS, compression="gzip",
                                    fletcher32=True)
        stored = bytearray(layer.id.read_direct_chunk((2, 0, 0, 0))[1])
        stored[-1] ^= 0xFF  # the checksum's last byte: the stream still inflates
        layer.id.write_direct_chunk((2, 0, 0, 0), bytes(stored))
    with h5py.File(path, "r") as root, pytest.raises(OSError):
        root["conv"][()]  # HDF5 refuses it too
    error = (r"damaged\.act\.h5'?: cannot read layer 'conv' \(damaged chunk: fletcher32 "
             r"checksum does not match the chunk\)$")
    if how == "command":
        _assert_the_command_refuses(path, error, tmp_path / "o.nc")
    else:
        with pytest.raises(ActFileError, match=error):
            _lazy_read(path, "conv", how)


@pytest.mark.parametrize("route", ["command", "save_act"])
def test_a_partial_edge_chunk_that_does_not_decode_is_never_copied_as_it_is(
        route: str, tmp_path: Path):
    # HDF5 stores partial edge chunks unfiltered, under filter mask 0, when a layer is
    # made with H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS (which h5py can neither set nor
    # ask about); copied as stored into a plain gzip layer, no reader could open them
    shape, chunks = (3, 8, 4, 4), (2, 8, 4, 4)  # stimulus 2 is in a partial chunk
    data = np.arange(np.prod(shape), dtype="f4").reshape(shape)
    path = tmp_path / "edge.act.h5"
    with h5py.File(path, "w") as root:
        layer = root.create_dataset("conv", data=data, chunks=chunks, compression="gzip")
        edge = np.zeros(chunks, "f4")
        edge[:1] = data[2:]
        layer.id.write_direct_chunk((2, 0, 0, 0), edge.tobytes(), filter_mask=0)
    out = tmp_path / "o.nc"
    if route == "command":
        done = _run("command", path, ("-layer", "conv"), out)
        assert done.returncode == 1, done.stderr
        stderr = done.stderr
    else:
        with open_act(path) as acts, pytest.raises(ActFileError) as err:
            save_act(acts, out)
        stderr = f"dnn_mask: error: {err.value}\n"
    assert_one_line_error(stderr, r"edge\.act\.h5'?: cannot read layer 'conv' \(damaged chunk")
    assert not out.exists()


# -- 2. fill time "never" ---------------------------------------------------------------------


def _fill_never_file(folder: Path, written: bool = False) -> Path:
    """A gzip layer with fill value 7 and fill time never; only its first chunk is written."""
    path = folder / "never.act.h5"
    with h5py.File(path, "w") as root:
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_chunk(CHUNKS)
        plist.set_deflate(4)
        plist.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        plist.set_fill_value(np.array(7, dtype="f4"))
        space = h5py.h5s.create_simple(SHAPE)
        h5py.h5d.create(root.id, b"conv", h5py.h5t.IEEE_F32LE, space, plist)
        values = np.arange(np.prod(SHAPE), dtype="f4").reshape(SHAPE)
        root["conv"][:SHAPE[0] if written else 1] = values[:SHAPE[0] if written else 1]
    return path


NEVER_ERROR = (r"never\.act\.h5'?: layer 'conv': the chunk at \([1-3], 0, 0, 0\) was never "
               r"written and the layer's fill time is 'never' \(HDF5 leaves such chunks unset\), "
               r"so it holds no values$")


@pytest.mark.parametrize("flags", [("-layer", "conv"), ("-layer", "conv", "-chn", "2", "1")],
                         ids=" ".join)
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("route", READ_ROUTES)
def test_chunks_never_written_with_fill_time_never_are_refused_on_every_write_route(
        route: str, suffix: str, flags: tuple[str, ...], tmp_path: Path):
    path = _fill_never_file(tmp_path)
    outs = tmp_path / "out"
    outs.mkdir()
    done = _run(route, path, flags, outs / f"o{suffix}")
    assert done.returncode == 1, done.stderr
    assert_one_line_error(done.stderr, NEVER_ERROR)
    assert list(outs.iterdir()) == []


@pytest.mark.sweep
@pytest.mark.parametrize("how", LAZY)
def test_chunks_never_written_with_fill_time_never_are_refused_by_lazy_reads(
        how: str, tmp_path: Path):
    path = _fill_never_file(tmp_path)
    with pytest.raises(ActFileError, match=NEVER_ERROR):
        _lazy_read(path, "conv", how)
    # the chunk that was written reads as h5py reads it
    with h5py.File(path, "r") as root:
        np.testing.assert_array_equal(_lazy_read(path, "conv", how, (0,)), root["conv"][0])


#: Layers HDF5 decodes (the chunk reader does not): h5py's storage options.
HDF5_DECODED_KINDS = {
    "lzf": {"chunks": CHUNKS, "compression": "lzf"},
    "fletcher32": {"chunks": CHUNKS, "fletcher32": True},
    "unfiltered": {"chunks": CHUNKS},
    "contiguous": {},
}


@pytest.mark.parametrize("how", ["values", "dask-threads", "command"])
@pytest.mark.parametrize("kind", HDF5_DECODED_KINDS)
def test_a_layer_hdf5_decodes_with_parts_never_written_and_unset_is_refused_whole(
        kind: str, how: str, tmp_path: Path):
    path = tmp_path / "never.act.h5"
    with h5py.File(path, "w") as root:
        layer = root.create_dataset("conv", SHAPE, "f4", fillvalue=7, fill_time="never",
                                    **HDF5_DECODED_KINDS[kind])
        if kind != "contiguous":  # (one written would allocate it all)
            layer[0] = 1
    where = "the chunk at (1, 0, 0, 0) was" if kind != "contiguous" else "was"
    error = (rf"never\.act\.h5'?: layer 'conv':? {re.escape(where)} never written and the "
             r"layer's fill time is 'never' \(HDF5 leaves such chunks unset\), so it holds no "
             r"values$")
    if how == "command":
        _assert_the_command_refuses(path, error, tmp_path / "o.nc")
        return
    for key in ((), (0,)):  # refused whole, the written part too
        with pytest.raises(ActFileError, match=error):
            _lazy_read(path, "conv", how, key)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_layer_with_fill_time_never_and_every_chunk_written_is_copied_exactly(
        suffix: str, tmp_path: Path):
    path = _fill_never_file(tmp_path, written=True)
    out = tmp_path / f"out{suffix}"
    done = _run("command", path, ("-layer", "conv"), out)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    with h5py.File(path, "r") as source, h5py.File(out, "r") as copy:
        assert layer_dataset(copy, "conv")[()].tobytes() == source["conv"][()].tobytes()


@pytest.mark.parametrize("route", ["command", "save_act"])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_chunks_never_written_keep_a_negative_zero_fill_value_bit_for_bit(
        route: str, suffix: str, tmp_path: Path):
    path = tmp_path / "zero.act.h5"
    with h5py.File(path, "w") as root:
        layer = root.create_dataset("conv", SHAPE, "f4", chunks=CHUNKS, compression="gzip",
                                    fillvalue=-0.0)
        layer[0] = 1  # the other chunks are never written: they read as -0.0
        expected = layer[()]
    assert np.signbit(expected[1:]).all()
    out = tmp_path / f"out{suffix}"
    if route == "command":
        done = _run("command", path, ("-layer", "conv"), out)
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
    else:
        with open_act(path) as acts:
            save_act(acts, out)
    with h5py.File(out, "r") as root:  # -0.0 == 0.0: compared as bytes
        assert layer_dataset(root, "conv")[()].tobytes() == expected.tobytes()


# -- 11. inflating stops at the chunk's size --------------------------------------------------

BOMB_SHAPE = (2, 256, 32, 32)
BOMB_CHUNKS = (1, 256, 32, 32)  # 1 MiB
BOMB_BYTES = 512 * 2**20


#: Pipelines whose gzip streams the chunk reader inflates, as h5py's options.
BOMB_PIPELINES = {"gzip": {}, "shuffle-gzip": {"shuffle": True},
                  "gzip-fletcher32": {"fletcher32": True}}


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> Callable[[str], tuple[Path, Path]]:
    """Make, once per pipeline, a layer whose second chunk's stream inflates to 512 MiB,
    and a good file of its shape.

    Behind a byte shuffle or before a checksum too: HDF5 would inflate such a
    stream whole.
    """
    packer = zlib.compressobj(9)
    zeros = bytes(16 * 2**20)
    stream = b"".join(packer.compress(zeros) for _ in range(BOMB_BYTES // len(zeros)))
    stream += packer.flush()
    made: dict[str, tuple[Path, Path]] = {}

    def bomb(pipeline: str) -> tuple[Path, Path]:
        if pipeline in made:
            return made[pipeline]
        folder = tmp_path_factory.mktemp(pipeline)
        options = BOMB_PIPELINES[pipeline]
        paths = []
        for name, second in (("bomb.act.h5", stream), ("good.act.h5", None)):
            path = folder / name
            with h5py.File(path, "w") as root:
                layer = root.create_dataset("conv", data=np.ones(BOMB_SHAPE, "f4"),
                                            chunks=BOMB_CHUNKS, compression="gzip", **options)
                if second is not None:
                    if options.get("fletcher32"):
                        second += fletcher32(second)
                    layer.id.write_direct_chunk((1, 0, 0, 0), second)
            paths.append(path)
        made[pipeline] = (paths[0], paths[1])
        return made[pipeline]
    return bomb


def _peak_rss(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` to its end; give its peak resident size in bytes and its stderr."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # os.wait4 gives this child's own peak, not the largest of every child's
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    assert proc.returncode in (0, 1), stderr
    return usage.ru_maxrss * 1024, stderr


_LAZY_CHILD = textwrap.dedent("""
    import sys
    import dnnmask_xr as dx
    path, how, memory = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with dx.set_options(read_memory=memory), dx.open_act(
            path, chunks=None if how == "values" else {"channel": 1}) as acts:
        layer = acts["conv"][:, :1]
        try:
            layer.values if how == "values" else layer.data.compute(scheduler="threads")
        except dx.DnnMaskError as err:
            sys.exit(f"dnn_mask: error: {err}")
""")


def _lazy_child(path: Path, how: str, memory: int) -> list[str]:
    return [sys.executable, "-c", _LAZY_CHILD, str(path), how, str(memory)]


def _out(path: Path, suffix: str) -> Path:
    return path.with_name(f"{path.name.split('.')[0]}-out{suffix}")


BOMB_RUNS = {
    "dnn_mask-chn": lambda path: command("-act", path, "-layer", "conv", "-chn", "2", "1",
                                         "--memory", "16M", "-out", _out(path, ".act.h5")),
    "dnn_mask-verify": lambda path: command("-act", path, "-layer", "conv", "--verify",
                                            "--memory", "16M",
                                            "-out", _out(path, ".nc")),
    "values": lambda path: _lazy_child(path, "values", 2**21),
    "dask": lambda path: _lazy_child(path, "dask", 2**21),
}


@pytest.mark.reliability
@pytest.mark.parametrize(("pipeline", "run"), [
    *(("gzip", run) for run in BOMB_RUNS),
    *((pipeline, run) for pipeline in ("shuffle-gzip", "gzip-fletcher32")
      for run in ("dnn_mask-chn", "values"))])
def test_a_chunk_that_inflates_past_its_size_is_refused_within_memory(
        pipeline: str, run: str, bombs: Callable[[str], tuple[Path, Path]]):
    bad, good = bombs(pipeline)
    baseline, stderr = _peak_rss(BOMB_RUNS[run](good))
    assert stderr == ""
    peak, stderr = _peak_rss(BOMB_RUNS[run](bad))
    assert_one_line_error(stderr, r"bomb\.act\.h5'?: cannot read layer 'conv' \(damaged chunk: "
                                  r"chunk holds more than the 1048576 bytes expected\)")
    # the good run inflates the same chunks; the bomb may not add a chunk's worth
    assert peak - baseline < 2**20 + 8 * 2**20, (peak, baseline)
    assert not _out(bad, ".act.h5").exists() and not _out(bad, ".nc").exists()


def test_inflate_takes_exactly_the_chunk_and_refuses_anything_else():
    from dnnmask_xr.act.codec import CodecError, inflate

    raw = np.arange(3000, dtype="f4").tobytes()
    stream = zlib.compress(raw)
    assert inflate(stream, len(raw)) == raw
    assert inflate(stream + b"\0" * 40, len(raw)) == raw  # HDF5 stops at the stream's end
    for data, size, why in [(stream, len(raw) - 1, "more than"), (stream, len(raw) + 1, "holds"),
                            (stream[:-4], len(raw), "does not end"),
                            (stream[:100], len(raw), "ends after")]:
        with pytest.raises(CodecError, match=why):
            inflate(data, size)


# -- 12. lazy reads and read_memory -----------------------------------------------------------

BIG_SHAPE = (1, 8192, 32, 32)  # one chunk of 32 MiB


@pytest.fixture(scope="module")
def big_chunks(tmp_path_factory) -> Path:
    """Layers of one 32 MiB chunk each: gzip, lzf; and a contiguous one."""
    path = tmp_path_factory.mktemp("big-chunks") / "big.act.h5"
    values = np.zeros(BIG_SHAPE, "f4")
    values[0, :, 0, 0] = np.arange(BIG_SHAPE[1])
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", data=values, chunks=BIG_SHAPE, compression="gzip")
        root.create_dataset("lzf", data=values, chunks=BIG_SHAPE, compression="lzf")
        root.create_dataset("plain", data=values)
        root.create_dataset("unfiltered", data=values, chunks=BIG_SHAPE)
    return path


BUDGET_ERROR = (r"big\.act\.h5'?: layer '{}' is stored in chunks of 32\.0 MiB "
                r"\(shape \(1, 8192, 32, 32\)\), each read whole; reading them needs read_memory "
                r"of at least 64\.0 MiB \(dx\.set_options\(read_memory=67108864\)\), more than "
                r"the 2\.0 MiB set$")


# set_options holds for this process: dask's process workers read with their own
@pytest.mark.parametrize("how", ["values", "dask-threads"])
@pytest.mark.parametrize("name", ["conv", "lzf"])
def test_a_read_of_chunks_beyond_read_memory_is_refused_in_one_line(
        name: str, how: str, big_chunks: Path):
    with set_options(read_memory=2**21), pytest.raises(ActFileError,
                                                       match=BUDGET_ERROR.format(name)):
        _lazy_read(big_chunks, name, how, (0, 5))


@pytest.mark.reliability
@pytest.mark.parametrize("how", LAZY)
@pytest.mark.parametrize("name", ["plain", "unfiltered"])
def test_layers_hdf5_reads_in_any_box_are_read_within_read_memory(
        name: str, how: str, big_chunks: Path):
    with h5py.File(big_chunks, "r") as root:
        expected = root[name][0, 3:5000:7]
    with set_options(read_memory=2**16):
        got = _lazy_read(big_chunks, name, how, (0, slice(3, 5000, 7)))
    assert got.tobytes() == expected.tobytes()


_ONE_ROW_CHILD = textwrap.dedent("""
    import resource, sys
    import dnnmask_xr as dx
    path, name, how = sys.argv[1], sys.argv[2], sys.argv[3]
    with dx.set_options(read_memory=2**21), dx.open_act(
            path, chunks=None if how == "values" else {"channel": 1}) as acts:
        row = acts[name][0, 5, 0]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            row.values if how == "values" else row.data.compute(scheduler="threads")
        except dx.DnnMaskError as err:
            print(f"refused: {err}", file=sys.stderr)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024)
""")


@pytest.mark.reliability
@pytest.mark.parametrize("how", ["values", "dask"])
@pytest.mark.parametrize("name", ["conv", "lzf", "plain", "unfiltered"])
def test_reading_a_row_under_a_small_read_memory_stays_within_it(
        name: str, how: str, big_chunks: Path):
    done = subprocess.run([sys.executable, "-c", _ONE_ROW_CHILD, str(big_chunks), name, how],
                          capture_output=True, text=True, check=True)
    grown = int(done.stdout)
    assert grown < 4 * 2**20, f"the read grew the process by {grown} bytes"
    assert done.stderr.startswith("refused: ") == (name in ("conv", "lzf")), done.stderr


# -- 15. strided selections of layers HDF5 decodes --------------------------------------------

STRIDED_SHAPE = (4, 24, 10, 12)
HDF5_DECODED = {
    "contiguous": {},
    "chunked": {"chunks": (1, 5, 4, 5)},
    "lzf": {"chunks": (2, 5, 4, 5), "compression": "lzf"},
    "fletcher32": {"chunks": (2, 5, 4, 5), "fletcher32": True},
    "scale-offset-gzip": {"chunks": (2, 5, 4, 5), "compression": "gzip", "scaleoffset": 0},
    "scale-offset": {"chunks": (2, 5, 4, 5), "scaleoffset": 0},
}


@pytest.fixture(scope="module")
def decoded(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """One layer per storage kind HDF5 decodes, and what h5py reads of each."""
    path = tmp_path_factory.mktemp("decoded") / "decoded.act.h5"
    values = np.random.default_rng(15).integers(-1000, 1000, STRIDED_SHAPE).astype("i4")
    with h5py.File(path, "w") as root:
        for name, options in HDF5_DECODED.items():
            root.create_dataset(name, data=values, **options)
        read = {name: root[name][()] for name in HDF5_DECODED}
    return path, read


def _axis_key(size: int) -> st.SearchStrategy:
    slices = st.builds(slice, st.integers(0, size - 1) | st.none(),
                       st.integers(0, size) | st.none(), st.integers(1, 5))
    arrays = st.lists(st.integers(0, size - 1), min_size=1, max_size=size).map(np.array)
    return slices | arrays | st.integers(0, size - 1)


@settings(max_examples=examples(60), deadline=None)
@given(key=st.tuples(*(_axis_key(size) for size in STRIDED_SHAPE)),
       memory=st.sampled_from([2**11, 2**13, 2**20]))
def test_strided_keys_read_what_h5py_reads_on_every_storage_kind(decoded, key, memory):
    path, read = decoded
    with set_options(read_memory=memory), open_act(path) as acts:
        for name, values in read.items():
            got = acts[name].isel(dict(zip(acts[name].dims, key, strict=True))).values
            # orthogonal indexing, as xarray's isel means it
            expected = values[np.ix_(*(np.atleast_1d(np.arange(size)[item])
                                       for item, size in zip(key, values.shape, strict=True)))]
            expected = expected.reshape(got.shape)
            assert got.tobytes() == expected.tobytes(), name


@pytest.fixture
def hdf5_reads(monkeypatch) -> list[tuple[slice, ...]]:
    """Record every box the chunk reader has HDF5 read (and decode)."""
    seen: list[tuple[slice, ...]] = []
    real = dnnmask_xr.act.chunk_read.read_box

    def counting(source: h5py.Dataset, box: tuple[slice, ...], out=None) -> np.ndarray:
        seen.append(box)
        return real(source, box, out)

    monkeypatch.setattr(dnnmask_xr.act.chunk_read, "read_box", counting)
    monkeypatch.setattr(dnnmask_xr.xarray_.array, "read_box", counting)
    return seen


def _chunks_touched(key: tuple[slice, ...], shape: tuple[int, ...],
                    chunks: tuple[int, ...]) -> int:
    return int(np.prod([np.unique(np.arange(size)[item] // step).size
                        for item, size, step in zip(key, shape, chunks, strict=True)]))


@pytest.mark.parametrize("name", [name for name in HDF5_DECODED if name != "contiguous"])
def test_a_strided_read_is_one_hdf5_call_per_chunk_touched(
        name: str, decoded: tuple[Path, dict[str, np.ndarray]], hdf5_reads: list):
    path, read = decoded
    every_other = (slice(None, None, 2),) * 4
    with open_act(path) as acts:
        got = acts[name][every_other].values
    assert got.tobytes() == read[name][every_other].tobytes()
    chunks = HDF5_DECODED[name]["chunks"]
    assert len(hdf5_reads) == _chunks_touched(every_other, STRIDED_SHAPE, chunks)


@pytest.mark.parametrize("key", [(), (slice(1, 3), slice(2, 10), 4)], ids=["whole", "box"])
@pytest.mark.parametrize("name", list(HDF5_DECODED))
def test_a_read_of_one_box_is_one_hdf5_call(
        name: str, key: tuple, decoded: tuple[Path, dict[str, np.ndarray]], hdf5_reads: list):
    path, read = decoded
    with open_act(path) as acts:
        got = acts[name][key].values
    assert got.tobytes() == read[name][key].tobytes()
    assert len(hdf5_reads) == 1


def test_evenly_spaced_positions_of_a_contiguous_layer_are_one_hdf5_call(
        decoded: tuple[Path, dict[str, np.ndarray]], hdf5_reads: list):
    path, read = decoded
    every_other = (slice(None, None, 2),) * 4
    with open_act(path) as acts:
        got = acts["contiguous"][every_other].values
    assert got.tobytes() == read["contiguous"][every_other].tobytes()
    assert hdf5_reads == [(slice(0, 3, 2), slice(0, 23, 2), slice(0, 9, 2), slice(0, 11, 2))]


def test_scattered_positions_of_a_contiguous_layer_are_read_in_boxes_within_read_memory(
        decoded: tuple[Path, dict[str, np.ndarray]], hdf5_reads: list):
    path, read = decoded
    key = ([0, 2, 3], [1, 2, 7, 20], slice(None, None, 2), slice(None))
    with set_options(read_memory=2 * 24 * 10 * 12 * 4), open_act(path) as acts:
        got = acts["contiguous"].isel(stimulus=key[0], channel=key[1], row=key[2]).values
    expected = read["contiguous"][key[0]][:, key[1]][:, :, key[2]]
    assert got.tobytes() == expected.tobytes()
    # boxes of one stimulus each (what read_memory holds twice), three touched,
    # each read for the part the selection spans
    assert hdf5_reads == [(slice(s, s + 1), slice(1, 21), slice(0, 9), slice(0, 12))
                          for s in (0, 2, 3)]


def test_a_large_strided_read_takes_one_call_per_chunk_whatever_its_runs(
        tmp_path: Path, hdf5_reads: list):
    # 128 * 28 * 28 runs of one value: the old reader built 100 352 hyperslabs
    shape = (2, 256, 56, 56)
    values = np.random.default_rng(3).standard_normal(shape).astype("f4")
    path = tmp_path / "wide.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("lzf", data=values, chunks=(1, 64, 56, 56), compression="lzf")
    key = (slice(None), slice(None, None, 2), slice(None, None, 2), slice(None, None, 2))
    with open_act(path) as acts:
        got = acts["lzf"][key].values
    assert got.tobytes() == values[key].tobytes()
    assert len(hdf5_reads) == 2 * 4


@settings(max_examples=examples(40), deadline=None)
@given(data=st.one_of(st.binary(min_size=1, max_size=3000),
                      st.integers(1, 3000).map(lambda n: bytes(n)),
                      st.integers(1, 3000).map(lambda n: b"\xff" * n)))
def test_fletcher32_is_checked_as_hdf5_computes_it(data: bytes, tmp_path_factory):
    # HDF5 writes the checksum; the sums' edge cases are all zeros (a sum of 0) and
    # all 0xff (multiples of 65535, which HDF5 keeps as 65535)
    path = tmp_path_factory.mktemp("fletcher") / "f.h5"
    with h5py.File(path, "w") as root:
        dataset = root.create_dataset("x", data=np.frombuffer(data, "u1"), chunks=(len(data),),
                                      fletcher32=True)
        stored = dataset.id.read_direct_chunk((0,))[1]
    assert stored[:-4] == data
    assert dnnmask_xr.act.codec.unchecksum(stored) == data
    damaged = bytes([stored[0] ^ 1]) + stored[1:]  # one bit of the values
    with pytest.raises(zlib.error, match="fletcher32 checksum does not match"):
        dnnmask_xr.act.codec.unchecksum(damaged)
