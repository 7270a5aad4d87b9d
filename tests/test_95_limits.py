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
import re
import resource
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import digest
from reliability import ROUTES, SUFFIXES, assert_one_line_error, command

from dnnmask_xr import open_act, read_stim, save_act
from dnnmask_xr.cli import main
from dnnmask_xr.testing import write_reference_act

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
def small_tmpfs(folder: Path) -> Iterator[Path]:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", folder],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=True)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))


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
            limit = _limit_file_size
        out = folder / f"out{suffix}"
        done = subprocess.run(command("-act", incompressible, "-layer", "conv", "-out", out,
                                      route=route),
                              capture_output=True, text=True, timeout=120, check=False,
                              preexec_fn=limit)
        # nothing at -out, no temporary file, the input untouched ...
        assert sorted(p.name for p in folder.iterdir()) == []
        assert digest(incompressible) == before
        # ... and said in one line, with the status of a failed write
        assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
        assert_one_line_error(done.stderr, rf"cannot write .*out{re.escape(suffix)}",
                              r"No space left on device|File too large")
