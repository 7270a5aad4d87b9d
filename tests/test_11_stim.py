import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import examples
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dnnmask_xr.errors import DnnMaskError, FormatError
from dnnmask_xr.formats.stim import (
    STIM_TYPES,
    TEXT_KEY,
    Stimuli,
    format_stim,
    parse_stim,
    read_stim,
    write_stim,
)

EXAMPLE = """\
type=image
path=/data/images
title=some stimuli
data=stimID,label,condition,onset,duration,RT
n01.JPEG,0,cat,0,1,0.4
n02.JPEG,1,dog,1,1,0.6
"""

EXAMPLE_FORMATTED = """\
type=image
path=/data/images
title=some stimuli
data=stimID,label,condition,onset,duration,RT
n01.JPEG,0,cat,0.0,1.0,0.4
n02.JPEG,1,dog,1.0,1.0,0.6
"""

STR_DTYPE = pd.Series(["x"], dtype=str).dtype


# --- parsing what the spec shows ------------------------------------------------------------


def test_example_parses_to_header_and_typed_columns():
    stimuli = parse_stim(EXAMPLE)
    assert dict(stimuli.header) == {
        "type": "image",
        "path": "/data/images",
        "title": "some stimuli",
    }
    assert stimuli.type == "image"
    assert stimuli.path == "/data/images"
    assert len(stimuli) == 2
    table = stimuli.table
    assert list(table.columns) == ["stimID", "label", "condition", "onset", "duration", "RT"]
    assert isinstance(table.index, pd.RangeIndex)
    assert list(table.index) == [0, 1]
    assert table["stimID"].dtype == STR_DTYPE
    assert table["condition"].dtype == STR_DTYPE
    assert table["label"].dtype == np.int64
    for name in ("onset", "duration", "RT"):
        assert table[name].dtype == np.float64
    assert list(table["stimID"]) == ["n01.JPEG", "n02.JPEG"]
    assert list(table["label"]) == [0, 1]
    assert list(table["condition"]) == ["cat", "dog"]
    assert list(table["onset"]) == [0.0, 1.0]
    assert list(table["duration"]) == [1.0, 1.0]
    assert list(table["RT"]) == [0.4, 0.6]
    assert list(stimuli.stim_ids) == ["n01.JPEG", "n02.JPEG"]


def test_example_formats_as_the_reference_writer_does():
    assert format_stim(parse_stim(EXAMPLE)) == EXAMPLE_FORMATTED


def test_video_stim_ids_are_integer_frame_numbers():
    stimuli = parse_stim("type=video\npath=/v.mp4\ndata=stimID,onset\n1,0.5\n+20,1\n-3,2\n")
    assert stimuli.table["stimID"].dtype == np.int64
    assert stimuli.stim_ids.dtype == np.int64
    assert stimuli.stim_ids.tolist() == [1, 20, -3]


def test_video_clip_stim_ids_are_strings():
    stimuli = parse_stim("type=video_clip\npath=/clips\ndata=stimID\n1\nclip2.mp4\n")
    assert stimuli.table["stimID"].dtype == STR_DTYPE
    assert stimuli.stim_ids.tolist() == ["1", "clip2.mp4"]


def test_zero_rows_give_an_empty_typed_table():
    stimuli = parse_stim("type=video\npath=v\ndata=stimID,label,condition,onset\n")
    assert len(stimuli) == 0
    dtypes = stimuli.table.dtypes.to_dict()
    assert dtypes == {
        "stimID": np.int64,
        "label": np.int64,
        "condition": STR_DTYPE,
        "onset": np.float64,
    }
    # read, but not written: DNNBrain's StimulusFile.read fails on a table of no row
    with pytest.raises(IndexError):
        dnnbrain_read_stim("type=video\npath=v\ndata=stimID,label,condition,onset\n")
    with pytest.raises(DnnMaskError, match=(
            r"^the stimulus table has no row, and DNNBrain's reader cannot read a \.stim\.csv "
            r"of no stimulus; list at least one$")):
        format_stim(stimuli)


def test_header_value_may_contain_equals_and_header_order_is_kept():
    stimuli = parse_stim("path=p\nzeta=a=b\ntype=image\nalpha=\ndata=stimID\nx\n")
    assert list(stimuli.header.items()) == [
        ("type", "image"),
        ("path", "p"),
        ("zeta", "a=b"),
        ("alpha", ""),
    ]
    header = {key: value for key, value in stimuli.header.items() if key != "zeta"}
    assert format_stim(Stimuli(header, stimuli.table)) == (
        "type=image\npath=p\nalpha=\ndata=stimID\nx\n")


@pytest.mark.parametrize("header", [{"type": "image", "path": "/data/sub=01"},
                                    {"type": "image", "path": "p", "title": "a=b"}])
