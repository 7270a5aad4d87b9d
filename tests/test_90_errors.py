"""Error messages of ``dnn_mask``: one line, the right exit status, nothing written.

Every case runs ``main([...])`` on files made in ``tmp_path`` and checks that
the run fails the way a user can act on:

- exit status 2 for misused flags, 1 for bad files or selections;
- stderr is exactly one line, ``dnn_mask: error: ...``, no traceback, and
  names what is at fault and what would be valid;
- nothing appears at ``-out`` and no temporary file is left behind: the
  folder holds exactly the files it held before, byte for byte (so the
  input files are unchanged too).

Unreadable inputs and unwritable output folders (``chmod 000``) are not
tested: the tests run as root, which reads and writes through any mode.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import N_STIMULI, digest
from reliability import assert_one_line_error

from dnnmask_xr import ActFileError, SelectionError, mask_file, open_act, read_dmask
from dnnmask_xr.cli import main

# -- helpers -------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with the digest of its bytes (folders: '<dir>')."""
    found = {}
    for where, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(where, name), folder)] = "<dir>"
        for name in files:
            path = Path(where, name)
            found[os.path.relpath(path, folder)] = (
                "<dangling link>" if path.is_symlink() and not path.exists() else digest(path)
            )
    return found


def run(argv: Sequence[object]) -> int:
    """Run ``main``; argparse's exits count as returned statuses."""
    try:
        return main([str(arg) for arg in argv])
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1


