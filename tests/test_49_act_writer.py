"""ActWriter: a file written a batch at a time, equal to save_act of all the batches.

The write contract (atomic output, inputs never replaced, full disk,
signals, concurrency) runs for ActWriter as one of the routes of
``tests/routes.py``; here are what only a streamed write has: many
batches, the checks of each batch against the first, where the work runs,
memory that does not grow with the batches, and resuming after a kill.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability import TEMP_GLOB

import dnnmask_xr as dx
import dnnmask_xr.xarray_.stream
from dnnmask_xr.act import growing as growing_module
from dnnmask_xr.act import parts as parts_module
from dnnmask_xr.testing import read_reference_act

SUFFIXES = (".act.h5", ".nc")


def _batches(count: int, size: int = 3, seed: int = 0) -> list[dict[str, object]]:
    """Batches of a small network: a conv layer, an fc layer, transformer tokens."""
    rng = np.random.default_rng(seed)
    return [{"conv": rng.random((size, 4, 3, 2), dtype=np.float32),
             "fc": rng.integers(-9, 9, (size, 5)).astype(np.int16),
             "vit": xr.DataArray(rng.random((size, 6, 3)), dims=("stimulus", "token", "channel"))}
            for _ in range(count)]


def _table(first: int, size: int) -> pd.DataFrame:
    numbers = range(first, first + size)
    return pd.DataFrame({"stimID": [f"img{i:04d}.png" for i in numbers],
                         "condition": ["cat" if i % 3 else "dog" for i in numbers],
                         "onset": np.arange(first, first + size) * 0.5})


HEADER = {"type": "image", "path": "/data/images", "title": "streamed"}


def _joined(batches: list[dict[str, object]]) -> dict[str, xr.DataArray]:
    """What save_act is given: each layer's batches joined along stimulus, labelled."""
    table = _table(0, sum(len(batch["fc"]) for batch in batches))
    acts = dx.Activations({name: np.concatenate([np.asarray(batch[name]) for batch in batches])
                           if name != "vit" else xr.concat([batch[name] for batch in batches],
                                                           "stimulus")
                           for name in batches[0]})
    return acts.with_stimuli(dx.Stimuli(HEADER, table))


def _append_all(writer: dx.ActWriter, batches: list[dict[str, object]], start: int = 0) -> None:
    done = sum(len(batch["fc"]) for batch in batches[:start])
    for batch in batches[start:]:
        size = len(batch["fc"])
        writer.append(batch, stimuli=dx.Stimuli(HEADER, _table(done, size)))
        done += size


def _assert_same_file(streamed: Path, saved: Path) -> None:
    """Equal values, dims, labels, stimulus table and header, and DNNBrain's view."""
    ours, theirs = dx.open_act(streamed), dx.open_act(saved)
    assert list(ours) == list(theirs)
    for name in theirs:
        xr.testing.assert_identical(ours[name].load(), theirs[name].load())
        assert ours[name].dtype == theirs[name].dtype
    assert ours.stim_header == theirs.stim_header
    if theirs.stimuli is None:
        assert ours.stimuli is None
    else:
        assert ours.stimuli.equals(theirs.stimuli)
    ref_ours, ref_theirs = read_reference_act(streamed), read_reference_act(saved)
    assert list(ref_ours) == list(ref_theirs)
    for name in ref_theirs:
        np.testing.assert_array_equal(ref_ours[name], ref_theirs[name])
        assert ref_ours[name].dtype == ref_theirs[name].dtype


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_fifty_batches_give_the_file_save_act_gives(suffix: str, tmp_path: Path):
    batches = _batches(50)
    batches.append({name: values[:2] for name, values in _batches(1, seed=9)[0].items()})
    with dx.ActWriter(tmp_path / f"streamed{suffix}", part_size=6) as writer:
        _append_all(writer, batches)
        assert writer.n_stimuli == 152
    report = writer.close()
    saved = tmp_path / f"saved{suffix}"
    expected = dx.save_act(_joined(batches), saved)
    assert [layer.name for layer in report.layers] == [layer.name for layer in expected.layers]
    assert {layer.method for layer in report.layers} == {"encoded"}
    _assert_same_file(tmp_path / f"streamed{suffix}", saved)
    # nothing else is left: the parts are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"streamed{suffix}", saved.name])
    # values against numpy, not only against save_act
    opened = dx.open_act(tmp_path / f"streamed{suffix}")
    np.testing.assert_array_equal(opened["fc"].values,
                                  np.concatenate([batch["fc"] for batch in batches]))
    assert opened["vit"].dims == ("stimulus", "token", "channel")


def test_unlabelled_stimuli_are_numbered_over_the_whole_run(tmp_path: Path):
    out = tmp_path / "plain.act.h5"
    batches = _batches(4)
    with dx.ActWriter(out) as writer:
        for batch in batches:
            writer.append({"conv": batch["conv"], "fc": batch["fc"]})
    opened = dx.open_act(out)
    np.testing.assert_array_equal(opened["conv"].stimulus.values, np.arange(1, 13))
    with h5py.File(out, "r") as root:
        # stimuli 1..n are not stored, as DNNBrain writes such files
        assert "stimulus" not in root.attrs
        assert list(root) == ["conv", "fc"]


def test_the_callers_buffer_may_be_reused_and_tensors_are_taken(tmp_path: Path):
    class Tensor:  # what a CPU torch tensor offers numpy, without torch
        def __init__(self, values: np.ndarray) -> None:
            self.values = values

        def __array__(self, dtype=None, copy=None):
            return self.values

    out = tmp_path / "reused.act.h5"
    buffer = np.zeros((2, 3), np.float32)
    with dx.ActWriter(out) as writer:
        for value in range(5):
            buffer[...] = value  # the model writes each batch into the same buffer
            writer.append({"fc": Tensor(buffer)})
    np.testing.assert_array_equal(dx.open_act(out)["fc"].values[:, 0],
                                  np.repeat(np.arange(5, dtype=np.float32), 2))


BAD_BATCHES = [
    ({"conv": np.zeros((2, 4, 3, 2), np.float64)}, r"^batch 2: layer 'conv' holds float64; "
     r"the first batch's holds float32$"),
    ({"other": np.zeros((2, 4, 3, 2), np.float32)}, r"^batch 2: it has the layers \['other'\]; "
     r"the first batch has \['conv'\]$"),
    ({"conv": np.zeros((2, 5, 3, 2), np.float32)}, r"^batch 2: layer 'conv' has \(5, 3, 2\) "
     r"units; the first batch's has \(4, 3, 2\)$"),
    ({"conv": xr.DataArray(np.zeros((2, 4, 3, 2), np.float32),
                           dims=("stimulus", "channel", "row", "column"),
                           coords={"channel": [4, 3, 2, 1]})},
     r"^batch 2: layer 'conv' numbers its channel units differently from the first batch$"),
    ({"conv": xr.DataArray(np.zeros((2, 4, 6), np.float32), dims=("stimulus", "token", "x"))},
     r"^batch 2: layer 'conv' has the unit dims \('token', 'x'\)"),
    ({"conv": "values"}, r"^batch 2: layer 'conv' is a str"),
]