def test_a_header_value_with_equals_is_not_written(header, tmp_path):
    # DNNBrain's StimulusFile.read splits a header line with `k, v = line.split('=')`:
    # a second '=' makes the file unreadable there
    stimuli = Stimuli(header, pd.DataFrame({"stimID": ["a.png"]}))
    value = next(value for value in header.values() if "=" in value)
    with pytest.raises(DnnMaskError, match=f"header value {value!r} .* contains '='"):
        format_stim(stimuli)
    path = tmp_path / "s.stim.csv"
    with pytest.raises(DnnMaskError, match="DNNBrain's reader cannot read"):
        write_stim(stimuli, path)
    assert not path.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", 3), ("-3", -3), ("+3", 3), ("007", 7), ("9223372036854775807", 2**63 - 1)],
)
def test_integer_forms(text, expected):
    stimuli = parse_stim(f"type=image\npath=p\ndata=stimID,label\na,{text}\n")
    assert stimuli.table["label"].tolist() == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", "1.0"),
        ("-2.5", "-2.5"),
        ("1e-3", "0.001"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("-Infinity", "-inf"),
        ("-0", "-0.0"),
        ("0.1", "0.1"),
    ],
)
def test_float_forms(text, expected):
    stimuli = parse_stim(f"type=image\npath=p\ndata=stimID,onset\na,{text}\n")
    assert [repr(value) for value in stimuli.table["onset"].tolist()] == [expected]
    assert format_stim(stimuli).endswith(f"\na,{expected}\n")


# --- tolerant input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(EXAMPLE.replace("\n", "\r\n"), id="crlf"),
        pytest.param("\ufeff" + EXAMPLE, id="bom"),
        pytest.param("\n \n" + EXAMPLE.replace("\n", "\n\t\n") + "\n\n", id="blank-lines"),
        pytest.param(
            "  type = image \npath= /data/images\n title =some stimuli  \n"
            "data = stimID , label,condition ,onset,duration,RT\n"
            " n01.JPEG , 0,cat , 0,1 ,0.4\nn02.JPEG,1 , dog,1,1,0.6  \n",
            id="spaces",
        ),
        pytest.param(EXAMPLE.rstrip("\n"), id="no-final-newline"),
    ],
)
def test_tolerant_inputs_parse_like_the_example(text):
    assert parse_stim(text).equals(parse_stim(EXAMPLE))


def test_read_stim_tolerates_bom_and_crlf(tmp_path):
    path = tmp_path / "s.stim.csv"
    path.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.replace("\n", "\r\n").encode("utf-8"))
    assert read_stim(path).equals(parse_stim(EXAMPLE))
    assert read_stim(str(path)).equals(parse_stim(EXAMPLE))


# --- round trips ------------------------------------------------------------------------------

# Characters that would end a line for Python's str.splitlines() (which DNNBrain reads with).
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
# what a .stim.csv holds exactly for DNNBrain too, whose reader goes through float64
WRITABLE_INT = st.integers(-(2**53), 2**53)


def safe_text(min_size=0, exclude=""):
    # no NUL: a value ending in one is not written (DNNBrain's reader drops it)
    chars = st.characters(codec="utf-8", exclude_characters=",\0" + LINE_BREAKS + exclude)
    # nor a value in double quotes, or one leading a line with '#', which reading refuses
    return st.text(chars, min_size=min_size, max_size=8).filter(
        lambda s: s == s.strip() and not (len(s) >= 2 and s[0] == s[-1] == '"')
        and not s.startswith("#"))


@st.composite
def stimuli_strategy(draw):
    stim_type = draw(st.sampled_from(STIM_TYPES))
    n = draw(st.integers(1, 20))  # a .stim.csv of no row is not written
    reserved = {"stimID", "label", "condition"}
    extra = draw(
        st.lists(safe_text(1, "=").filter(lambda s: s not in reserved), max_size=3, unique=True)
    )
    optional = [name for name in ("label", "condition") if draw(st.booleans())]
    names = draw(st.permutations(["stimID", *optional, *extra]))
    # other fields hold floats, or text the header's text= key declares
    text = [name for name in extra if draw(st.booleans())]

    def column(elements):
        return draw(st.lists(elements, min_size=n, max_size=n))

    columns = {}
    for name in names:
        if name == "stimID":
            columns[name] = column(WRITABLE_INT if stim_type == "video" else safe_text(1))
        elif name == "label":
            columns[name] = column(WRITABLE_INT)
        elif name == "condition" or name in text:
            columns[name] = column(safe_text())
        else:
            columns[name] = column(st.floats())
    header_keys = safe_text(1, "=").filter(lambda s: s not in {"type", "path", "data", "text"})
    header = {
        "type": stim_type,
        "path": draw(safe_text(0, "=")),
        **draw(st.dictionaries(header_keys, safe_text(0, "="), max_size=3)),
    }
    if text:
        header["text"] = ",".join(draw(st.permutations(text)))
    return Stimuli(header, pd.DataFrame(columns, columns=names))


