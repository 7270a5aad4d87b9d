"""The xarray backend 'dnnact' opens what open_act opens, as lazily."""

from __future__ import annotations

import re
import threading

import dask
import h5py
import numpy as np
import pytest
import xarray as xr

import dnnmask_xr.xarray_.array
from dnnmask_xr import DnnMaskError, SelectionError, UsageError, open_act, save_act
from dnnmask_xr.testing import write_reference_act
from dnnmask_xr.xarray_.backend import DnnActBackendEntrypoint


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Record every read of layer values from an .act.h5 file, by either reader."""
    done: list[str] = []
    array = dnnmask_xr.xarray_.array
    read_outer, read_chunks = array.read_outer, array.read_chunks

    def by_hdf5(dataset, key):
        done.append(dataset.name)
        return read_outer(dataset, key)

    def by_chunks(index, key, lock=None, out=None):
        done.append(index.dataset.name)
        return read_chunks(index, key, lock, out)

    monkeypatch.setattr(dnnmask_xr.xarray_.array, "read_outer", by_hdf5)
    monkeypatch.setattr(dnnmask_xr.xarray_.array, "read_chunks", by_chunks)
    return done


def test_engine_is_registered():
    assert isinstance(xr.backends.list_engines()["dnnact"], DnnActBackendEntrypoint)


def test_open_datatree_gives_a_node_per_layer_and_stimuli_on_the_root(act_file, stim_file,
                                                                      layers):
    tree = xr.open_datatree(act_file, engine="dnnact", stim=stim_file)
    assert list(tree.children) == ["conv5", "fc3"]
    root = tree.to_dataset(inherit=False)
    assert set(root.coords) == {"stimulus", "label", "condition", "onset"}
    assert root["stimulus"].attrs == {"type": "image", "path": "/data/images"}
    acts = open_act(act_file, stim=stim_file)
    for name in layers:
        node = tree[name].to_dataset(inherit=False)
        # the stimulus index is stored once, on the root; each node holds the fields,
        # which xarray's nodes would not inherit
        assert "stimulus" not in node.coords
        assert {"label", "condition", "onset"} <= set(node.coords)
        array = tree[name][name]
        np.testing.assert_array_equal(array.values, layers[name])
        assert array.dtype == layers[name].dtype
        for dim in ("stimulus", "channel", "row", "column"):
            np.testing.assert_array_equal(array[dim].values, acts[name][dim].values)
    np.testing.assert_array_equal(tree["condition"].values, acts["fc3"]["condition"].values)
    tree.close()


def test_open_dataarray_gives_one_layer_as_open_act_does(act_file, stim_file, layers):
    array = xr.open_dataarray(act_file, engine="dnnact", group="conv5", stim=stim_file)
    expected = open_act(act_file, stim=stim_file)["conv5"]
    xr.testing.assert_identical(array.load(), expected.load())
    np.testing.assert_array_equal(array.values, layers["conv5"])
    array.close()


def test_a_file_of_one_layer_opens_without_group(tmp_path, layers):
    path = tmp_path / "one.act.h5"
    with h5py.File(path, "w") as root:
        root.create_dataset("fc3", data=layers["fc3"], compression="gzip")
    with xr.open_dataarray(path, engine="dnnact") as array:
        assert array.name == "fc3"
        np.testing.assert_array_equal(array.values, layers["fc3"])


def test_group_slash_opens_the_root(act_file, stim_file):
    with xr.open_dataset(act_file, engine="dnnact", group="/", stim=stim_file) as root:
        assert not root.data_vars
        assert list(root["stimulus"].values) == [f"img{i}.png" for i in range(5)]


@pytest.mark.parametrize("opener", ["datatree", "dataarray", "groups"])
def test_opening_reads_no_layer_values(act_file, reads, opener):
    if opener == "datatree":
        opened = xr.open_datatree(act_file, engine="dnnact")
        array = opened["conv5/conv5"]
    elif opener == "dataarray":
        opened = array = xr.open_dataarray(act_file, engine="dnnact", group="conv5")
    else:
        opened = xr.open_groups(act_file, engine="dnnact")
        array = opened["/conv5"]["conv5"]
    assert reads == []
    # a selection reads the layer it names, and no other
    array.isel(channel=[3, 1]).values  # noqa: B018
    assert reads and set(reads) == {"/conv5"}


def test_chunks_follow_the_hdf5_chunks(act_file, layers):
    with h5py.File(act_file) as root:
        file_chunks = root["conv5"].chunks
    tree = xr.open_datatree(act_file, engine="dnnact", chunks={})
    array = tree["conv5/conv5"]
    assert array.chunks is not None
    assert tuple(sizes[0] for sizes in array.chunks) == file_chunks
    # a maximum does not depend on the order dask combines the chunks in
    np.testing.assert_array_equal(array.max("stimulus").values, layers["conv5"].max(axis=0))
    tree.close()


def test_drop_variables(act_file, stim_file, layers):
    with xr.open_datatree(act_file, engine="dnnact", stim=stim_file,
                          drop_variables=["onset"]) as tree:
        assert "onset" not in tree.coords and "label" in tree.coords
        np.testing.assert_array_equal(tree["fc3/fc3"].values, layers["fc3"])


def test_guess_can_open(tmp_path):
    backend = DnnActBackendEntrypoint()
    assert backend.guess_can_open("x.act.h5") and backend.guess_can_open(tmp_path / "x.act.h5")
    assert not backend.guess_can_open("x.nc") and not backend.guess_can_open(b"bytes")


@pytest.mark.parametrize("suffix", [".act.h5", ".nc", ".act.zarr"])
def test_a_missing_group_names_the_file_and_the_layers(act_file, tmp_path, suffix):
    # bug: a store's said "is not in the activations", naming no store
    path = act_file
    if suffix != ".act.h5":
        path = tmp_path / f"copy{suffix}"
        save_act(open_act(act_file), path)
    with pytest.raises(SelectionError, match=(
            rf"^layer 'conv6' is not in '[^']*{re.escape(path.name)}' \(layers: conv5, fc3\)$")):
        xr.open_dataarray(path, engine="dnnact", group="conv6")


@pytest.mark.parametrize("group", [0, b"conv5", ["conv5"]], ids=["int", "bytes", "list"])
@pytest.mark.parametrize("opener", [xr.open_dataset, xr.open_datatree, xr.open_groups])
def test_a_group_that_is_not_a_name_is_refused_in_one_line(act_file, opener, group):
    # bug: AttributeError ('int' object has no attribute 'strip') or TypeError
    with pytest.raises(UsageError, match=r"^group=.* is not a layer name; give one as "
                                         r"text, such as group='conv5', or '/' for the root$"):
        opener(act_file, engine="dnnact", group=group)
    assert _open_files(act_file) == []


def test_several_layers_need_a_group(act_file):
    with pytest.raises(SelectionError, match=r"holds 2 layers \(conv5, fc3\); open one with "
                                             r"group=, e\.g\. group='conv5'"):
        xr.open_dataarray(act_file, engine="dnnact")


def _open_files(path) -> list:
    """The HDF5 files open in this process at ``path`` (other tests' files, which the
    garbage collector may close meanwhile, do not count)."""
    return [file for file in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)
            if file.name == str(path).encode()]


#: The backend's openers of one layer, by group=.
GROUP_OPENERS = {
    "open_dataarray": lambda path, name, **kw: xr.open_dataarray(path, engine="dnnact",
                                                                 group=name, **kw),
    "open_dataset": lambda path, name, **kw: xr.open_dataset(path, engine="dnnact",
                                                             group=name, **kw),
    "open_datatree": lambda path, name, **kw: xr.open_datatree(path, engine="dnnact",
                                                               group=name, **kw),
}


@pytest.mark.parametrize("opener", GROUP_OPENERS)
@pytest.mark.parametrize("name", ["stimulus", "channel", "row", "column", "condition"])
def test_a_layer_named_like_a_coordinate_is_refused_in_one_line(tmp_path, stim_file, opener,
                                                                name):
    # a Dataset cannot hold a variable named like one of its coordinates
    path = tmp_path / "named.act.h5"
    write_reference_act(path, {name: np.ones((5, 3, 1, 1), np.float32),
                               "fc3": np.ones((5, 4, 1, 1), np.float32)})
    with pytest.raises(SelectionError) as caught:
        GROUP_OPENERS[opener](path, name, stim=stim_file)
    assert str(caught.value) == (
        f"layer {name!r} has the name of a dimension or stimulus field, which an xarray "
        f"dataset cannot hold beside that coordinate; open it as a DataArray with "
        f"dnnmask_xr.open_act(path)[{name!r}]")
    assert _open_files(path) == []
    # the other layer still opens, and the layer itself as open_act's DataArray
    with GROUP_OPENERS[opener](path, "fc3", stim=stim_file) as other:
        other = other if isinstance(other, xr.DataArray) else other["fc3"]
        np.testing.assert_array_equal(other.values, np.ones((5, 4, 1, 1), np.float32))
    with open_act(path, stim=stim_file) as acts:
        assert acts[name].name == name and acts[name].shape == (5, 3, 1, 1)


@pytest.mark.parametrize("name", ["channel", "condition"])
def test_open_groups_holds_a_layer_named_like_a_coordinate_under_another_name(
        tmp_path, stim_file, name):
    # a dataset cannot hold the variable `channel` beside its dimension: the group
    # keeps the layer's name, its variable takes <name>_layer, and open_act gets it back
    path = tmp_path / "named.act.h5"
    values = np.arange(15, dtype=np.float32).reshape(5, 3, 1, 1)
    write_reference_act(path, {name: values})
    groups = xr.open_groups(path, engine="dnnact", stim=stim_file)
    try:
        assert list(groups) == ["/", f"/{name}"]
        assert list(groups[f"/{name}"].data_vars) == [f"{name}_layer"]
        np.testing.assert_array_equal(groups[f"/{name}"][f"{name}_layer"].values, values)
    finally:
        groups["/"].close()
    with open_act(path, stim=stim_file) as acts:
        assert list(acts) == [name] and acts[name].name == name
        np.testing.assert_array_equal(acts[name].values, values)


def test_a_tree_that_cannot_be_built_closes_the_file(tmp_path, stim_file):
    path = tmp_path / "named.act.h5"
    write_reference_act(path, {"channel": np.ones((5, 3, 1, 1), np.float32)})
    with pytest.raises(DnnMaskError, match="layer 'channel' has the name of a ") as caught:
        xr.open_datatree(path, engine="dnnact", stim=stim_file)
    # closed at once, not when the error (whose frames hold the layers) is collected
    assert caught.value is not None
    assert _open_files(path) == []


def test_open_groups_opens_a_list_of_files_as_one_set(tmp_path, act_file, layers):
    # what open_act([...]) comes to: the files concatenated along stimulus
    second = tmp_path / "second.act.h5"
    with open_act(act_file) as acts:
        save_act({name: array.assign_coords(stimulus=array.stimulus + 10)
                  for name, array in acts.items()}, second)
    groups = xr.open_groups([act_file, second], engine="dnnact")
    try:
        assert list(groups) == ["/", "/conv5", "/fc3"]
        assert groups["/"]["stimulus"].values.tolist() == [1, 2, 3, 4, 5, 11, 12, 13, 14, 15]
        for name in ("conv5", "fc3"):
            np.testing.assert_array_equal(groups[f"/{name}"][name].values,
                                          np.concatenate([layers[name], layers[name]]))
    finally:
        groups["/"].close()


#: xarray's own keywords, as its netCDF backends take them: accepted, nothing to decode.
KEYWORDS = [
    {"decode_times": False}, {"decode_timedelta": False}, {"use_cftime": False},
    {"mask_and_scale": False}, {"decode_coords": False}, {"concat_characters": False},
    {"decode_cf": False}, {"lock": None}, {"lock": False}, {"lock": True},
]


@pytest.fixture
def parts(split_parts):
    """The stimuli of act_file in two .act.h5 files: 2 stimuli, then 3."""
    return split_parts(".act.h5")


@pytest.mark.parametrize("keywords", KEYWORDS, ids=lambda kw: "-".join(map(str, kw.items())))
def test_xarrays_keywords_are_taken_by_every_opener(act_file, stim_file, layers, parts,
                                                    keywords):
    with xr.open_dataset(act_file, engine="dnnact", group="conv5", stim=stim_file,
                         **keywords) as layer:
        np.testing.assert_array_equal(layer["conv5"].values, layers["conv5"])
        assert layer["condition"].values.tolist() == ["dog", "cat", "dog", "cat", "dog"]
    with xr.open_datatree(act_file, engine="dnnact", **keywords) as tree:
        np.testing.assert_array_equal(tree["fc3/fc3"].values, layers["fc3"])
    assert list(xr.open_groups(act_file, engine="dnnact", **keywords)) == ["/", "/conv5",
                                                                           "/fc3"]
    with xr.open_mfdataset(parts, engine="dnnact", group="conv5", combine="nested",
                           concat_dim="stimulus", **keywords) as joined:
        np.testing.assert_array_equal(joined["conv5"].values, layers["conv5"])


def test_open_mfdataset_joins_a_layer_of_many_files(act_file, stim_file, layers, parts):
    with xr.open_mfdataset(parts, engine="dnnact", group="fc3", combine="nested",
                           concat_dim="stimulus") as joined:
        assert joined["fc3"].chunks is not None
        np.testing.assert_array_equal(joined["fc3"].values,
                                      np.concatenate([layers["fc3"][:2], layers["fc3"][2:]]))
        assert joined["stimulus"].values.tolist() == [f"img{i}.png" for i in range(5)]
        assert joined["onset"].values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
        np.testing.assert_array_equal(joined["channel"].values, np.arange(1, 13))


class CountingLock:
    """A lock that counts how often it is taken."""

    def __init__(self) -> None:
        self.lock, self.taken = threading.Lock(), 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.taken += 1
        return self.lock.acquire(blocking, timeout)

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> CountingLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@pytest.mark.parametrize("opener", ["dataset", "datatree", "mfdataset", "open_act-nc",
                                    "open_act-set"])
def test_reads_hold_the_lock_given(act_file, layers, parts, opener, tmp_path):
    lock = CountingLock()
    if opener == "open_act-set":
        opened = open_act(parts, lock=lock)
        array = opened["conv5"]
    elif opener == "open_act-nc":
        save_act(open_act(act_file), tmp_path / "out.nc")
        opened = open_act(tmp_path / "out.nc", lock=lock)
        array = opened["conv5"]
    elif opener == "dataset":
        opened = xr.open_dataset(act_file, engine="dnnact", group="conv5", lock=lock)
        array = opened["conv5"]
    elif opener == "datatree":
        opened = xr.open_datatree(act_file, engine="dnnact", lock=lock)
        array = opened["conv5/conv5"]
    else:
        opened = xr.open_mfdataset(parts, engine="dnnact", group="conv5", combine="nested",
                                   concat_dim="stimulus", lock=lock)
        array = opened["conv5"]
    assert lock.taken == 0
    np.testing.assert_array_equal(array.values, layers["conv5"])
    assert lock.taken > 0
    opened.close()


@pytest.mark.parametrize(("lock", "holds_xarrays"), [(None, True), (True, True),
                                                     (False, False)])
def test_the_default_lock_is_xarrays_hdf5_lock_and_false_is_none(act_file, layers,
                                                                  monkeypatch, lock,
                                                                  holds_xarrays):
    hdf5_lock = CountingLock()
    monkeypatch.setattr(dnnmask_xr.xarray_.array, "HDF5_LOCK", hdf5_lock)
    with xr.open_dataset(act_file, engine="dnnact", group="conv5", lock=lock,
                         chunks={}) as layer:
        assert len(layer["conv5"].data.blocks.ravel()) > 1
        # dask's threads read at once: without a lock of ours, h5py's own keeps HDF5 safe
        with dask.config.set(scheduler="threads", num_workers=4):
            np.testing.assert_array_equal(layer["conv5"].values, layers["conv5"])
    assert (hdf5_lock.taken > 0) == holds_xarrays


def test_a_lock_that_is_not_one_is_refused(act_file):
    with pytest.raises(UsageError, match=r"^lock='yes' is not a lock; give None \(xarray's "
                                         r"HDF5 lock\), False"):
        xr.open_dataset(act_file, engine="dnnact", group="conv5", lock="yes")


def test_open_datatree_of_a_group_gives_that_layer_with_its_stimuli(act_file, stim_file,
                                                                     layers):
    with xr.open_datatree(act_file, engine="dnnact", group="fc3", stim=stim_file) as tree:
        assert not tree.children and list(tree.data_vars) == ["fc3"]
        np.testing.assert_array_equal(tree["fc3"].values, layers["fc3"])
        assert tree["stimulus"].values.tolist() == [f"img{i}.png" for i in range(5)]
        assert tree["condition"].values.tolist() == ["dog", "cat", "dog", "cat", "dog"]
    with pytest.raises(SelectionError, match="layer 'conv6' is not in "):
        xr.open_datatree(act_file, engine="dnnact", group="conv6")


def test_chunks_leave_the_unit_numbers_and_stimulus_labels_numpy(act_file, stim_file):
    with xr.open_dataset(act_file, engine="dnnact", group="conv5", stim=stim_file,
                         chunks={}) as layer:
        assert layer["conv5"].chunks is not None
        for name in ("stimulus", "channel", "row", "column"):
            assert name in layer.indexes
            assert not hasattr(layer[name].variable._data, "__dask_graph__"), name
