"""Selections across layers (Activations.sel/.isel), and what a save keeps of them."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dnnmask_xr as dx
from dnnmask_xr import Activations, SelectionError, UsageError, open_act, save_act
from dnnmask_xr.act.layout import DIMS
from dnnmask_xr.testing import read_reference_act

SUFFIXES = (".act.h5", ".nc")


@pytest.fixture
def acts(act_file: Path, stim_file: Path) -> Activations:
    opened = open_act(act_file, stim=stim_file)
    yield opened
    opened.close()


# -- .isel / .sel ---------------------------------------------------------------------------

# the file is only read: one for all examples
@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_isel_along_stimulus_and_units_matches_numpy_on_every_layer(act_file, layers, data):
    n_stim = next(iter(layers.values())).shape[0]
    stimuli = data.draw(st.lists(st.integers(0, n_stim - 1), min_size=1, max_size=6))
    channels = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    with open_act(act_file, cache=False) as opened:
        chosen = opened.isel(stimulus=stimuli, channel=channels)
        assert list(chosen) == list(layers)
        for name, array in layers.items():
            np.testing.assert_array_equal(chosen[name].values, array[stimuli][:, channels])
            np.testing.assert_array_equal(chosen[name]["channel"].values,
                                          np.asarray(channels) + 1)


def _slices(size: int) -> st.SearchStrategy[slice]:
    ends = st.none() | st.integers(-size - 3, size + 3)
    return st.builds(slice, ends, ends, st.sampled_from([None, 1, 2, 3, -1, -2, -3]))


@pytest.mark.properties
@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), chunks=st.sampled_from([None, {}]))
def test_isel_by_any_slice_matches_numpy_on_every_layer(act_file, layers, data, chunks):
    # bug: a slice of negative step starting before the first position (stimulus=slice(-9,
    # -8, -1) of 5 stimuli) is empty in numpy but read from the end by xarray's lazy
    # indexing and by dask (their normalize_slice): 4 stimuli of values without a word,
    # under an index of none
    n_stim = next(iter(layers.values())).shape[0]
    stimuli = data.draw(_slices(n_stim))
    channels = data.draw(_slices(6))
    with open_act(act_file, chunks=chunks) as acts:
        chosen = acts.isel(stimulus=stimuli, channel=channels)
        for name, values in layers.items():
            expected = values[stimuli][:, channels]
            np.testing.assert_array_equal(chosen[name].values, expected)
            assert chosen[name].sizes["stimulus"] == chosen[name].stimulus.size


def test_sel_by_stimulus_id_keeps_table_header_attrs_and_source(acts, layers, stim_file):
    chosen = acts.sel(stimulus=["img3.png", "img0.png"])
    assert chosen.n_stimuli == 2
    assert chosen.source == acts.source
    assert chosen.attrs == acts.attrs
    assert chosen.stim_header == {"type": "image", "path": "/data/images"}
    table = chosen.stimuli.table
    assert table["stimID"].tolist() == ["img3.png", "img0.png"]
    assert table["condition"].tolist() == ["cat", "dog"]
    for name, array in layers.items():
        np.testing.assert_array_equal(chosen[name].values, array[[3, 0]])


def test_sel_with_a_boolean_stimulus_field(acts, layers):
    cats = acts.sel(stimulus=acts["conv5"].condition == "cat")
    np.testing.assert_array_equal(cats["fc3"].values, layers["fc3"][[1, 3]])
    assert set(cats["fc3"].condition.values) == {"cat"}


@pytest.mark.parametrize("how", ["sel", "isel"])
def test_a_boolean_of_stimuli_in_another_order_selects_by_their_ids(acts, layers, how):
    # bug: sel took the booleans by position, so a condition computed on the stimuli in
    # another order chose other stimuli without a word (dogs for cats); isel said xarray's
    # conflict over several lines
    reordered = acts.isel(stimulus=[1, 2, 3, 4, 0])
    cats = getattr(acts, how)(stimulus=reordered["conv5"].condition == "cat")
    np.testing.assert_array_equal(cats["fc3"].values, layers["fc3"][[1, 3]])
    assert set(cats["fc3"].condition.values) == {"cat"}
    assert cats["fc3"].stimulus.values.tolist() == ["img1.png", "img3.png"]


@pytest.mark.parametrize("how", ["sel", "isel"])
def test_a_boolean_of_other_stimuli_is_refused_in_one_line(acts, how):
    fewer = acts.isel(stimulus=[0, 1, 2])["conv5"].condition == "cat"
    with pytest.raises(SelectionError, match=(
            rf"^{how}\(stimulus=\.\.\.\): the booleans are labelled by 3 stimuli that are not "
            r"those of layer 'conv5' \(5\); compute them from these activations, or give "
            r"\.values to take them in order$")):
        getattr(acts, how)(stimulus=fewer)


def test_what_xarray_refuses_is_said_in_one_line(acts):
    # bug: xarray's reason was passed on whole, reprs of both arrays over 20 lines
    positions = xr.DataArray([0, 1], dims="stimulus", coords={"stimulus": ["x.png", "y.png"]})
    with pytest.raises(SelectionError, match=(
            r"^layer 'conv5' of '.*in\.act\.h5': dimension coordinate 'stimulus' conflicts "
            r"between indexed and indexing objects$")):
        acts.isel(stimulus=positions)


def test_sel_takes_dnnbrain_axis_names(acts, layers):
    chosen = acts.sel(layer=["conv5"], chn=[3, 1], row=[2], col=[1])
    np.testing.assert_array_equal(chosen["conv5"].values, layers["conv5"][:, [2, 0]][:, :, [1]][
        :, :, :, [0]])
    assert chosen["conv5"].dims == DIMS
    assert chosen["conv5"]["column"].values.tolist() == [1]


def test_sel_layers_by_name_in_the_order_given(acts, layers):
    chosen = acts.sel(layer=["fc3", "conv5"], channel=[2])
    assert list(chosen) == ["fc3", "conv5"]
    np.testing.assert_array_equal(chosen["fc3"].values, layers["fc3"][:, [1]])
    assert list(acts.sel(layer="fc3")) == ["fc3"]
    assert list(acts.isel(layer=[-1, 0])) == ["fc3", "conv5"]


@pytest.mark.parametrize("chosen", [slice(None, None, -1), slice(1, None), slice(0, 1),
                                    slice(-1, None), slice(5, None)], ids=repr)
def test_isel_takes_a_slice_of_layer_positions(acts, chosen):
    # bug: isel(layer=slice(...)) raised Python's TypeError ('slice' object is not iterable)
    assert list(acts.isel(layer=chosen)) == list(acts)[chosen]


def test_sel_takes_a_slice_of_layer_names_from_one_to_the_other(acts):
    assert list(acts.sel(layer=slice("conv5", "fc3"))) == ["conv5", "fc3"]
    assert list(acts.sel(layer=slice("fc3", None))) == ["fc3"]
    assert list(acts.sel(layer=slice(None, "conv5"))) == ["conv5"]
    assert list(acts.sel(layer=slice("fc3", "conv5", -1))) == ["fc3", "conv5"]
    with pytest.raises(SelectionError, match=r"^layer 'conv9' is not in"):
        acts.sel(layer=slice("conv9", None))


@pytest.mark.parametrize("how", ["sel", "isel"])
@pytest.mark.parametrize("chosen", [None, 1.5, {"conv5": 1}], ids=repr)
def test_layers_chosen_by_what_is_no_list_are_usage_errors(acts, how, chosen):
    with pytest.raises(UsageError, match=rf"^{how}\(layer=...\) takes "):
        getattr(acts, how)(layer=chosen)


def test_selection_stays_lazy_until_values_are_asked_for(acts, inflations):
    chosen = acts.sel(stimulus=["img1.png"], channel=[1])
    assert inflations == []
    np.testing.assert_array_equal(chosen["conv5"].values[:, 0], acts["conv5"].values[[1], 0])
    assert inflations


@pytest.mark.parametrize(("call", "message"), [
    (lambda a: a.sel(stimulus="img1.png"),
     "sel(stimulus='img1.png') would drop the stimulus dim, which every layer keeps; give a "
     "list (stimulus=['img1.png']), or select from one layer "
     "(acts['conv5'].sel(stimulus='img1.png'))"),
    (lambda a: a.isel(channel=0), "isel(channel=0) would drop the channel dim"),
    (lambda a: a.sel(neuron=[1]), "sel: 'neuron' is not a dim of the layers chosen; their "
                                  "dims are layer, stimulus, channel (chn), row and column "
                                  "(col)"),
    (lambda a: a.sel(chn=[1], channel=[2]), "'channel' is given twice"),
    (lambda a: a.sel({"channel": [1]}, row=[1]), "not both"),
    (lambda a: a.isel(layer=["conv5"]), "isel(layer=...) takes layer positions"),
    # these said "would drop the ... dim" and advised channel=[{1, 2}], drop=[True]
    (lambda a: a.sel(channel={1, 2}),
     "sel(channel={1, 2}) takes labels: a list, an array or a slice, not a set"),
    (lambda a: a.isel(row=None),
     "isel(row=None) takes positions: a list, an array or a slice, not a NoneType"),
    (lambda a: a.isel(drop=True), "isel: 'drop' is not a dim of the layers chosen"),
    (lambda a: a.isel(channel=np.array(1)), "give a list (channel=[1])"),
    # said by the name given, DNNBrain's (it said isel(channel=0) to a call of isel(chn=0))
    (lambda a: a.isel(chn=0), "isel(chn=0) would drop the channel dim, which every layer "
                              "keeps; give a list (chn=[0]), or select from one layer "
                              "(acts['conv5'].isel(channel=0))"),
    (lambda a: a.sel(col={2}), "sel(col={2}) takes labels"),
])
def test_bad_selections_are_usage_errors(acts, call, message):
    with pytest.raises(UsageError) as err:
        call(acts)
    assert message in str(err.value)


@pytest.mark.parametrize(("call", "message"), [
    (lambda a: a.sel(channel=[1, 15]),
     "layer 'fc3' has no channel 15 (its channel numbers are 1..12)"),
    (lambda a: a.sel(stimulus=["img9.png"]),
     "layer 'conv5' has no stimulus 'img9.png' (its 5 stimuli have other IDs)"),
    (lambda a: a.sel(layer=["conv9"]), "layer 'conv9' is not in"),
    (lambda a: a.sel(layer=["fc3", "fc3"]), "layer 'fc3' is chosen twice"),
    (lambda a: a.isel(layer=[2]), "layer position 2 is out of range"),
    (lambda a: a.isel(row=[7]), "layer 'conv5' of"),
])
def test_selections_that_do_not_fit_name_the_layer(acts, call, message):
    with pytest.raises(SelectionError) as err:
        call(acts)
    assert message in str(err.value)


# -- what a save keeps ----------------------------------------------------------------------

@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("container", ["activations", "dict", "datatree"])
def test_save_of_a_selection_keeps_the_header_table_and_layer_attrs(
        acts, layers, tmp_path, suffix, container):
    chosen = acts.sel(stimulus=["img4.png", "img2.png"])
    marked = {name: array.assign_attrs(units="a.u.", model="alexnet")
              for name, array in chosen.items()}
    given = {"activations": Activations(marked, stim_header=chosen.stim_header),
             "dict": marked, "datatree": dx.to_datatree(Activations(marked))}[container]
    out = tmp_path / f"out{suffix}"
    save_act(given, out)
    with open_act(out) as back:
        assert back.stim_header == {"type": "image", "path": "/data/images"}
        assert back.stimuli.table["stimID"].tolist() == ["img4.png", "img2.png"]
        assert back.stimuli.table["onset"].tolist() == [2.0, 1.0]
        for name, array in layers.items():
            np.testing.assert_array_equal(back[name].values, array[[4, 2]])
            assert back[name].attrs == {"units": "a.u.", "model": "alexnet"}


def test_layer_attrs_in_act_h5_are_dataset_attributes_dnnbrain_ignores(acts, layers, tmp_path):
    out = tmp_path / "out.act.h5"
    save_act({"fc3": acts["fc3"].assign_attrs(units="a.u.")}, out)
    with h5py.File(out, "r") as root:
        assert list(root) == ["fc3"]
        assert root["fc3"].attrs["units"] == "a.u."
    np.testing.assert_array_equal(read_reference_act(out)["fc3"], layers["fc3"])


def test_layers_taken_out_of_activations_carry_the_header(acts):
    assert acts["conv5"]["stimulus"].attrs == acts.stim_header
    assert Activations(dict(acts)).stim_header == acts.stim_header
    assert Activations(dict(acts), stim_header={}).stim_header == {}
    # the header given wins, and the caller's layer keeps its own attributes
    relabelled = Activations(dict(acts), stim_header={"type": "video"})
    assert relabelled["fc3"]["stimulus"].attrs == {"type": "video"}
    assert acts["fc3"]["stimulus"].attrs == {"type": "image", "path": "/data/images"}


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_layers_taken_out_keep_their_header_whichever_layer_comes_first(acts, tmp_path, suffix):
    # a layer of no header (computed, here) first: the header of the others was dropped
    plain = acts["fc3"].copy(data=acts["fc3"].values * 2)
    plain["stimulus"].attrs = {}
    layers = {"scaled": plain, "conv5": acts["conv5"]}
    assert Activations(layers).stim_header == acts.stim_header
    save_act(layers, tmp_path / f"mixed{suffix}")
    with open_act(tmp_path / f"mixed{suffix}") as back:
        assert back.stim_header == {"type": "image", "path": "/data/images"}


def test_layers_that_carry_different_headers_are_refused(acts):
    # the first layer's header was taken for all without a word
    other = acts["conv5"].copy()
    other["stimulus"].attrs = {"type": "image", "path": "/elsewhere"}
    with pytest.raises(dx.DnnMaskError, match=(
            r"^layers 'fc3' and 'conv5' carry different stimulus headers \(path '/data/images' "
            r"and '/elsewhere'\); give the one header with Activations\(\.\.\., "
            r"stim_header=\{\.\.\.\}\)$")):
        Activations({"fc3": acts["fc3"], "conv5": other})
    chosen = Activations({"fc3": acts["fc3"], "conv5": other}, stim_header={"type": "video"})
    assert chosen.stim_header == {"type": "video"}


def test_with_stimuli_refuses_layers_that_label_their_stimuli_differently(acts):
    # the table is attached by position: a layer of the same stimuli in another order
    # was relabelled under the other layers' order, its rows under the wrong IDs
    turned = {"fc3": acts["fc3"], "conv5": acts["conv5"].isel(stimulus=[1, 0, 2, 3, 4])}
    table = dx.Stimuli({"type": "image", "path": "x"},
                       acts.stimuli.table.assign(stimID=[f"s{i}" for i in range(5)]))
    with pytest.raises(dx.DnnMaskError, match=r"^layer 'conv5' labels its stimuli "
                                              r"differently from layer 'fc3' \(stimulus IDs "
                                              r"differ\)"):
        Activations(turned).with_stimuli(table)
    relabelled = acts.with_stimuli(table)
    assert relabelled["conv5"].stimulus.values.tolist() == [f"s{i}" for i in range(5)]
    np.testing.assert_array_equal(relabelled["conv5"].values, acts["conv5"].values)


# -- how activations describe themselves ----------------------------------------------------

def test_repr_of_activations_in_memory_counts_right():
    one = Activations({"fc3": xr.DataArray(np.zeros((1, 2, 1, 1)), dims=DIMS)})
    assert repr(one).splitlines()[0] == "<Activations: 1 layer(s), 1 stimulus>"
    assert "the activations" not in repr(one)


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.cells.append(data)


def test_html_repr_lists_layers_stimuli_and_escapes_text(act_file, tmp_path):
    stim = tmp_path / "odd.stim.csv"
    stim.write_text("type=image\npath=x\ndata=stimID,condition\n" +
                    "".join(f"<b>{i}</b>,a&b\n" for i in range(5)))
    with open_act(act_file, stim=stim) as opened:
        text = opened.sel(channel=[2, 1])._repr_html_()
    parser = _Cells()
    parser.feed(text)
    assert "b" not in parser.tags  # the stimulus IDs are text, not markup
    cells = parser.cells
    assert "conv5" in cells and "fc3" in cells
    assert "5 x 2 x 7 x 1" in cells or "5 x 2 x 6 x 7" in cells
    assert "channel 2, 1" in cells
    assert any("<b>0</b>" in cell for cell in cells)
    assert any("a&b" in cell for cell in cells)
    assert ": image" in cells


def test_other_attributes_of_the_stimulus_coordinate_are_no_header():
    layer = xr.DataArray(np.zeros((2, 1, 1, 1)), dims=DIMS, coords={"stimulus": [1, 2]})
    layer["stimulus"].attrs = {"long_name": "image number"}
    acts = Activations({"fc3": layer})
    assert acts.stim_header == {}
    assert acts.stimuli is None
    assert acts["fc3"]["stimulus"].attrs == {"long_name": "image number"}


def test_sel_passes_method_and_tolerance_to_every_layer(acts, layers):
    near = acts.sel(channel=[2.4, 5.8], method="nearest")
    for name, array in layers.items():
        np.testing.assert_array_equal(near[name].values, array[:, [1, 5]])
    with pytest.raises(SelectionError, match="layer 'conv5'"):
        acts.sel(channel=[2.4], method="nearest", tolerance=0.1)


def _repeating(tmp_path: Path) -> Activations:
    """A file whose channel numbers and stimulus IDs repeat (mask numbers may repeat)."""
    values = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    layer = xr.DataArray(values, dims=DIMS,
                         coords={"stimulus": ["a", "a"], "channel": [5, 3, 5]})
    save_act({"conv5": layer}, tmp_path / "repeats.act.h5")
    return open_act(tmp_path / "repeats.act.h5")


@pytest.mark.parametrize(("call", "dim", "repeated"), [
    (lambda a: a.sel(channel=[5]), "channel", "5"),
    (lambda a: a.sel(chn=[3]), "channel", "5"),
    (lambda a: a.sel(channel=[4], method="nearest"), "channel", "5"),
    (lambda a: a.sel(stimulus=["a"]), "stimulus", "'a'"),
], ids=["label", "chn", "nearest", "stimulus"])
def test_sel_along_repeated_labels_is_refused(tmp_path, call, dim, repeated):
    # pandas' InvalidIndexError came out ("Reindexing only valid with uniquely valued Index")
    with _repeating(tmp_path) as opened:
        with pytest.raises(SelectionError, match=(
                rf"^layer 'conv5' of '.*repeats\.act\.h5': its {dim} labels repeat "
                rf"\({repeated}\), so sel cannot tell those apart; select by position with "
                rf"isel\({dim}=\[\.\.\.\]\)$")):
            call(opened)
        # by position, and along the dims whose labels do not repeat, all is well
        np.testing.assert_array_equal(opened.isel(channel=[2])["conv5"].values,
                                      opened["conv5"].values[:, [2]])
        np.testing.assert_array_equal(opened.sel(row=[2])["conv5"].values,
                                      opened["conv5"].values[:, :, [1]])


def test_a_mask_by_label_of_a_label_that_repeats_is_refused_on_every_route(tmp_path):
    # the first of the channels labelled 5 alone was taken, the other dropped unsaid
    refused = (r"^channel 5 labels more than one channel of layer 'conv5' \(the channels at "
               r"positions 1, 3\), so a number cannot tell them apart; select by position "
               r'with by="ordinal"$')
    with _repeating(tmp_path) as opened:
        with pytest.raises(SelectionError, match=refused):
            opened.mask({"conv5": {"channel": [3, 5]}})
        with pytest.raises(SelectionError, match=refused):
            dx.mask_file(tmp_path / "repeats.act.h5", tmp_path / "out.act.h5",
                         {"conv5": {"channel": [5]}}, by="label")
        assert not (tmp_path / "out.act.h5").exists()
        # a label that labels one channel is found; by position, both 5s are there
        np.testing.assert_array_equal(opened.mask({"conv5": {"channel": [3]}})["conv5"].values,
                                      opened["conv5"].values[:, [1]])
        np.testing.assert_array_equal(
            opened.mask({"conv5": {"channel": [3, 1]}}, by="ordinal")["conv5"].values,
            opened["conv5"].values[:, [2, 0]])