def assert_same(actual, expected):
    assert actual.equals(expected)
    assert list(actual.header.items()) == list(expected.header.items())
    for name in expected.table.columns:
        assert actual.table[name].dtype == expected.table[name].dtype
        # repr tells -0.0 from 0.0, which DataFrame.equals does not.
        assert [repr(v) for v in actual.table[name].tolist()] == [
            repr(v) for v in expected.table[name].tolist()
        ]
        if expected.table[name].dtype == np.float64:
            assert np.array_equal(
                actual.table[name].to_numpy(), expected.table[name].to_numpy(), equal_nan=True
            )


@settings(max_examples=examples(80), deadline=None)
@given(stimuli_strategy())
def test_text_round_trip(stimuli):
    text = format_stim(stimuli)
    assert text.endswith("\n")
    parsed = parse_stim(text)
    assert_same(parsed, stimuli)
    assert format_stim(parsed) == text


@settings(
    max_examples=examples(30), deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(stimuli_strategy())
def test_file_round_trip(tmp_path, stimuli):
    path = tmp_path / "s.stim.csv"
    write_stim(stimuli, path)
    assert path.read_bytes() == format_stim(stimuli).encode("utf-8")
    assert_same(read_stim(path), stimuli)


def test_write_stim_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "s.stim.csv"
    write_stim(parse_stim(EXAMPLE), path)
    write_stim(parse_stim(EXAMPLE), path)  # replacing an existing file
    assert [p.name for p in tmp_path.iterdir()] == ["s.stim.csv"]
    assert path.read_text(encoding="utf-8") == EXAMPLE_FORMATTED


def test_write_stim_that_cannot_be_formatted_keeps_the_old_file(tmp_path):
    path = tmp_path / "s.stim.csv"
    path.write_text("old", encoding="utf-8")
    bad = Stimuli({"type": "image", "path": "p"}, pd.DataFrame({"stimID": ["a,b"]}))
    with pytest.raises(DnnMaskError, match="contains ','"):
        write_stim(bad, path)
    assert [p.name for p in tmp_path.iterdir()] == ["s.stim.csv"]
    assert path.read_text(encoding="utf-8") == "old"


# --- building in code -------------------------------------------------------------------------


def test_table_built_in_code_equals_the_parsed_one():
    table = pd.DataFrame(
        {
            "stimID": ["n01.JPEG", "n02.JPEG"],
            "label": np.array([0, 1], dtype=np.int32),
            "condition": np.array(["cat", "dog"]),
            "onset": [0, 1],
            "duration": ["1", "1.0"],
            "RT": [0.4, 0.6],
        },
        index=[10, 11],
    )
    header = {"title": "some stimuli", "path": Path("/data/images"), "type": "image"}
    stimuli = Stimuli(header, table)
    assert stimuli.equals(parse_stim(EXAMPLE))
    assert list(stimuli.header) == ["type", "path", "title"]
    assert isinstance(stimuli.table.index, pd.RangeIndex)
    # The frame passed in is copied, not changed.
    assert table["label"].dtype == np.int32
    assert list(table.index) == [10, 11]
    with pytest.raises(TypeError):
        stimuli.header["type"] = "video"


def test_integral_floats_and_numeric_strings_convert_to_int():
    table = pd.DataFrame({"stimID": [1.0, "2", " +3 ", np.int16(4)], "label": [0.0, -1.0, 2, 3]})
    stimuli = Stimuli({"type": "video", "path": "v"}, table)
    assert stimuli.stim_ids.tolist() == [1, 2, 3, 4]
    assert stimuli.table["label"].dtype == np.int64
    assert stimuli.table["label"].tolist() == [0, -1, 2, 3]


def test_missing_float_values_become_nan():
    stimuli = Stimuli(
        {"type": "image", "path": "p"},
        pd.DataFrame({"stimID": ["a", "b", "c"], "onset": [None, pd.NA, "nan"]}),
    )
    assert stimuli.table["onset"].dtype == np.float64
    assert stimuli.table["onset"].isna().all()


def test_equals():
    stimuli = parse_stim(EXAMPLE)
    assert stimuli.equals(parse_stim(EXAMPLE))
    assert not stimuli.equals(parse_stim(EXAMPLE.replace("title=some", "title=other")))
    assert not stimuli.equals(parse_stim(EXAMPLE.replace("0.6", "0.7")))
    assert not stimuli.equals(parse_stim(EXAMPLE.replace("RT", "rt")))
    assert not stimuli.equals(stimuli.table)


# --- error messages ---------------------------------------------------------------------------

HEAD = "type=image\npath=p\n"


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        pytest.param(
            HEAD + "title\ndata=stimID\n",
            3,
            "header line 'title' has no '='.*key=value",
            id="no-equals",
        ),
        pytest.param(
            HEAD + "=x\ndata=stimID\n", 3, "header line '=x' has an empty key", id="empty-key"
        ),
        pytest.param(
            HEAD + "type=video\ndata=stimID\n",
            3,
            r"header key 'type' is repeated \(first on line 1\)",
            id="repeated-key",
        ),
        pytest.param(
            "path=p\ntype=picture\ndata=stimID\n",
            2,
            r"type 'picture' is not a stimulus type \(valid: image, video, video_clip\)",
            id="bad-type",
        ),
        pytest.param(
            "path=p\ndata=stimID\n", 2, "the header has no 'type' key.*type=image", id="no-type"
        ),
        pytest.param("type=image\ndata=stimID\n", 2, "the header has no 'path' key", id="no-path"),
        pytest.param(
            HEAD + "data=\n",
            3,
            "data= line '' has an empty field name at position 1",
            id="no-fields",
        ),
        pytest.param(
            HEAD + "data=stimID,,label\n",
            3,
            "empty field name at position 2.*single commas",
            id="empty-field",
        ),
        pytest.param(
            HEAD + "data=stimID,label,label\n",
            3,
            "names the field 'label' twice",
            id="duplicate-field",
        ),
        pytest.param(
            HEAD + "data=label,onset\n",
            3,
            r"'label,onset' has no 'stimID' field; it is required \(e\.g\. data=stimID,label\)",
            id="no-stimID",
        ),
        pytest.param(
            HEAD + "data=stimID,a=b\n", 3, "field name 'a=b' contains '='", id="equals-in-field"
        ),
        pytest.param(
            HEAD + "data=stimID,label\na,1\nb\n",
            5,
            r"row 'b' has 1 value\(s\) but the data= line \(line 3\) names 2 field\(s\)",
            id="too-few-values",
        ),
        pytest.param(
            HEAD + "data=stimID,label\na,1,\n",
            4,
            r"row 'a,1,' has 3 value\(s\) but .* names 2 field\(s\): stimID,label",
            id="trailing-comma",
        ),
        pytest.param(
            HEAD + "data=stimID,label\na,3.5\n",
            4,
            r"field 'label': value '3\.5' is not an integer \(e\.g\. 3, -3, \+3, 3\.0\)",
            id="float-label",
        ),
        pytest.param(
            HEAD + "data=stimID,label\na,abc\n",
            4,
            "field 'label': value 'abc' is not an integer",
            id="text-label",
        ),
        pytest.param(
            HEAD + "data=stimID,label\na,9223372036854775808\n",
            4,
            "field 'label': value '9223372036854775808' is out of the int64 range",
            id="label-overflow",
        ),
        pytest.param(
            HEAD + "data=stimID,RT\na,0.5\nb,fast\n",
            5,
            "field 'RT': value 'fast' is not a number",
            id="text-float",
        ),
        pytest.param(
            HEAD + "data=stimID,RT\na,\n",
            4,
            "field 'RT': value '' is not a number",
            id="empty-float",
        ),
        pytest.param(
            "type=video\npath=v\ndata=stimID\nframe1\n",
            4,
            "field 'stimID': value 'frame1' is not an integer",
            id="video-stimID",
        ),
        pytest.param(
            HEAD + "data=stimID,condition\na,b\rc\n",
            5,
            r"row 'c' has 1 value\(s\) but the data= line \(line 3\) names 2 field\(s\)",
            id="lone-cr-ends-a-line",
        ),
        pytest.param(
            HEAD + "data=stimID,condition\na,b\x0bc\n",
            4,
            r"holds the line break '\\x0b' inside it",
            id="vertical-tab-inside-a-line",
        ),
        pytest.param(
            "\n\ntype=image\n\npath=p\ndata=stimID,label\n\na,x\n",
            8,
            "value 'x' is not an integer",
            id="blank-lines-counted",
        ),
        pytest.param(
            "type=image\r\npath=p\r\ndata=stimID,label\r\na,x\r\n",
            4,
            "value 'x' is not an integer",
            id="crlf-counted",
        ),
        pytest.param("\ufefftype=bad\npath=p\ndata=stimID\n", 1, "type 'bad'", id="bom-line-one"),
    ],
)
def test_parse_errors(text, line, match):
    with pytest.raises(FormatError, match=match) as caught:
        parse_stim(text)
    error = caught.value
    assert error.line == line
    assert str(error).startswith(f"line {line}: ")
    assert error.message[0].islower()


