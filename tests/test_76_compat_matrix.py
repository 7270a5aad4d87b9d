"""Compatibility matrix: every writer's file, read back by every reader that applies.

In the style of h5netcdf's ``test_write_X_read_Y``: one test, parametrized over
(writer, reader, dtype, selection). Pairs that cannot apply (DNNBrain's reader
on a ``.nc`` file, h5netcdf on an ``.act.h5`` file, a channel selection through
DNNBrain's writer) are left out of the list, not skipped.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import dnnmask_xr as dx
from dnnmask_xr.cli import main
from dnnmask_xr.testing import read_reference_act, write_reference_act

#: zarr 3 writes the zarr v3 stores (.act.zarr) of this package; zarr 2 cannot
ZARR3 = (importlib.util.find_spec("zarr") is not None
         and int(importlib.metadata.version("zarr").split(".")[0]) >= 3)
N_STIM = 5
SHAPES = {"conv5": (8, 3, 3), "fc3": (10, 1, 1)}
HEADER = {"type": "image", "path": "/data/images"}
#: The channels kept of conv5 in the "chosen" case (1-based, unsorted).
CHOSEN = [4, 2, 7]
DIMS = ("stimulus", "channel", "row", "column")
NUMBERED = DIMS[1:]


def make_stim() -> dx.Stimuli:
    table = pd.DataFrame({
        "stimID": [f"img{i}.png" for i in range(N_STIM)],
        "label": [3, 1, 4, 1, 5],
        "condition": ["cat", "dog", "cat", "cat", "dog"],
        "onset": [0.0, 0.5, np.nan, 1.5, 2.25],
    })
    return dx.Stimuli(HEADER, table)


def make_layers(dtype: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {name: rng.standard_normal((N_STIM, *shape)).astype(dtype)
            for name, shape in SHAPES.items()}


# Writers: (tmp_path, layers, stim, chosen) -> the path written. ``chosen`` is
# None for every layer whole, or the channels of conv5 to keep (conv5 alone).


def _reference_input(tmp_path: Path, layers: dict[str, np.ndarray],
                     stim: dx.Stimuli) -> tuple[Path, Path]:
    inp, stim_path = tmp_path / "in.act.h5", tmp_path / "in.stim.csv"
    write_reference_act(inp, layers)
    dx.write_stim(stim, stim_path)
    return inp, stim_path


def write_dnnbrain(tmp_path, layers, stim, chosen=None):
    path = tmp_path / "dnnbrain.act.h5"
    write_reference_act(path, layers)
    return path


def _write_dnn_mask(suffix):
    def write(tmp_path, layers, stim, chosen=None):
        inp, stim_path = _reference_input(tmp_path, layers, stim)
        out = tmp_path / f"dnn_mask{suffix}"
        units = ["-layer", *layers] if chosen is None else [
            "-layer", "conv5", "-chn", *map(str, chosen)]
        argv = ["-act", str(inp), *units, "-stim", str(stim_path), "-out", str(out), "-q"]
        assert main(argv) == 0
        return out
    return write


def write_mask_file(tmp_path, layers, stim, chosen=None):
    inp, _ = _reference_input(tmp_path, layers, stim)
    out = tmp_path / "mask_file.act.h5"
    mask = ({name: {} for name in layers} if chosen is None
            else {"conv5": {"channel": chosen}})
    dx.mask_file(inp, out, mask, stim=stim)
    return out


def _select(acts: dx.Activations, chosen) -> dx.Activations:
    if chosen is None:
        return acts
    conv5 = acts["conv5"].isel(channel=[n - 1 for n in chosen])
    return dx.Activations({"conv5": conv5}, stim_header=acts.stim_header)


def _write_save_act(suffix):
    def write(tmp_path, layers, stim, chosen=None):
        coords = {"stimulus": stim.stim_ids,
                  **{key: ("stimulus", stim.table[key].to_numpy())
                     for key in stim.table.columns if key != "stimID"}}
        arrays = {name: xr.DataArray(values, dims=DIMS, coords=coords)
                  for name, values in layers.items()}
        out = tmp_path / f"save_act{suffix}"
        dx.save_act(_select(dx.Activations(arrays, stim_header=stim.header), chosen), out)
        return out
    return write


def _zarr_of(path: Path) -> Path:
    """Save the layers of ``path``, as read, to a zarr store beside it."""
    out = path.with_name("store.act.zarr")
    with dx.open_act(path) as acts:
        dx.save_act(acts, out)
    return out


def write_save_act_lazy(tmp_path, layers, stim, chosen=None):
    inp, stim_path = _reference_input(tmp_path, layers, stim)
    out = tmp_path / "save_act_lazy.act.h5"
    with dx.open_act(inp, stim=stim_path) as acts:
        dx.save_act(_select(acts, chosen), out)
    return out


#: name -> (writer, suffix of its output, whether it can select channels)
WRITERS = {
    "dnnbrain": (write_dnnbrain, ".act.h5", False),
    "dnn_mask": (_write_dnn_mask(".act.h5"), ".act.h5", True),
    "dnn_mask-nc": (_write_dnn_mask(".nc"), ".nc", True),
    "mask_file": (write_mask_file, ".act.h5", True),
    "save_act": (_write_save_act(".act.h5"), ".act.h5", True),
    "save_act-nc": (_write_save_act(".nc"), ".nc", True),
    "save_act-lazy": (write_save_act_lazy, ".act.h5", True),
    **({"dnn_mask-zarr": (_write_dnn_mask(".act.zarr"), ".act.zarr", True),
        "save_act-zarr": (_write_save_act(".act.zarr"), ".act.zarr", True),
        "save_act-lazy-zarr": (lambda *args: _zarr_of(write_save_act_lazy(*args)),
                               ".act.zarr", True)} if ZARR3 else {}),
}


# Readers: path -> {layer: Seen}. None means the reader does not see that part.


@dataclass
class Seen:
    values: np.ndarray
    dtype: np.dtype
    labels: dict[str, np.ndarray]
    stimulus: np.ndarray | None = None
    fields: dict[str, np.ndarray] | None = None
    header: dict[str, str] | None = None


def _fields(coords) -> dict[str, np.ndarray]:
    return {str(key): coord.values for key, coord in coords.items()
            if coord.dims == ("stimulus",) and key != "stimulus"}


def _seen(array: xr.DataArray, stimulus, fields, header) -> Seen:
    return Seen(array.values, array.dtype, {dim: array[dim].values for dim in NUMBERED},
                stimulus, fields, header)


def read_dnnbrain(path):
    return {name: Seen(values, values.dtype,
                       {dim: np.arange(1, size + 1) for dim, size in
                        zip(NUMBERED, values.shape[1:], strict=True)})
            for name, values in read_reference_act(path).items()}


def read_open_act(path):
    with dx.open_act(path) as acts:
        return {name: _seen(array, array["stimulus"].values, _fields(array.coords),
                            dict(acts.stim_header))
                for name, array in acts.items()}


def _read_tree(path, engine):
    # stimulus IDs, fields and header are read from the root node
    with xr.open_datatree(path, engine=engine) as tree:
        root = tree["stimulus"]
        return {name: _seen(node[name], root.values, _fields(tree.coords), dict(root.attrs))
                for name, node in tree.children.items()}


def read_dnnact(path):
    return _read_tree(path, "dnnact")


def read_dnnact_array(path):
    with xr.open_datatree(path, engine="dnnact") as tree:
        names = list(tree.children)
    seen = {}
    for name in names:
        with xr.open_dataarray(path, engine="dnnact", group=name) as array:
            seen[name] = _seen(array, array["stimulus"].values, _fields(array.coords), None)
    return seen


def read_h5netcdf(path):
    return _read_tree(path, "h5netcdf")


def read_zarr(path):
    # xarray alone: the layers and fields in the order the store's root attributes give
    # (zarr lists a group's members in an order of its own)
    with xr.open_datatree(path, engine="zarr") as tree:
        root = tree["stimulus"]
        fields = _fields(tree.coords)
        fields = {key: fields[key] for key in tree.attrs["stimulus_field_order"]}
        return {name: _seen(tree[name][name], root.values, fields, dict(root.attrs))
                for name in tree.attrs["layer_order"]}


#: name -> (reader, the suffixes it reads)
READERS = {
    "dnnbrain": (read_dnnbrain, {".act.h5"}),
    "open_act": (read_open_act, {".act.h5", ".nc", ".act.zarr"}),
    "dnnact": (read_dnnact, {".act.h5", ".nc", ".act.zarr"}),
    "dnnact-array": (read_dnnact_array, {".act.h5", ".nc", ".act.zarr"}),
    "h5netcdf": (read_h5netcdf, {".nc"}),
    "zarr": (read_zarr, {".act.zarr"}),
}


def expected_layers(layers, writer, reader, chosen) -> dict[str, Seen]:
    stim = make_stim()
    if writer == "dnnbrain":  # no stimulus table in the file: IDs 1..n, no fields
        ids, fields, header = np.arange(1, N_STIM + 1), {}, {}
    else:
        ids = stim.stim_ids
        fields = {key: stim.table[key].to_numpy() for key in stim.table if key != "stimID"}
        header = dict(HEADER)
    if chosen is not None:
        layers = {"conv5": layers["conv5"][:, [n - 1 for n in chosen]]}
    expected = {}
    for name, values in layers.items():
        labels = {dim: np.arange(1, size + 1)
                  for dim, size in zip(NUMBERED, values.shape[1:], strict=True)}
        if chosen is not None and reader != "dnnbrain":
            labels["channel"] = np.array(chosen)  # DNNBrain sees positions, not numbers
        expected[name] = Seen(values, values.dtype, labels, ids, fields, header)
    return expected


def _kind(values: np.ndarray) -> str:
    # zarr 3 gives text as NumPy 2's StringDType (kind "T")
    return "text" if values.dtype.kind in "OUST" else values.dtype.kind


def assert_seen(got: dict[str, Seen], expected: dict[str, Seen]) -> None:
    assert list(got) == list(expected)
    for name, want in expected.items():
        seen = got[name]
        assert seen.dtype == want.dtype, name
        assert seen.values.dtype == want.dtype, name
        np.testing.assert_array_equal(seen.values, want.values, err_msg=name, strict=True)
        for dim in NUMBERED:
            np.testing.assert_array_equal(seen.labels[dim], want.labels[dim],
                                          err_msg=f"{name}.{dim}")
        if seen.stimulus is not None:
            np.testing.assert_array_equal(seen.stimulus, want.stimulus, err_msg=name)
            assert _kind(seen.stimulus) == _kind(want.stimulus), name
        if seen.fields is not None:
            assert list(seen.fields) == list(want.fields), name
            for key, values in want.fields.items():
                # assert_array_equal holds NaN equal to NaN at the same place
                np.testing.assert_array_equal(seen.fields[key], values,
                                              err_msg=f"{name}.{key}")
                assert _kind(seen.fields[key]) == _kind(values), f"{name}.{key}"
        if seen.header is not None:
            assert seen.header == want.header, name


def matrix():
    """Every (writer, reader) pair; its last case in float32 is in the core tier, the rest slow."""
    params = []
    for writer, (_, suffix, can_select) in WRITERS.items():
        for reader, (_, suffixes) in READERS.items():
            if suffix not in suffixes:
                continue
            cases = ["whole", "chosen"] if can_select else ["whole"]
            for case in cases:
                for dtype in ["float32", "float64"]:
                    core = (case, dtype) == (cases[-1], "float32")
                    params.append(pytest.param(
                        writer, reader, case, dtype, marks=() if core else pytest.mark.slow,
                        id=f"write_{writer}-read_{reader}-{case}-{dtype}"))
    return params


@pytest.mark.parametrize(("writer", "reader", "case", "dtype"), matrix())
def test_write_x_read_y(tmp_path, writer, reader, case, dtype):
    layers = make_layers(dtype)
    chosen = CHOSEN if case == "chosen" else None
    write = WRITERS[writer][0]
    path = write(tmp_path, layers, make_stim(), chosen)
    assert str(path).endswith(WRITERS[writer][1])
    got = READERS[reader][0](path)
    assert_seen(got, expected_layers(layers, writer, reader, chosen))
