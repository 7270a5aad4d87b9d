"""A file given as the wrong kind is named for what it is, by both text readers."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

import dnnmask_xr.formats._lines as lines
from dnnmask_xr import open_act
from dnnmask_xr.errors import FormatError
from dnnmask_xr.formats._kind import HDF5_SIGNATURE, is_hdf5, looks_like_dmask, looks_like_stim
from dnnmask_xr.formats.dmask import DnnMask, read_dmask, write_dmask
from dnnmask_xr.formats.stim import read_stim

STIM_AS_MASK = ("looks like a stimulus table (.stim.csv), not a mask (.dmask.csv); pass it "
                "with -stim (read_stim in Python)")
MASK_AS_STIM = ("looks like a mask (.dmask.csv), not a stimulus table (.stim.csv); pass it "
                "with -dmask (read_dmask in Python)")
HDF5_AS = ("is an HDF5 file (such as an .act.h5 activation file), not {}; pass activations "
           "with -act (open_act in Python)")
READERS = {"mask (.dmask.csv)": read_dmask, "stimulus table (.stim.csv)": read_stim}


def _refusal(read, path: Path) -> FormatError:
    with pytest.raises(FormatError) as caught:
        read(path)
    return caught.value


def test_a_stim_file_read_as_a_mask(stim_file):
    error = _refusal(read_dmask, stim_file)
    assert str(error) == f"{stim_file}: {STIM_AS_MASK}"
    assert (error.path, error.line) == (str(stim_file), None)


def test_a_mask_file_read_as_stimuli(tmp_path):
    path = tmp_path / "m.dmask.csv"
    path.write_text("conv5=chn,row,col\n1,2,3\n4,5\n6,7\nfc3=chn\n1,2,3\n")
    assert str(_refusal(read_stim, path)) == f"{path}: {MASK_AS_STIM}"


@pytest.mark.parametrize("what", list(READERS))
def test_an_act_file_read_as_text(what, act_file):
    assert str(_refusal(READERS[what], act_file)) == f"{act_file}: {HDF5_AS.format('a ' + what)}"


@pytest.mark.parametrize("what", list(READERS))
def test_an_hdf5_file_with_a_user_block(what, tmp_path):
    path = tmp_path / "blocked.h5"
    with h5py.File(path, "w", userblock_size=1024) as root:
        root["conv5"] = np.zeros((1, 1, 1, 1))
    with open(path, "r+b") as file:  # a user block of text, as tools that use one write it
        file.write(b"conv5=chn\n")
    assert path.read_bytes()[1024:1032] == HDF5_SIGNATURE
    assert str(_refusal(READERS[what], path)) == f"{path}: {HDF5_AS.format('a ' + what)}"


@pytest.mark.parametrize("what", list(READERS))
def test_an_act_file_over_the_size_limit_is_still_named(what, act_file, monkeypatch):
    # real activation files are far larger than any text file is allowed to be
    monkeypatch.setattr(lines, "MAX_TEXT_BYTES", 100)
    assert str(_refusal(READERS[what], act_file)) == f"{act_file}: {HDF5_AS.format('a ' + what)}"


def test_a_large_text_file_is_still_refused_for_its_size(tmp_path, monkeypatch):
    path = tmp_path / "big.dmask.csv"
    path.write_text("conv5=chn\n" + "1," * 100 + "\n")
    monkeypatch.setattr(lines, "MAX_TEXT_BYTES", 100)
    assert re.search(r"holds 211 bytes, more than the 100 allowed", str(_refusal(read_dmask,
                                                                                 path)))


def test_open_act_names_a_mask_given_as_stimuli(act_file, tmp_path):
    path = tmp_path / "m.dmask.csv"
    path.write_text("fc3=chn\n1\n")
    with pytest.raises(FormatError, match=re.escape(MASK_AS_STIM)):
        open_act(act_file, stim=path)


@pytest.mark.parametrize(("text", "message"), [
    # broken files of the right kind keep their own, precise, errors
    ("conv5=chn,rows\n1\n", "unknown axis 'rows' in layer 'conv5'"),
    # no type= or path= header: nothing says it is a stimulus table
    ("title=x\ndata=stimID\na\n", "unknown axis 'x' in layer 'title'"),
])
def test_other_broken_masks_keep_their_error(text, message, tmp_path):
    path = tmp_path / "m.dmask.csv"
    path.write_text(text)
    assert message in str(_refusal(read_dmask, path))


@pytest.mark.parametrize(("text", "message"), [
    ("type=image\npath=x\ndata=stimID\na,b\n", "row 'a,b' has 2 value(s)"),
    ("conv5=chn,rows\n1\n", "header line '1' has no '='"),
    ("conv5=\n1\n", "header line '1' has no '='"),
])
def test_other_broken_stim_files_keep_their_error(text, message, tmp_path):
    path = tmp_path / "s.stim.csv"
    path.write_text(text)
    assert message in str(_refusal(read_stim, path))


@pytest.mark.parametrize("text", ["path=/images\ntype=image\ndata=label,stimID\n1,a,extra\n",
                                  "type=image\npath=x\ndata=label\n1\n"],
                         ids=["bad-row", "no-stimID"])
def test_a_broken_stim_file_is_still_named_as_one(text, tmp_path):
    # what is wrong with it does not hide what the file is, given as a mask
    path = tmp_path / "s.stim.csv"
    path.write_text(text)
    assert str(_refusal(read_dmask, path)) == f"{path}: {STIM_AS_MASK}"


# --- the tests are never fooled by their own kind ------------------------------------------

layer_names = st.from_regex(r"[A-Za-z0-9_.\-]{1,8}", fullmatch=True)
numbers = st.lists(st.integers(1, 300), min_size=1, max_size=5)
masks = st.dictionaries(
    layer_names,
    st.dictionaries(st.sampled_from(["channel", "row", "column"]), numbers, max_size=3),
    min_size=1, max_size=4)


@settings(max_examples=examples(60), deadline=None)
@given(mask=masks)
def test_masks_look_like_masks_and_not_like_stimuli(mask, tmp_path_factory):
    path = tmp_path_factory.mktemp("kinds") / "m.dmask.csv"
    write_dmask(mask, path)
    text = path.read_text()
    assert not looks_like_stim(text)
    assert looks_like_dmask(text) is any(mask.values())
    assert read_dmask(path) == DnnMask(mask)  # and it still reads


@settings(max_examples=examples(60), deadline=None)
@given(rows=st.lists(st.tuples(st.from_regex(r"[a-z0-9_.]{1,8}", fullmatch=True),
                               st.integers(-5, 5)), min_size=1, max_size=5),
       first=st.sampled_from(["type=image\npath=/x\n", "path=/x\ntype=video_clip\n"]))
def test_stim_tables_look_like_stimuli_and_not_like_masks(rows, first):
    text = first + "data=stimID,label\n" + "".join(f"{i},{n}\n" for i, n in rows)
    assert looks_like_stim(text)
    assert not looks_like_dmask(text)


@given(data=st.binary(max_size=2048))
def test_hdf5_is_found_by_its_signature_only(data):
    assert is_hdf5(data) is (data[:8] == HDF5_SIGNATURE or data[512:520] == HDF5_SIGNATURE
                             or data[1024:1032] == HDF5_SIGNATURE)
    assert is_hdf5(HDF5_SIGNATURE + data)