@pytest.mark.parametrize("text", ["", "\n\n", HEAD, "type=image\n"])
def test_missing_data_line(text):
    with pytest.raises(
        FormatError,
        match=r"without the data= line listing the fields \(e\.g\. data=stimID,label\)",
    ) as caught:
        parse_stim(text)
    assert caught.value.line is None


def test_rows_without_data_line_hint_at_it():
    with pytest.raises(FormatError, match=r"line 3: .*is the data= line missing\?"):
        parse_stim(HEAD + "n01.JPEG,0\n")


def test_errors_through_read_stim_name_the_file(tmp_path):
    path = tmp_path / "bad.stim.csv"
    path.write_text(HEAD + "data=stimID,label\na,1\nb,x\n", encoding="utf-8")
    with pytest.raises(FormatError, match=re.escape(f"{path}, line 5: field 'label'")) as caught:
        read_stim(path)
    assert caught.value.path == str(path)


def test_parse_stim_names_the_path_it_is_given():
    with pytest.raises(FormatError, match=r"^x\.stim\.csv, line 1: "):
        parse_stim("type=bad\n", "x.stim.csv")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin.stim.csv"
    path.write_bytes(b"type=image\npath=/caf\xe9\ndata=stimID\n")
    with pytest.raises(
        FormatError, match=re.escape(f"{path}, line 2: byte b'\\xe9' is not UTF-8")
    ):
        read_stim(path)