def check_fails(
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    argv: Sequence[object],
    status: int,
    patterns: Sequence[str],
    out: Path | None = None,
) -> str:
    """Run ``dnn_mask`` and check it fails cleanly; return the message."""
    before = snapshot(folder)
    capsys.readouterr()
    got = run(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert got == status, f"exit status {got}, expected {status}; stderr: {err!r}"
    message = assert_one_line_error(err).strip()
    assert captured.out == "", captured.out
    for pattern in patterns:
        assert re.search(pattern, message, flags=re.IGNORECASE), (
            f"{pattern!r} not in {message!r}"
        )
    if out is not None:
        assert not out.exists() or out.name in before, f"{out} was written"
    assert snapshot(folder) == before, "files were created, removed or changed"
    return message


def write_h5(path: Path, build: Callable[[h5py.File], object]) -> Path:
    with h5py.File(path, "w") as root:
        build(root)
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out.act.h5"


@pytest.fixture
def dmask_file(tmp_path: Path) -> Path:
    path = tmp_path / "ok.dmask.csv"
    path.write_text("conv5=chn\n1,2\n")
    return path


# -- misused flags: exit status 2 -----------------------------------------------------

#: argv templates: {act} input, {out} output, {dmask} a valid mask, {dir} the folder
FLAG_CASES = {
    "missing-act": (["-layer", "conv5", "-out", "{out}"], [r"-act\b"]),
    "missing-out": (["-act", "{act}", "-layer", "conv5"], [r"-out\b"]),
    "layer-with-dmask": (
        ["-act", "{act}", "-layer", "conv5", "-dmask", "{dmask}", "-out", "{out}"],
        [r"-dmask\b", r"-layer\b"],
    ),
    "chn-with-dmask": (
        ["-act", "{act}", "-chn", "1", "-dmask", "{dmask}", "-out", "{out}"],
        [r"-dmask\b", r"-chn\b"],
    ),
    "no-units": (["-act", "{act}", "-out", "{out}"], [r"-layer\b", r"-dmask\b"]),
    "chn-without-layer": (
        ["-act", "{act}", "-chn", "1", "-out", "{out}"],
        [r"-chn\b", r"-layer\b"],
    ),
    "chn-count-mismatch": (
        ["-act", "{act}", "-layer", "conv5", "fc3", "-chn", "1", "2", "3", "-out", "{out}"],
        [r"-chn\b", r"\b3\b", r"\b2 layers\b", r"one channel per layer"],
    ),
    "layer-twice": (
        ["-act", "{act}", "-layer", "conv5", "fc3", "conv5", "-out", "{out}"],
        [r"'conv5'", r"twice|more than once|repeated|duplicate"],
    ),
    "chn-not-integer": (
        ["-act", "{act}", "-layer", "conv5", "-chn", "x", "-out", "{out}"],
        [r"-chn\b", r"'x'", r"int"],
    ),
    "out-without-suffix": (
        ["-act", "{act}", "-layer", "conv5", "-out", "{dir}/out.h5"],
        [r"output", r"out\.h5", r"'\.act\.h5'"],
    ),
    "out-is-act": (
        ["-act", "{act}", "-layer", "conv5", "-out", "{act}"],
        [r"output\b", r"in\.act\.h5", r"is the input file", r"choose another output"],
    ),
    "out-is-act-other-spelling": (
        ["-act", "{act}", "-layer", "conv5", "-out", "./sub/../in.act.h5"],
        [r"output\b", r"in\.act\.h5", r"is the input file", r"choose another output"],
    ),
    "out-is-act-through-symlink": (
        ["-act", "{act}", "-layer", "conv5", "-out", "{dir}/link.act.h5"],
        [r"output\b", r"link\.act\.h5", r"is the input file"],
    ),
    "act-through-symlink-is-out": (
        ["-act", "{dir}/link.act.h5", "-layer", "conv5", "-out", "{act}"],
        [r"output\b", r"in\.act\.h5", r"is the input file", r"choose another output"],
    ),
    "unknown-flag": (
        ["-act", "{act}", "-layer", "conv5", "-out", "{out}", "-bogus"],
        [r"-bogus"],
    ),
    "abbreviated-out": (
        ["-act", "{act}", "-layer", "conv5", "-ou", "{out}"],
        [r"-out?\b"],
    ),
    "abbreviated-flag-beside-out": (
        ["-act", "{act}", "-lay", "conv5", "-out", "{out}"],
        [r"-lay\b"],
    ),
}


@pytest.mark.parametrize(
    ("template", "patterns"), list(FLAG_CASES.values()), ids=list(FLAG_CASES)
)
def test_misused_flags_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    act_file: Path,
    dmask_file: Path,
    out: Path,
    template: list[str],
    patterns: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.act.h5").symlink_to(act_file)
    argv = [
        arg.format(act=act_file, out=out, dmask=dmask_file, dir=tmp_path) for arg in template
    ]
    before = digest(act_file)
    check_fails(capsys, tmp_path, argv, 2, patterns, out=out)
    assert digest(act_file) == before


# -- bad input files: exit status 1 --------------------------------------------------


def _not_hdf5(path: Path) -> None:
    path.write_text("this is not HDF5\n")


def _root_group(path: Path) -> None:
    write_h5(path, lambda root: root.create_group("conv5"))


def _two_d(path: Path) -> None:
    write_h5(path, lambda root: root.create_dataset("conv5", data=np.zeros((N_STIMULI, 20))))


def _bytes_strings(path: Path) -> None:
    data = np.full((N_STIMULI, 2, 1, 1), b"abc", dtype="S3")
    write_h5(path, lambda root: root.create_dataset("conv5", data=data))


def _text_strings(path: Path) -> None:
    write_h5(path, lambda root: root.create_dataset(
        "conv5", shape=(N_STIMULI, 2, 1, 1), dtype=h5py.string_dtype()))


def _folder(path: Path) -> None:
    path.mkdir()


def _uneven_stimuli(path: Path) -> None:
    def build(root: h5py.File) -> None:
        root.create_dataset("conv5", data=np.zeros((N_STIMULI, 2, 1, 1)))
        root.create_dataset("fc3", data=np.zeros((N_STIMULI + 1, 2, 1, 1)))

    write_h5(path, build)


def _truncated(path: Path) -> None:
    write_h5(path, lambda root: root.create_dataset(
        "conv5", data=np.random.default_rng(0).random((N_STIMULI, 20, 6, 7)),
        compression="gzip"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damaged_chunk(path: Path) -> None:
    write_h5(path, lambda root: root.create_dataset(
        "conv5", data=np.random.default_rng(0).random((N_STIMULI, 20, 6, 7)),
        chunks=(N_STIMULI, 20, 6, 7), compression="gzip"))
    with h5py.File(path, "r") as root:
        offset = root["conv5"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = bytes(64)
    path.write_bytes(bytes(data))


BAD_ACT = {
    "missing": (None, [r"no such file|does not exist|not found"]),
    "folder": (_folder, [r"folder|directory"]),
    "not-hdf5": (_not_hdf5, [r"not an? HDF5"]),
    "root-group": (_root_group, [r"'conv5'", r"group", r"4-D"]),
    "2-D-dataset": (_two_d, [r"'conv5'", r"2-D", r"4-D"]),
    "bytes-string-dataset": (_bytes_strings, [r"'conv5'", r"number"]),
    "text-string-dataset": (_text_strings, [r"'conv5'", r"number"]),
    "layers-disagree-on-stimuli": (_uneven_stimuli, [r"'conv5'", r"'fc3'", r"stimul"]),
    "truncated": (_truncated, [r"damaged"]),
}


@pytest.mark.parametrize(("make", "patterns"), list(BAD_ACT.values()), ids=list(BAD_ACT))
def test_bad_act_file_exit_1(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    out: Path,
    make: Callable[[Path], None] | None,
    patterns: list[str],
) -> None:
    bad = tmp_path / "bad.act.h5"
    if make is not None:
        make(bad)
    argv = ["-act", bad, "-layer", "conv5", "-out", out]
    check_fails(capsys, tmp_path, argv, 1, [r"bad\.act\.h5", *patterns], out=out)


@pytest.mark.parametrize("flags", [["-chn", "2", "1"], ["--verify"]],
                         ids=["re-encoded", "copied-and-verified"])
def test_damaged_chunk_exit_1(capsys, tmp_path: Path, out: Path, flags: list[str]) -> None:
    bad = tmp_path / "bad.act.h5"
    _damaged_chunk(bad)
    argv = ["-act", bad, "-layer", "conv5", *flags, "-out", out]
    check_fails(capsys, tmp_path, argv, 1,
                [r"bad\.act\.h5", r"cannot read layer 'conv5'", r"damaged chunk"], out=out)


def test_damaged_chunk_copied_unverified_stays_damaged(tmp_path: Path, out: Path) -> None:
    # without --verify a whole layer's compressed chunks are copied as they
    # are: the output holds the same damaged bytes and fails where the input does
    bad = tmp_path / "bad.act.h5"
    _damaged_chunk(bad)
    assert main(["-act", str(bad), "-layer", "conv5", "-out", str(out)]) == 0
    with h5py.File(bad, "r") as source, h5py.File(out, "r") as copy:
        assert copy["conv5"].id.read_direct_chunk((0, 0, 0, 0)) == \
            source["conv5"].id.read_direct_chunk((0, 0, 0, 0))
    with pytest.raises(ActFileError, match=r"cannot read layer 'conv5'"):
        open_act(out)["conv5"].load()


# -- selections that do not fit the file: exit status 1 -------------------------------

SELECTIONS = {
    "unknown-layer": (
        ["-layer", "conv9"],
        [r"'conv9'", r"in\.act\.h5", r"conv5", r"fc3"],
    ),
    "unknown-layer-among-several": (
        ["-layer", "conv5", "pool9"],
        [r"'pool9'", r"conv5", r"fc3"],
    ),
    "channel-0": (
        ["-layer", "conv5", "-chn", "0"],
        [r"'conv5'", r"channel", r"\b0\b", r"1\.\.20", r"1-based"],
    ),
    "channel-negative": (
        ["-layer", "conv5", "-chn", "-3"],
        [r"'conv5'", r"channel", r"-3", r"1\.\.20", r"1-based"],
    ),
    "channel-past-end": (
        ["-layer", "conv5", "-chn", "2", "21"],
        [r"'conv5'", r"channel", r"\b21\b", r"1\.\.20", r"1-based"],
    ),
    "paired-channel-past-end": (
        ["-layer", "conv5", "fc3", "-chn", "1", "13"],
        [r"'fc3'", r"channel", r"\b13\b", r"1\.\.12", r"1-based"],
    ),
}


@pytest.mark.parametrize(
    ("flags", "patterns"), list(SELECTIONS.values()), ids=list(SELECTIONS)
)
def test_selection_out_of_file_exit_1(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    act_file: Path,
    out: Path,
    flags: list[str],
    patterns: list[str],
) -> None:
    before = digest(act_file)
    check_fails(capsys, tmp_path, ["-act", act_file, *flags, "-out", out], 1, patterns, out=out)
    assert digest(act_file) == before


# -- .dmask.csv files ----------------------------------------------------------------

DMASKS = {
    "row-past-end": ("conv5=row\n7\n", [r"'conv5'", r"row", r"\b7\b", r"1\.\.6", r"1-based"]),
    "row-0": ("conv5=chn,row\n1\n0\n", [r"'conv5'", r"row", r"\b0\b", r"1\.\.6", r"1-based"]),
    "column-past-end": (
        "conv5=chn,row,col\n1\n1\n3,8\n",
        [r"'conv5'", r"col", r"\b8\b", r"1\.\.7", r"1-based"],
    ),
    "fc-row-2": ("fc3=row\n2\n", [r"'fc3'", r"row", r"\b2\b", r"1\.\.1\b"]),
    "unknown-layer": ("conv5=chn\n1\nconv9=chn\n1\n", [r"'conv9'", r"conv5", r"fc3"]),
}


@pytest.mark.parametrize(("text", "patterns"), list(DMASKS.values()), ids=list(DMASKS))
def test_dmask_out_of_file_exit_1(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    act_file: Path,
    out: Path,
    text: str,
    patterns: list[str],
) -> None:
    mask = tmp_path / "m.dmask.csv"
    mask.write_text(text)
    before = digest(act_file), digest(mask)
    check_fails(capsys, tmp_path, ["-act", act_file, "-dmask", mask, "-out", out], 1,
                patterns, out=out)
    assert (digest(act_file), digest(mask)) == before


MALFORMED_DMASKS = {
    "stray-number-line": ("conv5=chn\n1,2\n3\n", 3, [r"'?3'?"]),
    "number-line-first": ("1,2\nconv5=chn\n1\n", 1, [r"'?1,2'?"]),
    "unknown-axis": ("conv5=chn,depth\n1\n2\n", 1, [r"'depth'", r"chn", r"row", r"col"]),
    "missing-number-line": ("conv5=chn,row\n1\nfc3=chn\n2\n", 3, [r"'conv5'", r"row"]),
    "missing-number-line-at-end": ("conv5=chn,row,col\n1\n2\n", 1, [r"'conv5'", r"col"]),
    "repeated-layer": ("conv5=chn\n1\nconv5=row\n2\n", 3, [r"'conv5'", r"twice|once"]),
    "not-a-number": ("conv5=chn\n1,x,3\n", 2, [r"'x'", r"integer"]),
    "no-layer": ("\n\n", None, [r"no layer"]),
}


@pytest.mark.parametrize(
    ("text", "line", "patterns"), list(MALFORMED_DMASKS.values()), ids=list(MALFORMED_DMASKS)
)
def test_malformed_dmask_names_file_and_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    act_file: Path,
    out: Path,
    text: str,
    line: int | None,
    patterns: list[str],
) -> None:
    mask = tmp_path / "bad.dmask.csv"
    mask.write_text(text)
    where = [re.escape(str(mask))] + ([rf"\bline {line}\b"] if line else [])
    check_fails(capsys, tmp_path, ["-act", act_file, "-dmask", mask, "-out", out], 1,
                [*where, *patterns], out=out)


def test_missing_dmask_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, act_file: Path, out: Path
) -> None:
    mask = tmp_path / "nothere.dmask.csv"
    check_fails(capsys, tmp_path, ["-act", act_file, "-dmask", mask, "-out", out], 1,
                [re.escape(str(mask)), r"no such file|does not exist|not found"], out=out)


def test_dmask_that_is_a_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, act_file: Path, out: Path
) -> None:
    mask = tmp_path / "dir.dmask.csv"
    mask.mkdir()
    check_fails(capsys, tmp_path, ["-act", act_file, "-dmask", mask, "-out", out], 1,
                [re.escape(str(mask)), r"folder|directory"], out=out)


# -- .stim.csv files -----------------------------------------------------------------

HEADER = "type=image\npath=/data/images\n"
MALFORMED_STIMS = {
    "too-few-values": (
        HEADER + "data=stimID,label\na.png,1\nb.png\n", 5, [r"value|field"]
    ),
    "label-not-integer": (
        HEADER + "data=stimID,label\na.png,1\nb.png,cat\n", 5, [r"'label'", r"'cat'"]
    ),
    "no-data-line": ("type=image\npath=/data/images\n", None, [r"data="]),
    "no-stimID-field": (HEADER + "data=label\n1\n", 3, [r"stimID"]),
    "header-line-without-equals": (
        "type=image\nnonsense\npath=/x\ndata=stimID\na\n", 2, [r"'?nonsense'?"]
    ),
}


@pytest.mark.parametrize(
    ("text", "line", "patterns"), list(MALFORMED_STIMS.values()), ids=list(MALFORMED_STIMS)
)
def test_malformed_stim_names_file_and_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    act_file: Path,
    out: Path,
    text: str,
    line: int | None,
    patterns: list[str],
) -> None:
    stim = tmp_path / "bad.stim.csv"
    stim.write_text(text)
    where = [re.escape(str(stim))] + ([rf"\bline {line}\b"] if line else [])
    argv = ["-act", act_file, "-layer", "conv5", "-stim", stim, "-out", out]
    check_fails(capsys, tmp_path, argv, 1, [*where, *patterns], out=out)


