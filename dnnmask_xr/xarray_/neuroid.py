"""The neuroid view: every unit of chosen layers side by side, per stimulus.

Encoding models, RSA and Brain-Score-style analyses take one
``(stimulus, neuroid)`` matrix, a neuroid being one unit of the network:
a ``(layer, channel, row, column)`` tuple. :func:`stack_neuroids` builds it
from layers, :func:`unstack_neuroids` gives the layers back, and puts any
result along ``neuroid`` (a score or a weight per unit) on the layers' grids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from dnnmask_xr.act.layout import NUMBERED_DIMS
from dnnmask_xr.errors import SelectionError
from dnnmask_xr.xarray_.activations import Activations, unit_dims_of

#: The levels of the ``neuroid`` index of layers of DNNBrain's dims, in order.
NEUROID_LEVELS: tuple[str, str, str, str] = ("layer", *NUMBERED_DIMS)
#: The attribute of the ``layer`` coordinate that names the unit levels.
UNIT_LEVELS_ATTR = "unit_dims"


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
        If a layer is not in ``acts``, is chosen twice, or no layer is chosen;
        or a unit dim is numbered 0 alone (0 marks a dim a layer lacks).
    DnnMaskError
        If the layers chosen label their stimuli differently (see
        :meth:`Activations.stimulus_table <dnnmask_xr.Activations.stimulus_table>`).
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
    acts = acts.sel(layer=names)
    # the check every write makes: one stimulus dim labels every layer's values
    acts.stimulus_table()
    _check_common_dtype({name: acts[name].dtype for name in names})
    levels = _levels({name: unit_dims_of(acts[name]) for name in names})
    parts, index = [], []
    for name in names:
        array = acts[name]
        unit_dims = unit_dims_of(array)
        for dim in unit_dims:
            if array.sizes[dim] and not np.any(array[dim].values != 0):
                # unstack_neuroids takes a level numbered 0 for a dim the layer lacks
                raise SelectionError(
                    f"layer {name!r} numbers its {dim} 0 alone, which the neuroid view "
                    "keeps for a dim a layer does not have; number units from 1 "
                    f"(.assign_coords({dim}=...))")
        size = int(np.prod([array.sizes[dim] for dim in unit_dims]))
        # reshaped with the size given: xarray's stack asks for (n, -1), which NumPy
        # cannot infer for a selection of no stimulus
        parts.append(xr.DataArray(array.data.reshape(array.shape[0], size),
                                  dims=("stimulus", "neuroid"),
                                  coords=array.drop_vars(unit_dims).coords,
                                  attrs=array.attrs, name=array.name))
        grid = np.meshgrid(*(array[dim].values for dim in unit_dims), indexing="ij")
        numbers = dict(zip(unit_dims, (axis.ravel() for axis in grid), strict=True))
        # 0 marks a dim the layer does not have (its numbers count from 1)
        index.append(pd.DataFrame({"layer": [name] * size, **{
            dim: numbers.get(dim, np.zeros(size, dtype=np.int64)) for dim in levels}}))
    stacked = xr.concat(parts, dim="neuroid", coords="minimal", compat="override",
                        join="exact")
    neuroids = pd.MultiIndex.from_frame(pd.concat(index, ignore_index=True))
    stacked = stacked.assign_coords(xr.Coordinates.from_pandas_multiindex(neuroids, "neuroid"))
    # the unit levels, for unstack_neuroids: coordinate attrs survive selections and arithmetic
    stacked["layer"].attrs[UNIT_LEVELS_ATTR] = list(levels)
    return stacked.rename("activation")


def _levels(dims: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Merge the layers' unit dims into one order that keeps each layer's order.

    ``channel, row, column`` beside ``token, channel`` gives ``token,
    channel, row, column``.

    Raises
    ------
    SelectionError
        If two layers order two dims differently.
    """
    order: list[str] = []
    for name, unit_dims in dims.items():
        at = 0  # where this layer's previous dim is, plus one
        for i, dim in enumerate(unit_dims):
            if dim not in order:
                # before the layer's next dim already placed, else last
                later = [order.index(other) for other in unit_dims[i + 1:] if other in order]
                order.insert(min(later) if later else len(order), dim)
            if order.index(dim) < at:
                other = next(layer for layer, theirs in dims.items()
                             if dim in theirs and layer != name)
                raise SelectionError(
                    f"layers {name!r} (dims {unit_dims}) and {other!r} (dims "
                    f"{dims[other]}) order their unit dims differently; transpose one "
                    "of them, or stack them separately")
            at = order.index(dim) + 1
    return tuple(order)


