"""The dnn_mask command: DNNBrain's flags and results, and what it adds."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tqdm
from reliability import assert_one_line_error
from routes import READ_ROUTES, run

import dnnmask_xr
import dnnmask_xr.act.mask
import dnnmask_xr.cli
from dnnmask_xr import open_act
from dnnmask_xr.cli import main
from dnnmask_xr.testing import read_reference_act, relu_activations, write_reference_act


def run_ok(capsys, *args) -> str:
    status = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.err == ""
    return captured.out


def test_one_layer_with_unsorted_repeated_channels(act_file, layers, tmp_path, capsys):
    out = tmp_path / "out.act.h5"
    run_ok(capsys, "-act", act_file, "-layer", "conv5", "-chn", 20, 3, 17, 3, "-out", out)
    acts = open_act(out)
    assert list(acts) == ["conv5"]
    np.testing.assert_array_equal(acts["conv5"].values, layers["conv5"][:, [19, 2, 16, 2]])
    assert acts["conv5"].channel.values.tolist() == [20, 3, 17, 3]


def test_layers_whole_in_the_order_given(act_file, layers, tmp_path, capsys):
    out = tmp_path / "out.act.h5"
    run_ok(capsys, "-act", act_file, "-layer", "fc3", "conv5", "-out", out)
    assert list(open_act(out)) == ["fc3", "conv5"]
    theirs = read_reference_act(out)
    assert sorted(theirs) == ["conv5", "fc3"]
    for name, array in theirs.items():
        np.testing.assert_array_equal(array, layers[name])


def test_several_layers_paired_with_one_channel_each(act_file, layers, tmp_path, capsys):
    out = tmp_path / "out.act.h5"
    run_ok(capsys, "-act", act_file, "-layer", "conv5", "fc3", "-chn", 7, 1, "-out", out)
    acts = open_act(out)
    np.testing.assert_array_equal(acts["conv5"].values, layers["conv5"][:, [6]])
    np.testing.assert_array_equal(acts["fc3"].values, layers["fc3"][:, [0]])


def test_dmask_gives_what_dnnbrain_gives(act_file, tmp_path, capsys):
    dmask = tmp_path / "m.dmask.csv"
    dmask.write_text("conv5=chn,row,col\n1,2,3\n4,5\n6,7\nfc3=chn\n1,2,3\n")
    out = tmp_path / "out.act.h5"
    run_ok(capsys, "-act", act_file, "-dmask", dmask, "-out", out)
    # DNNBrain's reader applied to the input with the same (sorted) mask
    reference = read_reference_act(act_file, {"conv5": {"chn": [1, 2, 3], "row": [4, 5],
                                                        "col": [6, 7]},
                                              "fc3": {"chn": [1, 2, 3]}})
    ours = read_reference_act(out)
    assert list(open_act(out)) == list(reference)
    assert sorted(ours) == sorted(reference)
    for name in reference:
        np.testing.assert_array_equal(ours[name], reference[name])


def test_numbers_are_positions_in_an_already_masked_file(act_file, layers, tmp_path, capsys):
    first, second = tmp_path / "first.act.h5", tmp_path / "second.act.h5"
    run_ok(capsys, "-act", act_file, "-layer", "conv5", "-chn", 20, 3, 17, "-out", first)
    run_ok(capsys, "-act", first, "-layer", "conv5", "-chn", 1, "-out", second)
    conv5 = open_act(second)["conv5"]
    assert conv5.channel.values.tolist() == [20]
    np.testing.assert_array_equal(conv5.values, layers["conv5"][:, [19]])
    np.testing.assert_array_equal(read_reference_act(second)["conv5"], layers["conv5"][:, [19]])


def test_stim_table_is_kept(act_file, stim_file, tmp_path, capsys):
    out = tmp_path / "out.act.h5"
    run_ok(capsys, "-act", act_file, "-layer", "fc3", "-stim", stim_file, "-out", out)
    acts = open_act(out)
    assert acts["fc3"]["stimulus"].values.tolist() == [f"img{i}.png" for i in range(5)]
    assert acts["fc3"]["onset"].values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert acts.stimuli.type == "image"


@pytest.mark.parametrize("route", READ_ROUTES)
def test_a_table_listing_the_files_stimuli_in_another_order_is_refused(
        route, act_file, stim_file, stim_text, layers, tmp_path, capsys):
    # bug: -stim (open_act(stim=), with_stimuli) labels rows by position, so a table of the
    # file's own IDs in another order put each row's values under another stimulus's ID
    labelled = tmp_path / "labelled.act.h5"
    run_ok(capsys, "-act", act_file, "-layer", "fc3", "-stim", stim_file, "-out", labelled)
    header, rows = stim_text.split("data=")
    fields, *lines = rows.strip().split("\n")
    swapped = tmp_path / "swapped.stim.csv"
    swapped.write_text(f"{header}data={fields}\n" + "\n".join([lines[1], lines[0], *lines[2:]])
                       + "\n")
    out = tmp_path / "out.act.h5"
    assert run(route, ["-act", str(labelled), "-layer", "fc3", "-stim", str(swapped),
                       "-out", str(out)]) == 1
    assert_one_line_error(capsys.readouterr().err, re.escape(
        f"the stimulus table lists 'img1.png' in row 1, but {str(labelled)!r} holds it as "
        "stimulus 2; a table labels the stimuli by position"))
    assert not out.exists()
    # a table of other IDs renames the stimuli, by position, as before
    renamed = tmp_path / "renamed.stim.csv"
    renamed.write_text(f"{header}data={fields}\n"
                       + "\n".join("x" + line for line in lines) + "\n")
    assert run(route, ["-act", str(labelled), "-layer", "fc3", "-stim", str(renamed),
                       "-out", str(out)]) == 0
    with open_act(out) as acts:
        assert acts["fc3"]["stimulus"].values.tolist() == [f"ximg{i}.png" for i in range(5)]
        np.testing.assert_array_equal(acts["fc3"].values, layers["fc3"])


def test_provenance_records_the_command(act_file, tmp_path, capsys):
    out = tmp_path / "out.act.h5"
    run_ok(capsys, "-act", act_file, "-layer", "conv5", "-chn", 2, "-out", out)
    with h5py.File(out, "r") as root:
        assert root.attrs["cmd"] == f"dnn_mask -act {act_file} -layer conv5 -chn 2 -out {out}"
        assert root.attrs["source"] == str(act_file)
        assert root.attrs["mask"] == "conv5=chn\n2\n"
        assert root.attrs["mask_by"] == "ordinal"


def test_an_existing_output_is_replaced(act_file, layers, tmp_path, capsys):
    out = tmp_path / "out.act.h5"
    out.write_bytes(b"old")
    run_ok(capsys, "-act", act_file, "-layer", "fc3", "-out", out)
    np.testing.assert_array_equal(open_act(out)["fc3"].values, layers["fc3"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.act.h5", "out.act.h5"]


def test_dry_run_prints_the_plan_and_writes_nothing(act_file, tmp_path, capsys):
    out = tmp_path / "out.act.h5"
    printed = run_ok(capsys, "-act", act_file, "-layer", "conv5", "-chn", 3, 1,
                     "--dry-run", "-out", out)
    assert printed.splitlines() == [
        f"would write {str(out)!r}: 1 layer(s), 5 stimuli, 1.7 kB before compression",
        "conv5  5 x 2 x 6 x 7  float32  1.7 kB  (channel 3, 1)",
    ]
    assert not out.exists()


def test_dry_run_counts_one_stimulus_as_one(tmp_path, capsys):
    path = tmp_path / "one.act.h5"
    write_reference_act(path, relu_activations(1, {"fc3": (4, 1, 1)}))
    printed = run_ok(capsys, "-act", path, "-layer", "fc3", "--dry-run", "-out",
                     tmp_path / "out.act.h5")
    assert printed.splitlines()[0].endswith(": 1 layer(s), 1 stimulus, 16 B before compression")


@pytest.mark.parametrize(("act", "out"), [("in.act.h5", "in.act.h5"), ("half.act.h5", "out.nc"),
                                          ("in.nc", "in.nc"), ("in.act.zarr", "in.act.zarr")])
def test_dry_run_refuses_what_the_run_refuses(act, out, layers, tmp_path, monkeypatch, capsys):
    # bug: a dry run said "would write" an output the run refused (its own input, a .nc of
    # float16 values): it skipped the checks every write makes before anything is created
    if act.endswith(".act.zarr"):
        pytest.importorskip("zarr")
    monkeypatch.chdir(tmp_path)
    write_reference_act("in.act.h5", layers)
    write_reference_act("half.act.h5", {"fc3": layers["fc3"].astype(np.float16)})
    if act != "in.act.h5" and act.startswith("in."):
        dnnmask_xr.save_act(open_act("in.act.h5"), act)
    argv = ["-act", act, "-layer", "fc3", "-out", out]
    status = main(argv)
    refused = capsys.readouterr().err
    assert status in (1, 2)
    assert_one_line_error(refused)
    assert main([*argv, "--dry-run"]) == status
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", refused)


@pytest.mark.parametrize("act", ["in.act.h5", "in.nc", "in.act.zarr"])
@pytest.mark.parametrize("out", ["out.act.h5", "out.nc", "out.act.zarr"])
def test_a_layers_own_attributes_are_not_carried_over_whatever_the_ends(act, out, layers,
                                                                        tmp_path, monkeypatch,
                                                                        capsys):
    # bug: dnn_mask carried them over from a .nc or a store, or to a store, where from an
    # .act.h5 to an .act.h5 or .nc it does not (test_45_chunks: no foreign attributes)
    if ".act.zarr" in act + out:
        pytest.importorskip("zarr")
    monkeypatch.chdir(tmp_path)
    write_reference_act("in.act.h5", layers)
    with h5py.File("in.act.h5", "a") as root:
        root["fc3"].attrs["units"] = "a.u."
    if act != "in.act.h5":
        dnnmask_xr.save_act(open_act("in.act.h5"), act)
    run_ok(capsys, "-act", act, "-layer", "fc3", "-chn", 3, 1, "-out", out)
    with open_act(out) as back:
        assert back["fc3"].attrs == {}
        np.testing.assert_array_equal(back["fc3"].values, layers["fc3"][:, [2, 0]])


@pytest.mark.parametrize(("isatty", "quiet", "expected"),
                         [(True, False, True), (True, True, False), (False, False, False)],
                         ids=["terminal", "terminal-quiet", "pipe"])
def test_progress_only_on_a_terminal_unless_quiet(act_file, tmp_path, monkeypatch, isatty,
                                                  quiet, expected):
    seen = {}
    monkeypatch.setattr(dnnmask_xr.cli.sys.stderr, "isatty", lambda: isatty)
    monkeypatch.setattr(dnnmask_xr.act.mask, "mask_file",
                        lambda *args, **kwargs: seen.update(kwargs))
    args = ["-act", str(act_file), "-layer", "fc3", "-out", str(tmp_path / "o.act.h5")]
    assert main([*args, "-q"] if quiet else args) == 0
    assert (seen["on_progress"] is not None) is expected


def test_progress_bar_is_drawn_when_asked(act_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dnnmask_xr.cli.sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(tqdm, "tqdm", _eager_tqdm(tqdm.tqdm))
    assert main(["-act", str(act_file), "-layer", "conv5", "-out",
                 str(tmp_path / "o.act.h5")]) == 0
    assert "conv5" in capsys.readouterr().err


def _eager_tqdm(tqdm):
    def make(*args, **kwargs):
        return tqdm(*args, **{**kwargs, "delay": 0, "leave": True})
    return make


def test_help_explains_every_flag(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("-act", "-layer", "-chn", "-dmask", "-stim", "-out", "--dry-run", "-q",
                 "--memory", "--threads", "--version"):
        assert f"  {flag}" in text


def test_version_is_printed_like_argparse_does(capsys):
    assert main(["--version"]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (f"dnn_mask {dnnmask_xr.__version__}\n", "")


def test_version_needs_no_other_flag_and_no_xarray():
    code = ("import sys\nfrom dnnmask_xr.cli import main\nstatus = main(['--version'])\n"
            "print(status, sorted(m for m in ('xarray', 'pandas', 'numpy', 'h5py') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.splitlines() == [f"dnn_mask {dnnmask_xr.__version__}", "0 []"]


def test_installed_console_script(act_file, layers, tmp_path):
    script = shutil.which("dnn_mask")
    assert script, "the dnn_mask console script is not installed"
    out = tmp_path / "out.act.h5"
    done = subprocess.run([script, "-act", act_file, "-layer", "conv5", "-chn", "2", "1",
                           "-out", out], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    np.testing.assert_array_equal(open_act(out)["conv5"].values, layers["conv5"][:, [1, 0]])
    failed = subprocess.run([script, "-act", act_file, "-layer", "conv5", "-chn", "0",
                             "-out", tmp_path / "bad.act.h5"],
                            capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [
        "dnn_mask: error: channel number 0 is out of range for layer 'conv5' (valid: 1..20); "
        "numbers are 1-based"
    ]
    assert not (tmp_path / "bad.act.h5").exists()


# -- options given twice, numbers of any length --------------------------------------------

#: Each option with a valid value, and the hint its refusal gives.
ONCE = {
    "-act": (["in.act.h5"], r"give it once"),
    "-layer": (["fc3"], r"list all layers after one -layer \(-layer conv5 fc3\)"),
    "-chn": (["1"], r"list all channels after one -chn \(-chn 1 2 3\)"),
    "-dmask": (["m.dmask.csv"], r"give it once"),
    "-stim": (["s.stim.csv"], r"give it once"),
    "-out": (["other.act.h5"], r"give it once"),
    "--dry-run": ([], r"give it once"),
    "-q": ([], r"give it once"),
    "--quiet": ([], r"give it once"),
    "--memory": (["64M"], r"give it once"),
    "--threads": (["2"], r"give it once"),
    "--verify": ([], r"give it once"),
}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert_one_line_error(err)
    return err


@pytest.mark.parametrize("option", list(ONCE))
def test_every_option_given_twice_is_refused(option, act_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    value, hint = ONCE[option]
    args = ["-act", str(act_file), "-layer", "conv5", "-chn", "3", "-out", "o.act.h5"]
    if option not in args:
        args += [option, *value]
    # the second time, -q is named by its other name
    again = "--quiet" if option == "-q" else option
    args += [again, *value]
    assert main(args) == 2
    err = _one_line(capsys)
    also = r" \(also as -q\)" if option == "-q" else ""
    assert re.fullmatch(rf"dnn_mask: error: {re.escape(again)} given twice{also}; {hint} "
                        r"\(see dnn_mask --help\)\n", err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.act.h5"]


@pytest.mark.parametrize("args", [["-layer", "conv5", "-layer", "fc3"],
                                  ["-layer", "conv5", "-chn", "1", "2", "-chn", "3"],
                                  ["-layer=conv5", "-layer", "fc3"]],
                         ids=["layer", "chn", "with-equals"])
def test_repeated_selection_options_write_nothing(args, act_file, tmp_path, capsys):
    out = tmp_path / "o.act.h5"
    assert main(["-act", str(act_file), *args, "-out", str(out)]) == 2
    assert "given twice" in _one_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize(("number", "status", "pattern"), [
    ("9" * 5000, 2, r"argument -chn: '9{37}\.\.\. \(5000 characters\)' is out of range for "
                    r"any layer; numbers are 1-based and at most 9223372036854775807"),
    ("-" + "9" * 5000, 2, r"argument -chn: '-9{36}\.\.\. \(5001 characters\)' is out of range"),
    ("0" * 4999 + "1", 0, None),
    ("0" * 4999 + "21", 1, r"channel number 21 is out of range for layer 'conv5' "
                           r"\(valid: 1\.\.20\)"),
    # past int64 with fewer digits than int() refuses: the flag's fault too (was status 1)
    (str(2**63), 2, r"argument -chn: '9223372036854775808' is out of range for any layer"),
    (str(-(2**63)), 2, r"argument -chn: '-9223372036854775808' is out of range"),
    ("9" * 4300, 2, r"argument -chn: '9{37}\.\.\. \(4300 characters\)' is out of range"),
    ("1_" + "0" * 19, 2, r"argument -chn: '1_0{19}' is out of range for any layer"),
    (str(2**63 - 1), 1, r"channel number 9223372036854775807 is out of range for layer "
                        r"'conv5' \(valid: 1\.\.20\)"),
])
def test_channel_numbers_of_any_length_give_one_line(number, status, pattern, act_file,
                                                     layers, tmp_path, capsys):
    out = tmp_path / "o.act.h5"
    assert main(["-act", str(act_file), "-layer", "conv5", "-chn", number, "-out",
                 str(out)]) == status
    if status == 0:
        assert capsys.readouterr().err == ""
        np.testing.assert_array_equal(open_act(out)["conv5"].values, layers["conv5"][:, [0]])
        return
    err = _one_line(capsys)
    assert len(err) < 300 and re.search(pattern, err), err
    assert not out.exists()


#: Several channels in one word, and the one-line refusal that says how to write them.
SEVERAL_NUMBERS = {
    "1,2,3": "'1,2,3' is not a number; separate numbers with spaces, not commas: -chn 1 2 3",
    " 1, 2 ,3,": "' 1, 2 ,3,' is not a number; separate numbers with spaces, not commas: "
                 "-chn 1 2 3",
    "1,": "'1,' is not a number; separate numbers with spaces, not commas (-chn 1 2 3)",
    "1 2 3": "'1 2 3' is not a number; give each number as its own word, not quoted: "
             "-chn 1 2 3",
    "1-10": "'1-10' is a range, which -chn does not take; list every number, separated by "
            "spaces: -chn 1 2 3 4 5 6 7 8 9 10",
    "3-1": "'3-1' is a range, which -chn does not take; list every number, separated by "
           "spaces: -chn 3 2 1",
    "1-256": "'1-256' is a range, which -chn does not take; list every number, separated by "
             "spaces: -chn 1 2 3 ... 256 (or, in a shell, -chn $(seq 1 256))",
    "256-1": "'256-1' is a range, which -chn does not take; list every number, separated by "
             "spaces: -chn 256 255 254 ... 1 (or, in a shell, -chn $(seq 256 -1 1))",
    "1,5-8,20": "'1,5-8,20' holds a range, which -chn does not take; list every number, "
                "separated by spaces: -chn 1 5 6 7 8 20",
    ",".join(map(str, range(1, 31))): "'1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,1... (80 "
                                      "characters)' is not a number; separate numbers with "
                                      "spaces, not commas: -chn 1 2 3 ... 30",
    # nothing to rewrite: the plain refusal
    "1,x": "'1,x' is not an integer; channel numbers are 1-based integers",
    "1-2-3": "'1-2-3' is not an integer; channel numbers are 1-based integers",
    "a-b": "'a-b' is not an integer; channel numbers are 1-based integers",
}


@pytest.mark.parametrize("word", list(SEVERAL_NUMBERS))
def test_several_channels_in_one_word_say_how_to_give_them(word, act_file, tmp_path, capsys):
    out = tmp_path / "o.act.h5"
    assert main(["-act", str(act_file), "-layer", "conv5", "-chn", word, "-out", str(out)]) == 2
    assert _one_line(capsys) == (f"dnn_mask: error: argument -chn: {SEVERAL_NUMBERS[word]} "
                                 "(see dnn_mask --help)\n")
    assert not out.exists()


def test_the_hinted_command_means_the_numbers_given(act_file, layers, tmp_path, capsys):
    # the hint is what to type: typed, it keeps the channels the word listed
    out = tmp_path / "o.act.h5"
    assert main(["-act", str(act_file), "-layer", "conv5", "-chn", "2,4-6,1", "-out",
                 str(out)]) == 2
    hinted = _one_line(capsys).split(": -chn ")[1].removesuffix(" (see dnn_mask --help)\n")
    run_ok(capsys, "-act", act_file, "-layer", "conv5", "-chn", *hinted.split(), "-out", out)
    np.testing.assert_array_equal(open_act(out)["conv5"].values,
                                  layers["conv5"][:, [1, 3, 4, 5, 0]])


@pytest.mark.parametrize(("size", "pattern"), [
    ("9" * 400, r"argument --memory: '9{37}\.\.\. \(400 characters\)' is more than any "
                r"memory; give at most 9223372036854775807 bytes, such as 512M or 2G"),
    ("9" * 400 + "T", r"is more than any memory"),
    ("1e400", r"is not a size"),
    ("0.1", r"is not a positive size"),
])
def test_memory_sizes_of_any_length_give_one_line(size, pattern, act_file, tmp_path, capsys):
    assert main(["-act", str(act_file), "-layer", "conv5", "--memory", size, "-out",
                 str(tmp_path / "o.act.h5")]) == 2
    err = _one_line(capsys)
    assert len(err) < 300 and re.search(pattern, err), err


def test_memory_sizes_are_exact():
    from dnnmask_xr.cli import memory_size

    assert memory_size("1.5G") == 3 * 2**29
    assert memory_size("512M") == 2**29
    assert memory_size("0" * 500 + "64K") == 2**16
    assert memory_size(f"{2**63 - 1}") == 2**63 - 1


# --- a file of the wrong kind -----------------------------------------------------------------

@pytest.mark.parametrize(("flag", "given", "message"), [
    ("-dmask", "stim", "looks like a stimulus table (.stim.csv), not a mask (.dmask.csv); pass "
                       "it with -stim (read_stim in Python)"),
    ("-dmask", "act", "is an HDF5 file (such as an .act.h5 activation file), not a mask "
                      "(.dmask.csv); pass activations with -act (open_act in Python)"),
    ("-stim", "dmask", "looks like a mask (.dmask.csv), not a stimulus table (.stim.csv); pass "
                       "it with -dmask (read_dmask in Python)"),
    ("-stim", "act", "is an HDF5 file (such as an .act.h5 activation file), not a stimulus "
                     "table (.stim.csv); pass activations with -act (open_act in Python)"),
])
def test_a_file_of_the_wrong_kind_is_named(flag, given, message, act_file, stim_file, tmp_path,
                                           capsys):
    dmask = tmp_path / "m.dmask.csv"
    dmask.write_text("conv5=chn\n1,2\n")
    path = {"stim": stim_file, "act": act_file, "dmask": dmask}[given]
    out = tmp_path / "o.act.h5"
    units = ["-layer", "fc3"] if flag == "-stim" else []
    assert main(["-act", str(act_file), *units, flag, str(path), "-out", str(out)]) == 1
    assert _one_line(capsys) == f"dnn_mask: error: {path}: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("flag", ["-act", "-dmask", "-stim"])
def test_an_empty_path_is_said_to_be_empty(flag, act_file, tmp_path, capsys):
    # '' is a str: "give a str or pathlib.Path" told a command-line user nothing
    flags = {"-act": str(act_file), "-layer": "fc3"}
    if flag == "-dmask":
        del flags["-layer"]
    flags[flag] = ""
    out = tmp_path / "out.act.h5"
    argv = [word for pair in flags.items() for word in pair]
    assert main([*argv, "-out", str(out)]) == 2
    assert_one_line_error(capsys.readouterr().err, r"'' is an empty path; give the path of a file")
    assert not out.exists()
