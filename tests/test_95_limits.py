"""Large tables, large masks, and a disk that fills up.

- 100 000 stimuli with IDs and fields, through ``-stim`` and through
  ``save_act``/``open_act``: every ID and field value comes back.
- A mask of 10 000 channels, shuffled, and a mask naming every unit of
  every layer: the values are exactly numpy's.
- A disk that fills during the write: ``dnn_mask`` exits with status 1 and
  one error line, and leaves no file at ``-out`` and no temporary file. Two
  ways to fill it: a 1 MiB tmpfs mounted for the test (needs the right to
  mount, as root in this sandbox), and a file size limit
  (``RLIMIT_FSIZE``, with ``SIGXFSZ`` ignored so that writes fail with
  ``EFBIG`` instead of killing the process), which needs no privilege.
  For both suffixes, and through every route (``tests/routes.py``).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import digest
from reliability import ROUTES, SUFFIXES, run_cli, run_here
from zygote import file_size_limit

from dnnmask_xr import open_act, read_stim, save_act
from dnnmask_xr.cli import main
from dnnmask_xr.errors import ActFileError
from dnnmask_xr.testing import write_reference_act

pytestmark = pytest.mark.reliability

N_BIG = 100_000


@pytest.fixture(scope="module")
def many_stimuli(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("many")
    values = np.random.default_rng(95).standard_normal((N_BIG, 3, 1, 1)).astype(np.float32)
    act = folder / "many.act.h5"
    write_reference_act(act, {"fc3": values})
    rows = "".join(f"img{i:06d}.png,{i % 10},{'cat' if i % 3 else 'dog'},{i * 0.25!r}\n"
                   for i in range(N_BIG))
    stim = folder / "many.stim.csv"
    stim.write_text(f"type=image\npath=/data/images\ndata=stimID,label,condition,onset\n{rows}")
    return act, stim, values


def _check_stimuli(acts, values: np.ndarray, channels: list[int]) -> None:
    layer = acts["fc3"]
    i = np.arange(N_BIG)
    np.testing.assert_array_equal(layer.stimulus.values, [f"img{k:06d}.png" for k in i])
    np.testing.assert_array_equal(layer.label.values, i % 10)
    np.testing.assert_array_equal(layer.condition.values, np.where(i % 3, "cat", "dog"))
    np.testing.assert_array_equal(layer.onset.values, i * 0.25)
    np.testing.assert_array_equal(layer.values, values[:, [c - 1 for c in channels]])


def test_100000_stimuli_through_the_command(many_stimuli, tmp_path: Path, capsys):
    act, stim, values = many_stimuli
    out = tmp_path / "out.act.h5"
    assert main(["-act", str(act), "-stim", str(stim), "-layer", "fc3", "-chn", "3", "1",
                 "-out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    with open_act(out) as acts:
        _check_stimuli(acts, values, [3, 1])


def test_100000_stimuli_through_save_and_open(many_stimuli, tmp_path: Path):
    act, stim, values = many_stimuli
    out = tmp_path / "saved.act.h5"
    with open_act(act, stim=read_stim(stim)) as acts:
        save_act(acts, out)
    with open_act(out) as acts:
        _check_stimuli(acts, values, [1, 2, 3])


def test_mask_of_10000_channels(tmp_path: Path, capsys):
    values = np.random.default_rng(10).standard_normal((3, 10_000, 2, 2)).astype(np.float32)
    act = tmp_path / "in.act.h5"
    write_reference_act(act, {"fc1": values})
    channels = np.random.default_rng(11).permutation(10_000) + 1
    dmask = tmp_path / "wide.dmask.csv"
    dmask.write_text("fc1=chn\n" + ",".join(map(str, channels)) + "\n")
    out = tmp_path / "out.act.h5"
    assert main(["-act", str(act), "-dmask", str(dmask), "-out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    with h5py.File(out, "r") as root:
        np.testing.assert_array_equal(root["fc1"][()], values[:, channels - 1])
    with open_act(out) as acts:
        np.testing.assert_array_equal(acts["fc1"].channel.values, channels)


def test_mask_of_every_unit_of_every_layer(tmp_path: Path, capsys):
    rng = np.random.default_rng(12)
    layers = {"conv1": rng.standard_normal((4, 6, 5, 7)).astype(np.float32),
              "conv5": rng.standard_normal((4, 9, 3, 2)).astype(np.float64),
              "fc3": rng.integers(-9, 9, (4, 11, 1, 1)).astype(np.int16)}
    act = tmp_path / "in.act.h5"
    write_reference_act(act, layers)
    dmask = tmp_path / "all.dmask.csv"
    dmask.write_text("".join(
        f"{name}=chn,row,col\n" + "\n".join(",".join(map(str, range(1, n + 1)))
                                              for n in array.shape[1:]) + "\n"
        for name, array in layers.items()))
    out = tmp_path / "out.act.h5"
    assert main(["-act", str(act), "-dmask", str(dmask), "-out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    with h5py.File(out, "r") as root:
        assert list(root) == list(layers)
        for name, array in layers.items():
            assert root[name].dtype == array.dtype
            np.testing.assert_array_equal(root[name][()], array)
    with open_act(out) as acts:
        for name, array in layers.items():
            for dim, size in zip(("channel", "row", "column"), array.shape[1:], strict=True):
                np.testing.assert_array_equal(acts[name][dim].values, np.arange(1, size + 1))


# -- a disk that fills up -------------------------------------------------------------


@pytest.fixture
def incompressible(tmp_path: Path) -> Path:
    """About 2.7 MB of random floats: gzip cannot make them fit in 1 MiB."""
    act = tmp_path / "in.act.h5"
    values = np.random.default_rng(13).standard_normal((40, 64, 13, 13)).astype(np.float32)
    write_reference_act(act, {"conv": values})
    return act


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: int = 2**20) -> Iterator[Path]:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=True)


HOWS = ["tmpfs-of-1MiB", "file-size-limit-1MiB"]
#: (how, route, suffix): the command fills the disk both ways; the Python routes under the
#: file-size limit, which needs no privilege (a full tmpfs fails the same writes of the one
#: writer, with ENOSPC instead of EFBIG).
FULL = [(how, route, suffix) for route in ROUTES for how in HOWS for suffix in SUFFIXES
        if route == "command" or how.startswith("file-size")]


@pytest.mark.parametrize(("how", "route", "suffix"), FULL,
                         ids=[f"{route}-{suffix}-{how}" for how, route, suffix in FULL])
def test_disk_full_during_the_write_is_one_clean_error(
    how: str, route: str, suffix: str, incompressible: Path, tmp_path: Path
):
    before = digest(incompressible)
    with contextlib.ExitStack() as stack:
        if how.startswith("tmpfs"):
            folder = stack.enter_context(small_tmpfs(tmp_path / "small"))
            limit = None
        else:
            folder = tmp_path / "limited"
            folder.mkdir()
            limit = 2**20
        out = folder / f"out{suffix}"
        done = run_cli("-act", incompressible, "-layer", "conv", "-out", out, route=route,
                       timeout=120, file_size=limit)
        # nothing at -out, no temporary file, the input untouched ...
        assert sorted(p.name for p in folder.iterdir()) == []
        assert digest(incompressible) == before
        # ... and said in one line, with the status of a failed write
        assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
        assert_clean_full_disk(done.stderr, out, "tmpfs" if limit is None else "limit")


#: The clean reasons, whatever HDF5 said.
REASONS = {"tmpfs": "No space left on device",
           "limit": "File too large for the file-size limit of this process (ulimit -f)"}


def assert_clean_full_disk(stderr: str, out: Path, how: str) -> None:
    """Stderr is exactly ``dnn_mask: error: cannot write '<out>': <reason>``, nothing raw."""
    for raw in ("0x", "time =", "errno =", "Traceback", "Exception ignored"):
        assert raw not in stderr, stderr[-3000:]
    assert stderr == f"dnn_mask: error: cannot write {str(out)!r}: {REASONS[how]}\n", stderr


#: Bytes left free on the 1 MiB tmpfs when the write starts: none (the file cannot be
#: created), one page (HDF5's first metadata, h5netcdf's dimensions), some chunks, most.
FREE = [0, 4096, 64 * 2**10, 600 * 2**10]
FLAGS = {"whole": ["-layer", "conv"],
         "masked": ["-layer", "conv", "-chn", *map(str, range(64, 0, -3))]}
#: The command at every moment, the Python routes (the same writer) at the two extremes.
MOMENTS = [(route, suffix, free, flags) for route in ROUTES for suffix in SUFFIXES
           for free in FREE for flags in FLAGS
           if (flags == "whole" or free == 64 * 2**10)
           and (route == "command" or (flags == "whole" and free in (4096, 600 * 2**10)))]


@pytest.mark.parametrize(("route", "suffix", "free", "flags"), MOMENTS,
                         ids=[f"{r}-{x}-{f}-bytes-free-{g}" for r, x, f, g in MOMENTS])
def test_a_disk_full_at_any_moment_is_one_clean_line(
    route: str, suffix: str, free: int, flags: str, incompressible: Path, tmp_path: Path
):
    # bug: with one page free, h5netcdf's dimension printed HDF5's raw text ("Exception
    # ignored in ... __dealloc__", buffer addresses and all) and HDF5 then crashed, leaving
    # the temporary file
    before = digest(incompressible)
    with small_tmpfs(tmp_path / "small") as folder:
        filler = folder / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as stream:
            stream.write(bytes(2**20 - free))
        out = folder / f"out{suffix}"
        done = run_cli("-act", incompressible, *FLAGS[flags], "-out", out, route=route,
                       timeout=120)
        assert sorted(p.name for p in folder.iterdir()) == ["filler"]
        assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
        assert_clean_full_disk(done.stderr, out, "tmpfs")
    assert digest(incompressible) == before


#: HDF5's text for a failed write, as h5py puts it in its exceptions.
RAW = ("Can't decrement id ref count (file write failed: time = Tue Dec  1 11:48:19 2026\n, "
       "filename = '/data/.dnnmask-x.tmp', file descriptor = 5, errno = {errno}, error message "
       "= '{message}', buf = 0x55d2c0de1f00, total write size = 320, bytes this sub-write = "
       "320, offset = 6144)")
RAWS = {"tmpfs": RAW.format(errno=28, message="No space left on device"),
        "limit": RAW.format(errno=27, message="File too large")}


class _Ignored:
    """Raises from ``__del__``, as h5py's ObjectID does when closing an object fails."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __del__(self) -> None:
        raise self.error


