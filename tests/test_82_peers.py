"""The peers' outputs, built here in each tool's documented layout, read exactly.

THINGSvision: ``save_features`` writes ``features.npy`` (``.hdf5`` with a
dataset ``features``, ``.txt``), ``extract_features(output_dir=...)`` parts
``<module>/features_<first>-<last>.npy``, flattening with ``view(n, -1)``.
Brain-Score's model-tools flattens each layer with ``reshape(n, -1)`` and
numbers the neuroids by their 0-based index along each axis: ``channel``,
``channel_x``, ``channel_y`` (NaN for fc layers), or ``channel`` and
``embedding`` for transformer layers. Net2Brain saves one ``.npz`` per
stimulus (a key per layer, a batch axis of 1), consolidated per layer into
``consolidated_<layer>.npz`` (a key per stimulus).
"""

from __future__ import annotations

import itertools
import re
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import dnnmask_xr as dx
from dnnmask_xr.testing import read_reference_act

RNG = np.random.default_rng(3)
CONV = RNG.standard_normal((4, 3, 2, 5)).astype(np.float32)
FC = RNG.standard_normal((4, 6)).astype(np.float32)
VIT = RNG.standard_normal((4, 5, 8)).astype(np.float32)
IMAGES = ["cat.jpg", "dog.jpg", "car.jpg", "cup.jpg"]


def saved_and_reread(acts: dx.Activations, tmp_path, suffix: str) -> dx.Activations:
    dx.save_act(acts, tmp_path / f"peer{suffix}")
    return dx.open_act(tmp_path / f"peer{suffix}")


# -- THINGSvision ----------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "dims"), [
    (FC, ("stimulus", "channel")), (VIT, ("stimulus", "token", "channel")),
    (CONV, ("stimulus", "channel", "row", "column"))])
def test_thingsvision_features_npy_of_any_rank(tmp_path, values, dims):
    out = tmp_path / "features"
    out.mkdir()
    np.save(out / "features.npy", values)
    (out / "file_names.txt").write_text("\n".join(IMAGES) + "\n")
    acts = dx.read_thingsvision(out, layer="penultimate")
    assert list(acts) == ["penultimate"]
    assert acts["penultimate"].dims == dims
    np.testing.assert_array_equal(acts["penultimate"].values, values)
    assert acts["penultimate"]["stimulus"].values.tolist() == IMAGES
    with saved_and_reread(acts, tmp_path, ".act.h5") as back:
        np.testing.assert_array_equal(back["penultimate"].values, values)
    seen = read_reference_act(tmp_path / "peer.act.h5")["penultimate"]
    assert seen.shape == values.shape + (1,) * (4 - values.ndim)


def test_thingsvision_flattened_conv_features_take_their_shape(tmp_path):
    np.save(tmp_path / "features.npy", CONV.reshape(4, -1))  # flatten_acts=True: view(n, -1)
    acts = dx.read_thingsvision(tmp_path / "features.npy", layer="conv5", shape=(3, 2, 5))
    np.testing.assert_array_equal(acts["conv5"].values, CONV)
    assert acts["conv5"].dims == ("stimulus", "channel", "row", "column")
    # a unit picked by name is the unit of the unflattened tensor
    assert acts["conv5"].sel(channel=2, row=2, column=4).values.tolist() == \
        CONV[:, 1, 1, 3].tolist()
    tokens = dx.read_thingsvision(tmp_path / "features.npy", layer="x", shape=(6, 5))
    assert tokens["x"].dims == ("stimulus", "token", "channel")


@pytest.mark.parametrize("shape", [(3, 2, 4), (7, 4), (31,)])
def test_a_flattened_shape_that_does_not_fit_is_refused(tmp_path, shape):
    np.save(tmp_path / "features.npy", CONV.reshape(4, -1))
    with pytest.raises(dx.ActFileError, match=re.escape(
            f"holds 30 features per stimulus, but shape={shape} has {int(np.prod(shape))} "
            "units")):
        dx.read_thingsvision(tmp_path / "features.npy", shape=shape)


