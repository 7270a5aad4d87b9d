"""Layers of any network: 2-, 3- and 4-D layers with their own unit dims.

A layer is ``stimulus`` then one to three named unit dims. An ``.act.h5``
stores it 4-D, padded with trailing length-1 axes (as DNNBrain stores fc
layers), its dims in the layer attribute ``dims`` and each unit dim's
labels under its own name; a ``.nc`` stores it with its own dims. Every
read route gives it back with its dims; DNNBrain's reader sees 4-D arrays;
a mask's chn/row/col address the first, second and third unit dim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reliability import assert_one_line_error, run_cli, run_here

import dnnmask_xr as dx
from dnnmask_xr.testing import read_reference_act

SUFFIXES = (".act.h5", ".nc")


def network(n_stim: int = 5) -> dict[str, xr.DataArray]:
    """Layers of a vision transformer and a CNN: tokens, an embedding, a conv map.

    The labels are not ``1..n`` (a mask already kept some units), so that a
    test fails if they are lost or taken from another axis.
    """
    rng = np.random.default_rng(7)
    return {
        "vit": xr.DataArray(rng.random((n_stim, 4, 6), dtype=np.float32),
                            dims=("stimulus", "token", "channel"),
                            coords={"token": [1, 2, 5, 9], "channel": np.arange(11, 17)}),
        "embedding": xr.DataArray(rng.standard_normal((n_stim, 7)),
                                  dims=("stimulus", "channel")),
        "conv5": xr.DataArray(rng.integers(-50, 50, (n_stim, 3, 2, 4), dtype=np.int16),
                              dims=("stimulus", "channel", "row", "column"),
                              coords={"channel": [200, 3, 17]}),
        "timecourse": xr.DataArray(rng.random((n_stim, 3, 8), dtype=np.float32),
                                   dims=("stimulus", "channel", "time_bin")),
    }


def stimuli() -> dx.Stimuli:
    n_stim = 5
    return dx.Stimuli({"type": "image", "path": "images"},
                      pd.DataFrame({"stimID": [f"img{i}.png" for i in range(n_stim)],
                                    "condition": ["face", "house", "face", "car", "car"]}))


@pytest.fixture
def acts() -> dx.Activations:
    return dx.Activations(network()).with_stimuli(stimuli())


def assert_same_layers(got: dx.Activations, want: Mapping[str, xr.DataArray]) -> None:
    """Values, dtype, dims, unit labels and stimulus labels agree exactly, layer by layer."""
    assert list(got) == list(want)
    for name in want:
        mine, theirs = got[name], want[name]
        assert mine.dims == theirs.dims, name
        assert mine.dtype == theirs.dtype, name
        np.testing.assert_array_equal(mine.values, theirs.values)
        for dim in theirs.dims:
            np.testing.assert_array_equal(mine[dim].values, theirs[dim].values)
        np.testing.assert_array_equal(mine["condition"].values, theirs["condition"].values)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_then_open_gives_every_layer_back_with_its_dims(acts, tmp_path, suffix):
    out = tmp_path / f"net{suffix}"
    dx.save_act(acts, out)
    with dx.open_act(out) as back:
        assert_same_layers(back, acts)
        assert back.stim_header == {"type": "image", "path": "images"}


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_datatree_and_the_backend_give_the_same_dims(acts, tmp_path, suffix):
    out = tmp_path / f"net{suffix}"
    dx.save_act(dx.to_datatree(acts), out)
    tree = xr.open_datatree(out, engine="dnnact")
    try:
        assert tree["vit"]["vit"].dims == ("stimulus", "token", "channel")
        np.testing.assert_array_equal(tree["vit"]["token"].values, [1, 2, 5, 9])
        assert_same_layers(dx.from_datatree(tree), acts)
    finally:
        tree.close()
    one = xr.open_dataset(out, engine="dnnact", group="embedding")
    try:
        assert one["embedding"].dims == ("stimulus", "channel")
        np.testing.assert_array_equal(one["embedding"].values, acts["embedding"].values)
    finally:
        one.close()


def test_act_h5_layout_is_padded_4d_that_dnnbrain_reads(acts, tmp_path):
    out = tmp_path / "net.act.h5"
    dx.save_act(acts, out)
    seen = read_reference_act(out)  # DNNBrain's reader: every root key a 4-D array
    assert {name: array.shape for name, array in seen.items()} == {
        "vit": (5, 4, 6, 1), "embedding": (5, 7, 1, 1), "conv5": (5, 3, 2, 4),
        "timecourse": (5, 3, 8, 1)}
    np.testing.assert_array_equal(seen["vit"][..., 0], acts["vit"].values)
    np.testing.assert_array_equal(seen["embedding"][:, :, 0, 0], acts["embedding"].values)
    with h5py.File(out) as f:
        vit = dict(f["vit"].attrs)
        assert list(vit["dims"]) == ["stimulus", "token", "channel"]
        np.testing.assert_array_equal(vit["token"], [1, 2, 5, 9])
        np.testing.assert_array_equal(vit["channel"], np.arange(11, 17))
        assert set(vit) == {"dims", "token", "channel"}
        # a layer of DNNBrain's dims is written as before: no dims attribute
        assert set(f["conv5"].attrs) == {"channel", "row", "column"}


def test_nc_stores_layers_with_their_own_dims(acts, tmp_path):
    out = tmp_path / "net.nc"
    dx.save_act(acts, out)
    tree = xr.open_datatree(out, engine="h5netcdf")  # without this package's reader
    try:
        assert tree["vit"]["vit"].dims == ("stimulus", "token", "channel")
        assert tree["embedding"]["embedding"].dims == ("stimulus", "channel")
        np.testing.assert_array_equal(tree["vit"]["vit"].values, acts["vit"].values)
        np.testing.assert_array_equal(tree["vit"]["token"].values, [1, 2, 5, 9])
    finally:
        tree.close()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_set_of_files_concatenates_layers_of_any_dims(acts, tmp_path, suffix):
    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    dx.save_act(acts.isel(stimulus=[0, 1]), first)
    dx.save_act(acts.isel(stimulus=[2, 3, 4]), second)
    with dx.open_act([first, second]) as both:
        assert_same_layers(both, acts)


def test_files_of_a_set_must_agree_on_a_layers_dims(acts, tmp_path):
    first, second = tmp_path / "a.act.h5", tmp_path / "b.act.h5"
    dx.save_act(acts.isel(stimulus=[0, 1]), first)
    other = {name: array.isel(stimulus=[2, 3, 4]) for name, array in acts.items()}
    other["vit"] = other["vit"].rename(token="patch")
    dx.save_act(dx.Activations(other), second)
    with pytest.raises(dx.ActFileError, match=r"stores layer 'vit' with dims .*'patch'"):
        dx.open_act([first, second])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_selection_of_an_opened_token_layer_is_saved_exactly(acts, tmp_path, suffix):
    out = tmp_path / f"net{suffix}"
    dx.save_act(acts, out)
    with dx.open_act(out) as opened:
        chosen = opened.sel(layer=["vit"], channel=[16, 11]).isel(token=[3, 0])
        dx.save_act(chosen, tmp_path / f"chosen{suffix}")
    with dx.open_act(tmp_path / f"chosen{suffix}") as back:
        assert list(back) == ["vit"]
        np.testing.assert_array_equal(back["vit"].values,
                                      acts["vit"].values[:, [3, 0]][:, :, [5, 0]])
        np.testing.assert_array_equal(back["vit"]["channel"].values, [16, 11])
        np.testing.assert_array_equal(back["vit"]["token"].values, [9, 1])


def test_a_middle_axis_dropped_from_a_file_layer_is_saved_as_the_remaining_dims(acts, tmp_path):
    # .isel(row=0) of a stored conv layer leaves (stimulus, channel, column): the
    # stored positions are not those of the padded layout, so the values are read
    dx.save_act(acts, tmp_path / "net.act.h5")
    with dx.open_act(tmp_path / "net.act.h5") as opened:
        layer = opened["conv5"].isel(row=1).drop_vars("row")
        dx.save_act({"conv5": layer}, tmp_path / "row.act.h5")
    with dx.open_act(tmp_path / "row.act.h5") as back:
        assert back["conv5"].dims == ("stimulus", "channel", "column")
        np.testing.assert_array_equal(back["conv5"].values, acts["conv5"].values[:, :, 1, :])


def test_dnn_mask_chn_selects_tokens_of_a_token_layer_in_order(acts, tmp_path):
    dx.save_act(acts, tmp_path / "net.act.h5")
    run = run_cli("-act", tmp_path / "net.act.h5", "-layer", "vit", "-chn", "3", "1",
                  "-out", tmp_path / "tokens.act.h5")
    assert (run.returncode, run.stderr) == (0, "")
    with dx.open_act(tmp_path / "tokens.act.h5") as back:
        assert back["vit"].dims == ("stimulus", "token", "channel")
        np.testing.assert_array_equal(back["vit"]["token"].values, [5, 1])
        np.testing.assert_array_equal(back["vit"].values, acts["vit"].values[:, [2, 0]])
    seen = read_reference_act(tmp_path / "tokens.act.h5")
    np.testing.assert_array_equal(seen["vit"][..., 0], acts["vit"].values[:, [2, 0]])


def test_a_dmask_addresses_the_first_second_and_third_unit_dim(acts, tmp_path):
    dx.save_act(acts, tmp_path / "net.act.h5")
    (tmp_path / "m.dmask.csv").write_text("vit=chn,row\n4\n2,6\ntimecourse=row\n8,1\n")
    dx.mask_file(tmp_path / "net.act.h5", tmp_path / "m.act.h5",
                 dx.read_dmask(tmp_path / "m.dmask.csv"))
    with dx.open_act(tmp_path / "m.act.h5") as back:
        np.testing.assert_array_equal(back["vit"].values, acts["vit"].values[:, [3]][:, :, [1, 5]])
        np.testing.assert_array_equal(back["vit"]["token"].values, [9])
        np.testing.assert_array_equal(back["vit"]["channel"].values, [12, 16])
        np.testing.assert_array_equal(back["timecourse"].values,
                                      acts["timecourse"].values[:, :, [7, 0]])
        np.testing.assert_array_equal(back["timecourse"]["time_bin"].values, [8, 1])
    # Activations.mask reads a mask the same way (by label here: the labels of vit)
    masked = acts.mask(dx.DnnMask({"vit": {"channel": [9], "row": [12, 16]}}))
    np.testing.assert_array_equal(masked["vit"].values, acts["vit"].values[:, [3]][:, :, [1, 5]])


@pytest.mark.parametrize(("args", "patterns"), [
    (["-layer", "vit", "-chn", "7"],
     [re.escape("token number 7 is out of range for layer 'vit' (valid: 1..4)"),
      "the n-th token stored", re.escape("as does .sel(token=[...])")]),
    (["-layer", "embedding", "-chn", "8"],
     [re.escape("channel number 8 is out of range for layer 'embedding' (valid: 1..7); "
                "numbers are 1-based")]),
])
def test_command_errors_name_the_unit_dim(acts, tmp_path, args, patterns):
    dx.save_act(acts, tmp_path / "net.act.h5")
    run = run_here("-act", tmp_path / "net.act.h5", *args, "-out", tmp_path / "out.act.h5")
    assert run.returncode == 1
    assert_one_line_error(run.stderr, *patterns)
    assert not (tmp_path / "out.act.h5").exists()


def test_a_mask_line_for_a_unit_dim_the_layer_lacks_is_refused(acts, tmp_path):
    dx.save_act(acts, tmp_path / "net.act.h5")
    (tmp_path / "m.dmask.csv").write_text("embedding=row\n1\n")
    run = run_here("-act", tmp_path / "net.act.h5", "-dmask", tmp_path / "m.dmask.csv",
                   "-out", tmp_path / "out.act.h5")
    assert run.returncode == 1
    assert_one_line_error(run.stderr, re.escape("layer 'embedding' has 1 unit dim(s) (channel)"),
                          "the mask gives row numbers, which address unit dim 2")
    assert not (tmp_path / "out.act.h5").exists()


def test_plain_arrays_are_layers_numbered_from_one(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"fc": rng.random((3, 5)), "tokens": rng.random((3, 2, 4)).astype(np.float32),
              "conv": rng.integers(0, 9, (3, 2, 2, 2))}
    report = dx.save_act(arrays, tmp_path / "plain.act.h5")
    assert [layer.name for layer in report.layers] == ["fc", "tokens", "conv"]
    with dx.open_act(tmp_path / "plain.act.h5") as back:
        assert back["fc"].dims == ("stimulus", "channel")
        assert back["tokens"].dims == ("stimulus", "token", "channel")
        assert back["conv"].dims == ("stimulus", "channel", "row", "column")
        for name, values in arrays.items():
            np.testing.assert_array_equal(back[name].values, values)
            assert back[name].dtype == values.dtype
        np.testing.assert_array_equal(back["tokens"]["token"].values, [1, 2])
        np.testing.assert_array_equal(back["fc"]["stimulus"].values, [1, 2, 3])


class TensorLike:
    """What a CPU torch tensor offers numpy: ``__array__`` and nothing of numpy's API."""

    def __init__(self, values: np.ndarray) -> None:
        self._values = values

    def __array__(self, dtype=None, copy=None):
        return self._values if dtype is None else self._values.astype(dtype)