def _inject(monkeypatch: pytest.MonkeyPatch, where: str, raw: str) -> None:
    import dnnmask_xr.act.growing
    import dnnmask_xr.act.nc
    import dnnmask_xr.act.write

    # where a layer's values are written: a whole layer, or a streamed write's part of
    # a growing output
    layer_writes = [(dnnmask_xr.act.write, "_write_layer"),
                    (dnnmask_xr.act.growing, "store_values")]
    if where == "in-a-layer-as-ActFileError":
        def layer(*args, **kwargs):
            raise ActFileError(f"cannot copy layer 'conv' of 'in.act.h5' to the output ({raw})")
        for module, name in layer_writes:
            monkeypatch.setattr(module, name, layer)
    elif where == "ignored-while-freeing":
        def freeing(real_layer):
            def layer(*args, **kwargs):
                report = real_layer(*args, **kwargs)
                _Ignored(RuntimeError(raw))  # freed at once: only "Exception ignored" sees it
                return report
            return layer

        for module, name in layer_writes:
            monkeypatch.setattr(module, name, freeing(getattr(module, name)))
    elif where == "at-the-layout's-close":
        for layout in (dnnmask_xr.act.write.ActLayout, dnnmask_xr.act.nc.NcLayout):
            real_close = layout.close

            def close(self, real_close=real_close):
                real_close(self)
                raise ValueError(raw)
            monkeypatch.setattr(layout, "close", close)
    else:  # at h5py.File.__exit__
        real_close = h5py.File.close

        def file_close(self):
            writing = self.mode == "r+"
            real_close(self)
            if writing:
                raise RuntimeError(raw)
        monkeypatch.setattr(h5py.File, "close", file_close)