def test_thingsvision_low_memory_parts_are_read_in_stimulus_order(tmp_path):
    module = tmp_path / "out" / "features.10"
    module.mkdir(parents=True)
    # written every step_size batches; listed out of order on purpose
    np.save(module / "features_3-4.npy", FC[3:])
    np.save(module / "features_0-3.npy", FC[:3])
    acts = dx.read_thingsvision(module)
    assert list(acts) == ["features.10"]  # the module's folder names the layer
    np.testing.assert_array_equal(acts["features.10"].values, FC)
    np.save(module / "features_5-9.npy", FC)
    with pytest.raises(dx.ActFileError, match=re.escape(
            "leave a gap or overlap: features_5-9.npy starts at 5 where the parts before end "
            "at 4")):
        dx.read_thingsvision(module)


@pytest.mark.parametrize("rows", [2, 4])
def test_a_thingsvision_part_holding_other_than_its_name_says_is_refused(tmp_path, rows):
    # a part cut short (or too long) would shift every later stimulus onto another row
    module = tmp_path / "conv1"
    module.mkdir()
    np.save(module / "features_0-3.npy", FC[:rows])
    np.save(module / "features_3-4.npy", FC[3:])
    with pytest.raises(dx.ActFileError, match=re.escape(
            f"{str(module)!r}: the parts of THINGSvision features leave a gap or overlap: "
            f"features_0-3.npy holds {rows} stimuli where its name, 0-3, says 3")):
        dx.read_thingsvision(module)
    np.save(module / "features_0-3.npy", FC[:3])
    np.testing.assert_array_equal(dx.read_thingsvision(module)["conv1"].values, FC)


def test_thingsvision_hdf5_and_txt(tmp_path):
    with h5py.File(tmp_path / "features.hdf5", "w") as f:
        f.create_dataset("features", data=CONV)
    np.testing.assert_array_equal(dx.read_thingsvision(tmp_path / "features.hdf5",
                                                       layer="c")["c"].values, CONV)
    np.savetxt(tmp_path / "features.txt", FC)
    np.testing.assert_array_equal(dx.read_thingsvision(tmp_path / "features.txt",
                                                       layer="f")["f"].values, FC)
    with h5py.File(tmp_path / "other.hdf5", "w") as f:
        f.create_dataset("feats", data=CONV)
    with pytest.raises(dx.ActFileError, match=r"has no dataset 'features' \(it holds feats\)"):
        dx.read_thingsvision(tmp_path / "other.hdf5")


def test_thingsvision_hdf5_features_that_are_no_dataset_are_refused_in_one_line(tmp_path):
    with h5py.File(tmp_path / "features.hdf5", "w") as f:
        f.create_group("features")  # h5py's TypeError, reading it as a dataset
    with pytest.raises(dx.ActFileError, match=re.escape(
            f"{str(tmp_path / 'features.hdf5')!r}: 'features' is a group, not a dataset; "
            "THINGSvision stores its features as the dataset 'features'")):
        dx.read_thingsvision(tmp_path / "features.hdf5")
    with h5py.File(tmp_path / "features.hdf5", "w") as f:
        f["features"] = h5py.ExternalLink("missing.h5", "/x")  # h5py's KeyError
    with pytest.raises(dx.ActFileError, match=re.escape(
            f"{str(tmp_path / 'features.hdf5')!r}: root object 'features' is an external link "
            f"to 'missing.h5:/x', but {str(tmp_path / 'missing.h5')!r} cannot be read")):
        dx.read_thingsvision(tmp_path / "features.hdf5")
    # a link that leads to a dataset is still followed
    with h5py.File(tmp_path / "missing.h5", "w") as f:
        f.create_dataset("x", data=FC)
    np.testing.assert_array_equal(
        dx.read_thingsvision(tmp_path / "features.hdf5", layer="fc")["fc"].values, FC)


