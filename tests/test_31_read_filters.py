"""Lazy reads equal numpy for every way a layer can be stored and every indexer.

Each storage kind (gzip at several levels, shuffle, fletcher32, lzf, chunked
without a filter, contiguous, chunks that overhang the layer's edge or its
whole extent, chunks never written) gets one file holding layers of several
dtypes. Every indexer kind xarray passes down (integers, slices of any step,
integer arrays, pointwise arrays, ``.sel`` numbers), every way of getting
values out (``.values``, ``.load()``, ``.compute()``, ``np.asarray``, dask,
the ``dnnact`` backend) must give numpy's answer bit for bit, whatever path
the reader takes through the file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import examples
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from dnnmask_xr import open_act
from dnnmask_xr.act.layout import DIMS

#: The layers of every file: name -> (dtype, shape); all have 6 stimuli.
LAYERS = {
    "conv_f32": ("float32", (6, 8, 4, 6)),
    "conv_f64": ("float64", (6, 4, 6, 2)),
    "conv_i16": ("int16", (6, 6, 2, 4)),
    "conv_u8": ("uint8", (6, 12, 2, 2)),
    "conv_f16": ("float16", (6, 2, 4, 4)),
    "fc_f32": ("float32", (6, 10, 1, 1)),
}
#: Chunk kinds that write only this part of each layer; the rest is never written.
WRITTEN_REGION = (slice(1, 4), slice(0, 2), slice(None), slice(0, 1))
FILL = 7


def _halves(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks that tile the layer exactly: half of every even axis."""
    return tuple(size // 2 if size % 2 == 0 else size for size in shape)


def _overhanging(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks that never divide an axis of 3 or more: the last chunk is partial."""
    return tuple(size // 2 + 1 if size >= 3 else size for size in shape)


def _beyond(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks larger than the layer along every axis but the stimuli (resizable layers)."""
    return (4, *(size + 1 for size in shape[1:]))


def _one_stimulus(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Many small chunks: one stimulus, at most two units along each axis."""
    return (1, *(2 if size % 2 == 0 else 1 for size in shape[1:]))


@dataclass(frozen=True)
class Storage:
    """How a file's layers are stored: the chunk rule (None: contiguous) and h5py options."""

    chunks: Callable[[tuple[int, ...]], tuple[int, ...]] | None
    options: dict[str, Any] = field(default_factory=dict)
    #: False: only WRITTEN_REGION is written, whole chunks stay unallocated
    written: bool = True


STORAGE = {
    "gzip-0": Storage(_halves, {"compression": "gzip", "compression_opts": 0}),
    "gzip-1": Storage(_halves, {"compression": "gzip", "compression_opts": 1}),
    "gzip-4": Storage(_halves, {"compression": "gzip", "compression_opts": 4}),
    "gzip-9": Storage(_halves, {"compression": "gzip", "compression_opts": 9}),
    "shuffle-gzip": Storage(_halves, {"compression": "gzip", "shuffle": True}),
    "gzip-fletcher32": Storage(_halves, {"compression": "gzip", "fletcher32": True}),
    "lzf": Storage(_halves, {"compression": "lzf"}),
    "chunked-uncompressed": Storage(_halves),
    "contiguous": Storage(None),
    "partial-edge-chunks": Storage(_overhanging, {"compression": "gzip"}),
    "chunks-beyond-shape": Storage(_beyond, {"compression": "gzip", "maxshape": (None,) * 4}),
    "one-stimulus-chunks": Storage(_one_stimulus, {"compression": "gzip"}),
    "unwritten-chunks-gzip": Storage(_halves, {"compression": "gzip", "fillvalue": FILL},
                                     written=False),
    "unwritten-chunks-uncompressed": Storage(_halves, {"fillvalue": FILL}, written=False),
}
KINDS = list(STORAGE)


def _values(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Random values of ``dtype``; floats include NaN, infinities, -0.0 and a subnormal."""
    kind = np.dtype(dtype)
    if kind.kind == "f":
        values = rng.standard_normal(shape).astype(kind)
        flat = values.reshape(-1)
        specials = [np.nan, np.inf, -np.inf, -0.0, np.finfo(kind).smallest_subnormal,
                    np.finfo(kind).max]
        flat[rng.choice(flat.size, len(specials), replace=False)] = specials
        return values
    info = np.iinfo(kind)
    return rng.integers(info.min, info.max, size=shape, dtype=kind, endpoint=True)


class Files(dict):
    """A dict that hypothesis shows by its keys, not by every value of every layer."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {', '.join(self)}>"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """One file per storage kind: its path and the values each layer reads as."""
    folder = tmp_path_factory.mktemp("filters")
    rng = np.random.default_rng(31)
    files = Files()
    for kind, storage in STORAGE.items():
        path = str(folder / f"{kind}.act.h5")
        expected = {}
        with h5py.File(path, "w") as root:
            for name, (dtype, shape) in LAYERS.items():
                values = _values(rng, dtype, shape)
                chunks = None if storage.chunks is None else storage.chunks(shape)
                if storage.written:
                    root.create_dataset(name, data=values, chunks=chunks, **storage.options)
                    expected[name] = values
                else:
                    dataset = root.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks,
                                                  **storage.options)
                    dataset[WRITTEN_REGION] = values[WRITTEN_REGION]
                    expected[name] = np.full(shape, FILL, dtype=dtype)
                    expected[name][WRITTEN_REGION] = values[WRITTEN_REGION]
        files[kind] = (path, expected)
    return files


#: How a file is opened; the backend opens one layer (group) at a time. The
#: files are opened once per module, so nothing is cached: every key is read
#: from the file, never from values an earlier test loaded.
OPENINGS: dict[str, Callable[[str, str], Any]] = {
    "lazy": lambda path, name: open_act(path, cache=False),
    "dask-file-chunks": lambda path, name: open_act(path, chunks={}),
    "dask-stimulus-2": lambda path, name: open_act(path, chunks={"stimulus": 2}),
    "backend": lambda path, name: xr.open_dataset(path, engine="dnnact", group=name,
                                                  cache=False),
    "backend-dask": lambda path, name: xr.open_dataset(path, engine="dnnact", group=name,
                                                       chunks={}),
}
OTHER_OPENINGS = [opening for opening in OPENINGS if opening != "lazy"]


@pytest.fixture(scope="module")
def layer_via(stored):
    """Hand out layers, each file opened once per way of opening it (per layer for the backend).

    Tests read selections of these layers, never a whole opened layer, so the
    backend's in-memory cache (xarray's ``cache=True``) stays empty and every
    read goes to the file.
    """
    opened = {}

    def layer(opening: str, kind: str, name: str) -> xr.DataArray:
        key = (opening, kind, name if opening.startswith("backend") else None)
        if key not in opened:
            opened[key] = OPENINGS[opening](stored[kind][0], name)
        return opened[key][name]

    yield layer
    for each in opened.values():
        each.close()


def assert_same(got: Any, expected: Any) -> None:
    """Assert equal dtype, shape and bits (NaN, -0.0 and subnormals included)."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    unsigned = f"u{expected.dtype.itemsize}"
    np.testing.assert_array_equal(got.view(unsigned), expected.view(unsigned))


def outer(data: np.ndarray, key: tuple[Any, ...]) -> np.ndarray:
    """Numpy's outer indexing: one axis at a time, integers dropping their axis."""
    for axis in reversed(range(data.ndim)):
        data = np.take(data, np.arange(data.shape[axis])[key[axis]], axis=axis)
    return data


# Strategies: an indexer for one axis of a given size, a key for a shape, a layer and its key.

def positions(size: int) -> st.SearchStrategy[int]:
    return st.integers(-size, size - 1)


def _drawable(item: slice, size: int) -> bool:
    # xarray (normalize_slice) and dask both read a negative-step slice that
    # starts before -size, empty in numpy, as starting at the last position
    # (slice(-7, None, -1) on 6 positions gives all 6, reversed): not drawn
    return not (item.step is not None and item.step < 0 and item.start is not None
                and item.start < -size)


@functools.cache
def indexers(size: int) -> st.SearchStrategy[Any]:
    """Integers (negative too), integer arrays (any order, repeats, empty), any slice."""
    bound = st.none() | st.integers(-size - 2, size + 2)
    step = st.none() | st.integers(-size - 1, -1) | st.integers(1, size + 1)
    slices = st.builds(slice, bound, bound, step).filter(lambda item: _drawable(item, size))
    dtype = st.sampled_from([np.int64, np.int32])
    if size == 0:
        return slices | dtype.map(lambda kind: np.array([], dtype=kind))
    arrays = st.builds(np.array, st.lists(positions(size), max_size=2 * size), dtype=dtype)
    return st.one_of(positions(size), arrays, slices)


@functools.cache
def keys(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(*(indexers(size) for size in shape))


def layer_and(key_strategy: Callable[[tuple[int, ...]], st.SearchStrategy[Any]]):
    """A layer's name and a key drawn for its shape."""
    return st.one_of(*(st.tuples(st.just(name), key_strategy(shape))
                       for name, (_, shape) in LAYERS.items()))


def awkward(shape: tuple[int, ...]) -> tuple[Any, ...]:
    """A key with every indexer kind: a negative integer, an unsorted array with repeats
    and negative positions, a reversed stepped slice, a plain slice."""
    channels = shape[1]
    return (-1, np.array([channels - 1, 0, channels - 1, -channels]), slice(None, None, -2),
            slice(1, 3))


PROPERTIES = settings(max_examples=examples(25), deadline=None)
WHOLE = (slice(None),) * 4
NOTHING = (slice(0, 0, -1), np.array([], dtype=np.int64), slice(None), 0)
SCALAR = (0, -1, 0, -1)


@pytest.mark.parametrize("kind", KINDS)
def test_whole_layers_equal_numpy(layer_via, stored, kind):
    for name, values in stored[kind][1].items():
        assert_same(layer_via("lazy", kind, name).values, values)


@pytest.mark.parametrize("kind", KINDS)
@PROPERTIES
@given(layer_key=layer_and(keys))
@example(layer_key=("conv_f32", awkward(LAYERS["conv_f32"][1])))
@example(layer_key=("conv_f16", NOTHING))
@example(layer_key=("fc_f32", SCALAR))
def test_outer_indexing_equals_numpy(layer_via, stored, kind, layer_key):
    name, key = layer_key
    got = layer_via("lazy", kind, name).isel(dict(zip(DIMS, key, strict=True))).values
    assert_same(got, outer(stored[kind][1][name], key))


@pytest.mark.parametrize("kind", KINDS)
@PROPERTIES
@given(layer_key=layer_and(keys), data=st.data())
def test_chained_selections_equal_numpy(layer_via, stored, kind, layer_key, data):
    name, first = layer_key
    picked = outer(stored[kind][1][name], first)
    kept = [dim for dim, item in zip(DIMS, first, strict=True) if not isinstance(item, int)]
    second = data.draw(keys(picked.shape), label="second")
    got = (layer_via("lazy", kind, name).isel(dict(zip(DIMS, first, strict=True)))
           .isel(dict(zip(kept, second, strict=True))).values)
    assert_same(got, outer(picked, second))


@st.composite
def pointwise_keys(draw, shape: tuple[int, ...]) -> tuple[dict[int, list[int]], dict[int, Any]]:
    """Positions of the same length along some axes, any indexer along the others."""
    axes = draw(st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True))
    count = draw(st.integers(0, 5))
    points = {axis: draw(st.lists(positions(shape[axis]), min_size=count, max_size=count))
              for axis in axes}
    others = {axis: draw(indexers(shape[axis])) for axis in range(4) if axis not in points}
    return points, others


def check_pointwise(layer: xr.DataArray, values: np.ndarray, points: dict[int, list[int]],
                    others: dict[int, Any]) -> None:
    # numpy: the point axis first, then the other axes in order, outer-indexed
    axes = sorted(points)
    moved = np.moveaxis(values, axes, range(len(axes)))
    picked = moved[tuple(np.array(points[axis], dtype=np.int64) for axis in axes)]
    rest = [axis for axis in range(4) if axis not in points]
    expected = outer(picked, (slice(None), *(others[axis] for axis in rest)))
    dims = ["point", *(DIMS[axis] for axis in rest if not isinstance(others[axis], int))]

    indexer = {DIMS[axis]: xr.DataArray(np.array(items, dtype=np.int64), dims="point")
               for axis, items in points.items()}
    indexer.update({DIMS[axis]: item for axis, item in others.items()})
    got = layer.isel(indexer)
    assert sorted(got.dims) == sorted(dims)
    assert_same(got.transpose(*dims).values, expected)


@pytest.mark.parametrize("kind", KINDS)
@PROPERTIES
@given(layer_key=layer_and(pointwise_keys))
@example(layer_key=("conv_f32", ({1: [7, 0, 7], 2: [3, -1, 0]},
                                 {0: slice(None, None, -1), 3: np.array([4, 1])})))
@example(layer_key=("conv_i16", ({0: [], 3: []}, {1: 2, 2: slice(None)})))
def test_pointwise_indexing_equals_numpy(layer_via, stored, kind, layer_key):
    name, (points, others) = layer_key
    check_pointwise(layer_via("lazy", kind, name), stored[kind][1][name], points, others)


@pytest.mark.parametrize("opening", OTHER_OPENINGS)
@PROPERTIES
@given(kind=st.sampled_from(KINDS), layer_key=layer_and(pointwise_keys))
def test_pointwise_indexing_through_dask_and_the_backend(layer_via, stored, opening, kind,
                                                         layer_key):
    name, (points, others) = layer_key
    arrays = [item for item in others.values() if isinstance(item, np.ndarray)]
    empty = any(not items for items in points.values()) or any(not a.size for a in arrays)
    if "dask" in opening:
        # xarray broadcasts pointwise and array indexers to 2-D index arrays;
        # dask's vindex fails on them when they are empty: ValueError (zero-size
        # array to reduction operation maximum) or TypeError (reduce() of empty
        # iterable), depending on the chunks. Not drawn.
        assume(not (arrays and empty))
    check_pointwise(layer_via(opening, kind, name), stored[kind][1][name], points, others)


@functools.cache
def numbers(size: int) -> st.SearchStrategy[Any]:
    """What ``.sel`` takes: a 1-based number, a list of them, a slice of them (inclusive)."""
    number = st.integers(1, size)
    bound = st.none() | st.integers(0, size + 1)
    return st.one_of(number, st.lists(number, max_size=2 * size), st.builds(slice, bound, bound))


def number_keys(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(*(numbers(size) for size in shape))


def as_positions(item: Any, size: int) -> Any:
    """The 0-based positions ``.sel`` should pick for ``item`` on numbers ``1..size``."""
    if isinstance(item, slice):
        labels = np.arange(1, size + 1)
        low = -np.inf if item.start is None else item.start
        high = np.inf if item.stop is None else item.stop
        return np.flatnonzero((labels >= low) & (labels <= high))
    if isinstance(item, list):
        return np.array(item, dtype=np.int64) - 1
    return item - 1


def check_sel(layer: xr.DataArray, values: np.ndarray, key: tuple[Any, ...]) -> None:
    positions_ = tuple(as_positions(item, size)
                       for item, size in zip(key, values.shape, strict=True))
    got = layer.sel(dict(zip(DIMS, key, strict=True))).values
    assert_same(got, outer(values, positions_))


@pytest.mark.parametrize("kind", KINDS)
@PROPERTIES
@given(layer_key=layer_and(number_keys))
@example(layer_key=("conv_f32", (6, [8, 1, 1, 3], slice(2, 3), [])))
def test_sel_numbers_equal_numpy(layer_via, stored, kind, layer_key):
    name, key = layer_key
    check_sel(layer_via("lazy", kind, name), stored[kind][1][name], key)


@pytest.mark.parametrize("opening", OTHER_OPENINGS)
@PROPERTIES
@given(kind=st.sampled_from(KINDS), layer_key=layer_and(number_keys))
def test_sel_numbers_through_dask_and_the_backend(layer_via, stored, opening, kind, layer_key):
    name, key = layer_key
    check_sel(layer_via(opening, kind, name), stored[kind][1][name], key)


def _computed(layer: xr.DataArray) -> np.ndarray:
    assert isinstance(layer.data, da.Array)
    computed = layer.compute()
    assert isinstance(computed.data, np.ndarray)
    return computed.data


def _loaded(layer: xr.DataArray) -> np.ndarray:
    loaded = layer.load()
    assert loaded is layer  # in place, as xarray documents
    assert isinstance(loaded.data, np.ndarray)
    return loaded.data


#: route -> (how the file is opened, how values are taken from a selection)
ROUTES: dict[str, tuple[str, Callable[[xr.DataArray], np.ndarray]]] = {
    "values": ("lazy", lambda layer: layer.values),
    "load": ("lazy", _loaded),
    "compute": ("lazy", lambda layer: layer.compute().data),
    "asarray": ("lazy", np.asarray),
    "dask-file-chunks": ("dask-file-chunks", _computed),
    "dask-stimulus-2": ("dask-stimulus-2", _computed),
    "backend": ("backend", lambda layer: layer.values),
    "backend-dask": ("backend-dask", _computed),
}


def read_via(layer_via, route: str, kind: str, name: str, key: tuple[Any, ...]) -> np.ndarray:
    opening, take = ROUTES[route]
    return take(layer_via(opening, kind, name).isel(dict(zip(DIMS, key, strict=True))))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("route", list(ROUTES))
def test_every_route_reads_every_kind_as_numpy(layer_via, stored, route, kind):
    for name in ("conv_f32", "conv_i16"):
        for key in (WHOLE, awkward(LAYERS[name][1])):
            got = read_via(layer_via, route, kind, name, key)
            assert_same(got, outer(stored[kind][1][name], key))


@pytest.mark.parametrize("route", list(ROUTES))
@settings(max_examples=examples(20), deadline=None)
@given(kind=st.sampled_from(KINDS), layer_key=layer_and(keys))
@example(kind="unwritten-chunks-gzip", layer_key=("conv_f16", NOTHING))
@example(kind="partial-edge-chunks", layer_key=("fc_f32", SCALAR))
def test_every_route_equals_numpy(layer_via, stored, route, kind, layer_key):
    name, key = layer_key
    assert_same(read_via(layer_via, route, kind, name, key), outer(stored[kind][1][name], key))


def test_the_storage_kinds_are_stored_as_named(stored):
    for kind, storage in STORAGE.items():
        with h5py.File(stored[kind][0], "r") as root:
            for name, (_, shape) in LAYERS.items():
                dataset = root[name]
                wanted = None if storage.chunks is None else storage.chunks(shape)
                assert dataset.chunks == wanted, (kind, name)
                for option, value in storage.options.items():
                    assert getattr(dataset, option) == value, (kind, name, option)
                if dataset.chunks:
                    grid = np.prod([-(-size // chunk) for size, chunk
                                    in zip(shape, dataset.chunks, strict=True)])
                    allocated = dataset.id.get_num_chunks()
                    assert (allocated == grid) if storage.written else (0 < allocated < grid)
                if kind == "partial-edge-chunks":
                    assert any(size % chunk for size, chunk in zip(shape, dataset.chunks,
                                                                   strict=True))
                if kind == "chunks-beyond-shape":
                    assert all(chunk > size for size, chunk in zip(shape[1:],
                                                                   dataset.chunks[1:],
                                                                   strict=True))