WHERE = ["in-a-layer-as-ActFileError", "ignored-while-freeing", "at-the-layout's-close",
         "at-File.__exit__"]
INJECTED = [(route, suffix, where, how) for route in ROUTES for suffix in SUFFIXES
            for where in WHERE for how in REASONS]


@pytest.mark.parametrize(("route", "suffix", "where", "how"), INJECTED,
                         ids=[f"{r}-{x}-{w}-{h}" for r, x, w, h in INJECTED])
def test_hdf5s_raw_text_never_reaches_stderr(
    route: str, suffix: str, where: str, how: str, act_file: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    # bug: an ActFileError raised deeper with HDF5's text in it, a ValueError from the
    # layout's close and an error h5py could only print as "ignored" reached stderr raw (or
    # as a traceback, or not at all: the write "succeeded")
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / f"out{suffix}"
    _inject(monkeypatch, where, RAWS[how])
    done = run_here("-act", act_file, "-layer", "conv5", "-out", out, route=route)
    assert sorted(p.name for p in folder.iterdir()) == []
    assert done.returncode == 1, done.stderr
    assert_clean_full_disk(done.stderr, out, how)


# -- a disk that fills while large text is written ------------------------------------

#: Stimuli with text IDs, and strings in one attribute: HDF5 stores both as variable-length
#: strings in its heaps, where a write that fails on a full disk crashed the process.
N_TEXT_STIMULI = 20_000
N_NAMES = 40_000
TEXT_DISK = 6 * 2**20
#: Bytes free on the 6 MiB tmpfs: from too little for the text to enough for all.
TEXT_FREE = [512 * 2**10, 1536 * 2**10, 2560 * 2**10, 3584 * 2**10, 5 * 2**20]


@pytest.fixture(scope="module")
def text_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    folder = tmp_path_factory.mktemp("text")
    act = folder / "in.act.h5"
    values = np.arange(N_TEXT_STIMULI * 3, dtype=np.float32).reshape(N_TEXT_STIMULI, 3, 1, 1)
    write_reference_act(act, {"fc": values})
    ids = [f"stimuli/session{i % 7}/image_{i:06d}_ünïcode.png" for i in range(N_TEXT_STIMULI)]
    stim = folder / "in.stim.csv"
    stim.write_text("type=image\npath=/data\ndata=stimID,label\n"
                    + "".join(f"{name},{i % 10}\n" for i, name in enumerate(ids)),
                    encoding="utf-8")
    return act, stim, ids


#: save_act(..., attrs={"names": [40 000 strings]}) in its own process, its errors said as
#: the command says them.
NAMES_SCRIPT = f"""
import sys
import numpy as np
import xarray as xr
import dnnmask_xr as dx
from dnnmask_xr.cli import _fail

layer = xr.DataArray(np.ones((2, 3, 1, 1), np.float32),
                     dims=("stimulus", "channel", "row", "column"))
names = [f"unit name {{i:06d}}" for i in range({N_NAMES})]
try:
    dx.save_act({{"fc": layer}}, sys.argv[1], attrs={{"names": names}})
except dx.DnnMaskError as err:
    sys.exit(_fail(err, 1))
"""

TEXT_CASES = [(what, suffix, free) for what in ("table-command", "table-save_act", "names")
              for suffix in SUFFIXES for free in TEXT_FREE]


@pytest.mark.parametrize(("what", "suffix", "free"), TEXT_CASES,
                         ids=[f"{w}-{x}-{f // 2**10}KiB-free" for w, x, f in TEXT_CASES])
def test_a_disk_full_while_text_is_written_is_one_clean_line(
    what: str, suffix: str, free: int, text_table: tuple[Path, Path, list[str]],
    tmp_path: Path,
):
    # bug: with 1-4 MiB free, HDF5 died of SIGSEGV inside attrs.create (.act.h5) and
    # create_dataset (.nc's stimulus variables), printing nothing and leaving the
    # temporary file
    act, stim, ids = text_table
    with small_tmpfs(tmp_path / "small", TEXT_DISK) as folder:
        with contextlib.suppress(OSError), (folder / "filler").open("wb") as stream:
            stream.write(bytes(TEXT_DISK - free))
        out = folder / f"out{suffix}"
        # a child process: a crash is seen as one, not as the test runner's
        if what == "names":
            done = subprocess.run([sys.executable, "-c", NAMES_SCRIPT, str(out)],
                                  capture_output=True, text=True, timeout=120, check=False)
        else:
            done = run_cli("-act", act, "-stim", stim, "-layer", "fc", "-chn", "3", "1",
                           "-out", out, timeout=120, route=what.removeprefix("table-").replace(
                               "save_act", "save_act-activations"))
        assert done.returncode in (0, 1), (done.returncode, done.stderr[-3000:])
        if done.returncode == 1:
            assert sorted(p.name for p in folder.iterdir()) == ["filler"]
            assert_clean_full_disk(done.stderr, out, "tmpfs")
            return
        assert done.stderr == ""
        assert sorted(p.name for p in folder.iterdir()) == ["filler", out.name]
        if what == "names":
            with h5py.File(out, "r") as root:
                assert list(root.attrs["names"]) == [
                    f"unit name {i:06d}" for i in range(N_NAMES)]
        else:
            with open_act(out) as acts:
                assert acts["fc"].stimulus.values.tolist() == ids


#: write_dmask and write_stim of some 100 KB of text in their own process, their errors
#: said as the command says them.
TEXT_FILE_SCRIPT = """
import sys
import pandas as pd
import dnnmask_xr as dx
from dnnmask_xr.cli import _fail

names = [f"layer{i:04d}" for i in range(2000)]
try:
    if sys.argv[2] == "dmask":
        dx.write_dmask(dx.DnnMask({name: {"chn": [1, 2, 3]} for name in names}), sys.argv[1])
    else:
        dx.write_stim(dx.Stimuli({"type": "image", "path": "images"},
                                 pd.DataFrame({"stimID": names})), sys.argv[1])
except dx.DnnMaskError as err:
    sys.exit(_fail(err, 1))
"""

TEXT_FILE_CASES = [(kind, how) for kind in ("dmask", "stim")
                   for how in ("tmpfs", "file-size-limit")]


@pytest.mark.parametrize(("kind", "how"), TEXT_FILE_CASES,
                         ids=[f"{kind}-{how}" for kind, how in TEXT_FILE_CASES])
def test_a_disk_full_while_a_text_file_is_written_is_one_clean_line(
    kind: str, how: str, tmp_path: Path
):
    # bug: write_dmask and write_stim raised Python's bare OSError ("[Errno 28] No space
    # left on device", "[Errno 27] File too large"), naming no file
    with contextlib.ExitStack() as stack:
        if how.startswith("tmpfs"):
            folder = stack.enter_context(small_tmpfs(tmp_path / "small", 16 * 2**10))
            limit = None
        else:
            folder = tmp_path / "limited"
            folder.mkdir()
            limit = file_size_limit(16 * 2**10)
        out = folder / f"out.{kind}.csv"
        # pandas 2.2 (the lowest versions) warns on import that it will need pyarrow
        done = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c",
                               TEXT_FILE_SCRIPT, str(out), kind],
                              capture_output=True, text=True, timeout=120, check=False,
                              preexec_fn=limit)
        assert sorted(p.name for p in folder.iterdir()) == []
        assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
        assert_clean_full_disk(done.stderr, out, "tmpfs" if limit is None else "limit")


