"""Structured fuzz of a DNNBrain file's metadata: exact values or one line, nothing else.

The base file holds two small layers as DNNBrain writes them
(``write_reference_act``: h5py's default file format, gzip, automatic
chunks) with the root attributes older DNNBrain versions set. Every byte of
it that is not a chunk's stored data is metadata; the ones HDF5 reads are
found by walking the file's structures (superblock, object headers and
their continuation blocks, the root group's B-tree, symbol table node and
local heap, each layer's chunk B-tree):

- every metadata byte in use, XORed with each of :data:`MASKS`, one at a time;
- every :data:`UNUSED_STEP`-th unused byte (the unused tail of B-tree and
  symbol table nodes, NIL message bodies, space between blocks), XORed with
  0xFF, to check that unused space is indeed ignored;
- the file cut at every structure's and chunk's start, second byte and
  last byte, and at :data:`EVEN_CUTS` evenly spaced offsets.

Each mutated file goes through ``dnn_mask`` twice (in-process through
``routes.run``, in child processes, :data:`CHILDREN` at a time and one core
each, so that a crash or a hang in HDF5 stops a child and not pytest): whole
layers (``-layer conv fc``: the fast copy of compressed chunks) and a
selection that must be decoded (``-layer conv -chn 2 5``). Outcomes of each
run:

- ``exact``: status 0, the values h5py reads from the mutated file under the
  same selection, bit for bit (layer names, dtypes and shapes too);
- ``passed-through``: status 0 on the whole-layer run where h5py cannot read
  the mutated file, and the output stores the input's chunks byte for byte
  (the unverified copy passes damaged chunk data on, as documented; the
  rule of test_91);
- ``error``: status 1 and one ``dnn_mask: error:`` line naming the file, on
  Python's and on the C-level stderr together, nothing left beside ``-out``.

"What h5py reads" must be one thing: where a chunk is stored unfiltered in
fewer bytes than it holds (a flipped filter mask or pipeline message), or
two reads give other values, HDF5 fills values from uninitialised memory
and h5py is taken as unable to read the file.

Anything else fails the test: ``difference`` (other values, an output h5py
cannot read, or a success where h5py cannot read the input and the chunks
were not passed on), ``traceback``, ``bad-error`` (not one line, not naming
the file, output on stderr with status 0, another status), ``crash`` (the
child died), ``hang`` (one step took over :data:`ALARM` seconds; the stack
is dumped just before), ``left-behind`` (files beside ``-out`` other than
the output, or HDF5 objects left open) and ``input-modified``. A child that
dies is replaced by a new one for the rest of its batch; the mutation and
run it died on are named from the "started" line it wrote before each
step. The counts are printed (``pytest -s``) and in the assertion's
message.

Size: 3,271 mutations (1,488 metadata bytes in use, of 14,135 that are not
chunk data in a 15,392-byte file, x 2 masks; 198 unused bytes; 97 cuts), so
6,542 runs of ``dnn_mask``: 25 to 45 s on two cores (the children work in
``/dev/shm`` where there is one: on a disk, creating and removing some
20,000 small files takes longer than the runs). A third mask (0x80) made it
a third longer and found no failure the other two did not. Under the
``quick`` hypothesis profile (.ci/run's pass on the lowest versions) a
quarter of the mutations run, spread over the file (``conftest.sampled``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import sampled
from reliability import same_chunks

pytestmark = pytest.mark.reliability

TESTS = Path(__file__).resolve().parent

#: The base file's layers: (channels, rows, columns) of 5 stimuli.
SHAPES = {"conv": (6, 4, 4), "fc": (12, 1, 1)}
N_STIMULI = 5
ROOT_ATTRS = {"title": "activations", "cmd": "dnn_act", "date": "today"}
#: XOR masks applied to each metadata byte in use, one at a time.
MASKS = (0x01, 0xFF)
#: Every this many unused metadata bytes, one is flipped (mask 0xFF).
UNUSED_STEP = 64
#: Cuts at evenly spaced offsets, besides the cuts at structure boundaries.
EVEN_CUTS = 32
#: The two runs of each mutated file: dnn_mask's flags, and the selection h5py
#: reads to compare (layer name to 0-based channels, None for all).
RUNS: dict[str, tuple[list[str], dict[str, list[int] | None]]] = {
    "whole": (["-layer", "conv", "fc"], {"conv": None, "fc": None}),
    "partial": (["-layer", "conv", "-chn", "2", "5"], {"conv": [1, 4]}),
}
#: Child processes at a time (the test machine has two cores), and batches.
CHILDREN = 2
BATCHES = 4
#: Seconds one step (a run of dnn_mask, or reading and comparing) may take: a hang.
ALARM = 5
#: Seconds without progress before the parent kills a child (SIGALRM did not end it).
STALL = 4 * ALARM
#: A layer h5py would read whole beyond this many bytes is not read (a damaged shape).
READ_LIMIT = 2**27
OK = ("exact", "passed-through", "error")
FAILURES = ("difference", "traceback", "bad-error", "crash", "hang", "left-behind",
            "input-modified")
PREFIX = "dnn_mask: error: "
#: What must not stay open after a run: files, and objects in them.
OPEN_OBJECTS = h5py.h5f.OBJ_FILE | h5py.h5f.OBJ_DATASET | h5py.h5f.OBJ_GROUP | h5py.h5f.OBJ_ATTR


# -- the base file and where its metadata lies -----------------------------------------


def write_base(path: Path) -> None:
    from dnnmask_xr.testing import relu_activations, write_reference_act

    write_reference_act(path, relu_activations(N_STIMULI, SHAPES, seed=97), attrs=ROOT_ATTRS)


def _object_header(data: bytes, addr: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Extents of a version-1 object header (with its continuation blocks), and NIL bodies."""
    assert data[addr] == 1, f"object header at {addr} is not version 1"
    (size,) = struct.unpack_from("<I", data, addr + 8)
    blocks, extents, nil = deque([(addr + 16, size)]), [(addr, addr + 16 + size)], []
    while blocks:
        at, length = blocks.popleft()
        end = at + length
        while at + 8 <= end:
            kind, body = struct.unpack_from("<HH", data, at)
            if kind == 0x10:  # continuation: offset and length of the next block
                cont, cont_size = struct.unpack_from("<QQ", data, at + 8)
                blocks.append((cont, cont_size))
                extents.append((cont, cont + cont_size))
            elif kind == 0 and body:
                nil.append((at + 8, at + 8 + body))
            at += 8 + body
    return extents, nil


