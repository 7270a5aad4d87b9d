"""Properties: any layers and stimulus labels survive DataTree, .act.h5 and .nc exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnmask_xr import Activations, from_datatree, open_act, save_act, to_datatree
from dnnmask_xr.act.layout import DIMS

pytestmark = pytest.mark.properties

DTYPES = ["float32", "float64", "int8", "uint16", "int32", "int64"]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=6)


@st.composite
def labelled_activations(draw):
    n_stim = draw(st.integers(1, 5))
    if draw(st.booleans()):
        ids = np.array(draw(st.lists(TEXT, min_size=n_stim, max_size=n_stim, unique=True)),
                       dtype=object)
    else:  # video frames: integer stimulus IDs
        ids = np.array(draw(st.lists(st.integers(0, 10**6), min_size=n_stim, max_size=n_stim,
                                     unique=True)), dtype=np.int64)
    fields = {}
    if draw(st.booleans()):
        fields = {
            "label": ("stimulus", np.array(draw(st.lists(st.integers(-5, 10**6),
                                                         min_size=n_stim, max_size=n_stim)))),
            "condition": ("stimulus", np.array(draw(st.lists(TEXT, min_size=n_stim,
                                                             max_size=n_stim)), dtype=object)),
            "onset": ("stimulus", np.array(draw(st.lists(
                st.floats(allow_infinity=False), min_size=n_stim, max_size=n_stim)))),
        }
    header = draw(st.dictionaries(st.sampled_from(["type", "path", "title"]), TEXT))
    layers = {}
    names = draw(st.lists(st.sampled_from(["conv1", "conv5", "fc3", "features.3"]),
                          min_size=1, max_size=3, unique=True))
    for seed, name in enumerate(names):
        shape = (n_stim, draw(st.integers(1, 6)), draw(st.integers(1, 3)),
                 draw(st.integers(1, 3)))
        dtype = draw(st.sampled_from(DTYPES))
        values = (np.random.default_rng(seed).standard_normal(shape) * 50).astype(dtype)
        numbers = {dim: np.array(draw(st.permutations(range(1, size + 3)))[:size],
                                 dtype=np.int64)
                   for dim, size in zip(DIMS[1:], shape[1:], strict=True)}
        layers[name] = xr.DataArray(values, dims=DIMS,
                                    coords={"stimulus": ids, **numbers, **fields})
    return Activations(layers, attrs={"source": "net.act.h5"}, stim_header=header)


def assert_exact(got: Activations, expected: Activations) -> None:
    assert list(got) == list(expected)
    for name in expected:
        xr.testing.assert_identical(got[name].load(), expected[name].load())
        for coord in expected[name].coords:
            assert got[name][coord].dtype == expected[name][coord].dtype, coord
    assert got.stim_header == expected.stim_header


@settings(max_examples=examples(15), deadline=None)
@given(acts=labelled_activations())
def test_tree_act_h5_and_nc_round_trips_are_exact(acts):
    assert_exact(from_datatree(to_datatree(acts)), acts)
    with tempfile.TemporaryDirectory() as folder:
        act_path, nc_path = Path(folder) / "a.act.h5", Path(folder) / "a.nc"
        save_act(to_datatree(acts), act_path)
        from_act = open_act(act_path)
        assert_exact(from_act, acts)
        # the least budget the file's chunks fit in (3 chunks' worth): many small blocks
        with h5py.File(act_path, "r") as root:
            least = max([3 * int(np.prod(d.chunks)) * d.dtype.itemsize for d in root.values()
                         if d.chunks] or [1])
        save_act(from_act, nc_path, memory=least)
        from_nc = open_act(nc_path)
        assert_exact(from_nc, acts)
        from_act.close()
        from_nc.close()
