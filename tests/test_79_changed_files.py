"""Files that change while open, and xarray's file cache (issue 18: #3, #4, #5, #10).

A layer opened lazily reopens its file when it was closed (``Activations.close()``,
xarray's file cache evicting it) and in every dask worker process. Each reopen
must find the file that was opened, or fail in one line that names it: values
of another file never come back under the labels read from the first. A read
holds its file to its end, so that the cache never closes a file under it.

The files are replaced as ``dnn_mask`` and ``save_act`` replace an existing
output: written beside it, then renamed over it. ``dnn_mask`` and ``mask_file``
open their input once per run, so they have no reopen to check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from dnnmask_xr import ActFileError, open_act, save_act
from dnnmask_xr.act.layout import encode_stimulus
from dnnmask_xr.xarray_.activations import Activations

pytestmark = pytest.mark.sweep("suffix")

SHAPE = (3, 4, 5, 5)
CHUNKS = (1, 2, 5, 5)
SUFFIXES = (".act.h5", ".nc")
CHANGED = "changed since it was opened"


def make(path: Path, data: np.ndarray, *, channels: np.ndarray | None = None,
         stimuli: np.ndarray | None = None, onsets: np.ndarray | None = None) -> np.ndarray:
    """Put a file of one layer ``conv`` at ``path``: written beside it, renamed over it."""
    staged = path.with_name(".staged.act.h5")
    with h5py.File(staged, "w") as root:
        layer = root.create_dataset("conv", data=data, chunks=CHUNKS, compression="gzip")
        if channels is not None:
            layer.attrs["channel"] = channels
        ids = np.arange(1, len(data) + 1) if stimuli is None else stimuli
        encode_stimulus(root.attrs, ids, {} if onsets is None else {"onset": onsets}, {})
    if path.name.endswith(".nc"):
        nc = path.with_name(".staged.nc")
        with open_act(staged) as acts:
            save_act(acts, nc)
        staged.unlink()
        staged = nc
    os.replace(staged, path)
    return data


def values(seed: int, shape: tuple[int, ...] = SHAPE, dtype: str = "float32") -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def backdate(path: Path) -> None:
    """Set a file's modification time a second back, as if written a second before."""
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns - 10**9))


def rewrite_in_place(path: Path) -> None:
    """Change a file's values where they are, as ``h5py.File(path, "r+")`` does."""
    with h5py.File(path, "r+") as root:
        layers = []
        root.visititems(lambda name, node: layers.append(node)
                        if isinstance(node, h5py.Dataset) and node.ndim == 4 else None)
        layers[0][0] = 0


def rewrite_keeping_mtime(path: Path) -> None:
    """Write a file's bytes again where they are, then set its times back, as
    ``cp -p`` or ``rsync -t`` would: inode, size and mtime all as they were."""
    status = path.stat()
    path.write_bytes(path.read_bytes())
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns) == (
        status.st_ino, status.st_size, status.st_mtime_ns)


#: What may replace the file: the issue's fewer stimuli of another dtype, a file
#: alike in everything but its values (so the check is not on shapes), and the
#: same file with values changed in place (its mtime then differs from the one
#: the test backdated: file systems keep times at a coarse granularity).
REPLACEMENTS: dict[str, Callable[[Path], object]] = {
    "fewer-stimuli-float64": lambda path: make(path, values(9, (2, *SHAPE[1:]), "float64")),
    "same-shape-other-values": lambda path: make(path, values(9)),
    "rewritten-in-place": rewrite_in_place,
    "rewritten-in-place-with-its-mtime-set-back": rewrite_keeping_mtime,
}


def _compute(scheduler: str) -> Callable[[Activations, Path], np.ndarray]:
    return lambda acts, out: acts["conv"].compute(scheduler=scheduler).values


def _save(suffix: str) -> Callable[[Activations, Path], np.ndarray]:
    def save(acts: Activations, out: Path) -> np.ndarray:
        save_act(acts, out / f"out{suffix}")
        with open_act(out / f"out{suffix}") as saved:
            return saved["conv"].values
    return save


