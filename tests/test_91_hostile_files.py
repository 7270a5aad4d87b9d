"""Hostile ``.act.h5`` files: each works exactly or fails in one line.

A file either gives exactly the values h5py (DNNBrain's reader) finds in
it, through ``open_act`` and through ``dnn_mask``, compared bit for bit, or
``dnn_mask`` exits with status 1 and one ``dnn_mask: error:`` line naming
the file (and the layer, where one is at fault), leaving nothing behind.
Never a traceback, a hang or other values.

- Damaged files (cut at seeded random offsets, seeded random bytes flipped
  or overwritten) run in a child process with a timeout, since a damaged
  file could crash or hang HDF5 itself.
- Odd structures: groups, scalar, 2-D, 5-D, string, compound and empty
  datasets, links to nowhere, layers that disagree on the stimuli.
- Odd but valid files: empty (0-stimulus) layers, layer names with dots,
  spaces and non-ASCII letters, every integer and float dtype, big-endian
  values, other filters, and NaN, infinities, signed zeros and extreme
  values, which pass through unchanged.

Every write runs through every route (``dnn_mask``, ``mask_file``, and
``save_act`` of ``Activations``, a dict and a ``DataTree``: ``tests/routes.py``,
which reports the project's errors as the command does) and to both suffixes
(``.act.h5``, ``.nc``): the damaged input is the same, the reading and the
output's layout differ. ``open_act`` itself is checked once per damaged file.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import digest, grid_cases, sampled
from reliability import (
    MASKED_TEXT,
    ROUTES,
    SUFFIXES,
    assert_one_line_error,
    computed_once,
    layer_dataset,
    layer_names,
    run_cli,
    run_in_children,
)
from routes import READ_ROUTES, run

from dnnmask_xr import open_act
from dnnmask_xr.testing import relu_activations, write_reference_act

pytestmark = pytest.mark.reliability


# -- damaged files ----------------------------------------------------------------------


def _damaged_cases() -> list[tuple[str, Callable[[bytes], bytes]]]:
    rng = np.random.default_rng(91)
    cases: list[tuple[str, Callable[[bytes], bytes]]] = []
    size = len(_base_bytes())
    cuts = [0, 7, 100, 800, size // 2, size - 1, *rng.integers(1, size, 8).tolist()]
    for cut in sorted(set(cuts)):
        cases.append((f"cut-at-{cut}", lambda data, cut=cut: data[:cut]))
    # half the flips fall in the first 2 KiB, where the metadata lives
    for i in range(16):
        end = 2048 if i % 2 == 0 else size
        where = sorted(rng.choice(end, size=1 + i % 3, replace=False).tolist())
        masks = rng.integers(1, 256, len(where)).tolist()

        def flip(data: bytes, where=where, masks=masks) -> bytes:
            out = bytearray(data)
            for at, mask in zip(where, masks, strict=True):
                out[at] ^= mask
            return bytes(out)

        cases.append((f"flip-{'-'.join(map(str, where))}", flip))
    for i in range(4):
        at = int(rng.integers(0, size - 64))
        junk = rng.bytes(64)
        cases.append((f"overwrite-64-at-{at}-{i}",
                      lambda data, at=at, junk=junk: data[:at] + junk + data[at + 64:]))
    return cases


@functools.cache
def _base_bytes() -> bytes:
    """A small file as DNNBrain writes one, with the root attributes older versions set."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "base.act.h5"
        layers = relu_activations(5, {"conv5": (20, 6, 7), "fc3": (12, 1, 1)}, seed=91)
        write_reference_act(path, layers,
                            attrs={"title": "activations", "cmd": "dnn_act", "date": "today"})
        return path.read_bytes()


#: Every case; half of them under the quick profile (.ci/run's lowest versions).
DAMAGED = sampled(_damaged_cases(), share=2)
#: Every route writes every damaged input to both suffixes (each to one under the quick
#: profile): (route, suffix).
WRITES = grid_cases(ROUTES, SUFFIXES)
WRITE_IDS = [f"{route}-{suffix}" for route, suffix in WRITES]
#: Run a test for every route (tests/routes.py) and output suffix, ids like save_act-dict-.nc.
every_write = pytest.mark.parametrize(("route", "suffix"), WRITES, ids=WRITE_IDS)


