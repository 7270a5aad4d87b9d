"""The one write contract: what save_act, mask_file and dnn_mask promise for .act.h5 and .nc.

Every write, whatever the suffix and whatever route the layers take, obeys
the same rules: it never replaces an input, the layers share one stimulus
table, the options mean the same, what the reader would refuse is refused
before anything is written, bad arguments raise only the project's errors,
and an interrupt leaves either the whole file (and says so) or nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import digest
from reliability import TIMEOUT, BigInput, assert_one_line_error, start_cli, wait_for_temp
from xarray.backends import BackendArray
from xarray.core import indexing

import dnnmask_xr as dx
import dnnmask_xr.cli

SUFFIXES = [".act.h5", ".nc"]
DIMS = ("stimulus", "channel", "row", "column")


def assert_no_temp(folder: Path) -> None:
    strays = sorted(path.name for path in folder.glob(".*.tmp"))
    assert strays == [], f"temporary files left behind: {strays}"


def assert_not_written(out: Path) -> None:
    assert not out.exists(), f"{out.name} was written"
    assert_no_temp(out.parent)


def small_layer(field: str = "condition", values=("cat", "dog", "cat")) -> xr.DataArray:
    data = np.arange(6, dtype=np.float32).reshape(3, 2, 1, 1)
    return xr.DataArray(data, dims=DIMS,
                        coords={"stimulus": ["s1", "s2", "s3"], field: ("stimulus", list(values))})


# --- A. Never replace an input ----------------------------------------------------------------

#: Ways of giving layers read from ``path`` (``acts`` is ``open_act(path)``, still open).
SOURCES = {
    "activations": lambda acts, path: acts,
    "dict": lambda acts, path: {"conv5": acts["conv5"].isel(channel=[0, 1])},
    "Activations": lambda acts, path: dx.Activations(
        {"conv5": acts["conv5"].isel(channel=[0, 1])}),
    "datatree": lambda acts, path: dx.to_datatree(acts),
    "backend": lambda acts, path: {
        "conv5": xr.open_dataarray(path, engine="dnnact", group="conv5")},
    "dask": lambda acts, path: dx.open_act(path, chunks={}),
    "computed": lambda acts, path: {"conv5": acts["conv5"] * 2},
    "loaded-while-open": lambda acts, path: {"conv5": acts["conv5"].load()},
}
INPUT_CASES = [(".act.h5", name) for name in SOURCES] + [
    (".nc", name) for name in SOURCES if name != "backend"]  # engine="dnnact" reads .act.h5


@pytest.mark.parametrize(("suffix", "source"), INPUT_CASES,
                         ids=[f"{suffix}-{name}" for suffix, name in INPUT_CASES])
def test_save_act_never_replaces_its_input(act_file, tmp_path, suffix, source):
    # bug: only Activations.source was checked, so a dict, a DataTree, an xarray-backend
    # array, a computed or a loaded layer of the input silently replaced the input
    path = act_file
    if suffix == ".nc":
        path = tmp_path / "x.nc"
        dx.save_act(dx.open_act(act_file), path)
    before = digest(path)
    acts = dx.open_act(path)
    layers = SOURCES[source](acts, path)
    with pytest.raises(dx.ActFileError, match="is the input file"):
        dx.save_act(layers, path)
    acts.close()
    assert digest(path) == before
    assert_no_temp(tmp_path)


def test_mask_file_never_replaces_its_input(act_file, tmp_path):
    before = digest(act_file)
    with pytest.raises(dx.ActFileError, match="is the input file"):
        dx.mask_file(act_file, act_file, {"conv5": {}})
    assert digest(act_file) == before
    assert_no_temp(tmp_path)


HELD_UNDER_ANOTHER_NAME = ["renamed-while-open", "opened-before-chdir"]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("how", HELD_UNDER_ANOTHER_NAME)
def test_a_file_held_open_under_another_name_is_never_replaced(
        act_file, tmp_path, monkeypatch, how, suffix):
    # bug: the files this process holds open were compared by the name they were opened
    # by; one renamed since (by another program), or opened by a relative name before
    # os.chdir, was replaced, and the input was gone
    held = tmp_path / "held" / f"input{suffix}"
    held.parent.mkdir()
    dx.save_act(dx.open_act(act_file), held)
    if how == "renamed-while-open":
        acts = dx.open_act(held)
        acts["conv5"].values  # noqa: B018 (the file is open)
        out = held.with_name(f"renamed{suffix}")
        held.rename(out)
        layers = acts.mask(dx.DnnMask({"conv5": {"channel": [1]}}))
    else:
        monkeypatch.chdir(held.parent)
        acts = h5py.File(held.name, "r")
        monkeypatch.chdir(tmp_path)
        out = Path("held", held.name)
        layers = dx.open_act(act_file)
    before = digest(out)
    with pytest.raises(dx.OutputIsInputError, match="this process holds it open"):
        dx.save_act(layers, out)
    acts.close()
    assert digest(out) == before
    assert_no_temp(out.parent)


# --- B. One stimulus table --------------------------------------------------------------------

CLASHES = {
    # bug: the .act.h5 route compared field names only, and kept the first layer's values
    "field-values": (("condition", ["cat", "dog", "cat"]), ("condition", ["cat", "dog", "dog"])),
    "field-names": (("condition", ["cat", "dog", "cat"]), ("group", ["cat", "dog", "cat"])),
}


@pytest.mark.parametrize("clash", list(CLASHES))
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_layers_with_different_stimulus_tables_are_refused(tmp_path, suffix, clash):
    first, second = CLASHES[clash]
    out = tmp_path / f"out{suffix}"
    with pytest.raises(dx.DnnMaskError, match="stimulus"):
        dx.save_act({"a": small_layer(*first), "b": small_layer(*second)}, out)
    assert_not_written(out)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_equal_fields_with_nan_are_one_table(tmp_path, suffix):
    # NaN == NaN here: a float field with empty cells is the same table in both layers
    onset = [0.5, np.nan, 1.5]
    out = tmp_path / f"out{suffix}"
    dx.save_act({"a": small_layer("onset", onset), "b": small_layer("onset", list(onset))}, out)
    back = dx.open_act(out)
    for name in ("a", "b"):
        assert back[name].onset.dtype.kind == "f"
        np.testing.assert_array_equal(back[name].onset.values, np.array(onset), strict=True)
        np.testing.assert_array_equal(back[name].values, small_layer().values)
    assert_no_temp(tmp_path)


# --- C. One set of options for both suffixes --------------------------------------------------

@pytest.mark.parametrize(("option", "value"), [
    ("memory", 0), ("memory", -5), ("memory", 1.5), ("memory", True),
    ("threads", 0), ("threads", -1),
])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_bad_budget_is_a_usage_error(act_file, tmp_path, suffix, option, value):
    # bugs: .nc ignored memory= and threads=; threads=0 meant "all cores";
    # threads=-1 raised ThreadPoolExecutor's bare ValueError
    out = tmp_path / f"out{suffix}"
    with pytest.raises(dx.UsageError, match=option):
        dx.save_act(dx.open_act(act_file), out, **{option: value})
    assert_not_written(out)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_act_reports_every_layer(act_file, tmp_path, suffix):
    # bug: a .nc save returned None
    out = tmp_path / f"out{suffix}"
    report = dx.save_act(dx.open_act(act_file), out)
    assert isinstance(report, dx.SaveReport), report
    assert Path(report.path) == out
    assert [layer.name for layer in report.layers] == ["conv5", "fc3"]


def test_a_notebook_shows_a_report_as_print_does(act_file, tmp_path):
    class Printer:  # what IPython's pretty printer hands _repr_pretty_
        def __init__(self) -> None:
            self.shown = ""

        def text(self, text: str) -> None:
            self.shown += text

    report = dx.save_act(dx.open_act(act_file), tmp_path / "out.act.h5")
    printer = Printer()
    report._repr_pretty_(printer, cycle=False)
    # the output named, then what print() gives: a line a layer
    first, *lines = printer.shown.split("\n")
    assert first == f"SaveReport of {str(tmp_path / 'out.act.h5')!r}"
    assert "\n".join(lines) == str(report)
    assert [line.split(";")[0] for line in lines] == ["conv5: copied", "fc3: copied"]


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_verify_inflates_copied_chunks(act_file, tmp_path, suffix, verify):
    # bugs: verify= was silently dropped for .nc, and .nc re-encoded whole layers
    out = tmp_path / f"out{suffix}"
    report = dx.save_act(dx.open_act(act_file), out, verify=verify)
    assert isinstance(report, dx.SaveReport), report
    assert [layer.method for layer in report.layers] == ["copied", "copied"], str(report)
    for layer in report.layers:
        if verify:
            assert layer.chunks_inflated > 0, str(report)
        else:
            assert layer.chunks_inflated == 0, str(report)


#: Layers to save, made from ``open_act(act_file)``, and the arrays they must hold.
VALUE_CASES = {
    "whole": (lambda acts: acts, lambda arrays: arrays),
    "masked": (lambda acts: acts.mask(dx.DnnMask({"conv5": {"channel": [3, 1], "row": [2]}})),
               lambda arrays: {"conv5": arrays["conv5"][:, [2, 0]][:, :, [1]]}),
    "in-memory": (lambda acts: {name: acts[name].load() * 1 for name in acts},
                  lambda arrays: arrays),
}


@pytest.mark.parametrize("case", list(VALUE_CASES))
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_values_written_are_exact(act_file, layers, tmp_path, suffix, case):
    select, expected = VALUE_CASES[case]
    out = tmp_path / f"out{suffix}"
    dx.save_act(select(dx.open_act(act_file)), out)
    back = dx.open_act(out)
    want = expected(layers)
    assert list(back) == list(want)
    for name, values in want.items():
        assert back[name].dtype == values.dtype
        np.testing.assert_array_equal(back[name].values, values, strict=True)


# --- D. Refuse what the reader would refuse ---------------------------------------------------

#: (layers, attrs, message fragment)
REFUSED = {
    # bug: h5py made a group 'features' holding a dataset '3'
    "slash-in-name": (lambda: {"features/3": small_layer()}, None, "features/3"),
    # bugs: h5py's TypeError / UnicodeEncodeError, not the project's errors
    "empty-name": (lambda: {"": small_layer()}, None, "name"),
    "non-utf8-name": (lambda: {"conv\udcff": small_layer()}, None, "(?i)utf-8"),
    # bug: reserved root attributes were written over the stimulus table's
    "reserved-stimulus": (lambda: {"a": small_layer()}, {"stimulus": "x"}, "stimulus"),
    "reserved-fields": (lambda: {"a": small_layer()}, {"stimulus_fields": "x"},
                        "stimulus_fields"),
    # bug: a zarr store wrote its own over them (the order of its layers and fields), so
    # they were lost there; refused for every suffix, which store the same attributes
    "reserved-layer-order": (lambda: {"a": small_layer()}, {"layer_order": ["a"]},
                             "'layer_order' of the file's root is reserved"),
    "reserved-field-order": (lambda: {"a": small_layer()}, {"stimulus_field_order": "x"},
                             "'stimulus_field_order' of the file's root is reserved"),
    # bug: h5py's TypeError after the temporary file was made
    "none-attr": (lambda: {"a": small_layer()}, {"x": None}, "'x'"),
    "dict-attr": (lambda: {"a": small_layer()}, {"x": {"a": 1}}, "'x'"),
    # bug: uint64 labels above int64 were written (and wrapped to negative numbers in .nc)
    "uint64-channels": (lambda: {"a": small_layer().assign_coords(
        channel=np.array([2**63 + 1, 2**63 + 2], dtype=np.uint64))}, None, "channel"),
    # bug: a coordinate along channel was silently dropped
    "channel-coordinate": (lambda: {"a": small_layer().assign_coords(
        unit=("channel", ["mV", "Hz"]))}, None, "unit"),
    # bug: names HDF5 stores as attribute names, longer than the 65 534 bytes it takes
    # (a name's length and its NUL fit 16 bits), raised h5py's KeyError from deep inside
    "long-root-attr-name": (lambda: {"a": small_layer()}, {"k" * 65535: 1},
                            "is 65535 bytes long"),
    "long-layer-attr-name": (lambda: {"a": small_layer().assign_attrs({"é" * 32768: 1})},
                             None, "is 65536 bytes long"),
    "long-field-name": (lambda: {"a": small_layer("f" * 65530)}, None,
                        "stimulus field name 'fff.*is 65530 bytes long.*at most 65525"),
    "long-unit-dim": (lambda: {"a": xr.DataArray(np.ones((3, 2)),
                                                 dims=("stimulus", "u" * 65535))},
                      None, "unit dim"),
}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_what_the_reader_refuses_is_not_written(tmp_path, suffix, case):
    make, attrs, fragment = REFUSED[case]
    out = tmp_path / f"out{suffix}"
    with pytest.raises(dx.DnnMaskError, match=fragment):
        dx.save_act(make(), out, attrs=attrs)
    assert_not_written(out)


# --- E. Bad arguments raise only the project's errors -----------------------------------------

BAD_LAYERS = {
    # bug: AttributeError ('... has no attribute items')
    "dataarray": lambda acts: acts["conv5"],
    "none": lambda acts: None,
    "list": lambda acts: [acts["conv5"]],
    # plain arrays of 2 to 4 dims are layers (test_44_layer_dims.py); these are not
    "numpy-1d": lambda acts: {"a": np.zeros(3)},
    "numpy-5d": lambda acts: {"a": np.zeros((1, 1, 1, 1, 1))},
    "text": lambda acts: {"a": np.array([["x"]])},
}


@pytest.mark.parametrize("case", list(BAD_LAYERS))
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_act_takes_only_layers(act_file, tmp_path, suffix, case):
    out = tmp_path / f"out{suffix}"
    with pytest.raises(dx.DnnMaskError):
        dx.save_act(BAD_LAYERS[case](dx.open_act(act_file)), out)
    assert_not_written(out)


@pytest.mark.parametrize("size", [0, -3])
def test_bad_chunk_size_is_a_usage_error(act_file, size):
    # bug: ZeroDivisionError (0) and dask's ValueError (-3)
    with pytest.raises(dx.UsageError, match="stimulus"):
        dx.open_act(act_file, chunks={"stimulus": size})


# DnnMask's axis keys are 'channel', 'row', 'column' (DNNBrain's 'chn' is refused by DnnMask)
@pytest.mark.parametrize("mask", [{"conv5": {"channel": [1]}}, {"conv5": {}}],
                         ids=["channels", "whole-layer"])
def test_mask_file_refuses_unknown_by(act_file, tmp_path, mask):
    # bug: by= was only read when a layer had numbers: a whole layer ignored by="bogus"
    out = tmp_path / "out.act.h5"
    with pytest.raises(dx.UsageError, match="bogus"):
        dx.mask_file(act_file, out, mask, by="bogus")
    assert_not_written(out)


def test_activations_mask_refuses_unknown_by(act_file):
    # bug: a bare ValueError
    mask = dx.DnnMask({"conv5": {"channel": [1]}})
    with pytest.raises(dx.UsageError, match="bogus"):
        dx.open_act(act_file).mask(mask, by="bogus")


# --- F. No xarray for the command -------------------------------------------------------------

def test_command_writes_netcdf_without_xarray(act_file, layers, tmp_path):
    # bug: dnn_mask -out x.nc went through open_act and save_act, importing xarray and pandas
    out = tmp_path / "out.nc"
    script = textwrap.dedent("""
        import sys
        from dnnmask_xr.cli import main
        status = main(sys.argv[1:])
        assert "xarray" not in sys.modules, "xarray was imported"
        assert "pandas" not in sys.modules, "pandas was imported"
        sys.exit(status)
    """)
    argv = ["-act", str(act_file), "-layer", "conv5", "-chn", "1", "2", "-out", str(out)]
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True,
                          check=False, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    with xr.open_datatree(out, engine="h5netcdf") as tree:
        got = tree["conv5"]["conv5"].values
    np.testing.assert_array_equal(got, layers["conv5"][:, [0, 1]], strict=True)
    assert_no_temp(tmp_path)


# --- G. Interrupts ----------------------------------------------------------------------------

@pytest.mark.reliability
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_sighup_mid_write_leaves_nothing(big: BigInput, tmp_path, suffix):
    # bug: SIGHUP (a closed terminal) killed dnn_mask outright, leaving the temporary file
    before = digest(big.act)
    out = tmp_path / f"out{suffix}"
    proc = start_cli("-act", big.act, "-dmask", big.dmask, "-out", out)
    wait_for_temp(proc, out, 4 * 2**20)
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGHUP, stderr
    assert_one_line_error(stderr, r"^interrupted\b.*nothing was written")
    assert sorted(path.name for path in tmp_path.iterdir()) == []
    assert digest(big.act) == before


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_interrupt_just_after_the_rename_keeps_the_file(
    act_file, layers, tmp_path, monkeypatch, capsys, suffix,
):
    # bug: Ctrl-C right after the rename exited 130 saying "nothing was written" beside a
    # complete output
    out = tmp_path / f"out{suffix}"
    real_replace = os.replace
    renamed = []

    def replace_then_interrupt(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if Path(os.path.abspath(dst)) == out:
            renamed.append(dst)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    argv = ["-act", str(act_file), "-layer", "conv5", "-chn", "1", "2", "-out", str(out)]
    try:
        status = dnnmask_xr.cli.main(argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped dnn_mask's main()")
    stderr = capsys.readouterr().err
    assert renamed, "the output was not put in place with os.replace"
    assert status == 0, stderr
    assert_one_line_error(stderr, prefix="dnn_mask: ")
    assert "written" in stderr and "nothing was written" not in stderr, stderr
    np.testing.assert_array_equal(dx.open_act(out)["conv5"].values, layers["conv5"][:, [0, 1]],
                                  strict=True)
    assert_no_temp(tmp_path)


# a lazy or dask-backed layer names its file even once the file is closed
@pytest.mark.parametrize("chunks", [None, {}], ids=["lazy", "dask"])
def test_layers_of_a_closed_file_still_name_it_as_their_source(act_file, chunks):
    acts = dx.open_act(act_file, chunks=chunks)
    layer = acts["conv5"].isel(channel=[0, 1])
    if chunks is not None:
        layer = layer * 2  # a dask graph built on the file
    acts.close()
    before = digest(act_file)
    with pytest.raises(dx.ActFileError, match="the layers are read from it"):
        dx.save_act({"conv5": layer}, act_file)
    assert digest(act_file) == before
    assert_no_temp(act_file.parent)


# layers read through xarray's own netCDF backends name their file too, even
# once it is closed, and even where netCDF4 opens it with its own HDF5 library
@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
@pytest.mark.parametrize("engine", ["netcdf4", "h5netcdf"])
@pytest.mark.parametrize("chunks", [None, {}], ids=["lazy", "dask"])
def test_layers_from_xarray_backends_never_replace_their_file(act_file, tmp_path, engine,
                                                              closed, chunks):
    source = tmp_path / "in.nc"
    dx.save_act(dx.open_act(act_file), source)
    before = digest(source)
    dataset = xr.open_dataset(source, group="conv5", engine=engine, chunks=chunks)
    layer = dataset["conv5"].isel(channel=[0, 1])
    if closed:
        dataset.close()
    with pytest.raises(dx.ActFileError, match="is the input file"):
        dx.save_act({"conv5": layer}, source)
    dataset.close()
    assert digest(source) == before
    assert_no_temp(tmp_path)


# one stimulus table, shared by save_act and to_datatree
def test_stimulus_table_is_the_one_rule_every_route_uses(act_file, stim_file):
    acts = dx.open_act(act_file, stim=stim_file)
    table = acts.stimulus_table()
    np.testing.assert_array_equal(table.ids, [f"img{i}.png" for i in range(5)])
    assert list(table.fields) == ["label", "condition", "onset"]
    np.testing.assert_array_equal(table.fields["onset"], [i * 0.5 for i in range(5)])
    assert table.header == {"type": "image", "path": "/data/images"}
    clash = dx.Activations({"a": small_layer(), "b": small_layer(values=("dog", "dog", "cat"))})
    with pytest.raises(dx.DnnMaskError, match="values of field 'condition' differ"):
        clash.stimulus_table()
    with pytest.raises(dx.DnnMaskError, match="values of field 'condition' differ"):
        dx.to_datatree(clash)


class _FailingBackendArray(BackendArray):
    """A lazily read array, as an xarray backend gives one, whose reading fails."""

    shape = (4, 3, 2, 2)
    dtype = np.dtype("float32")

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC,
                                                  self._read)

    def _read(self, key):
        raise self.error


def _failing_layer(how: str, error: Exception) -> xr.DataArray:
    dims = ("stimulus", "channel", "row", "column")
    if how == "dask":  # the tasks fail (the layer's chunks are deflated by them)
        import dask.array as da

        def fail(block):
            raise error

        return xr.DataArray(da.map_blocks(fail, da.zeros((4, 3, 2, 2), chunks=2),
                                          dtype=np.float32), dims=dims)
    lazy = indexing.LazilyIndexedArray(_FailingBackendArray(error))
    return xr.DataArray(xr.Variable(dims, lazy))


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("how", ["dask", "lazy"])
@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory"),
                                   OSError(5, "Input/output error", "features.npy"),
                                   ValueError("the model's own check")],
                         ids=["RuntimeError", "OSError", "ValueError"])
def test_the_callers_computation_failing_is_its_own_error(suffix, how, error, tmp_path):
    # bug: a RuntimeError or OSError of the caller's computation came out as
    # ActFileError "cannot write 'out...': CUDA out of memory", a write failure it was not
    out = tmp_path / f"out{suffix}"
    with pytest.raises(type(error)) as raised:
        dx.save_act({"conv": _failing_layer(how, error)}, out)
    assert raised.value is error or str(raised.value) == str(error)
    assert not isinstance(raised.value, dx.DnnMaskError)
    assert list(tmp_path.iterdir()) == []  # the output removed, nothing beside it