# -- many layers ----------------------------------------------------------------------


def _longest_reference_list(path: Path) -> int:
    """The most variables any dimension scale of ``path`` lists as attached to it."""
    longest = 0

    def visit(name: str, item: object) -> None:
        nonlocal longest
        if isinstance(item, h5py.Dataset) and "REFERENCE_LIST" in item.attrs:
            longest = max(longest, len(item.attrs["REFERENCE_LIST"]))

    with h5py.File(path, "r") as root:
        root.visititems(visit)
    return longest


def test_nc_work_per_layer_does_not_grow_with_the_number_of_layers(tmp_path: Path):
    # bug: every layer's variables were attached to the root's stimulus dimension, whose
    # REFERENCE_LIST HDF5 reads, checks and writes whole on each attach: writing n layers
    # took time and space in n**2 (10 000 layers did not finish in 600 s)
    import xarray as xr

    longest = {}
    for count in (5, 40):
        layers = {f"layer{i}": xr.DataArray(np.full((3, 2, 1, 1), i, np.float32),
                                            dims=("stimulus", "channel", "row", "column"),
                                            coords={"stimulus": ["a", "b", "c"]})
                  for i in range(count)}
        out = tmp_path / f"{count}.nc"
        save_act(layers, out)
        longest[count] = _longest_reference_list(out)
        with open_act(out) as acts:
            assert list(acts) == list(layers)
            for name, layer in layers.items():
                np.testing.assert_array_equal(acts[name].values, layer.values)
                assert acts[name].stimulus.values.tolist() == ["a", "b", "c"]
    assert longest[40] == longest[5] <= 2, longest
