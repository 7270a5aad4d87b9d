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
        The arrays' dtype.
    seed
        Seed of the random generator, for reproducible files.

    Returns
    -------
    dict
        Layer name to a ``(n_stimuli, channels, rows, columns)`` array.
    """
    rng = np.random.default_rng(seed)
    return {
        name: np.maximum(rng.standard_normal((n_stimuli, *shape)), 0).astype(dtype)
        for name, shape in shapes.items()
    }


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
    dmask: Mapping[str, Mapping[str, list[int]]] | None = None,
) -> dict[str, np.ndarray]:
    """Read layers as DNNBrain's ``ActivationFile.read`` does.

    Every root key is taken as a 4-D layer; ``dmask`` maps layer names to
    ``{"chn": [...], "row": [...], "col": [...]}`` with 1-based numbers,
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
            if axes.get("chn") is not None:
                data = data[:, [n - 1 for n in axes["chn"]], :, :]
            if axes.get("row") is not None:
                data = data[:, :, [n - 1 for n in axes["row"]], :]
            if axes.get("col") is not None:
                data = data[:, :, :, [n - 1 for n in axes["col"]]]
            layers[layer] = np.asarray(data)
    return layers