def unstack_neuroids(stacked: xr.DataArray) -> Activations | dict[str, xr.DataArray]:
    """Put an array along ``neuroid`` back on each layer's grid of units (channel x row x column).

    Parameters
    ----------
    stacked
        An array with a ``neuroid`` dim whose coordinates ``layer``,
        ``channel``, ``row`` and ``column`` say which unit each neuroid is:
        what :func:`stack_neuroids` makes, or anything computed from it that
        keeps the ``neuroid`` coordinates: a score per neuroid
        (``(X * w).mean("stimulus")``), weights of dims ``("component",
        "neuroid")``, a numpy vector wrapped as ``xr.DataArray(v,
        coords=X["neuroid"].coords)``. A coordinate that a selection made
        scalar is the value of every neuroid: ``X.sel(layer="conv5")``
        unstacks as layer ``conv5``, ``X.sel(channel=3)`` as channel 3 of
        each layer. Neuroids may come in any order and be a subset
        (``X.isel(neuroid=...)``), as long as each layer's neuroids fill a
        grid: every channel given with every row and column given, once.

    Returns
    -------
    Activations or dict of str to xarray.DataArray
        One layer per ``layer`` value, in order of first appearance; along
        each axis the numbers (the coordinates' labels) in order of first
        appearance. An array of dims exactly ``stimulus`` and ``neuroid``
        gives :class:`Activations`, with the stimulus coordinates kept:
        stacking then unstacking gives the layers back exactly. Any other
        array gives a dict of DataArrays with dims (the array's other dims,
        in order, then ``channel``, ``row``, ``column``), its name,
        attributes and coordinates along the other dims kept, other
        coordinates along ``neuroid`` put on the grid too, and a scalar
        ``layer`` coordinate.

    Raises
    ------
    SelectionError
        If a coordinate is missing, or a layer's neuroids do not fill its
        grid (some were selected away, or repeated): units missing from a
        grid are refused rather than filled, since a fill value would be
        taken for data.
    """
    if not isinstance(stacked, xr.DataArray):
        raise SelectionError(f"unstack_neuroids takes a DataArray along 'neuroid', as "
                             f"stack_neuroids makes it, not a {type(stacked).__name__}")
    others = tuple(dim for dim in stacked.dims if dim != "neuroid")
    as_layers = set(others) == {"stimulus"}
    levels = ("layer", *_unit_levels(stacked))
    needed = ("stimulus", *levels) if as_layers else levels
    missing = [name for name in needed if name not in stacked.coords]
    misplaced = [name for name in levels if name in stacked.coords
                 and stacked[name].dims not in ((), ("neuroid",))]
    if missing or misplaced or "neuroid" not in stacked.dims:
        raise SelectionError(
            "an array to unstack has a 'neuroid' dim with coordinates "
            f"{', '.join(levels)} along it (and 'stimulus' coordinates as "
            f"stack_neuroids makes it); this one has dims {stacked.dims}"
            + (f" and lacks {', '.join(missing)}" if missing else "")
            + (f" and has {', '.join(misplaced)} along other dims" if misplaced else "")
        )
    stacked = stacked.transpose(*others, "neuroid")
    size = stacked.sizes["neuroid"]
    # a level that .sel made scalar labels every neuroid alike
    labels = {name: np.broadcast_to(stacked[name].values, (size,)) for name in levels}
    # the MultiIndex goes: the layers must not keep its levels as coordinates
    plain = stacked.drop_vars(["neuroid", *levels], errors="ignore")
    odd = [name for name in labels["layer"].tolist() if not isinstance(name, str)]
    if odd:
        raise SelectionError(f"the layer coordinate holds {odd[0]!r}, which is not a layer "
                             "name; each neuroid's layer is named by text")
    layers = {}
    for name in pd.unique(labels["layer"]):
        where = np.flatnonzero(labels["layer"] == name)
        numbers = {dim: _unit_numbers(str(name), dim, labels[dim][where])
                   for dim in levels[1:]}
        # a layer's dims are the levels it numbers (0: a dim it does not have)
        own = {dim: values for dim, values in numbers.items() if np.any(values != 0)}
        numbers, flat = _grid(str(name), own)
        part = plain.isel(neuroid=where[np.argsort(flat, kind="stable")])
        layer = _on_grid(part, numbers)
        layers[str(name)] = layer if as_layers else layer.assign_coords(layer=str(name))
    return Activations(layers) if as_layers else layers


