"""Where the output goes: long names, symbolic links, the permissions of a file replaced.

- Any name the file system takes can be written: the temporary file has a
  short name of its own (``.dnnmask-<random>.tmp``), not one built from
  ``-out``'s; a name longer than the file system takes is one line.
- A symbolic link at ``-out`` is written through, as DNNBrain's
  ``h5py.File(out, "w")`` does: the file it points to is replaced (its
  temporary file beside it, in its folder), the link stays; a dangling
  link creates the file it points to if that file's folder exists; a link
  loop, a link into a missing folder and a link to a device are one-line
  errors; a link to the input is refused (status 2).
- A file replaced keeps its permission bits (a read-only one included:
  it is replaced, read-only) and its owner and group; a new file gets
  ``0o666 & ~umask``.

Every case runs through every route (``tests/routes.py``) and to both
suffixes, and lists the folders involved: nothing else is left there.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import h5py
import pytest
from conftest import digest
from reliability import (
    ROUTE_SUFFIXES,
    ROUTES,
    TEMP_GLOB,
    assert_ok,
    assert_one_line_error,
    layer_names,
    run_route,
)

pytestmark = pytest.mark.sweep("route", "suffix")

EVERY = ROUTE_SUFFIXES
EVERY_IDS = [f"{route}-{suffix}" for route, suffix in EVERY]
every_write = pytest.mark.parametrize(("route", "suffix"), EVERY, ids=EVERY_IDS)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty folder for the output, apart from the input's."""
    made = tmp_path / "out"
    made.mkdir()
    return made


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def assert_written(out: Path) -> None:
    with h5py.File(out, "r") as root:
        assert layer_names(root) == ["conv5"]


def write(act: Path, out: Path, route: str):
    return run_route("-act", act, "-layer", "conv5", "-out", out, route=route)


# -- names -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [253, 255])
@every_write
def test_the_longest_names_are_written(act_file: Path, folder: Path, route: str,
                                       suffix: str, length: int):
    # bug: the temporary name was '.<name>.<random>.tmp', 14 bytes longer than -out's, so a
    # legal name of 242 bytes or more failed with "File name too long"
    out = folder / ("n" * (length - len(suffix)) + suffix)
    assert len(out.name) == length
    assert_ok(write(act_file, out, route))
    assert listing(folder) == [out.name]
    assert_written(out)


@every_write
def test_a_name_too_long_is_one_line(act_file: Path, folder: Path, route: str, suffix: str):
    out = folder / ("n" * (256 - len(suffix)) + suffix)
    done = write(act_file, out, route)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, r"^cannot write .*: its file name is 256 bytes long, "
                                       r"and names in .* are at most 255 bytes$")
    assert listing(folder) == []


def test_the_temporary_name_is_short_and_recognisable(tmp_path: Path):
    from dnnmask_xr._atomic import atomic_path

    out = tmp_path / ("n" * 248 + ".act.h5")
    with atomic_path(out) as tmp:
        assert tmp.parent == tmp_path and tmp.match(TEMP_GLOB) and len(tmp.name) <= 32
        tmp.write_bytes(b"done")
    assert listing(tmp_path) == [out.name]


# -- symbolic links ----------------------------------------------------------------------


@every_write
def test_a_link_is_written_through(act_file: Path, tmp_path: Path, route: str, suffix: str):
    # bug: the link was replaced by a regular file and the file it pointed to kept its old
    # content; DNNBrain (h5py.File(out, "w")) writes the file the link points to
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    real = there / f"real{suffix}"
    real.write_bytes(b"old")
    link = here / f"link{suffix}"
    link.symlink_to(os.path.relpath(real, here))
    assert_ok(write(act_file, link, route))
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(real, here)
    assert listing(here) == [link.name] and listing(there) == [real.name]
    assert_written(real)


@every_write
def test_a_dangling_link_creates_its_file(act_file: Path, tmp_path: Path, route: str,
                                          suffix: str):
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    link = here / f"link{suffix}"
    link.symlink_to(there / f"new{suffix}")
    assert_ok(write(act_file, link, route))
    assert link.is_symlink()
    assert listing(here) == [link.name] and listing(there) == [f"new{suffix}"]
    assert_written(there / f"new{suffix}")


