"""The neuroid view: every unit of chosen layers side by side, per stimulus.

Encoding models, RSA and Brain-Score-style analyses take one
``(stimulus, neuroid)`` matrix, a neuroid being one unit of the network:
a ``(layer, channel, row, column)`` tuple. :func:`stack_neuroids` builds it
from layers, :func:`unstack_neuroids` gives the layers back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from dnnmask_xr.act.layout import DIMS, NUMBERED_DIMS
from dnnmask_xr.activations import Activations, stimulus_fields
from dnnmask_xr.errors import SelectionError

#: The levels of the ``neuroid`` index, in order.
NEUROID_LEVELS: tuple[str, str, str, str] = ("layer", *NUMBERED_DIMS)


def stack_neuroids(
    acts: Activations | Mapping[str, xr.DataArray],
    layers: Sequence[str] | None = None,
) -> xr.DataArray:
    """Put the units of some layers side by side: one ``(stimulus, neuroid)`` array.

    Parameters
    ----------
    acts
        The layers.
    layers
        Which layers, in which order; all of them, in order, by default.

    Returns
    -------
    xarray.DataArray
        Dims ``(stimulus, neuroid)``, named ``"activation"``. ``neuroid``
        is a pandas MultiIndex of ``layer``, ``channel``, ``row`` and
        ``column`` (the network's 1-based numbers): the layers in the order
        given, each in C order (channel, then row, then column). The
        stimulus coordinates are kept; the dtype is the layers' common
        dtype. Dask-backed layers stay dask-backed; lazy ones are read.

    Raises
    ------
    SelectionError
        If a layer is not in ``acts`` or no layer is chosen.
    """
    if not isinstance(acts, Activations):
        acts = Activations(acts)
    if layers is not None and (isinstance(layers, str) or not isinstance(layers, Sequence)):
        raise SelectionError(f"layers {layers!r} are not a list of layer names")
    names = list(acts if layers is None else layers)
    missing = [name for name in names if name not in acts]
    if missing:
        raise SelectionError(f"layer {missing[0]!r} is not in the activations "
                             f"(layers: {', '.join(acts) or 'none'})")
    if not names:
        raise SelectionError("no layer to stack; name at least one layer")
    parts, index = [], []
    for name in names:
        array = acts[name]
        parts.append(
            array.drop_vars(NUMBERED_DIMS).stack(neuroid=NUMBERED_DIMS, create_index=False)
        )
        grid = np.meshgrid(*(array[dim].values for dim in NUMBERED_DIMS), indexing="ij")
        index.append(pd.DataFrame({"layer": name, **{
            dim: numbers.ravel() for dim, numbers in zip(NUMBERED_DIMS, grid, strict=True)
        }}))
    stacked = xr.concat(parts, dim="neuroid", coords="minimal", compat="override",
                        join="exact")
    neuroids = pd.MultiIndex.from_frame(pd.concat(index, ignore_index=True))
    stacked = stacked.assign_coords(xr.Coordinates.from_pandas_multiindex(neuroids, "neuroid"))
    return stacked.rename("activation")


def unstack_neuroids(stacked: xr.DataArray) -> Activations:
    """Give back the layers of a ``(stimulus, neuroid)`` array.

    Parameters
    ----------
    stacked
        As :func:`stack_neuroids` makes it: dims ``stimulus`` and
        ``neuroid``, the latter with coordinates ``layer``, ``channel``,
        ``row`` and ``column``. Its neuroids may come in any order, but
        each layer's must form a full channel x row x column grid.

    Returns
    -------
    Activations
        One layer per ``layer`` value, in order of first appearance; along
        each axis the numbers in order of first appearance. Stimulus
        coordinates are kept. Stacking then unstacking gives the layers
        back exactly.

    Raises
    ------
    SelectionError
        If a coordinate is missing, or a layer's neuroids do not fill its
        grid (some were selected away, or repeated).
    """
    if not isinstance(stacked, xr.DataArray):
        raise SelectionError(f"unstack_neuroids takes the DataArray stack_neuroids makes, not "
                             f"a {type(stacked).__name__}")
    missing = [name for name in ("stimulus", *NEUROID_LEVELS) if name not in stacked.coords]
    if missing or set(stacked.dims) != {"stimulus", "neuroid"}:
        raise SelectionError(
            f"a stacked array has dims ('stimulus', 'neuroid') and neuroid coordinates "
            f"{', '.join(NEUROID_LEVELS)}; this one has dims {stacked.dims}"
            + (f" and lacks {', '.join(missing)}" if missing else "")
        )
    stacked = stacked.transpose("stimulus", "neuroid")
    labels = {name: stacked[name].values for name in NEUROID_LEVELS}
    # the MultiIndex goes: the layers must not keep its levels as coordinates
    plain = stacked.drop_vars(["neuroid", *NEUROID_LEVELS], errors="ignore")
    fields = stimulus_fields(stacked)
    layers = {}
    for name in pd.unique(labels["layer"]):
        where = np.flatnonzero(labels["layer"] == name)
        numbers, flat = _grid(str(name), {dim: labels[dim][where] for dim in NUMBERED_DIMS})
        ordered = where[np.argsort(flat, kind="stable")]
        part = plain.isel(neuroid=ordered)
        shape = (stacked.sizes["stimulus"], *(numbers[dim].size for dim in NUMBERED_DIMS))
        layers[str(name)] = xr.DataArray(
            part.data.reshape(shape), dims=DIMS, name=str(name),
            coords={"stimulus": stacked["stimulus"].values, **numbers,
                    **{key: ("stimulus", values) for key, values in fields.items()}},
        )
    return Activations(layers)


def _grid(name: str, numbers: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Find a layer's axes and each neuroid's flat (C-order) position on them."""
    axes, positions = {}, []
    for dim, values in numbers.items():
        codes, uniques = pd.factorize(values)
        axes[dim] = np.asarray(uniques, dtype=np.int64)
        positions.append(codes)
    size = int(np.prod([axis.size for axis in axes.values()]))
    flat = np.ravel_multi_index(positions, tuple(axis.size for axis in axes.values()))
    if flat.size != size or np.unique(flat).size != size:
        shape = " x ".join(str(axis.size) for axis in axes.values())
        raise SelectionError(
            f"the neuroids of layer {name!r} do not fill its channel x row x column grid "
            f"({shape} = {size} units, {flat.size} neuroids given); unstack all of a "
            "layer's units, each once"
        )
    return axes, flat
