"""DNNBrain's Python API (dnnmask_xr.dnnbrain) gives DNNBrain's results, files and errors.

Each call runs through the compatibility layer and is compared with DNNBrain's
semantics as this project pins them (``dnnmask_xr.testing``'s reference reader
and writer, which are DNNBrain's ``ActivationFile`` code) or with values worked
out by hand with NumPy; the text files with the text DNNBrain's writers give,
written out here. Scripts written for DNNBrain run unchanged under
``python -m dnnmask_xr.dnnbrain``.
"""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
import textwrap
import types
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import digest

import dnnmask_xr as dx
import dnnmask_xr.dnnbrain as compat
from dnnmask_xr.dnnbrain.dnn import base, core
from dnnmask_xr.dnnbrain.dnn.hrf import convolve_hrf, spm_hrf
from dnnmask_xr.dnnbrain.io import fileio
from dnnmask_xr.dnnbrain.utils.util import gen_dmask
from dnnmask_xr.errors import (
    ActFileError,
    DnnMaskError,
    FormatError,
    OutOfScopeError,
    SelectionError,
    UsageError,
)
from dnnmask_xr.testing import read_reference_act, relu_activations, write_reference_act

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

#: DNNBrain's own bin/dnn_mask script, as it is in DNNBrain's repository.
DNN_MASK_SCRIPT = '''\
#! /usr/bin/env python

"""
Extract DNN activation for layer, channel, row and column of interest
"""

import argparse

from dnnbrain.dnn.core import Activation
from dnnbrain.utils.util import gen_dmask


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('-act',
                        metavar='Activation',
                        required=True,
                        type=str,
                        help='DNN activation file')
    parser.add_argument('-layer',
                        metavar='Layer',
                        type=str,
                        nargs='+',
                        help="layer names of interest "
                             "For example, 'conv1' represents the first convolution layer, and "
                             "'fc1' represents the first full connection layer. ")
    parser.add_argument('-chn',
                        metavar='Channel',
                        type=int,
                        nargs='+',
                        help="channel numbers of interest "
                             "Default is using all channels of each layer specified by -layer.")
    parser.add_argument('-dmask',
                        metavar='DnnMask',
                        type=str,
                        help='a .dmask.csv file in which layers of interest are listed '
                             'with their own channels, rows and columns of interest.')
    parser.add_argument('-out',
                        metavar='Output',
                        required=True,
                        type=str,
                        help='an output filename with suffix .act.h5')
    args = parser.parse_args()

    # extract dnn activation with mask
    channels = 'all' if args.chn is None else args.chn
    dmask = gen_dmask(args.layer, channels, args.dmask)
    activation = Activation()
    activation.load(args.act, dmask)
    activation.save(args.out)


if __name__ == '__main__':
    main()
'''


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    # not in name order, so that the order files list layers in shows
    shapes = {"fc3": (6, 1, 1), "conv5": (12, 5, 4), "conv1": (3, 7, 7)}
    made = relu_activations(4, shapes, seed=3)
    made["fc3"] = made["fc3"].astype(np.float64)
    return made


@pytest.fixture
def dnnbrain_file(tmp_path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path = tmp_path / "dnnbrain.act.h5"
    write_reference_act(path, arrays)
    return path


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dnnmask_xr.dnnbrain", str(script), *args],
                          capture_output=True, text=True, env=ENV, cwd=script.parent,
                          timeout=120)


def one_line_error(error: BaseException, *words: str) -> None:
    assert isinstance(error, DnnMaskError)
    assert "\n" not in str(error)
    for word in words:
        assert word in str(error)


# ---- ActivationFile: reading ------------------------------------------------------------


def test_read_gives_dnnbrains_layers_values_dtypes_and_order(dnnbrain_file, arrays):
    got = fileio.ActivationFile(str(dnnbrain_file)).read()
    expected = read_reference_act(dnnbrain_file)
    assert list(got) == list(expected) == ["conv1", "conv5", "fc3"]
    for name in expected:
        assert got[name].dtype == expected[name].dtype == arrays[name].dtype
        np.testing.assert_array_equal(got[name], arrays[name])


def test_read_with_a_mask_dnnbrain_can_read_gives_its_result(dnnbrain_file):
    dmask = {"fc3": {"chn": [2, 5], "row": "all", "col": "all"},
             "conv5": {"chn": [1, 4, 9], "row": [2, 3], "col": "all"}}
    got = fileio.ActivationFile(str(dnnbrain_file)).read(dmask)
    expected = read_reference_act(dnnbrain_file, dmask)
    assert list(got) == ["fc3", "conv5"]
    for name in expected:
        assert got[name].dtype == expected[name].dtype
        np.testing.assert_array_equal(got[name], expected[name])


def test_unsorted_and_repeated_numbers_are_kept_in_the_order_given(dnnbrain_file, arrays):
    dmask = {"conv5": {"chn": [9, 1, 9], "row": [3, 1], "col": [4, 2]}}
    got = fileio.ActivationFile(str(dnnbrain_file)).read(dmask)["conv5"]
    expected = arrays["conv5"][:, [8, 0, 8]][:, :, [2, 0]][:, :, :, [3, 1]]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("number", [0, -1, 13])
def test_channel_zero_negative_or_past_the_end_is_an_error(dnnbrain_file, number):
    with pytest.raises(SelectionError) as caught:
        fileio.ActivationFile(str(dnnbrain_file)).read({"conv5": {"chn": [number]}})
    one_line_error(caught.value, "conv5", "channel", str(number), "1..12")


def test_a_layer_of_fewer_dims_reads_as_dnnbrain_reads_it(tmp_path):
    import dnnmask_xr as dx

    path = tmp_path / "embedding.act.h5"
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    dx.save_act({"embed": values}, path)
    got = fileio.ActivationFile(str(path)).read()["embed"]
    assert got.shape == read_reference_act(path)["embed"].shape == (3, 4, 1, 1)
    np.testing.assert_array_equal(got[:, :, 0, 0], values)


# ---- ActivationFile: writing --------------------------------------------------------------


def test_write_gives_the_datasets_dnnbrains_writer_gives(tmp_path, arrays):
    ours, theirs = tmp_path / "ours.act.h5", tmp_path / "theirs.act.h5"
    fileio.ActivationFile(str(ours)).write(arrays)
    write_reference_act(theirs, arrays)
    with h5py.File(ours, "r") as mine, h5py.File(theirs, "r") as reference:
        assert list(mine) == list(reference) == ["conv1", "conv5", "fc3"]
        for name in reference:
            got, want = mine[name], reference[name]
            assert isinstance(got, h5py.Dataset)
            assert (got.shape, got.dtype) == (want.shape, want.dtype)
            assert (got.compression, got.compression_opts) == ("gzip", 4)
            assert (got.shuffle, got.fletcher32, got.scaleoffset) == (False, False, None)
            np.testing.assert_array_equal(got[()], want[()])
    # what DNNBrain's reader (and the reader of this layer) makes of it
    again = read_reference_act(ours)
    assert list(again) == ["conv1", "conv5", "fc3"]
    for name, values in arrays.items():
        np.testing.assert_array_equal(again[name], values)


