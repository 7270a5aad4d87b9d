"""Saving to .nc writes netCDF4 that xarray opens plainly and open_act reads back exactly."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pandas as pd
import pytest
import tqdm
import xarray as xr

import dnnmask_xr.act.nc
from dnnmask_xr import (
    ActFileError,
    Activations,
    DnnMaskError,
    Stimuli,
    mask_file,
    open_act,
    read_dmask,
    save_act,
    to_datatree,
)
from dnnmask_xr.act.layout import DIMS
from dnnmask_xr.cli import main
from dnnmask_xr.testing import relu_activations, write_reference_act

ENGINES = ["h5netcdf", "netcdf4"]


def assert_exact(got: Activations, expected: Activations) -> None:
    assert list(got) == list(expected)
    for name in expected:
        xr.testing.assert_identical(got[name].load(), expected[name].load())
        assert got[name].dtype == expected[name].dtype
        for coord in got[name].coords:
            assert got[name][coord].dtype == expected[name][coord].dtype, coord
    assert got.stim_header == expected.stim_header


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint8"])
def test_act_to_nc_to_open_act_is_exact(tmp_path, stim_file, dtype):
    arrays = relu_activations(5, {"conv5": (20, 6, 7), "fc3": (12, 1, 1)}, seed=3)
    act_path, nc_path = tmp_path / "in.act.h5", tmp_path / "out.nc"
    write_reference_act(act_path, {k: (v * 40).astype(dtype) for k, v in arrays.items()})
    acts = open_act(act_path, stim=stim_file)
    save_act(acts, nc_path, attrs={"cmd": "test"}, memory=100_000)
    back = open_act(nc_path)
    assert_exact(back, acts)
    assert back.attrs["cmd"] == "test" and back.attrs["software"].startswith("dnnmask_xr")
    assert back.stimuli.table.equals(acts.stimuli.table)


def test_a_masked_file_keeps_its_numbers_and_order(act_file, stim_file, tmp_path):
    text = "fc3=chn\n12,1\nconv5=chn,row,col\n7,2,19\n3,1\n5\n"
    masked = open_act(act_file, stim=stim_file).mask(read_dmask_text(tmp_path, text))
    save_act(masked, tmp_path / "masked.nc")
    back = open_act(tmp_path / "masked.nc")
    assert_exact(back, masked)
    assert list(back) == ["fc3", "conv5"]
    assert list(back["conv5"].channel.values) == [7, 2, 19]
    # the mask is kept as the .dmask.csv text it was read from, in the file's root
    # attributes (read with h5py) and through open_act: not format_dmask against itself
    with h5py.File(tmp_path / "masked.nc", "r") as root:
        assert root.attrs["mask"] == text
    assert back.attrs["mask"] == text


@pytest.mark.parametrize("engine", ENGINES)
def test_plain_xarray_opens_the_file_with_named_dims(act_file, stim_file, layers, tmp_path,
                                                     engine):
    path = tmp_path / "out.nc"
    save_act(open_act(act_file, stim=stim_file), path)
    with xr.open_datatree(path, engine=engine) as tree:
        assert list(tree.children) == ["conv5", "fc3"]
        all_dims = {dim for node in tree.subtree for dim in node.dims}
        assert all_dims == set(DIMS)  # no phony_dim_0 and the like
        root = tree.to_dataset(inherit=False)
        assert set(root.coords) == {"stimulus", "label", "condition", "onset"}
        assert not root.data_vars
        assert root["stimulus"].attrs == {"type": "image", "path": "/data/images"}
        for name, values in layers.items():
            array = tree[name][name]
            assert array.dims == DIMS and array.dtype == values.dtype
            np.testing.assert_array_equal(array.values, values)
            np.testing.assert_array_equal(array.channel.values,
                                          np.arange(1, values.shape[1] + 1))
        assert list(tree["stimulus"].values) == [f"img{i}.png" for i in range(5)]
        np.testing.assert_array_equal(tree["onset"].values, np.arange(5) * 0.5)


#: The stimuli of the stim_file fixture, as a reader of the .nc file should see them.
STIMULI = {"stimulus": [f"img{i}.png" for i in range(5)], "label": [0, 1, 0, 1, 0],
           "condition": ["dog", "cat", "dog", "cat", "dog"], "onset": [0.0, 0.5, 1.0, 1.5, 2.0]}


@pytest.mark.parametrize("engine", ENGINES)
def test_every_layer_group_holds_the_stimuli(act_file, stim_file, layers, tmp_path, engine):
    path = tmp_path / "out.nc"
    save_act(open_act(act_file, stim=stim_file), path)
    for name, values in layers.items():
        with xr.open_dataset(path, group=name, engine=engine) as layer:
            assert set(layer.coords) == {*STIMULI, "channel", "row", "column"}
            assert "stimulus" in layer.indexes
            for key, expected in STIMULI.items():
                assert layer[key].dims == ("stimulus",)
                assert layer[key].values.tolist() == expected, key
            np.testing.assert_array_equal(layer[name].values, values)


def test_the_netcdf4_library_reads_the_stimuli_of_a_group(act_file, stim_file, tmp_path):
    netCDF4 = pytest.importorskip("netCDF4")
    path = tmp_path / "out.nc"
    save_act(open_act(act_file, stim=stim_file), path)
    with netCDF4.Dataset(path) as root:
        group = root["conv5"]
        # the group has a stimulus dimension of its own, of the root's size (sharing the
        # root's made writing n layers take n**2: see dnnmask_xr.act.nc)
        assert group.dimensions["stimulus"].size == root.dimensions["stimulus"].size
        assert group["conv5"].dimensions == DIMS
        assert group.getncattr("coordinates") == "label condition onset"
        for key, expected in STIMULI.items():
            assert group[key].dimensions == ("stimulus",)
            assert list(group[key][:]) == expected, key
        assert list(root["stimulus"][:]) == STIMULI["stimulus"]


@pytest.mark.parametrize("engine", ENGINES)
def test_open_mfdataset_joins_a_layer_of_many_nc_files_with_its_stimuli(split_parts, layers,
                                                                         engine):
    with xr.open_mfdataset(split_parts(".nc"), group="conv5", engine=engine, combine="nested",
                           concat_dim="stimulus") as joined:
        np.testing.assert_array_equal(joined["conv5"].values, layers["conv5"])
        for key, expected in STIMULI.items():
            assert joined[key].values.tolist() == expected, key


def test_open_act_reads_nc_files_whose_groups_lack_the_stimuli(act_file, stim_file, tmp_path,
                                                               monkeypatch):
    # the layout written before groups held the stimuli: the root alone holds them
    real = dnnmask_xr.act.nc._write_stimuli
    monkeypatch.setattr(dnnmask_xr.act.nc, "_write_stimuli",
                        lambda group, stimulus: real(group, stimulus) if group.name == "/"
                        else None)
    path = tmp_path / "old.nc"
    acts = open_act(act_file, stim=stim_file)
    save_act(acts, path)
    with h5py.File(path) as root:
        assert "stimulus" in root and set(root["conv5"]) == {"channel", "row", "column",
                                                             "conv5"}
    assert_exact(open_act(path), acts)
    with xr.open_datatree(path, engine="dnnact") as tree:
        assert tree["conv5"]["conv5"]["condition"].values.tolist() == STIMULI["condition"]


def test_the_layers_are_compressed_in_chunks(act_file, tmp_path):
    path = tmp_path / "out.nc"
    save_act(open_act(act_file), path)
    with h5py.File(path) as root:
        assert root["conv5/conv5"].compression == "gzip"
        assert root["conv5/conv5"].chunks is not None


def test_open_act_reads_nc_with_dask_chunks(act_file, layers, tmp_path):
    path = tmp_path / "out.nc"
    save_act(open_act(act_file), path)
    with h5py.File(path) as root:
        file_chunks = root["conv5/conv5"].chunks
    acts = open_act(path, chunks={})
    assert tuple(sizes[0] for sizes in acts["conv5"].chunks) == file_chunks
    np.testing.assert_array_equal(acts["conv5"].values, layers["conv5"])


def test_dnn_mask_writes_nc(act_file, stim_file, layers, tmp_path):
    out = tmp_path / "out.nc"
    assert main(["-act", str(act_file), "-layer", "conv5", "-chn", "3", "1", "-stim",
                 str(stim_file), "-out", str(out), "-q"]) == 0
    back = open_act(out)
    np.testing.assert_array_equal(back["conv5"].values, layers["conv5"][:, [2, 0]])
    assert list(back["conv5"].condition.values) == ["dog", "cat", "dog", "cat", "dog"]
    assert back.attrs["cmd"].startswith("dnn_mask -act")


@pytest.mark.parametrize("suffix", [".act.h5", ".nc"])
@pytest.mark.parametrize("select", [("-layer", "conv5", "-chn", "3", "1"), ("-dmask",)],
                         ids=["flags", "dmask"])
def test_dnn_mask_reads_the_nc_it_writes(act_file, stim_file, layers, tmp_path, suffix,
                                         select, capsys):
    # bug: -act x.nc was read as an .act.h5 and refused ("root object 'stimulus' is a 1-D
    # dataset"), though -out x.nc writes one and -act x.nc -out y.act.zarr read it
    nc = tmp_path / "in.nc"
    assert main(["-act", str(act_file), "-stim", str(stim_file), "-layer", "fc3", "conv5",
                 "-out", str(nc), "-q"]) == 0
    if select == ("-dmask",):
        dmask = tmp_path / "m.dmask.csv"
        dmask.write_text("conv5=chn\n3,1\n")
        select = ("-dmask", str(dmask))
    before = nc.read_bytes()
    out = tmp_path / f"out{suffix}"
    assert main(["-act", str(nc), *select, "-out", str(out), "--dry-run"]) == 0
    assert "conv5" in capsys.readouterr().out and not out.exists()
    assert main(["-act", str(nc), *select, "-out", str(out), "-q"]) == 0
    assert capsys.readouterr().err == ""
    back = open_act(out)
    assert list(back) == ["conv5"]
    np.testing.assert_array_equal(back["conv5"].values, layers["conv5"][:, [2, 0]], strict=True)
    assert back["conv5"].channel.values.tolist() == [3, 1]
    assert list(back["conv5"].condition.values) == ["dog", "cat", "dog", "cat", "dog"]
    assert back.attrs["source"] == str(nc)
    assert nc.read_bytes() == before


def test_mask_file_of_an_nc_says_how_to_mask_it(act_file, tmp_path):
    nc = tmp_path / "in.nc"
    save_act(open_act(act_file), nc)
    with pytest.raises(ActFileError, match=r"^'.*in\.nc' is a netCDF4 file \(\.nc\), and "
                                           r"mask_file reads \.act\.h5 files; mask it with "
                                           r"save_act\(open_act\("):
        mask_file(nc, tmp_path / "out.act.h5", {"conv5": {"channel": [1]}})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.act.h5", "in.nc"]


def test_the_backend_opens_nc_too(act_file, tmp_path, layers):
    path = tmp_path / "out.nc"
    save_act(open_act(act_file), path)
    with xr.open_datatree(path, engine="dnnact") as tree:
        np.testing.assert_array_equal(tree["fc3/fc3"].values, layers["fc3"])


@pytest.mark.parametrize("dtype", ["complex64", "float16", "bool"])
def test_values_without_a_netcdf4_type_are_refused(tmp_path, dtype):
    layer = xr.DataArray(np.ones((2, 3, 1, 1), dtype=dtype), dims=DIMS)
    with pytest.raises(DnnMaskError, match=rf"layer 'z' holds {dtype} values, which netCDF4 "
                                           r"cannot store \(it stores integers of 1 to 8 bytes, "
                                           r"float32 and float64\); save it as .act.h5"):
        save_act({"z": layer}, tmp_path / "out.nc")
    assert not (tmp_path / "out.nc").exists()


HALVES = np.array([1.5, 2.5], dtype=np.float16)


@pytest.mark.parametrize(("where", "message"), [
    ("IDs", r"stimulus IDs hold float16 values, which netCDF4 cannot store; give them as "
            r"float32 \(\.astype\('float32'\)\), or save as \.act\.h5"),
    ("field", r"stimulus field 'seen' holds float16 values, which netCDF4 cannot store; give "
              r"them as float32 \(\.astype\('float32'\)\), or save as \.act\.h5"),
    ("root", r"attribute 'x' of the file's root is float16, which netCDF4 cannot store; store "
             r"it as float32 or text"),
    ("layer", r"attribute 'x' of layer 'z' is float16, which netCDF4 cannot store; store it "
              r"as float32 or text"),
], ids=["IDs", "field", "root", "layer"])
@pytest.mark.filterwarnings("ignore:`pandas.Index` does not support the `float16`:FutureWarning")
def test_float16_labels_and_attributes_are_refused(tmp_path, where, message):
    # bug: only float16 layers were refused: a float16 stimulus field made a file on which
    # the netCDF4 library crashed (a segmentation fault), and netCDF-C left a float16
    # attribute out without a word
    layer = xr.DataArray(np.ones((2, 3)), dims=("stimulus", "channel"),
                         coords={"stimulus": HALVES if where == "IDs" else ["a", "b"]},
                         attrs={"x": HALVES} if where == "layer" else {})
    if where == "field":
        layer = layer.assign_coords(seen=("stimulus", HALVES))
    with pytest.raises(DnnMaskError, match=rf"^{message}$"):
        save_act({"z": layer}, tmp_path / "out.nc",
                 attrs={"x": HALVES[0]} if where == "root" else None)
    assert list(tmp_path.iterdir()) == []
    save_act({"z": layer}, tmp_path / "out.act.h5",  # which stores them
             attrs={"x": HALVES[0]} if where == "root" else None)


def test_labels_that_are_not_numbers_are_refused(tmp_path):
    layer = xr.DataArray(np.ones((2, 3, 1, 1)), dims=DIMS, coords={"channel": [0.5, 1.5, 2.5]})
    with pytest.raises(DnnMaskError, match=r"layer 'z': channel labels are float64, not "
                                           "integers"):
        save_act({"z": layer}, tmp_path / "out.nc")


@pytest.mark.parametrize(("labels", "message"), [
    ([1.0, 2.5], "channel labels are float64, not integers"),
    ([1.0, np.nan], "channel labels are float64, not integers"),
    (["a", "b"], "channel labels are object, not integers"),
    (np.array([2**64 - 1, 5], dtype=np.uint64),
     "channel label 18446744073709551615 is beyond the int64 range"),
], ids=["fractional", "nan", "text", "beyond-int64"])
def test_a_file_whose_unit_labels_are_not_int64_numbers_is_refused_on_reading(
        tmp_path, labels, message):
    # bug: a .nc written by xarray with such labels opened (an .act.h5 with them is
    # refused), then masking by label raised TypeError and every save refused it
    path = tmp_path / "other.nc"
    layer = xr.Dataset({"fc": (("stimulus", "channel"), np.ones((2, 2)))},
                       coords={"stimulus": ["a", "b"], "channel": labels})
    xr.DataTree.from_dict({"/": xr.Dataset(coords={"stimulus": ["a", "b"]}),
                           "/fc": layer}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ActFileError, match=rf"^'{re.escape(str(path))}': layer 'fc': "
                                           rf"{re.escape(message)}"):
        open_act(path)


@pytest.mark.parametrize("ids", [["a", "b"], [0.5, 1.5]], ids=["text-ids", "float-ids"])
def test_a_file_xarray_wrote_reads_its_fill_values_as_storage_not_attributes(tmp_path, ids):
    # bug: xarray's _FillValue (on a float layer, float IDs) was read as a layer attribute
    # or header key, and a save to .nc refused it ("rename the attribute"), as if the
    # caller had given it; an .act.h5 kept it as an attribute
    acts = Activations({"fc": xr.DataArray(
        np.array([[1.5, np.nan], [0.0, 2.0]], np.float32), dims=("stimulus", "channel"),
        coords={"stimulus": ids}, attrs={"units": "a.u."})})
    to_datatree(acts).to_netcdf(tmp_path / "xarray.nc", engine="h5netcdf")
    with open_act(tmp_path / "xarray.nc") as back:
        assert back["fc"].attrs == {"units": "a.u."}
        assert "_FillValue" not in (back.stim_header or {})
        assert np.isnan(back["fc"].encoding["_FillValue"])
        for suffix in (".nc", ".act.h5"):
            save_act(back, tmp_path / f"out{suffix}")
            with open_act(tmp_path / f"out{suffix}") as saved:
                np.testing.assert_array_equal(saved["fc"].values, acts["fc"].values)
                assert saved["fc"].attrs == {"units": "a.u."}


def test_a_field_name_with_white_space_is_refused(tmp_path):
    layer = xr.DataArray(np.ones((2, 3, 1, 1)), dims=DIMS,
                         coords={"trial type": ("stimulus", ["a", "b"])})
    with pytest.raises(DnnMaskError, match=r"stimulus field 'trial type' has white space"):
        save_act({"z": layer}, tmp_path / "out.nc")
    assert not (tmp_path / "out.nc").exists()


@pytest.mark.parametrize("field", [".", ".."])
def test_a_field_named_as_hdf5_reserves_is_refused(tmp_path, field):
    # found by hypothesis (test_42): HDF5 raised "name already exists"
    layer = xr.DataArray(np.ones((2, 3, 1, 1)), dims=DIMS,
                         coords={field: ("stimulus", ["a", "b"])})
    with pytest.raises(DnnMaskError, match=rf"^stimulus field '{re.escape(field)}' cannot "
                                           r"name a variable of a netCDF4 file"):
        save_act({"z": layer}, tmp_path / "out.nc")
    assert list(tmp_path.iterdir()) == []
    save_act({"z": layer}, tmp_path / "out.act.h5")  # .act.h5 stores it as an attribute
    assert list(open_act(tmp_path / "out.act.h5")["z"][field].values) == ["a", "b"]


def test_nc_is_never_written_over_its_input(act_file, tmp_path):
    path = tmp_path / "out.nc"
    save_act(open_act(act_file), path)
    with pytest.raises(ActFileError, match="is the input file"):
        save_act(open_act(path), path)


def test_an_nc_file_that_is_not_layers_is_refused(tmp_path):
    path = tmp_path / "other.nc"
    xr.DataTree.from_dict({"/": xr.Dataset(), "a": xr.Dataset({"x": ("t", [1, 2])}),
                           "a/b": xr.Dataset()}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ActFileError, match=r"other\.nc': node '/a' holds groups \(b\)"):
        open_act(path)


def test_an_act_file_named_nc_is_refused(act_file, tmp_path):
    path = tmp_path / "misnamed.nc"
    path.write_bytes(act_file.read_bytes())
    with pytest.raises(ActFileError, match=r"misnamed\.nc': the root holds variables "
                                           r"\(conv5, fc3\); a tree of activations"):
        open_act(path)


def read_dmask_text(folder, text):
    path = folder / "m.dmask.csv"
    path.write_text(text)
    return read_dmask(path)


def test_progress_bar_counts_every_layer(act_file, tmp_path, capsys, monkeypatch):
    real = tqdm.tqdm
    # shown at once and kept, so the test sees what a slow write would show
    monkeypatch.setattr(tqdm, "tqdm",
                        lambda *args, **kwargs: real(*args, **{**kwargs, "delay": 0,
                                                              "leave": True}))
    save_act(open_act(act_file), tmp_path / "out.nc", progress=True)
    # the bar ends on the last layer, with every byte of every layer counted
    assert "fc3: 100%" in capsys.readouterr().err


#: Names CF and netCDF give a meaning, which xarray decodes by default.
CF_NAMES = ("scale_factor", "add_offset", "missing_value", "valid_range", "units", "calendar")


def test_attributes_named_as_cf_metadata_read_back_as_they_were(tmp_path):
    # xarray's mask_and_scale took them out of a layer's attributes, and a header key
    # equal to a stimulus ID made that ID NaN (the file then read as not aligned)
    layer = xr.DataArray(np.arange(6, dtype=np.int16).reshape(2, 3),
                         dims=("stimulus", "channel"),
                         attrs={name: 2.0 for name in CF_NAMES[:4]} | {"units": "days since 2000",
                                                                       "calendar": "noleap"})
    header = {"type": "image", "path": "p", **{name: "b.png" for name in CF_NAMES}}
    stimuli = Stimuli(header, pd.DataFrame({"stimID": ["a.png", "b.png"]}))
    out = tmp_path / "out.nc"
    save_act(Activations({"fc": layer}).with_stimuli(stimuli), out)
    back = open_act(out)
    assert back["fc"].attrs == layer.attrs
    np.testing.assert_array_equal(back["fc"].values, layer.values)
    assert back["fc"].dtype == np.int16
    assert list(back.stimulus_table().ids) == ["a.png", "b.png"]
    assert dict(back.stim_header) == header


@pytest.mark.parametrize("key", ["coordinates", "CLASS", "NAME", "DIMENSION_LIST",
                                 "REFERENCE_LIST", "_FillValue", "_Encoding"])
def test_a_header_key_netcdf_keeps_for_itself_is_refused(tmp_path, key):
    # the header is the attributes of the stimulus variable: h5py raised its own
    # AttributeError for HDF5's names, 'coordinates' was dropped, '_Encoding' broke reading
    stimuli = Stimuli({"type": "image", "path": "p", key: "x"},
                      pd.DataFrame({"stimID": ["a", "b"]}))
    acts = Activations({"fc": np.ones((2, 3), np.float32)}).with_stimuli(stimuli)
    said = (rf"^stimulus header key '{key}' names an attribute a netCDF4 file keeps for "
            r"itself on the stimulus variable; rename the key, or save as \.act\.h5$")
    with pytest.raises(DnnMaskError, match=said):
        save_act(acts, tmp_path / "out.nc")
    assert list(tmp_path.iterdir()) == []
    save_act(acts, tmp_path / "out.act.h5")  # where the header keeps it
    assert open_act(tmp_path / "out.act.h5").stim_header[key] == "x"


@pytest.mark.parametrize("flags", [["-chn", "1"], ["--verify"]], ids=["masked", "verified"])
def test_a_damaged_chunk_of_an_nc_layer_names_the_layer_as_the_reader_calls_it(
        act_file, tmp_path, capsys, flags):
    # bug: the error said layer 'conv5/conv5', the variable's path in its group
    nc = tmp_path / "m.nc"
    assert main(["-act", str(act_file), "-layer", "conv5", "-out", str(nc)]) == 0
    with h5py.File(nc, "r") as root:
        first = root["conv5/conv5"].id.get_chunk_info(0)
    with open(nc, "r+b") as file:
        file.seek(first.byte_offset + 10)
        file.write(b"\xff" * 20)
    capsys.readouterr()
    out = tmp_path / "out.nc"
    assert main(["-act", str(nc), "-layer", "conv5", *flags, "-out", str(out)]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"dnn_mask: error: '[^']*m\.nc': cannot read layer 'conv5' "
                        r"\(damaged chunk: [^\n]*\)\n", err), err
    assert not out.exists()