@pytest.mark.parametrize(("batch", "message"), BAD_BATCHES,
                         ids=["dtype", "layers", "units", "numbers", "dims", "not-values"])
def test_a_batch_unlike_the_first_is_refused_naming_batch_and_layer(
        batch: dict, message: str, tmp_path: Path):
    out = tmp_path / "bad.act.h5"
    with pytest.raises(dx.DnnMaskError, match=message) as caught:
        with dx.ActWriter(out) as writer:
            writer.append({"conv": np.ones((2, 4, 3, 2), np.float32)})
            writer.append(batch)
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


LABELLED_FIRST = [
    ({"conv": xr.DataArray(np.ones((2, 4, 3, 2), np.float32),
                           dims=("stimulus", "channel", "row", "column"),
                           coords={"channel": [4, 3, 2, 1]})},
     r"^batch 2: layer 'conv' numbers its channel units differently from the first batch$"),
    ({"conv": xr.DataArray(np.ones((2, 4, 3, 2), np.float32),
                           dims=("stimulus", "channel", "row", "column"), attrs={"unit": "V"})},
     r"^batch 2: layer 'conv' has other attributes than in the first batch$"),
    ({"conv": xr.DataArray(np.ones((2, 4, 6), np.float32), dims=("stimulus", "channel", "x"))},
     r"^batch 2: layer 'conv' has the unit dims \('token', 'channel'\); the first batch's "
     r"are \('channel', 'x'\)$"),
]


@pytest.mark.parametrize(("first", "message"), LABELLED_FIRST,
                         ids=["numbers", "attrs", "dims"])
def test_a_plain_batch_after_a_labelled_first_is_refused(first: dict, message: str,
                                                         tmp_path: Path):
    # plain arrays are planned without xarray when they are laid out as the first batch:
    # a first batch labelled otherwise still tells them apart
    plain = {"conv": np.ones((2, *first["conv"].shape[1:]), np.float32)}
    with pytest.raises(dx.DnnMaskError, match=message):
        with dx.ActWriter(tmp_path / "out.act.h5") as writer:
            writer.append(first)
            writer.append(plain)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("ids", [None, "numbers", "text"])
def test_plain_batches_give_the_file_save_act_gives(ids: str | None, suffix: str,
                                                    tmp_path: Path):
    rng = np.random.default_rng(49)
    sizes = [3, 5, 2, 7, 1, 4]
    batches = [{"conv": rng.random((size, 4, 3, 2), dtype=np.float32),
                "tokens": rng.random((size, 6, 3)),
                "fc": rng.integers(-9, 9, (size, 5)).astype(np.int16)} for size in sizes]
    n = sum(sizes)
    labels = {None: np.arange(1, n + 1), "numbers": np.arange(100, 100 + n),
              "text": np.array([f"img{i:03d}.png" for i in range(n)])}[ids]
    with dx.ActWriter(tmp_path / f"streamed{suffix}", part_size=4) as writer:
        done = 0
        for batch, size in zip(batches, sizes, strict=True):
            writer.append(batch, stimuli=None if ids is None else labels[done:done + size])
            done += size
    joined = {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}
    dims = {"conv": ("stimulus", "channel", "row", "column"),
            "tokens": ("stimulus", "token", "channel"), "fc": ("stimulus", "channel")}
    dx.save_act({name: xr.DataArray(values, dims=dims[name], coords={"stimulus": labels})
                 for name, values in joined.items()}, tmp_path / f"saved{suffix}")
    _assert_same_file(tmp_path / f"streamed{suffix}", tmp_path / f"saved{suffix}")
    opened = dx.open_act(tmp_path / f"streamed{suffix}")
    np.testing.assert_array_equal(opened["fc"].stimulus.values, labels)
    for name, values in joined.items():
        np.testing.assert_array_equal(opened[name].values, values)


def test_the_first_batch_is_not_held(tmp_path: Path):
    # bug: the writer held the first batch's plan, the caller's arrays with it, all run
    import weakref

    with dx.ActWriter(tmp_path / "out.act.h5") as writer:
        first = {"fc": np.ones((4, 3), np.float32)}
        kept = weakref.ref(first["fc"])
        writer.append(first)
        del first
        gc.collect()
        assert kept() is None
        writer.append({"fc": np.zeros((4, 3), np.float32)})


class _Duck:
    """A duck array xarray keeps as it is, whose values are the memory it wraps."""

    __array_priority__ = 20

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.shape, self.dtype, self.ndim = values.shape, values.dtype, values.ndim

    def __array__(self, dtype=None, copy=None):
        return self.values

    def __array_function__(self, func, types, args, kwargs):
        return NotImplemented

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return NotImplemented

    def __getitem__(self, key):
        return _Duck(self.values[key])


def test_batches_are_copied_into_the_writers_own_arrays_only(tmp_path: Path):
    # a stored part's arrays take the next batch; an array that a layer's values were
    # read into may be the caller's memory (a duck array's), and must never take one
    callers = [np.full((2, 3), float(i), np.float32) for i in range(3)]
    kept = [array.copy() for array in callers]
    out = tmp_path / "out.act.h5"
    with dx.ActWriter(out, part_size=2) as writer:
        writer.append({"fc": xr.DataArray(_Duck(callers[0]), dims=("stimulus", "channel"))})
        writer.append({"fc": xr.DataArray(_Duck(callers[1]), dims=("stimulus", "channel"))})
        for value in range(3, 7):
            writer.append({"fc": np.full((2, 3), float(value), np.float32)})
        writer.append({"fc": callers[2]})
    for array, before in zip(callers, kept, strict=True):
        np.testing.assert_array_equal(array, before)
    np.testing.assert_array_equal(dx.open_act(out)["fc"].values[:, 0],
                                  np.repeat([0, 1, 3, 4, 5, 6, 2], 2).astype(np.float32))


@pytest.mark.parametrize("suffix", [".act.h5", ".nc"])
def test_a_duck_arrays_memory_may_be_reused_once_append_returns(tmp_path: Path, suffix: str):
    # its values are the caller's buffer, which a model may fill again for the next batch
    # while the batch before still waits for its part
    buffer = np.ones((2, 3), np.float32)
    out = tmp_path / f"out{suffix}"
    with dx.ActWriter(out, part_size=4) as writer:
        for value in (1, 2):
            buffer[...] = value
            writer.append({"fc": xr.DataArray(_Duck(buffer), dims=("stimulus", "channel"))})
        buffer[...] = -1
    np.testing.assert_array_equal(dx.open_act(out)["fc"].values[:, 0],
                                  np.array([1, 1, 2, 2], np.float32))