def test_activation_save_then_load_round_trips(tmp_path, arrays):
    act = core.Activation()
    for name, values in arrays.items():
        act.set(name, values)
    act.save(str(tmp_path / "saved.act.h5"))
    back = core.Activation()
    back.load(str(tmp_path / "saved.act.h5"))
    assert back.layers == ["conv1", "conv5", "fc3"]
    for name, values in arrays.items():
        assert back.get(name).dtype == values.dtype
        np.testing.assert_array_equal(back.get(name), values)


def test_save_over_the_file_loaded_replaces_it_whole(tmp_path, dnnbrain_file, arrays):
    act = core.Activation()
    act.load(str(dnnbrain_file), core.Mask("conv5", channels=[3]))
    act.save(str(dnnbrain_file))
    got = read_reference_act(dnnbrain_file)
    assert list(got) == ["conv5"]
    np.testing.assert_array_equal(got["conv5"], arrays["conv5"][:, [2]])
    assert [p.name for p in tmp_path.iterdir()] == [dnnbrain_file.name]


# ---- MaskFile ---------------------------------------------------------------------------


def test_mask_file_writes_dnnbrains_text_and_reads_its_dict(tmp_path):
    mask = core.Mask("conv5", channels=[200, 3, 17], rows=[4, 5])
    mask.set("fc3")
    mask.set("conv1", columns=[2])
    path = tmp_path / "m.dmask.csv"
    mask.save(str(path))
    # DNNBrain's MaskFile.write: axes in the dict's order, 'all' left out
    assert path.read_bytes() == b"conv5=chn,row\n200,3,17\n4,5\nfc3=\nconv1=col\n2\n"
    read = fileio.MaskFile(str(path)).read()
    assert isinstance(read, OrderedDict)
    assert read == {"conv5": {"chn": [200, 3, 17], "row": [4, 5], "col": "all"},
                    "fc3": {"chn": "all", "row": "all", "col": "all"},
                    "conv1": {"chn": "all", "row": "all", "col": [2]}}
    loaded = core.Mask()
    loaded.load(str(path))
    assert loaded.layers == ["conv5", "fc3", "conv1"]
    assert loaded.get("conv5") == {"chn": [200, 3, 17], "row": [4, 5], "col": "all"}


def test_mask_methods():
    mask = core.Mask("conv5", channels=[1, 2])
    mask.set("conv5", rows=[3])
    copy = mask.copy()
    copy.set("conv5", channels="all")
    assert mask.get("conv5") == {"chn": [1, 2], "row": [3], "col": "all"}
    assert copy.get("conv5") == {"chn": "all", "row": [3], "col": "all"}
    mask.set("fc3", channels=[7])
    assert mask.layers == ["conv5", "fc3"]
    mask.delete("conv5")
    assert mask.layers == ["fc3"]
    mask.clear()
    assert mask.layers == []


# ---- StimulusFile -----------------------------------------------------------------------


def test_stimulus_file_writes_dnnbrains_text(tmp_path):
    path = tmp_path / "s.stim.csv"
    fileio.StimulusFile(str(path)).write(
        "image", "/data/images",
        {"stimID": np.array(["n01.JPEG", "n02.JPEG"]), "label": np.array([281, 285]),
         "condition": np.array(["cat", "dog"]), "onset": np.array([0.0, 2.5])},
        title="two images")
    assert path.read_text() == ("type=image\npath=/data/images\ntitle=two images\n"
                                "data=stimID,label,condition,onset\n"
                                "n01.JPEG,281,cat,0.0\nn02.JPEG,285,dog,2.5")


def test_stimulus_file_of_numbers_only_spells_them_as_dnnbrain(tmp_path):
    path = tmp_path / "v.stim.csv"
    fileio.StimulusFile(str(path)).write(
        "video", "movie.mp4", {"stimID": np.array([1, 2, 3]), "onset": np.array([0, 1.5, 3])})
    # numpy makes one float array of all fields: the frame numbers are written 1.0
    assert path.read_text() == ("type=video\npath=movie.mp4\ndata=stimID,onset\n"
                                "1.0,0.0\n2.0,1.5\n3.0,3.0")
    read = fileio.StimulusFile(str(path)).read()
    assert read["data"]["stimID"].dtype == np.int64
    np.testing.assert_array_equal(read["data"]["stimID"], [1, 2, 3])


@pytest.mark.parametrize(("data", "meta", "words"), [
    # the last row a blank line: read back, the file held one stimulus, not two
    ({"stimID": np.array(["a", ""])}, {}, ("2 stimuli", "1", "stimID ''")),
    ({"stimID": np.array([" a", "b"])}, {}, ("'stimID'", "stimulus number 1", "' a'", "'a'")),
    ({"stimID": np.array(["a", "b"]), "condition": np.array(["cat", "dog "])}, {},
     ("'condition'", "stimulus number 2", "'dog '")),
    ({"stimID": np.array(["a", "b"]), " RT": np.array([0.5, 0.6])}, {},
     ("' RT'", "'RT'")),
    # read back as the key 'ti', value 'tle=two images'
    ({"stimID": np.array(["a", "b"])}, {"ti=tle": "two images"}, ("'ti=tle'", "'='")),
    ({"stimID": np.array(["a", "b"])}, {"title": " two"}, ("'title'", "' two'")),
], ids=["blank row", "stimID space", "condition space", "name space", "key =", "value space"])
def test_stimulus_file_refuses_text_that_reads_back_otherwise(tmp_path, data, meta, words):
    path = tmp_path / "s.stim.csv"
    with pytest.raises(DnnMaskError) as caught:
        fileio.StimulusFile(str(path)).write("image", "images", data, **meta)
    one_line_error(caught.value, "s.stim.csv", "read back", *words)
    assert list(tmp_path.iterdir()) == []


def _write_text_file(api: str, kind: str, path: str) -> None:
    if api == "dnnbrain" and kind == "stim":
        fileio.StimulusFile(path).write("image", "images", {"stimID": np.array(["a"])})
    elif api == "dnnbrain":
        fileio.MaskFile(path).write({"conv5": {"chn": [1]}})
    elif kind == "stim":
        dx.write_stim(dx.Stimuli({"type": "image", "path": "images"},
                                 pd.DataFrame({"stimID": ["a"]})), path)
    else:
        dx.write_dmask(dx.DnnMask({"conv5": {"chn": [1]}}), path)