#: Every way a lazy layer is read again: how it is opened (chunks=) and read.
READS: dict[str, tuple[dict, Callable[[Activations, Path], np.ndarray]]] = {
    "values": ({}, lambda acts, out: acts["conv"].values),
    "selection": ({}, lambda acts, out: acts["conv"].isel(channel=[3, 0]).values),
    "dask-threads": ({"chunks": {}}, _compute("threads")),
    "dask-processes": ({"chunks": {}}, _compute("processes")),
    "save_act-.act.h5": ({}, _save(".act.h5")),
    "save_act-.nc": ({}, _save(".nc")),
}
#: The reads as test cases: dask's process scheduler starts processes (a slow tier).
READ_CASES = [pytest.param(read, marks=pytest.mark.processes) if read == "dask-processes"
              else read for read in READS]


def assert_changed(err: pytest.ExceptionInfo[ActFileError], path: Path) -> None:
    message = str(err.value)
    assert CHANGED in message and repr(str(path)) in message, message
    assert "open it again" in message and "\n" not in message


def assert_nothing_written(out: Path) -> None:
    assert sorted(os.listdir(out)) == []


# -- #4: one file replaced after close() ----------------------------------------------------

@pytest.mark.parametrize("read", READ_CASES)
@pytest.mark.parametrize("replacement", REPLACEMENTS)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_file_replaced_after_close_is_refused_on_reopen(tmp_path, suffix, replacement,
                                                          read):
    path = tmp_path / f"x{suffix}"
    make(path, values(1))
    backdate(path)
    out = tmp_path / "out"
    out.mkdir()
    how, read_values = READS[read]
    acts = open_act(path, **how)
    acts.close()
    REPLACEMENTS[replacement](path)
    with pytest.raises(ActFileError) as err:
        read_values(acts, out)
    assert_changed(err, path)
    assert_nothing_written(out)


@pytest.mark.parametrize("read", READ_CASES)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_file_left_alone_reopens_after_close(tmp_path, suffix, read):
    path = tmp_path / f"x{suffix}"
    data = make(path, values(1))
    out = tmp_path / "out"
    out.mkdir()
    how, read_values = READS[read]
    acts = open_act(path, **how)
    acts.close()
    expected = data[:, [3, 0]] if read == "selection" else data
    np.testing.assert_array_equal(read_values(acts, out), expected)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_labels_are_those_read_when_the_file_was_opened(tmp_path, suffix):
    # .nc stimulus fields come through h5netcdf, which would read them from
    # whatever file is at the path when they are first used
    path = tmp_path / f"x{suffix}"
    make(path, values(1), onsets=np.array([0.5, 1.5, 2.5]))
    acts = open_act(path)
    acts.close()
    make(path, values(9), onsets=np.array([7.0, 8.0, 9.0]))
    assert acts["conv"]["onset"].values.tolist() == [0.5, 1.5, 2.5]
    with pytest.raises(ActFileError) as err:
        acts["conv"].values  # noqa: B018
    assert_changed(err, path)


# -- #3: a member of a set replaced after close() -------------------------------------------

def _member_with_fewer_stimuli(path: Path) -> None:
    make(path, values(9, (1, *SHAPE[1:])), stimuli=np.array([10]))


def _member_with_other_channels(path: Path) -> None:
    make(path, values(9), channels=np.array([4, 3, 2, 1]), stimuli=np.array([10, 11, 12]))


MEMBER_REPLACEMENTS = {"fewer-stimuli": _member_with_fewer_stimuli,
                       "other-channel-labels": _member_with_other_channels}