def metadata_map(data: bytes, path: Path) -> dict[str, list[tuple[int, int, str]]]:
    """The file's regions: chunk data, metadata HDF5 reads ("used"), and the rest ("unused")."""
    assert data[:8] == b"\x89HDF\r\n\x1a\n" and data[8] == 0, "expected a version-0 superblock"
    sizeof_addr, sizeof_size = data[13], data[14]
    assert (sizeof_addr, sizeof_size) == (8, 8)
    chunks, used, nil = [], [(0, 96, "superblock")], []
    with h5py.File(path, "r") as root:
        for name in ["/", *root]:
            extents, bodies = _object_header(data, h5py.h5o.get_info(root[name].id).addr)
            used += [(start, end, f"object header of {name!r}") for start, end in extents]
            nil += bodies
            if name != "/":
                dataset = root[name].id
                for i in range(dataset.get_num_chunks()):
                    info = dataset.get_chunk_info(i)
                    chunks.append((info.byte_offset, info.byte_offset + info.size,
                                   f"chunk {i} of {name!r}"))
    in_chunk = np.zeros(len(data), bool)
    for start, end, _ in chunks:
        in_chunk[start:end] = True
    for signature in (b"TREE", b"SNOD", b"HEAP", b"GCOL"):
        at = data.find(signature)
        while at >= 0:
            if not in_chunk[at]:
                if signature == b"TREE":
                    # header 24 bytes, then key, child, key, ... (entries used) and a last key
                    kind, entries = data[at + 4], struct.unpack_from("<H", data, at + 6)[0]
                    key = sizeof_size if kind == 0 else 4 + 4 + 8 * (4 + 1)  # 4-D layers
                    used.append((at, at + 24 + entries * (key + sizeof_addr) + key,
                                 f"{'group' if kind == 0 else 'chunk'} B-tree node"))
                elif signature == b"SNOD":
                    entries = struct.unpack_from("<H", data, at + 6)[0]
                    used.append((at, at + 8 + entries * 40, "symbol table node"))
                elif signature == b"GCOL":
                    # the attributes' strings: objects (index, refcount, size, data padded
                    # to 8 bytes) up to the free-space object, index 0, whose header is read
                    end = at + 16
                    while struct.unpack_from("<H", data, end)[0] != 0:
                        end += 16 + -(-struct.unpack_from("<Q", data, end + 8)[0] // 8) * 8
                    used.append((at, end + 16, "global heap collection"))
                else:
                    segment, _, segment_at = struct.unpack_from("<QQQ", data, at + 8)
                    used.append((at, at + 32, "local heap header"))
                    used.append((segment_at, segment_at + segment, "local heap data"))
            at = data.find(signature, at + 1)
    in_use = np.zeros(len(data), bool)
    for start, end, _ in used:
        in_use[start:end] = True
    for start, end in nil:
        in_use[start:end] = False
    assert not (in_use & in_chunk).any()
    unused, start = [], None
    for at, free in enumerate(~in_use & ~in_chunk):
        if free and start is None:
            start = at
        elif not free and start is not None:
            unused.append((start, at, "unused"))
            start = None
    if start is not None:
        unused.append((start, len(data), "unused"))
    return {"chunks": sorted(chunks), "used": sorted(used), "unused": unused,
            "used_bytes": [int(i) for i in np.flatnonzero(in_use)]}


def mutations(data: bytes, regions: dict) -> list[list]:
    """Every mutation, in file order: ``["flip", at, mask]`` and ``["cut", at]``."""
    flips = [["flip", at, mask] for at in regions["used_bytes"] for mask in MASKS]
    free = [at for start, end, _ in regions["unused"] for at in range(start, end)]
    flips += [["flip", at, 0xFF] for at in free[UNUSED_STEP // 2::UNUSED_STEP]]
    cuts = {int(at) for at in np.linspace(0, len(data) - 1, EVEN_CUTS)}
    for start, end, _ in regions["used"] + regions["chunks"] + regions["unused"]:
        cuts |= {start, start + 1, end - 1}
    every = sorted(flips) + [["cut", at] for at in sorted(cuts) if 0 <= at < len(data)]
    return every


def mutation_id(mutation: list) -> str:
    if mutation[0] == "flip":
        return f"flip-{mutation[1]:#x}^{mutation[2]:#04x}"
    return f"cut-{mutation[1]}"


def mutate(data: bytes, mutation: list) -> bytes:
    if mutation[0] == "cut":
        return data[:mutation[1]]
    out = bytearray(data)
    out[mutation[1]] ^= mutation[2]
    return bytes(out)


# -- the child: runs, reads and verdicts ------------------------------------------------


def _child() -> None:
    """Run a batch of mutations (``sys.argv[1]``, a JSON job); write JSON lines of verdicts."""
    job = json.loads(Path(sys.argv[1]).read_text())
    work = Path(job["work"])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))  # a shape claiming terabytes
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the alarm ends the child: a hang
    if job["core"] is not None:
        # one core per child: two children's codec threads on two cores would wait on
        # each other's scheduling for the GIL, and take three times as long
        os.sched_setaffinity(0, {job["core"]})
    import faulthandler

    fault = open(work / "fault.txt", "w")  # open until the child ends
    faulthandler.enable(fault)
    base = Path(job["base"]).read_bytes()
    with open(job["results"], "a", encoding="utf-8") as results:
        def say(line: dict) -> None:
            results.write(json.dumps(line) + "\n")
            results.flush()

        for mutation, runs in job["items"]:
            name = mutation_id(mutation)
            data = mutate(base, mutation)
            path = work / "in.act.h5"
            path.write_bytes(data)
            read: dict = {}

            def reference(run_name: str, path: Path = path, read: dict = read) -> tuple:
                if not read:  # once per mutation, after a run found the input unchanged
                    read.update(_references(path))
                return read[run_name]

            for run_name in runs:
                say({"started": name, "run": run_name, "step": "dnn_mask"})
                _deadline(fault)
                began = time.monotonic()
                done = _run(path, run_name, work)
                seconds = time.monotonic() - began
                _deadline(None)
                say({"started": name, "run": run_name, "step": "reading and comparing"})
                _deadline(fault)
                outcome, detail = _verdict(path, data, run_name, done, work, reference)
                _deadline(None)
                say({"id": name, "run": run_name, "outcome": outcome, "detail": detail,
                     "seconds": round(seconds, 4)})
                for left in work.iterdir():
                    if left.name not in (path.name, "fault.txt", "fd2.txt"):
                        left.unlink()
                if outcome == "input-modified":
                    path.write_bytes(data)
                    read.clear()


def _deadline(fault: io.TextIOBase | None) -> None:
    """Give the next step ALARM seconds (its stack is dumped just before), or end the limit."""
    import faulthandler

    if fault is None:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
    else:
        faulthandler.dump_traceback_later(ALARM - 0.5, file=fault)
        signal.alarm(ALARM)


def _run(path: Path, run_name: str, work: Path) -> dict:
    """Run dnn_mask in this process, Python's and the C library's stderr captured."""
    from routes import run

    out = work / f"{run_name}.act.h5"
    stdout, stderr = io.StringIO(), io.StringIO()
    done: dict = {"status": None, "traceback": None}
    c_err = os.open(work / "fd2.txt", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    saved = os.dup(2)
    os.dup2(c_err, 2)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            done["status"] = run("command", ["-act", str(path), *RUNS[run_name][0],
                                             "-out", str(out)])
    except BaseException:  # a bug: every failure must become a status
        done["traceback"] = traceback.format_exc()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(c_err)
    done["stderr"] = stderr.getvalue()
    done["c_stderr"] = (work / "fd2.txt").read_text(errors="replace")
    done["left"] = sorted(p.name for p in work.iterdir()
                          if p.name not in (path.name, out.name, "fault.txt", "fd2.txt"))
    done["wrote"] = out.exists()
    done["open_objects"] = h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, OPEN_OBJECTS)
    return done


def _references(path: Path) -> dict[str, tuple[dict | None, str]]:
    """For each run, what h5py reads from ``path`` under its selection, or None and why not."""
    try:
        with h5py.File(path, "r") as root:
            return {run_name: _reference(root, selection)
                    for run_name, (_, selection) in RUNS.items()}
    except Exception as error:
        return dict.fromkeys(RUNS, (None, f"{type(error).__name__}: {error}"))


def _reference(root: h5py.File, selection: dict) -> tuple[dict | None, str]:
    try:
        layers = {}
        for name, channels in selection.items():
            dataset = root[name]
            if dataset.size * dataset.dtype.itemsize > READ_LIMIT:
                return None, f"layer {name!r} claims shape {dataset.shape}"
            values = dataset[()]
            # a chunk stored shorter than its values with no filter to inflate it: HDF5
            # fills the rest from uninitialised memory, so no output can match its read
            short = _short_raw_chunk(dataset)
            if short:
                return None, short
            if values.tobytes() != dataset[()].tobytes():
                return None, f"h5py reads other values of layer {name!r} each time"
            layers[name] = values if channels is None else np.take(values, channels, 1)
        return layers, ""
    except Exception as error:
        return None, f"{type(error).__name__}: {error}"


def _short_raw_chunk(dataset: h5py.Dataset) -> str | None:
    """Which chunk of ``dataset`` is stored unfiltered and shorter than it is, if any."""
    try:
        if dataset.chunks is None:
            return None
        filters = dataset.id.get_create_plist().get_nfilters()
        full = int(np.prod(dataset.chunks)) * dataset.id.get_type().get_size()
        for i in range(dataset.id.get_num_chunks()):
            info = dataset.id.get_chunk_info(i)
            unfiltered = all(info.filter_mask & (1 << k) for k in range(filters))
            if unfiltered and info.size < full:
                return (f"chunk {i} of layer {dataset.name[1:]!r} is stored unfiltered in "
                        f"{info.size} of its {full} bytes")
    except Exception:  # h5py's read decides, not this check
        return None
    return None


def _differs(out: Path, expected: dict) -> str | None:
    """How the output differs from ``expected`` (layer names, dtypes, shapes, bits), or None."""
    try:
        with h5py.File(out, "r") as root:
            if list(root) != list(expected):
                return f"the output holds layers {list(root)}, not {list(expected)}"
            for name, want in expected.items():
                got = root[name][()]
                if (got.dtype, got.shape) != (want.dtype, want.shape):
                    return (f"layer {name!r}: {got.dtype} {got.shape} where h5py reads "
                            f"{want.dtype} {want.shape}")
                if got.tobytes() != want.tobytes():
                    width = max(want.dtype.itemsize, 1)
                    a = np.frombuffer(got.tobytes(), np.uint8).reshape(-1, width)
                    b = np.frombuffer(want.tobytes(), np.uint8).reshape(-1, width)
                    wrong = np.flatnonzero((a != b).any(axis=1))
                    at = np.unravel_index(wrong[0], want.shape)
                    return (f"layer {name!r}: {wrong.size} of {want.size} values differ, e.g. "
                            f"at {tuple(map(int, at))} {got[at]!r} where h5py reads {want[at]!r}")
    except Exception as error:
        return f"the output cannot be read: {type(error).__name__}: {error}"
    return None


def _one_line_error(stderr: str, path: Path) -> str | None:
    """Why ``stderr`` is not one ``dnn_mask: error:`` line naming ``path``, or None."""
    if not (stderr.startswith(PREFIX) and stderr.endswith("\n") and stderr.count("\n") == 1):
        return f"not one error line: {stderr[:600]!r}"
    if str(path) not in stderr:
        return f"the error does not name the file: {stderr[:600]!r}"
    return None


def _last_lines(text: str) -> str:
    """A traceback on one line: the innermost frame of this package, and the exception."""
    lines = [line.strip() for line in text.strip().splitlines()]
    frames = [i for i, line in enumerate(lines)
              if line.startswith("File ") and f"{os.sep}dnnmask_xr{os.sep}" in line]
    where = ""
    if frames:
        frame = lines[frames[-1]]
        where = "dnnmask_xr" + frame.split(f"{os.sep}dnnmask_xr", 1)[1].replace('", line ', ":")
        where = f"{where}: {lines[frames[-1] + 1]} | "
    return where + (lines[-1] if lines else "")


def _stack(fault: str, count: int = 8) -> str:
    """The crashed thread's innermost frames from faulthandler's report, on one line."""
    lines = fault.split("\nExtension modules")[0].splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("Current thread")), 0)
    head = [line for line in lines[:first] if line.strip()]
    return " | ".join(line.strip() for line in head + lines[first:first + 1 + count])