def test_anything_numpy_takes_is_a_layer(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    dx.save_act({"fc": TensorLike(values)}, tmp_path / "t.act.h5")
    with dx.open_act(tmp_path / "t.act.h5") as back:
        np.testing.assert_array_equal(back["fc"].values, values)


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_a_masked_array_is_a_layer_only_without_masked_values(tmp_path, dtype):
    # bug: its masked values were saved as NaN and its integers as float64, without a word
    # (xarray's reading of a masked array), where numpy.asarray keeps the values and dtype
    values = np.arange(6, dtype=dtype).reshape(3, 2)
    with pytest.raises(dx.DnnMaskError, match=(
            r"^layer 'fc' is a masked array with 2 masked values, which a file cannot mark; "
            r"give \.filled\(\.\.\.\) to store a value in their place \(np\.nan for NaN\), "
            r"or \.data to store the values under the mask$")):
        dx.save_act({"fc": np.ma.masked_array(values, mask=[[0, 1], [0, 0], [1, 0]])},
                    tmp_path / "t.act.h5")
    assert list(tmp_path.iterdir()) == []
    # nothing masked (as netCDF4-python reads every variable): the values as they are
    with dx.ActWriter(tmp_path / "t.act.h5") as out:
        out.append({"fc": np.ma.masked_array(values)})
        out.append({"fc": np.ma.masked_array(values, mask=np.zeros_like(values, bool))})
    with dx.open_act(tmp_path / "t.act.h5") as back:
        assert back["fc"].dtype == dtype
        np.testing.assert_array_equal(back["fc"].values, np.concatenate([values, values]))


@pytest.mark.parametrize(("layer", "message"), [
    (xr.DataArray(np.zeros((2, 3)), dims=("channel", "stimulus")),
     "layer 'x' has dims ('channel', 'stimulus'); a layer's first dim is stimulus"),
    (xr.DataArray(np.zeros((2, 1, 1, 1, 1)),
                  dims=("stimulus", "a", "b", "c", "d")), "it has 4 unit dims"),
    (xr.DataArray(np.zeros(2), dims=("stimulus",)), "it has 0 unit dims"),
    (xr.DataArray(np.zeros((2, 3)), dims=("stimulus", "layer")), "unit dim 'layer'"),
    (xr.DataArray(np.zeros((2, 3)), dims=("stimulus", "dims")), "unit dim 'dims'"),
    (xr.DataArray(np.zeros((2, 3)), dims=("stimulus", "a/b")), "unit dim 'a/b'"),
    (np.zeros(4), "plain arrays of numbers with 2, 3 or 4 dims"),
])
def test_layers_of_dims_a_file_cannot_name_are_refused(layer, message):
    with pytest.raises(dx.DnnMaskError) as err:
        dx.Activations({"x": layer})
    assert message in str(err.value)


def test_a_stimulus_field_named_like_a_unit_dim_is_refused(acts):
    table = dx.Stimuli({"type": "image", "path": "p"},
                       pd.DataFrame({"stimID": list("abcde"), "token": np.arange(5.0)}))
    with pytest.raises(dx.SelectionError, match="stimulus field 'token' has the name of a dim"):
        acts.with_stimuli(table)


def test_a_file_whose_dims_attribute_does_not_fit_the_layer_is_refused(tmp_path):
    path = tmp_path / "bad.act.h5"
    with h5py.File(path, "w") as f:
        f["vit"] = np.zeros((2, 3, 4, 1))
        f["vit"].attrs["dims"] = np.array(["stimulus", "token"], dtype=object)
    with pytest.raises(dx.ActFileError, match=r"the stored axes after the named ones must "
                                              r"have length 1"):
        dx.open_act(path)
    run = run_here("-act", path, "-layer", "vit", "-out", tmp_path / "o.act.h5")
    assert run.returncode == 1
    assert_one_line_error(run.stderr, re.escape("layer 'vit' has shape (2, 3, 4, 1) but its "
                                                "attribute 'dims' names 2 dims"))


@pytest.mark.parametrize(("dims", "message"), [
    (np.array([1, 2]), "attribute 'dims' must list the layer's dims as strings"),
    (["token", "channel"], "it names the layer's dims, stimulus first"),
    (["stimulus", "token", "token"], "a unit dim is named twice"),
    (["stimulus", "a", "b", "c", "d"], "it has 4 unit dims"),
    (["stimulus", "layer"], "unit dim 'layer' is not a valid name"),
    (["stimulus"], "it has 0 unit dims"),
])
@pytest.mark.parametrize("reader", ["open_act", "command"])
def test_a_damaged_dims_attribute_is_refused_in_one_line(tmp_path, dims, message, reader):
    path = tmp_path / "bad.act.h5"
    with h5py.File(path, "w") as f:
        f["vit"] = np.zeros((2, 3, 1, 1))
        f["vit"].attrs.create("dims", np.array(dims, dtype=object) if isinstance(dims, list)
                              else dims, dtype=h5py.string_dtype() if isinstance(dims, list)
                              else None)
    if reader == "open_act":
        with pytest.raises(dx.ActFileError, match=re.escape(message)):
            dx.open_act(path)
    else:
        run = run_here("-act", path, "-layer", "vit", "-out", tmp_path / "o.act.h5")
        assert run.returncode == 1
        assert_one_line_error(run.stderr, "layer 'vit'", re.escape(message))
        assert not (tmp_path / "o.act.h5").exists()


def test_a_field_of_the_file_named_like_a_unit_dim_is_refused(tmp_path):
    path = tmp_path / "bad.act.h5"
    dx.save_act({"vit": np.zeros((2, 3, 4))}, path)
    with h5py.File(path, "a") as f:  # a field 'token' beside the layer's token dim
        f.attrs["stimulus"] = np.array(["a", "b"], dtype=object)
        f.attrs.create("stimulus_fields", ["token"], dtype=h5py.string_dtype())
        f.attrs["stimulus:token"] = [1.0, 2.0]
    with pytest.raises(dx.ActFileError, match="has the unit dim 'token', which is also the "
                                              "name of a stimulus field"):
        dx.open_act(path)
    run = run_here("-act", path, "-layer", "vit", "-out", tmp_path / "o.act.h5")
    assert run.returncode == 1
    assert_one_line_error(run.stderr, "unit dim 'token'", "stimulus field")


def test_stacking_merges_unit_dims_and_unstacking_gives_them_back(acts):
    stacked = dx.stack_neuroids(acts)
    assert stacked.indexes["neuroid"].names == ["layer", "token", "channel", "row", "column",
                                                "time_bin"]
    vit = stacked.sel(layer="vit")
    assert (vit["row"].values == 0).all()  # 0: a dim the layer does not have
    back = dx.unstack_neuroids(stacked)
    assert stacked.dtype == np.float64  # the layers' common dtype: exact for all of them
    assert_same_layers(back, {name: layer.astype(np.float64) for name, layer in acts.items()})
    assert_same_layers(dx.unstack_neuroids(dx.stack_neuroids(acts, ["timecourse", "vit"])),
                       {name: acts[name] for name in ["timecourse", "vit"]})
    # a score per neuroid goes back on each layer's own grid
    score = dx.unstack_neuroids(stacked.mean("stimulus"))
    assert score["vit"].dims == ("token", "channel")
    np.testing.assert_array_equal(score["vit"].values,
                                  acts["vit"].astype(np.float64).mean("stimulus").values)


def test_layers_that_order_dims_differently_are_not_stacked_together(acts):
    swapped = {"vit": acts["vit"],
               "vit_t": acts["vit"].transpose("stimulus", "channel", "token")}
    with pytest.raises(dx.SelectionError, match="order their unit dims differently"):
        dx.stack_neuroids(swapped)


def test_sel_applies_a_dim_to_the_layers_that_have_it(acts):
    chosen = acts.sel(token=[9, 1])
    np.testing.assert_array_equal(chosen["vit"]["token"].values, [9, 1])
    assert chosen["conv5"].sizes == acts["conv5"].sizes  # no token dim: kept whole
    with pytest.raises(dx.UsageError, match="'token' is not a dim of the layers chosen"):
        acts.sel(layer=["conv5"], token=[1])


def test_chunks_follow_each_layers_own_dims(acts, tmp_path):
    pytest.importorskip("dask")
    dx.save_act(acts, tmp_path / "net.act.h5")
    with dx.open_act(tmp_path / "net.act.h5", chunks={"token": 1}) as chunked:
        assert chunked["vit"].chunks == ((5,), (1, 1, 1, 1), (6,))
        np.testing.assert_array_equal(chunked["vit"].values, acts["vit"].values)
    with pytest.raises(dx.UsageError, match="chunks name dimension 'patch'"):
        dx.open_act(tmp_path / "net.act.h5", chunks={"patch": 1})


@settings(max_examples=examples(25), deadline=None)
@given(values=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=4, max_side=4)),
       suffix=st.sampled_from(SUFFIXES), names=st.permutations(["unit", "token", "channel"]))