def test_missing_stim_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, act_file: Path, out: Path
) -> None:
    stim = tmp_path / "nothere.stim.csv"
    argv = ["-act", act_file, "-layer", "conv5", "-stim", stim, "-out", out]
    check_fails(capsys, tmp_path, argv, 1,
                [re.escape(str(stim)), r"no such file|does not exist|not found"], out=out)


@pytest.mark.parametrize("n_rows", [N_STIMULI - 1, N_STIMULI + 2], ids=["fewer", "more"])
def test_stim_rows_must_match_stimuli(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    act_file: Path,
    stim_text: str,
    out: Path,
    n_rows: int,
) -> None:
    header, _, rows = stim_text.partition("data=")
    fields, *values = rows.splitlines()
    values = (values * 2)[:n_rows]
    values = [f"img{i}.png{row[row.index(','):]}" for i, row in enumerate(values)]
    stim = tmp_path / "rows.stim.csv"
    stim.write_text(header + "data=" + "\n".join([fields, *values]) + "\n")
    argv = ["-act", act_file, "-layer", "conv5", "-stim", stim, "-out", out]
    check_fails(capsys, tmp_path, argv, 1,
                [re.escape(str(stim)), rf"\b{n_rows}\b", rf"\b{N_STIMULI}\b"], out=out)