@pytest.mark.parametrize("api", ["dnnbrain", "dnnmask_xr"])
@pytest.mark.parametrize("kind", ["stim", "dmask"])
@pytest.mark.parametrize(("where", "why"), [("no_folder/x", "does not exist"),
                                            ("folder", "it is a folder"),
                                            ("file/x", "a folder on its path is a file")])
def test_a_text_file_that_cannot_be_written_is_one_line(tmp_path, api, kind, where, why):
    # the OSError of the temporary file or of the rename came out (write_dmask and
    # write_stim too, which DNNBrain's MaskFile and StimulusFile write with)
    (tmp_path / f"folder.{kind}.csv").mkdir()
    (tmp_path / "file").write_text("")
    path = str(tmp_path / f"{where}.{kind}.csv")
    with pytest.raises(ActFileError) as caught:
        _write_text_file(api, kind, path)
    one_line_error(caught.value, f"cannot write {path!r}: ", why)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", f"folder.{kind}.csv"]


@pytest.mark.parametrize("api", ["dnnbrain", "dnnmask_xr"])
@pytest.mark.parametrize("kind", ["stim", "dmask"])
@pytest.mark.parametrize(("where", "why"), [
    ("loop", "its symbolic links lead in a circle (or too deep)"),
    ("x" * 300, "its name is longer than the file system takes")],
    ids=["link-loop", "name-too-long"])
def test_a_text_file_name_no_file_can_have_is_one_line(tmp_path, api, kind, where, why):
    # bug: Python's OSError ("Too many levels of symbolic links", "File name too long"),
    # the second once the text was written
    path = tmp_path / f"{where}.{kind}.csv"
    if where == "loop":
        path.symlink_to(tmp_path / f"back.{kind}.csv")
        (tmp_path / f"back.{kind}.csv").symlink_to(path)
    with pytest.raises(ActFileError) as caught:
        _write_text_file(api, kind, str(path))
    one_line_error(caught.value, f"cannot write {str(path)!r}: {why}")
    assert not [p for p in tmp_path.iterdir() if not p.is_symlink()]


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _null_device(path: Path) -> None:
    # what /dev/null is (character device 1, 3), made where the test may replace it
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")


@pytest.mark.parametrize("api", ["dnnbrain", "dnnmask_xr"])
@pytest.mark.parametrize("kind", ["stim", "dmask"])
@pytest.mark.parametrize("make", [_fifo, _null_device], ids=["fifo", "null-device"])
def test_a_text_file_never_replaces_a_device_or_a_fifo(tmp_path, api, kind, make):
    # bug: only the activations' writer refused them; a .dmask.csv written through a
    # link to /dev/null (a way to throw output away) replaced the device with a file
    special = tmp_path / "special"
    make(special)
    link = tmp_path / f"x.{kind}.csv"
    link.symlink_to(special)
    with pytest.raises(ActFileError) as caught:
        _write_text_file(api, kind, str(link))
    one_line_error(caught.value, f"cannot write {str(link)!r}: it is not a regular file "
                                 "but a device, a FIFO or a socket (the symbolic link")
    assert not stat.S_ISREG(os.lstat(special).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["special", link.name]


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder on a read-only file system (a tmpfs mounted ``ro``: needs the right to mount)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", folder],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", folder], check=True)


@pytest.mark.parametrize("api", ["dnnbrain", "dnnmask_xr"])
@pytest.mark.parametrize("kind", ["stim", "dmask"])
def test_a_text_file_on_a_read_only_file_system_is_one_line(read_only_folder, api, kind):
    # bug: Python's "[Errno 30] Read-only file system", naming the temporary file; root
    # can write a folder chmod made read-only, not one on a read-only file system
    path = str(read_only_folder / f"x.{kind}.csv")
    with pytest.raises(ActFileError) as caught:
        _write_text_file(api, kind, path)
    one_line_error(caught.value, f"cannot write {path!r}: folder "
                                 f"{str(read_only_folder)!r} is not writable")


@pytest.mark.parametrize("kind", ["stim", "dmask"])
@pytest.mark.parametrize(("api", "how"), [
    ("dnnmask_xr", "path"),  # DNNBrain's classes take only their own suffix
    *((api, how) for api in ("dnnbrain", "dnnmask_xr") for how in ("symlink", "renamed"))])
def test_a_text_file_never_replaces_an_activation_file_held_open(act_file, tmp_path, api,
                                                                 kind, how):
    # bug: only the activations' writer refused a file this process holds open; a
    # .dmask.csv or .stim.csv written at it replaced the open activations with text
    acts = dx.open_act(act_file)
    acts["conv5"].values  # noqa: B018 (the file is open)
    out = act_file
    if how == "symlink":
        out = tmp_path / f"link.{kind}.csv"
        out.symlink_to(act_file)
    elif how == "renamed":
        out = act_file.with_name(f"renamed.{kind}.csv")
        act_file.rename(out)
    before = digest(out)
    with pytest.raises(dx.OutputIsInputError) as caught:
        _write_text_file(api, kind, str(out))
    one_line_error(caught.value, f"output {str(out)!r} is the input file",
                   "this process holds it open")
    acts.close()
    assert digest(out) == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_stimulus_file_reads_as_dnnbrain_types(tmp_path):
    path = tmp_path / "s.stim.csv"
    path.write_text("type=image\npath=images\ntitle=t\ndata=stimID,label,condition,RT\n"
                    "a.jpg,1,cat,0.5\nbb.jpg,2,dog,0.25\n")
    read = fileio.StimulusFile(str(path)).read()
    assert list(read) == ["type", "path", "title", "data"]
    assert (read["type"], read["path"], read["title"]) == ("image", "images", "t")
    data = read["data"]
    assert isinstance(data, OrderedDict) and list(data) == ["stimID", "label", "condition", "RT"]
    assert data["stimID"].dtype == np.dtype("<U6") and data["condition"].dtype.kind == "U"
    assert data["label"].dtype == np.int64 and data["RT"].dtype == np.float64
    np.testing.assert_array_equal(data["stimID"], ["a.jpg", "bb.jpg"])
    np.testing.assert_array_equal(data["RT"], [0.5, 0.25])
    # arrays of one's own, as DNNBrain's: a script may change them in place
    assert all(values.flags.writeable for values in data.values())
    data["label"][0] = 7