def test_layer_attributes_holding_nan_are_the_same_in_every_batch(tmp_path: Path):
    out = tmp_path / "out.nc"

    def batch() -> dict[str, xr.DataArray]:
        return {"fc": xr.DataArray(np.ones((2, 3), np.float32), dims=("stimulus", "channel"),
                                   attrs={"missing": np.nan, "scale": [0.5, np.nan]})}

    with dx.ActWriter(out) as writer:
        for _ in range(3):
            writer.append(batch())
    assert np.isnan(dx.open_act(out)["fc"].attrs["missing"])
    assert dx.open_act(out)["fc"].shape == (6, 3)


def test_stimuli_unlike_the_first_batchs_are_refused(tmp_path: Path):
    layers = {"fc": np.ones((2, 3), np.float32)}
    with dx.ActWriter(tmp_path / "s.act.h5") as writer:
        writer.append(layers, stimuli=["a", "b"])
        with pytest.raises(dx.DnnMaskError, match=r"^batch 2: stimuli gives 3 stimulus ID"):
            writer.append(layers, stimuli=["c", "d", "e"])
        with pytest.raises(dx.DnnMaskError, match=r"^batch 3: its stimulus IDs are of another "
                                                  r"kind"):
            writer.append(layers, stimuli=[7, 8])
        with pytest.raises(dx.DnnMaskError, match=r"^batch 4: its stimuli have the fields "
                                                  r"\['condition'\]"):
            writer.append(layers, stimuli=dx.Stimuli(
                {"type": "image", "path": "p"},
                pd.DataFrame({"stimID": ["c", "d"], "condition": ["x", "y"]})))
        writer.append(layers, stimuli=["c", "d"])  # a good batch still goes on
    np.testing.assert_array_equal(dx.open_act(tmp_path / "s.act.h5")["fc"].stimulus.values,
                                  ["a", "b", "c", "d"])


@pytest.mark.parametrize("stimuli", [[["a"], ["b"]], {"a", "b"}, (i for i in "ab"), "ab"],
                         ids=["nested", "set", "generator", "text"])
def test_stimuli_that_are_no_list_of_ids_are_said_so(stimuli: object, tmp_path: Path):
    # bug: the message counted them wrong: "stimuli gives 2 stimulus ID(s) for a batch of 2
    # stimuli" for two IDs in a list each, "1 stimulus ID(s)" for a set or a generator
    layers = {"fc": np.ones((2, 3), np.float32)}
    with dx.ActWriter(tmp_path / "s.act.h5") as writer:
        with pytest.raises(dx.DnnMaskError, match=(
                rf"^batch 1: stimuli is a {type(stimuli).__name__}, not a list of stimulus "
                r"IDs; give one ID per stimulus \(a list or 1-D array\), or a Stimuli table$")):
            writer.append(layers, stimuli=stimuli)
        writer.append(layers, stimuli=["a", "b"])


@pytest.mark.parametrize("empty", [[], None], ids=["no-ids", "unlabelled"])
def test_a_first_batch_of_no_stimulus_fixes_no_kind_of_ids(empty: list | None, tmp_path: Path):
    out = tmp_path / "out.act.h5"
    with dx.ActWriter(out) as writer:
        writer.append({"fc": np.ones((0, 3), np.float32)}, stimuli=empty)
        writer.append({"fc": np.ones((2, 3), np.float32)}, stimuli=["a.png", "b.png"])
        # the first batch with stimuli is what the next are held to
        with pytest.raises(dx.DnnMaskError, match=r"^batch 3: its stimulus IDs are of "
                                                   r"another kind \(text or numbers\)"):
            writer.append({"fc": np.ones((1, 3), np.float32)}, stimuli=[7])
    assert dx.open_act(out)["fc"].stimulus.values.tolist() == ["a.png", "b.png"]


def test_batches_appended_from_several_threads_go_in_whole(tmp_path: Path):
    out = tmp_path / "out.act.h5"
    start = threading.Barrier(4)

    def loader(worker: int, writer: dx.ActWriter) -> None:
        start.wait()
        for batch in range(10):
            numbers = np.arange(3) + 3 * (10 * worker + batch)
            # every value says which stimulus it belongs to
            writer.append({"conv": np.broadcast_to(numbers[:, None, None, None], (3, 4, 2, 2)),
                           "fc": np.broadcast_to(numbers[:, None], (3, 5)).astype(np.int32)},
                          stimuli=[f"s{n:03d}" for n in numbers])

    with dx.ActWriter(out, part_size=4) as writer:
        threads = [threading.Thread(target=loader, args=(worker, writer)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    acts = dx.open_act(out)
    ids = acts["fc"].stimulus.values
    assert sorted(ids) == [f"s{n:03d}" for n in range(120)]
    numbers = np.array([int(name[1:]) for name in ids])
    # each batch's three stimuli stay together, in order
    assert all(numbers[i + 1] == numbers[i] + 1 for i in range(0, 120, 3) for i in (i, i + 1))
    np.testing.assert_array_equal(acts["fc"].values, np.broadcast_to(numbers[:, None], (120, 5)))
    np.testing.assert_array_equal(acts["conv"].values[:, 3, 1, 1], numbers)


def test_an_exception_inside_the_with_leaves_nothing(tmp_path: Path):
    (tmp_path / "out.act.h5").write_bytes(b"the previous output")
    with pytest.raises(RuntimeError, match="the model failed"):
        with dx.ActWriter(tmp_path / "out.act.h5", part_size=3) as writer:
            _append_all(writer, _batches(4))
            assert writer.stimuli_done > 0 or writer.n_stimuli == 12
            raise RuntimeError("the model failed")
    assert [p.name for p in tmp_path.iterdir()] == ["out.act.h5"]
    assert (tmp_path / "out.act.h5").read_bytes() == b"the previous output"


def test_a_resumable_run_keeps_its_parts_and_goes_on_from_them(tmp_path: Path):
    out = tmp_path / "out.nc"
    batches = _batches(6)
    with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True) as writer:
        _append_all(writer, batches[:4])
        raise RuntimeError("killed")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".out.nc.parts"]
    with dx.ActWriter(out, resume=True) as writer:
        assert writer.stimuli_done == writer.n_stimuli == 12
        _append_all(writer, batches, start=writer.stimuli_done // 3)
    assert [p.name for p in tmp_path.iterdir()] == ["out.nc"]
    dx.save_act(_joined(batches), tmp_path / "saved.nc")
    _assert_same_file(out, tmp_path / "saved.nc")


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("first", [">", "<"], ids=["big-endian-first", "little-endian-first"])
@pytest.mark.parametrize("resume", [False, True])
def test_batches_in_either_byte_order_are_stored_in_the_firsts(suffix: str, first: str,
                                                               resume: bool, tmp_path: Path):
    # bug: a batch of the first's numbers in the other byte order was refused ("holds
    # >f4; the first batch's holds float32"); it is stored in the first's, as save_act
    # stores the first's arrays joined with it
    other = {">": "<", "<": ">"}[first]
    batches = [{"conv": layer["conv"].astype(order + "f4"),
                "fc": layer["fc"].astype(order + "i2")}
               for layer, order in zip(_batches(4), [first, other, other, first], strict=True)]
    out = tmp_path / f"streamed{suffix}"
    if resume:
        with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True) as writer:
            _append_all(writer, batches[:2])
            raise RuntimeError("killed")
    with dx.ActWriter(out, resume=resume) as writer:
        _append_all(writer, batches, start=writer.stimuli_done // 3)
    # NumPy joins them in its own byte order unless told
    joined = dx.Activations({name: np.concatenate([batch[name] for batch in batches],
                                                  dtype=batches[0][name].dtype)
                             for name in batches[0]})
    dx.save_act(joined.with_stimuli(dx.Stimuli(HEADER, _table(0, 12))),
                tmp_path / f"saved{suffix}")
    _assert_same_file(out, tmp_path / f"saved{suffix}")
    with dx.open_act(out) as acts:
        for name in ("conv", "fc"):
            np.testing.assert_array_equal(
                acts[name].values.reshape(12, -1),
                np.concatenate([batch[name] for batch in batches]).reshape(12, -1))


def test_resuming_refuses_a_batch_unlike_the_stored_ones(tmp_path: Path):
    out = tmp_path / "out.act.h5"
    with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True) as writer:
        writer.append({"fc": np.ones((2, 3), np.float32)})
        raise RuntimeError("killed")
    with pytest.raises(dx.DnnMaskError, match=r"^batch 1: layer 'fc' holds float64"):
        with dx.ActWriter(out, resume=True) as writer:
            writer.append({"fc": np.ones((2, 3))})
    # the parts of a resumable run stay for the next try
    assert [p.name for p in tmp_path.iterdir()] == [".out.act.h5.parts"]