@pytest.fixture(scope="module")
def damaged_verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every damaged case through every route and suffix, once for all xdist workers."""
    return computed_once(tmp_path_factory, "damaged", _damaged_verdicts)


def _damaged_verdicts(root: Path) -> dict[str, dict]:
    """Write every damaged case through every route and suffix in two child processes."""
    cases = []
    for name, damage in DAMAGED:
        folder = root / name
        folder.mkdir()
        path = folder / "bad.act.h5"
        path.write_bytes(damage(_base_bytes()))
        dmask = folder / "m.dmask.csv"
        dmask.write_text(MASKED_TEXT)
        cases.append({"id": name, "path": str(path), "dmask": str(dmask),
                      "digest": digest(path)})
    verdicts = run_in_children(
        [[sys.executable, "-c", "import reliability; reliability.check_damaged()",
          json.dumps(half), json.dumps(WRITES)] for half in (cases[0::2], cases[1::2])])
    for case in cases:
        verdicts.setdefault(case["id"], {"not run": True})
        verdicts[case["id"]]["input_unchanged"] = digest(Path(case["path"])) == case["digest"]
        verdicts[case["id"]]["path"] = case["path"]
    return verdicts


@pytest.mark.parametrize("case", [name for name, _ in DAMAGED])
@every_write
def test_damaged_file_fails_in_one_line_or_gives_what_h5py_reads(
    damaged_verdicts, route: str, suffix: str, case: str
):
    verdict = damaged_verdicts[case]
    assert "crashed" not in verdict, f"the child crashed or hung on this case: {verdict}"
    assert "not run" not in verdict, "the child stopped before this case"
    assert verdict["input_unchanged"]
    assert f"{route}{suffix}" in verdict, "the child stopped before this route"
    for run_name, result in verdict[f"{route}{suffix}"].items():
        assert result["traceback"] is None, result["traceback"]
        if result["status"] == 0 and run_name == "copied" and not result["reference_readable"]:
            # an unverified copy of whole layers does not decode the chunks: a
            # damaged chunk is copied byte for byte, and fails where the input does
            assert result["same_chunks"], f"{run_name}: the copy differs from the damaged input"
            assert result["stderr"] == ""
        elif result["status"] == 0:
            # accepted: then it must hold exactly what the damaged file says
            assert result["reference_readable"], f"{run_name}: h5py cannot read it, {route} did"
            assert result["values_match"], f"{run_name}: values differ from h5py's"
            assert result["stderr"] == ""
        else:
            assert result["status"] == 1, result
            message = assert_one_line_error(result["stderr"])
            assert repr(verdict["path"]) in message or verdict["path"] in message, message
        assert result["left"] == [], f"{run_name} left {result['left']}"


@pytest.mark.parametrize("case", [name for name, _ in DAMAGED])
def test_damaged_file_reads_through_open_act_as_h5py_does_or_fails_in_one_line(
    damaged_verdicts, case: str
):
    verdict = damaged_verdicts[case]
    assert "open_act" in verdict, f"the child crashed or hung on this case: {verdict}"
    read = verdict["open_act"]
    assert read["traceback"] is None, read["traceback"]
    if read["error"] is None:
        assert read["values_match"], "open_act gives other values than h5py"
    else:
        assert verdict["path"] in read["error"] and "\n" not in read["error"], read["error"]


@every_write
def test_damaged_cases_include_both_outcomes(damaged_verdicts, route: str, suffix: str):
    """The cases are varied enough to reach both the error and the accepted path."""
    statuses = {v[f"{route}{suffix}"][run]["status"] for v in damaged_verdicts.values()
                if f"{route}{suffix}" in v for run in ("whole", "masked")}
    assert {0, 1} <= statuses


# -- odd structures: one-line errors -----------------------------------------------------


def _good(root: h5py.File) -> None:
    root.create_dataset("conv5", data=np.ones((2, 3, 2, 2), np.float32), compression="gzip")


STRUCTURES: dict[str, tuple[Callable[[h5py.File], object], str, list[str]]] = {
    "group": (lambda r: (_good(r), r.create_group("extra")), "extra", [r"is a group"]),
    "scalar": (lambda r: (_good(r), r.create_dataset("s", data=1.0)), "s", [r"0-D dataset"]),
    "2-d": (lambda r: r.create_dataset("fc", data=np.ones((2, 3), np.float32)), "fc",
            [r"2-D dataset", r"4-D"]),
    "5-d": (lambda r: r.create_dataset("fc", data=np.ones((2, 3, 1, 1, 1), np.float32)), "fc",
            [r"5-D dataset"]),
    "strings": (lambda r: r.create_dataset(
        "conv5", data=np.array([[[["a", "b"]]]], dtype=h5py.string_dtype())), "conv5",
        [r"numbers"]),
    "vlen": (lambda r: r.create_dataset("conv5", shape=(1, 1, 1, 2),
                                        dtype=h5py.vlen_dtype(np.float32)), "conv5",
             [r"numbers"]),
    "compound": (lambda r: r.create_dataset(
        "conv5", data=np.zeros((1, 1, 1, 2), dtype=[("a", "f4"), ("b", "i2")])), "conv5",
        [r"numbers"]),
    "null-dataspace": (lambda r: (_good(r), r.create_dataset("e", data=h5py.Empty("f4"))), "e",
                       [r"4-D"]),
    "dangling-soft-link": (lambda r: (_good(r), r.__setitem__("fc3", h5py.SoftLink("/none"))),
                           "fc3", []),
    "missing-external-file": (lambda r: (_good(r), r.__setitem__(
        "fc3", h5py.ExternalLink("missing.h5", "/x"))), "fc3", []),
    "stimuli-disagree": (lambda r: (_good(r), r.create_dataset(
        "fc3", data=np.ones((3, 4, 1, 1), np.float32))), "fc3", [r"different numbers of stimuli"]),
}


@pytest.mark.parametrize("case", list(STRUCTURES))
@every_write
def test_odd_structure_fails_in_one_line_naming_file_and_object(
    route: str, suffix: str, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    build, culprit, patterns = STRUCTURES[case]
    act = tmp_path / "odd.act.h5"
    with h5py.File(act, "w") as root:
        build(root)
    before = digest(act)
    out = tmp_path / f"out{suffix}"
    layer = "conv5" if culprit != "conv5" and case not in ("2-d", "5-d") else culprit
    assert run(route, ["-act", str(act), "-layer", layer, "-out", str(out)]) == 1
    captured = capsys.readouterr()
    message = assert_one_line_error(captured.err, re.escape(repr(str(act))),
                                    re.escape(repr(culprit)), *patterns)
    assert message[0].islower() or message[0] == "'"
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [act.name]
    assert digest(act) == before


@pytest.mark.parametrize("content", [b"", b"conv5=chn\n1\n", b"\x89HDF\r\n\x1a\n" + b"\0" * 64],
                         ids=["empty-file", "text-file", "signature-only"])
@every_write
def test_not_an_hdf5_file_fails_in_one_line(route: str, suffix: str, content: bytes,
                                            tmp_path: Path, capsys):
    act = tmp_path / "in.act.h5"
    act.write_bytes(content)
    out = tmp_path / f"o{suffix}"
    assert run(route, ["-act", str(act), "-layer", "conv5", "-out", str(out)]) == 1
    assert_one_line_error(capsys.readouterr().err, re.escape(repr(str(act))))
    assert [p.name for p in tmp_path.iterdir()] == [act.name]


# -- odd but valid files: exact values -------------------------------------------------


def _special_values(dtype: np.dtype, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random values of ``dtype`` with its extremes (and NaN, infinities, -0.0) mixed in."""
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape))
    wanted, dtype = dtype, dtype.newbyteorder("=")  # made native, swapped at the end
    if dtype.kind == "f":
        info = np.finfo(dtype)
        values = rng.standard_normal(count).astype(dtype)
        special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, info.max, info.min, info.tiny,
                            info.smallest_subnormal, -info.smallest_subnormal], dtype=dtype)
        # a NaN with a payload and the sign bit set: bits must survive, not just "NaN"
        odd_nan = np.array([np.nan], dtype=dtype)
        bits = odd_nan.view(f"u{dtype.itemsize}")
        bits |= np.array(1 | (1 << (8 * dtype.itemsize - 1)), dtype=bits.dtype)
        special = np.concatenate([special, odd_nan])
    elif dtype.kind == "c":
        values = (rng.standard_normal(count) + 1j * rng.standard_normal(count)).astype(dtype)
        special = np.array([complex(np.nan, 1), complex(np.inf, -np.inf), -0.0j], dtype=dtype)
    elif dtype.kind == "b":
        values = rng.integers(0, 2, count).astype(dtype)
        special = np.array([True, False], dtype=dtype)
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, count, dtype=dtype, endpoint=True)
        special = np.array([info.min, info.max, 0, 1], dtype=dtype)
    values[rng.choice(count, special.size, replace=False)] = special
    return values.reshape(shape).astype(wanted)


