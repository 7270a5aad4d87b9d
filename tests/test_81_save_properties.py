"""Properties of saving selections: lazy .isel/.sel chains, and dnn_mask against save_act."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import examples
from hypothesis import example, given, settings
from hypothesis import strategies as st

import dnnmask_xr as dx
from dnnmask_xr.cli import main
from dnnmask_xr.testing import ALEXNET_SHAPES, as_dnnmask, relu_activations, write_reference_act

pytestmark = pytest.mark.properties

DIMS = ("stimulus", "channel", "row", "column")
NUMBERED = DIMS[1:]
SHAPE = (6, 8, 5, 5)
CHUNKS = (2, 3, 2, 2)
SUFFIXES = [".act.h5", ".nc"]


@pytest.fixture(scope="module")
def chunked(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A float32 layer of distinct values, in chunks that selections cross."""
    values = np.random.default_rng(3).permutation(np.prod(SHAPE)).reshape(SHAPE)
    values = (values + 0.5).astype(np.float32)
    path = tmp_path_factory.mktemp("chain") / "in.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("conv5", data=values, chunks=CHUNKS, compression="gzip")
    return path, values


# A chain: 1 to 3 steps, each ("isel" | "sel", {dim: indexer}). The strategy keeps
# track of each dim's current labels, so .sel picks labels that exist.


def positions(size: int):
    lists = st.lists(st.integers(-size, size - 1), min_size=1, max_size=7)
    steps = st.sampled_from([-3, -2, -1, 1, 2, 3])
    bounds = st.none() | st.integers(-size - 1, size + 1)
    slices = st.builds(slice, bounds, bounds, steps).filter(
        lambda s: len(range(*s.indices(size))) > 0)
    return lists | slices


def label_slices(labels: np.ndarray):
    # labels here increase strictly: slices by label, ends included
    ends = st.sampled_from(labels.tolist())
    step = st.integers(1, 3)
    return st.tuples(ends, ends, step, st.booleans()).map(
        lambda t: slice(min(t[:2]), max(t[:2]), t[2]) if t[3]
        else slice(max(t[:2]), min(t[:2]), -t[2]))


@st.composite
def chains(draw):
    labels = {dim: np.arange(1, size + 1) for dim, size in zip(DIMS, SHAPE, strict=True)}
    chain = []
    for _ in range(draw(st.integers(1, 3))):
        unique = [dim for dim in NUMBERED if np.unique(labels[dim]).size == labels[dim].size]
        method = draw(st.sampled_from(["isel", "sel"])) if unique else "isel"
        dims = draw(st.lists(st.sampled_from(DIMS if method == "isel" else unique),
                             min_size=1, max_size=3, unique=True))
        step = {}
        for dim in dims:
            current = labels[dim]
            if method == "isel":
                step[dim] = draw(positions(current.size))
            elif np.all(np.diff(current) > 0) and draw(st.booleans()):
                step[dim] = draw(label_slices(current))
            else:
                step[dim] = draw(st.lists(st.sampled_from(current.tolist()), min_size=1,
                                          max_size=6))
            labels[dim] = current[to_positions(method, step[dim], current)]
        chain.append((method, step))
    return chain


def to_positions(method: str, indexer, labels: np.ndarray):
    """The positions (or slice) along one axis that numpy indexing takes."""
    if method == "isel":
        return indexer
    if isinstance(indexer, list):
        return [int(np.flatnonzero(labels == label)[0]) for label in indexer]
    lo, hi = sorted((indexer.start, indexer.stop))
    inside = np.flatnonzero((labels >= lo) & (labels <= hi))
    return inside[::indexer.step]


def apply_numpy(values: np.ndarray, chain) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    labels = {dim: np.arange(1, size + 1) for dim, size in zip(DIMS, values.shape, strict=True)}
    for method, step in chain:
        for dim, indexer in step.items():
            axis = DIMS.index(dim)
            where = to_positions(method, indexer, labels[dim])
            key = (slice(None),) * axis + (where,)
            values = values[key]
            labels[dim] = labels[dim][where]
    return values, labels


def apply_xarray(array, chain):
    for method, step in chain:
        array = getattr(array, method)(step)
    return array


@pytest.mark.parametrize("suffix", SUFFIXES)
@settings(max_examples=examples(40), deadline=None)
@given(chain=chains())
# the last chunk along column holds one column: kept whole, it can be copied as it is
@example(chain=[("sel", {"column": [5]})])
@example(chain=[("isel", {"channel": [7, 0, 5], "row": slice(None, None, -2)}),
                ("sel", {"channel": [1, 8], "column": slice(4, 2, -1)})])
def test_saved_chain_equals_numpy(chunked, suffix, chain):
    inp, original = chunked
    expected, labels = apply_numpy(original, chain)
    with tempfile.TemporaryDirectory() as scratch, dx.open_act(inp) as acts:
        selected = apply_xarray(acts["conv5"], chain)
        assert selected.dims == DIMS
        out = Path(scratch) / f"out{suffix}"
        dx.save_act(dx.Activations({"conv5": selected}), out)
        with dx.open_act(out) as back:
            assert list(back) == ["conv5"]
            got = back["conv5"]
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got.values, expected, strict=True)
            for dim in DIMS:
                np.testing.assert_array_equal(got[dim].values, labels[dim], err_msg=dim)


