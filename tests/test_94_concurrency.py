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

Through every route (``tests/routes.py``): the race and the replaced output
for both suffixes; the tests of reading an input for each route (how the
input is opened differs, the output's suffix plays no part there).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import digest
from reliability import (
    ROUTE_SUFFIXES,
    ROUTES,
    TIMEOUT,
    BigInput,
    assert_ok,
    assert_one_line_error,
    assert_same_layer,
    holds_temp,
    layer_dataset,
    layer_names,
    run_here,
    run_route,
    start_cli,
    temp_files,
    wait_for_writer,
)

from dnnmask_xr import open_act, save_act

pytestmark = pytest.mark.reliability

#: Every route writing each suffix: (route, suffix), ids like save_act-dict-.nc.
WRITES = ROUTE_SUFFIXES
every_write = pytest.mark.parametrize(("route", "suffix"), WRITES,
                                      ids=[f"{route}-{suffix}" for route, suffix in WRITES])


@every_write
def test_two_writers_of_one_out_leave_one_whole_result(big: BigInput, tmp_path: Path,
                                                       route: str, suffix: str):
    even = tmp_path / "even.dmask.csv"
    even_channels = big.channels + 1
    even.write_text(f"{big.layer}=chn\n" + ",".join(map(str, even_channels)) + "\n")
    with h5py.File(big.act, "r") as root:
        even_values = root[big.layer][:, 1::2]
    out = tmp_path / f"out{suffix}"
    before = digest(big.act)

    # Both runs start at once; the first to begin writing is paused, and resumed
    # once the other has begun too, so both writes are under way at once whatever
    # their speeds: the race really runs. Both write through the route under test.
    runs = [start_cli("-act", big.act, "-dmask", mask, "-out", out, route=route)
            for mask in (big.dmask, even)]
    first = wait_for_writer(runs, out)
    first.send_signal(signal.SIGSTOP)
    try:
        second = runs[1] if first is runs[0] else runs[0]
        deadline = time.monotonic() + TIMEOUT
        while not holds_temp(second, out) and second.poll() is None:
            assert time.monotonic() < deadline, "the second run never began writing"
            time.sleep(0.002)
        assert second.poll() is None, second.communicate()
        assert holds_temp(first, out), "the first run is not writing"
    finally:
        first.send_signal(signal.SIGCONT)
    for proc in runs:
        _, stderr = proc.communicate(timeout=TIMEOUT)
        assert (proc.returncode, stderr) == (0, "")

    assert {p.name for p in tmp_path.iterdir()} == {out.name, even.name}
    with h5py.File(out, "r") as root:
        assert layer_names(root) == [big.layer]
        cmd = root.attrs["cmd"]
    winner = "even" if even.name in cmd else "odd"
    if winner == "even":
        assert_same_layer(out, big.layer, even_values, even_channels)
    else:
        assert big.dmask.name in cmd
        assert_same_layer(out, big.layer, big.expected, big.channels)
    assert digest(big.act) == before


# the readers read the input: the output's suffix plays no part, the route's reading does
@pytest.mark.parametrize("route", ROUTES)
def test_readers_keep_reading_while_the_input_is_masked(big: BigInput, tmp_path: Path,
                                                        route: str):
    out = tmp_path / "out.act.h5"
    proc = start_cli("-act", big.act, "-dmask", big.dmask, "-out", out, route=route)
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


# Each route runs as its users run it (run_route): dnn_mask in its own process, the Python
# API in this one, as in a notebook; the locks in question are the other process's. The
# input side only: the output's suffix plays no part.
@pytest.mark.parametrize(
    ("mode", "locking_env"), [("r", None), ("a", None), ("a", "FALSE")],
    ids=["held-read-only", "held-for-writing", "held-for-writing-locking-off"],
)
@pytest.mark.parametrize("route", ROUTES)
def test_input_held_open_by_another_process_stays_readable(
    act_file: Path, layers: dict[str, np.ndarray], tmp_path: Path, mode: str,
    locking_env: str | None, route: str,
):
    env = dict(os.environ)
    env.pop("HDF5_USE_FILE_LOCKING", None)
    if locking_env:
        env["HDF5_USE_FILE_LOCKING"] = locking_env
    with held_open(act_file, mode):
        # h5py opening for writing may itself touch the file: compare from here
        before = digest(act_file)
        channels = tmp_path / "channels.act.h5"
        assert_ok(run_route("-act", act_file, "-layer", "conv5", "-chn", 3, 1,
                            "-out", channels, env=env, route=route))
        assert_same_layer(channels, "conv5", layers["conv5"][:, [2, 0]], [3, 1])
        whole = tmp_path / "whole.act.h5"
        assert_ok(run_route("-act", act_file, "-layer", "fc3", "conv5", "-out", whole, env=env,
                            route=route))
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


@pytest.mark.parametrize("route", ROUTES)
def test_read_only_input_in_read_only_folder(act_file: Path, layers, tmp_path: Path,
                                             route: str):
    # as test_input_held_open_by_another_process_stays_readable: input side, run_route
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
            assert_ok(run_route("-act", frozen, "-layer", "conv5", "-chn", 2, 20, "-out", out,
                                route=route))
            with open_act(frozen) as acts:
                np.testing.assert_array_equal(acts["fc3"].values, layers["fc3"])
    assert_same_layer(out, "conv5", layers["conv5"][:, [1, 19]], [2, 20])
    assert digest(act) == digest(act_file)


@contextlib.contextmanager
def reading_in_another_process(path: Path, layer: str) -> Iterator[list[str]]:
    """Open ``path`` with h5py in another process; on leaving, it reads ``layer``.

    Yields a list that then holds the SHA-256 of the values it read, so that
    a write in this process can replace the file under a reader elsewhere.
    """
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import hashlib, sys, h5py\n"
         "f = h5py.File(sys.argv[1], 'r')\n"
         "d = f[sys.argv[2]]\n"
         "print('open', flush=True)\n"
         "sys.stdin.read()\n"
         "print(hashlib.sha256(d[()].tobytes()).hexdigest(), flush=True)\n",
         str(path), f"{layer}/{layer}" if path.name.endswith(".nc") else layer],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    read: list[str] = []
    try:
        assert reader.stdout.readline() == "open\n"
        yield read
    finally:
        stdout, _ = reader.communicate(timeout=60)
    assert reader.returncode == 0
    read.append(stdout.strip())