def test_thingsvision_file_names_that_are_not_utf8_are_refused(tmp_path):
    np.save(tmp_path / "features.npy", FC)
    (tmp_path / "file_names.txt").write_bytes("\n".join(IMAGES).encode("latin-1") +
                                               b"\ncaf\xe9.jpg\n")
    with pytest.raises(dx.FormatError, match=re.escape(
            f"{tmp_path / 'file_names.txt'}, line 5: byte b'\\xe9' is not UTF-8; save the "
            "file as UTF-8 text")):
        dx.read_thingsvision(tmp_path)


def test_a_folder_without_thingsvision_features_is_refused(tmp_path):
    with pytest.raises(dx.ActFileError, match="holds no THINGSvision features"):
        dx.read_thingsvision(tmp_path)


# -- Brain-Score -----------------------------------------------------------------------------

def model_tools_layer(values: np.ndarray, layer: str) -> xr.DataArray:
    """What model-tools' _package_layer makes of one layer's outputs."""
    flat = values.reshape(values.shape[0], -1)
    index = np.array(list(itertools.product(*(range(size) for size in values.shape[1:]))))
    names = {1: ["channel", "channel_x", "channel_y"], 2: ["channel", "embedding"],
             3: ["channel", "channel_x", "channel_y"]}[index.shape[1]]
    coords = {name: ("neuroid", [row[i] if i < index.shape[1] else np.nan for row in index])
              for i, name in enumerate(names)}
    # an assembly of several layers carries every coordinate, NaN where a layer has none
    for name in ("channel_x", "channel_y", "embedding"):
        coords.setdefault(name, ("neuroid", np.full(flat.shape[1], np.nan)))
    return xr.DataArray(flat, dims=("presentation", "neuroid"), coords={
        "layer": ("neuroid", [layer] * flat.shape[1]), **coords})


def neuroid_assembly(layers: dict[str, np.ndarray]) -> xr.DataArray:
    """Layers concatenated along neuroid, with a StimulusSet's columns along presentation."""
    parts = [model_tools_layer(values, name) for name, values in layers.items()]
    assembly = xr.concat(parts, dim="neuroid")
    assembly = assembly.assign_coords(
        stimulus_id=("presentation", IMAGES),
        object_name=("presentation", ["cat", "dog", "car", "cup"]),
        image_label=("presentation", [3, 1, 4, 1]))
    size = assembly.sizes["neuroid"]
    assembly = assembly.assign_coords(neuroid_id=("neuroid", [f"m.{i}" for i in range(size)]),
                                      model=("neuroid", ["m"] * size))
    return assembly.set_index(neuroid=["neuroid_id", "model", "layer"],
                              presentation=["stimulus_id", "object_name", "image_label"])


def test_a_neuroid_assembly_gives_each_layer_its_own_dims():
    acts = dx.from_neuroid_assembly(neuroid_assembly({"conv5": CONV, "fc7": FC, "vit": VIT}))
    assert list(acts) == ["conv5", "fc7", "vit"]
    assert acts["conv5"].dims == ("stimulus", "channel", "row", "column")
    assert acts["fc7"].dims == ("stimulus", "channel")  # channel_x/channel_y NaN
    assert acts["vit"].dims == ("stimulus", "token", "channel")
    np.testing.assert_array_equal(acts["conv5"].values, CONV)
    np.testing.assert_array_equal(acts["fc7"].values, FC)
    np.testing.assert_array_equal(acts["vit"].values, VIT)
    # 0-based channel_x = 0, channel_y = 0 is row 1, column 1 (x is the height axis)
    np.testing.assert_array_equal(acts["conv5"].sel(channel=1, row=1, column=1).values,
                                  CONV[:, 0, 0, 0])
    np.testing.assert_array_equal(acts["conv5"].sel(row=2, column=5).values, CONV[:, :, 1, 4])
    assert acts["conv5"]["row"].values.tolist() == [1, 2]
    # the StimulusSet's columns are stimulus fields, text kept as text
    assert acts["fc7"]["stimulus"].values.tolist() == IMAGES
    assert acts["fc7"]["object_name"].values.tolist() == ["cat", "dog", "car", "cup"]
    assert acts["fc7"]["image_label"].values.tolist() == [3, 1, 4, 1]


