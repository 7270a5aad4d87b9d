"""Untrusted ``.act.h5`` files: exact values or one line, never a hang or a read outside.

Files are shared between labs and downloaded with papers, so each case here
is a file someone could hand over: root objects that point outside the
file (external links, virtual datasets, external raw storage), a chunk
index that lies, shapes and chunks that would exhaust memory, dtypes and
names the rest of the tool cannot carry, a stimulus table that would
shadow a dimension, a file a SWMR writer holds open.

Every case runs through every route that reads an input its own way
(``tests/routes.py`` ``READ_ROUTES``: ``dnn_mask``, ``mask_file``,
``open_act`` + ``.values``, ``save_act`` of an opened file). The outcome is
either exactly what h5py (DNNBrain's reader) reads from the file, or status
1 and one ``dnn_mask: error:`` line naming the file and the object, with
nothing left in the output's folder and the input unchanged. Cases whose
risk is a hang (a FIFO) run in a child process with a timeout.
"""

from __future__ import annotations

import os
import re
import resource
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import digest
from reliability import assert_one_line_error, command, run_cli, run_route
from routes import READ_ROUTES

from dnnmask_xr import ActFileError, open_act
from dnnmask_xr.act.layout import MAX_AXIS_LENGTH
from dnnmask_xr.cli import _get_parser
from dnnmask_xr.testing import relu_activations, write_reference_act

pytestmark = pytest.mark.reliability

SHAPES = {"conv": (6, 4, 4), "fc": (5, 1, 1)}
N_STIMULI = 4


def _layers() -> dict[str, np.ndarray]:
    return relu_activations(N_STIMULI, SHAPES, seed=96)


def _dnnbrain_file(path: Path) -> Path:
    write_reference_act(path, _layers())
    return path


@dataclass
class Case:
    """A hostile file, the flags to run on it, and the one right outcome."""

    build: Callable[[Path], Path]
    flags: tuple[str, ...] = ("-layer", "conv")
    #: regular expressions the one error line must match; None: exact values
    error: tuple[str, ...] | None = None
    #: the risk is a hang: run every route in a child process with a timeout
    may_hang: bool = False
    #: the routes that must give the error; the others read exactly
    error_routes: tuple[str, ...] = READ_ROUTES
    #: environment variables for the run ("{folder}" is the input's folder), which is run
    #: from the input's folder
    env: dict[str, str] | None = None


# -- the files ---------------------------------------------------------------------------


def _with_external_link(target: Callable[[Path], Path | str], inner: str = "/conv"):
    def build(folder: Path) -> Path:
        path = _dnnbrain_file(folder / "in.act.h5")
        with h5py.File(path, "a") as root:
            root["elsewhere"] = h5py.ExternalLink(str(target(folder)), inner)
        return path
    return build


def _fifo(folder: Path) -> Path:
    fifo = folder / "pipe"
    os.mkfifo(fifo)
    return fifo


def _other_file(folder: Path) -> Path:
    other = folder / "other.h5"
    with h5py.File(other, "w") as root:
        root["conv"] = np.arange(N_STIMULI * 3 * 2 * 2, dtype="f4").reshape(N_STIMULI, 3, 2, 2)
    return other


def _add_virtual(path: Path, mode: str, name: str, source: Path | str,
                 shape: tuple[int, ...]) -> Path:
    """Add to ``path`` a virtual float32 layer ``name`` over ``source``'s /conv."""
    layout = h5py.VirtualLayout(shape=shape, dtype="f4")
    layout[:] = h5py.VirtualSource(str(source), "conv", shape=shape)
    with h5py.File(path, mode) as root:
        root.create_virtual_dataset(name, layout, fillvalue=-1)
    return path


def _half_written(folder: Path) -> Path:
    """A gzip /conv whose fill time is 'never', only its first stimulus written."""
    other = folder / "other.h5"
    with h5py.File(other, "w") as root:
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_chunk((1, 3, 2, 2))
        plist.set_deflate(4)
        plist.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        h5py.h5d.create(root.id, b"conv", h5py.h5t.NATIVE_FLOAT,
                        h5py.h5s.create_simple((N_STIMULI, 3, 2, 2)), dcpl=plist)
        root["conv"][0] = 1
    return other


def _virtual(source: Callable[[Path], Path | str], shape=(N_STIMULI, 3, 2, 2)):
    def build(folder: Path) -> Path:
        path = _dnnbrain_file(folder / "in.act.h5")
        return _add_virtual(path, "a", "mapped", source(folder), shape)
    return build


def _external_storage(target: Callable[[Path], Path | str], nbytes: int | None = None):
    shape = (N_STIMULI, 2, 1, 1)

    def build(folder: Path) -> Path:
        path = _dnnbrain_file(folder / "in.act.h5")
        name = str(target(folder))
        size = nbytes if nbytes is not None else int(np.prod(shape)) * 4
        with h5py.File(path, "a") as root:
            root.create_dataset("raw", shape=shape, dtype="<f4", external=[(name, 0, size)])
        return path
    return build