@pytest.mark.parametrize("suffix", [".act.h5", ".nc"])
@pytest.mark.parametrize("what", ["field", "header-key"])
def test_a_stim_name_too_long_for_a_file_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, act_file: Path, what: str,
    suffix: str,
) -> None:
    # bug: a field name (or, in .nc, a header key) of some 65 000 characters came out as
    # h5py's KeyError and a traceback: HDF5 stores it as an attribute name, of at most
    # 65 534 bytes
    name = "f" * 70_000
    header = HEADER + (f"{name}=x\n" if what == "header-key" else "")
    fields = f"stimID,{name}" if what == "field" else "stimID"
    rows = "".join(f"img{i}.png" + (f",{i}" if what == "field" else "") + "\n"
                   for i in range(N_STIMULI))
    stim = tmp_path / "long.stim.csv"
    stim.write_text(f"{header}data={fields}\n{rows}")
    out = tmp_path / f"out{suffix}"
    argv = ["-act", act_file, "-layer", "conv5", "-stim", stim, "-out", out]
    check_fails(capsys, tmp_path, argv, 1,
                [r"'fffff", r"is 70000 bytes long", r"at most 655\d\d bytes"], out=out)


# -- the output path -----------------------------------------------------------------


def test_output_folder_missing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, act_file: Path
) -> None:
    out = tmp_path / "nofolder" / "x.act.h5"
    check_fails(capsys, tmp_path, ["-act", act_file, "-layer", "conv5", "-out", out], 1,
                [r"nofolder", r"does not exist|no such|missing"], out=out)
    assert not out.parent.exists()


