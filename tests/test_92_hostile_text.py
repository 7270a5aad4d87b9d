"""Hostile ``.dmask.csv`` and ``.stim.csv`` text: the meaning a person reads, or a FormatError.

- Round trips with any layer name the format can hold, then the same text
  disguised the ways editors and people change files (line ends mixed per
  line among ``\\n``, ``\\r\\n`` and ``\\r``, a byte order mark, blank and
  whitespace-only lines, spaces and tabs around items, trailing commas):
  it still parses to the same mask or table.
- Fuzzing with random text, random bytes and random lines built from the
  format's own pieces: the parsers return a value or raise
  :class:`FormatError` naming the file and, where one line is at fault, a
  line number that exists in the file. No other exception.
- Huge numbers are refused with the line, not an ``OverflowError``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reliability import assert_one_line_error
from test_11_stim import assert_same, stimuli_strategy

from dnnmask_xr import DnnMask, LayerMask
from dnnmask_xr.cli import main
from dnnmask_xr.errors import DnnMaskError, FormatError
from dnnmask_xr.formats.dmask import AXES, format_dmask, parse_dmask, read_dmask
from dnnmask_xr.formats.stim import format_stim, parse_stim, read_stim

pytestmark = pytest.mark.reliability

SETTINGS = settings(max_examples=examples(60), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
#: Fuzzing is cheap per example, so it gets more (2000 each passed when written).
FUZZ = settings(SETTINGS, max_examples=examples(300))
LINE_ENDS = ["\n", "\r\n", "\r"]
#: What str.splitlines() breaks at besides '\n' and '\r'.
OTHER_BREAKS = "\v\f\x1c\x1d\x1e\x85\u2028\u2029"
BOM = "\ufeff"


# -- strategies ------------------------------------------------------------------------


def _name_ok(name: str) -> bool:
    try:
        DnnMask({name: {}})
    except DnnMaskError:
        return False
    # a name starting with a byte order mark would lose it as the first line
    return not name.startswith(BOM)


layer_names = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1,
                      max_size=12).filter(_name_ok)
numbers = st.lists(st.integers(-(2**63) + 1, 2**63 - 1), min_size=1, max_size=6)


@st.composite
def masks(draw) -> DnnMask:
    names = draw(st.lists(layer_names, min_size=1, max_size=4, unique=True))
    layers = {}
    for name in names:
        axes = draw(st.lists(st.sampled_from(AXES), unique=True, max_size=3))
        layers[name] = LayerMask({axis: draw(numbers) for axis in axes})
    return DnnMask(layers)


@st.composite
def disguised(draw, text: str, separators: bool = True, commas: bool = True) -> str:
    """``text`` as a person or an editor might have changed it, meaning the same."""
    blank = st.sampled_from(["", " ", "\t", "  \t "])
    lines = []
    for line in text.splitlines():
        if separators and draw(st.booleans()):
            line = ",".join(draw(blank) + item + draw(blank) for item in line.split(","))
            # a trailing comma after numbers or axes is dropped, as DNNBrain does
            if commas and draw(st.booleans()) and not line.rstrip().endswith(("=", ",")):
                line += ","
        lines.append(draw(blank) + line + draw(blank))
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(blank))
    ends = [draw(st.sampled_from(LINE_ENDS)) for _ in lines]
    body = "".join(line + end for line, end in zip(lines, ends, strict=True))
    if draw(st.booleans()):
        body = body.rstrip("\r\n")  # no line end after the last line
    return (BOM if draw(st.booleans()) else "") + body


# -- .dmask.csv --------------------------------------------------------------------------


@SETTINGS
@given(mask=masks(), data=st.data())
def test_dmask_means_the_same_however_it_is_dressed(mask: DnnMask, data):
    text = format_dmask(mask)
    assert parse_dmask(text) == mask
    # numbers lines may gain spaces and trailing commas; layer lines only
    # surrounding space (',' may be part of a layer name)
    lines = []
    for line in text.splitlines():
        if "=" in line:
            lines.append(data.draw(disguised(line, separators=False)).removeprefix(BOM))
        else:
            lines.append(data.draw(disguised(line)).removeprefix(BOM))
    variant = data.draw(st.sampled_from(["", BOM])) + data.draw(
        st.sampled_from(LINE_ENDS)).join(lines)
    assert parse_dmask(variant) == mask


def check_format_error(error: FormatError, text: str, path: object = None) -> None:
    assert error.path == (None if path is None else str(path))
    assert error.message[0].islower() or error.message[0] in "'\"", error
    if error.line is not None:
        assert 1 <= error.line <= len(re.split(r"\r\n|\r|\n", text)), (error.line, text)
    assert "\n" not in str(error)


#: The format's own pieces, so random files reach deep into the parsers.
PIECES = ["conv5=chn,row,col", "conv5=chn", "fc3=", "fc3=col,row", "x=chn,chn", "=chn",
          "a=b=c", "conv5=depth", "1,2,3", "1,,2", "1, 2 ,", "-1", "+3", "0", "1.5", "1e3",
          "\uff11", "9" * 25, "9" * 5000, "", " ", "\t", BOM, "\v", "\x85", "\u2028", ",", "=",
          "chn", "row,col", "1_000", "0x10", "data=stimID,label", "type=image", "path=p",
          "type=video", "type=bad", "data=stimID,onset,condition", "data=label", "a,1",
          "a,1,cat,0.5", "3,4", "a,b,c", "nan", "inf", "-0.0", "é,1", "\0", "key=", "=v",
          "data=", "data=stimID,stimID", "\udcff"]

piece_texts = st.lists(
    st.tuples(st.sampled_from(PIECES), st.sampled_from([*LINE_ENDS, "", "\v"])), max_size=12
).map(lambda parts: "".join(piece + end for piece, end in parts))
any_texts = st.one_of(piece_texts, st.text(max_size=200))


@FUZZ
@given(text=any_texts)
def test_dmask_parser_returns_a_mask_or_a_format_error(text: str):
    try:
        mask = parse_dmask(text, "m.dmask.csv")
    except FormatError as error:
        check_format_error(error, text, "m.dmask.csv")
    else:
        # what was read is stable: written back and read again, it is the same
        assert parse_dmask(format_dmask(mask)) == mask


@pytest.mark.parametrize(
    ("text", "line", "pattern"),
    [
        ("conv5=chn\n1,99999999999999999999\n", 2,
         r"'99999999999999999999' in '1,99999999999999999999' is out of range for any layer"),
        ("conv5=chn\r\n" + "9" * 5000 + "\r\n", 2, r"'9{37}\.\.\. \(5000 characters\)'"),
        ("conv5=chn\n-9223372036854775808\n", 2, r"out of range for any layer"),
        ("conv5=chn\n1,2\vfc3=chn\n", 2, r"holds the line break '\\x0b' inside it"),
        ("conv5=chn\n1\u20282\n", 2, r"holds the line break '\\u2028' inside it"),
        ("conv5=chn\r1\rfc3=rows\r", 3, r"unknown axis 'rows' in layer 'fc3'"),
    ],
    ids=["int64-plus-one", "5000-digits", "int64-min", "vertical-tab", "line-separator",
         "lone-cr-counts-lines"],
)
def test_dmask_hostile_numbers_and_breaks_give_the_line(text: str, line: int, pattern: str):
    with pytest.raises(FormatError, match=pattern) as caught:
        parse_dmask(text, "m.dmask.csv")
    assert (caught.value.path, caught.value.line) == ("m.dmask.csv", line)


def test_mask_built_in_code_refuses_numbers_beyond_int64():
    with pytest.raises(DnnMaskError, match=r"channel number 9{20} is out of range for any layer"):
        LayerMask({"channel": [1, 10**20 - 1]})


@pytest.mark.parametrize("how", ["dmask", "chn"])
def test_huge_numbers_on_the_command_line_are_one_line_errors(
    how: str, act_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    huge = "9" * 20
    if how == "dmask":
        dmask = tmp_path / "huge.dmask.csv"
        dmask.write_text(f"conv5=chn\n1,{huge}\n")
        flags = ["-dmask", str(dmask)]
    else:
        flags = ["-layer", "conv5", "-chn", "1", huge]
    out = tmp_path / "out.act.h5"
    # a number past int64 in a file is the file's fault; as a -chn word, the flag's (any
    # number of digits: it was status 1 up to 4300 digits, 2 past them)
    assert main(["-act", str(act_file), *flags, "-out", str(out)]) == (
        1 if how == "dmask" else 2)
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert re.fullmatch(rf"dnn_mask: error: .*{huge}.* out of range for any layer.*\n", err), err
    assert not out.exists()


def test_read_errors_count_lone_cr_as_a_line_end_for_bad_bytes(tmp_path: Path):
    path = tmp_path / "m.dmask.csv"
    path.write_bytes(b"conv5=chn\r1\r\nfc3=chn\r\xff\n")
    with pytest.raises(FormatError, match=r"not UTF-8") as caught:
        read_dmask(path)
    assert caught.value.line == 4


# -- .stim.csv ---------------------------------------------------------------------------


@SETTINGS
@given(stimuli=stimuli_strategy(), data=st.data())
def test_stim_means_the_same_however_it_is_dressed(stimuli, data):
    text = format_stim(stimuli)
    header, _, rows = text.partition("\ndata=")
    fields, _, rows = rows.partition("\n")
    # the header's values may hold ',', so only its lines get surrounding space;
    # a trailing comma in a row is one more (empty) value, so none is added
    variant = (data.draw(disguised(header + "\n", separators=False))
               + data.draw(st.sampled_from(LINE_ENDS))
               + data.draw(disguised("data=" + fields + "\n" + rows, commas=False))
               .removeprefix(BOM))
    assert_same(parse_stim(variant), stimuli)


@FUZZ
@given(text=any_texts)
def test_stim_parser_returns_a_table_or_a_format_error(text: str):
    try:
        stimuli = parse_stim(text, "s.stim.csv")
    except FormatError as error:
        check_format_error(error, text, "s.stim.csv")
    else:
        try:
            written = format_stim(stimuli)
        except DnnMaskError as error:
            # read, but not written: DNNBrain's reader would read it otherwise, or not at all
            assert re.search(r"contains '='|ends in a NUL", str(error)), error
            return
        assert parse_stim(written).equals(stimuli)


@pytest.mark.parametrize(("read", "name"), [(read_dmask, "m.dmask.csv"),
                                           (read_stim, "s.stim.csv")],
                         ids=["dmask", "stim"])
@FUZZ
@given(data=st.binary(max_size=300) | piece_texts.map(
    lambda text: text.encode("utf-8", "surrogateescape")))
def test_reading_any_bytes_gives_a_value_or_a_format_error(tmp_path: Path, read, name: str,
                                                           data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    try:
        read(path)
    except FormatError as error:
        assert error.path == str(path)
        assert str(error).startswith(f"{path}")
        if error.line is not None:
            assert 1 <= error.line <= len(re.split(rb"\r\n|\r|\n", data))


def test_stim_and_dmask_agree_on_line_ends():
    """A lone '\\r' ends a line in both formats, as in DNNBrain's text-mode reading."""
    stim = parse_stim("type=image\rpath=p\rdata=stimID,label\ra,1\r\rb,2")
    assert stim.table["stimID"].tolist() == ["a", "b"]
    assert stim.table["label"].tolist() == [1, 2]
    assert parse_dmask("conv5=chn\r1,2\r\rfc3=\r") == DnnMask({"conv5": {"channel": [1, 2]},
                                                                "fc3": {}})
    for parse, text in ((parse_stim, "type=image\npath=p\ndata=stimID\na\fb\n"),
                        (parse_dmask, "conv5=chn\n1\f2\n")):
        with pytest.raises(FormatError, match=r"holds the line break '\\x0c' inside it"):
            parse(text)