def test_two_resumable_writers_of_one_output_are_refused(tmp_path: Path):
    out = tmp_path / "out.act.h5"
    with dx.ActWriter(out, resume=True) as writer:
        writer.append({"fc": np.ones((2, 3), np.float32)})
        with pytest.raises(dx.ActFileError, match=r"another streamed write to .* is under way"):
            dx.ActWriter(out, resume=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out.act.h5"]


def test_a_resumable_writer_dropped_unclosed_lets_go_of_its_parts(tmp_path: Path):
    out = tmp_path / "out.act.h5"
    with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True, part_size=2) as writer:
        writer.append({"fc": np.ones((2, 3), np.float32)})
        raise RuntimeError("killed")
    # a look at what is stored, the writer then dropped without close() or abandon()
    assert dx.ActWriter(out, resume=True).stimuli_done == 2
    gc.collect()
    assert [p.name for p in tmp_path.iterdir()] == [".out.act.h5.parts"]
    with dx.ActWriter(out, resume=True) as writer:  # the folder's lock was released
        assert writer.stimuli_done == 2
        writer.append({"fc": np.zeros((2, 3), np.float32)})
    np.testing.assert_array_equal(dx.open_act(out)["fc"].values[:, 0], [1, 1, 0, 0])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_writer_dropped_unclosed_leaves_nothing(suffix: str, tmp_path: Path):
    dropped = dx.ActWriter(tmp_path / f"out{suffix}", part_size=4)
    for _ in range(2):  # the second part waits for the first to be stored
        dropped.append({"fc": np.ones((4, 3), np.float32)})
    # the output's temporary file (.act.h5) or its folder of parts (.nc)
    (held,) = tmp_path.iterdir()
    assert held.match(TEMP_GLOB) and held.is_dir() == (suffix == ".nc"), held
    del dropped
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_a_run_without_resume_refuses_an_interrupted_runs_parts(tmp_path: Path):
    out = tmp_path / "out.act.h5"
    with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True, part_size=2) as writer:
        writer.append({"fc": np.ones((2, 3), np.float32)})
        raise RuntimeError("killed")
    with pytest.raises(dx.ActFileError, match=r"holds the parts of an interrupted streamed "
                       r"write to .*out\.act\.h5'; go on from them with resume=True"):
        dx.ActWriter(out)
    assert [p.name for p in tmp_path.iterdir()] == [".out.act.h5.parts"]