def test_output_folder_is_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, act_file: Path
) -> None:
    (tmp_path / "somefile.txt").write_text("keep me\n")
    out = tmp_path / "somefile.txt" / "x.act.h5"
    check_fails(capsys, tmp_path, ["-act", act_file, "-layer", "conv5", "-out", out], 1,
                [r"somefile\.txt", r"not a (folder|directory)"])


def test_output_is_a_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, act_file: Path
) -> None:
    out = tmp_path / "dir.act.h5"
    out.mkdir()
    check_fails(capsys, tmp_path, ["-act", act_file, "-layer", "conv5", "-out", out], 1,
                [r"dir\.act\.h5", r"folder|directory"])
    assert out.is_dir() and not any(out.iterdir())


# -- failures leave what was there ---------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [["-layer", "conv5", "-chn", "999"], ["-layer", "conv5", "fc3", "-chn", "1"]],
    ids=["bad-channel", "bad-flags"],
)
def test_failed_run_keeps_previous_output(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    act_file: Path,
    out: Path,
    flags: list[str],
) -> None:
    assert run(["-act", act_file, "-layer", "fc3", "-out", out, "-q"]) == 0
    previous = digest(out)
    status = 1 if "999" in flags else 2
    check_fails(capsys, tmp_path, ["-act", act_file, *flags, "-out", out], status,
                [r"-chn|channel"], out=out)
    assert digest(out) == previous


