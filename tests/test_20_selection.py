"""Selection rules: -layer/-chn to masks, and mask numbers to positions."""

from __future__ import annotations

import numpy as np
import pytest

from dnnmask_xr import DnnMask, LayerMask, SelectionError, UsageError, mask_from_flags
from dnnmask_xr.act.select import layer_positions


def test_one_layer_with_channels_keeps_them_in_order():
    assert mask_from_flags(["conv5"], [200, 3, 17, 3]) == DnnMask(
        {"conv5": {"channel": [200, 3, 17, 3]}}
    )


def test_layers_without_channels_are_whole():
    assert mask_from_flags(["fc3", "conv5"]) == DnnMask({"fc3": {}, "conv5": {}})


def test_several_layers_pair_one_channel_each_in_order():
    assert mask_from_flags(["conv5", "fc3"], [7, 1]) == DnnMask(
        {"conv5": {"channel": [7]}, "fc3": {"channel": [1]}}
    )


@pytest.mark.parametrize(
    ("layers", "channels", "message"),
    [
        ([], None, "no layer given"),
        (["conv5", "fc3", "conv5"], None, "'conv5' is named twice"),
        (["conv5", "fc3"], [1, 2, 3], "gives 3 channel number.* for 2 layers"),
        (["conv5", "fc3"], [1], "gives 1 channel number.* for 2 layers"),
    ],
    ids=["no-layer", "layer-twice", "too-many-channels", "too-few-channels"],
)
def test_flag_rules_refuse_what_has_no_meaning(layers, channels, message):
    with pytest.raises(UsageError, match=message):
        mask_from_flags(layers, channels)


LABELS = {
    "channel": np.array([200, 3, 17]),
    "row": np.arange(1, 14),
    "column": np.arange(1, 14),
}


def test_positions_follow_the_order_given_with_repeats():
    mask = LayerMask({"row": [13, 1, 1], "channel": [2, 3]})
    found = layer_positions("conv5", mask, LABELS, by="ordinal")
    assert list(found) == ["row", "channel"]
    np.testing.assert_array_equal(found["row"], [12, 0, 0])
    np.testing.assert_array_equal(found["channel"], [1, 2])


def test_labels_are_looked_up_among_the_coordinates():
    found = layer_positions("conv5", LayerMask({"channel": [17, 200, 17]}), LABELS, by="label")
    np.testing.assert_array_equal(found["channel"], [2, 0, 2])


def test_a_label_that_repeats_is_refused_and_the_others_found():
    # a mask that repeated a number labels two channels alike: taking the first of them
    # alone (as this did) drops the other without a word
    labels = {**LABELS, "channel": np.array([5, 9, 5])}
    with pytest.raises(SelectionError, match=(
            r"^channel 5 labels more than one channel of layer 'conv5' \(the channels at "
            r"positions 1, 3\), so a number cannot tell them apart; select by position with "
            r'by="ordinal"$')):
        layer_positions("conv5", LayerMask({"channel": [9, 5]}), labels, by="label")
    found = layer_positions("conv5", LayerMask({"channel": [9, 9]}), labels, by="label")
    np.testing.assert_array_equal(found["channel"], [1, 1])
    found = layer_positions("conv5", LayerMask({"channel": [3, 1]}), labels, by="ordinal")
    np.testing.assert_array_equal(found["channel"], [2, 0])


@pytest.mark.parametrize(
    ("numbers", "message"),
    [
        ({"channel": [0]}, r"channel number 0 is out of range for layer 'conv5' "
                            r"\(valid: 1\.\.3\)"),
        ({"channel": [-1]}, r"channel number -1 is out of range .*valid: 1\.\.3"),
        ({"row": [1, 14]}, r"row number 14 is out of range .*valid: 1\.\.13"),
    ],
    ids=["zero", "negative", "past-the-end"],
)
def test_positions_out_of_range_name_layer_axis_and_range(numbers, message):
    with pytest.raises(SelectionError, match=message + r".*1-based"):
        layer_positions("conv5", LayerMask(numbers), LABELS, by="ordinal")


def test_missing_label_lists_the_labels_there_are():
    with pytest.raises(SelectionError, match=r"channel 1 is not in layer 'conv5' "
                                             r"\(valid: 200, 3, 17\)"):
        layer_positions("conv5", LayerMask({"channel": [1]}), LABELS, by="label")


def test_missing_label_shows_a_contiguous_range_briefly():
    with pytest.raises(SelectionError, match=r"column 0 is not in layer 'conv5' "
                                             r"\(valid: 1\.\.13\)"):
        layer_positions("conv5", LayerMask({"column": [0]}), LABELS, by="label")


@pytest.mark.parametrize("labels", [
    np.array(["a", "b", "c"], dtype=object),
    np.array([200, "b", 17], dtype=object),
    np.array(["a", "b", "c"]),
], ids=["text", "numbers-and-text", "fixed-width-text"])
def test_labels_that_are_not_numbers_are_refused_when_numbers_are_looked_up(labels):
    # bug: text labels of object dtype (a layer labelled in memory) raised numpy's
    # TypeError from the look-up
    labels = {**LABELS, "channel": labels}
    with pytest.raises(SelectionError, match=r"^layer 'conv5': its channel labels are "
                                             r"text \((object|<U1)\), not numbers, so mask "
                                             r"numbers cannot be looked up among them; .*"
                                             r'by="ordinal"'):
        layer_positions("conv5", LayerMask({"channel": [200]}), labels, by="label")
    found = layer_positions("conv5", LayerMask({"channel": [3]}), labels, by="ordinal")
    np.testing.assert_array_equal(found["channel"], [2])