def test_stimulus_load_save_and_methods(tmp_path):
    source = tmp_path / "s.stim.csv"
    source.write_text("type=image\npath=images\ndata=stimID,label,onset\n"
                      "a.jpg,1,0.0\nb.jpg,2,1.0\nc.jpg,1,2.0\n")
    stim = core.Stimulus()
    stim.load(str(source))
    assert len(stim) == 3 and stim.items == ["stimID", "label", "onset"]
    stim.set("RT", [0.5, 0.6, 0.7])
    part = stim[[2, 0], ["stimID", "RT"]]
    assert part.items == ["stimID", "RT"]
    np.testing.assert_array_equal(part.get("stimID"), ["c.jpg", "a.jpg"])
    np.testing.assert_array_equal(stim[1:, 1].get("label"), [2, 1])
    np.testing.assert_array_equal(stim[0].get("onset"), [0.0])
    shuffled = stim.permutate("label")
    assert shuffled.items[0] == "label" and sorted(shuffled.get("label")) == [1, 1, 2]
    stim.delete("RT")
    out = tmp_path / "out.stim.csv"
    stim.save(str(out))
    assert out.read_text() == ("type=image\npath=images\ndata=stimID,label,onset\n"
                               "a.jpg,1,0.0\nb.jpg,2,1.0\nc.jpg,1,2.0")


def test_activation_and_stimulus_iterate_over_their_stimuli(act, arrays):
    # by __getitem__, as in DNNBrain: it stops at the IndexError of the row past the end
    parts = list(act)
    assert len(parts) == 4
    np.testing.assert_array_equal(parts[3].get("conv5"), arrays["conv5"][[3]])
    stim = core.Stimulus({}, {"stimID": np.array(["a", "b", "c"])})
    assert [part.get("stimID").tolist() for part in stim] == [["a"], ["b"], ["c"]]
    with pytest.raises(IndexError) as caught:
        stim[0, 1]
    one_line_error(caught.value, "item number 1")


def test_stimulus_length_without_stimid_or_items():
    stim = core.Stimulus({}, {"stimID": np.array(["a", "b", "c"]), "RT": np.ones(3)})
    # DNNBrain's len(stim) read stimID alone: a KeyError for these
    assert (len(stim[[0, 2], "RT"]), len(core.Stimulus())) == (2, 0)
    assert stim[[0, 2], "RT"].permutate("RT").items == ["RT"]


# ---- the functions of dnn.base and the methods of Activation ---------------------------


@pytest.fixture
def act(arrays) -> core.Activation:
    made = core.Activation()
    for name in ("conv5", "conv1"):
        made.set(name, arrays[name].astype(np.float64))
    return made


def test_pool_gives_each_statistic_over_rows_and_columns(act, arrays):
    data = arrays["conv5"].astype(np.float64)
    flat = data.reshape(4, 12, -1)
    expected = {
        "max": flat.max(-1), "mean": flat.mean(-1), "median": np.median(flat, -1),
        # numpy.linalg.norm over two axes, as DNNBrain calls it: matrix norms
        "L1": np.abs(data).sum(axis=2).max(axis=-1),
        "L2": np.linalg.svd(data, compute_uv=False)[..., 0],
    }
    for method, want in expected.items():
        got = act.pool(method).get("conv5")
        assert got.shape == (4, 12, 1, 1)
        np.testing.assert_allclose(got[:, :, 0, 0], want, rtol=1e-12)


def test_mask_method_of_activation(act, arrays):
    mask = core.Mask("conv5", channels=[12, 1], columns=[4])
    got = act.mask(mask)
    assert got.layers == ["conv5"]
    np.testing.assert_array_equal(got.get("conv5"), arrays["conv5"][:, [11, 0]][:, :, :, [3]])
    np.testing.assert_array_equal(base.dnn_mask(arrays["conv1"], [3, 1, 3]),
                                  arrays["conv1"][:, [2, 0, 2]])


def test_load_and_mask_take_dnnbrains_mask_dict(dnnbrain_file, arrays, act):
    # the dict MaskFile.read gives; 'dict' object has no attribute 'layers' before
    dmask = {"conv5": {"chn": [9, 1], "row": "all", "col": [2]}}
    loaded = core.Activation()
    loaded.load(str(dnnbrain_file), dmask)
    np.testing.assert_array_equal(loaded.get("conv5"), arrays["conv5"][:, [8, 0]][..., [1]])
    np.testing.assert_array_equal(act.mask({"conv5": {"chn": [9, 1]}}).get("conv5"),
                                  arrays["conv5"][:, [8, 0]])
    with pytest.raises(UsageError) as caught:
        act.mask(["conv5"])
    one_line_error(caught.value, "Mask", "list")


def _pca_by_hand(x: np.ndarray, n: int) -> np.ndarray:
    centred = x - x.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    scores = centred @ vectors[:, np.argsort(values)[::-1][:n]]
    # scikit-learn (before 1.5) turns each component so its largest score is positive
    return scores * np.sign(scores[np.argmax(np.abs(scores), axis=0), range(n)])


def test_fe_pca_gives_scikit_learns_scores(act, arrays):
    data = arrays["conv5"].astype(np.float64)
    got = act.fe("pca", 3).get("conv5")
    assert got.shape == (4, 3, 1, 1)
    np.testing.assert_allclose(got[:, :, 0, 0], _pca_by_hand(data.reshape(4, -1), 3),
                               atol=1e-9)
    by_channel = act.fe("pca", 2, axis="row_col").get("conv5")
    assert by_channel.shape == (4, 12, 2, 1)
    np.testing.assert_allclose(by_channel[:, 5, :, 0],
                               _pca_by_hand(data[:, 5].reshape(4, -1), 2), atol=1e-9)


def test_fe_hist_and_psd(act, arrays):
    data = arrays["conv5"].astype(np.float64)
    hist = act.fe("hist", 5, axis="chn").get("conv5")
    assert hist.shape == (4, 5, 5, 4)
    np.testing.assert_array_equal(hist[2, :, 1, 3], np.histogram(data[2, :, 1, 3], 5)[0])
    psd = act.fe("psd", 4, axis="row_col").get("conv5")
    assert psd.shape == (4, 12, 4, 1)
    x = data[1, 7].ravel()  # 20 values: a one-sided density of 11
    spectrum = np.abs(np.fft.fft(x - x.mean())) ** 2 / x.size
    want = np.r_[spectrum[0], 2 * spectrum[1:4]]
    np.testing.assert_allclose(psd[1, 7, :, 0], want, rtol=1e-10, atol=1e-15)


def test_fe_psd_equals_scipys_periodogram(act, arrays):
    signal = pytest.importorskip("scipy.signal")
    x = arrays["conv5"].astype(np.float64)[3, 2].ravel()
    got = base.dnn_fe(arrays["conv5"].astype(np.float64), "psd", 11, "row_col")[3, 2, :, 0]
    np.testing.assert_allclose(got, signal.periodogram(x)[1], rtol=1e-10, atol=1e-15)


