"""Text of every numpy kind is stored as text: Python strings, fixed-width unicode, StringDType.

NumPy 2's ``StringDType`` is what zarr 3 and recent pandas give text
coordinates as; numpy's fixed-width unicode is what ``np.array(["a"])``
makes. Wherever the writer takes text (stimulus IDs, fields, layer and
root attributes) both are stored as variable-length UTF-8, and read back
as Python strings, as text written any other way.
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import dnnmask_xr as dx

SUFFIXES = (".act.h5", ".nc")
StringDType = getattr(np.dtypes, "StringDType", None) if hasattr(np, "dtypes") else None
KINDS = ["object", "unicode"] + (["StringDType"] if StringDType is not None else [])


def text(values: list[str], kind: str) -> np.ndarray:
    if kind == "object":
        return np.array(values, dtype=object)
    if kind == "unicode":
        return np.array(values)
    return np.array(values, dtype=StringDType())


def layer(kind: str) -> xr.DataArray:
    return xr.DataArray(
        np.arange(6, dtype=np.float32).reshape(3, 2), dims=("stimulus", "channel"),
        coords={"stimulus": text(["img1.png", "img2.png", "é.png"], kind),
                "condition": ("stimulus", text(["face", "house", "face"], kind))},
        attrs={"units": text(["a.u."], kind)[0] if kind != "object" else "a.u.",
               "classes": text(["face", "house"], kind)})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_text_of_any_kind_is_stored_and_read_back_as_python_strings(tmp_path, suffix, kind):
    out = tmp_path / f"t{suffix}"
    acts = dx.Activations({"fc": layer(kind)}, attrs={"title": text(["a study"], kind),
                                                      "tags": text(["x", "y"], kind)})
    dx.save_act(acts, out)
    with dx.open_act(out) as back:
        fc = back["fc"]
        assert fc["stimulus"].values.tolist() == ["img1.png", "img2.png", "é.png"]
        assert fc["stimulus"].dtype == object
        assert fc["condition"].values.tolist() == ["face", "house", "face"]
        assert np.asarray(fc.attrs["classes"]).tolist() == ["face", "house"]
        assert np.asarray(back.attrs["tags"]).tolist() == ["x", "y"]
        np.testing.assert_array_equal(fc.values, np.arange(6).reshape(3, 2))
    if suffix == ".act.h5":  # variable-length UTF-8, as h5py reads any text attribute
        with h5py.File(out) as f:
            assert f.attrs["stimulus"].tolist() == ["img1.png", "img2.png", "é.png"]
            assert h5py.check_string_dtype(f.attrs.get_id("stimulus").dtype).encoding == "utf-8"
            assert f["fc"].attrs["classes"].tolist() == ["face", "house"]


@pytest.mark.skipif(StringDType is None, reason="StringDType needs NumPy 2")
def test_a_tree_read_back_from_zarr_saves(tmp_path):
    pytest.importorskip("zarr")
    stimuli = dx.Stimuli({"type": "image", "path": "images"},
                         pd.DataFrame({"stimID": ["a.png", "b.png", "c.png"],
                                       "condition": ["face", "car", "face"]}))
    acts = dx.Activations({"vit": np.arange(24, dtype=np.float32).reshape(3, 2, 4),
                           "conv": np.ones((3, 2, 2, 2))}).with_stimuli(stimuli)
    store = tmp_path / "acts.zarr"
    dx.to_datatree(acts).to_zarr(store)
    tree = xr.open_datatree(store, engine="zarr")
    try:
        dx.save_act(dx.from_datatree(tree), tmp_path / "back.act.h5")
    finally:
        tree.close()
    with dx.open_act(tmp_path / "back.act.h5") as back:
        for name in acts:
            assert back[name].dims == acts[name].dims
            np.testing.assert_array_equal(back[name].values, acts[name].values)
            assert back[name]["stimulus"].values.tolist() == ["a.png", "b.png", "c.png"]
            assert back[name]["condition"].values.tolist() == ["face", "car", "face"]
        assert back.stim_header == {"type": "image", "path": "images"}


@pytest.mark.parametrize("kind", KINDS)
def test_text_that_hdf5_cannot_hold_is_refused_whatever_its_kind(tmp_path, kind):
    bad = layer(kind).assign_coords(condition=("stimulus", text(["a", "b\x00c", "d"], kind)))
    with pytest.raises(dx.DnnMaskError, match=r"holds a NUL character"):
        dx.save_act({"fc": bad}, tmp_path / "t.act.h5")
    assert not (tmp_path / "t.act.h5").exists()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_text_stimulus_fields_round_trip_through_a_file_and_a_stim_csv(tmp_path, suffix):
    # a Brain-Score StimulusSet's columns: text, integers and floats
    table = pd.DataFrame({"stimID": ["im1", "im2", "im3"],
                          "object_name": ["dog", "cat", "dog"], "label": [0, 1, 0],
                          "image_file_name": ["im1.png", "im2.png", "im3.png"],
                          "rxy": [0.5, -0.25, 1.0]})
    stimuli = dx.Stimuli({"type": "image", "path": "images",
                          "text": "object_name,image_file_name"}, table)
    acts = dx.Activations({"fc": np.ones((3, 2))}).with_stimuli(stimuli)
    dx.save_act(acts, tmp_path / f"a{suffix}")
    with dx.open_act(tmp_path / f"a{suffix}") as back:
        assert back.stimuli.equals(stimuli)
        dx.write_stim(back.stimuli, tmp_path / "s.stim.csv")
    assert dx.read_stim(tmp_path / "s.stim.csv").equals(stimuli)
    assert (tmp_path / "s.stim.csv").read_text().splitlines()[:4] == [
        "type=image", "path=images", "text=object_name,image_file_name",
        "data=stimID,object_name,label,image_file_name,rxy"]


def test_activations_declare_their_text_fields(tmp_path):
    layer = xr.DataArray(np.ones((2, 1)), dims=("stimulus", "channel"),
                         coords={"stimulus": ["a", "b"],
                                 "word": ("stimulus", text(["x", "y"], KINDS[-1])),
                                 "size": ("stimulus", [1.0, 2.0])})
    layer["stimulus"].attrs.update(type="image", path="p")
    stimuli = dx.Activations({"fc": layer}).stimuli
    assert dict(stimuli.header) == {"type": "image", "path": "p", "text": "word"}
    assert stimuli.table["word"].tolist() == ["x", "y"]
    assert stimuli.table["size"].dtype == np.float64
