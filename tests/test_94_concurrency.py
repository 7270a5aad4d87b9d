"""Several processes at once: writers racing, readers alongside, locked inputs.

- Two ``dnn_mask`` runs writing the same ``-out`` at the same time end with
  one whole file equal to one of the two results (values, channel numbers
  and the ``cmd`` that made it agree), never a mix, and no temporary file.
- Readers of an input keep reading the right values while ``dnn_mask``
  masks it.
- HDF5 file locking does not make an input unreadable: not while another
  process holds it open (read-only, or for writing, which takes an
  exclusive lock), not with ``HDF5_USE_FILE_LOCKING=FALSE``, and not in a
  folder that is really read-only (a read-only bind mount when the tests
  may mount, as root in this sandbox; ``chmod`` when they run as another
  user, for whom it is enforced).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import digest
from reliability import (
    TIMEOUT,
    BigInput,
    assert_ok,
    assert_same_layer,
    run_cli,
    start_cli,
    temp_files,
    wait_for_temp,
)

from dnnmask_xr import open_act


def test_two_writers_of_one_out_leave_one_whole_result(big: BigInput, tmp_path: Path):
    even = tmp_path / "even.dmask.csv"
    even_channels = big.channels + 1
    even.write_text(f"{big.layer}=chn\n" + ",".join(map(str, even_channels)) + "\n")
    with h5py.File(big.act, "r") as root:
        even_values = root[big.layer][:, 1::2]
    out = tmp_path / "out.act.h5"
    before = digest(big.act)

    # The first run is paused once its write has begun and resumed once the
    # second's has too, so both writes are under way at once whatever their
    # speeds: the race really runs.
    first = start_cli("-act", big.act, "-dmask", big.dmask, "-out", out)
    wait_for_temp(first, out, 1)
    first.send_signal(signal.SIGSTOP)
    try:
        second = start_cli("-act", big.act, "-dmask", even, "-out", out)
        deadline = time.monotonic() + TIMEOUT
        while len(temp_files(tmp_path, out)) < 2 and second.poll() is None:
            assert time.monotonic() < deadline, "the second run never began writing"
            time.sleep(0.002)
        assert second.poll() is None, second.communicate()
    finally:
        first.send_signal(signal.SIGCONT)
    for proc in (first, second):
        _, stderr = proc.communicate(timeout=TIMEOUT)
        assert (proc.returncode, stderr) == (0, "")

    assert {p.name for p in tmp_path.iterdir()} == {out.name, even.name}
    with h5py.File(out, "r") as root:
        assert list(root) == [big.layer]
        cmd = root.attrs["cmd"]
    winner = "even" if even.name in cmd else "odd"
    if winner == "even":
        assert_same_layer(out, big.layer, even_values, even_channels)
    else:
        assert big.dmask.name in cmd
        assert_same_layer(out, big.layer, big.expected, big.channels)
    assert digest(big.act) == before


def test_readers_keep_reading_while_the_input_is_masked(big: BigInput, tmp_path: Path):
    out = tmp_path / "out.act.h5"
    proc = start_cli("-act", big.act, "-dmask", big.dmask, "-out", out)
    reads_during_write = 0
    with h5py.File(big.act, "r") as direct:
        for step in range(10**6):
            writing = bool(temp_files(tmp_path, out))
            # positions 2k and 2k + 2 are the mask's k-th and (k + 1)-th channels
            k = step % 5
            with open_act(big.act) as acts:
                lazy = acts[big.layer].isel(channel=[2 * k, 2 * k + 2]).values
            np.testing.assert_array_equal(lazy, big.expected[:, [k, k + 1]])
            np.testing.assert_array_equal(direct[big.layer][:, [2 * k, 2 * k + 2]], lazy)
            reads_during_write += writing
            if proc.poll() is not None:
                break
    _, stderr = proc.communicate()
    assert (proc.returncode, stderr) == (0, "")
    assert reads_during_write > 0, "no read happened while the output was being written"
    assert_same_layer(out, big.layer, big.expected, big.channels)


@contextlib.contextmanager
def held_open(path: Path, mode: str) -> Iterator[None]:
    """Keep ``path`` open with h5py in another process, as a notebook would."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, h5py\n"
         f"f = h5py.File(sys.argv[1], {mode!r})\n"
         "print('open', flush=True)\n"
         "sys.stdin.read()\n"
         "f.close()\n",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline() == "open\n"
        yield
    finally:
        holder.communicate(timeout=60)
    assert holder.returncode == 0