IMAGE = {"type": "image", "path": "p"}
ONE = pd.DataFrame({"stimID": ["a"]})


@pytest.mark.parametrize(
    ("header", "table", "match"),
    [
        pytest.param({"path": "p"}, ONE, "the header has no 'type' key", id="no-type"),
        pytest.param({"type": "image"}, ONE, "the header has no 'path' key", id="no-path"),
        pytest.param(
            {"type": "bogus", "path": "p"},
            ONE,
            r"type 'bogus' is not a stimulus type \(valid: image, video, video_clip\)",
            id="bad-type",
        ),
        pytest.param({**IMAGE, "data": "x"}, ONE, "'data' is reserved", id="data-key"),
        pytest.param({**IMAGE, "a=b": "x"}, ONE, "header key 'a=b' contains '='", id="eq-key"),
        pytest.param({**IMAGE, "": "x"}, ONE, "header key is empty", id="empty-key"),
        pytest.param({**IMAGE, " k": "x"}, ONE, "header key ' k' has whitespace", id="ws-key"),
        pytest.param({**IMAGE, "k": "x\ny"}, ONE, r"'x\\ny' contains the line break", id="nl"),
        pytest.param({**IMAGE, "k": "x "}, ONE, "has whitespace around it", id="ws-value"),
        pytest.param(
            {**IMAGE, "k": 3}, ONE, "header value 3 for key 'k' is not a string", id="int"
        ),
        pytest.param({**IMAGE, 3: "x"}, ONE, "header key 3 is not a string", id="int-key"),
        pytest.param(IMAGE, {"stimID": ["a"]}, "dict is not a pandas DataFrame", id="dict"),
        pytest.param(IMAGE, pd.DataFrame({"label": [1]}), "no 'stimID' field", id="no-stimID"),
        pytest.param(
            IMAGE,
            pd.DataFrame({"stimID": ["a"], "a,b": [1.0]}),
            "field name 'a,b' contains ','",
            id="comma-field",
        ),
        pytest.param(
            IMAGE, pd.DataFrame({"stimID": ["a"], "": [1.0]}), "field name is empty", id="empty"
        ),
        pytest.param(
            IMAGE,
            pd.DataFrame({"stimID": ["a"], "x\r": [1.0]}),
            "field name 'x\\\\r' contains the line break",
            id="cr-field",
        ),
        pytest.param(
            IMAGE,
            pd.DataFrame({"stimID": ["a"], 3: [1.0]}),
            "field name 3 is not a string",
            id="3",
        ),
        pytest.param(
            IMAGE,
            pd.DataFrame([["a", 1.0, 2.0]], columns=["stimID", "x", "x"]),
            "field name 'x' appears twice",
            id="duplicate-field",
        ),
        pytest.param(
            IMAGE,
            pd.DataFrame({"stimID": ["a", "b"], "label": [1, 1.5]}),
            r"field 'label', stimulus number 2: value 1\.5 is not an integer",
            id="float-label",
        ),
        pytest.param(
            IMAGE,
            pd.DataFrame({"stimID": ["a"], "label": [True]}),
            "value True is a boolean, not an integer",
            id="bool-label",
        ),
        pytest.param(
            IMAGE,
            pd.DataFrame({"stimID": ["a"], "label": [np.nan]}),
            "value nan is not an integer",
            id="nan-label",
        ),
        pytest.param(
            IMAGE,
            pd.DataFrame({"stimID": ["a"], "label": [np.uint64(2**63)]}),
            "value 9223372036854775808 is out of the int64 range",
            id="uint64-label",
        ),
        pytest.param(
            IMAGE,
            pd.DataFrame({"stimID": ["a"], "onset": ["soon"]}),
            "field 'onset', stimulus number 1: value 'soon' is not a number",
            id="text-onset",
        ),
        pytest.param(
            IMAGE,
            pd.DataFrame({"stimID": ["a"], "condition": [None]}),
            "field 'condition', stimulus number 1: value None is not a string",
            id="missing-condition",
        ),
        pytest.param(
            {"type": "video", "path": "v"},
            pd.DataFrame({"stimID": ["a"]}),
            "field 'stimID', stimulus number 1: value 'a' is not an integer",
            id="text-frame",
        ),
    ],
)
def test_constructor_errors(header, table, match):
    with pytest.raises(DnnMaskError, match=match) as caught:
        Stimuli(header, table)
    assert not isinstance(caught.value, FormatError)
    assert str(caught.value)[0].islower() or str(caught.value)[0] == "'"