def _raw_values(folder: Path) -> Path:
    raw = folder / "values.bin"
    raw.write_bytes(np.arange(N_STIMULI * 2, dtype="<f4").tobytes())
    return raw


def _raw_layer(folder: Path) -> Path:
    """The bytes of a (N_STIMULI, 3, 2, 2) float32 layer, as raw storage keeps them."""
    raw = folder / "layer.bin"
    raw.write_bytes(np.arange(N_STIMULI * 12, dtype="<f4").tobytes())
    return raw


# a second file in the chain: its /conv points on to ``target``, one hop further


def _mid_link(target: Callable[[Path], Path | str]):
    def build(folder: Path) -> Path:
        mid = folder / "mid.h5"
        with h5py.File(mid, "w") as root:
            root["conv"] = h5py.ExternalLink(str(target(folder)), "/conv")
        return mid
    return build


def _mid_virtual(source: Callable[[Path], Path | str], shape=(N_STIMULI, 3, 2, 2)):
    def build(folder: Path) -> Path:
        return _add_virtual(folder / "mid.h5", "w", "conv", source(folder), shape)
    return build


def _mid_storage(target: Callable[[Path], Path | str]):
    def build(folder: Path) -> Path:
        mid = folder / "mid.h5"
        with h5py.File(mid, "w") as root:
            root.create_dataset("conv", shape=(N_STIMULI, 3, 2, 2), dtype="<f4",
                                external=[(str(target(folder)), 0, N_STIMULI * 12 * 4)])
        return mid
    return build


def _virtual_loop(folder: Path) -> Path:
    # in.act.h5:mapped maps mid.h5:conv, which maps in.act.h5:mapped back
    path = _virtual(lambda f: f / "mid.h5")(folder)
    shape = (N_STIMULI, 3, 2, 2)
    layout = h5py.VirtualLayout(shape=shape, dtype="f4")
    layout[:] = h5py.VirtualSource(path.name, "mapped", shape=shape)
    with h5py.File(folder / "mid.h5", "w") as root:
        root.create_virtual_dataset("conv", layout, fillvalue=-1)
    return path


def _decoy(build: Callable[[Path], Path]):
    """A folder ``decoy`` beside the input, holding other values under the same names."""
    def with_decoy(folder: Path) -> Path:
        decoy = folder / "decoy"
        decoy.mkdir()
        with h5py.File(decoy / "other.h5", "w") as root:
            root["conv"] = np.full((N_STIMULI, 3, 2, 2), 7, dtype="f4")
        (decoy / "layer.bin").write_bytes(np.full(N_STIMULI * 12, 7, dtype="<f4").tobytes())
        return build(folder)
    return with_decoy


def _percent_named(folder: Path) -> Path:
    """A good source named ``other%%.h5``, beside a FIFO ``other%.h5``: the name HDF5 opens."""
    os.mkfifo(folder / "other%.h5")
    return _other_file(folder).rename(folder / "other%%.h5")


def _non_utf8_soft_link(folder: Path) -> Path:
    """A file whose /conv is a soft link to ``/g/x\\xff``; a decoy at ``/g/x\\ufffd``.

    Decoded with replacement characters, the link leads to the decoy; HDF5
    follows the bytes, to a virtual dataset over a FIFO.
    """
    other = folder / "o.h5"
    os.mkfifo(folder / "pipe")
    _add_virtual(other, "w", "g/x\ufffd", _other_file(folder), (N_STIMULI, 3, 2, 2))
    layout = h5py.VirtualLayout(shape=(N_STIMULI, 3, 2, 2), dtype="f4")
    layout[:] = h5py.VirtualSource("pipe", "conv", shape=(N_STIMULI, 3, 2, 2))
    with h5py.File(other, "a") as root:
        root["g"].create_virtual_dataset("placeholder", layout, fillvalue=-1)
        root["g"][b"x\xff"] = root["g/placeholder"]
        root.id.links.create_soft(b"conv", b"/g/x\xff")
    return other


def _non_utf8_target(folder: Path) -> Path:
    """A file linking to ``x\\xff.h5``, a FIFO; a good decoy at ``x\\ufffd.h5``."""
    os.mkfifo(os.fsencode(folder) + b"/x\xff.h5")
    _other_file(folder).rename(folder / "x\ufffd.h5")
    path = _dnnbrain_file(folder / "in.act.h5")
    with h5py.File(path, "a") as root:
        root.id.links.create_external(b"elsewhere", b"x\xff.h5", b"/conv")
    return path


def _non_utf8_source(folder: Path) -> Path:
    """A virtual layer over ``x\\xff.h5``, a name h5py cannot even decode."""
    path = _dnnbrain_file(folder / "in.act.h5")
    shape = (N_STIMULI, 3, 2, 2)
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    space = h5py.h5s.create_simple(shape)
    plist.set_virtual(space, b"x\xff.h5", b"conv", h5py.h5s.create_simple(shape))
    with h5py.File(path, "a") as root:
        h5py.h5d.create(root.id, b"mapped", h5py.h5t.NATIVE_FLOAT, space, dcpl=plist)
    return path