def _unit_numbers(layer: str, dim: str, values: np.ndarray) -> np.ndarray:
    """Give a level's values for one layer as int64 unit numbers, or refuse them.

    Integers, and floats of integral values (a coordinate that went through
    pandas or a file), are numbers; int64 is where files keep them.

    Raises
    ------
    SelectionError
        If a value is text, a boolean, NaN, infinite, fractional or beyond int64:
        cast, it would be another unit's number.
    """
    values = np.asarray(values)
    if values.dtype.kind in "iuf":
        wide = values.astype(np.float64) if values.dtype.kind == "f" else values
        bad = (np.zeros(values.shape, dtype=bool) if values.dtype.kind == "i" else
               values > np.iinfo(np.int64).max if values.dtype.kind == "u" else
               ~np.isfinite(wide) | (wide != np.round(wide)) | (np.abs(wide) >= 2.0**63))
        if not bad.any():
            return values.astype(np.int64)
        shown = repr(values[bad].tolist()[0])
    else:
        shown = f"{values.tolist()[0]!r} ({values.dtype})" if values.size else str(values.dtype)
    raise SelectionError(f"layer {layer!r}: its {dim} coordinate holds {shown}, which is not "
                         "a unit number; unit numbers are integers (within int64)")


def _unit_levels(stacked: xr.DataArray) -> tuple[str, ...]:
    """Name the unit levels of ``neuroid``: as stack_neuroids recorded them, or DNNBrain's."""
    if "layer" in stacked.coords and UNIT_LEVELS_ATTR in stacked["layer"].attrs:
        return tuple(map(str, stacked["layer"].attrs[UNIT_LEVELS_ATTR]))
    return NUMBERED_DIMS


def _check_common_dtype(dtypes: dict[str, np.dtype]) -> None:
    """Refuse layers whose common dtype would round some of their values.

    numpy promotes int64 beside float32 (or uint64 beside int64) to float64,
    whose 53-bit mantissa rounds integers beyond 2**53: the stacked matrix
    and the layers unstacked from it would differ from the file.
    """
    try:
        common = np.result_type(*dtypes.values())
    except TypeError:
        return  # no numeric promotion (text beside numbers): xarray's object dtype keeps all
    for name, dtype in dtypes.items():
        if not _holds_exactly(common, dtype):
            other = next(other for other, kind in dtypes.items() if kind != dtype)
            raise SelectionError(
                f"layers {name!r} ({dtype}) and {other!r} ({dtypes[other]}) have no common "
                f"dtype that holds both exactly ({common} would round {dtype} values); "
                "stack them separately, or cast them to one dtype first "
                f"(acts[{name!r}].astype(...)) if rounding is acceptable"
            )


def _holds_exactly(common: np.dtype, dtype: np.dtype) -> bool:
    """Whether every value of ``dtype`` is a value of ``common`` too."""
    if dtype.kind in "iu" and common.kind in "fc":
        # numpy calls int64 to float64 a safe cast; it is not, beyond 2**53
        bits = dtype.itemsize * 8 - (dtype.kind == "i")
        return bits <= np.finfo(common).nmant + 1
    return bool(np.can_cast(dtype, common, casting="safe"))


def _on_grid(part: xr.DataArray, numbers: dict[str, np.ndarray]) -> xr.DataArray:
    """Reshape a layer's neuroids, in grid order, to its grid of units (its unit dims)."""
    shape = tuple(axis.size for axis in numbers.values())

    def grid(variable: xr.Variable) -> xr.Variable:
        if "neuroid" not in variable.dims:
            return variable
        variable = variable.transpose(..., "neuroid")
        return xr.Variable((*variable.dims[:-1], *numbers),
                           variable.data.reshape(*variable.shape[:-1], *shape),
                           attrs=variable.attrs)

    coords = {name: grid(coord.variable) for name, coord in part.coords.items()}
    return xr.DataArray(grid(part.variable), coords={**coords, **numbers}, name=part.name)


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
            f"the neuroids of layer {name!r} do not fill its {' x '.join(axes)} grid "
            f"({shape} = {size} units, {flat.size} neuroids given); unstack all of a "
            "layer's units, each once"
        )
    return axes, flat