def test_arithmetic_indexing_and_concatenate(act, arrays):
    c5 = arrays["conv5"].astype(np.float64)
    np.testing.assert_array_equal((act + act).get("conv5"), 2 * c5)
    np.testing.assert_array_equal((act - act).get("conv1"), np.zeros_like(arrays["conv1"]))
    np.testing.assert_array_equal((act * act).get("conv5"), c5 * c5)
    with np.errstate(invalid="ignore"):  # 0 / 0 where ReLU gave zeros
        np.testing.assert_array_equal((act / act).get("conv5")[c5 > 0], 1.0)
    np.testing.assert_array_equal(act[[3, 0]].get("conv5"), c5[[3, 0]])
    np.testing.assert_array_equal(act[1].get("conv5"), c5[[1]])
    joined = act.concatenate([act[:2]])
    assert joined.layers == ["conv5", "conv1"]
    np.testing.assert_array_equal(joined.get("conv5"), np.concatenate([c5, c5[:2]]))
    act.delete("conv1")
    assert act.layers == ["conv5"]


def test_a_missing_layer_item_or_key_is_named_with_what_there_is(act):
    stim = core.Stimulus({}, {"stimID": np.array(["a.jpg"])})
    rdm = core.RDM()
    cases = [
        (lambda: act.get("fc9"), "layer 'fc9' is not in the activation (layers: conv5, conv1)"),
        (lambda: core.Mask("conv5").get("fc3"), "layer 'fc3' is not in the mask (layers: conv5)"),
        (lambda: core.Mask().delete("fc3"), "layer 'fc3' is not in the mask (layers: none)"),
        (lambda: stim.get("RT"), "item 'RT' is not in the stimuli (items: stimID)"),
        (lambda: rdm.get("V1"), "key 'V1' is not in the RDM (keys: none)"),
    ]
    for call, message in cases:
        with pytest.raises(SelectionError) as caught:
            call()
        assert str(caught.value) == message


def test_normalize():
    np.testing.assert_array_equal(base.normalize(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])


# ---- the HRF -------------------------------------------------------------------------------


def _gamma_density(x: float, shape: float) -> float:
    return x ** (shape - 1) * math.exp(-x) / math.gamma(shape) if x > 0 else 0.0


def test_spm_hrf_is_spms_difference_of_gammas():
    tr, oversampling = 2.0, 200.0
    dt = tr / oversampling
    times = np.linspace(0, 32, int(32 / dt))
    want = np.array([_gamma_density(t - dt, 6) - 0.167 * _gamma_density(t - dt, 16)
                     for t in times])
    got = spm_hrf(tr, oversampling)
    assert got.size == 3200
    np.testing.assert_allclose(got, want / want.sum(), rtol=1e-10, atol=1e-16)
    assert 4.5 < times[np.argmax(got)] < 5.5  # SPM's peak, about 5 s after the onset


def test_spm_hrf_equals_nipys_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    dt = 1.5 / (1.5 * 100)
    times = np.linspace(0, 32, int(32 / dt))
    want = stats.gamma.pdf(times, 6, dt) - 0.167 * stats.gamma.pdf(times, 16, dt)
    np.testing.assert_allclose(spm_hrf(1.5, 150.0), want / want.sum(), rtol=1e-10, atol=1e-16)


def test_convolve_hrf_samples_the_convolved_time_course(act, arrays, capsys):
    onsets, durations, n_vol, tr, ops = [1.0, 3.0, 5.0, 7.0], [2.0] * 4, 6, 2.0, 10
    got = act.convolve_hrf(onsets, durations, n_vol, tr, ops).get("conv5")
    assert got.shape == (6, 12, 5, 4)
    # by hand: zeros from 0 to 1 s, each stimulus held 2 s, 10 points a second
    unit = arrays["conv5"][:, 4, 2, 1].astype(np.float32).astype(np.float64)
    course = np.r_[np.zeros(10), np.repeat(unit, 20)]
    convolved = np.convolve(course, spm_hrf(tr, tr * ops))
    np.testing.assert_allclose(got[:, 4, 2, 1], convolved[np.arange(6) * 20], rtol=1e-9,
                               atol=1e-12)
    assert "hrf convolution: sample 1 to 240 finished" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "words"), [
    # a negative tr read the volumes from the time course's end: (3, 1) values, no word
    ((np.ones((2, 1)), [0, 2], [1, 1], 3, -2.0), ("tr=-2.0", "above 0")),
    # a negative duration dropped its event
    ((np.ones((2, 1)), [0, 2], [-1, 1], 3, 2.0), ("durations [-1, 1]", "0 or more")),
    # NumPy's and Python's ValueError and TypeError came out of these
    ((np.ones((2, 1)), [0, 2], [1, 1], 3, 0), ("tr=0",)),
    ((np.ones((2, 1)), [0, 2], [1, 1], -1, 2.0), ("n_vol=-1",)),
    ((np.ones((2, 1)), [0, 2], [1, 1], 2.5, 2.0), ("n_vol=2.5", "integer")),
    ((np.ones((2, 1)), [float("nan"), 2], [1, 1], 3, 2.0), ("onsets [nan, 2.0]", "finite")),
    ((np.ones((0, 1)), [], [], 3, 2.0), ("at least one event",)),
], ids=["negative tr", "negative duration", "tr 0", "n_vol negative", "n_vol float",
        "onset nan", "no event"])
def test_convolve_hrf_refuses_timings_without_a_time_course(args, words):
    with pytest.raises(UsageError) as caught:
        convolve_hrf(*args)
    one_line_error(caught.value, *words)


# ---- RDM ------------------------------------------------------------------------------------


