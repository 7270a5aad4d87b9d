"""Every public function answers a careless caller with the project's errors.

Each call gets an argument of the wrong kind; the answer must be a
``DnnMaskError`` (a ``ValueError``), never a ``TypeError``/``AttributeError``
from deep inside, never a number taken for a file descriptor, and nothing
may be left on disk.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

import dnnmask_xr as dx

BAD = {"none": None, "int": 3, "float": 1.5, "list": [1], "dict": {"a": 1}, "bytes": b"x",
       "object": object()}


def calls(act: Path, out: Path) -> dict:
    acts = dx.open_act(act)
    whole = {"conv5": {}}
    return {
        "open_act": lambda bad: dx.open_act(bad),
        "open_act-stim": lambda bad: dx.open_act(act, stim=bad),
        "open_act-chunks": lambda bad: dx.open_act(act, chunks=bad),
        "open_act-allow_external": lambda bad: dx.open_act(act, allow_external=bad),
        "save_act": lambda bad: dx.save_act(bad, out),
        "save_act-path": lambda bad: dx.save_act(acts, bad),
        "save_act-attrs": lambda bad: dx.save_act(acts, out, attrs=bad),
        "save_act-memory": lambda bad: dx.save_act(acts, out, memory=bad),
        "save_act-threads": lambda bad: dx.save_act(acts, out, threads=bad),
        "save_act-verify": lambda bad: dx.save_act(acts, out, verify=bad),
        "save_act-progress": lambda bad: dx.save_act(acts, out, progress=bad),
        "save_act-progress-store": lambda bad: dx.save_act(
            acts, out.with_name("out.act.zarr"), progress=bad),
        "ActWriter-resume": lambda bad: dx.ActWriter(out, resume=bad),
        "ActWriter-progress": lambda bad: dx.ActWriter(out, progress=bad),
        "mask_file-act": lambda bad: dx.mask_file(bad, out, whole),
        "mask_file-out": lambda bad: dx.mask_file(act, bad, whole),
        "mask_file-mask": lambda bad: dx.mask_file(act, out, bad),
        "mask_file-stim": lambda bad: dx.mask_file(act, out, whole, stim=bad),
        "mask_file-attrs": lambda bad: dx.mask_file(act, out, whole, attrs=bad),
        "mask_file-by": lambda bad: dx.mask_file(act, out, whole, by=bad),
        "mask_file-allow_external": lambda bad: dx.mask_file(act, out, whole,
                                                             allow_external=bad),
        "read_dmask": lambda bad: dx.read_dmask(bad),
        "read_stim": lambda bad: dx.read_stim(bad),
        "write_dmask": lambda bad: dx.write_dmask(bad, out.with_suffix(".dmask.csv")),
        "write_stim": lambda bad: dx.write_stim(bad, out.with_suffix(".stim.csv")),
        "DnnMask": lambda bad: dx.DnnMask(bad),
        "LayerMask": lambda bad: dx.LayerMask(bad),
        "mask_from_flags": lambda bad: dx.mask_from_flags(bad),
        "mask_from_flags-chn": lambda bad: dx.mask_from_flags(["conv5"], bad),
        "Activations": lambda bad: dx.Activations(bad),
        "Activations-attrs": lambda bad: dx.Activations({}, attrs=bad),
        "Activations.mask": lambda bad: acts.mask(bad),
        "Activations.mask-by": lambda bad: acts.mask({"conv5": {}}, by=bad),
        "Activations.with_stimuli": lambda bad: acts.with_stimuli(bad),
        "to_datatree": lambda bad: dx.to_datatree(bad),
        "from_datatree": lambda bad: dx.from_datatree(bad),
        "stack_neuroids": lambda bad: dx.stack_neuroids(bad),
        "stack_neuroids-layers": lambda bad: dx.stack_neuroids(acts, bad),
        "unstack_neuroids": lambda bad: dx.unstack_neuroids(bad),
    }


NAMES = ["open_act", "open_act-stim", "open_act-chunks", "open_act-allow_external",
         "save_act", "save_act-path",
         "save_act-attrs", "save_act-memory", "save_act-threads", "save_act-verify",
         "save_act-progress", "save_act-progress-store", "ActWriter-resume",
         "ActWriter-progress",
         "mask_file-act", "mask_file-out", "mask_file-mask", "mask_file-stim",
         "mask_file-attrs", "mask_file-by", "mask_file-allow_external", "read_dmask",
         "read_stim", "write_dmask",
         "write_stim", "DnnMask", "LayerMask", "mask_from_flags", "mask_from_flags-chn",
         "Activations", "Activations-attrs", "Activations.mask", "Activations.mask-by",
         "Activations.with_stimuli", "to_datatree", "from_datatree", "stack_neuroids",
         "stack_neuroids-layers", "unstack_neuroids"]
#: Arguments that are valid for a call, so they are not misuse there.
VALID = {("open_act-stim", "none"), ("open_act-chunks", "none"), ("open_act-chunks", "int"),
         ("open_act-chunks", "dict"), ("save_act-attrs", "none"), ("save_act-threads", "none"),
         ("mask_file-stim", "none"), ("mask_file-attrs", "none"), ("mask_file-mask", "dict"),
         ("DnnMask", "none"), ("LayerMask", "none"), ("mask_from_flags-chn", "none"),
         ("mask_from_flags-chn", "list"), ("Activations-attrs", "none"),
         ("Activations.mask", "dict"), ("stack_neuroids-layers", "none"),
         ("save_act", "dict"), ("save_act-attrs", "dict"), ("save_act-memory", "int"),
         ("save_act-threads", "int"), ("mask_file-attrs", "dict"), ("Activations-attrs", "dict")}
MISUSES = [(name, kind) for name in NAMES for kind in BAD if (name, kind) not in VALID]


def test_the_table_of_calls_is_complete(act_file, tmp_path):
    assert list(calls(act_file, tmp_path / "out.act.h5")) == NAMES


@pytest.mark.parametrize(("name", "kind"), MISUSES, ids=[f"{n}-{k}" for n, k in MISUSES])
def test_misuse_is_a_project_error(name, kind, act_file, tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    call = calls(act_file, tmp_path / "out.act.h5")[name]
    with pytest.raises(dx.DnnMaskError):
        call(BAD[kind])
    # nothing written, not even a temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == before


#: Every argument that names a file, given a name with a NUL character in it.
NUL_PATHS = {
    "open_act": lambda act, bad: dx.open_act(bad),
    "open_act-stim": lambda act, bad: dx.open_act(act, stim=bad),
    "save_act-path": lambda act, bad: dx.save_act(dx.open_act(act), bad),
    "mask_file-act": lambda act, bad: dx.mask_file(bad, act.with_name("o.act.h5"),
                                                   {"conv5": {}}),
    "mask_file-out": lambda act, bad: dx.mask_file(act, bad, {"conv5": {}}),
    "read_dmask": lambda act, bad: dx.read_dmask(bad),
    "read_stim": lambda act, bad: dx.read_stim(bad),
    "write_dmask": lambda act, bad: dx.write_dmask(dx.DnnMask({"conv5": {"chn": [1]}}), bad),
    "ActWriter": lambda act, bad: dx.ActWriter(bad),
}


@pytest.mark.parametrize("name", list(NUL_PATHS))
def test_a_path_holding_nul_is_a_usage_error(name, act_file, tmp_path):
    # bug: Python's "ValueError: embedded null byte" came out of os.stat, naming nothing
    before = sorted(p.name for p in tmp_path.iterdir())
    bad = str(tmp_path / "a\x00b.act.h5")
    with pytest.raises(dx.UsageError, match=r"holds a NUL character.*no file name holds"):
        NUL_PATHS[name](act_file, bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_key_that_is_no_name_is_a_missing_layer(act_file):
    with pytest.raises(KeyError, match=r"layer \[.conv5.\] is not in "):
        dx.open_act(act_file)[["conv5"]]


def test_the_backend_module_imports_no_heavy_dependency():
    # xarray imports every backend entry point for every user's open_dataset
    code = ("import sys, dnnmask_xr.xarray_.backend; "
            "print(sorted(m for m in ('pandas', 'h5py', 'dnnmask_xr.xarray_.reader') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    # xarray itself imports pandas; what the backend must not add is h5py or our reader
    assert "h5py" not in done.stdout, done.stdout
    assert "dnnmask_xr.xarray_.reader" not in done.stdout, done.stdout


def test_xarray_still_finds_the_engine(act_file):
    with xr.open_dataarray(act_file, engine="dnnact", group="conv5") as layer:
        assert layer.dims == ("stimulus", "channel", "row", "column")