@every_write
def test_a_reader_of_the_old_output_keeps_its_values_while_it_is_replaced(
    act_file: Path, layers: dict[str, np.ndarray], tmp_path: Path, route: str, suffix: str
):
    out = tmp_path / f"out{suffix}"
    assert_ok(run_here("-act", act_file, "-layer", "conv5", "-chn", 1, 2, "-out", out,
                       route=route))
    old_values = layers["conv5"][:, [0, 1]]
    with open_act(out) as old, h5py.File(out, "r") as direct:
        # in the process that reads it, no route replaces the old output: by design
        refused = run_here("-act", act_file, "-layer", "conv5", "-chn", 5, "-out", out,
                           route=route)
        assert refused.returncode == 2
        assert_one_line_error(refused.stderr, r"this process holds it open")
        np.testing.assert_array_equal(old["conv5"].values, old_values)
        np.testing.assert_array_equal(layer_dataset(direct, "conv5")[()], old_values)
    # a write replaces it by a rename (run_route: dnn_mask in its own process, the Python
    # API in this one); a reader elsewhere that has it open keeps the old file
    with reading_in_another_process(out, "conv5") as read:
        assert_ok(run_route("-act", act_file, "-layer", "conv5", "-chn", 5, 6, 7, "-out", out,
                            route=route))
    assert read == [hashlib.sha256(old_values.tobytes()).hexdigest()]
    assert_same_layer(out, "conv5", layers["conv5"][:, [4, 5, 6]], [5, 6, 7])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_writes_in_threads_ending_out_of_order_give_the_program_its_hook_back(
        tmp_path: Path):
    """Each write keeps HDF5's "ignored" errors through sys.unraisablehook; two writes
    in threads that end in the order they began must leave the program's own hook."""
    a_started, b_started, a_done = threading.Event(), threading.Event(), threading.Event()

    def layer(started: threading.Event, wait_for: threading.Event) -> xr.DataArray:
        def block(values: np.ndarray) -> np.ndarray:
            if values.size:  # not dask's trial call on an empty array
                started.set()
                assert wait_for.wait(30)
            return values
        values = np.arange(2 * 3 * 4 * 5, dtype="f4").reshape(2, 3, 4, 5)
        lazy = da.from_array(values, chunks=-1).map_blocks(block, dtype="f4")
        return xr.DataArray(lazy, dims=("stimulus", "channel", "row", "column"))

    def first() -> None:
        save_act({"conv": layer(a_started, b_started)}, tmp_path / "a.act.h5")
        a_done.set()

    def second() -> None:
        assert a_started.wait(30)
        save_act({"conv": layer(b_started, a_done)}, tmp_path / "b.act.h5")

    def program_hook(unraisable) -> None:
        seen.append(unraisable.exc_value)

    seen: list[BaseException] = []
    own = sys.unraisablehook
    sys.unraisablehook = program_hook
    try:
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sys.unraisablehook is program_hook
        with open_act(tmp_path / "a.act.h5") as a, open_act(tmp_path / "b.act.h5") as b:
            assert a["conv"].values.tobytes() == b["conv"].values.tobytes()
            assert a["conv"].shape == (2, 3, 4, 5)

        class Failing:
            def __del__(self) -> None:
                raise OSError(5, "an error after the writes")

        Failing()  # freed with no write under way: the program's hook sees it
        assert [str(error) for error in seen] == ["[Errno 5] an error after the writes"]
    finally:
        sys.unraisablehook = own