# dnn_mask and save_act on the scenarios of bench/bench_mask.py, at AlexNet's
# shapes with a few stimuli. Masks are DNNBrain's dictionaries (chn/row/col).

N_STIM = 6
BIG = {"conv5": (256, 13, 13)}
EVERY_8TH = list(range(1, 193, 8))
DMASK = {"conv1": {"chn": list(range(1, 11)), "row": list(range(20, 31)),
                   "col": list(range(20, 31))},
         "fc1": {"chn": list(range(1, 101))}}
#: name -> (input, flags (None: -dmask of the mask), mask, memory budget or None)
SCENARIOS = {
    "conv1-whole": ("alexnet", ["-layer", "conv1"], {"conv1": {}}, None),
    "all-layers": ("alexnet", ["-layer", *ALEXNET_SHAPES],
                   {layer: {} for layer in ALEXNET_SHAPES}, None),
    "dmask": ("alexnet", None, DMASK, None),
    "unsorted": ("alexnet", ["-layer", "conv5", "-chn", "200", "3", "17"],
                 {"conv5": {"chn": [200, 3, 17]}}, None),
    "spread": ("alexnet", ["-layer", "conv2", "-chn", *map(str, EVERY_8TH)],
               {"conv2": {"chn": EVERY_8TH}}, None),
    "small": ("alexnet", ["-layer", "conv5", "-chn", "1", "2", "3"],
              {"conv5": {"chn": [1, 2, 3]}}, None),
    # the bench's layer far over the memory budget: a smaller one, a smaller budget
    "big-whole": ("big", ["-layer", "conv5"], {"conv5": {}}, 2**20),
}


def stimuli(n: int) -> dx.Stimuli:
    table = pd.DataFrame({"stimID": [f"n{i:02}.JPEG" for i in range(n)],
                          "label": np.arange(n) % 3, "condition": ["cat", "dog"] * (n // 2),
                          "onset": np.where(np.arange(n) == 1, np.nan, np.arange(n) * 0.5)})
    return dx.Stimuli({"type": "image", "path": "images"}, table)


@pytest.fixture(scope="module")
def bench_inputs(tmp_path_factory) -> dict[str, tuple[Path, Path, dict[str, np.ndarray]]]:
    """The bench's inputs, small, written the way DNNBrain writes them; with stim tables."""
    where = tmp_path_factory.mktemp("bench")
    inputs = {}
    for name, n_stim, shapes in [("alexnet", N_STIM, ALEXNET_SHAPES), ("big", 24, BIG)]:
        layers = relu_activations(n_stim, shapes, seed=5)
        act, stim = where / f"{name}.act.h5", where / f"{name}.stim.csv"
        write_reference_act(act, layers)
        dx.write_stim(stimuli(n_stim), stim)
        inputs[name] = act, stim, layers
    return inputs


def numpy_mask(layers: dict[str, np.ndarray], mask) -> dict[str, np.ndarray]:
    out = {}
    for name, axes in mask.items():
        values = layers[name]
        for axis, key in enumerate(("chn", "row", "col"), start=1):
            if key in axes:
                values = np.take(values, np.asarray(axes[key]) - 1, axis=axis)
        out[name] = values
    return out


def assert_same_files(first: Path, second: Path) -> None:
    with dx.open_act(first) as a, dx.open_act(second) as b:
        assert list(a) == list(b)
        assert a.stim_header == b.stim_header
        assert a.stimuli.equals(b.stimuli)
        for name in a:
            x, y = a[name], b[name]
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x.values, y.values, err_msg=name, strict=True)
            for dim in DIMS:
                np.testing.assert_array_equal(x[dim].values, y[dim].values, err_msg=dim)
            assert sorted(x.coords) == sorted(y.coords), name
            for key in x.coords:
                np.testing.assert_array_equal(x[key].values, y[key].values, err_msg=key)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_command_equals_save_act(tmp_path, bench_inputs, scenario):
    which, flags, dnnbrain_mask, memory = SCENARIOS[scenario]
    act, stim, layers = bench_inputs[which]
    mask = as_dnnmask(dnnbrain_mask)
    if flags is None:
        dx.write_dmask(mask, tmp_path / "bench.dmask.csv")
        flags = ["-dmask", str(tmp_path / "bench.dmask.csv")]
    budget = {} if memory is None else {"memory": memory}
    ours, theirs = tmp_path / "command.act.h5", tmp_path / "save_act.act.h5"
    argv = ["-act", str(act), *flags, "-stim", str(stim), "-out", str(ours), "-q",
            *(["--memory", str(memory)] if budget else [])]
    assert main(argv) == 0
    with dx.open_act(act, stim=stim) as acts:
        dx.save_act(acts.mask(mask, by="ordinal"), theirs, **budget)
    assert_same_files(ours, theirs)
    expected = numpy_mask(layers, dnnbrain_mask)
    with dx.open_act(ours) as got:
        assert list(got) == list(expected)
        for name, values in expected.items():
            np.testing.assert_array_equal(got[name].values, values, err_msg=name, strict=True)
            for axis, key in enumerate(("chn", "row", "col"), start=1):
                numbers = dnnbrain_mask[name].get(key, np.arange(1, values.shape[axis] + 1))
                np.testing.assert_array_equal(got[name][DIMS[axis]].values, numbers)
