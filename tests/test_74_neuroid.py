"""The neuroid view: stacking layers into (stimulus, neuroid) and back, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnmask_xr import (
    Activations,
    DnnMaskError,
    SelectionError,
    open_act,
    stack_neuroids,
    unstack_neuroids,
)
from dnnmask_xr.act.layout import DIMS


@st.composite
def layer_sets(draw):
    """A few layers of any small shape, with numbers in any order."""
    n_stim = draw(st.integers(1, 4))
    names = draw(st.lists(st.sampled_from(["conv1", "conv5", "fc3", "features.3"]),
                          min_size=1, max_size=3, unique=True))
    layers = {}
    for seed, name in enumerate(names):
        shape = draw(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)))
        numbers = {dim: draw(st.permutations(range(1, size + 5)))[:size]
                   for dim, size in zip(DIMS[1:], shape, strict=True)}
        values = np.random.default_rng(seed).standard_normal((n_stim, *shape))
        layers[name] = xr.DataArray(values, dims=DIMS, coords=numbers)
    return Activations(layers)


@settings(max_examples=examples(40), deadline=None)
@given(acts=layer_sets())
def test_stack_matches_numpy_and_unstack_gives_the_layers_back(acts):
    stacked = stack_neuroids(acts)
    n_stim = acts.n_stimuli
    expected = np.concatenate([array.values.reshape(n_stim, -1) for array in acts.values()],
                              axis=1)
    np.testing.assert_array_equal(stacked.values, expected)
    assert stacked.dims == ("stimulus", "neuroid")
    assert list(stacked.indexes["neuroid"].names) == ["layer", "channel", "row", "column"]
    first = next(iter(acts))
    layer = acts[first]
    part = stacked.sel(layer=first)
    assert part.sizes["neuroid"] == layer[0].size
    np.testing.assert_array_equal(part["channel"].values,
                                  np.repeat(layer.channel.values, layer[0, 0].size))
    back = unstack_neuroids(stacked)
    assert list(back) == list(acts)
    for name in acts:
        xr.testing.assert_identical(back[name], acts[name])


@settings(max_examples=examples(20), deadline=None)
@given(acts=layer_sets(), data=st.data())
def test_unstack_accepts_neuroids_in_any_order(acts, data):
    stacked = stack_neuroids(acts)
    order = data.draw(st.permutations(range(stacked.sizes["neuroid"])))
    back = unstack_neuroids(stacked.isel(neuroid=list(order)))
    for name in acts:
        xr.testing.assert_equal(back[name].sortby(["channel", "row", "column"]),
                                acts[name].sortby(["channel", "row", "column"]))


def test_selected_layers_in_the_order_given_with_stimulus_labels(act_file, stim_file, layers):
    acts = open_act(act_file, stim=stim_file)
    stacked = stack_neuroids(acts, ["fc3", "conv5"])
    assert list(dict.fromkeys(stacked["layer"].values)) == ["fc3", "conv5"]
    np.testing.assert_array_equal(stacked.sel(layer="fc3").values, layers["fc3"].reshape(5, -1))
    np.testing.assert_array_equal(stacked.sel(layer="conv5", channel=3, row=2, column=4).values,
                                  layers["conv5"][:, 2, 1, 3])
    assert list(stacked.condition.values) == ["dog", "cat", "dog", "cat", "dog"]
    back = unstack_neuroids(stacked)
    assert list(back) == ["fc3", "conv5"]
    np.testing.assert_array_equal(back["conv5"].values, layers["conv5"])
    assert list(back["conv5"].condition.values) == list(stacked.condition.values)


def test_dask_layers_stay_lazy(act_file, layers):
    stacked = stack_neuroids(open_act(act_file, chunks={}))
    assert stacked.chunks is not None
    back = unstack_neuroids(stacked)
    assert back["conv5"].chunks is not None
    np.testing.assert_array_equal(back["conv5"].values, layers["conv5"])
    maps = unstack_neuroids(stacked.mean("stimulus"))
    assert maps["conv5"].chunks is not None
    np.testing.assert_allclose(maps["conv5"].values, layers["conv5"].mean(axis=0), rtol=1e-6)


def test_an_incomplete_grid_cannot_be_unstacked(act_file):
    stacked = stack_neuroids(open_act(act_file), ["conv5"])
    with pytest.raises(SelectionError, match=r"the neuroids of layer 'conv5' do not fill its "
                                             r"channel x row x column grid \(20 x 6 x 7 = 840 "
                                             r"units, 839 neuroids given\)"):
        unstack_neuroids(stacked.isel(neuroid=slice(1, None)))


def test_an_unknown_layer_is_named(act_file):
    with pytest.raises(SelectionError, match=r"layer 'conv6' is not in the activations "
                                             r"\(layers: conv5, fc3\)"):
        stack_neuroids(open_act(act_file), ["conv6"])


def test_unstack_needs_the_neuroid_coordinates():
    plain = xr.DataArray(np.zeros((2, 3)), dims=("stimulus", "neuroid"))
    with pytest.raises(SelectionError, match="lacks stimulus, layer, channel, row, column"):
        unstack_neuroids(plain)


# --- selections and per-unit results back on the grid ---------------------------------------

def _stack_slices(acts) -> dict[str, slice]:
    """Where each layer's neuroids are in stack_neuroids' order."""
    slices, start = {}, 0
    for name, array in acts.items():
        slices[name] = slice(start, start + array[0].size)
        start += array[0].size
    return slices


@pytest.mark.properties
@settings(max_examples=examples(40), deadline=None)
@given(acts=layer_sets(), data=st.data())
def test_results_with_leading_dims_go_back_on_each_grid(acts, data):
    stacked = stack_neuroids(acts)
    n_comp = data.draw(st.integers(1, 3))
    values = np.random.default_rng(0).standard_normal((n_comp, stacked.sizes["neuroid"]))
    weights = xr.DataArray(values, dims=("component", "neuroid"), name="weight",
                           coords={"component": np.arange(n_comp) + 10,
                                   **stacked["neuroid"].coords}, attrs={"units": "a.u."})
    back = unstack_neuroids(weights)
    assert isinstance(back, dict) and list(back) == list(acts)
    for name, where in _stack_slices(acts).items():
        layer = acts[name]
        grid = back[name]
        assert grid.dims == ("component", "channel", "row", "column")
        np.testing.assert_array_equal(grid.values, values[:, where].reshape(n_comp,
                                                                            *layer.shape[1:]))
        for dim in ("channel", "row", "column"):
            np.testing.assert_array_equal(grid[dim].values, layer[dim].values)
        assert grid["component"].values.tolist() == list(range(10, 10 + n_comp))
        assert (grid.name, grid.attrs, grid["layer"].item()) == ("weight", {"units": "a.u."},
                                                                 name)
    # in any order of the neuroids, each value stays with its unit
    order = list(data.draw(st.permutations(range(stacked.sizes["neuroid"]))))
    shuffled = unstack_neuroids(weights.isel(neuroid=order))
    for name in acts:
        xr.testing.assert_identical(shuffled[name].sortby(["channel", "row", "column"]),
                                    back[name].sortby(["channel", "row", "column"]))


@settings(max_examples=examples(30), deadline=None)
@given(acts=layer_sets())
def test_a_score_per_neuroid_is_a_map_per_layer(acts):
    stacked = stack_neuroids(acts)
    w = np.random.default_rng(1).standard_normal(stacked.sizes["neuroid"])
    score = (stacked * xr.DataArray(w, dims="neuroid")).mean("stimulus")
    wrapped = xr.DataArray(w, dims="neuroid", coords=stacked["neuroid"].coords)
    maps, plain = unstack_neuroids(score), unstack_neuroids(wrapped)
    for name, where in _stack_slices(acts).items():
        layer = acts[name].values
        expected = (layer * w[where].reshape(layer.shape[1:])).mean(axis=0)
        assert maps[name].dims == ("channel", "row", "column")
        np.testing.assert_allclose(maps[name].values, expected, rtol=1e-12)
        np.testing.assert_array_equal(plain[name].values, w[where].reshape(layer.shape[1:]))
        np.testing.assert_array_equal(plain[name].channel.values, acts[name].channel.values)


@settings(max_examples=examples(30), deadline=None)
@given(acts=layer_sets())
def test_a_layer_selected_by_sel_unstacks(acts):
    # .sel(layer=...) drops the 'layer' level, leaving it a scalar coordinate
    stacked = stack_neuroids(acts)
    for name in acts:
        back = unstack_neuroids(stacked.sel(layer=name))
        assert list(back) == [name]
        xr.testing.assert_identical(back[name], acts[name])
        maps = unstack_neuroids(stacked.sel(layer=name).mean("stimulus"))
        np.testing.assert_array_equal(maps[name].values, acts[name].values.mean(axis=0))
    first = next(iter(acts))
    channel = int(acts[first].channel[-1])
    one = unstack_neuroids(stacked.sel(layer=first, channel=channel))
    xr.testing.assert_identical(one[first], acts[first].sel(channel=[channel]))


def test_several_layers_selected_by_isel_unstack(act_file, layers):
    # xarray's .sel takes no list along a MultiIndex level: .isel with a boolean does
    stacked = stack_neuroids(open_act(act_file))
    picked = stacked.isel(neuroid=stacked["layer"].isin(["fc3", "conv5"]).values)
    back = unstack_neuroids(picked)
    assert list(back) == ["conv5", "fc3"]
    for name in back:
        np.testing.assert_array_equal(back[name].values, layers[name])
    # a sub-grid (every row and column of channels 2 and 5) fills a grid of its own
    sub = stacked.isel(neuroid=(stacked["layer"] == "conv5").values
                       & stacked["channel"].isin([5, 2]).values)
    np.testing.assert_array_equal(unstack_neuroids(sub)["conv5"].values,
                                  layers["conv5"][:, [1, 4]])


def test_coordinates_along_neuroid_go_on_the_grid_too(act_file, layers):
    stacked = stack_neuroids(open_act(act_file), ["fc3"])
    score = stacked.mean("stimulus").assign_coords(rank=("neuroid", np.arange(12)[::-1]))
    rank = unstack_neuroids(score)["fc3"]["rank"]
    assert rank.dims == ("channel", "row", "column")
    np.testing.assert_array_equal(rank.values, np.arange(12)[::-1].reshape(12, 1, 1))


def test_a_result_with_missing_units_is_refused(act_file):
    score = stack_neuroids(open_act(act_file), ["conv5"]).mean("stimulus")
    with pytest.raises(SelectionError, match=r"the neuroids of layer 'conv5' do not fill its "
                                             r"channel x row x column grid \(20 x 6 x 7 = 840 "
                                             r"units, 839 neuroids given\)"):
        unstack_neuroids(score.isel(neuroid=slice(1, None)))


def test_a_result_needs_the_neuroid_coordinates():
    plain = xr.DataArray(np.zeros(3), dims="neuroid")
    with pytest.raises(SelectionError, match=r"has dims \('neuroid',\) and lacks layer, "
                                             r"channel, row, column$"):
        unstack_neuroids(plain)


def _weights(channel, layer=("fc3", "fc3")):
    """Weights along neuroid, labelled by hand (from a table, a file, another tool)."""
    return xr.DataArray(np.arange(4.0).reshape(2, 2), dims=("component", "neuroid"), coords={
        "layer": ("neuroid", np.asarray(layer, dtype=object)), "channel": ("neuroid", channel),
        "row": ("neuroid", [1, 1]), "column": ("neuroid", [1, 1])})


@pytest.mark.parametrize(("channel", "shown"), [
    ([1.5, 2.5], "1.5"),
    ([np.nan, 2.0], "nan"),
    ([np.inf, 2.0], "inf"),
    ([2.0**63, 2.0], r"9\.223372036854776e\+18"),
    (np.array([1, 2**64 - 1], dtype=np.uint64), "18446744073709551615"),
    (["1", "2"], r"'1' \(<U1\)"),
    ([True, False], r"True \(bool\)"),
], ids=["fraction", "nan", "inf", "past-int64", "uint64", "text", "bool"])
def test_neuroids_numbered_by_what_is_no_unit_number_are_refused(channel, shown):
    # cast to int64, 1.5 was channel 1, 2**64-1 channel -1, True channel 1, NaN ValueError
    with pytest.raises(SelectionError, match=rf"^layer 'fc3': its channel coordinate holds "
                                             rf"{shown}, which is not a unit number"):
        unstack_neuroids(_weights(channel))


@pytest.mark.parametrize("layer", [(1, 1), (None, None), ("fc3", np.nan)],
                         ids=["number", "none", "nan"])
def test_neuroids_of_no_layer_name_are_refused(layer):
    # NaN beside names was numpy's IndexError
    with pytest.raises(SelectionError, match=r"^the layer coordinate holds .*, which is not a "
                                             r"layer name"):
        unstack_neuroids(_weights([1, 2], layer))


def test_integral_float_numbers_are_unit_numbers():
    maps = unstack_neuroids(_weights([3.0, 1.0]))
    np.testing.assert_array_equal(maps["fc3"]["channel"].values, [3, 1])
    assert maps["fc3"]["channel"].dtype == np.int64
    np.testing.assert_array_equal(maps["fc3"].values[:, :, 0, 0], [[0.0, 1.0], [2.0, 3.0]])


# --- dtypes: the stacked matrix holds every layer's values exactly, or is refused ---------

MIXED_DTYPES = ("int64", "uint64", "int32", "float32", "float64", "bool")


def _extremes(dtype: np.dtype) -> np.ndarray:
    """Values of a dtype that a narrower common dtype would round or clip."""
    if dtype.kind == "b":
        return np.array([False, True])
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    near = [info.max, info.max - 1, info.min] if dtype.kind in "iu" else [
        info.max, -info.max, info.smallest_subnormal, 1 + info.eps, np.nan]
    return np.array(near, dtype=dtype)


@pytest.mark.properties
@settings(max_examples=examples(60), deadline=None)
@given(kinds=st.lists(st.sampled_from(MIXED_DTYPES), min_size=1, max_size=3), data=st.data(),
       chunked=st.booleans())
def test_layers_of_mixed_dtypes_stack_exactly_or_are_refused(kinds, data, chunked):
    from hypothesis.extra.numpy import arrays, from_dtype

    layers = {}
    for i, kind in enumerate(kinds):
        dtype = np.dtype(kind)
        shape = (2, data.draw(st.integers(1, 3)), 1, 3)
        values = data.draw(arrays(dtype, shape, elements=from_dtype(dtype)))
        # the extremes go in: 2**62 + 1 among them, and whatever float64 cannot hold
        values.reshape(-1)[:3] = np.resize(_extremes(dtype), 3)
        layer = xr.DataArray(values, dims=DIMS, coords={
            "channel": np.arange(1, shape[1] + 1), "row": [1], "column": [1, 2, 3]})
        layers[f"l{i}"] = layer.chunk() if chunked else layer
    common = np.result_type(*kinds)
    # numpy's own cast is the oracle: the common dtype must give back every extreme
    with np.errstate(invalid="ignore"):  # uint64's max comes back from float64 out of range
        exact = all(np.array_equal(_extremes(np.dtype(kind)).astype(common).astype(kind),
                                   _extremes(np.dtype(kind)), equal_nan=np.dtype(kind).kind == "f")
                    for kind in kinds)
    if not exact:
        with pytest.raises(SelectionError, match=r"^layers '\w+' \(\w+\) and '\w+' \(\w+\) have "
                                                 r"no common dtype that holds both exactly"):
            stack_neuroids(layers)
        return
    stacked = stack_neuroids(layers)
    assert stacked.dtype == common
    np.testing.assert_array_equal(
        stacked.values,
        np.concatenate([layer.values.reshape(2, -1).astype(common)
                        for layer in layers.values()], axis=1))
    back = unstack_neuroids(stacked)
    for name, layer in layers.items():
        np.testing.assert_array_equal(back[name].values.astype(layer.dtype), layer.values)
        np.testing.assert_array_equal(back[name].values, layer.values.astype(common))


@pytest.mark.parametrize("chunks", [None, {}], ids=["lazy", "dask"])
def test_an_int64_layer_beside_a_float_layer_is_refused(tmp_path, chunks):
    from dnnmask_xr import save_act

    big = np.full((2, 1, 1, 2), 2**62 + 1, dtype=np.int64)
    path = tmp_path / "mixed.act.h5"
    save_act({"counts": xr.DataArray(big, dims=DIMS),
              "conv5": xr.DataArray(np.ones((2, 3, 1, 1), np.float32), dims=DIMS)}, path)
    acts = open_act(path, chunks=chunks)
    with pytest.raises(SelectionError, match=r"^layers 'counts' \(int64\) and 'conv5' "
                                             r"\(float32\) have no common dtype that holds both "
                                             r"exactly \(float64 would round int64 values\); "
                                             r"stack them separately"):
        stack_neuroids(acts)
    back = unstack_neuroids(stack_neuroids(acts, ["counts"]))
    np.testing.assert_array_equal(back["counts"].values, big)
    acts.close()


# --- the stimuli every stacked layer must share ----------------------------------------------


def _fc(ids, condition, scale=1.0):
    return xr.DataArray(np.arange(6.0).reshape(2, 3) * scale, dims=("stimulus", "channel"),
                        coords={"stimulus": ids, "condition": ("stimulus", condition)})


@pytest.mark.parametrize(("other", "difference"), [
    (_fc(["s2", "s1"], ["dog", "cat"], 10), "stimulus IDs differ"),
    (_fc(["s1", "s2"], ["bird", "fish"], 10), "values of field 'condition' differ"),
], ids=["order", "fields"])
def test_layers_that_label_their_stimuli_differently_are_refused(other, difference):
    # one stimulus dim labels every layer's values: the order was xarray's AlignmentError,
    # other field values were dropped for the first layer's without a word
    acts = {"fc1": _fc(["s1", "s2"], ["cat", "dog"]), "fc2": other}
    with pytest.raises(DnnMaskError, match=rf"^layer 'fc2' labels its stimuli differently "
                                           rf"from layer 'fc1' \({difference}\)"):
        stack_neuroids(acts)
    # the layers not chosen are not asked
    np.testing.assert_array_equal(stack_neuroids(acts, ["fc2"]).values, other.values)


@pytest.mark.parametrize("dim", ["channel", "row", "column"])
def test_a_unit_dim_numbered_0_alone_is_refused(dim):
    # 0 marks a dim a layer does not have: unstacking dropped such a dim without a word
    shape = {"stimulus": 2, "channel": 3, "row": 2, "column": 2, dim: 1}
    layer = xr.DataArray(np.arange(np.prod(list(shape.values())), dtype=float).reshape(
        tuple(shape.values())), dims=DIMS, coords={dim: [0]})
    with pytest.raises(SelectionError, match=rf"^layer 'conv5' numbers its {dim} 0 alone"):
        stack_neuroids({"conv5": layer})
    renumbered = Activations({"conv5": layer.assign_coords({dim: [1]})})
    back = unstack_neuroids(stack_neuroids(renumbered))
    xr.testing.assert_identical(back["conv5"], renumbered["conv5"])


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_layers_of_no_stimulus_stack_and_unstack(chunked):
    # bug: a selection of no stimulus (a condition no stimulus has) raised NumPy's
    # ValueError (cannot reshape array of size 0 into shape (0,newaxis)) from xarray's stack
    layers = Activations({"fc": np.zeros((0, 3), np.float32),
                          "tokens": np.zeros((0, 2, 2), np.float32)})
    if chunked:
        layers = Activations({name: layer.chunk() for name, layer in layers.items()})
    stacked = stack_neuroids(layers)
    assert stacked.dims == ("stimulus", "neuroid")
    assert stacked.shape == (0, 7)
    assert stacked.indexes["neuroid"].get_level_values("layer").tolist() == ["fc"] * 3 + [
        "tokens"] * 4
    back = unstack_neuroids(stacked)
    assert {name: layer.shape for name, layer in back.items()} == {"fc": (0, 3),
                                                                     "tokens": (0, 2, 2)}