DTYPES = ["float16", "float32", "float64", ">f4", ">f8", "int8", "int16", "int32", "int64",
          ">i4", "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128"]


def _bits(array: np.ndarray) -> bytes:
    """The values' bits in native byte order, so big-endian files compare too."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("=")).tobytes()


def assert_bits_equal(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    assert (got.dtype.kind, got.dtype.itemsize) == (expected.dtype.kind, expected.dtype.itemsize)
    assert _bits(got) == _bits(expected)


#: What netCDF4 has no type for (float16, bool, complex): a .nc output refuses these layers.
NOT_NETCDF = {"f2", "b1", "c8", "c16"}
#: Every dtype through the command; through the Python routes, one of each kind, size and
#: byte order that takes another path (to keep the suite fast).
ROUTE_DTYPES = ["float16", ">f8", "int8", ">i4", "uint64", "bool", "complex64"]
DTYPE_WRITES = [(route, suffix, dtype) for route, suffix in WRITES
                for dtype in (DTYPES if route == "command" else ROUTE_DTYPES)]


@pytest.mark.parametrize(("route", "suffix", "dtype"), DTYPE_WRITES,
                         ids=[f"{r}-{s}-{d}" for r, s, d in DTYPE_WRITES])
def test_every_number_dtype_passes_through_bit_for_bit(route: str, suffix: str, dtype: str,
                                                       tmp_path: Path, capsys):
    values = _special_values(np.dtype(dtype), (4, 5, 3, 2), seed=len(dtype))
    fc = _special_values(np.dtype(dtype), (4, 6, 1, 1), seed=1)
    act = tmp_path / "in.act.h5"
    with h5py.File(act, "w") as root:
        root.create_dataset("conv", data=values, compression="gzip")
        root.create_dataset("fc", data=fc)
    with open_act(act) as acts:
        assert_bits_equal(acts["conv"].values, values)
        assert_bits_equal(acts["conv"].isel(channel=[4, 0], column=[1]).values,
                          values[:, [4, 0]][..., [1]])
    masked, whole = tmp_path / f"masked{suffix}", tmp_path / f"whole{suffix}"
    (tmp_path / "m.dmask.csv").write_text("conv=chn,col\n5,1,5\n2\nfc=row\n1\n")
    masking = ["-act", str(act), "-dmask", str(tmp_path / "m.dmask.csv"), "-out", str(masked)]
    copying = ["-act", str(act), "-layer", "conv", "fc", "-out", str(whole)]
    if suffix == ".nc" and np.dtype(dtype).str[1:] in NOT_NETCDF:
        # netCDF4 has no type for these values, whatever the route: refused, nothing written
        for argv in (masking, copying):
            assert run(route, argv) == 1
            assert_one_line_error(capsys.readouterr().err, r"layer 'conv' holds .* values, "
                                  r"which netCDF4 cannot store")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.act.h5", "m.dmask.csv"]
        return
    assert run(route, masking) == 0
    assert run(route, copying) == 0
    assert capsys.readouterr().err == ""
    with h5py.File(masked, "r") as root:
        assert_bits_equal(layer_dataset(root, "conv")[()], values[:, [4, 0, 4]][..., [1]])
        assert_bits_equal(layer_dataset(root, "fc")[()], fc)
    with h5py.File(whole, "r") as root:
        assert_bits_equal(layer_dataset(root, "conv")[()], values)
        assert_bits_equal(layer_dataset(root, "fc")[()], fc)


def _custom_float(path: Path, filters: str) -> np.ndarray:
    """A layer of 16-bit floats of bfloat16's layout, which h5py reads as float32."""
    stored = h5py.h5t.IEEE_F32LE.copy()
    stored.set_fields(15, 7, 8, 0, 7)
    stored.set_size(2)
    stored.set_ebias(127)
    values = np.random.default_rng(16).standard_normal((5, 4, 3, 3)).astype(np.float32)
    with h5py.File(path, "w") as root:
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        if filters != "contiguous":
            plist.set_chunk((2, 2, 2, 2))
        if filters == "gzip":
            plist.set_deflate(4)
        space = h5py.h5s.create_simple(values.shape)
        h5py.h5d.create(root.id, b"conv", stored, space, dcpl=plist).write(
            h5py.h5s.ALL, h5py.h5s.ALL, values)
        return root["conv"][()]