@pytest.mark.parametrize(
    ("stim_ids", "condition", "match"),
    [
        (["a"], ["x,y"], r"field 'condition', stimulus number 1: value 'x,y' contains ','"),
        (["a,b"], ["x"], r"field 'stimID', stimulus number 1: value 'a,b' contains ','"),
        (["a", "b"], ["x", "y\nz"], r"stimulus number 2: value 'y\\nz' contains the line break"),
        (["a"], ["\u2028"], "contains the line break"),
        (["a"], [" x"], "value ' x' has whitespace around it, which reading strips"),
        (["a"], ['"cat"'], r"field 'condition', stimulus number 1: value '\"cat\"' is in double "
         "quotes, which reading refuses"),
    ],
)
def test_format_refuses_values_that_would_not_read_back(stim_ids, condition, match):
    stimuli = Stimuli(IMAGE, pd.DataFrame({"stimID": stim_ids, "condition": condition}))
    with pytest.raises(DnnMaskError, match=match):
        format_stim(stimuli)


def test_format_refuses_a_row_that_would_be_blank():
    stimuli = Stimuli(IMAGE, pd.DataFrame({"stimID": ["a", ""]}))
    with pytest.raises(DnnMaskError, match=r"stimulus number 2 .* would be a blank line"):
        format_stim(stimuli)
    # With a second field the empty stimID is a row of its own and reads back.
    stimuli = Stimuli(IMAGE, pd.DataFrame({"stimID": ["", ""], "onset": [1.0, math.nan]}))
    assert parse_stim(format_stim(stimuli)).equals(stimuli)


# --- text fields beyond DNNBrain's (the header's text= key) ------------------

TEXT_FIELDS = """\
type=image
path=images
text=object_name,image_file_name
data=stimID,object_name,label,image_file_name,onset
n01.JPEG,dog,0,n01.JPEG,0.5
n02.JPEG,cat,1,n02.JPEG,1.5
"""


def test_the_text_key_types_the_fields_it_lists_as_text():
    stimuli = parse_stim(TEXT_FIELDS)
    assert stimuli.table["object_name"].tolist() == ["dog", "cat"]
    assert stimuli.table["object_name"].dtype == STR_DTYPE
    assert stimuli.table["image_file_name"].dtype == STR_DTYPE
    assert stimuli.table["label"].dtype == np.int64
    assert stimuli.table["onset"].dtype == np.float64
    assert dict(stimuli.header) == {"type": "image", "path": "images",
                                    "text": "object_name,image_file_name"}
    assert format_stim(stimuli) == TEXT_FIELDS


def test_a_table_built_in_code_declares_its_text_fields_in_table_order():
    table = pd.DataFrame({"stimID": ["a", "b"], "size": [1.0, 2.0], "word": ["x", "y"],
                          "kind": ["p", "q"]})
    stimuli = Stimuli({"type": "image", "path": "p", "text": "kind, word"}, table)
    assert stimuli.header["text"] == "word,kind"
    assert format_stim(stimuli).splitlines()[2:4] == ["text=word,kind",
                                                     "data=stimID,size,word,kind"]
    assert parse_stim(format_stim(stimuli)).equals(stimuli)
    # an empty text= key declares nothing, and is not kept
    assert "text" not in Stimuli({"type": "image", "path": "p", "text": ""},
                                 table[["stimID", "size"]]).header


@pytest.mark.parametrize(("listed", "problem"), [
    ("word,word", "'word' is listed twice"),
    ("label", "'label' is typed by DNNBrain's rule"),
    ("stimID", "'stimID' is typed by DNNBrain's rule"),
    ("colour", "'colour' is not a field of the table"),
])
def test_a_text_key_that_does_not_fit_the_fields_is_refused(listed, problem):
    text = f"type=image\npath=p\ntext={listed}\ndata=stimID,label,word\na,1,x\n"
    with pytest.raises(FormatError, match=rf"^line 3: header key 'text' lists the text fields "
                                          rf"'{listed}': {re.escape(problem)}"):
        parse_stim(text)
    with pytest.raises(DnnMaskError, match=re.escape(problem)):
        Stimuli({"type": "image", "path": "p", "text": listed},
                pd.DataFrame({"stimID": ["a"], "label": [1], "word": ["x"]}))


def test_a_text_field_not_declared_says_how_to_declare_it():
    with pytest.raises(DnnMaskError, match=re.escape(
            "field 'word', stimulus number 1: value 'x' is not a number (e.g. 1, -0.5, 1e-3, "
            "nan, inf); a field of text is listed in the header's 'text' key (text=word)")):
        Stimuli({"type": "image", "path": "p"}, pd.DataFrame({"stimID": ["a"], "word": ["x"]}))
    with pytest.raises(FormatError, match="line 4: field 'word': value 'x' is not a number"):
        parse_stim("type=image\npath=p\ndata=stimID,word\na,x\n")