def _dangling_into_nothing(folder: Path, link: Path) -> str:
    link.symlink_to(folder / "missing" / f"new{link.name[4:]}")
    return r"folder '.*missing' does not exist \(the symbolic link .* points to .*\)$"


def _loop(folder: Path, link: Path) -> str:
    other = folder / f"other{link.name[4:]}"
    link.symlink_to(other.name)
    other.symlink_to(link.name)
    return r"its symbolic links lead in a circle"


def _device(folder: Path, link: Path) -> str:
    link.symlink_to(os.devnull)
    return r"it is not a regular file but a device, a FIFO or a socket \(the symbolic link"


BAD_LINKS = {"dangling-into-a-missing-folder": _dangling_into_nothing, "loop": _loop,
             "to-a-device": _device}


@pytest.mark.parametrize("make", list(BAD_LINKS.values()), ids=list(BAD_LINKS))
@every_write
def test_a_link_that_cannot_be_written_is_one_line(act_file: Path, folder: Path, route: str,
                                                  suffix: str, make):
    # bug: a loop and a link to a device were replaced by a regular file
    link = folder / f"link{suffix}"
    pattern = make(folder, link)
    before = listing(folder)
    done = write(act_file, link, route)
    assert done.returncode == 1, done.stderr
    assert_one_line_error(done.stderr, rf"^cannot write '.*link{suffix}': ", pattern)
    assert listing(folder) == before and link.is_symlink()
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


@every_write
def test_a_link_to_the_input_is_refused(act_file: Path, folder: Path, route: str,
                                        suffix: str):
    # the input stays the input however it is reached (.nc names too: the suffix decides
    # the layout, the link decides the file)
    link = folder / f"link{suffix}"
    link.symlink_to(act_file)
    before = digest(act_file)
    done = write(act_file, link, route)
    assert done.returncode == 2
    assert_one_line_error(done.stderr, r"is the input file")
    assert listing(folder) == [link.name] and link.is_symlink()
    assert digest(act_file) == before


# -- permissions -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444], ids=oct)
@every_write
def test_a_file_replaced_keeps_its_mode_owner_and_group(act_file: Path, folder: Path,
                                                        route: str, suffix: str, mode: int):
    # bug: the output got 0o666 & ~umask whatever the file it replaced had
    out = folder / f"out{suffix}"
    out.write_bytes(b"old")
    out.chmod(mode)
    owner = (12345, 23456) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(out, *owner)
    assert_ok(write(act_file, out, route))
    info = out.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (mode, *owner)
    assert listing(folder) == [out.name]
    assert_written(out)


@every_write
def test_a_linked_file_keeps_its_mode(act_file: Path, folder: Path, route: str, suffix: str):
    real = folder / f"real{suffix}"
    real.write_bytes(b"old")
    real.chmod(0o640)
    link = folder / f"link{suffix}"
    link.symlink_to(real.name)
    assert_ok(write(act_file, link, route))
    assert stat.S_IMODE(real.stat().st_mode) == 0o640 and link.is_symlink()
    assert listing(folder) == sorted([link.name, real.name])


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=oct)
@every_write
def test_a_new_file_gets_the_umask_mode(act_file: Path, folder: Path, route: str,
                                        suffix: str, umask: int):
    out = folder / f"out{suffix}"
    previous = os.umask(umask)
    try:
        assert_ok(write(act_file, out, route))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


# -- a folder ----------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["/", ""], ids=["with-slash", "without-slash"])
@pytest.mark.parametrize("route", ROUTES)
def test_an_existing_folder_is_refused_as_a_folder(act_file: Path, folder: Path, route: str,
                                                   slash: str):
    # bug: 'out/' was refused for its suffix, as if it were a file badly named
    (folder / "kept").write_bytes(b"old")
    out = f"{folder}{slash}"
    done = run_route("-act", act_file, "-layer", "conv5", "-out", out, route=route)
    assert done.returncode == 1, done.stderr
    assert_one_line_error(done.stderr, rf"^cannot write {re.escape(repr(out))}: it is a "
                                       r"folder; name a file in it, like '.*masked\.act\.h5'$")
    assert listing(folder) == ["kept"] and (folder / "kept").read_bytes() == b"old"