def _verdict(path: Path, data: bytes, run_name: str, done: dict, work: Path,
             reference: Callable[[str], tuple]) -> tuple[str, str]:
    out = work / f"{run_name}.act.h5"
    stderr = done["stderr"] + done["c_stderr"]
    if done["traceback"] is not None:
        return "traceback", _last_lines(done["traceback"])
    if "Traceback" in stderr:
        return "traceback", _last_lines(stderr)
    if path.read_bytes() != data:
        return "input-modified", f"status {done['status']}, stderr {stderr[:300]!r}"
    if done["left"]:
        return "left-behind", f"status {done['status']}, left {done['left']}"
    if done["open_objects"]:
        return "left-behind", (f"status {done['status']}: {done['open_objects']} HDF5 objects "
                               f"left open, stderr {stderr[:300]!r}")
    status = done["status"]
    if status == 1:
        if done["wrote"]:
            return "left-behind", f"status 1 and -out was written: {stderr[:300]!r}"
        problem = _one_line_error(stderr, path)
        if problem:
            return "bad-error", problem
        readable = reference(run_name)[0] is not None
        return "error", f"h5py {'reads' if readable else 'cannot read'} it: {stderr[:300]!r}"
    if status != 0:
        return "bad-error", f"status {status}: {stderr[:600]!r}"
    if stderr:
        return "bad-error", f"status 0 with output on stderr: {stderr[:600]!r}"
    expected, why = reference(run_name)
    if expected is not None:
        problem = _differs(out, expected)
        return ("exact", "") if problem is None else ("difference", problem)
    if run_name == "whole" and same_chunks(path, out, list(RUNS[run_name][1])):
        return "passed-through", why[:300]
    return "difference", f"status 0 where h5py cannot read the input ({why[:300]})"