def test_numbers_are_1_based_in_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, act_file: Path, out: Path
) -> None:
    message = check_fails(
        capsys, tmp_path, ["-act", act_file, "-layer", "conv5", "-chn", "0", "-out", out], 1,
        [r"\b0\b"], out=out,
    )
    assert "1-based" in message
    assert "valid: 1..20" in message


# -- numbers past a layer that a mask has cut: positions, not its labels ----------------

#: The issue's mask (as examples/test.dmask.csv, on the small file): applied twice, its
#: numbers are labels of the masked file but past its end as positions.
RELABELLING_MASK = "conv5=chn,row,col\n20,3,17\n4,5\n6,7\nfc3=chn\n1,2,3\n"
#: What the message says on a layer whose channels are labelled 20, 3, 17.
RELABELLED_CHANNELS = (
    "channel number 20 is out of range for layer 'conv5' (valid: 1..3); numbers are "
    "1-based positions in the file (the n-th channel stored, as DNNBrain reads them), not "
    "labels, and this layer's channels are labelled 20, 3, 17: channels 20, 3, 17 are at "
    "positions 1, 2, 3 (dnn_mask -layer conv5 -chn 1 2 3; 1,2,3 on the chn line of a "
    '.dmask.csv); in Python, by="label" selects by label (the default of Activations.mask; '
    'mask_file(..., by="label")), as does .sel(channel=[20, 3, 17])'
)


@pytest.fixture
def masked(tmp_path: Path, act_file: Path) -> tuple[Path, Path]:
    """``act_file`` masked by ``RELABELLING_MASK``, and the mask file."""
    mask = tmp_path / "m.dmask.csv"
    mask.write_text(RELABELLING_MASK)
    first = tmp_path / "masked.act.h5"
    assert run(["-act", act_file, "-dmask", mask, "-out", first, "-q"]) == 0
    return first, mask


def test_masking_a_masked_file_again_says_numbers_are_positions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, masked: tuple[Path, Path], out: Path
) -> None:
    first, mask = masked
    message = check_fails(capsys, tmp_path, ["-act", first, "-dmask", mask, "-out", out], 1,
                          [], out=out)
    assert message == RELABELLED_CHANNELS


def test_a_masked_file_names_its_row_labels(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, masked: tuple[Path, Path], out: Path
) -> None:
    first, _ = masked
    rows = tmp_path / "rows.dmask.csv"
    rows.write_text("conv5=row\n4,5\n")
    message = check_fails(capsys, tmp_path, ["-act", first, "-dmask", rows, "-out", out], 1,
                          [], out=out)
    assert message == (
        "row number 4 is out of range for layer 'conv5' (valid: 1..2); numbers are 1-based "
        "positions in the file (the n-th row stored, as DNNBrain reads them), not labels, and "
        "this layer's rows are labelled 4..5: rows 4, 5 are at positions 1, 2 (1,2 on the row "
        'line of a .dmask.csv); in Python, by="label" selects by label (the default of '
        'Activations.mask; mask_file(..., by="label")), as does .sel(row=[4, 5])'
    )


def test_a_masked_file_gives_the_positions_that_select_its_labels(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, masked: tuple[Path, Path], out: Path
) -> None:
    first, _ = masked
    check_fails(
        capsys, tmp_path, ["-act", first, "-layer", "conv5", "-chn", "17", "-out", out], 1,
        [r"labelled 20, 3, 17: channel 17 is at position 3 \(dnn_mask -layer conv5 -chn 3;"],
        out=out,
    )
    # the hinted command selects channel 17
    assert run(["-act", first, "-layer", "conv5", "-chn", "3", "-out", out, "-q"]) == 0
    assert open_act(out)["conv5"].channel.values.tolist() == [17]


