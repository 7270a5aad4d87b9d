"""The neuroid view: stacking layers into (stimulus, neuroid) and back, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnmask_xr import Activations, SelectionError, open_act, stack_neuroids, unstack_neuroids
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


@settings(max_examples=40, deadline=None)
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


@settings(max_examples=20, deadline=None)
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