# -- the parent: batches in child processes --------------------------------------------


def _start(items: list, base: Path, root: Path, serial: int, core: int | None) -> dict:
    work = root / f"child-{serial}"
    work.mkdir()
    job = {"work": str(work), "base": str(base), "results": str(work.parent / f"r{serial}.jsonl"),
           "items": items, "core": core}
    job_path = root / f"job-{serial}.json"
    job_path.write_text(json.dumps(job))
    err = open(root / f"stderr-{serial}.txt", "w+")  # closed in _finish
    env = dict(os.environ, LIBC_FATAL_STDERR_="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import test_97_fuzz_metadata as t; t._child()", str(job_path)],
        cwd=TESTS, stdout=subprocess.DEVNULL, stderr=err, env=env)
    return {"proc": proc, "job": job, "err": err, "seen": 0, "since": time.monotonic(),
            "core": core}


def _finish(child: dict, verdicts: dict) -> list:
    """Record a child's verdicts; if it died, record the step it died on; return what is left."""
    child["err"].seek(0)
    stderr = child["err"].read()
    child["err"].close()
    results = Path(child["job"]["results"])
    lines = [json.loads(line) for line in results.read_text().splitlines()] \
        if results.exists() else []
    started = None
    for line in lines:
        if "started" in line:
            started = line
        else:
            verdicts[(line["id"], line["run"])] = (line["outcome"], line["detail"])
            started = None
    left = [(mutation, [run for run in runs if (mutation_id(mutation), run) not in verdicts])
            for mutation, runs in child["job"]["items"]]
    left = [(mutation, runs) for mutation, runs in left if runs]
    code = child["proc"].returncode
    if not left and code == 0:
        return []
    work = Path(child["job"]["work"])
    c_err = (work / "fd2.txt").read_text(errors="replace") if (work / "fd2.txt").exists() else ""
    fault = (work / "fault.txt").read_text(errors="replace")
    hang = code == -signal.SIGALRM or child.get("killed")
    why = (f"{'no progress in ' + str(ALARM) + ' s' if hang else 'the child ended'} "
           f"(status {code}) in step {started['step'] if started else '?'}: "
           f"stderr {(c_err + stderr)[-800:]!r}; faulthandler: {_stack(fault)}")
    if started is None and not left:
        verdicts[("(a child's exit)", Path(child["job"]["work"]).name)] = ("crash", why)
        return []
    if started is None:
        # died between steps (or the harness failed): the first item not done takes it
        started = {"started": mutation_id(left[0][0]), "run": left[0][1][0], "step": "?"}
    verdicts[(started["started"], started["run"])] = ("hang" if hang else "crash", why)
    rest = []
    for mutation, runs in left:
        runs = [run for run in runs if (mutation_id(mutation), run) not in verdicts]
        if runs:
            rest.append([mutation, runs])
    return rest


