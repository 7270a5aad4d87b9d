"""Durability: a write that returned survives a power loss.

The writer syncs the temporary file (``fsync``) before renaming it to the
output, and the output's folder after, so that after a power loss the
output is the new file whole or the previous one, never a name on blocks
that never reached the disk. Shown by recording, in order, every
``fsync`` (by the path its file descriptor is open on) and every
``os.replace``: through every route and to both suffixes, in this process
(``os.fsync`` patched), and for the text files (``write_dmask``,
``write_stim``), which go through the same ``atomic_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from reliability import ROUTE_SUFFIXES, assert_ok, layer_dataset, run_here

import dnnmask_xr as dx

CASES = ROUTE_SUFFIXES


def _record(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Record every fsync (by the file's path) and every rename, in order."""
    events: list[tuple[str, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst, **kwargs) -> None:
        events.append(("replace", os.fspath(src), os.fspath(dst)))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _assert_synced_around_the_rename(events: list[tuple[str, ...]], out: Path) -> None:
    """Every temporary file is synced before its rename, its folder after; the last is ``out``.

    A streamed write (the ActWriter route) renames each of its parts into
    their folder before the output: each must be as durable as the output.
    """
    renames = [i for i, event in enumerate(events) if event[0] == "replace"]
    assert renames, events
    assert Path(events[renames[-1]][2]) == out.resolve()
    for at in renames:
        _, tmp, target = events[at]
        synced_before = [event[1] for event in events[:at] if event[0] == "fsync"]
        synced_after = [event[1] for event in events[at + 1:] if event[0] == "fsync"]
        assert synced_before[-1:] == [tmp], events
        assert synced_after[:1] == [str(Path(target).parent)], events
    assert [event for event in events[renames[-1] + 1:] if event[0] == "fsync"] == [
        ("fsync", str(out.resolve().parent))], events


@pytest.mark.parametrize(("route", "suffix"), CASES, ids=[f"{r}-{x}" for r, x in CASES])
def test_the_file_is_synced_before_the_rename_and_its_folder_after(
    route: str, suffix: str, act_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
):
    # bug: neither was synced, so after a power loss the new output could be empty while
    # the previous one was already replaced
    out = tmp_path / f"out{suffix}"
    events = _record(monkeypatch)
    assert_ok(run_here("-act", act_file, "-layer", "conv5", "-chn", "2", "1", "-out", out,
                       route=route))
    _assert_synced_around_the_rename(events, out)


@pytest.mark.parametrize("what", ["dmask", "stim"])
def test_text_files_are_synced_the_same_way(what: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / f"out.{what}.csv"
    events = _record(monkeypatch)
    if what == "dmask":
        dx.write_dmask(dx.mask_from_flags(["conv5"], [2, 1]), out)
    else:
        import pandas as pd

        dx.write_stim(dx.Stimuli({"type": "image", "path": "/data"},
                                 pd.DataFrame({"stimID": ["a.png", "b.png"]})), out)
    _assert_synced_around_the_rename(events, out)


@pytest.mark.parametrize(("route", "suffix"), CASES, ids=[f"{r}-{x}" for r, x in CASES])
def test_the_disk_is_asked_to_write_the_file_out_as_it_grows(
    route: str, suffix: str, act_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
):
    # every few dozen MB of values the kernel is told to start writing the temporary file
    # out, so that the sync before the rename does not find all of it still to write
    import h5py
    import numpy as np

    from dnnmask_xr._atomic import start_writeback
    from dnnmask_xr.act import write

    args = ("-act", act_file, "-layer", "conv5", "fc3", "-out")
    assert_ok(run_here(*args, tmp_path / f"plain{suffix}", route=route))
    asked: list[str] = []

    def recorded(fd: int) -> None:
        asked.append(os.readlink(f"/proc/self/fd/{fd}"))
        start_writeback(fd)  # the real request, on the real file

    monkeypatch.setattr(write, "WRITEBACK_BYTES", 1)  # after every block
    monkeypatch.setattr(write, "start_writeback", recorded)
    events = _record(monkeypatch)
    out = tmp_path / f"out{suffix}"
    assert_ok(run_here(*args, out, route=route))
    renamed = {event[1] for event in events if event[0] == "replace"}
    # the file being written, and never another (the input, the output's previous version)
    assert asked and set(asked) <= renamed, (asked, renamed)
    with h5py.File(tmp_path / f"plain{suffix}", "r") as plain, h5py.File(out, "r") as asked_out:
        for name in ("conv5", "fc3"):
            np.testing.assert_array_equal(layer_dataset(asked_out, name)[()],
                                          layer_dataset(plain, name)[()])


def test_asking_for_a_write_out_never_fails(tmp_path: Path):
    from dnnmask_xr._atomic import start_writeback

    reading, writing = os.pipe()  # a pipe has no pages to write out: the call fails
    try:
        start_writeback(reading)
    finally:
        os.close(reading)
        os.close(writing)
    start_writeback(999_999)  # not a file descriptor
    path = tmp_path / "file"
    path.write_bytes(b"x" * 10)
    with path.open("r+b") as file:
        start_writeback(file.fileno())
    assert path.read_bytes() == b"x" * 10