@pytest.mark.parametrize("read", READ_CASES)
@pytest.mark.parametrize("replacement", MEMBER_REPLACEMENTS)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_member_of_a_set_replaced_after_close_is_refused(tmp_path, suffix, replacement,
                                                           read):
    paths = [tmp_path / f"ses-{k}{suffix}" for k in range(2)]
    make(paths[0], values(1), stimuli=np.array([0, 1, 2]))
    make(paths[1], values(2), stimuli=np.array([10, 11, 12]))
    out = tmp_path / "out"
    out.mkdir()
    how, read_values = READS[read]
    acts = open_act(paths, **how)
    acts.close()
    MEMBER_REPLACEMENTS[replacement](paths[1])
    with pytest.raises(ActFileError) as err:
        read_values(acts, out)
    assert_changed(err, paths[1])
    assert_nothing_written(out)


# -- #5: a file replaced by a rename while a dask-backed layer is open ------------------------

@pytest.mark.processes
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_the_process_scheduler_refuses_a_file_replaced_while_open(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    make(path, values(1))
    with open_act(path, chunks={}) as acts:
        make(path, values(9))
        with pytest.raises(ActFileError) as err:
            acts["conv"].compute(scheduler="processes")
    assert_changed(err, path)


@pytest.mark.processes
def test_a_distributed_cluster_of_processes_refuses_a_file_replaced_while_open(tmp_path):
    distributed = pytest.importorskip("distributed")
    path = tmp_path / "x.act.h5"
    make(path, values(1))
    with open_act(path, chunks={}) as acts, \
            distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        make(path, values(9))
        with pytest.raises(ActFileError) as err:
            client.compute(acts["conv"]).result()
    assert_changed(err, path)


@pytest.mark.parametrize("evicted", [False, True], ids=["cached", "evicted"])
@pytest.mark.parametrize("chunks", [None, {}], ids=["lazy", "dask-threads"])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_threads_read_the_file_they_opened_or_refuse_it(tmp_path, suffix, chunks, evicted):
    path = tmp_path / f"x{suffix}"
    data = make(path, values(1))
    other = tmp_path / f"other{suffix}"
    make(other, values(2))
    # a cache of one file: opening another closes this one
    with xr.set_options(file_cache_maxsize=1 if evicted else 128), \
            open_act(path, chunks=chunks) as acts:
        np.testing.assert_array_equal(acts["conv"][0].values, data[0])  # the file is open
        make(path, values(9))
        if evicted:  # the next read reopens the file
            with open_act(other) as second:
                second["conv"].values  # noqa: B018
            with pytest.raises(ActFileError) as err:
                acts["conv"].values  # noqa: B018
            assert_changed(err, path)
        else:  # still open: the file opened, whatever is at its path now
            np.testing.assert_array_equal(acts["conv"].values, data)


# -- #10: xarray's file cache never closes a file under a running read ------------------------

def test_a_small_file_cache_never_closes_a_file_under_a_dask_read(tmp_path):
    arrays = []
    paths = []
    for k in range(40):
        paths.append(tmp_path / f"m{k:03d}.act.h5")
        arrays.append(make(paths[-1], values(k), stimuli=np.arange(3 * k, 3 * k + 3)))
    expected = np.concatenate(arrays)
    with xr.set_options(file_cache_maxsize=2):
        for _ in range(4):
            with open_act(paths, chunks={}) as acts:
                layer = acts["conv"]
                got = layer.compute(scheduler="threads", num_workers=8).values
                np.testing.assert_array_equal(got, expected)
                part = layer.isel(channel=[3, 1]).compute(scheduler="threads", num_workers=8)
                np.testing.assert_array_equal(part.values, expected[:, [3, 1]])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_small_file_cache_never_closes_a_file_a_save_reads(tmp_path, suffix):
    # the writer reads each layer's file after planning them all, that is after
    # opening the other 39
    arrays = {f"l{k}": make(tmp_path / f"m{k:03d}.act.h5", values(k)) for k in range(40)}
    out = tmp_path / f"out{suffix}"
    with xr.set_options(file_cache_maxsize=2):
        opened = [open_act(tmp_path / f"m{k:03d}.act.h5") for k in range(40)]
        save_act({name: acts["conv"] for name, acts in zip(arrays, opened, strict=True)}, out)
        for acts in opened:
            acts.close()
    with open_act(out) as saved:
        for name, data in arrays.items():
            np.testing.assert_array_equal(saved[name].values, data)


def test_a_file_opened_by_a_relative_path_is_reopened_after_a_change_of_folder(
        tmp_path, monkeypatch):
    make(tmp_path / "x.act.h5", data := values(1))
    (tmp_path / "elsewhere").mkdir()
    make(tmp_path / "elsewhere" / "x.act.h5", values(9))  # what the relative path finds later
    monkeypatch.chdir(tmp_path)
    acts = open_act("x.act.h5")
    acts.close()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert acts["conv"].values.tobytes() == data.tobytes()


# -- files a layer reads from (allow_external) ------------------------------------------------

def _source(path: Path, data: np.ndarray) -> None:
    """Put an HDF5 file with /conv at ``path``: written beside it, renamed over it."""
    with h5py.File(path.with_name(".staged.h5"), "w") as root:
        root["conv"] = data
    os.replace(path.with_name(".staged.h5"), path)


def _raw(path: Path, data: np.ndarray) -> None:
    data.tofile(path.with_name(".staged.bin"))
    os.replace(path.with_name(".staged.bin"), path)


#: How a layer reads another file: the file it reads, how to write that file, and
#: how the layer points to it.
POINTERS = {
    "raw-storage": ("raw.bin", _raw,
                    lambda root, data: root.create_dataset(
                        "conv", SHAPE, "f4", external=[("raw.bin", 0, data.nbytes)])),
    "virtual": ("src.h5", _source,
                lambda root, data: root.create_virtual_dataset("conv", _mapping(), fillvalue=0)),
    "external-link": ("src.h5", _source,
                      lambda root, data: root.__setitem__(
                          "conv", h5py.ExternalLink("src.h5", "conv"))),
}


def _mapping() -> h5py.VirtualLayout:
    layout = h5py.VirtualLayout(shape=SHAPE, dtype="f4")
    layout[...] = h5py.VirtualSource("src.h5", "conv", shape=SHAPE)
    return layout


def _pointing(folder: Path, pointer: str, data: np.ndarray, suffix: str) -> Path:
    """An input whose layer reads ``data`` from another file, through ``pointer``."""
    name, write, point = POINTERS[pointer]
    write(folder / name, data)
    path = folder / "main.act.h5"
    with h5py.File(path, "w") as root:
        point(root, data)
        encode_stimulus(root.attrs, np.arange(1, SHAPE[0] + 1), {}, {})
    if suffix == ".nc":
        # the .nc file's layer variable made to point the same way
        with open_act(path, allow_external=True) as acts:
            save_act(acts, folder / "main.nc")
        with h5py.File(folder / "main.nc", "a") as root:
            variable = root["conv/conv"]
            attrs, scales = dict(variable.attrs), [list(dim.values()) for dim in variable.dims]
            del root["conv/conv"]
            point(root["conv"], data)
            for key, value in attrs.items():
                if key != "DIMENSION_LIST":
                    root["conv/conv"].attrs[key] = value
            for axis, found in enumerate(scales):
                for scale in found:
                    root["conv/conv"].dims[axis].attach_scale(scale)
        path = folder / "main.nc"
    return path


@pytest.mark.parametrize(("change", "closed"), [("replaced", True), ("removed", False)],
                         ids=["replaced-after-close", "removed-while-open"])
@pytest.mark.parametrize(("pointer", "read"), [
    *((pointer, read) for pointer in POINTERS for read in ("values", "save_act-.nc")),
    # a worker process checks alike (and takes a second)
    pytest.param("virtual", "dask-processes", marks=pytest.mark.processes)])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_file_a_layer_reads_from_that_changed_is_refused(
        tmp_path, monkeypatch, suffix, pointer, read, change, closed):
    monkeypatch.chdir(tmp_path)  # raw storage is found from the working folder
    path = _pointing(tmp_path, pointer, data := values(1), suffix)
    out = tmp_path / "out"
    out.mkdir()
    how, read_values = READS[read]
    acts = open_act(path, allow_external=True, cache=False, **how)
    assert acts["conv"].values.tobytes() == data.tobytes()
    if closed:
        acts.close()
    name, write, _ = POINTERS[pointer]
    if change == "replaced":
        write(tmp_path / name, values(9))
    else:
        (tmp_path / name).unlink()
    with pytest.raises(ActFileError) as err:
        read_values(acts, out)
    message = str(err.value)
    assert re.match(rf"^'[^']*{re.escape(path.name)}': '[^']*{re.escape(name)}', which its "
                    r"layers read from, changed since the file was opened .*open the file "
                    r"again to read what it holds now$", message), message
    assert_nothing_written(out)
    acts.close()


@pytest.mark.parametrize("pointer", ["virtual", "external-link"])
def test_an_nc_layer_that_reads_another_file_is_refused_unless_allowed(tmp_path, monkeypatch,
                                                                         pointer):
    monkeypatch.chdir(tmp_path)
    path = _pointing(tmp_path, pointer, data := values(1), ".nc")
    with pytest.raises(ActFileError, match=r"^'.*main\.nc': object 'conv/conv' is (a virtual "
                                           r"dataset|an external link).*allow_external=True\)$"):
        open_act(path)
    with open_act(path, allow_external=True) as acts:
        assert acts["conv"].values.tobytes() == data.tobytes()


def test_a_source_named_through_a_symbolic_link_pointed_elsewhere_is_refused(
        tmp_path, monkeypatch):
    # two names of one source: the alias is kept as a file read, not folded into the first
    monkeypatch.chdir(tmp_path)
    _source(tmp_path / "src.h5", data := values(1))
    (tmp_path / "alias.h5").symlink_to("src.h5")
    _source(tmp_path / "evil.h5", values(9))
    layout = h5py.VirtualLayout(shape=SHAPE, dtype="f4")
    layout[:1] = h5py.VirtualSource("src.h5", "conv", shape=SHAPE)[:1]
    layout[1:] = h5py.VirtualSource("alias.h5", "conv", shape=SHAPE)[1:]
    with h5py.File(tmp_path / "main.act.h5", "w") as root:
        root.create_virtual_dataset("conv", layout, fillvalue=0)
    acts = open_act(tmp_path / "main.act.h5", allow_external=True, cache=False)
    assert acts["conv"].values.tobytes() == data.tobytes()
    (tmp_path / "alias.h5").unlink()
    (tmp_path / "alias.h5").symlink_to("evil.h5")
    with pytest.raises(ActFileError, match=r"alias\.h5', which its layers read from, changed"):
        acts["conv"].values  # noqa: B018
    acts.close()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_files_behind_a_layer_opened_by_a_relative_path_are_found_after_a_change_of_folder(
        tmp_path, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    path = _pointing(tmp_path, "virtual", data := values(1), suffix)
    (tmp_path / "elsewhere").mkdir()
    acts = open_act(path.name, allow_external=True, cache=False)
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert acts["conv"].values.tobytes() == data.tobytes()
    acts.close()
    assert acts["conv"].values.tobytes() == data.tobytes()


def test_an_nc_group_linked_from_another_file_is_refused_in_one_line(tmp_path):
    make(tmp_path / "other.nc", values(1))
    make(tmp_path / "main.nc", values(1))
    with h5py.File(tmp_path / "main.nc", "a") as root:
        del root["conv"]
        root["conv"] = h5py.ExternalLink("other.nc", "/conv")
    with pytest.raises(ActFileError, match=r"^'[^']*main\.nc': object 'conv' is an external link "
                                           r"to a group; only datasets are followed into other "
                                           r"files$"):
        open_act(tmp_path / "main.nc", allow_external=True)