def _moved_by_hand(ids: list, carried: list) -> tuple[int, int] | None:
    """The first row whose ID the activations hold at another row, and that row (1-based)."""
    rows: dict[str, int] = {}
    for row, stimulus in enumerate(carried):
        rows.setdefault(str(stimulus), row)
    for row, (listed, held) in enumerate(zip(ids, carried, strict=True)):
        other = rows.get(str(listed))
        if other is not None and str(listed) != str(held):
            return row + 1, other + 1
    return None


@settings(max_examples=examples(200), deadline=None)
@given(data=st.data())
def test_a_table_listing_held_ids_in_another_order_is_refused_at_the_first_such_row(data):
    from dnnmask_xr.act.stimulus import _check_same_order
    from dnnmask_xr.errors import SelectionError

    kind = data.draw(st.sampled_from(["text", "int", "mixed"]))
    element = {"text": st.sampled_from(["a", "b", "7", "c.png"]),
               "int": st.integers(1, 6),
               "mixed": st.one_of(st.integers(5, 8), st.sampled_from(["7", "x"]))}[kind]
    carried = data.draw(st.lists(element, max_size=8))
    ids = data.draw(st.lists(element, min_size=len(carried), max_size=len(carried)))
    expected = _moved_by_hand(ids, carried)
    held = np.array(carried, dtype=object if kind == "mixed" else None)
    if expected is None or np.array_equal(held, np.arange(1, len(carried) + 1)):
        _check_same_order(np.array(ids, dtype=object), held, "the layers")
        return
    row, other = expected
    with pytest.raises(SelectionError, match=(
            rf"^the stimulus table lists {re.escape(repr(ids[row - 1]))} in row {row}, but "
            rf"the layers holds it as stimulus {other}; a table labels the stimuli by position")):
        _check_same_order(np.array(ids, dtype=object), held, "the layers")


@pytest.mark.parametrize(("stim_type", "field"), [("image", "label"), ("video", "stimID")])
@pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1, 2**63 - 1])
def test_an_integer_dnnbrain_would_round_is_not_written(stim_type, field, value):
    # DNNBrain's StimulusFile.read takes label (and a video's stimID) through np.float64
    table = pd.DataFrame({"stimID": [1, 2], "label": [3, 4]})
    table.loc[1, field] = value
    stimuli = Stimuli({"type": stim_type, "path": "p"}, table)
    assert stimuli.table[field].tolist()[1] == value  # read and held exactly
    rounded = int(np.float64(value))
    with pytest.raises(DnnMaskError, match=re.escape(
            f"field {field!r}, stimulus number 2: value {value} is beyond ±2**53 "
            f"(9007199254740992), where DNNBrain's reader, which reads it as a float64, "
            f"gives {rounded}")):
        format_stim(stimuli)
    table.loc[1, field] = 2**53
    assert parse_stim(format_stim(Stimuli({"type": stim_type, "path": "p"}, table))).table[
        field].tolist()[1] == 2**53


# --- what DNNBrain reads of what is written ------------------------------------


def dnnbrain_read_stim(text: str) -> dict:
    """DNNBrain's ``StimulusFile.read``, step for step (``np.str`` is ``str`` now)."""
    lines = text.splitlines()
    while "" in lines:
        lines.remove("")
    data_idx = [line.startswith("data=") for line in lines].index(True)
    stimuli: dict = {}
    for line in lines[:data_idx]:
        k, v = line.split("=")
        stimuli[k] = v
    assert stimuli["type"] in STIM_TYPES and "path" in stimuli
    data_keys = lines[data_idx].split("=")[1].split(",")
    assert "stimID" in data_keys
    var_data = list(zip(*[line.split(",") for line in lines[data_idx + 1:]], strict=True))
    data = {}
    for idx, key in enumerate(data_keys):
        if key == "stimID":
            if stimuli["type"] in ("image", "video_clip"):
                dtype = str
            else:
                var_data[idx] = np.float64(var_data[idx])
                dtype = int
        elif key == "label":
            var_data[idx] = np.float64(var_data[idx])
            dtype = int
        elif key == "condition":
            dtype = str
        else:
            dtype = float
        data[key] = np.asarray(var_data[idx], dtype=dtype)
    stimuli["data"] = data
    return stimuli


@settings(max_examples=examples(100), deadline=None)
@given(stimuli_strategy())
def test_what_is_written_reads_back_the_same_under_dnnbrains_rules(stimuli):
    # DNNBrain reads fields outside its rule as floats
    assume(TEXT_KEY not in stimuli.header)
    theirs = dnnbrain_read_stim(format_stim(stimuli))
    assert {key: value for key, value in theirs.items() if key != "data"} == dict(
        stimuli.header)
    assert list(theirs["data"]) == list(stimuli.table.columns)
    for name, column in theirs["data"].items():
        ours = stimuli.table[name].to_numpy()
        if column.dtype.kind == "f":
            assert np.array_equal(column, ours, equal_nan=True), name
        else:
            assert column.tolist() == ours.tolist(), name