def test_rdm_round_trip_and_file(tmp_path):
    square = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]])
    rdm = core.RDM()
    rdm.rdm_type = "bRDM"
    rdm.set("V1", square)
    np.testing.assert_array_equal(rdm.get("V1", triu=True), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(rdm.get("V1"), np.triu(square))
    assert rdm.n_item == 3 and rdm.keys == ["V1"]
    path = tmp_path / "x.rdm.h5"
    rdm.save(str(path))
    with h5py.File(path, "r") as root:
        assert root.attrs["type"] == "bRDM"
        assert (root["V1"].compression, root["V1"].compression_opts) == ("gzip", 4)
    back = core.RDM()
    back.load(str(path))
    assert back.rdm_type == "bRDM"
    np.testing.assert_array_equal(back.get("V1", triu=True), [1.0, 2.0, 3.0])
    drdm = core.RDM()
    drdm.rdm_type = "dRDM"
    drdm.set("conv5", np.stack([square, 2 * square]))
    np.testing.assert_array_equal(drdm.get("conv5", triu=True), [[1, 2, 3], [2, 4, 6]])


def test_rdm_get_rebuilds_each_keys_square_at_its_own_size():
    # n_item is the first key's: V2's 6 values went into a 3 x 3 square (NumPy's ValueError)
    rdm = core.RDM()
    rdm.rdm_type = "bRDM"
    rdm.set("V1", np.ones((3, 3)))
    rdm.set("V2", np.arange(16.0).reshape(4, 4))
    np.testing.assert_array_equal(rdm.get("V2"), [[0, 1, 2, 3], [0, 0, 6, 7],
                                                  [0, 0, 0, 11], [0, 0, 0, 0]])
    assert rdm.n_item == 3


@pytest.mark.parametrize("step", ["set", "write", "read"])
def test_rdm_refuses_a_length_that_is_no_upper_triangle(tmp_path, step):
    # 4 values: no n_item has (n_item^2-n_item)/2 = 4; taken, get raised NumPy's ValueError
    path = tmp_path / "r.rdm.h5"
    values = np.arange(4.0)
    rdm = core.RDM()
    rdm.rdm_type = "bRDM"
    if step == "read":
        with h5py.File(path, "w") as root:
            root.attrs["type"] = "bRDM"
            root["V1"] = values
    calls = {"set": lambda: rdm.set("V1", values, triu=True),
             "write": lambda: fileio.RdmFile(str(path)).write("bRDM", {"V1": values}),
             "read": lambda: rdm.load(str(path))}
    with pytest.raises(DnnMaskError) as caught:
        calls[step]()
    one_line_error(caught.value, "bRDM 'V1'", "4 values", "(n_item^2-n_item)/2")
    assert rdm.rdm_type == "bRDM" and rdm._rdm_dict == {}
    assert path.exists() == (step == "read")


def test_rdm_refuses_a_shape_not_its_types_and_an_unset_type():
    rdm = core.RDM()
    with pytest.raises(UsageError, match="set it to 'bRDM' or 'dRDM' first"):
        rdm.set("V1", np.zeros((3, 3)))
    rdm.rdm_type = ["bRDM"]  # not a type's name: refused as unset, whatever it is
    with pytest.raises(UsageError, match="set it to 'bRDM' or 'dRDM' first"):
        rdm.set("V1", np.zeros((3, 3)))
    rdm.rdm_type = "dRDM"
    with pytest.raises(UsageError) as caught:
        rdm.set("conv5", np.zeros((3, 3)))
    assert str(caught.value) == ("RDM 'conv5' has shape (3, 3); with triu=False a dRDM's "
                                 "shape is (n_iter, n_item, n_item)")
    with pytest.raises(UsageError) as caught:
        rdm.set("conv5", np.zeros(3), triu=True)
    assert str(caught.value) == ("RDM 'conv5' has shape (3,); with triu=True a dRDM's shape "
                                 "is (n_iter, (n_item^2-n_item)/2)")
    rdm.set("conv5", np.array([[1.0, 2.0, 3.0]]), triu=True)
    np.testing.assert_array_equal(rdm.get("conv5"), [[[0, 1, 2], [0, 0, 3], [0, 0, 0]]])


@pytest.mark.parametrize("key", ["V1/left", "", 1])
def test_rdm_file_refuses_a_key_that_is_no_dataset_at_the_root(tmp_path, key):
    # 'V1/left' became a dataset in a group V1, which reading skipped: an empty RDM file
    path = tmp_path / "r.rdm.h5"
    with pytest.raises(DnnMaskError) as caught:
        fileio.RdmFile(str(path)).write("bRDM", {key: np.array([1.0, 2.0, 3.0])})
    one_line_error(caught.value, "r.rdm.h5", f"RDM key {key!r}", "'/'")
    assert not path.exists()


def test_rdm_file_read_refuses_a_group(tmp_path):
    path = tmp_path / "r.rdm.h5"
    with h5py.File(path, "w") as root:
        root.attrs["type"] = "bRDM"
        root["V1"] = np.ones(3)
        root["V2/left"] = np.ones(3)
    with pytest.raises(DnnMaskError) as caught:
        fileio.RdmFile(str(path)).read()
    one_line_error(caught.value, "r.rdm.h5", "'V2' is a group")


def test_rdm_file_read_errors_are_the_projects(tmp_path):
    path = tmp_path / "r.rdm.h5"
    path.write_text("not HDF5")
    with pytest.raises(ActFileError) as caught:
        fileio.RdmFile(path).read()
    one_line_error(caught.value, "r.rdm.h5", "cannot read it as an RDM file")
    with h5py.File(path, "w") as root:
        root.attrs["type"] = "bRDM"
        root["V1"] = np.zeros((2, 3))
    with pytest.raises(DnnMaskError) as caught:
        fileio.RdmFile(str(path)).read()
    one_line_error(caught.value, "r.rdm.h5", "bRDM 'V1' has shape (2, 3)")
    with h5py.File(path, "w") as root:
        root.attrs["type"] = np.array(["bRDM", "dRDM"], dtype=h5py.string_dtype())
        root["V1"] = np.zeros(3)
    with pytest.raises(DnnMaskError) as caught:
        fileio.RdmFile(str(path)).read()
    one_line_error(caught.value, "r.rdm.h5", "RDM type", "not one of bRDM")


# ---- gen_dmask ---------------------------------------------------------------------------------


def test_gen_dmask_follows_dnn_masks_rules(tmp_path):
    assert gen_dmask(["conv5"], [200, 3]).get("conv5") == {"chn": [200, 3], "row": "all",
                                                           "col": "all"}
    both = gen_dmask(["conv5", "fc3"], [7, 1])
    assert [both.get(name)["chn"] for name in both.layers] == [[7], [1]]
    assert gen_dmask(["conv5", "fc3"]).get("fc3")["chn"] == "all"
    path = tmp_path / "m.dmask.csv"
    path.write_text("conv5=chn\n3,1\n")
    assert gen_dmask(dmask_file=str(path)).get("conv5")["chn"] == [3, 1]



@pytest.mark.parametrize("channels", [[1, 2], "all"])
def test_gen_dmask_refuses_a_layer_named_twice(channels):
    # paired in order, conv5 took channel 1, then channel 2 in its place: a mask of one
    with pytest.raises(UsageError) as caught:
        gen_dmask(["conv5", "conv5"], channels)
    one_line_error(caught.value, "'conv5'", "twice")

# ---- scripts, unchanged ---------------------------------------------------------------------


@pytest.mark.slow  # two runs of a script, 3 s
def test_dnnbrains_dnn_mask_script_runs_unchanged(tmp_path, dnnbrain_file, arrays):
    script = tmp_path / "dnn_mask"
    script.write_text(DNN_MASK_SCRIPT)
    done = run_script(script, "-act", str(dnnbrain_file), "-layer", "conv5", "-chn", "9", "2",
                      "9", "-out", "picked.act.h5")
    assert done.returncode == 0, done.stderr
    got = read_reference_act(tmp_path / "picked.act.h5")
    assert list(got) == ["conv5"]
    np.testing.assert_array_equal(got["conv5"], arrays["conv5"][:, [8, 1, 8]])

    (tmp_path / "m.dmask.csv").write_text("fc3=chn\n2,1\nconv5=row,col\n1\n4,3\n")
    done = run_script(script, "-act", str(dnnbrain_file), "-dmask", "m.dmask.csv",
                      "-out", "masked.act.h5")
    assert done.returncode == 0, done.stderr
    got = read_reference_act(tmp_path / "masked.act.h5")
    # DNNBrain's writer lists layers by name
    assert list(got) == ["conv5", "fc3"]
    np.testing.assert_array_equal(got["fc3"], arrays["fc3"][:, [1, 0]])
    np.testing.assert_array_equal(got["conv5"], arrays["conv5"][:, :, [0]][:, :, :, [3, 2]])


def test_a_script_error_is_one_line_and_leaves_no_output(tmp_path, dnnbrain_file):
    script = tmp_path / "dnn_mask"
    script.write_text(DNN_MASK_SCRIPT)
    done = run_script(script, "-act", str(dnnbrain_file), "-layer", "conv5", "-chn", "0",
                      "-out", "bad.act.h5")
    assert done.returncode == 1
    assert done.stderr == ("dnn_mask: error: channel number 0 is out of range for layer "
                           "'conv5' (valid: 1..12); numbers are 1-based\n")
    assert not (tmp_path / "bad.act.h5").exists()
    done = run_script(script, "-act", str(dnnbrain_file), "-out", "bad.act.h5")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "dmask_file" in done.stderr


def test_the_runner_without_a_script_says_how_to_call_it(tmp_path, capsys):
    from dnnmask_xr.dnnbrain.__main__ import USAGE, main

    assert main([]) == 2
    assert USAGE in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert USAGE in capsys.readouterr().out
    assert main([str(tmp_path / "none.py")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("none.py: error: script ") and err.count("\n") == 1


def test_a_tutorials_code_runs_unchanged(tmp_path, dnnbrain_file, arrays):
    # a DNNBrain tutorial's steps: z-score each layer, save, mask with a .dmask.csv
    (tmp_path / "m.dmask.csv").write_text("conv5=chn\n3,1\n")
    (tmp_path / "s.stim.csv").write_text("type=image\npath=images\ndata=stimID,label\n"
                                         "a.jpg,1\nb.jpg,2\nc.jpg,1\nd.jpg,2\n")
    script = tmp_path / "tutorial.py"
    script.write_text(textwrap.dedent(f"""\
        import sys
        import numpy as np
        from dnnbrain.dnn.core import Activation, Mask, Stimulus
        from dnnbrain.io.fileio import ActivationFile

        stim = Stimulus()
        stim.load('s.stim.csv')
        act = Activation()
        act.load({str(dnnbrain_file)!r})
        for layer in act.layers:
            data = act.get(layer)
            act.set(layer, (data - data.mean(0)) / data.std(0))
        act.save('z.act.h5')
        dmask = Mask()
        dmask.load('m.dmask.csv')
        masked = Activation()
        masked.load('z.act.h5', dmask)
        print(len(stim), stim.get('label').tolist(), masked.layers, masked.get('conv5').shape)
        print(sorted(ActivationFile('z.act.h5').read()))
        print(sorted(name for name in sys.modules if name.split('.')[0] in
                     ('torch', 'torchvision', 'cv2', 'nipy', 'sklearn')))
        """))
    done = run_script(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["4 [1, 2, 1, 2] ['conv5'] (4, 2, 5, 4)",
                                        "['conv1', 'conv5', 'fc3']", "[]"]
    values = arrays["conv5"]
    with np.errstate(invalid="ignore", divide="ignore"):
        zscored = (values - values.mean(0)) / values.std(0)
    got = read_reference_act(tmp_path / "z.act.h5")["conv5"]
    np.testing.assert_array_equal(got, zscored)


def test_importing_core_is_light_and_quick():
    code = ("import sys, time; start = time.perf_counter(); "
            "import dnnmask_xr.dnnbrain.dnn.core, dnnmask_xr.dnnbrain.utils.util; "
            "took = time.perf_counter() - start; "
            "heavy = ('torch', 'torchvision', 'cv2', 'nipy', 'sklearn', 'dask', 'zarr', "
            "'xarray', 'scipy'); "
            "print(took, [name for name in sys.modules if name.split('.')[0] in heavy])")
    env = {key: value for key, value in ENV.items() if key != "DNNBRAIN_DATA"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)
    took, heavy = done.stdout.split(" ", 1)
    assert heavy.strip() == "[]"
    assert float(took) < 1.0


# ---- install() and what is out of scope ------------------------------------------------


def test_install_refuses_when_dnnbrain_itself_is_imported(monkeypatch):
    fake = types.ModuleType("dnnbrain")
    fake.__file__ = "/site-packages/dnnbrain/__init__.py"
    monkeypatch.setitem(sys.modules, "dnnbrain", fake)
    with pytest.raises(UsageError) as caught:
        compat.install()
    one_line_error(caught.value, "already imported", "/site-packages/dnnbrain", "install()")


def test_install_points_dnnbrain_at_these_modules(monkeypatch):
    for name in compat.MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    compat.install()
    import dnnbrain.dnn.core  # type: ignore[import-not-found]

    assert dnnbrain.dnn.core.Activation is core.Activation
    compat.install()  # again: nothing more


@pytest.mark.parametrize(("module", "words"), [
    ("dnnmask_xr.dnnbrain.dnn.models", ("dnnbrain.dnn.models", "PyTorch")),
    ("dnnmask_xr.dnnbrain.dnn.algo", ("dnnbrain.dnn.algo", "PyTorch")),
    ("dnnmask_xr.dnnbrain.brain", ("dnnbrain.brain", "brain side")),
    ("dnnmask_xr.dnnbrain.viz", ("dnnbrain.viz", "plots")),
])
def test_out_of_scope_modules_say_so(module, words):
    with pytest.raises(OutOfScopeError) as caught:
        __import__(module)
    assert isinstance(caught.value, ImportError)
    one_line_error(caught.value, *words, "out of scope")


def test_out_of_scope_names_say_so():
    with pytest.raises(OutOfScopeError, match=r"DnnProbe.*scikit-learn"):
        core.DnnProbe  # noqa: B018
    with pytest.raises(OutOfScopeError, match="ImageSet"):
        base.ImageSet  # noqa: B018
    with pytest.raises(AttributeError):
        core.NoSuchName  # noqa: B018


# ---- every error: the project's, one line, naming what is at fault ---------------------


def _narrowed(act: core.Activation) -> core.Activation:
    """The same layers, conv1 with one channel: no batch to join to ``act``."""
    made = core.Activation()
    for name in act.layers:
        made.set(name, act.get(name)[:, :1] if name == "conv1" else act.get(name))
    return made


@pytest.mark.parametrize("case", [
    "missing act", "act suffix", "mask layer", "mask axis", "mask past end", "get layer",
    "pool method", "fe method", "fe n_feat", "arith", "stim suffix", "stim missing",
    "stim text", "stim lengths", "mask set key", "mask set value", "rdm type", "gen_dmask",
    "hrf ops", "index", "act no value", "concatenate", "stim shape", "stim header",
    "concatenate shapes", "pool 2-D", "statistic axis", "act row", "stim row", "stim item",
    "stim set length", "stim set 2-D", "stim header data", "stim header number",
    "norm axes",
])
def test_every_error_is_the_projects_in_one_line(case, tmp_path, dnnbrain_file, act):
    missing = str(tmp_path / "none.act.h5")
    three_stimuli = core.Stimulus({}, {"stimID": np.array(["a", "b", "c"]),
                                       "RT": np.array([0.5, 0.6, 0.7])})
    calls = {
        "missing act": (lambda: fileio.ActivationFile(missing).read(), ActFileError,
                        ("none.act.h5",)),
        "act suffix": (lambda: fileio.ActivationFile("x.h5"), UsageError, ("x.h5", ".act.h5")),
        "mask layer": (lambda: fileio.ActivationFile(str(dnnbrain_file)).read(
            {"conv9": {"chn": [1]}}), SelectionError, ("conv9", "conv5")),
        "mask axis": (lambda: fileio.ActivationFile(str(dnnbrain_file)).read(
            {"conv5": {"chan": [1]}}), DnnMaskError, ("conv5", "chan")),
        "mask past end": (lambda: act.mask(core.Mask("conv5", rows=[6])), SelectionError,
                          ("conv5", "row", "6", "1..5")),
        "get layer": (lambda: act.get("fc9"), SelectionError, ("fc9", "conv5")),
        "pool method": (lambda: act.pool("sum"), UsageError, ("sum", "median")),
        "fe method": (lambda: act.fe("ica", 2), UsageError, ("ica", "pca")),
        "fe n_feat": (lambda: act.fe("pca", 9), UsageError, ("n_feat=9", "4")),
        "arith": (lambda: act + 1, UsageError, ("Activation", "int")),
        "stim suffix": (lambda: fileio.StimulusFile("s.csv"), UsageError, (".stim.csv",)),
        "stim missing": (lambda: fileio.StimulusFile(str(tmp_path / "no.stim.csv")).read(),
                         FormatError, ("no.stim.csv",)),
        "stim text": (lambda: fileio.StimulusFile(str(tmp_path / "t.stim.csv")).write(
            "image", "p", {"stimID": np.array(["a"]), "name": np.array(["x"])}),
            DnnMaskError, ("t.stim.csv", "'name'", "text=name")),
        "stim lengths": (lambda: fileio.StimulusFile(str(tmp_path / "t.stim.csv")).write(
            "image", "p", {"stimID": np.array(["a", "b"]), "RT": np.array([1.0])}),
            DnnMaskError, ("t.stim.csv", "stimID", "RT")),
        "mask set key": (lambda: core.Mask().set("conv5", chn=[1]), UsageError,
                         ("chn=", "channels=")),
        "mask set value": (lambda: core.Mask().set("conv5", channels=(1,)), UsageError,
                           ("conv5", "channels")),
        "rdm type": (lambda: fileio.RdmFile(str(tmp_path / "r.rdm.h5")).write(
            "xRDM", {}), DnnMaskError, ("r.rdm.h5", "xRDM")),
        "gen_dmask": (lambda: gen_dmask(["conv5", "fc3"], [1, 2, 3]), UsageError,
                      ("3 channel", "2 layers")),
        "hrf ops": (lambda: convolve_hrf(np.zeros((2, 1)), [0, 1], [1, 1], 2, 1.0, ops=50),
                    UsageError, ("ops=50",)),
        "index": (lambda: act["a"], UsageError, ("'a'",)),
        "act no value": (lambda: core.Activation("conv5"), UsageError, ("conv5", "value")),
        "concatenate": (lambda: act.concatenate([act.mask(core.Mask("conv5"))]),
                        SelectionError, ("element 1", "conv5, conv1")),
        "stim shape": (lambda: core.Stimulus({}, {"stimID": np.array(["a", "b"]),
                                                  "RT": np.zeros((2, 1))}),
                       DnnMaskError, ("'RT'", "(2, 1)", "(2,)")),
        "stim header": (lambda: core.Stimulus([]), UsageError, ("header", "list")),
        # NumPy's ValueError and AxisError came out of these three
        "concatenate shapes": (lambda: act.concatenate([_narrowed(act)]), SelectionError,
                               ("element 1", "'conv1'", "(3, 7, 7)", "(1, 7, 7)")),
        "pool 2-D": (lambda: core.Activation("fc", np.zeros((2, 3))).pool("max"),
                     SelectionError, ("'fc'", "(2, 3)", "4-D")),
        "statistic axis": (lambda: base.array_statistic(np.zeros((2, 3)), "max", (1, 2)),
                           UsageError, ("axis (1, 2)", "2 dims")),
        # NumPy's and the list's IndexError came out of these
        "act row": (lambda: act[[0, 9]], SelectionError, ("'conv5'", "[0, 9]", "4 stimuli",
                                                           "0..3")),
        "stim row": (lambda: three_stimuli[5], SelectionError, ("'stimID'", "[5]",
                                                               "3 stimuli", "0..2")),
        "stim item": (lambda: three_stimuli[0, 2], SelectionError, ("item number 2",
                                                                   "stimID, RT", "0..1")),
        # NumPy's ValueError "Improper number of dimensions to norm."
        "norm axes": (lambda: base.array_statistic(np.ones((2, 2, 2)), "L2", (0, 1, 2)),
                      UsageError, ("'L2'", "(0, 1, 2)", "one axis or two")),
        # taken, the item of another length broke indexing, permutate and save later on
        "stim set length": (lambda: three_stimuli.set("onset", [0.0, 1.0]), DnnMaskError,
                            ("'onset'", "(2,)", "(3,)")),
        "stim set 2-D": (lambda: three_stimuli.set("RT", np.zeros((3, 1))), DnnMaskError,
                         ("'RT'", "(3, 1)", "(3,)")),
        # Python's TypeError of keyword arguments came out of these two
        "stim header data": (lambda: core.Stimulus(
            {"type": "image", "path": "p", "data": "x"}, {"stimID": np.array(["a"])}).save(
            str(tmp_path / "t.stim.csv")), DnnMaskError, ("t.stim.csv", "'data'")),
        "stim header number": (lambda: core.Stimulus(
            {"type": "image", "path": "p", 1: "x"}, {"stimID": np.array(["a"])}).save(
            str(tmp_path / "t.stim.csv")), DnnMaskError, ("t.stim.csv", "key 1")),
    }
    call, kind, words = calls[case]
    with pytest.raises(kind) as caught:
        call()
    one_line_error(caught.value, *words)
    assert not (tmp_path / "t.stim.csv").exists() and not (tmp_path / "r.rdm.h5").exists()