FORKED_CHILD = """
import os, sys
import numpy as np
import dnnmask_xr as dx
import dnnmask_xr.xarray_.stream

out = sys.argv[1]
writer = dx.ActWriter(out, part_size=2)
writer.append({"fc": np.ones((2, 3), np.float32)})
writer._wait()  # a part is stored
child = os.fork()
if child == 0:
    sys.exit(0)  # a data loader's worker ends as a program does: its exit handlers run
assert os.waitpid(child, 0)[1] == 0
writer.append({"fc": np.zeros((2, 3), np.float32)})
writer.close()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX's")
def test_a_forked_childs_copy_of_the_writer_leaves_the_run_alone(tmp_path: Path):
    out = tmp_path / "out.act.h5"
    done = subprocess.run([sys.executable, "-c", FORKED_CHILD, str(out)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(dx.open_act(out)["fc"].values[:, 0], [1, 1, 0, 0])
    assert [p.name for p in tmp_path.iterdir()] == ["out.act.h5"]


def test_a_missing_part_is_refused_in_one_line(tmp_path: Path):
    out = tmp_path / "out.act.h5"
    with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True, part_size=2) as writer:
        for _ in range(3):
            writer.append({"fc": np.ones((2, 3), np.float32)})
        writer._wait()  # the parts are stored
        raise RuntimeError("killed")
    (tmp_path / ".out.act.h5.parts" / "part-000002.act.h5").unlink()
    with pytest.raises(dx.ActFileError, match=r"lacks part 2 of a streamed write"):
        dx.ActWriter(out, resume=True)


def _labelled_fc(value: int, channels: tuple[int, ...] = (1, 2, 3), attrs: dict | None = None,
                 dtype: type = np.float32) -> dict[str, xr.DataArray]:
    return {"fc": xr.DataArray(np.full((2, 3), value, dtype), dims=("stimulus", "channel"),
                               coords={"channel": list(channels)}, attrs=attrs or {})}


@pytest.mark.parametrize("suffix", [*SUFFIXES, ".act.zarr"])
@pytest.mark.parametrize(("foreign", "said"), [
    (_labelled_fc(9, channels=(3, 2, 1)), "numbers its channel units differently"),
    (_labelled_fc(9, attrs={"unit": "V"}), "has other attributes"),
    (_labelled_fc(9, dtype=np.float64), "holds float64")], ids=["numbers", "attrs", "dtype"])
def test_a_part_of_another_run_put_among_the_parts_is_refused(
        suffix: str, foreign: dict, said: str, tmp_path: Path):
    # bug: a store's parts were joined by xarray without being compared (the other part's
    # channels aligned by label, its attributes dropped, the whole made float64)
    def crashed_run(out: Path, batches: list[dict]) -> None:
        with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True, part_size=2) as writer:
            for batch in batches:
                writer.append(batch)
            writer._wait()  # stored
            raise RuntimeError("killed")

    out, other = tmp_path / f"out{suffix}", tmp_path / f"other{suffix}"
    crashed_run(out, [_labelled_fc(0), _labelled_fc(1)])
    crashed_run(other, [foreign])
    parts = tmp_path / f".out{suffix}.parts"
    (tmp_path / f".other{suffix}.parts" / "part-000001.act.h5").rename(
        parts / "part-000003.act.h5")
    with pytest.raises(dx.ActFileError, match=rf"part-000003\.act\.h5': layer 'fc' {said}.*; "
                                              r"the parts of a streamed write were changed$"):
        with dx.ActWriter(out, resume=True) as writer:
            assert writer.stimuli_done == 6
    assert not out.exists()
    assert sorted(p.name for p in parts.iterdir()) == [
        "lock", "part-000001.act.h5", "part-000002.act.h5", "part-000003.act.h5"]


@pytest.mark.parametrize(("suffix", "store"), [
    (".act.h5", growing_module.GrowingWrite), (".nc", parts_module.Parts)])
def test_parts_are_written_off_the_callers_thread_while_it_goes_on(
        suffix: str, store: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    threads, release = [], threading.Event()
    real_add = store.add

    def add(self, *args):
        threads.append(threading.current_thread().name)
        release.wait(timeout=30)  # the first part is written slowly
        real_add(self, *args)

    monkeypatch.setattr(store, "add", add)
    with dx.ActWriter(tmp_path / f"out{suffix}") as writer:
        writer.append({"fc": np.ones((2, 3), np.float32)})
        # append returned while its part is still being written
        assert writer.stimuli_done == 0 and writer.n_stimuli == 2
        release.set()
        writer.append({"fc": np.ones((2, 3), np.float32)})
    assert threads and all(name.startswith("dnnmask-stream") for name in threads)
    assert threading.current_thread().name not in threads


def test_memory_does_not_grow_with_the_number_of_batches(tmp_path: Path):
    batch = np.random.default_rng(1).random((8, 64, 16, 16), dtype=np.float32)  # 512 KiB

    def traced(count: int) -> tuple[int, int]:
        """The peak of a run of `count` batches, and what it holds at rest before close."""
        tracemalloc.start()
        try:
            with dx.ActWriter(tmp_path / f"m{count}.act.h5") as writer:
                for _ in range(count):
                    writer.append({"conv": batch})
                writer._wait()  # every part stored: what is left is what the writer keeps
                gc.collect()
                held = tracemalloc.get_traced_memory()[0]
            return tracemalloc.get_traced_memory()[1], held
        finally:
            tracemalloc.stop()

    traced(1)  # the modules a write imports are not the batches' memory
    (few_peak, few_held), (many_peak, many_held) = traced(30), traced(300)
    # at rest, 270 batches more keep only their 2 160 stimulus IDs (8 bytes each);
    # anything kept per batch, 2 KiB a batch say, would show as 540 KiB
    assert many_held < few_held + 64 * 1024, (few_held, many_held)
    # at the peak, the part being written, the batch being copied and the chunks in
    # flight, whatever the count; which of them meet at the peak is the threads'
    # timing (a busy machine makes it vary), so the peaks are held to one bound
    # rather than compared with each other
    assert max(few_peak, many_peak) < 5 * batch.nbytes, (few_peak, many_peak)


def test_closed_writer_takes_no_batch(tmp_path: Path):
    writer = dx.ActWriter(tmp_path / "out.act.h5")
    with pytest.raises(dx.ActFileError, match="has no stimuli to write"):
        writer.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(dx.UsageError, match=r"closed|abandoned"):
        writer.append({"fc": np.ones((2, 3), np.float32)})


@pytest.mark.parametrize("bad", [{"part_size": 0}, {"resume": "yes"}, {"memory": -1}])
def test_bad_options_are_usage_errors(bad: dict, tmp_path: Path):
    with pytest.raises(dx.UsageError):
        dx.ActWriter(tmp_path / "out.act.h5", **bad)
    assert list(tmp_path.iterdir()) == []


# -- a kill -9 after a random batch, then resuming ----------------------------------------

RUN = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import dnnmask_xr as dx

    out, kill_after, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
    rng = np.random.default_rng(7)
    batches = [(rng.random((5, 6, 4, 4), dtype=np.float32), rng.random((5, 9)))
               for _ in range(12)]
    with dx.ActWriter(out, resume=resume, part_size=5) as writer:
        done = writer.stimuli_done
        print("resumed at", done, flush=True)
        for number, (conv, fc) in enumerate(batches[done // 5:], start=done // 5 + 1):
            writer.append({"conv": conv, "fc": fc},
                          stimuli=[f"s{number}-{i}" for i in range(5)])
            if number == kill_after:
                writer._wait()  # the batch is stored: what a later crash keeps
                os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.reliability
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_run_killed_after_a_random_batch_resumes_to_the_same_file(suffix: str, tmp_path: Path):
    script = tmp_path / "run.py"
    script.write_text(RUN)
    whole = tmp_path / f"whole{suffix}"
    done = subprocess.run([sys.executable, str(script), str(whole), "0", "fresh"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    kill_after = int(np.random.default_rng().integers(1, 12))
    out = tmp_path / f"out{suffix}"
    killed = subprocess.run([sys.executable, str(script), str(out), str(kill_after), "resume"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()
    resumed = subprocess.run([sys.executable, str(script), str(out), "0", "resume"],
                             capture_output=True, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(f"resumed at {5 * kill_after}\n"), (kill_after,
                                                                         resumed.stdout)
    _assert_same_file(out, whole)
    assert not any(name.endswith(".parts") for name in os.listdir(tmp_path))


CLEANUP_KILLED = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import dnnmask_xr as dx

    out, kill, resume = sys.argv[1], sys.argv[2] == "kill", sys.argv[3] == "resume"
    real_scandir, real_unlink = os.scandir, os.unlink


    class Listing(list):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass


    def scandir(*args, **kwargs):
        # a file system that lists a folder in the order its names were made (btrfs)
        with real_scandir(*args, **kwargs) as entries:
            return Listing(sorted(entries, key=lambda entry: entry.name))


    def unlink(path, *args, **kwargs):
        real_unlink(path, *args, **kwargs)
        if kill and os.path.basename(os.fspath(path)).startswith("part-"):
            os.kill(os.getpid(), signal.SIGKILL)  # as the first part is removed


    os.scandir, os.unlink = scandir, unlink
    values = np.arange(33, dtype=np.float32).reshape(11, 3)
    with dx.ActWriter(out, resume=resume, part_size=2) as writer:
        print("resumed at", writer.stimuli_done, flush=True)
        for start in range(writer.stimuli_done, 11, 2):
            writer.append({"fc": values[start:start + 2]},
                          stimuli=[f"s{i}" for i in range(start, min(start + 2, 11))])
""")