def _soft_chain(count: int):
    """A file whose /conv is reached through ``count`` soft links, after the link to it."""
    def build(folder: Path) -> Path:
        chain = folder / "chain.h5"
        with h5py.File(chain, "w") as root:
            root["s0"] = np.arange(N_STIMULI * 12, dtype="f4").reshape(N_STIMULI, 3, 2, 2)
            for i in range(1, count + 1):
                root[f"s{i}"] = h5py.SoftLink(f"/s{i - 1}")
        mid = folder / "mid.h5"
        with h5py.File(mid, "w") as root:
            root["conv"] = h5py.ExternalLink(chain.name, f"/s{count}")
        return mid
    return build


def _unlimited_mapping(folder: Path) -> Path:
    """A virtual layer mapping every other stimulus of a source, without end."""
    shape = (N_STIMULI, 3, 2, 2)
    with h5py.File(folder / "other.h5", "w") as root:
        root.create_dataset("conv", data=np.ones(shape, "f4"), maxshape=(None, 3, 2, 2))
    path = _dnnbrain_file(folder / "in.act.h5")
    layout = h5py.VirtualLayout(shape, "f4", maxshape=(None, 3, 2, 2))
    source = h5py.VirtualSource("other.h5", "conv", shape=shape, maxshape=(None, 3, 2, 2))
    layout[0:h5py.h5s.UNLIMITED:2] = source[0:h5py.h5s.UNLIMITED]
    with h5py.File(path, "a") as root:
        root.create_virtual_dataset("mapped", layout, fillvalue=-1)
    return path


def _relative(make: Callable[[Path], Path]) -> Callable[[Path], str]:
    """Make a file in the folder and name it by its name alone."""
    return lambda folder: make(folder).name


def _soft_to_external(folder: Path) -> Path:
    path = _with_external_link(_other_file)(folder)
    with h5py.File(path, "a") as root:
        root["alias"] = h5py.SoftLink("/elsewhere")
    return path


def _non_utf8_name(folder: Path) -> Path:
    path = _dnnbrain_file(folder / "in.act.h5")
    with h5py.File(path, "a") as root:
        space = h5py.h5s.create_simple((N_STIMULI, 1, 1, 1))
        h5py.h5d.create(root.id, b"caf\xe9", h5py.h5t.NATIVE_FLOAT, space)
    return path


def _never_written(folder: Path) -> Path:
    # allocated incrementally and never written: every chunk reads as the fill value
    path = _dnnbrain_file(folder / "in.act.h5")
    with h5py.File(path, "a") as root:
        root.create_dataset("empty", shape=(N_STIMULI, 8, 32, 32), dtype="f4",
                            chunks=(2, 4, 32, 32), compression="gzip", fillvalue=0.5)
    return path


def _huge_shape(folder: Path) -> Path:
    path = folder / "in.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", shape=(2**61, 16, 1, 1), dtype="f4", chunks=(1024, 16, 1, 1),
                            compression="gzip")
    return path


def _long_double(folder: Path) -> Path:
    path = _dnnbrain_file(folder / "in.act.h5")
    with h5py.File(path, "a") as root:
        root.create_dataset("wide", data=np.ones((N_STIMULI, 2, 1, 1), dtype=np.longdouble))
    return path


def _big_chunks(folder: Path) -> Path:
    # 8 MiB chunks of one mostly-zero layer: a small file that inflates big
    path = folder / "in.act.h5"
    values = np.zeros((2, 8, 512, 512), dtype="f4")
    values[:, :, 0, 0] = np.arange(16).reshape(2, 8)
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", data=values, chunks=(1, 8, 512, 512), compression="gzip")
    return path


def _field_named_channel(folder: Path) -> Path:
    path = _dnnbrain_file(folder / "in.act.h5")
    with h5py.File(path, "a") as root:
        root.attrs.create("stimulus", np.arange(1, N_STIMULI + 1))
        root.attrs.create("stimulus_fields", np.array(["channel"], dtype=object),
                          dtype=h5py.string_dtype())
        root.attrs.create("stimulus:channel", np.arange(N_STIMULI) + 100)
    return path


def _chunk_key_moved(folder: Path) -> Path:
    """A flipped bit in the chunk B-tree: one chunk's stimulus offset changes."""
    path = folder / "in.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("conv", data=np.arange(8 * 6 * 4 * 4, dtype="f4").reshape(8, 6, 4, 4),
                            chunks=(2, 6, 4, 4), compression="gzip")
    data = bytearray(path.read_bytes())
    at = _chunk_key_offsets(data, ndim=4)[1]  # the second chunk's key, stimulus offset 2
    assert struct.unpack_from("<Q", data, at)[0] == 2
    struct.pack_into("<Q", data, at, 4)  # now it claims to be the third chunk
    path.write_bytes(bytes(data))
    return path