CUSTOM_FLOAT_RUNS = [(route, filters) for route in READ_ROUTES
                     for filters in ("chunked", "gzip", "contiguous")]


@pytest.mark.parametrize(("route", "filters"), CUSTOM_FLOAT_RUNS,
                         ids=[f"{route}-{filters}" for route, filters in CUSTOM_FLOAT_RUNS])
def test_a_narrower_stored_type_reads_as_h5py_reads_it(route: str, filters: str,
                                                       tmp_path: Path, capsys):
    # its chunks hold 2 bytes a value: taken for float32's 4, unfiltered ones were
    # refused as damaged ("gives the unfiltered chunk 32 bytes; it holds 64")
    act = tmp_path / "in.act.h5"
    values = _custom_float(act, filters)
    assert values.dtype == np.float32
    with open_act(act) as acts:
        assert_bits_equal(acts["conv"].values, values)
    out = tmp_path / "out.act.h5"
    assert run(route, ["-act", str(act), "-layer", "conv", "-chn", "3", "1",
                       "-out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    with h5py.File(out, "r") as root:
        assert_bits_equal(root["conv"][()], values[:, [2, 0]])


NAMES = ["features.3", "layer 4", "Schicht_ü", "层.卷积 5", "conv5.", ".hidden", "a,b", "1"]


@every_write
def test_layer_names_with_dots_spaces_and_unicode(route: str, suffix: str, tmp_path: Path,
                                                  capsys):
    layers = {name: _special_values(np.dtype("float32"), (3, 4, 2, 2), seed=i)
              for i, name in enumerate(NAMES)}
    act = tmp_path / "in.act.h5"
    write_reference_act(act, layers)
    with open_act(act) as acts:
        assert sorted(acts) == sorted(NAMES)
        for name, values in layers.items():
            assert_bits_equal(acts[name].values, values)
    whole = tmp_path / f"whole{suffix}"
    assert run(route, ["-act", str(act), "-layer", *NAMES, "-out", str(whole)]) == 0
    one = tmp_path / f"one{suffix}"
    assert run(route, ["-act", str(act), "-layer", "层.卷积 5", "-chn", "4", "2",
                       "-out", str(one)]) == 0
    # ',' cannot be in a .dmask.csv layer line's axes, but may be in its name
    dmask = tmp_path / "names.dmask.csv"
    dmask.write_text("".join(f"{name}=chn\n3\n" for name in NAMES if name != "a,b"),
                     encoding="utf-8")
    masked = tmp_path / f"masked{suffix}"
    assert run(route, ["-act", str(act), "-dmask", str(dmask), "-out", str(masked)]) == 0
    assert capsys.readouterr().err == ""
    with h5py.File(whole, "r") as w, h5py.File(one, "r") as o, h5py.File(masked, "r") as m:
        assert layer_names(w) == NAMES
        for name, values in layers.items():
            assert_bits_equal(layer_dataset(w, name)[()], values)
        assert layer_names(o) == ["层.卷积 5"]
        assert_bits_equal(layer_dataset(o, "层.卷积 5")[()], layers["层.卷积 5"][:, [3, 1]])
        assert sorted(layer_names(m)) == sorted(n for n in NAMES if n != "a,b")
        for name in layer_names(m):
            assert_bits_equal(layer_dataset(m, name)[()], layers[name][:, [2]])


@pytest.mark.parametrize("chunked", [False, True], ids=["contiguous", "gzip-resizable"])
@every_write
def test_empty_layers_of_zero_stimuli(route: str, suffix: str, chunked: bool, tmp_path: Path,
                                      capsys):
    act = tmp_path / "in.act.h5"
    with h5py.File(act, "w") as root:
        for name, shape in {"conv5": (0, 4, 3, 3), "fc3": (0, 6, 1, 1)}.items():
            if chunked:
                root.create_dataset(name, shape=shape, maxshape=(None, *shape[1:]),
                                    chunks=(1, *shape[1:]), dtype="f4", compression="gzip")
            else:
                root.create_dataset(name, shape=shape, dtype="f4")
    with open_act(act) as acts:
        assert acts["conv5"].shape == (0, 4, 3, 3)
        assert acts["conv5"].values.shape == (0, 4, 3, 3)
    out = tmp_path / f"out{suffix}"
    assert run(route, ["-act", str(act), "-layer", "conv5", "-chn", "4", "1",
                       "-out", str(out)]) == 0
    whole = tmp_path / f"whole{suffix}"
    assert run(route, ["-act", str(act), "-layer", "fc3", "conv5", "-out", str(whole)]) == 0
    assert capsys.readouterr().err == ""
    with h5py.File(out, "r") as root:
        conv5 = layer_dataset(root, "conv5")
        assert conv5.shape == (0, 2, 3, 3) and conv5.dtype == np.float32
    with h5py.File(whole, "r") as root:
        assert layer_names(root) == ["fc3", "conv5"]
        assert layer_dataset(root, "fc3").shape == (0, 6, 1, 1)
        assert layer_dataset(root, "conv5").shape == (0, 4, 3, 3)
    with open_act(out) as acts:
        np.testing.assert_array_equal(acts["conv5"].channel.values, [4, 1])


FILTERS = {
    "shuffle-gzip-9-fletcher32": dict(compression="gzip", compression_opts=9, shuffle=True,
                                      fletcher32=True),
    "lzf": dict(compression="lzf"),
    "odd-chunks": dict(chunks=(3, 1, 2, 5), compression="gzip"),
    "scaleoffset-integers": dict(scaleoffset=0),
}


@pytest.mark.parametrize("case", list(FILTERS))
@every_write
def test_other_filters_and_chunks_read_exactly(route: str, suffix: str, case: str,
                                               tmp_path: Path, capsys):
    dtype = "int32" if "integers" in case else "float32"
    values = _special_values(np.dtype(dtype), (7, 5, 4, 5), seed=3)
    if dtype == "int32":
        values //= 4  # scale-offset packs the range of values it finds
    act = tmp_path / "in.act.h5"
    with h5py.File(act, "w") as root:
        root.create_dataset("conv", data=values, **FILTERS[case])
    out = tmp_path / f"out{suffix}"
    assert run(route, ["-act", str(act), "-layer", "conv", "-chn", "5", "2",
                       "-out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    with h5py.File(out, "r") as root:
        assert_bits_equal(layer_dataset(root, "conv")[()], values[:, [4, 1]])
    with open_act(act) as acts:
        assert_bits_equal(acts["conv"].values, values)


@every_write
def test_a_damaged_chunk_fails_in_one_line_naming_the_layer(route: str, suffix: str,
                                                            tmp_path: Path, capsys):
    """A flipped byte inside one layer's compressed data, found by its chunk address."""
    act = tmp_path / "in.act.h5"
    layers = relu_activations(6, {"conv5": (8, 5, 5), "fc3": (10, 1, 1)}, seed=4)
    write_reference_act(act, layers)
    with h5py.File(act, "r") as root:
        info = root["conv5"].id.get_chunk_info(0)
    data = bytearray(act.read_bytes())
    data[info.byte_offset + info.size // 2] ^= 0xFF
    act.write_bytes(bytes(data))
    # whole layers are checked with --verify; without it their chunks are copied
    # as they are (test_damaged_file_fails_in_one_line_or_gives_what_h5py_reads)
    for flags in (["-layer", "conv5", "--verify"], ["-layer", "conv5", "-chn", "1"]):
        out = tmp_path / f"out{suffix}"
        assert run(route, ["-act", str(act), *flags, "-out", str(out)]) == 1
        assert_one_line_error(capsys.readouterr().err, re.escape(repr(str(act))), r"'conv5'")
        assert sorted(p.name for p in tmp_path.iterdir()) == [act.name]
    # the undamaged layer still reads
    fine = tmp_path / f"fine{suffix}"
    assert run(route, ["-act", str(act), "-layer", "fc3", "-out", str(fine)]) == 0
    assert capsys.readouterr().err == ""
    with h5py.File(fine, "r") as root:
        assert_bits_equal(layer_dataset(root, "fc3")[()], layers["fc3"])


# -- hostile labels: the attributes this package reads --------------------------------

ATTRIBUTES: dict[str, tuple[Callable[[h5py.File, h5py.Dataset], object], list[str]]] = {
    "channel-numbers-beyond-int64": (
        lambda r, d: d.attrs.create("channel", np.array([1, 2, 2**63 + 5], dtype="u8")),
        [r"attribute 'channel' of layer 'conv5'", r"9223372036854775813", r"int64"]),
    "channel-numbers-as-floats": (
        lambda r, d: d.attrs.create("channel", np.array([1.0, 2.0, 3.0])),
        [r"attribute 'channel' of layer 'conv5' must hold 3 integer"]),
    "stimulus-ids-not-utf8": (
        lambda r, d: r.attrs.create("stimulus", np.array([b"a\xff", b"b"], dtype="S2")),
        [r"attribute 'stimulus' holds b'a\\xff', which is not UTF-8"]),
    "stimulus-ids-ascii-typed-with-other-bytes": (
        lambda r, d: r.attrs.create("stimulus", [b"a\xff", b"b"],
                                    dtype=h5py.string_dtype("ascii")),
        [r"attribute 'stimulus' holds .*which is not UTF-8"]),
    "field-names-not-utf8": (
        lambda r, d: r.attrs.create("stimulus_fields", np.array([b"\xff"], dtype="S1")),
        [r"attribute 'stimulus_fields' holds b'\\xff', which is not UTF-8"]),
    "header-not-utf8": (
        lambda r, d: r.attrs.create("stimulus_header", np.bytes_(b"{\xff}")),
        [r"attribute 'stimulus_header' holds b'\{\\xff\}', which is not UTF-8"]),
    "stimulus-ids-2-d": (
        lambda r, d: r.attrs.create("stimulus", np.zeros((2, 1))),
        [r"attribute 'stimulus' is 2-D \(shape \(2, 1\)\)"]),
    "stimulus-ids-too-few": (
        lambda r, d: r.attrs.create("stimulus", np.array([7])),
        [r"attribute 'stimulus' holds 1 value\(s\) but the layers have 2 stimuli"]),
    # bug: complex or compound IDs and fields opened, and the save refused them later in
    # words that named neither the file nor the attribute
    "stimulus-ids-complex": (
        lambda r, d: r.attrs.create("stimulus", np.array([1 + 2j, 3j])),
        [r"attribute 'stimulus' holds complex128 values; stimulus IDs and fields are "
         r"text or numbers"]),
    "field-values-compound": (
        lambda r, d: (r.attrs.create("stimulus_fields", ["onset"],
                                     dtype=h5py.string_dtype()),
                      r.attrs.create("stimulus:onset",
                                     np.zeros(2, dtype=[("a", "i4"), ("b", "f4")]))),
        [r"attribute 'stimulus:onset' holds \[\('a', '<i4'\), \('b', '<f4'\)\] values"]),
    # bug: a field listed twice was read once, without a word
    "field-listed-twice": (
        lambda r, d: (r.attrs.create("stimulus_fields", ["onset", "onset"],
                                     dtype=h5py.string_dtype()),
                      r.attrs.create("stimulus:onset", np.array([0.5, 1.0]))),
        [r"attribute 'stimulus_fields' names 'onset' more than once"]),
}


@pytest.mark.parametrize("case", list(ATTRIBUTES))
@every_write
def test_hostile_label_attributes_fail_in_one_line(route: str, suffix: str, case: str,
                                                   tmp_path: Path, capsys):
    build, patterns = ATTRIBUTES[case]
    act = tmp_path / "in.act.h5"
    with h5py.File(act, "w") as root:
        build(root, root.create_dataset("conv5", data=np.ones((2, 3, 2, 2), np.float32)))
    out = tmp_path / f"out{suffix}"
    assert run(route, ["-act", str(act), "-layer", "conv5", "-chn", "3", "1",
                       "-out", str(out)]) == 1
    assert_one_line_error(capsys.readouterr().err, re.escape(repr(str(act))), *patterns)
    assert [p.name for p in tmp_path.iterdir()] == [act.name]


@pytest.mark.parametrize("kind", ["fifo", "link-to-dev-zero"])
@pytest.mark.parametrize("route", ROUTES)
def test_special_files_do_not_hang(route: str, kind: str, tmp_path: Path):
    # in a child process with a timeout, since the risk is a hang; one suffix, since the
    # input is refused as it is opened, before anything of the output is made
    act = tmp_path / "in.act.h5"
    if kind == "fifo":
        os.mkfifo(act)
    else:
        act.symlink_to("/dev/zero")
    done = run_cli("-act", act, "-layer", "conv5", "-out", tmp_path / "o.act.h5", timeout=60,
                   route=route)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, re.escape(repr(str(act))), r"not an HDF5 file")
    assert [p.name for p in tmp_path.iterdir()] == [act.name]
