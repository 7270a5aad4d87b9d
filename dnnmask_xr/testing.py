"""Small activation files for tests, docs and examples, made on the spot.

``write_reference_act`` and ``read_reference_act`` follow DNNBrain's own
``ActivationFile`` writer and reader, so that compatibility can be checked
without DNNBrain installed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import h5py
import numpy as np

from dnnmask_xr.formats.dmask import DnnMask

#: Layer shapes of AlexNet as DNNBrain stores them, without the stimulus axis.
ALEXNET_SHAPES: dict[str, tuple[int, int, int]] = {
    "conv1": (64, 55, 55),
    "conv2": (192, 27, 27),
    "conv3": (384, 13, 13),
    "conv4": (256, 13, 13),
    "conv5": (256, 13, 13),
    "fc1": (4096, 1, 1),
    "fc2": (4096, 1, 1),
    "fc3": (1000, 1, 1),
}


def relu_activations(
    n_stimuli: int,
    shapes: Mapping[str, tuple[int, int, int]],
    *,
    dtype: np.dtype | str = np.float32,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Make ReLU-like activations: about half zeros, the rest positive.

    Parameters
    ----------
    n_stimuli
        Size of the stimulus axis.
    shapes
        Layer name to ``(channels, rows, columns)``.
    dtype
        The arrays' dtype; an integer one gets the positive values rounded up.
    seed
        Seed of the random generator, for reproducible files.

    Returns
    -------
    dict
        Layer name to a ``(n_stimuli, channels, rows, columns)`` array.
    """
    rng = np.random.default_rng(seed)
    # an integer dtype rounds the positive values up, so that they stay positive
    whole = np.dtype(dtype).kind in "iu"
    layers = {}
    for name, shape in shapes.items():
        values = np.maximum(rng.standard_normal((n_stimuli, *shape)), 0)
        layers[name] = (np.ceil(values) if whole else values).astype(dtype)
    return layers


def write_reference_act(
    path: str | os.PathLike[str],
    layers: Mapping[str, np.ndarray],
    *,
    attrs: Mapping[str, str] | None = None,
) -> None:
    """Write layers exactly as DNNBrain's ``ActivationFile.write`` does.

    ``create_dataset(name, data=array, compression="gzip")`` per layer:
    h5py's automatic chunks, deflate level 4, the array's own dtype, layers
    in name order at the root.

    Parameters
    ----------
    path
        The ``.act.h5`` file to create (replaced if it exists).
    layers
        Layer name to 4-D array.
    attrs
        Root attributes, as older DNNBrain versions wrote (``title``,
        ``cmd``, ``date``).
    """
    with h5py.File(path, "w") as root:
        for name, array in layers.items():
            root.create_dataset(name, data=array, compression="gzip")
        for key, value in (attrs or {}).items():
            root.attrs[key] = value


def read_reference_act(
    path: str | os.PathLike[str],
    dmask: Mapping[str, Mapping[str, list[int] | str]] | None = None,
) -> dict[str, np.ndarray]:
    """Read layers as DNNBrain's ``ActivationFile.read`` does.

    Every root key is taken as a 4-D layer; ``dmask`` maps layer names to
    ``{"chn": [...], "row": [...], "col": [...]}`` with 1-based numbers
    (``'all'`` or a missing key for an axis kept whole),
    applied one axis after the other through h5py (so they must increase,
    as DNNBrain requires).

    Parameters
    ----------
    path
        The ``.act.h5`` file.
    dmask
        DNNBrain's mask dictionary, or ``None`` for every layer whole.

    Returns
    -------
    dict
        Layer name to array, in the order of ``dmask`` or of the file.
    """
    with h5py.File(path, "r") as root:
        if dmask is None:
            dmask = {layer: {} for layer in root.keys()}
        layers = {}
        for layer, axes in dmask.items():
            data = root[layer]
            # DNNBrain's 'all' (recent versions) and a missing key (older ones) keep an axis
            chosen = {key: value for key, value in axes.items()
                      if value is not None and not (isinstance(value, str) and value == "all")}
            if "chn" in chosen:
                data = data[:, [n - 1 for n in chosen["chn"]], :, :]
            if "row" in chosen:
                data = data[:, :, [n - 1 for n in chosen["row"]], :]
            if "col" in chosen:
                data = data[:, :, :, [n - 1 for n in chosen["col"]]]
            layers[layer] = np.asarray(data)
    return layers


def naive_mask(
    act: str | os.PathLike[str],
    out: str | os.PathLike[str],
    dmask: Mapping[str, Mapping[str, list[int] | str]],
) -> None:
    """Mask a file the plain way: h5py fancy indexing, numpy, gzip write.

    The baseline the benchmark and the tests compare ``dnn_mask`` with: the
    same semantics (numbers in any order, repeats allowed, 1-based), done as
    anyone would by hand. Each axis is read with h5py's fancy indexing
    (sorted unique positions, one axis after the other, as DNNBrain does),
    put in the order asked with numpy, and written with
    ``create_dataset(data=..., compression="gzip")``.

    Parameters
    ----------
    act, out
        Input and output ``.act.h5`` files.
    dmask
        Layer name to ``{"chn": [...], "row": [...], "col": [...]}``; an
        axis missing, None or ``'all'`` (as DNNBrain's ``MaskFile.read``
        and ``DnnMask.to_dnnbrain`` give it) means all of it.
    """
    with h5py.File(act, "r") as source, h5py.File(out, "w") as target:
        for layer, axes in dmask.items():
            data = source[layer]
            for axis, key in enumerate(("chn", "row", "col"), start=1):
                numbers = axes.get(key)
                if numbers is None or (isinstance(numbers, str) and numbers == "all"):
                    continue
                wanted = np.asarray(numbers) - 1
                unique, inverse = np.unique(wanted, return_inverse=True)
                index = [slice(None)] * 4
                index[axis] = unique.tolist()
                data = np.take(data[tuple(index)], inverse, axis=axis)
            target.create_dataset(layer, data=np.asarray(data), compression="gzip")


def as_dnnmask(dmask: Mapping[str, Mapping[str, list[int] | str]]) -> DnnMask:
    """Turn DNNBrain's mask dictionary (``chn``/``row``/``col`` keys) into a DnnMask.

    :class:`~dnnmask_xr.DnnMask` takes it as it is (``'all'`` included); kept
    for the tests and benchmarks that name it.
    """
    return DnnMask(dmask)