def _chunk_key_offsets(data: bytes, ndim: int) -> list[int]:
    """Byte offsets of the first coordinate of each key of a v1 chunk B-tree leaf."""
    at = data.find(b"TREE")
    while at >= 0 and not (data[at + 4] == 1 and data[at + 5] == 0):
        at = data.find(b"TREE", at + 1)
    used = struct.unpack_from("<H", data, at + 6)[0]
    key_size = 8 + 8 * (ndim + 1)
    first = at + 8 + 16  # signature, type, level, entries used, two sibling addresses
    return [first + i * (key_size + 8) + 8 for i in range(used)]


#: The routes that write straight from the input file, within the memory budget.
FROM_FILE = ("command", "mask_file", "save_act-activations")

CASES: dict[str, Case] = {
    "external-link-to-fifo": Case(_with_external_link(_fifo), error=(
        r"root object 'elsewhere' is an external link to '.*pipe:/conv'", r"--allow-external"),
        may_hang=True),
    "external-link-to-fifo-allowed": Case(
        _with_external_link(_fifo), ("-layer", "conv", "--allow-external"),
        error=(r"'elsewhere' is an external link", r"not a regular file"), may_hang=True),
    "external-link-dry-run-of-another-layer": Case(
        _with_external_link(_fifo), ("-layer", "fc", "--dry-run"),
        error=(r"'elsewhere' is an external link",), may_hang=True),
    "external-link-to-missing-file": Case(_with_external_link(lambda f: f / "gone.h5"),
                                          error=(r"external link to '.*gone.h5:/conv'",)),
    "external-link-to-missing-file-allowed": Case(
        _with_external_link(lambda f: f / "gone.h5"), ("-layer", "conv", "--allow-external"),
        error=(r"external link to '.*gone.h5:/conv'", r"No such file")),
    "external-link-allowed": Case(_with_external_link(_other_file),
                                  ("-layer", "elsewhere", "conv", "--allow-external")),
    "soft-link-to-external-link": Case(_soft_to_external, ("-layer", "fc"),
                                       error=(r"root object 'alias' is an external link",)),
    "virtual-to-fifo": Case(_virtual(_fifo), error=(r"layer 'mapped' is a virtual dataset",
                                                   r"--allow-external"), may_hang=True),
    "virtual-to-fifo-allowed": Case(_virtual(_fifo), ("-layer", "mapped", "--allow-external"),
                                    error=(r"virtual dataset", r"not a regular file"),
                                    may_hang=True),
    "virtual-to-missing-file-allowed": Case(
        _virtual(lambda f: f / "gone.h5"), ("-layer", "mapped", "--allow-external"),
        error=(r"virtual dataset of .*gone.h5:conv", r"No such file")),
    "virtual-to-smaller-source-allowed": Case(
        _virtual(_other_file, shape=(N_STIMULI, 3, 2, 3)), ("-layer", "mapped",
                                                            "--allow-external"),
        error=(r"virtual dataset", r"smaller than its mapping|cannot be read")),
    "virtual-allowed": Case(_virtual(_other_file), ("-layer", "mapped", "conv",
                                                    "--allow-external")),
    "external-storage-of-etc-passwd": Case(
        _external_storage(lambda f: "/etc/passwd", 32), ("-layer", "raw"),
        error=(r"layer 'raw' keeps its values in other files \(/etc/passwd\)",
               r"--allow-external")),
    "external-storage-fifo-allowed": Case(
        _external_storage(_fifo), ("-layer", "raw", "--allow-external"),
        error=(r"keeps its values in other files", r"not a regular file"), may_hang=True),
    "external-storage-too-short-allowed": Case(
        _external_storage(lambda f: (f / "short.bin", (f / "short.bin").write_bytes(b"\0"))[0]),
        ("-layer", "raw", "--allow-external"),
        error=(r"keeps its values in other files", r"holds 1 bytes, fewer than the 32")),
    "external-storage-allowed": Case(_external_storage(_raw_values),
                                     ("-layer", "raw", "--allow-external")),
    # every hop is checked to its end: a file an external object points to may point on
    "external-link-to-external-link-to-fifo-allowed": Case(
        _with_external_link(_mid_link(_fifo)), ("-layer", "conv", "--allow-external"),
        error=(r"'elsewhere' is an external link", r"mid.h5", r"not a regular file"),
        may_hang=True),
    "external-link-to-external-link-allowed": Case(
        _with_external_link(_mid_link(_other_file)),
        ("-layer", "elsewhere", "conv", "--allow-external")),
    "external-link-to-virtual-of-fifo-allowed": Case(
        _with_external_link(_mid_virtual(_fifo)), ("-layer", "conv", "--allow-external"),
        error=(r"layer 'elsewhere' is a virtual dataset", r"not a regular file"),
        may_hang=True),
    "virtual-of-external-link-to-fifo-allowed": Case(
        _virtual(_mid_link(_fifo)), ("-layer", "mapped", "--allow-external"),
        error=(r"layer 'mapped' is a virtual dataset", r"external link", r"not a regular file"),
        may_hang=True),
    "virtual-of-fifo-storage-allowed": Case(
        _virtual(_mid_storage(_fifo)), ("-layer", "mapped", "--allow-external"),
        error=(r"layer 'mapped' is a virtual dataset", r"keeps its values in other files",
               r"not a regular file"), may_hang=True),
    "virtual-of-virtual-of-missing-file-allowed": Case(
        _virtual(_mid_virtual(lambda f: f / "gone.h5")), ("-layer", "mapped",
                                                         "--allow-external"),
        error=(r"layer 'mapped' is a virtual dataset", r"gone.h5", r"No such file")),
    "virtual-of-virtual-allowed": Case(_virtual(_mid_virtual(_other_file)),
                                       ("-layer", "mapped", "conv", "--allow-external")),
    "virtual-of-storage-allowed": Case(_virtual(_mid_storage(_raw_layer)),
                                       ("-layer", "mapped", "conv", "--allow-external")),
    "virtual-of-a-percent-named-source-allowed": Case(
        _virtual(_percent_named), ("-layer", "mapped", "--allow-external"),
        error=(r"layer 'mapped' is a virtual dataset", r"printf patterns"), may_hang=True),
    # names checked as HDF5 reads them: bytes that are not UTF-8, a trailing "/"
    "external-link-to-a-non-utf8-soft-link-allowed": Case(
        _with_external_link(_non_utf8_soft_link), ("-layer", "elsewhere", "--allow-external"),
        error=(r"o\.h5:/conv' is a soft link to b'/g/x\\xff'", r"not UTF-8"), may_hang=True),
    "external-link-to-a-non-utf8-file-allowed": Case(
        _non_utf8_target, ("-layer", "elsewhere", "--allow-external"),
        error=(r"'elsewhere' is an external link to b'x\\xff\.h5'", r"not UTF-8"),
        may_hang=True),
    "virtual-of-a-non-utf8-source": Case(
        _non_utf8_source, ("-layer", "mapped"),
        error=(r"layer 'mapped' is a virtual dataset", r"not UTF-8")),
    "virtual-of-a-non-utf8-source-allowed": Case(
        _non_utf8_source, ("-layer", "mapped", "--allow-external"),
        error=(r"layer 'mapped' is a virtual dataset", r"not UTF-8")),
    "virtual-of-a-source-named-with-a-trailing-slash-allowed": Case(
        _virtual(lambda folder: f"{_other_file(folder).name}/"),
        ("-layer", "mapped", "--allow-external"),
        error=(r"layer 'mapped' is a virtual dataset", r"other\.h5/' cannot be read")),
    # HDF5 follows 16 links in one path, soft and external alike
    "virtual-of-a-link-and-16-soft-links-allowed": Case(
        _virtual(_soft_chain(16)), ("-layer", "mapped", "--allow-external"),
        error=(r"layer 'mapped' is a virtual dataset", r"more than 16 soft links")),
    "virtual-of-a-link-and-15-soft-links-allowed": Case(
        _virtual(_soft_chain(15)), ("-layer", "mapped", "--allow-external")),
    "virtual-with-an-unlimited-mapping-allowed": Case(
        _unlimited_mapping, ("-layer", "mapped", "--allow-external"),
        error=(r"layer 'mapped' is a virtual dataset", r"unlimited mapping")),
    "virtual-loop-allowed": Case(_virtual_loop, ("-layer", "conv", "--allow-external"),
                                 error=(r"layer 'mapped' is a virtual dataset", r"loop")),
    # HDF5's prefix variables would make it read other files than the ones checked
    "external-link-with-HDF5_EXT_PREFIX": Case(
        _decoy(_with_external_link(_relative(_other_file))),
        ("-layer", "elsewhere", "--allow-external"),
        error=(r"'elsewhere' is an external link", r"HDF5_EXT_PREFIX is set"),
        env={"HDF5_EXT_PREFIX": "{folder}/decoy"}),
    "virtual-with-HDF5_VDS_PREFIX": Case(
        _decoy(_virtual(_relative(_other_file))), ("-layer", "mapped", "--allow-external"),
        error=(r"layer 'mapped' is a virtual dataset", r"HDF5_VDS_PREFIX is set"),
        env={"HDF5_VDS_PREFIX": "{folder}/decoy"}),
    "external-storage-with-HDF5_EXTFILE_PREFIX": Case(
        _decoy(_virtual(_mid_storage(_relative(_raw_layer)))),
        ("-layer", "mapped", "--allow-external"),
        error=(r"keeps its values in other files", r"HDF5_EXTFILE_PREFIX is set"),
        env={"HDF5_EXTFILE_PREFIX": "{folder}/decoy"}),
    "virtual-with-an-empty-HDF5_VDS_PREFIX": Case(
        _virtual(_relative(_other_file)), ("-layer", "mapped", "--allow-external"),
        env={"HDF5_VDS_PREFIX": ""}),
    "name-not-utf8": Case(_non_utf8_name, error=(r"root object b'caf\\xe9'", r"not UTF-8")),
    "never-written-chunks": Case(_never_written, ("-layer", "empty", "conv")),
    "never-written-chunks-masked": Case(_never_written, ("-layer", "empty", "-chn", "2", "7")),
    # HDF5 gave the source's chunks never written as whatever memory held (exit 0)
    "virtual-over-chunks-never-written": Case(
        _virtual(_relative(_half_written)), ("-layer", "mapped", "--allow-external"),
        error=(r"layer 'mapped' is a virtual dataset", r"layer 'conv': the chunk at "
               r"\(1, 0, 0, 0\) was never written and the layer's fill time is 'never'")),
    "huge-shape": Case(_huge_shape, error=(rf"declares {2**61} along its stimulus axis",
                                           rf"at most {MAX_AXIS_LENGTH}")),
    "huge-shape-dry-run": Case(_huge_shape, ("-layer", "conv", "--dry-run"),
                               error=(r"declares \d+ along its stimulus axis",)),
    "long-double": Case(_long_double, ("-layer", "wide"),
                        error=(r"layer 'wide' holds float128 values",)),
    # the budget bounds writing from a file; open_act + .values holds what it reads
    "chunks-over-the-budget": Case(_big_chunks, ("-layer", "conv", "--memory", "1M"),
                                   error=(r"layer 'conv' is stored in chunks of 8.0 MiB",
                                          r"--memory 24M"), error_routes=FROM_FILE),
    "chunks-over-the-budget-masked": Case(_big_chunks, ("-layer", "conv", "-chn", "3",
                                                        "--memory", "1M"),
                                          error=(r"chunks of 8.0 MiB", r"--memory 24M"),
                                          error_routes=FROM_FILE),
    "chunks-within-the-budget": Case(_big_chunks, ("-layer", "conv", "-chn", "3", "1",
                                                   "--memory", "24M")),
    "stimulus-field-named-channel": Case(_field_named_channel, error=(
        r"names the stimulus field 'channel'", r"none of stimulus, channel, row, column")),
    "chunk-index-key-moved": Case(_chunk_key_moved, error=(
        r"layer 'conv' is damaged: its chunk index lists the chunk at \(4, 0, 0, 0\) twice",)),
    "chunk-index-key-moved-masked": Case(_chunk_key_moved, ("-layer", "conv", "-chn", "2"),
                                         error=(r"layer 'conv' is damaged",)),
}
#: --dry-run is the command's own: the Python routes always write
RUNS = [(name, route) for name, case in CASES.items() for route in READ_ROUTES
        if route == "command" or "--dry-run" not in case.flags]