def test_any_layer_round_trips_exactly(tmp_path_factory, values, suffix, names):
    dims = ("stimulus", *names[:values.ndim - 1])
    layer = xr.DataArray(values, dims=dims)
    out = tmp_path_factory.mktemp("any") / f"x{suffix}"
    dx.save_act({"x": layer}, out)
    with dx.open_act(out) as back:
        assert back["x"].dims == dims
        np.testing.assert_array_equal(back["x"].values, values)
    if suffix == ".act.h5":  # DNNBrain's reader sees the layer padded to 4-D
        seen = read_reference_act(out)["x"]
        np.testing.assert_array_equal(seen.reshape(values.shape), values)
        assert seen.shape == values.shape + (1,) * (4 - values.ndim)


@st.composite
def layer_and_mask(draw):
    """A layer of 1 to 3 unit dims and a mask of numbers (1-based, any order, repeats)."""
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=4))
    values = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    numbers = {}
    for stored, size in zip(("channel", "row", "column"), shape[1:], strict=False):
        if draw(st.booleans()):
            numbers[stored] = draw(st.lists(st.integers(1, size), min_size=1, max_size=5))
    return values, numbers


@settings(max_examples=examples(25), deadline=None)
@given(case=layer_and_mask(), suffix=st.sampled_from(SUFFIXES))
def test_a_mask_of_any_layer_equals_numpy_indexing(tmp_path_factory, case, suffix):
    values, numbers = case
    folder = tmp_path_factory.mktemp("mask")
    dims = ("stimulus", "a", "b", "c")[:values.ndim]
    dx.save_act({"x": xr.DataArray(values, dims=dims)}, folder / "in.act.h5")
    dx.mask_file(folder / "in.act.h5", folder / f"out{suffix}", {"x": numbers})
    want = values
    for axis, stored in enumerate(("channel", "row", "column"), start=1):
        if stored in numbers:
            want = np.take(want, np.array(numbers[stored]) - 1, axis=axis)
    with dx.open_act(folder / f"out{suffix}") as back:
        assert back["x"].dims == dims
        np.testing.assert_array_equal(back["x"].values, want)
        for axis, stored in enumerate(("channel", "row", "column")[:values.ndim - 1]):
            np.testing.assert_array_equal(back["x"][dims[axis + 1]].values,
                                          numbers.get(stored, np.arange(1, values.shape[axis + 1]
                                                                        + 1)))
