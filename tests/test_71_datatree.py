"""Activations <-> DataTree, and DataTree -> .act.h5 -> DataTree, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from dnnmask_xr import (
    Activations,
    DnnMaskError,
    from_datatree,
    open_act,
    read_stim,
    save_act,
    to_datatree,
)
from dnnmask_xr.act.layout import DIMS


@pytest.fixture
def acts(layers, stim_file) -> Activations:
    """In-memory layers with cut channels, a stimulus table and provenance."""
    arrays = {
        "conv5": xr.DataArray(layers["conv5"][:, [7, 2, 15]], dims=DIMS,
                              coords={"channel": [8, 3, 16]}),
        "fc3": xr.DataArray(layers["fc3"].astype(np.float64), dims=DIMS),
    }
    return Activations(arrays, attrs={"source": "net.act.h5"}).with_stimuli(
        read_stim(stim_file))


def assert_same_layers(got: Activations, expected: Activations) -> None:
    assert list(got) == list(expected)
    for name in expected:
        xr.testing.assert_identical(got[name].load(), expected[name].load())
        assert got[name].dtype == expected[name].dtype
    assert got.stim_header == expected.stim_header


def test_tree_has_stimuli_on_the_root_and_a_node_per_layer(acts):
    tree = to_datatree(acts)
    assert list(tree.children) == ["conv5", "fc3"]
    assert tree.attrs == {"source": "net.act.h5"}
    assert tree["stimulus"].attrs == {"type": "image", "path": "/data/images"}
    assert list(tree.to_dataset(inherit=False).coords) == ["stimulus", "label", "condition",
                                                          "onset"]
    conv5 = tree["conv5/conv5"]
    assert conv5.dims == DIMS
    assert list(conv5.channel.values) == [8, 3, 16]
    assert list(conv5.stimulus.values) == [f"img{i}.png" for i in range(5)]
    # the stimulus index is inherited from the root; the fields are on the node too
    assert list(tree["conv5"].to_dataset(inherit=False).coords) == [
        "channel", "row", "column", "label", "condition", "onset"]


def test_activations_to_tree_and_back_is_exact(acts):
    back = from_datatree(to_datatree(acts))
    assert_same_layers(back, acts)
    assert back.attrs == acts.attrs


def test_tree_to_act_file_to_tree_is_exact(acts, tmp_path):
    tree = to_datatree(acts)
    path = tmp_path / "tree.act.h5"
    save_act(tree, path)
    again = xr.open_datatree(path, engine="dnnact")
    assert list(again.children) == list(tree.children)
    for name in tree.children:
        xr.testing.assert_identical(again[name].to_dataset().load(),
                                    tree[name].to_dataset().load())
    root, expected_root = again.to_dataset(inherit=False), tree.to_dataset(inherit=False)
    xr.testing.assert_identical(root.drop_attrs(deep=False), expected_root.drop_attrs(deep=False))
    # saving adds when and by what the file was written, and keeps the rest
    assert again.attrs.items() >= tree.attrs.items() and {"date", "software"} <= set(again.attrs)
    assert_same_layers(open_act(path), acts)
    again.close()


def test_selecting_stimuli_on_the_tree_by_a_field(acts, layers):
    tree = to_datatree(acts)
    cats = tree.sel(stimulus=tree.condition == "cat")
    np.testing.assert_array_equal(cats["fc3/fc3"].values, layers["fc3"][[1, 3]])
    assert list(cats["stimulus"].values) == ["img1.png", "img3.png"]


def test_a_layer_node_groups_by_a_stimulus_field(acts, layers):
    tree = to_datatree(acts)
    conv5 = tree["conv5"]["conv5"]
    means = conv5.groupby("condition").mean()
    assert list(means.condition.values) == ["cat", "dog"]
    np.testing.assert_allclose(means.sel(condition="cat").values,
                               layers["conv5"][[1, 3]][:, [7, 2, 15]].mean(axis=0))
    for name in ("label", "condition", "onset"):
        np.testing.assert_array_equal(conv5[name].values, acts["conv5"][name].values)
        np.testing.assert_array_equal(tree["fc3"][name].values, tree[name].values)


def test_a_tree_with_fields_on_the_root_alone_gives_them_to_every_layer(acts):
    # as trees were made, and .nc files written, before layer nodes held the fields
    tree = to_datatree(acts)
    fields = ["label", "condition", "onset"]
    bare = xr.DataTree.from_dict({
        "/": tree.to_dataset(inherit=False),
        **{name: tree[name].to_dataset(inherit=False).drop_vars(fields) for name in acts},
    })
    assert "condition" not in bare["conv5"].coords
    assert_same_layers(from_datatree(bare), acts)


def test_a_node_whose_field_differs_from_the_root_is_refused(acts):
    tree = to_datatree(acts)
    relabelled = ("stimulus", ["a", "b", "c", "d", "e"])
    tree["fc3"] = tree["fc3"].to_dataset(inherit=False).assign_coords(condition=relabelled)
    with pytest.raises(DnnMaskError, match=r"^node '/fc3' holds stimulus field 'condition' "
                                           r"with values other than the root's; a tree"):
        from_datatree(tree)
    # changed alike everywhere, it is the new label
    tree = xr.DataTree.from_dict({
        node.path: node.to_dataset(inherit=False).assign_coords(condition=relabelled)
        for node in tree.subtree})
    assert list(from_datatree(tree)["conv5"].condition.values) == ["a", "b", "c", "d", "e"]


def test_lazy_layers_stay_lazy(act_file, layers):
    tree = to_datatree(open_act(act_file, chunks={}))
    assert tree["conv5/conv5"].chunks is not None
    np.testing.assert_array_equal(tree["conv5/conv5"].values, layers["conv5"])


def test_nested_nodes_are_refused(acts):
    tree = to_datatree(acts)
    tree["conv5/deeper"] = xr.DataTree()
    with pytest.raises(DnnMaskError, match=r"node '/conv5' holds groups \(deeper\); a tree of "
                                           "activations has one node per layer"):
        from_datatree(tree)


def test_a_layer_node_holds_one_variable(acts):
    tree = to_datatree(acts)
    tree["fc3"] = tree["fc3"].to_dataset(inherit=False).assign(extra=tree["fc3/fc3"] * 2)
    with pytest.raises(DnnMaskError, match=r"node '/fc3' holds 2 variables \(fc3, extra\); a "
                                           "layer node holds one"):
        from_datatree(tree)


def test_a_layer_named_like_a_field_is_refused(acts):
    renamed = Activations({"label": acts["fc3"]})
    with pytest.raises(DnnMaskError, match=r"layer 'label' has the name of a dimension or "
                                           "stimulus field"):
        to_datatree(renamed)


def test_layers_labelling_stimuli_differently_are_refused(acts):
    other = acts["fc3"].assign_coords(label=("stimulus", [9, 9, 9, 9, 9]))
    with pytest.raises(DnnMaskError, match=r"layer 'fc3' labels its stimuli differently from "
                                           "layer 'conv5'"):
        to_datatree(Activations({"conv5": acts["conv5"], "fc3": other}))


@pytest.mark.parametrize("suffix", [".act.h5", ".nc"])
def test_a_layer_nodes_own_attributes_are_the_layers(acts, tmp_path, suffix):
    # they were dropped without a word by from_datatree, and so by save_act of the tree
    tree = to_datatree(acts)
    tree["conv5"].attrs["note"] = "pooled"
    tree["conv5"]["conv5"].attrs["units"] = "relu"
    assert from_datatree(tree)["conv5"].attrs == {"note": "pooled", "units": "relu"}
    out = tmp_path / f"tree{suffix}"
    save_act(tree, out)
    with open_act(out) as back:
        assert back["conv5"].attrs == {"note": "pooled", "units": "relu"}
        np.testing.assert_array_equal(back["conv5"].values, acts["conv5"].values)
    # the same attribute given otherwise on the node and on its variable: neither is picked
    tree["conv5"]["conv5"].attrs["note"] = "max"
    with pytest.raises(DnnMaskError, match=(
            r"^node '/conv5' has attribute 'note' = 'pooled', and its variable 'conv5' has "
            r"'note' = 'max'; a layer's attributes are one set: give the attribute on one "
            r"of them$")):
        from_datatree(tree)
    tree["conv5"]["conv5"].attrs["note"] = "pooled"  # the same on both: one attribute
    assert from_datatree(tree)["conv5"].attrs["note"] == "pooled"