def run_all(every: list, base: Path, root: Path) -> dict:
    """Run every mutation, both runs, in child processes; return (id, run) -> verdict."""
    pending = deque([[mutation, list(RUNS)] for mutation in every[k::BATCHES]]
                    for k in range(BATCHES))
    running: list[dict] = []
    verdicts: dict = {}
    serial = 0
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    while pending or running:
        while pending and len(running) < CHILDREN:
            busy = {child["core"] for child in running}
            core = next((core for core in cores if core not in busy), None)
            running.append(_start(pending.popleft(), base, root, serial,
                                  core if len(cores) >= CHILDREN else None))
            serial += 1
        time.sleep(0.05)
        for child in list(running):
            results = Path(child["job"]["results"])
            seen = results.stat().st_size if results.exists() else 0
            if seen != child["seen"]:
                child["seen"], child["since"] = seen, time.monotonic()
            elif child["proc"].poll() is None and time.monotonic() - child["since"] > STALL:
                child["proc"].kill()
                child["killed"] = True
            if child["proc"].poll() is not None:
                running.remove(child)
                rest = _finish(child, verdicts)
                if rest:
                    pending.appendleft(rest)
    return verdicts


def _work_folder(tmp_path: Path) -> tempfile.TemporaryDirectory:
    """A folder for the children's files: in memory where Linux has one.

    Creating, renaming and removing some 30,000 small files costs most of
    the test's time on a disk, and a third of it in memory.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return tempfile.TemporaryDirectory(prefix="test_97-", dir=shm)
    return tempfile.TemporaryDirectory(dir=tmp_path)


def test_every_metadata_mutation_gives_exact_values_or_one_line(tmp_path: Path):
    began = time.monotonic()
    base = tmp_path / "base.act.h5"
    write_base(base)
    data = base.read_bytes()
    regions = metadata_map(data, base)
    found = Counter(name for _, _, name in regions["used"])
    assert found == {"superblock": 1, "object header of '/'": 3, "group B-tree node": 1,
                     "local heap header": 1, "local heap data": 1, "object header of 'conv'": 1,
                     "symbol table node": 1, "chunk B-tree node": 2,
                     "object header of 'fc'": 1, "global heap collection": 1}, found
    # all of them; a quarter, spread over the file, under the quick profile (.ci/run's
    # lowest versions)
    every = sampled(mutations(data, regions))
    with _work_folder(tmp_path) as work:
        verdicts = run_all(every, base, Path(work))
    seconds = time.monotonic() - began

    not_chunk = len(data) - sum(end - start for start, end, _ in regions["chunks"])
    print(f"\n{len(every)} mutations of a {len(data)}-byte file ({len(regions['used_bytes'])} "
          f"metadata bytes in use of {not_chunk} not chunk data, x masks "
          f"{' '.join(f'{m:#04x}' for m in MASKS)}; "
          f"{sum(1 for m in every if m[0] == 'flip') - len(MASKS) * len(regions['used_bytes'])}"
          f" unused bytes; {sum(1 for m in every if m[0] == 'cut')} cuts), "
          f"{2 * len(every)} runs of dnn_mask in {seconds:.1f} s:")
    summary = []
    for run_name, (flags, _) in RUNS.items():
        counts = Counter(verdicts.get((mutation_id(m), run_name), ("not run", ""))[0]
                         for m in every)
        errors = Counter(verdicts[(mutation_id(m), run_name)][1].startswith("h5py reads")
                         for m in every
                         if verdicts.get((mutation_id(m), run_name), ("",))[0] == "error")
        line = (f"  {run_name} (dnn_mask {' '.join(flags)}): "
                + ", ".join(f"{outcome} {counts[outcome]}" for outcome in (*OK, *FAILURES)
                            if counts[outcome] or outcome in OK)
                + (f", not run {counts['not run']}" if counts["not run"] else "")
                + f" (errors where h5py reads the input: {errors[True]})")
        print(line)
        summary.append(line)
    # the mutations reach every path: both successes' and the error's
    reached = [f"no mutation reached {outcome!r} in the {run_name} run"
               for run_name in RUNS for outcome in ("exact", "error")
               if not any(verdicts.get((mutation_id(m), run_name), ("",))[0] == outcome
                          for m in every)]
    assert not reached, reached
    failed = [f"{name} {run_name}: {outcome}: {detail}"
              for m in every for run_name in RUNS
              for name in [mutation_id(m)]
              for outcome, detail in [verdicts.get((name, run_name), ("not run", ""))]
              if outcome not in OK]
    failed += [f"{name} {child}: {outcome}: {detail}"
               for (name, child), (outcome, detail) in verdicts.items()
               if name.startswith("(")]
    for line in failed:
        print("  FAILED", line)
    shown = "\n".join(line[:700] for line in failed[:20])
    more = f"\n... and {len(failed) - 20} more" if len(failed) > 20 else ""
    assert not failed, (f"{len(failed)} runs neither gave h5py's values nor failed in one "
                        f"line:\n" + "\n".join(summary) + "\n" + shown + more)
