"""Properties: any shapes, dtypes and masks give what plain numpy indexing gives."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnmask_xr import DnnMask, open_act, save_act, write_dmask
from dnnmask_xr.cli import main
from dnnmask_xr.testing import (
    naive_mask,
    read_reference_act,
    relu_activations,
    write_reference_act,
)

pytestmark = pytest.mark.properties

DTYPES = ["float16", "float32", "float64", "int8", "uint16", "int64"]
AXES = ("channel", "row", "column")


@st.composite
def files_and_masks(draw):
    n_stim = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    names = draw(st.lists(st.sampled_from(["conv1", "conv5", "fc3", "features.3", "layer 2"]),
                          min_size=1, max_size=3, unique=True))
    layers = {}
    for name in names:
        shape = (n_stim, draw(st.integers(1, 12)), draw(st.integers(1, 5)),
                 draw(st.integers(1, 5)))
        values = draw(st.integers(0, 2**16)) + np.arange(np.prod(shape))
        layers[name] = (values % 251).reshape(shape).astype(dtype)
    chosen = draw(st.permutations(names).flatmap(
        lambda order: st.lists(st.sampled_from(order), min_size=1, unique=True)))
    mask = {}
    for name in chosen:
        axes = draw(st.permutations(AXES).map(lambda order: order[:draw(st.integers(0, 3))]))
        mask[name] = {
            axis: draw(st.lists(st.integers(1, layers[name].shape[1 + AXES.index(axis)]),
                                min_size=1, max_size=6))
            for axis in axes
        }
    return layers, DnnMask(mask)


def numpy_mask(layers, mask):
    expected = {}
    for name, layer_mask in mask.items():
        array = layers[name]
        for axis, numbers in layer_mask.numbers.items():
            array = np.take(array, np.asarray(numbers) - 1, axis=1 + AXES.index(axis))
        expected[name] = array
    return expected


def assert_reference_reads(path, expected):
    """DNNBrain's reader finds exactly the expected layers, values and dtypes."""
    theirs = read_reference_act(path)
    assert sorted(theirs) == sorted(expected)
    for name, array in theirs.items():
        assert array.dtype == expected[name].dtype
        np.testing.assert_array_equal(array, expected[name])


@settings(max_examples=examples(60), deadline=None)
@given(case=files_and_masks())
def test_mask_save_open_equals_numpy(case):
    layers, mask = case
    expected = numpy_mask(layers, mask)
    with tempfile.TemporaryDirectory() as folder:
        source, out = Path(folder) / "in.act.h5", Path(folder) / "out.act.h5"
        write_reference_act(source, layers)
        masked = open_act(source).mask(mask)
        for name, array in expected.items():
            assert masked[name].dtype == array.dtype
            np.testing.assert_array_equal(masked[name].values, array)
        save_act(masked, out)
        back = open_act(out)
        assert list(back) == list(mask)
        for name, layer_mask in mask.items():
            np.testing.assert_array_equal(back[name].values, expected[name])
            assert back[name].dtype == expected[name].dtype
            for axis in AXES:
                numbers = layer_mask.numbers.get(axis)
                size = layers[name].shape[1 + AXES.index(axis)]
                wanted = list(numbers) if numbers else list(range(1, size + 1))
                assert back[name][axis].values.tolist() == wanted
        assert_reference_reads(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_activations_are_half_zeros_and_the_rest_positive(dtype):
    # an integer dtype truncated most positive values (below 1) to zeros
    values = relu_activations(40, {"conv": (8, 6, 6)}, dtype=dtype, seed=2)["conv"]
    assert values.dtype == np.dtype(dtype) and values.shape == (40, 8, 6, 6)
    assert 0.45 < np.mean(values == 0) < 0.55
    assert (values >= 0).all()


@settings(max_examples=examples(60), deadline=None)
@given(case=files_and_masks(), all_as=st.sampled_from(["all", None, "missing"]))
def test_the_naive_reference_equals_numpy(case, all_as):
    """The baseline tests and benchmarks trust: DNNBrain's mask dictionary as
    ``to_dnnbrain`` gives it (``'all'``), or with None or no key for an axis kept whole."""
    layers, mask = case
    expected = numpy_mask(layers, mask)
    dmask = {name: {key: numbers for key, numbers in axes.items() if numbers != "all"}
             if all_as == "missing" else
             {key: all_as if numbers == "all" else numbers for key, numbers in axes.items()}
             for name, axes in mask.to_dnnbrain().items()}
    with tempfile.TemporaryDirectory() as folder:
        source, out = Path(folder) / "in.act.h5", Path(folder) / "out.act.h5"
        write_reference_act(source, layers)
        naive_mask(source, out, dmask)
        assert_reference_reads(out, expected)


@settings(max_examples=examples(30), deadline=None)
@given(case=files_and_masks())
def test_command_with_dmask_equals_numpy(case):
    layers, mask = case
    expected = numpy_mask(layers, mask)
    with tempfile.TemporaryDirectory() as folder:
        source, out = Path(folder) / "in.act.h5", Path(folder) / "out.act.h5"
        dmask = Path(folder) / "m.dmask.csv"
        write_reference_act(source, layers)
        write_dmask(mask, dmask)
        assert main(["-act", str(source), "-dmask", str(dmask), "-out", str(out), "-q"]) == 0
        assert list(open_act(out)) == list(mask)
        assert_reference_reads(out, expected)