# -- numbers of any length ---------------------------------------------------------------


@SETTINGS
@given(value=st.integers(-(2**63) + 1, 2**63 - 1), zeros=st.integers(0, 6000))
@example(value=1, zeros=5000)  # past int()'s 4300 digits, which hypothesis rarely draws
@example(value=-(2**63) + 1, zeros=4300)
def test_dmask_numbers_may_have_any_number_of_leading_zeros(value: int, zeros: int):
    sign = "-" if value < 0 else ""
    text = f"conv5=chn\n{sign}{'0' * zeros}{abs(value)}\n"
    assert parse_dmask(text)["conv5"].channel == (value,)


@pytest.mark.parametrize("digits", ["9" * 5000, "1" + "0" * 4300, "0" * 10 + "9" * 20],
                         ids=["5000-nines", "10**4300", "zeros-then-20-nines"])
@pytest.mark.parametrize("sign", ["", "-", "+"])
def test_dmask_numbers_too_large_for_any_unit_give_the_line(digits: str, sign: str):
    text = f"conv5=chn,row\n1\n2,{sign}{digits}\n"
    with pytest.raises(FormatError, match=r"is out of range for any layer") as caught:
        parse_dmask(text, "m.dmask.csv")
    assert (caught.value.path, caught.value.line) == ("m.dmask.csv", 3)
    assert len(str(caught.value)) < 300  # the number is shortened, the line still one