@pytest.mark.parametrize(("row", "field"), [('"n01.JPEG",1,cat', "stimID"),
                                            ('n01.JPEG,1,"cat"', "condition"),
                                            ('n01.JPEG,1,""', "condition")])
def test_a_text_value_in_double_quotes_is_refused_with_its_line(row, field):
    # R's write.csv and pandas' QUOTE_ALL quote text: a person reads "cat" as cat,
    # DNNBrain (and this reader, before) as five characters with the quotes
    text = f"type=image\npath=p\ndata=stimID,label,condition\nn02.JPEG,2,dog\n{row}\n"
    with pytest.raises(FormatError, match=re.escape(
            f"q.stim.csv, line 5: field {field!r}: value ") + r"'\".*\"' is in double quotes, "
            "which a .csv reader takes away but a .stim.csv has no quoting; remove the quotes"):
        parse_stim(text, "q.stim.csv")
    # a quote inside a value, or a lone one, is no quoting: kept as written
    inside = parse_stim('type=image\npath=p\ndata=stimID,condition\nsay "hi",\"\n')
    assert inside.table["stimID"].tolist() == ['say "hi"']
    assert inside.table["condition"].tolist() == ['"']


@pytest.mark.parametrize(("text", "line"), [
    ("type=image\npath=p\n# made by hand\ndata=stimID\na.png\n", 3),
    ("type=image\npath=p\n#path=/old\ndata=stimID\na.png\n", 3),
    ("type=image\npath=p\ndata=stimID\n# block A\na.png\n", 4),
    ("type=image\npath=p\ndata=stimID\na.png\n  #b.png\n", 5),
])
def test_a_line_starting_with_a_hash_is_refused_with_its_line(text, line):
    # DNNBrain reads '# block A' as a stimulus and '#path' as a key; a person, as comments
    with pytest.raises(FormatError, match=rf"c\.stim\.csv, line {line}: line '#.*' starts "
                       "with '#'; a .stim.csv file has no comments: delete the line, or remove "
                       "the '#'"):
        parse_stim(text, "c.stim.csv")


@pytest.mark.parametrize(("header", "stim_ids", "match"), [
    ({"type": "image", "path": "p", "#note": "x"}, ["a"], "header key '#note' starts with '#'"),
    ({"type": "image", "path": "p"}, ["a", "#b"], r"stimulus number 2: its row '#b' would start "
                                                  "with '#', which reading refuses"),
])
def test_a_line_starting_with_a_hash_is_not_written(header, stim_ids, match):
    with pytest.raises(DnnMaskError, match=match):
        format_stim(Stimuli(header, pd.DataFrame({"stimID": stim_ids})))
    # further along a row, a '#' starts no line
    written = format_stim(Stimuli({"type": "image", "path": "p"},
                                  pd.DataFrame({"stimID": ["a"], "condition": ["#1"]})))
    assert parse_stim(written).table["condition"].tolist() == ["#1"]


@pytest.mark.parametrize(("text", "line"), [
    ("type=image\npath=p\ndata=stimID\na\x00\nb\n", 4),
    ("type=image\npath=p\x00\ndata=stimID\na\n", 2),
])
def test_a_nul_character_is_refused_with_its_line(text, line):
    # DNNBrain reads stimID 'a\x00' as 'a' (numpy's text arrays drop trailing NULs)
    with pytest.raises(FormatError, match=rf"n\.stim\.csv, line {line}: line .* holds a NUL "
                       r"character \('\\x00'\); a \.stim\.csv file is text"):
        parse_stim(text, "n.stim.csv")


@pytest.mark.parametrize(("stim_ids", "condition", "match"), [
    (["a\0"], ["x"], r"^field 'stimID', stimulus number 1: value 'a\\x00' holds a NUL "
     r"character, which reading refuses \(DNNBrain's reader drops it at a value's end\); "
     r"remove it$"),
    (["a", "b"], ["x", "x\0y"], r"^field 'condition', stimulus number 2: value 'x\\x00y' holds "
     r"a NUL character"),
])
def test_a_nul_character_in_a_value_is_refused_as_the_table_is_made(stim_ids, condition, match):
    # pandas 2's str columns (numpy's text arrays) dropped the trailing NUL of 'a\x00'
    # without a word, so the table held 'a' and wrote it
    with pytest.raises(DnnMaskError, match=match):
        Stimuli(IMAGE, pd.DataFrame({"stimID": stim_ids, "condition": condition}))


def test_a_nul_character_in_a_header_value_is_not_written():
    with pytest.raises(DnnMaskError, match=r"header value for key 'title' 'a\\x00' holds a NUL"):
        Stimuli({"type": "image", "path": "p", "title": "a\0"}, pd.DataFrame({"stimID": ["a"]}))