@pytest.mark.reliability
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_kill_while_the_parts_are_removed_leaves_a_run_that_resumes(suffix: str,
                                                                     tmp_path: Path):
    # bug: closing removed the parts in the order the file system lists them: a kill
    # on the way left, say, parts 3 to 6 without 1 and 2, and resuming refused the
    # folder ("lacks part 1"; remove it to start again)
    script = tmp_path / "run.py"
    script.write_text(CLEANUP_KILLED)
    out = tmp_path / f"out{suffix}"
    killed = subprocess.run([sys.executable, str(script), str(out), "kill", "resume"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = subprocess.run([sys.executable, str(script), str(out), "go on", "resume"],
                             capture_output=True, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    # the last part was removed first: the others are there to go on from
    assert resumed.stdout == "resumed at 10\n"
    written = dx.open_act(out)
    np.testing.assert_array_equal(written["fc"].values,
                                  np.arange(33, dtype=np.float32).reshape(11, 3))
    np.testing.assert_array_equal(written.stimulus_table().ids, [f"s{i}" for i in range(11)])
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, "run.py"]


@pytest.mark.reliability
def test_a_kill_while_the_parts_of_a_run_not_resumed_are_removed_leaves_nothing(
        tmp_path: Path):
    # bug: the parts' folder was removed after its watchdog stopped: a kill on the way
    # left it beside the output
    script = tmp_path / "run.py"
    script.write_text(CLEANUP_KILLED)
    out = tmp_path / "out.nc"
    killed = subprocess.run([sys.executable, str(script), str(out), "kill", "no resume"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    deadline = time.monotonic() + 60  # the watchdog removes the folder once it sees
    while len(list(tmp_path.iterdir())) > 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nc", "run.py"]
    np.testing.assert_array_equal(dx.open_act(out)["fc"].values,
                                  np.arange(33, dtype=np.float32).reshape(11, 3))


@pytest.mark.properties
@settings(max_examples=examples(30), deadline=None)
@given(sizes=st.lists(st.integers(0, 5), min_size=1, max_size=6).filter(lambda s: sum(s) > 0),
       part_size=st.none() | st.integers(1, 6), suffix=st.sampled_from(SUFFIXES),
       crash=st.none() | st.integers(0, 6))
def test_any_batches_parts_and_crash_give_the_file_save_act_gives(
        sizes: list[int], part_size: int | None, suffix: str, crash: int | None,
        tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("stream")
    total = sum(sizes)
    rng = np.random.default_rng(total)
    whole = {"conv": rng.random((total, 3, 2, 2), dtype=np.float32),
             "fc": rng.integers(-9, 9, (total, 4)).astype(np.int16)}
    bounds = np.cumsum([0, *sizes])
    out = folder / f"streamed{suffix}"

    def append(writer: dx.ActWriter, batches: range, first: int) -> None:
        """Append the given batches (empty ones too) from stimulus ``first`` on."""
        for number in batches:
            start, stop = max(bounds[number], first), bounds[number + 1]
            if stop < start:
                continue
            writer.append({name: values[start:stop] for name, values in whole.items()},
                          stimuli=dx.Stimuli(HEADER, _table(start, stop - start)))

    resume = crash is not None
    if resume:
        # a run that dies after `crash` batches, then one that goes on from what it stored
        with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True,
                                                       part_size=part_size) as writer:
            append(writer, range(min(crash, len(sizes))), 0)
            raise RuntimeError("killed")
        assert not out.exists()
    with dx.ActWriter(out, resume=resume, part_size=part_size) as writer:
        done = writer.stimuli_done
        assert done <= total
        append(writer, range(len(sizes)), done)
    saved = folder / f"saved{suffix}"
    dx.save_act(dx.Activations(whole).with_stimuli(dx.Stimuli(HEADER, _table(0, total))), saved)
    _assert_same_file(out, saved)
    assert sorted(p.name for p in folder.iterdir()) == sorted([out.name, saved.name])


class _SwallowedCtrlC:
    """Raises KeyboardInterrupt from __del__: Python can only print it as "ignored"."""

    def __del__(self) -> None:
        raise KeyboardInterrupt


def test_a_ctrl_c_python_swallowed_stops_the_run_at_the_next_batch(tmp_path: Path, capsys):
    # bug: a Ctrl-C that landed in a weak reference's callback (h5py's, xarray's) between
    # batches was printed as "Exception ignored" and the run went on to write the file
    out = tmp_path / "out.act.h5"
    with pytest.raises(KeyboardInterrupt), dx.ActWriter(out, part_size=2) as writer:
        writer.append({"fc": np.ones((2, 3), np.float32)})
        _SwallowedCtrlC()  # freed at once
        writer.append({"fc": np.ones((2, 3), np.float32)})
    assert list(tmp_path.iterdir()) == []
    assert "KeyboardInterrupt" not in capsys.readouterr().err
    # once no writer is open, the program's own hook is back
    assert sys.unraisablehook is not dnnmask_xr.act._interrupt._note_lost_interrupt


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("resume", [False, True])
def test_a_layer_of_no_unit_streams_as_save_act_writes_it(suffix: str, resume: bool,
                                                         tmp_path: Path):
    # bug: the growing output divided by its zero channels (ZeroDivisionError), and the
    # parts' route said the parts "were changed" (a layer of no unit is stored unchunked)
    rng = np.random.default_rng(2)
    whole = {"empty": np.ones((5, 0), np.float32),
             "conv": rng.random((5, 3, 2, 2), dtype=np.float32)}
    out = tmp_path / f"streamed{suffix}"
    with dx.ActWriter(out, resume=resume, part_size=2) as writer:
        for start in range(0, 5, 2):
            writer.append({name: values[start:start + 2] for name, values in whole.items()})
    dx.save_act(whole, tmp_path / f"saved{suffix}")
    _assert_same_file(out, tmp_path / f"saved{suffix}")


@pytest.mark.parametrize("suffix", [*SUFFIXES, ".act.zarr"])
@pytest.mark.parametrize("resume", [False, True])
@pytest.mark.parametrize(("second", "kept"), [
    ({"model": "alexnet", "lr": 0.1, "date": "2021-01-01"}, {"model": "alexnet"}),
    ({"model": "vgg16"}, {})], ids=["agree", "disagree"])
def test_the_attrs_all_batches_of_activations_agree_on_are_the_files(
        suffix: str, resume: bool, second: dict, kept: dict, tmp_path: Path):
    # bug: the root attributes of Activations batches (the provenance open_act reads, a
    # model's name) were dropped without a word; open_act of the batches saved as files
    # keeps what they all agree on, under the attrs given
    def batch(value: int, attrs: dict) -> dx.Activations:
        return dx.Activations({"fc": np.full((2, 3), value, np.float32)}, attrs=attrs)

    out = tmp_path / f"out{suffix}"
    batches = [batch(0, {"model": "alexnet", "seed": 3, "date": "2020-01-01"}),
               {"fc": np.full((2, 3), 1, np.float32)},  # no root attributes
               batch(2, second)]
    if resume:  # a run killed after its first batch, then one that goes on
        with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True, part_size=2,
                                                       attrs={"seed": 4}) as writer:
            writer.append(batches[0])
            writer._wait()  # stored
            raise RuntimeError("killed")
    with dx.ActWriter(out, resume=resume, part_size=2, attrs={"seed": 4}) as writer:
        for number in range(writer.stimuli_done // 2, 3):
            writer.append(batches[number])
    with dx.open_act(out) as written:
        assert {key: value for key, value in written.attrs.items()
                if key not in ("date", "software")} == {**kept, "seed": 4}
        assert written.attrs["date"] != "2020-01-01"
        np.testing.assert_array_equal(written["fc"].values[:, 0], [0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_run_with_a_layer_of_no_unit_resumes_after_a_crash(suffix: str, tmp_path: Path):
    # bug: resuming read the stored layer's chunks (None: it is stored unchunked) as a
    # step along stimulus, and raised TypeError: the interrupted run could not go on
    rng = np.random.default_rng(3)
    whole = {"empty": np.ones((7, 0), np.float32),
             "conv": rng.random((7, 3, 2, 2), dtype=np.float32)}
    out = tmp_path / f"streamed{suffix}"

    def run(stop: int) -> None:
        with dx.ActWriter(out, resume=True, part_size=2) as writer:
            for start in range(writer.stimuli_done, stop, 2):
                writer.append({name: values[start:min(start + 2, stop)]
                               for name, values in whole.items()})
            if stop < 7:
                writer._wait()  # stored
                raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run(4)
    assert not out.exists()
    run(7)
    dx.save_act(whole, tmp_path / f"saved{suffix}")
    _assert_same_file(out, tmp_path / f"saved{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, f"saved{suffix}"])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_run_of_empty_batches_writes_the_empty_layers_save_act_writes(suffix: str,
                                                                         tmp_path: Path):
    layers = {"conv": np.ones((0, 3, 2, 2), np.float32), "fc": np.ones((0, 4), np.int16)}
    stimuli = dx.Stimuli(HEADER, _table(0, 0))
    out = tmp_path / f"streamed{suffix}"
    with dx.ActWriter(out, attrs={"model": "alexnet"}) as writer:
        writer.append(layers, stimuli=stimuli)
        writer.append(layers, stimuli=stimuli)
    dx.save_act(dx.Activations(layers).with_stimuli(stimuli), tmp_path / f"saved{suffix}",
                attrs={"model": "alexnet"})
    _assert_same_file(out, tmp_path / f"saved{suffix}")
    with dx.open_act(out) as acts:
        assert acts.attrs["model"] == "alexnet"
        assert list(acts.stimulus_table().fields) == ["condition", "onset"]


def test_a_parts_layers_deflate_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # a fully connected layer's part is one chunk: were each layer's chunks stored before
    # the next layer's went to the pool, one of its two threads would wait at every layer
    from dnnmask_xr.act import layer_writer

    both = threading.Barrier(2, timeout=10)
    deflate = layer_writer.deflated_chunk

    def side_by_side(piece: np.ndarray, steps: tuple[int, ...]) -> bytes:
        both.wait()  # broken, and raising, unless another chunk is deflating too
        return deflate(piece, steps)

    monkeypatch.setattr(layer_writer, "deflated_chunk", side_by_side)
    rng = np.random.default_rng(0)
    batches = [{name: rng.standard_normal((4, 16), np.float32) for name in ("fc6", "fc7")}
               for _ in range(3)]
    out = tmp_path / "out.act.h5"
    with dx.ActWriter(out, threads=2) as writer:
        for batch in batches:
            writer.append(batch)
    written = dx.open_act(out)
    for name in ("fc6", "fc7"):
        np.testing.assert_array_equal(
            written[name].values, np.concatenate([batch[name] for batch in batches]))


@pytest.mark.parametrize(("suffix", "resume"), [
    (".act.h5", False), (".nc", False), (".act.h5", True)])
def test_a_run_whose_part_failed_to_be_stored_takes_no_more_batches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, resume: bool):
    # the failure is said by the next append; a caller that goes on must not get a file
    # without the part (nor write into the output the failure closed: that crashed Python)
    from dnnmask_xr.act import layer_writer

    deflate, calls = layer_writer.deflated_chunk, []

    def full_disk(piece: np.ndarray, steps: tuple[int, ...]) -> bytes:
        calls.append(1)
        if len(calls) == 2:  # the second part's one chunk
            raise OSError(errno.ENOSPC, "No space left on device")
        return deflate(piece, steps)

    monkeypatch.setattr(layer_writer, "deflated_chunk", full_disk)
    out = tmp_path / f"out{suffix}"
    writer = dx.ActWriter(out, resume=resume)
    batches = [{"fc": np.full((2, 3), i, np.float32)} for i in range(4)]
    writer.append(batches[0])
    writer.append(batches[1])
    with pytest.raises(dx.ActFileError, match=r"No space left on device"):
        writer.append(batches[2])
    stopped = r"stopped when a part failed to be stored, as an earlier call said"
    with pytest.raises(dx.UsageError, match=rf"^the streamed write to .* {stopped} .*; no "
                                            r"batch can be added$"):
        writer.append(batches[3])
    with pytest.raises(dx.UsageError, match=rf"^the streamed write to .* {stopped} "):
        writer.close()
    assert not out.exists()
    if not resume:
        assert os.listdir(tmp_path) == []
        return
    monkeypatch.setattr(layer_writer, "deflated_chunk", deflate)
    with dx.ActWriter(out, resume=True) as again:
        assert again.stimuli_done == 2  # the first part, stored before the failure
        for batch in batches[1:]:
            again.append(batch)
    np.testing.assert_array_equal(dx.open_act(out)["fc"].values[:, 0],
                                  np.repeat(np.arange(4, dtype=np.float32), 2))


@pytest.mark.parametrize("suffix", [".act.h5", ".nc"])
@pytest.mark.parametrize("labelled", [False, True], ids=["numpy", "DataArray"])
def test_one_array_of_ids_may_be_refilled_for_every_batch(
        tmp_path: Path, suffix: str, labelled: bool):
    ids, values = np.empty(4, np.int64), np.empty((4, 3), np.float32)
    out = tmp_path / f"out{suffix}"
    with dx.ActWriter(out, part_size=12) as writer:  # the batches wait for one part
        for first in range(0, 12, 4):
            ids[:] = np.arange(first, first + 4) + 100
            values[:] = ids[:, None]
            layer = xr.DataArray(values, dims=("stimulus", "channel")) if labelled else values
            writer.append({"fc": layer}, stimuli=ids)
    written = dx.open_act(out)
    np.testing.assert_array_equal(written.stimulus_table().ids, np.arange(100, 112))
    np.testing.assert_array_equal(written["fc"].values[:, 0], np.arange(100, 112))


@pytest.mark.parametrize("first", [np.uint64, np.int64])
def test_integer_ids_numpy_would_join_as_floats_are_refused(tmp_path: Path, first: type):
    # uint64 with int64 joins as float64: 2**53 + 1 would be written as 2**53
    other = np.int64 if first is np.uint64 else np.uint64
    layers = {"fc": np.zeros((2, 3), np.float32)}
    with dx.ActWriter(tmp_path / "out.act.h5") as writer:
        writer.append(layers, stimuli=np.array([2**53 + 1, 2**53 + 3], first))
        with pytest.raises(dx.DnnMaskError, match=(
                rf"^batch 2: its stimulus IDs are {np.dtype(other)}, which NumPy joins with "
                rf"the first batch's {np.dtype(first)} only as floats \(losing digits\); "
                r"give integers of one type$")):
            writer.append(layers, stimuli=np.array([5, 7], other))
        writer.append(layers, stimuli=np.array([5, 7], first))
    np.testing.assert_array_equal(dx.open_act(tmp_path / "out.act.h5").stimulus_table().ids,
                                  np.array([2**53 + 1, 2**53 + 3, 5, 7], first))

    def labelled(ids: list[str], hashes: list[int], dtype: type) -> dict[str, xr.DataArray]:
        return {"fc": xr.DataArray(np.zeros((2, 3), np.float32), dims=("stimulus", "channel"),
                                   coords={"stimulus": ids,
                                           "hash": ("stimulus", np.array(hashes, dtype))})}

    with dx.ActWriter(tmp_path / "fields.act.h5") as writer:
        writer.append(labelled(["a", "b"], [2**53 + 1, 5], first))
        with pytest.raises(dx.DnnMaskError, match=(
                rf"^batch 2: its stimulus field 'hash' holds {np.dtype(other)}, which NumPy "
                rf"joins with the first batch's {np.dtype(first)} only as floats")):
            writer.append(labelled(["c", "d"], [1, 5], other))


@pytest.mark.parametrize("suffix", [".act.h5", ".nc"])
def test_a_resumable_run_that_stored_nothing_leaves_no_folder(tmp_path: Path, suffix: str):
    # a folder holding only its lock stopped every later run without resume, as an
    # interrupted run's parts
    out = tmp_path / f"out{suffix}"
    with pytest.raises(dx.DnnMaskError, match=r"^batch 1: layer 'fc' is a 5-D"), \
            dx.ActWriter(out, resume=True) as writer:
        writer.append({"fc": np.ones((2, 3, 1, 1, 1), np.float32)})
    assert list(tmp_path.iterdir()) == []
    with dx.ActWriter(out) as writer:
        writer.append({"fc": np.ones((2, 3), np.float32)})
    assert dx.open_act(out)["fc"].shape == (2, 3)


@pytest.mark.parametrize("suffix", [".act.h5", ".nc"])
def test_a_resumed_run_is_given_the_attrs_of_the_run_it_goes_on_from(tmp_path: Path,
                                                                    suffix: str):
    out = tmp_path / f"out{suffix}"
    attrs = {"model": "alexnet", "layers": [1, 2], "lr": 0.1}
    batch = {"fc": np.ones((2, 3), np.float32)}

    def crashed_run(**options: object) -> None:
        with pytest.raises(RuntimeError), dx.ActWriter(out, resume=True, **options) as writer:
            writer.append(batch)
            writer._wait()  # stored
            raise RuntimeError("killed")

    crashed_run(attrs=attrs)
    for other, said in (({**attrs, "model": "vgg16"}, r"model='vgg16', but .* stored "
                                                       r"model='alexnet'"),
                        ({**attrs, "seed": 3}, r"seed=3, but .* stored no 'seed'")):
        with pytest.raises(dx.UsageError, match=rf"^attrs gives {said}; a resumed run is "
                                                r"given the attrs of the run it goes on from$"):
            dx.ActWriter(out, resume=True, attrs=other)
    with dx.ActWriter(out, resume=True, attrs=attrs) as writer:  # the same: goes on
        writer.append(batch)
    out.unlink()
    crashed_run(attrs=attrs)
    with dx.ActWriter(out, resume=True) as writer:  # none: the stored run's are kept
        writer.append(batch)
    written = dx.open_act(out)
    assert written.n_stimuli == 4
    assert written.attrs["model"] == "alexnet" and written.attrs["lr"] == 0.1
    np.testing.assert_array_equal(written.attrs["layers"], [1, 2])


@pytest.mark.parametrize(("suffix", "store"), [
    (".act.h5", growing_module.GrowingWrite), (".nc", parts_module.Parts)])
def test_a_ctrl_c_while_append_waits_leaves_the_batch_out(
        suffix: str, store: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # append waits while the part before is stored; a Ctrl-C then must leave the
    # batch out, as the caller sees it: appending it again stores it once
    release, real_add = threading.Event(), store.add

    def add(self, *args):
        release.wait(timeout=30)  # the first part is stored slowly
        real_add(self, *args)

    monkeypatch.setattr(store, "add", add)
    batches = [{"fc": np.full((2, 3), i, np.float32)} for i in range(3)]
    out = tmp_path / f"out{suffix}"
    with dx.ActWriter(out, part_size=2) as writer:
        writer.append(batches[0])
        ctrl_c = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        ctrl_c.start()
        with pytest.raises(KeyboardInterrupt):
            writer.append(batches[1])
        ctrl_c.join()
        assert writer.n_stimuli == 2
        release.set()
        writer.append(batches[1])
        writer.append(batches[2])
        assert writer.n_stimuli == 6
    written = dx.open_act(out)["fc"]
    np.testing.assert_array_equal(written.values[:, 0], np.repeat(np.arange(3.0), 2))
    np.testing.assert_array_equal(written["stimulus"].values, np.arange(1, 7))
