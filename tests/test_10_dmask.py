"""The .dmask.csv format: model, parser, writer, and their error messages."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnnmask_xr.errors import DnnMaskError, FormatError
from dnnmask_xr.formats.dmask import (
    AXES,
    DnnMask,
    LayerMask,
    format_dmask,
    parse_dmask,
    read_dmask,
    write_dmask,
)

EXAMPLE = "conv5=chn,row,col\n1,2,3\n4,5\n6,7,8\nfc3=chn\n1,2,3\n"

EXAMPLE_MASK = DnnMask(
    {
        "conv5": LayerMask({"channel": [1, 2, 3], "row": [4, 5], "column": [6, 7, 8]}),
        "fc3": LayerMask({"channel": [1, 2, 3]}),
    }
)


# --- the model -------------------------------------------------------------


def test_example_parses_to_the_mask_a_person_reads():
    mask = parse_dmask(EXAMPLE)
    assert mask == EXAMPLE_MASK
    assert list(mask) == ["conv5", "fc3"]
    assert mask["conv5"].channel == (1, 2, 3)
    assert mask["conv5"].row == (4, 5)
    assert mask["conv5"].column == (6, 7, 8)
    assert mask["fc3"].axes == ("channel",)
    assert mask["fc3"].row is None
    assert mask["fc3"].column is None


def test_layer_mask_keeps_axis_order_and_numbers_as_given():
    layer = LayerMask({"row": [3, 1], "channel": (200, 3, 17, 3)})
    assert layer.axes == ("row", "channel")
    assert dict(layer.numbers) == {"row": (3, 1), "channel": (200, 3, 17, 3)}
    assert layer != LayerMask({"channel": (200, 3, 17, 3), "row": [3, 1]})
    assert layer == LayerMask({"row": (3, 1), "channel": [200, 3, 17, 3]})
    assert hash(layer) == hash(LayerMask({"row": (3, 1), "channel": [200, 3, 17, 3]}))


def test_layer_mask_takes_numpy_integers_as_plain_ints():
    layer = LayerMask({"channel": np.array([2, 1], dtype=np.int64)})
    assert layer.channel == (2, 1)
    assert all(type(number) is int for number in layer.channel)


def test_layer_mask_stores_zero_and_negatives_for_a_later_range_check():
    assert LayerMask({"channel": [0, -3]}).channel == (0, -3)


def test_layer_mask_without_axes_means_the_whole_layer():
    assert LayerMask().axes == ()
    assert LayerMask() == LayerMask({})
    assert LayerMask().channel is None


def test_masks_are_immutable():
    layer = LayerMask({"channel": [1]})
    with pytest.raises(TypeError):
        layer.numbers["row"] = (1,)  # type: ignore[index]
    with pytest.raises(AttributeError):
        layer.channel = (2,)  # type: ignore[misc]
    mask = DnnMask({"fc3": layer})
    with pytest.raises(TypeError):
        mask["conv1"] = layer  # type: ignore[index]


def test_dnn_mask_equality_is_order_sensitive():
    a = DnnMask({"conv1": {}, "conv2": {"channel": [1]}})
    b = DnnMask({"conv2": {"channel": [1]}, "conv1": {}})
    assert a != b
    assert a == DnnMask({"conv1": LayerMask(), "conv2": LayerMask({"channel": [1]})})


def test_reprs_show_the_numbers():
    assert repr(LayerMask({"channel": [1, 2, 3]})) == "LayerMask({'channel': (1, 2, 3)})"
    assert repr(DnnMask({"fc3": {"row": [1]}})) == "DnnMask({'fc3': LayerMask({'row': (1,)})})"


@pytest.mark.parametrize(
    ("numbers", "pattern"),
    [
        ({"chan": [1]}, r"unknown axis 'chan'; valid axes are 'channel', 'row', 'column' "
                        r"\(or DNNBrain's 'chn', 'col'\)"),
        ({"channel": [1.0]}, r"channel number 1\.0 is a float, not an integer"),
        ({"row": [np.float32(2)]}, r"row number .*2.* is a float32, not an integer"),
        ({"channel": [True]}, r"channel number True is a bool, not an integer"),
        ({"column": [np.bool_(True)]}, r"column number .*True.* is a bool_?, not an integer"),
        ({"channel": ["1"]}, r"channel number '1' is a str, not an integer"),
        ({"channel": "123"}, r"channel numbers '123' are not a list of integers"),
        ({"channel": 5}, r"channel numbers 5 are not a list of integers"),
        ({"row": []}, r"no row number given; list at least one, or leave the axis out"),
        # no order to keep: {200, 3, 17} iterates as 200, 17, 3
        ({"channel": {200, 3, 17}}, r"channel numbers \{.*\} are a set, not a list; give them "
                                    r"as a list, in the order to keep.*a set keeps no order"),
        ({"row": frozenset({2})}, r"row numbers frozenset\(\{2\}\) are a frozenset, not a "
                                  "list"),
        ({"chn": {200: 1, 3: 2}}, r"channel numbers \{200: 1, 3: 2\} are a dict, not a list"),
    ],
)
def test_layer_mask_rejects_bad_numbers(numbers, pattern):
    with pytest.raises(DnnMaskError, match=pattern):
        LayerMask(numbers)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("", r"layer name '' is empty"),
        ("a=b", r"layer name 'a=b' contains '='"),
        ("conv\n5", r"layer name 'conv\\n5' contains a line break"),
        ("conv\r5", r"layer name 'conv\\r5' contains a line break"),
        (" conv5", r"layer name ' conv5' starts or ends with whitespace"),
        ("conv5\t", r"layer name 'conv5\\t' starts or ends with whitespace"),
        (5, r"layer name 5 is not a string"),
    ],
)
def test_dnn_mask_rejects_bad_layer_names(name, pattern):
    with pytest.raises(DnnMaskError, match=pattern):
        DnnMask({name: {}})


def test_dnn_mask_checks_plain_mappings_as_layer_masks():
    with pytest.raises(DnnMaskError, match=r"^layer 'conv5': unknown axis 'cols'"):
        DnnMask({"conv5": {"cols": [1]}})


# --- writing: the reference writer's exact text ---------------------------


@pytest.mark.parametrize(
    "text",
    [
        EXAMPLE,
        "conv5=row,chn\n4,5\n1,2,3\n",
        "fc3=\n",
        "conv1=chn\n200,3,17,3\nfc3=\nconv5=col,row\n1\n2\n",
        "features.3=col,chn,row\n7\n0,-1\n5\n",
    ],
)
def test_canonical_text_survives_parse_and_format(text):
    assert format_dmask(parse_dmask(text)) == text


def test_format_writes_the_file_abbreviations():
    mask = DnnMask({"conv5": {"column": [2], "channel": [1]}, "fc3": {}})
    assert format_dmask(mask) == "conv5=col,chn\n2\n1\nfc3=\n"


def test_format_refuses_an_empty_mask():
    with pytest.raises(DnnMaskError, match=r"mask has no layer"):
        format_dmask(DnnMask())


# --- round trips ------------------------------------------------------------

layer_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", min_size=1
)


@st.composite
def layer_masks(draw):
    axes = draw(st.lists(st.sampled_from(AXES), unique=True, max_size=3))
    return LayerMask(
        {axis: draw(st.lists(st.integers(1, 10**6), min_size=1, max_size=8)) for axis in axes}
    )


dnn_masks = st.dictionaries(layer_names, layer_masks(), min_size=1, max_size=5).map(DnnMask)


@settings(max_examples=examples(80), deadline=None)
@given(dnn_masks)
def test_format_then_parse_gives_the_mask_back(mask):
    assert parse_dmask(format_dmask(mask)) == mask


@settings(max_examples=examples(50), deadline=None)
@given(dnn_masks)
def test_crlf_bom_and_spaces_do_not_change_the_meaning(mask):
    text = format_dmask(mask).replace(",", " , ").replace("\n", " \r\n\r\n")
    assert parse_dmask("\ufeff" + text) == mask


@settings(max_examples=examples(30), deadline=None)
@given(mask=dnn_masks)
def test_write_then_read_gives_the_mask_back(tmp_path_factory, mask):
    path = tmp_path_factory.mktemp("dmask") / "m.dmask.csv"
    write_dmask(mask, path)
    assert read_dmask(path) == mask
    assert path.read_text(encoding="utf-8") == format_dmask(mask)


def test_write_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "m.dmask.csv"
    path.write_text("old content", encoding="utf-8")
    write_dmask(EXAMPLE_MASK, path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.dmask.csv"]
    assert path.read_bytes() == EXAMPLE.encode("utf-8")


def test_write_of_an_invalid_mask_leaves_no_file(tmp_path):
    with pytest.raises(DnnMaskError, match=r"mask has no layer"):
        write_dmask(DnnMask(), tmp_path / "m.dmask.csv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("layers", [["\ufeffconv5"], ["fc3", "\ufeffconv5"]],
                         ids=["first", "later"])
def test_a_layer_name_led_by_a_byte_order_mark_is_refused(tmp_path, layers):
    # read_dmask takes a file's first U+FEFF for a byte order mark and drops it, so
    # that such a first layer would come back as another layer ('conv5')
    message = (r"^layer name '\\ufeffconv5' starts with a byte order mark \(U\+FEFF\); a layer "
               r"name is non-empty text without '=', line breaks, surrounding whitespace or a "
               r"leading '#' or byte order mark")
    mask = {name: {"chn": [1]} for name in layers}
    with pytest.raises(DnnMaskError, match=message):
        DnnMask(mask)
    with pytest.raises(DnnMaskError, match=message):
        DnnMask({name: LayerMask({"channel": [1]}) for name in layers})
    path = tmp_path / "m.dmask.csv"
    for write in (write_dmask, lambda m, _: format_dmask(m)):
        with pytest.raises(DnnMaskError, match=message):
            write(mask, path)
    assert list(tmp_path.iterdir()) == []
    # a file written by other means: refused with its line, wherever the layer is
    text = "".join(f"{name}=chn\n1\n" for name in layers)
    path.write_bytes(("\ufeff" + text).encode("utf-8"))
    with pytest.raises(FormatError, match=message[1:]) as caught:
        read_dmask(path)
    assert caught.value.line == 2 * len(layers) - 1


def test_read_tolerates_a_bom_and_crlf(tmp_path):
    path = tmp_path / "m.dmask.csv"
    path.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.replace("\n", "\r\n").encode("utf-8"))
    assert read_dmask(path) == EXAMPLE_MASK


# --- tolerant input ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        EXAMPLE.replace("\n", "\r\n"),
        "\ufeff" + EXAMPLE,
        "\n\n" + EXAMPLE.replace("\n", "\n  \n\t\n") + "\n\n",
        " conv5 = chn , row , col \n 1 , 2 , 3 \n4,5\n6, 7,8\nfc3 =chn\n\t1,2,3\t\n",
        "conv5=chn,row,col,\n1,2,3,\n4,5,\n6,7,8,\nfc3=chn,\n1,2,3,\n",
        "conv5=chn,row,col\n1,2,3\n\n4,5\n\n6,7,8\n\nfc3=chn\n1,2,3",
        "conv5=chn,row,col\r1,2,3\r4,5\r6,7,8\rfc3=chn\r1,2,3\r",
    ],
    ids=["crlf", "bom", "blank-lines", "spaces", "trailing-commas", "no-final-newline", "cr"],
)
def test_tolerant_input_means_what_a_person_reads(text):
    assert parse_dmask(text) == EXAMPLE_MASK


def test_layer_without_axes_and_signed_numbers():
    mask = parse_dmask("fc3=\nconv1=chn\n+2,-3,0\n")
    assert mask == DnnMask({"fc3": {}, "conv1": {"channel": [2, -3, 0]}})


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "conv5=chn,row,col\n1,2,3\nfc3=chn\n1\n",
            r"^line 3: layer 'conv5' lists 3 axes \(chn, row, col\) but only 1 line of numbers "
            r"follows; give one line of numbers per listed axis",
        ),
        (
            "conv5=chn,row,col\n1,2,3\n\n",
            r"^line 1: layer 'conv5' lists 3 axes \(chn, row, col\) but only 1 line of numbers",
        ),
        (
            "conv5=row\n",
            r"^line 1: layer 'conv5' lists 1 axis \(row\) but no line of numbers follows",
        ),
        (
            "conv5=chn,row\n1\n4,5\n6,7\n",
            r"^line 4: '6,7' is not a layer line and layer 'conv5' lists only 2 axes "
            r"\(chn, row\); a layer line looks like 'conv5=chn,row,col'",
        ),
        (
            "fc3=\n1,2\n",
            r"^line 2: '1,2' is not a layer line and layer 'fc3' lists no axes",
        ),
        (
            "\n1,2,3\nconv5=chn\n1\n",
            r"^line 2: '1,2,3' is not a layer line and no layer comes before it; "
            r"a layer line looks like 'conv5=chn,row,col'",
        ),
        (
            "conv5=chn=row\n1\n",
            r"^line 1: layer line 'conv5=chn=row' has 2 '='; a layer line has exactly one",
        ),
        ("=chn\n1\n", r"^line 1: layer line '=chn' has no layer name before '='"),
        (
            "conv5=chn,rows\n1\n2\n",
            r"^line 1: unknown axis 'rows' in layer 'conv5'; valid axes are 'chn', 'row', 'col'",
        ),
        (
            "conv5=chn,row,chn\n1\n2\n3\n",
            r"^line 1: axis 'chn' is listed twice in layer 'conv5'; list each axis at most once",
        ),
        (
            "conv5=chn,row\n1,2\n4,,5\n",
            r"^line 3: empty item in '4,,5' \(row numbers of layer 'conv5'\); "
            r"separate numbers with single commas",
        ),
        (
            "conv5=chn\n,1\n",
            r"^line 2: empty item in ',1' \(chn numbers of layer 'conv5'\)",
        ),
        (
            "conv5=chn\n1,2\nfc3=col\n1.5\n",
            r"^line 4: '1\.5' in '1\.5' is not an integer \(col numbers of layer 'fc3'\); "
            r"numbers are 1-based integers",
        ),
        (
            "conv5=chn\n1,abc,3\n",
            r"^line 2: 'abc' in '1,abc,3' is not an integer \(chn numbers of layer 'conv5'\)",
        ),
        (
            "conv5=chn\n1_000\n",
            r"^line 2: '1_000' in '1_000' is not an integer",
        ),
        (
            "conv5=chn\n1\nfc3=\n\nconv5=row\n2\n",
            r"^line 5: layer 'conv5' is named twice, on lines 1 and 5; name each layer once",
        ),
        ("", r"^no layer found; a layer line looks like 'conv5=chn,row,col'"),
        ("\ufeff \n\r\n\t\n", r"^no layer found; a layer line looks like 'conv5=chn,row,col'"),
    ],
)
def test_parse_errors_give_the_line_and_what_is_valid(text, pattern):
    with pytest.raises(FormatError, match=pattern) as caught:
        parse_dmask(text)
    line = re.match(r"line (\d+):", str(caught.value))
    assert caught.value.line == (int(line.group(1)) if line else None)
    assert caught.value.path is None


def test_line_numbers_count_blank_lines_and_crlf():
    text = "\ufeff\r\nconv5=chn\r\n\r\n1\r\n\r\nx\r\n"
    with pytest.raises(FormatError, match=r"^line 6: 'x' is not a layer line") as caught:
        parse_dmask(text)
    assert caught.value.line == 6


def test_parse_errors_name_the_path_given():
    with pytest.raises(FormatError, match=r"^masks/m\.dmask\.csv, line 2: '1\.5'"):
        parse_dmask("conv5=chn\n1.5\n", "masks/m.dmask.csv")


def test_read_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.dmask.csv"
    path.write_text("conv5=chn,row\n1,2\n", encoding="utf-8")
    with pytest.raises(FormatError, match=rf"^{re.escape(str(path))}, line 1: layer 'conv5'"):
        read_dmask(path)


def test_read_reports_text_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.dmask.csv"
    path.write_bytes(b"conv5=chn\n1\nconv\xe9=chn\n2\n")
    with pytest.raises(FormatError, match=rf"^{re.escape(str(path))}, line 3: .*not UTF-8"):
        read_dmask(path)


def test_read_reports_an_empty_file_with_its_path(tmp_path):
    path = tmp_path / "empty.dmask.csv"
    path.write_bytes(b"")
    with pytest.raises(FormatError, match=rf"^{re.escape(str(path))}: no layer found"):
        read_dmask(path)


# --- DNNBrain's axis names in a mask built in code ----------------------------------------


def test_dnnbrain_axis_names_are_the_model_names():
    dnnbrain = DnnMask({"conv5": {"chn": [1, 2], "row": [3], "col": [4, 5]}, "fc3": {"chn": [7]}})
    assert dnnbrain == DnnMask({"conv5": {"channel": [1, 2], "row": [3], "column": [4, 5]},
                                "fc3": {"channel": [7]}})
    assert dnnbrain["conv5"].axes == ("channel", "row", "column")
    assert LayerMask({"col": [2], "chn": [1]}).numbers == {"column": (2,), "channel": (1,)}
    assert format_dmask(dnnbrain) == "conv5=chn,row,col\n1,2\n3\n4,5\nfc3=chn\n7\n"


@pytest.mark.parametrize(("numbers", "message"), [
    ({"chn": [1], "channel": [2]}, "axis 'channel' is given twice, as 'chn' and 'channel'"),
    ({"column": [1], "col": [1]}, "axis 'column' is given twice, as 'column' and 'col'"),
])
def test_an_axis_under_both_names_is_refused(numbers, message):
    with pytest.raises(DnnMaskError, match=rf"^layer 'conv5': {message}; give its numbers once, "
                                           r"under one name$"):
        DnnMask({"conv5": numbers})
    with pytest.raises(DnnMaskError, match=rf"^{message}"):
        LayerMask(numbers)


# the file is only read: one per test is enough
@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_dnnbrain_mask_dict_keeps_what_dnnbrain_keeps(data, act_file, layers):
    from dnnmask_xr import open_act
    from dnnmask_xr.testing import read_reference_act

    sizes = dict(zip(("chn", "row", "col"), layers["conv5"].shape[1:], strict=True))
    # DNNBrain's reader needs sorted unique numbers; ours takes any, so those it takes
    # are the ones to compare
    # an axis kept whole is 'all' (DNNBrain's MaskFile.read and Mask.get) or left out
    whole = data.draw(st.sampled_from(["all", None]), label="axis kept whole as")
    dnnbrain = {"conv5": {axis: sorted(data.draw(st.sets(st.integers(1, size), min_size=1)))
                          if data.draw(st.booleans(), label=f"mask {axis}") else whole
                          for axis, size in sizes.items()}}
    dnnbrain["conv5"] = {axis: numbers for axis, numbers in dnnbrain["conv5"].items()
                         if numbers is not None}
    masked = open_act(act_file).mask(DnnMask(dnnbrain), by="ordinal")["conv5"].values
    np.testing.assert_array_equal(masked, read_reference_act(act_file, dnnbrain)["conv5"])
    chosen = [np.array(range(1, size + 1) if dnnbrain["conv5"].get(axis, "all") == "all"
                       else dnnbrain["conv5"][axis]) - 1
              for axis, size in sizes.items()]
    np.testing.assert_array_equal(masked, layers["conv5"][np.ix_(range(5), *chosen)])


def test_dnnbrain_all_keeps_an_axis_whole():
    # what DNNBrain's MaskFile.read returns for 'conv5=chn\n1,2' and 'fc3='
    dnnbrain = {"conv5": {"chn": [1, 2], "row": "all", "col": "all"},
                "fc3": {"chn": "all", "row": "all", "col": "all"}}
    mask = DnnMask(dnnbrain)
    assert mask == parse_dmask("conv5=chn\n1,2\nfc3=\n")
    assert mask["conv5"].axes == ("channel",)
    assert mask["fc3"].axes == ()
    assert DnnMask({"conv5": {"chn": None, "col": [3]}}) == DnnMask({"conv5": {"column": [3]}})


def test_a_mask_gives_the_dict_dnnbrain_reads_it_as():
    mask = parse_dmask("conv5=col,chn\n6,7,8\n3,1\nfc3=\n")
    assert mask.to_dnnbrain() == {"conv5": {"chn": [3, 1], "row": "all", "col": [6, 7, 8]},
                                  "fc3": {"chn": "all", "row": "all", "col": "all"}}
    assert list(mask.to_dnnbrain()["conv5"]) == ["chn", "row", "col"]
    assert mask["conv5"].to_dnnbrain() == {"chn": [3, 1], "row": "all", "col": [6, 7, 8]}


@settings(max_examples=examples(60), deadline=None)
@given(dnn_masks)
def test_a_dnnbrain_dict_gives_the_mask_back_with_axes_in_dnnbrains_order(mask):
    back = DnnMask(mask.to_dnnbrain())
    assert list(back) == list(mask)
    for name, layer in mask.items():
        assert dict(back[name].numbers) == dict(layer.numbers)
        assert back[name].axes == tuple(axis for axis in AXES if axis in layer.axes)


@pytest.mark.parametrize(("numbers", "message"), [
    ({"chn": "All"}, "channel numbers 'All' are not a list of integers; give e.g. [1, 2, 3], "
                     "or 'all' for every channel"),
    ({"row": "none"}, "row numbers 'none' are not a list of integers"),
    ({"chn": "all", "channel": [1]}, "axis 'channel' is given twice"),
])
def test_only_dnnbrains_all_keeps_an_axis_whole(numbers, message):
    with pytest.raises(DnnMaskError, match=re.escape(f"layer 'conv5': {message}")):
        DnnMask({"conv5": numbers})


# --- what DNNBrain reads of what is written ------------------------------------


def dnnbrain_read_dmask(text: str) -> dict[str, dict[str, list[int] | str]]:
    """DNNBrain's ``MaskFile.read``, step for step, on the text of a file."""
    lines = text.splitlines()
    dmask: dict[str, dict[str, list[int] | str]] = {}
    for l_idx, line in enumerate(lines):
        if "=" in line:
            layer, axes = line.split("=")
            dmask[layer] = {"chn": "all", "row": "all", "col": "all"}
            listed = [axis for axis in axes.split(",") if axis != ""]
            assert len(listed) <= 3
            for a_idx, axis in enumerate(listed, 1):
                assert axis in ("chn", "row", "col")
                dmask[layer][axis] = [int(num) for num in lines[l_idx + a_idx].split(",")]
    return dmask


def _writable_layer_name(name: str) -> bool:
    try:
        DnnMask({name: {}})
    except DnnMaskError:
        return False
    return True


any_layer_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8).filter(
    _writable_layer_name)


@st.composite
def any_layer_masks(draw):
    axes = draw(st.permutations(AXES))[:draw(st.integers(0, 3))]
    numbers = st.integers(-(2**63) + 1, 2**63 - 1)
    return LayerMask({axis: draw(st.lists(numbers, min_size=1, max_size=4)) for axis in axes})


@settings(max_examples=examples(100), deadline=None)
@given(st.dictionaries(any_layer_names, any_layer_masks(), min_size=1, max_size=4).map(DnnMask))
def test_what_is_written_reads_back_the_same_under_dnnbrains_rules(mask):
    text = format_dmask(mask)
    assert parse_dmask(text) == mask
    assert dnnbrain_read_dmask(text) == mask.to_dnnbrain()