def test_every_python_route_says_numbers_are_positions(masked: tuple[Path, Path],
                                                       tmp_path: Path, out: Path) -> None:
    first, mask_path = masked
    mask = read_dmask(mask_path)
    match = "^" + re.escape(RELABELLED_CHANNELS) + "$"
    with pytest.raises(SelectionError, match=match):
        mask_file(first, out, mask)
    with open_act(first) as acts, pytest.raises(SelectionError, match=match):
        acts.mask(mask, by="ordinal")
    assert not out.exists()
    # and what the message offers works: by label, the same mask selects the same units
    with open_act(first) as acts:
        assert acts.mask(mask)["conv5"].channel.values.tolist() == [20, 3, 17]
    mask_file(first, out, mask, by="label")
    assert open_act(out)["conv5"].shape == (N_STIMULI, 3, 2, 2)


def test_a_file_no_mask_has_cut_keeps_the_short_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, act_file: Path, out: Path
) -> None:
    old = "channel number 21 is out of range for layer 'conv5' (valid: 1..20); numbers are 1-based"
    message = check_fails(
        capsys, tmp_path, ["-act", act_file, "-layer", "conv5", "-chn", "21", "-out", out], 1,
        [], out=out,
    )
    assert message == old
    with pytest.raises(SelectionError, match="^" + re.escape(old) + "$"):
        mask_file(act_file, out, {"conv5": {"channel": [21]}})
    with open_act(act_file) as acts, pytest.raises(SelectionError,
                                                    match="^" + re.escape(old) + "$"):
        acts.mask({"conv5": {"channel": [21]}}, by="ordinal")


def test_dry_run_checks_the_output_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, act_file: Path
) -> None:
    out = tmp_path / "missing" / "out.act.h5"
    argv = ["-act", act_file, "-layer", "conv5", "--dry-run", "-out", out]
    check_fails(capsys, tmp_path, argv, 1, [r"folder", r"missing", r"does not exist"], out=out)


# -- the Python API: an unreadable file is the project's error alone ----------------------

#: Python routes that open a file through xarray's file manager, whose cache miss (a
#: KeyError) was shown chained before the project's error.
OPENERS = {
    "open_act": "import dnnmask_xr; dnnmask_xr.open_act({path!r})",
    "open_act-set": "import dnnmask_xr; dnnmask_xr.open_act([{good!r}, {path!r}])",
    "open_dataarray": "import xarray as xr; xr.open_dataarray({path!r}, engine='dnnact', "
                      "group='conv5')",
    "open_datatree": "import xarray as xr; xr.open_datatree({path!r}, engine='dnnact')",
}
#: What is at the path, and the error's message.
UNREADABLE = {
    "missing": (None, r"cannot open '{path}': no such file"),
    "folder": ("dir", r"cannot open '{path}': it is a folder, not an \.act\.h5 file"),
    "not-hdf5": ("text", r"'{path}' is not an HDF5 file; an \.act\.h5 file is HDF5"),
}


@pytest.mark.sweep
@pytest.mark.parametrize("kind", UNREADABLE)
@pytest.mark.parametrize("opener", OPENERS)
def test_an_unreadable_file_raises_the_projects_error_alone(tmp_path: Path, act_file: Path,
                                                            opener: str, kind: str) -> None:
    path = tmp_path / f"{kind}.act.h5"
    made, message = UNREADABLE[kind]
    if made == "dir":
        path.mkdir()
    elif made == "text":
        path.write_text("not hdf5\n")
    code = OPENERS[opener].format(path=str(path), good=str(act_file))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 1
    # one traceback, of the project's error: nothing chained before it
    assert done.stderr.startswith("Traceback (most recent call last):\n"), done.stderr
    assert done.stderr.count("Traceback") == 1, done.stderr
    assert "KeyError" not in done.stderr and "During handling" not in done.stderr, done.stderr
    last = done.stderr.splitlines()[-1]
    assert re.fullmatch(r"dnnmask_xr\.errors\.ActFileError: "
                        + message.format(path=re.escape(str(path))) + ".*", last), last