def test_neuroids_in_any_order_land_on_their_units():
    assembly = neuroid_assembly({"conv5": CONV})
    shuffled = assembly.isel(neuroid=RNG.permutation(assembly.sizes["neuroid"]))
    conv5 = dx.from_neuroid_assembly(shuffled)["conv5"]
    # units come in order of first appearance, each labelled by its own numbers
    np.testing.assert_array_equal(conv5.sortby(["channel", "row", "column"]).values, CONV)


def test_neuroids_that_do_not_fill_a_grid_are_refused():
    assembly = neuroid_assembly({"conv5": CONV}).isel(neuroid=slice(1, None))
    with pytest.raises(dx.SelectionError, match=r"do not fill its channel x row x column grid "
                                                r"\(3 x 2 x 5 units, 29 neuroids\)"):
        dx.from_neuroid_assembly(assembly)


def fc_assembly(channel: object) -> xr.DataArray:
    """An fc layer of three neuroids numbered by ``channel``."""
    return xr.DataArray(FC[:, :3], dims=("presentation", "neuroid"), coords={
        "stimulus_id": ("presentation", IMAGES), "layer": ("neuroid", ["fc"] * 3),
        "channel": ("neuroid", channel)})


@pytest.mark.parametrize(("bad", "shown"), [
    (np.inf, "inf"), (1e19, "1e+19"), (np.nan, "nan"), (-1.0, "-1"), (0.5, "0.5")])
def test_channel_numbers_that_are_not_unit_numbers_are_refused(bad, shown):
    # inf and numbers beyond int64 became channel -9223372036854775807
    with pytest.raises(dx.SelectionError, match=re.escape(
            f"layer 'fc': channel holds {shown}, which is not a 0-based unit number (NaN "
            "beside numbers, infinite, negative, fractional or beyond int64)")):
        dx.from_neuroid_assembly(fc_assembly([0.0, bad, 2.0]))
    largest = dx.from_neuroid_assembly(fc_assembly([0.0, 2.0**62, 2.0]))["fc"]
    assert largest["channel"].values.tolist() == [1, 2**62 + 1, 3]
    np.testing.assert_array_equal(largest.values, FC[:, :3])


def test_text_channel_numbers_are_refused(tmp_path):
    for channel in (["a", "b", "c"], ["0", "1", "2"]):  # digits too: text is no number
        with pytest.raises(dx.SelectionError, match=re.escape(
                f"layer 'fc': channel holds text such as {channel[0]!r}, not 0-based unit "
                "numbers; model-tools numbers units 0, 1, 2, ...")):
            dx.from_neuroid_assembly(fc_assembly(channel))
    fc_assembly(["a", "b", "c"]).to_netcdf(tmp_path / "assy.nc", engine="h5netcdf")
    with pytest.raises(dx.ActFileError, match=re.escape(
            f"{str(tmp_path / 'assy.nc')!r}: layer 'fc': channel holds text such as 'a'")):
        dx.open_brainio(tmp_path / "assy.nc")


def test_an_assembly_saves_for_dnnbrain_and_round_trips(tmp_path):
    acts = dx.from_neuroid_assembly(neuroid_assembly({"conv5": CONV, "fc7": FC, "vit": VIT}))
    for suffix in (".act.h5", ".nc"):
        with saved_and_reread(acts, tmp_path, suffix) as back:
            for name in acts:
                assert back[name].dims == acts[name].dims
                np.testing.assert_array_equal(back[name].values, acts[name].values)
            assert back["vit"]["object_name"].values.tolist() == ["cat", "dog", "car", "cup"]
    assert read_reference_act(tmp_path / "peer.act.h5")["fc7"].shape == (4, 6, 1, 1)