@pytest.mark.parametrize(
    ("mode", "locking_env"), [("r", None), ("a", None), ("a", "FALSE")],
    ids=["held-read-only", "held-for-writing", "held-for-writing-locking-off"],
)
def test_input_held_open_by_another_process_stays_readable(
    act_file: Path, layers: dict[str, np.ndarray], tmp_path: Path, mode: str,
    locking_env: str | None,
):
    env = dict(os.environ)
    env.pop("HDF5_USE_FILE_LOCKING", None)
    if locking_env:
        env["HDF5_USE_FILE_LOCKING"] = locking_env
    with held_open(act_file, mode):
        # h5py opening for writing may itself touch the file: compare from here
        before = digest(act_file)
        channels = tmp_path / "channels.act.h5"
        assert_ok(run_cli("-act", act_file, "-layer", "conv5", "-chn", 3, 1, "-out", channels,
                          env=env))
        assert_same_layer(channels, "conv5", layers["conv5"][:, [2, 0]], [3, 1])
        whole = tmp_path / "whole.act.h5"
        assert_ok(run_cli("-act", act_file, "-layer", "fc3", "conv5", "-out", whole, env=env))
        assert_same_layer(whole, "fc3", layers["fc3"], range(1, 13))
        assert_same_layer(whole, "conv5", layers["conv5"], range(1, 21))
        with open_act(act_file) as acts:
            np.testing.assert_array_equal(acts["conv5"].values, layers["conv5"])
        assert digest(act_file) == before


def test_open_act_shares_the_file_with_h5py_in_one_process(act_file: Path, layers):
    with h5py.File(act_file, "r") as root, open_act(act_file) as acts:
        np.testing.assert_array_equal(acts["fc3"].values, root["fc3"][()])
    with open_act(act_file) as acts, h5py.File(act_file, "r") as root:
        np.testing.assert_array_equal(acts["conv5"].values, root["conv5"][()])
        np.testing.assert_array_equal(acts["conv5"].values, layers["conv5"])


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[Path]:
    """Yield a view of ``folder`` that nobody can write, root included."""
    if os.geteuid() != 0:
        for path in folder.iterdir():
            path.chmod(0o444)
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    view = folder.parent / f"{folder.name}-read-only"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", folder, view], capture_output=True).returncode
    if mounted != 0:
        view.rmdir()
        pytest.skip("running as root without permission to mount: no folder is read-only")
    try:
        done = subprocess.run(["mount", "-o", "remount,bind,ro", view], capture_output=True)
        assert done.returncode == 0, done.stderr
        yield view
    finally:
        subprocess.run(["umount", view], check=True)
        view.rmdir()


def test_read_only_input_in_read_only_folder(act_file: Path, layers, tmp_path: Path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    act = inputs / "in.act.h5"
    act.write_bytes(act_file.read_bytes())
    out = tmp_path / "out.act.h5"
    with read_only_folder(inputs) as folder:
        frozen = folder / act.name
        with pytest.raises(OSError):
            (folder / "probe").write_bytes(b"")
        with pytest.raises(OSError):
            with open(frozen, "r+b"):
                pass
        with held_open(frozen, "r"):
            assert_ok(run_cli("-act", frozen, "-layer", "conv5", "-chn", 2, 20, "-out", out))
            with open_act(frozen) as acts:
                np.testing.assert_array_equal(acts["fc3"].values, layers["fc3"])
    assert_same_layer(out, "conv5", layers["conv5"][:, [1, 19]], [2, 20])
    assert digest(act) == digest(act_file)


def test_a_reader_of_the_old_output_keeps_its_values_while_it_is_replaced(
    act_file: Path, layers: dict[str, np.ndarray], tmp_path: Path
):
    out = tmp_path / "out.act.h5"
    assert_ok(run_cli("-act", act_file, "-layer", "conv5", "-chn", 1, 2, "-out", out))
    with open_act(out) as old, h5py.File(out, "r") as direct:
        # the new output replaces the old by a rename; open readers keep the old file
        assert_ok(run_cli("-act", act_file, "-layer", "conv5", "-chn", 5, 6, 7, "-out", out))
        np.testing.assert_array_equal(old["conv5"].values, layers["conv5"][:, [0, 1]])
        np.testing.assert_array_equal(direct["conv5"][()], layers["conv5"][:, [0, 1]])
    assert_same_layer(out, "conv5", layers["conv5"][:, [4, 5, 6]], [5, 6, 7])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
