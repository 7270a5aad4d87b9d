"""HDF5 access to ``.act.h5`` files: open, list and check layers.

Knows nothing of xarray, so the command line can use it without importing
xarray or pandas.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from dnnmask_xr.errors import ActFileError


def open_file(where: str, mode: str = "r") -> h5py.File:
    """Open an ``.act.h5`` file for reading, even while another process locks it.

    HDF5's default locking comes first: within a process HDF5 shares one
    handle per file and refuses opens whose locking flags differ. Reading
    never changes the file, so a lock it cannot take (another process has
    the file open for writing, or the file system has no locks) must not
    make the activations unreadable: the file is then opened without one.

    ``mode`` must be ``"r"``; it is there for ``CachingFileManager``, which
    passes it on.

    Raises
    ------
    ActFileError
        If the file is missing, a folder, unreadable, not HDF5 or damaged.
    """
    if mode != "r":
        raise ValueError(f"mode={mode!r}: .act.h5 inputs are opened read-only ('r')")
    check_readable(where)
    try:
        return h5py.File(where, "r")
    except OSError as err:
        if "lock" not in str(err).lower():
            raise ActFileError(f"cannot read {where!r}: the file is damaged ({err})") from None
    try:
        return h5py.File(where, "r", locking=False)
    except OSError as err:
        raise ActFileError(f"cannot read {where!r}: the file is damaged ({err})") from None


def layer_datasets(root: h5py.File, where: str) -> dict[str, h5py.Dataset]:
    """Return the layers at a file's root, in order, each checked.

    Raises
    ------
    ActFileError
        If a root object is not a 4-D numeric dataset, the layers disagree
        on the number of stimuli, or the file is damaged.
    """
    try:
        names = layer_names(root)
    except (OSError, RuntimeError, KeyError) as err:
        raise ActFileError(f"{where!r} is damaged: cannot list its layers ({err})") from None
    layers = {name: layer_dataset(root, name, where) for name in names}
    sizes = {name: dataset.shape[0] for name, dataset in layers.items()}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{name!r}: {size}" for name, size in sizes.items())
        raise ActFileError(f"{where!r}: layers describe different numbers of stimuli "
                           f"({listing}); every layer must have one row per stimulus")
    return layers


def check_readable(where: str) -> None:
    """Check that ``where`` is a readable HDF5 file, with one-line errors."""
    file = Path(where)
    if not file.exists():
        raise ActFileError(f"cannot open {where!r}: no such file")
    if file.is_dir():
        raise ActFileError(f"cannot open {where!r}: it is a folder, not an .act.h5 file")
    if not os.access(file, os.R_OK):
        raise ActFileError(f"cannot open {where!r}: permission denied")
    try:
        is_hdf5 = h5py.is_hdf5(where)
    except OSError as err:
        raise ActFileError(f"cannot open {where!r}: {err.strerror or err}") from None
    if not is_hdf5:
        raise ActFileError(f"{where!r} is not an HDF5 file; an .act.h5 file is HDF5 with "
                           "one 4-D dataset per layer")


def layer_names(root: h5py.Group) -> list[str]:
    """List the root's objects in creation order where the file tracks it.

    Files this package writes track creation order, so layers come back in
    the order written. h5py iterates in that order only from some version
    on (older ones list by name), so the order is asked for explicitly.
    Files without tracking (DNNBrain's) list by name, as h5py does.
    """
    if not root["/"].id.get_create_plist().get_link_creation_order():
        return list(root)
    names: list[bytes] = []
    root.id.links.iterate(names.append, idx_type=h5py.h5.INDEX_CRT_ORDER)
    return [name.decode("utf-8") for name in names]


def layer_dataset(root: h5py.File, name: str, where: str) -> h5py.Dataset:
    """Return the root object ``name``, checked to be a 4-D numeric dataset."""
    try:
        node = root[name]
    except (OSError, KeyError, RuntimeError) as err:
        raise ActFileError(f"{where!r}: cannot read layer {name!r} ({err})") from None
    kind = ("a group" if isinstance(node, h5py.Group) else
            f"a {node.ndim}-D dataset" if isinstance(node, h5py.Dataset) else "not a dataset")
    if not isinstance(node, h5py.Dataset) or node.ndim != 4:
        raise ActFileError(f"{where!r}: root object {name!r} is {kind}; every root object of "
                           "an .act.h5 file must be a 4-D dataset (stimulus, channel, row, "
                           "column)")
    if node.dtype.kind not in "biufc":
        raise ActFileError(f"{where!r}: layer {name!r} holds {node.dtype} values; layers "
                           "hold numbers (integer, float or complex)")
    return node