def test_to_neuroid_assembly_is_the_inverse_even_after_a_mask():
    acts = dx.from_neuroid_assembly(neuroid_assembly({"conv5": CONV, "fc7": FC, "vit": VIT}))
    masked = acts.mask(dx.DnnMask({"conv5": {"channel": [3, 1], "column": [5, 2]}, "fc7": {},
                                   "vit": {"channel": [2]}}))
    assembly = dx.to_neuroid_assembly(masked)
    assert assembly.dims == ("presentation", "neuroid")
    conv = assembly.sel(layer="conv5")
    assert conv["channel"].values[:4].tolist() == [2.0, 2.0, 2.0, 2.0]  # 0-based
    assert np.isnan(assembly.sel(layer="fc7")["channel_x"].values).all()
    back = dx.from_neuroid_assembly(assembly)
    for name in masked:
        assert back[name].dims == masked[name].dims
        np.testing.assert_array_equal(back[name].values, masked[name].values)
        for dim in masked[name].dims[1:]:
            np.testing.assert_array_equal(back[name][dim].values, masked[name][dim].values)
    assert back["fc7"]["object_name"].values.tolist() == ["cat", "dog", "car", "cup"]


def test_to_neuroid_assembly_refuses_layers_of_other_stimuli():
    # one presentation dim labels every layer: values of stimuli in another order
    # would be put under the first layer's IDs
    first = xr.DataArray(FC[:2], dims=("stimulus", "channel"), coords={"stimulus": ["x", "y"]})
    swapped = xr.DataArray(FC[1::-1], dims=("stimulus", "channel"),
                           coords={"stimulus": ["y", "x"]})
    with pytest.raises(dx.DnnMaskError, match=re.escape(
            "layer 'b' labels its stimuli differently from layer 'a' (stimulus IDs differ); "
            "all layers of a file share one stimulus table")):
        dx.to_neuroid_assembly({"a": first, "b": swapped})
    # the layers chosen are the ones checked, and they give the assembly's IDs
    assembly = dx.to_neuroid_assembly({"a": first, "b": swapped}, layers=["b"])
    assert assembly["stimulus_id"].values.tolist() == ["y", "x"]
    np.testing.assert_array_equal(assembly.values, FC[1::-1])
    aligned = dx.to_neuroid_assembly({"a": first, "b": swapped.sel(stimulus=["x", "y"])})
    np.testing.assert_array_equal(aligned.values, np.concatenate([FC[:2], FC[:2]], axis=1))


def test_to_neuroid_assembly_of_no_layer_or_no_stimulus():
    fc = xr.DataArray(FC, dims=("stimulus", "channel"))
    with pytest.raises(dx.UsageError, match=re.escape(
            "an assembly holds at least one layer, and layers=[] names none")):
        dx.to_neuroid_assembly({"fc": fc}, layers=[])
    with pytest.raises(dx.UsageError, match="the activations hold none"):
        dx.to_neuroid_assembly({})
    # no stimuli is still an assembly, and reads back
    empty = dx.to_neuroid_assembly({"fc": fc[:0]})
    assert empty.shape == (0, 6)
    assert dx.from_neuroid_assembly(empty)["fc"].shape == (0, 6)


@pytest.mark.parametrize("name", ["stimulus", "channel", "token"])
def test_a_presentation_coordinate_named_like_the_ids_is_refused(name):
    # as a stimulus field, 'stimulus' replaced the IDs stimulus_id gives
    assembly = neuroid_assembly({"fc7": FC}).assign_coords(
        {name: ("presentation", ["a", "b", "c", "d"])})
    with pytest.raises(dx.SelectionError, match=re.escape(
            f"the assembly's presentation coordinate {name!r} would be a stimulus field "
            "named like the stimulus IDs or a unit dim (stimulus, token, channel, row, "
            "column); rename or drop it")):
        dx.from_neuroid_assembly(assembly)


@pytest.mark.parametrize("name", ["stimulus_id", "layer", "embedding"])
def test_a_stimulus_field_named_like_an_assembly_coordinate_is_refused(name):
    # a field 'stimulus_id' replaced the IDs in the assembly
    fc = xr.DataArray(FC, dims=("stimulus", "channel"), coords={
        "stimulus": IMAGES, name: ("stimulus", ["p", "q", "r", "s"])})
    with pytest.raises(dx.SelectionError, match=re.escape(
            f"stimulus field {name!r} has the name of a coordinate the assembly has of its "
            "own (presentation, stimulus_id, neuroid, neuroid_id, layer, channel, channel_x, "
            "channel_y, embedding); rename the field")):
        dx.to_neuroid_assembly({"fc": fc})
    kept = dx.to_neuroid_assembly({"fc": fc.rename({name: "other"})})
    assert kept["stimulus_id"].values.tolist() == IMAGES
    assert kept["other"].values.tolist() == ["p", "q", "r", "s"]


