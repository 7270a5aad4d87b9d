"""The ``.dmask.csv`` and ``.stim.csv`` files a write reads, through every route.

- A text input that is not a regular file (a FIFO, ``/dev/zero``, a link to
  it, a folder) or is larger than :data:`~dnnmask_xr.formats._lines.MAX_TEXT_BYTES`
  is refused at once, in one line naming the file, before a byte is read.
  These run in child processes with a timeout, one per route running all
  its cases: the risk is a hang, or reading until memory runs out (the
  child's address space is capped, so a regression fails instead of
  exhausting the machine).
- An output that is the ``-dmask`` or ``-stim`` file (by its path, a hard
  link or a symbolic link) is refused like an output that is the ``-act``
  file: exit status 2, one line, the text file byte for byte as it was.
- A ``.stim.csv`` written as DNNBrain's ``StimulusFile.write`` writes it
  (integers as ``1.0`` when every field is numeric) reads back with integer
  stimulus IDs and labels.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import N_STIMULI, SMALL_SHAPES, digest
from reliability import (
    assert_ok,
    assert_one_line_error,
    computed_once,
    run_in_children,
    run_route,
)
from routes import ROUTES

from dnnmask_xr.formats._lines import MAX_TEXT_BYTES
from dnnmask_xr.testing import relu_activations, write_reference_act

pytestmark = pytest.mark.reliability

#: Address space a child may take: far more than a run needs, far less than
#: reading /dev/zero until MemoryError (gigabytes).
CHILD_MEMORY = 2**31
#: How long a child may take to refuse a special file: it must not read it at all.
SPECIAL_TIMEOUT = 60


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def _special(kind: str, path: Path) -> tuple[Path, str]:
    """Make the special file ``kind`` at ``path``; return it and what the error says it is."""
    if kind == "fifo":
        os.mkfifo(path)
        return path, r"is a FIFO \(named pipe\)"
    if kind == "dev-zero":
        return Path("/dev/zero"), r"is a character device"
    if kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")
        return path, r"is a character device"
    if kind == "folder":
        path.mkdir()
        return path, r"is a folder"
    # sparse: one byte too many, and no disk used
    with open(path, "wb") as file:
        file.truncate(MAX_TEXT_BYTES + 1)
    return path, rf"holds {MAX_TEXT_BYTES + 1} bytes, more than the {MAX_TEXT_BYTES}"


KINDS = ["fifo", "dev-zero", "link-to-dev-zero", "folder", "too-large"]
FLAGS = ["-dmask", "-stim"]


def _refusals(root: Path) -> dict[str, dict]:
    """Give every route each special file as each text input: one capped child per route.

    A child runs its route's cases one after the other (``run_in_children``), so that a
    hang or a crash is a child's and names its case; each case has a folder of its own,
    listed before and after. A child's first case is a normal write (``regular``),
    which shows that the cap and the timeout leave an ordinary run alone.
    """
    act = root / "in.act.h5"
    write_reference_act(act, relu_activations(N_STIMULI, SMALL_SHAPES, seed=1))
    cases: dict[str, list[dict]] = {route: [] for route in ROUTES}
    for route in ROUTES:
        for flag, kind in [("-dmask", "regular"), *((f, k) for f in FLAGS for k in KINDS)]:
            folder = root / route / f"{flag[1:]}-{kind}"
            folder.mkdir(parents=True)
            text = folder / ("m.dmask.csv" if flag == "-dmask" else "s.stim.csv")
            if kind == "regular":
                text.write_text("conv5=chn\n1\n")
                path, what = text, ""
            else:
                path, what = _special(kind, text)
            units = ["-dmask", path] if flag == "-dmask" else ["-layer", "conv5", "-stim", path]
            cases[route].append({
                "id": f"{route} {flag} {kind}", "path": str(path), "what": what,
                "folder": str(folder), "before": sorted(p.name for p in folder.iterdir()),
                "argv": [str(arg) for arg in ("-act", act, *units, "-out", folder / "o.act.h5")]})
    verdicts = run_in_children(
        [[sys.executable, "-c", "import reliability; reliability.run_cases()", route,
          json.dumps(cases[route])] for route in ROUTES],
        timeout=SPECIAL_TIMEOUT, preexec_fn=_capped)
    for case in (case for route in ROUTES for case in cases[route]):
        verdict = verdicts.setdefault(case["id"], {"not run": True})
        verdict.update({key: case[key] for key in ("path", "what", "before")})
        verdict["after"] = sorted(p.name for p in Path(case["folder"]).iterdir())
    return verdicts


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return computed_once(tmp_path_factory, "special-text-inputs", _refusals)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("route", ROUTES)
def test_text_inputs_that_are_not_regular_files_are_refused_at_once(
        route: str, flag: str, kind: str, refusals: dict[str, dict]):
    verdict = refusals[f"{route} {flag} {kind}"]
    assert verdict.get("status") == 1, verdict
    assert (verdict["traceback"], verdict["stdout"]) == (None, ""), verdict
    assert_one_line_error(verdict["stderr"], "^" + re.escape(verdict["path"]), verdict["what"],
                          r"a \.(dmask|stim)\.csv file is a regular file")
    assert verdict["after"] == verdict["before"]


@pytest.mark.parametrize("route", ROUTES)
def test_the_capped_child_runs_a_normal_write(route: str, refusals: dict[str, dict]):
    # the memory cap and the timeout leave an ordinary run alone, so that the refusals
    # above are the project's and not the cap's
    verdict = refusals[f"{route} -dmask regular"]
    assert (verdict.get("status"), verdict["stderr"], verdict["traceback"]) == (0, "", None)
    assert verdict["after"] == ["m.dmask.csv", "o.act.h5"]


def test_the_size_limit_is_the_documented_one():
    assert MAX_TEXT_BYTES == 256 * 2**20
    for page in ("formats.md", "reliability.md"):
        text = (Path(__file__).resolve().parents[1] / "docs" / page).read_text()
        assert "256 MiB" in text, page


def test_a_text_file_at_the_limit_is_read(tmp_path: Path, monkeypatch):
    # in this process, with the limit lowered, so that no large file is needed
    import dnnmask_xr.formats._lines as lines
    from dnnmask_xr import read_dmask
    from dnnmask_xr.errors import FormatError

    text = b"conv5=chn\n1,2\n"
    path = tmp_path / "m.dmask.csv"
    path.write_bytes(text)
    monkeypatch.setattr(lines, "MAX_TEXT_BYTES", len(text))
    assert read_dmask(path)["conv5"].channel == (1, 2)
    monkeypatch.setattr(lines, "MAX_TEXT_BYTES", len(text) - 1)
    with pytest.raises(FormatError, match=rf"holds {len(text)} bytes, more than the "
                                          rf"{len(text) - 1}") as caught:
        read_dmask(path)
    assert (caught.value.path, caught.value.line) == (str(path), None)


def test_a_file_that_grows_past_the_limit_while_read_is_refused(tmp_path: Path, monkeypatch):
    # the size is checked before reading, and again by reading at most one byte more
    import dnnmask_xr.formats._lines as lines
    from dnnmask_xr import read_dmask
    from dnnmask_xr.errors import FormatError

    path = tmp_path / "m.dmask.csv"
    path.write_bytes(b"conv5=chn\n1,2\n")
    real_fstat = os.fstat

    def fstat_before_growth(fd: int) -> os.stat_result:
        result = real_fstat(fd)
        with open(path, "ab") as file:  # the file grows after it was measured
            file.write(b"3,4\n" * 10)
        return result

    monkeypatch.setattr(lines, "MAX_TEXT_BYTES", 20)
    monkeypatch.setattr(lines.os, "fstat", fstat_before_growth)
    with pytest.raises(FormatError, match=r"grew past 20 bytes while it was read"):
        read_dmask(path)


# -- an output that is a text input --------------------------------------------------------


def _text_inputs(folder: Path, stim_text: str) -> dict[str, Path]:
    dmask = folder / "m.dmask.csv"
    dmask.write_text("conv5=chn\n3,1\n")
    stim = folder / "s.stim.csv"
    stim.write_text(stim_text)
    return {"-dmask": dmask, "-stim": stim}


@pytest.mark.parametrize("how", ["same-name", "hard-link", "symlink"])
@pytest.mark.parametrize("flag", ["-dmask", "-stim"])
@pytest.mark.parametrize("route", ROUTES)
def test_an_output_that_is_a_text_input_is_refused(route: str, flag: str, how: str,
                                                   act_file: Path, stim_text: str,
                                                   tmp_path: Path):
    files = _text_inputs(tmp_path, stim_text)
    text = files[flag]
    out = tmp_path / "o.act.h5"
    if how == "same-name":
        # the text file itself, named like an output
        text = text.rename(tmp_path / f"{text.name}.act.h5")
        files[flag] = out = text
    elif how == "hard-link":
        os.link(text, out)
    else:
        out.symlink_to(text.name)
    before = {path: digest(path) for path in files.values()}
    listing = sorted(p.name for p in tmp_path.iterdir())
    done = run_route("-act", act_file, "-dmask", files["-dmask"], "-stim", files["-stim"],
                     "-out", out, route=route)
    assert done.returncode == 2, done.stderr
    assert_one_line_error(done.stderr, re.escape(repr(str(out))), r"is the input file",
                          "the mask" if flag == "-dmask" else "the stimulus table",
                          r"choose another output path")
    assert {path: digest(path) for path in files.values()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing
    if how == "symlink":
        assert out.is_symlink()


def test_the_text_files_a_plan_reads_are_its_inputs(act_file: Path, stim_text: str,
                                                    tmp_path: Path):
    from dnnmask_xr import open_act, read_dmask, read_stim
    from dnnmask_xr.act.files import open_file
    from dnnmask_xr.act.mask import plan_mask
    from dnnmask_xr.xarray_.save import plan_layers

    files = _text_inputs(tmp_path, stim_text)
    mask = read_dmask(files["-dmask"])
    stimuli = read_stim(files["-stim"])
    # remembering the file changes neither equality nor the value
    assert mask.source == str(files["-dmask"].resolve())
    assert stimuli.source == str(files["-stim"].resolve())
    assert mask == type(mask)(dict(mask)) and type(mask)(dict(mask)).source is None
    assert stimuli.equals(type(stimuli)(stimuli.header, stimuli.table))
    expected = {mask.source: "mask", stimuli.source: "stimulus table"}
    with open_file(str(act_file)) as root:
        assert dict(plan_mask(root, mask, stim=files["-stim"]).inputs) == expected
        assert dict(plan_mask(root, mask, stim=stimuli).inputs) == expected
    with open_act(act_file, stim=files["-stim"]) as acts:
        assert dict(plan_layers(acts.mask(mask)).inputs) == expected
        assert dict(plan_layers(acts).inputs) == {stimuli.source: "stimulus table"}


# -- what DNNBrain writes ----------------------------------------------------------------


def dnnbrain_stim_text(n: int) -> str:
    """A video ``.stim.csv`` as DNNBrain's ``StimulusFile.write`` writes it.

    Every field is numeric, so pandas makes each row float and the integer
    frame numbers and labels come out as ``1.0``; the last row has no line end.
    """
    rows = [f"{float(i + 1)},{float(i % 3)},{float(i)},1.0" for i in range(n)]
    return ("type=video\npath=/data/run1.mp4\ntitle=frames\n"
            "data=stimID,label,onset,duration\n" + "\n".join(rows))


@pytest.mark.parametrize("route", ROUTES)
def test_a_stim_file_written_by_dnnbrain_is_read_with_integers(route: str, act_file: Path,
                                                               tmp_path: Path):
    stim = tmp_path / "frames.stim.csv"
    stim.write_text(dnnbrain_stim_text(N_STIMULI))
    out = tmp_path / "o.act.h5"
    assert_ok(run_route("-act", act_file, "-layer", "fc3", "-stim", stim, "-out", out,
                        route=route))
    with h5py.File(out, "r") as root:
        ids = root.attrs["stimulus"]
        assert ids.dtype == np.int64 and ids.tolist() == list(range(1, N_STIMULI + 1))
        if route != "save_act-dict":  # a dict of layers keeps the fields, not the header
            labels = root.attrs["stimulus:label"]
            assert labels.dtype == np.int64
            assert labels.tolist() == [i % 3 for i in range(N_STIMULI)]


def test_a_stim_file_written_by_dnnbrain_reads_back_and_writes_integers(tmp_path: Path):
    from dnnmask_xr import open_act, read_stim, write_stim

    path = tmp_path / "frames.stim.csv"
    path.write_text(dnnbrain_stim_text(3))
    stimuli = read_stim(path)
    assert stimuli.table.dtypes.astype(str).to_dict() == {
        "stimID": "int64", "label": "int64", "onset": "float64", "duration": "float64"}
    assert stimuli.stim_ids.tolist() == [1, 2, 3]
    assert stimuli.table["label"].tolist() == [0, 1, 2]
    write_stim(stimuli, tmp_path / "again.stim.csv")
    assert (tmp_path / "again.stim.csv").read_text().splitlines()[-3:] == [
        "1,0,0.0,1.0", "2,1,1.0,1.0", "3,2,2.0,1.0"]
    assert read_stim(tmp_path / "again.stim.csv").equals(stimuli)
    # and through open_act, on a file of three stimuli
    act = tmp_path / "three.act.h5"
    with h5py.File(act, "w") as root:
        root["fc3"] = np.zeros((3, 2, 1, 1), np.float32)
    with open_act(act, stim=path) as acts:
        assert acts["fc3"].stimulus.values.tolist() == [1, 2, 3]
        assert acts["fc3"].label.dtype == np.int64


@pytest.mark.parametrize("kind", ["missing", "under-a-file"])
@pytest.mark.parametrize("reader", ["read_dmask", "read_stim"])
def test_a_text_file_that_cannot_be_read_is_a_format_error(tmp_path: Path, kind: str,
                                                           reader: str):
    import dnnmask_xr as dx

    path = tmp_path / "x.txt"
    if kind == "under-a-file":
        # ENOTDIR: a path through a regular file (root reads past permissions)
        path.write_text("conv5=chn\n1\n")
        path = tmp_path / "x.txt" / "inside"
    with pytest.raises(dx.FormatError, match=re.escape(str(path)) + r": cannot read it: "):
        getattr(dx, reader)(path)