# -- comments ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "line"), [("#conv5=chn\n1\n", 1),
                                            ("conv5=chn\n1\n  # fc3=\n", 3),
                                            ("\ufeff#x\nconv5=\n", 1)])
def test_dmask_lines_starting_with_a_hash_are_refused_as_documented(text: str, line: int):
    with pytest.raises(FormatError, match=r"starts with '#'; a \.dmask\.csv file has no "
                                          r"comments") as caught:
        parse_dmask(text, "m.dmask.csv")
    assert caught.value.line == line


def test_a_layer_named_with_a_leading_hash_cannot_be_built():
    # it could not be read back from a file
    with pytest.raises(DnnMaskError, match=r"layer name '#conv5' starts with '#'"):
        DnnMask({"#conv5": {}})
    assert parse_dmask(format_dmask(DnnMask({"conv#5": {}}))) == DnnMask({"conv#5": {}})


# -- the documented line ends --------------------------------------------------------------


DOCS = Path(__file__).resolve().parents[1] / "docs"


def _documented_line_ends(section: str) -> set[str]:
    """The line ends docs/formats.md's Reading section of ``section`` says are tolerated."""
    text = (DOCS / "formats.md").read_text()
    body = text[text.index(f"## `{section}`"):]
    body = body[body.index("### Reading"):]
    bullet = next(line for line in body.splitlines() if line.startswith("- line ends"))
    names = {"\\n": "\n", "\\r\\n": "\r\n", "\\r": "\r"}
    return {names[code] for code in re.findall(r"`([^`]+)`", bullet)}