def test_a_brainio_netcdf_file_opens(tmp_path):
    # BrainIO writes an assembly with its MultiIndexes reset into plain coordinates
    assembly = neuroid_assembly({"conv5": CONV, "fc7": FC}).reset_index(["presentation",
                                                                         "neuroid"])
    assembly.to_netcdf(tmp_path / "assy.nc", engine="h5netcdf")
    acts = dx.open_brainio(tmp_path / "assy.nc")
    np.testing.assert_array_equal(acts["conv5"].values, CONV)
    assert acts["fc7"].dims == ("stimulus", "channel")
    with pytest.raises(dx.ActFileError, match=re.escape(
            f"cannot open {str(tmp_path / 'missing.nc')!r}: no such file")):
        dx.open_brainio(tmp_path / "missing.nc")
    # HDF5's own text ran to two lines
    with pytest.raises(dx.ActFileError, match=re.escape(
            f"cannot open {str(tmp_path)!r}: it is a folder, not a BrainIO netCDF file")
            + "$"):
        dx.open_brainio(tmp_path)
    (tmp_path / "text.nc").write_text("not netCDF")
    with pytest.raises(dx.ActFileError, match=re.escape(
            "text.nc' is not an HDF5 file; a BrainIO netCDF file is HDF5 with the assembly "
            "as one netCDF4 variable")):
        dx.open_brainio(tmp_path / "text.nc")


def test_an_act_h5_given_as_a_brainio_file_is_refused_in_one_line(tmp_path):
    # bug: h5netcdf's warning about naming dimensions came before the error
    dx.save_act({"conv5": CONV}, tmp_path / "run.act.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(dx.ActFileError, match=re.escape(
                f"{str(tmp_path / 'run.act.h5')!r}: the assembly has dims (")):
            dx.open_brainio(tmp_path / "run.act.h5")


def test_assemblies_of_other_shapes_are_refused_in_one_line():
    assembly = neuroid_assembly({"fc7": FC})
    with pytest.raises(dx.SelectionError, match=r"has dims .*presentation and neuroid"):
        dx.from_neuroid_assembly(assembly.rename(presentation="stimulus"))
    binned = assembly.expand_dims(time_bin=2)
    with pytest.raises(dx.SelectionError, match=r"has 2 time bins; select one first"):
        dx.from_neuroid_assembly(binned)
    one_bin = dx.from_neuroid_assembly(assembly.expand_dims(time_bin=1))
    np.testing.assert_array_equal(one_bin["fc7"].values, FC)


# -- Net2Brain -------------------------------------------------------------------------------

def test_net2brain_consolidated_files_one_per_layer(tmp_path):
    stems = [name.removesuffix(".jpg") for name in IMAGES]
    for name, values in (("layer1", CONV), ("fc", FC)):
        np.savez_compressed(tmp_path / f"consolidated_{name}.npz",
                            **{stem: values[i][None] for i, stem in enumerate(stems)})
    acts = dx.read_net2brain(tmp_path)
    assert sorted(acts) == ["fc", "layer1"]
    np.testing.assert_array_equal(acts["layer1"].values, CONV)
    assert acts["fc"].dims == ("stimulus", "channel")
    assert acts["fc"]["stimulus"].values.tolist() == stems