def _expected(path: Path, flags: tuple[str, ...]) -> dict[str, np.ndarray]:
    """What h5py reads of the layers and channels the flags name (DNNBrain's reading)."""
    args = _get_parser().parse_args(["-act", str(path), *flags, "-out", "x.act.h5"])
    with h5py.File(path, "r") as root:
        values = {name: root[name][()] for name in args.layer}
    if args.chn is not None:
        values = {name: array[:, [c - 1 for c in args.chn]] for name, array in values.items()}
    return values


@pytest.mark.parametrize(("case", "route"), RUNS, ids=[f"{c}-{r}" for c, r in RUNS])
def test_untrusted_file_gives_exact_values_or_one_line(case: str, route: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    spec = CASES[case]
    source = tmp_path / "in"
    source.mkdir()
    path = spec.build(source)
    env = None
    if spec.env is not None:
        # from the input's folder, where HDF5 looks for raw storage named relatively
        monkeypatch.chdir(source)
        env = {**os.environ, **{name: value.format(folder=source)
                                for name, value in spec.env.items()}}
    before = {p.name: (digest(p) if p.is_file() and not p.is_fifo() else None)
              for p in source.iterdir()}
    outs = tmp_path / "out"
    outs.mkdir()
    out = outs / "o.act.h5"
    args = ("-act", path, *spec.flags, "-out", out)
    if spec.may_hang:
        done = run_cli(*args, timeout=60, route=route, env=env)
    else:
        done = run_route(*args, route=route, env=env)
    if spec.error is None or route not in spec.error_routes:
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        with h5py.File(out, "r") as got:
            for name, expected in _expected(path, spec.flags).items():
                np.testing.assert_array_equal(got[name][()], expected, err_msg=name)
    else:
        assert done.returncode == 1, (done.returncode, done.stderr)
        message = assert_one_line_error(done.stderr, *spec.error)
        assert str(path) in message, message
        assert list(outs.iterdir()) == [], "the failed run left files behind"
    after = {p.name: (digest(p) if p.is_file() and not p.is_fifo() else None)
             for p in source.iterdir()}
    assert after == before, "the input or its neighbours changed"


#: Address space of a child reading a file that declares too many units: far more than a
#: run needs, less than the labels of the declared axes (a few GiB).
CHILD_MEMORY = 2**31
#: Units per layer of :func:`_units_beyond_the_file_bound`: within the bound along one axis.
HALF_BOUND = MAX_AXIS_LENGTH // 2


def _units_beyond_the_file_bound(folder: Path) -> Path:
    """Two layers of a 2 KiB file, each within the bound alone, beyond it together."""
    path = folder / "in.act.h5"
    with h5py.File(path, "w") as root:
        for name in ("conv", "fc"):
            root.create_dataset(name, shape=(1, HALF_BOUND, 1, 1), dtype="f4",
                                chunks=(1, 2**20, 1, 1), compression="gzip")
    return path


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


MANY_UNITS = [(route, flags) for route in READ_ROUTES
              for flags in (("-layer", "conv", "--dry-run"), ("-layer", "fc", "-chn", "1"))
              if route == "command" or "--dry-run" not in flags]


@pytest.mark.parametrize(("route", "flags"), MANY_UNITS,
                         ids=[f"{route}-{flags[-1]}" for route, flags in MANY_UNITS])
def test_a_file_declaring_too_many_units_together_is_refused_before_allocating(
        route: str, flags: tuple[str, ...], tmp_path: Path):
    # each axis within the bound, the labels of all of them were made: 3 GiB and a
    # MemoryError traceback under the cap (a minute and 6 GiB per 2**28 units without it)
    path = _units_beyond_the_file_bound(tmp_path)
    out = tmp_path / "out.act.h5"
    done = subprocess.run(command("-act", path, *flags, "-out", out, route=route),
                          capture_output=True, text=True, check=False, timeout=60,
                          preexec_fn=_capped)
    assert done.returncode == 1, done.stderr
    message = assert_one_line_error(
        done.stderr, rf"layers declare {2 * (HALF_BOUND + 2) + 1} stimuli and units along their "
                     r"axes together", rf"at most {MAX_AXIS_LENGTH}")
    assert str(path) in message
    assert not out.exists()


def test_open_act_refuses_external_storage_before_reading_it(tmp_path: Path):
    path = _external_storage(lambda f: "/etc/passwd", 32)(tmp_path)
    with pytest.raises(ActFileError, match=r"layer 'raw' keeps its values in other files "
                                           r"\(/etc/passwd\)"):
        open_act(path)


def test_open_act_refuses_a_field_that_would_replace_a_dimension(tmp_path: Path):
    path = _field_named_channel(tmp_path)
    with pytest.raises(ActFileError, match=r"stimulus field 'channel'"):
        open_act(path)


def test_never_written_layer_reads_its_fill_value_through_open_act(tmp_path: Path):
    path = _never_written(tmp_path)
    with open_act(path) as acts:
        np.testing.assert_array_equal(acts["empty"].values, np.full((N_STIMULI, 8, 32, 32), 0.5,
                                                                    dtype="f4"))


# -- every file an object reads from is an input ------------------------------------------


def _behind(suffix: str) -> dict[str, tuple[Callable[[Path], Path], str, str]]:
    """Inputs whose layer reads another file: (build, layer, the file it reads)."""
    wide = (N_STIMULI, 6, 4, 4)  # the shape of a DNNBrain file's conv layer

    def layers(folder: Path) -> Path:
        return _dnnbrain_file(folder / f"b{suffix}")

    def raw(count: int) -> Callable[[Path], Path]:
        def build(folder: Path) -> Path:
            path = folder / f"raw{suffix}"
            path.write_bytes(np.arange(count, dtype="<f4").tobytes())
            return path
        return build

    return {
        "virtual-source": (_virtual(layers, shape=wide), "mapped", f"b{suffix}"),
        "virtual-of-virtual-source": (_virtual(_mid_virtual(layers, shape=wide), shape=wide),
                                      "mapped", f"b{suffix}"),
        "external-link-to-virtual-source": (_with_external_link(_mid_virtual(layers, wide)),
                                            "elsewhere", f"b{suffix}"),
        "external-storage": (_external_storage(raw(N_STIMULI * 2)), "raw", f"raw{suffix}"),
        "virtual-of-external-storage": (_virtual(_mid_storage(raw(N_STIMULI * 12))), "mapped",
                                        f"raw{suffix}"),
    }


BEHIND = [(case, route, suffix) for case in _behind(".act.h5")
          for route in ("command", "mask_file", "save_act-activations")
          for suffix in (".act.h5", ".nc")]


@pytest.mark.parametrize(("case", "route", "suffix"), BEHIND,
                         ids=[f"{c}-{r}-{s}" for c, r, s in BEHIND])
def test_a_file_a_layer_reads_from_is_never_replaced(case: str, route: str, suffix: str,
                                                     tmp_path: Path):
    # bug: -out naming a virtual dataset's source file or a raw storage file replaced it
    # (the source's other layers lost), exit 0
    build, layer, read = _behind(suffix)[case]
    path = build(tmp_path)
    out = tmp_path / read
    before = {p.name: digest(p) for p in tmp_path.iterdir()}
    done = run_route("-act", path, "-layer", layer, "--allow-external", "-out", out,
                     route=route)
    assert done.returncode == 2, done.stderr
    # the file named is the input, or the one its external link leads to (mid.h5)
    assert_one_line_error(done.stderr, rf"^output {re.escape(repr(str(out)))} is the input "
                                       r"file \(layers of '.*/(in\.act|mid)\.h5' read their "
                                       r"values from it")
    assert {p.name: digest(p) for p in tmp_path.iterdir()} == before


# -- a file another program is writing ----------------------------------------------------

_SWMR_WRITER = textwrap.dedent("""
    import sys, h5py, numpy as np
    path = sys.argv[1]
    root = h5py.File(path, "w", libver="latest")
    layer = root.create_dataset("conv", shape=(2, 3, 2, 2), maxshape=(None, 3, 2, 2),
                                chunks=(1, 3, 2, 2), dtype="f4", compression="gzip")
    layer[...] = np.arange(24, dtype="f4").reshape(2, 3, 2, 2)
    root.swmr_mode = True
    layer.resize((3, 3, 2, 2))
    layer[2] = 100
    layer.flush()
    print("ready", flush=True)
    sys.stdin.read()  # hold the file open until the test is done
    root.close()
""")


@pytest.mark.parametrize("route", READ_ROUTES)
def test_a_file_held_by_a_swmr_writer_is_read(route: str, tmp_path: Path):
    path = tmp_path / "live.act.h5"
    writer = subprocess.Popen([sys.executable, "-c", _SWMR_WRITER, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "ready\n"
        out = tmp_path / "o.act.h5"
        done = run_route("-act", path, "-layer", "conv", "-out", out, route=route)
        assert done.returncode == 0, done.stderr
        with h5py.File(path, "r", swmr=True) as live, h5py.File(out, "r") as got:
            expected = live["conv"][()]
            assert expected.shape == (3, 3, 2, 2)  # what the writer had flushed
            np.testing.assert_array_equal(got["conv"][()], expected)
    finally:
        writer.communicate("", timeout=30)


def test_a_file_left_marked_open_for_writing_names_the_fix(tmp_path: Path):
    # a latest-format writer killed before closing: HDF5 marks the file as open
    path = tmp_path / "left.act.h5"
    script = (f"import h5py, os, numpy as np; root = h5py.File({str(path)!r}, 'w', "
              "libver='latest'); root['conv'] = np.zeros((1, 1, 1, 1)); root.flush(); "
              "os._exit(0)")
    subprocess.run([sys.executable, "-c", script], check=True)
    done = run_cli("-act", path, "-layer", "conv", "-out", tmp_path / "o.act.h5")
    assert done.returncode == 1
    assert_one_line_error(done.stderr, re.escape(repr(str(path))), r"open for writing",
                          r"h5clear -s")


def test_the_chunk_index_reads_the_same_without_chunk_iter(tmp_path: Path):
    # the one-call-per-chunk fallback, for h5py built on HDF5 before 1.14
    from dnnmask_xr.act.chunk_index import _chunk_infos, chunk_infos_one_by_one

    path = _never_written(tmp_path)
    with h5py.File(path, "r") as root:
        for name in ("conv", "fc", "empty"):  # "empty" has no chunk stored
            fields = ("chunk_offset", "filter_mask", "byte_offset", "size")
            listed = [tuple(getattr(info, f) for f in fields) for info in _chunk_infos(root[name])]
            assert listed == [tuple(getattr(info, f) for f in fields)
                              for info in chunk_infos_one_by_one(root[name])]
            assert len(listed) == root[name].id.get_num_chunks()


@pytest.mark.parametrize("allowed", [False, True])
def test_the_backend_takes_allow_external(tmp_path: Path, allowed: bool):
    import xarray as xr

    path = _with_external_link(_other_file)(tmp_path)
    if not allowed:
        with pytest.raises(ActFileError, match=r"'elsewhere' is an external link"):
            xr.open_dataset(path, engine="dnnact", group="conv")
        return
    with xr.open_dataset(path, engine="dnnact", group="elsewhere", allow_external=True) as got:
        with h5py.File(tmp_path / "other.h5", "r") as other:
            np.testing.assert_array_equal(got["elsewhere"].values, other["conv"][()])


@pytest.mark.parametrize("allowed", [False, True])
def test_a_set_of_files_takes_allow_external(tmp_path: Path, allowed: bool):
    from dnnmask_xr import open_act

    path = _with_external_link(_other_file)(tmp_path)
    if not allowed:
        with pytest.raises(ActFileError, match=r"'elsewhere' is an external link"):
            open_act([path])
        return
    with open_act([path], allow_external=True) as got, h5py.File(tmp_path / "other.h5") as other:
        np.testing.assert_array_equal(got["elsewhere"].values, other["conv"][()])