@pytest.mark.parametrize(("section", "parse", "lines"), [
    (".dmask.csv", parse_dmask, ["conv5=chn", "1,2", "fc3="]),
    (".stim.csv", parse_stim, ["type=image", "path=p", "data=stimID,label", "a,1", "b,2"]),
], ids=["dmask", "stim"])
def test_docs_list_the_line_ends_the_parser_takes(section: str, parse, lines: list[str]):
    assert _documented_line_ends(section) == set(LINE_ENDS)
    expected = parse("\n".join(lines))
    for end in LINE_ENDS:
        got = parse(end.join(lines) + end)
        assert got == expected if section == ".dmask.csv" else got.equals(expected)


# -- integral floats in integer fields ---------------------------------------------------


def _float_texts(value: int) -> st.SearchStrategy[str]:
    """Ways DNNBrain's writer (and people) spell an integer as a float."""
    return st.sampled_from([f"{value}.0", f"{value}.", f"{value}.000", repr(float(value))
                            if abs(value) < 2**53 else f"{value}.0", f"{value}e0",
                            f"{value}0e-1", f"+{value}.0" if value >= 0 else f"{value}.0"])


@SETTINGS
@given(value=st.integers(-(2**63) + 1, 2**63 - 1), data=st.data())
def test_integral_floats_read_as_integers(value: int, data):
    label = data.draw(_float_texts(value))
    frame = data.draw(_float_texts(abs(value)))
    stim = parse_stim(f"type=video\npath=v.mp4\ndata=stimID,label\n{frame},{label}\n")
    assert stim.table["label"].tolist() == [value]
    assert stim.stim_ids.tolist() == [abs(value)]
    assert stim.table["label"].dtype == "int64" and stim.table["stimID"].dtype == "int64"


@pytest.mark.parametrize(("value", "pattern"), [
    ("1.5", r"value '1\.5' is not an integer"),
    ("1e-3", r"value '1e-3' is not an integer"),
    ("nan", r"value 'nan' is not an integer"),
    ("inf", r"value 'inf' is not an integer"),
    ("-inf", r"value '-inf' is not an integer"),
    ("9223372036854775808.0", r"out of the int64 range"),
    ("1e19", r"out of the int64 range"),
    ("1e999999999", r"out of the int64 range"),
    ("0." + "0" * 5000 + "1", r"is not an integer"),
    ("9" * 5000, r"out of the int64 range"),
    ("0" * 5000 + "7", None),
    ("1_0", r"is not an integer"),
    ("\uff11", r"is not an integer"),
    ("0x10", r"is not an integer"),
], ids=lambda value: value if value is None or len(value) < 30 else f"{len(value)}-chars")
@pytest.mark.parametrize("field", ["label", "stimID"])
def test_integer_fields_refuse_what_is_not_an_integer_in_one_line(value: str, pattern, field):
    row = f"{value},2" if field == "stimID" else f"1,{value}"
    text = f"type=video\npath=v.mp4\ndata=stimID,label\n1,2\n{row}\n"
    if pattern is None:
        assert parse_stim(text).table[field].tolist() == [1 if field == "stimID" else 2, 7]
        return
    with pytest.raises(FormatError, match=rf"field '{field}': (value .* )?{pattern}") as caught:
        parse_stim(text, "s.stim.csv")
    assert caught.value.line == 5 and len(str(caught.value)) < 300
    assert "\n" not in str(caught.value)


def test_integral_floats_written_as_strings_in_code_read_as_integers():
    import pandas as pd

    from dnnmask_xr import Stimuli

    built = Stimuli({"type": "video", "path": "v.mp4"},
                    pd.DataFrame({"stimID": ["1.0", "2.0"], "label": ["3.0", 4.0]}))
    assert built.stim_ids.tolist() == [1, 2] and built.table["label"].tolist() == [3, 4]
    assert format_stim(built).splitlines()[-2:] == ["1,3", "2,4"]