def test_net2brain_files_one_per_stimulus(tmp_path):
    for i, image in enumerate(IMAGES):
        np.savez(tmp_path / f"{image[:-4]}.npz", **{"layer1": CONV[i][None], "fc": FC[i][None]})
    acts = dx.read_net2brain(tmp_path)
    order = np.argsort([image[:-4] for image in IMAGES])  # files read in name order
    np.testing.assert_array_equal(acts["layer1"].values, CONV[order])
    assert acts["layer1"]["stimulus"].values.tolist() == sorted(i[:-4] for i in IMAGES)
    np.savez(tmp_path / "zzz.npz", layer1=CONV[0][None])
    with pytest.raises(dx.ActFileError, match=r"zzz\.npz' has no layer 'fc'"):
        dx.read_net2brain(tmp_path)


def test_net2brain_files_that_disagree_on_their_layers_either_way_are_refused(tmp_path):
    # a layer only later files hold was dropped; an empty first file gave no layer
    np.savez(tmp_path / "img1.npz", fc=FC[0][None])
    np.savez(tmp_path / "img2.npz", fc=FC[1][None], conv=CONV[1][None])
    with pytest.raises(dx.ActFileError, match=re.escape(
            f"{str(tmp_path / 'img2.npz')!r} has a layer 'conv', which "
            f"{str(tmp_path / 'img1.npz')!r} has not; every stimulus's file holds the same "
            "layers")):
        dx.read_net2brain(tmp_path)
    np.savez(tmp_path / "img1.npz")
    with pytest.raises(dx.ActFileError, match=re.escape(
            f"{str(tmp_path / 'img1.npz')!r} holds nothing; Net2Brain's .npz files hold one "
            "array per layer")):
        dx.read_net2brain(tmp_path)
    np.savez(tmp_path / "img1.npz", fc=FC[0][None], conv=CONV[0][None])
    acts = dx.read_net2brain(tmp_path)
    assert list(acts) == ["fc", "conv"]
    np.testing.assert_array_equal(acts["conv"].values, CONV[:2])


def test_net2brain_files_that_are_not_archives_of_arrays_are_refused(tmp_path):
    np.save(tmp_path / "img1.npy", FC[0][None])
    (tmp_path / "img1.npy").rename(tmp_path / "img1.npz")
    with pytest.raises(dx.ActFileError, match=re.escape(
            "img1.npz' holds one array, as np.save writes; Net2Brain's .npz files hold one "
            "array per layer")):
        dx.read_net2brain(tmp_path)
    np.savez(tmp_path / "consolidated_fc.npz", img1=FC[0][None])
    (tmp_path / "consolidated_fc.npz").write_bytes(
        (tmp_path / "consolidated_fc.npz").read_bytes()[:40])  # cut off
    with pytest.raises(dx.ActFileError, match=r"cannot read .*consolidated_fc\.npz' as an "
                                              r"\.npz file \(File is not a zip file\)"):
        dx.read_net2brain(tmp_path)


def test_net2brain_layer_files_must_hold_the_same_stimuli(tmp_path):
    np.savez(tmp_path / "consolidated_a.npz", x=FC[0][None], y=FC[1][None])
    np.savez(tmp_path / "consolidated_b.npz", x=FC[0][None], z=FC[1][None])
    with pytest.raises(dx.ActFileError, match="stimulus key 'y' is in one layer's file"):
        dx.read_net2brain(tmp_path)


def test_peers_need_no_torch_or_brainscore():
    import subprocess
    import sys

    code = ("import sys, dnnmask_xr as dx; dx.read_thingsvision; dx.from_neuroid_assembly; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'brainio', 'brainscore', 'thingsvision', 'net2brain')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_stimulus_set_text_columns_reach_a_stim_csv(tmp_path):
    acts = dx.from_neuroid_assembly(neuroid_assembly({"fc7": FC}))
    labelled = acts.with_stimuli(dx.Stimuli(
        {"type": "image", "path": "images", "text": "object_name"},
        pd.DataFrame({"stimID": IMAGES, "object_name": ["cat", "dog", "car", "cup"],
                      "image_label": [3.0, 1.0, 4.0, 1.0]})))
    dx.write_stim(labelled.stimuli, tmp_path / "set.stim.csv")
    assert dx.read_stim(tmp_path / "set.stim.csv").equals(labelled.stimuli)
