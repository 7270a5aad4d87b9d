"""Activations from the peers' outputs: THINGSvision, Brain-Score, Net2Brain, and back.

Each reader takes a tool's files in the layout the tool documents and writes,
and gives :class:`~dnnmask_xr.Activations` with named unit dims and 1-based
unit numbers; ``.npy`` files are memory-mapped, so a layer is read only when
its values are used.

- THINGSvision (``extractor.extract_features`` then ``save_features``):
  ``features.npy``, ``features.hdf5`` (dataset ``features``) or
  ``features.txt``; the low-memory parts ``features_0-16.npy``,
  ``features_16-32.npy``, ... that ``extract_features(output_dir=...)``
  writes in a folder per module; image names in ``file_names.txt``.
- Brain-Score (model-tools' activations extractor): a ``NeuroidAssembly`` of
  dims ``presentation x neuroid``, whose neuroids carry ``layer`` and the
  0-based ``channel``, ``channel_x`` (the row), ``channel_y`` (the column;
  NaN for an fc layer) or, for a transformer, ``channel`` (the token) and
  ``embedding``; BrainIO netCDF files of one.
- Net2Brain (``FeatureExtractor.extract``): one ``.npz`` per stimulus with
  one key per layer, or, after ``consolidate_per_layer``, one
  ``consolidated_<layer>.npz`` per layer with one key per stimulus.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from dnnmask_xr._args import path_arg
from dnnmask_xr.act.external import check_link, check_storage
from dnnmask_xr.act.files import check_readable
from dnnmask_xr.act.layout import is_text
from dnnmask_xr.errors import ActFileError, SelectionError, UsageError
from dnnmask_xr.formats._lines import read_utf8
from dnnmask_xr.xarray_.activations import Activations, unit_dims_of

#: THINGSvision's low-memory parts: ``features<suffix>_<first>-<last>.npy``.
_PART = re.compile(r"^features(?P<suffix>.*)_(?P<first>\d+)-(?P<last>\d+)\.npy$")
#: THINGSvision's files, in the order a folder is searched for them.
_THINGSVISION_FILES = ("features.npy", "features.hdf5", "features.txt")
#: Brain-Score's 0-based coordinates of a neuroid, by the layer's kind.
_TOKEN_COORDS = ("channel", "embedding")
_CONV_COORDS = ("channel", "channel_x", "channel_y")
#: What a layer read from an assembly calls its stimuli and units: no stimulus field's name.
_FROM_ASSEMBLY = ("stimulus", "token", "channel", "row", "column")
#: The coordinates an assembly made here has of its own: no stimulus field's name.
_OF_ASSEMBLY = ("presentation", "stimulus_id", "neuroid", "neuroid_id", "layer", *_CONV_COORDS,
                "embedding")


# -- THINGSvision ----------------------------------------------------------------------------

def read_thingsvision(
    path: str | os.PathLike[str],
    *,
    layer: str | None = None,
    shape: Sequence[int] | None = None,
) -> Activations:
    """Read features THINGSvision saved, as one layer.

    Parameters
    ----------
    path
        A ``features.npy``, ``features.hdf5`` or ``features.txt`` file, or
        the folder holding one, or the module's folder of low-memory parts
        (``features_0-16.npy``, ...), which are read in stimulus order.
    layer
        The layer's name; by default the folder's name (THINGSvision names
        the folder of parts after the module).
    shape
        The unit shape of flattened features (``flatten_acts=True``):
        ``(channels, rows, columns)`` of a conv layer, ``(tokens, channels)``
        of a transformer layer. THINGSvision flattens in C order, as
        ``tensor.view(n, -1)`` does; a file stores no shape.

    Returns
    -------
    Activations
        One layer: ``(stimulus, channel)`` for 2-D features, ``(stimulus,
        token, channel)`` for 3-D ones, ``(stimulus, channel, row,
        column)`` for 4-D ones (or as ``shape`` says). Stimuli are labelled
        by ``file_names.txt`` when it lists one name per stimulus, else
        numbered from 1.

    Raises
    ------
    FormatError
        If ``file_names.txt`` is not UTF-8 text.
    ActFileError
        If no features are found or they cannot be read (an HDF5
        ``features`` that is not a dataset, or a link to one that does not
        open), parts leave a gap (by their names, or a part holds more or
        fewer stimuli than its name says), or ``shape`` does not divide the
        features' width.
    """
    where = Path(path_arg(path, "features"))
    files = _thingsvision_files(where)
    values = _join_parts([_load_features(file) for file in files], files)
    if shape is not None:
        values = _unflatten(values, shape, files[0])
    name = layer if layer is not None else (where if where.is_dir() else where.parent).name
    acts = Activations({name or "features": values})
    names = _file_names(files[0].parent, values.shape[0])
    return acts if names is None else _labelled(acts, names)


def _thingsvision_files(where: Path) -> list[Path]:
    if where.is_file():
        return [where]
    if not where.is_dir():
        raise ActFileError(f"{str(where)!r}: no such file or folder of THINGSvision features")
    for name in _THINGSVISION_FILES:
        if (where / name).is_file():
            return [where / name]
    parts = sorted((match for match in map(_PART.match, os.listdir(where)) if match),
                   key=lambda match: int(match["first"]))
    if not parts:
        raise ActFileError(f"{str(where)!r} holds no THINGSvision features: no "
                           f"{', '.join(_THINGSVISION_FILES)} and no parts like "
                           "features_0-16.npy")
    end = 0
    for match in parts:
        if int(match["first"]) != end:
            raise ActFileError(f"{str(where)!r}: the parts of THINGSvision features leave a "
                               f"gap or overlap: {match.string} starts at {match['first']} "
                               f"where the parts before end at {end}")
        end = int(match["last"])
    return [where / match.string for match in parts]


def _load_features(file: Path) -> np.ndarray:
    try:
        if file.suffix == ".npy":
            return np.load(file, mmap_mode="r", allow_pickle=False)
        if file.suffix == ".txt":
            return np.loadtxt(file, ndmin=2)
        if file.suffix == ".hdf5":
            import h5py

            with h5py.File(file, "r") as root:
                # followed as HDF5 would, but checked hop by hop first: a link that
                # leads nowhere (or in a loop) is said in one line
                check_link(root, "features", repr(str(file)), allow_external=True)
                found = root.get("features")
                if found is None:
                    raise ActFileError(f"{str(file)!r} has no dataset 'features' (it holds "
                                       f"{', '.join(root) or 'nothing'}); THINGSvision "
                                       "stores its features there")
                if not isinstance(found, h5py.Dataset):
                    kind = "a group" if isinstance(found, h5py.Group) else "a named datatype"
                    raise ActFileError(f"{str(file)!r}: 'features' is {kind}, not a dataset; "
                                       "THINGSvision stores its features as the dataset "
                                       "'features'")
                check_storage(found, "features", repr(str(file)), allow_external=True)
                return found[()]
    except ActFileError:
        raise  # said already (an ActFileError is a ValueError too)
    except (OSError, ValueError) as err:
        raise ActFileError(f"cannot read THINGSvision features {str(file)!r} ({err})") from None
    raise ActFileError(f"{str(file)!r} is not a THINGSvision features file (.npy, .hdf5, .txt)")


def _join_parts(parts: list[np.ndarray], files: list[Path]) -> np.ndarray:
    for part, file in zip(parts, files, strict=True):
        match = _PART.match(file.name)
        if match is None:
            continue
        # the names leave no gap, but a part short of its name (a run cut off) would
        # shift every later stimulus onto the wrong row
        held = part.shape[0] if part.ndim else 0
        said = int(match["last"]) - int(match["first"])
        if held != said:
            raise ActFileError(f"{str(file.parent)!r}: the parts of THINGSvision features "
                               f"leave a gap or overlap: {file.name} holds {held} stimuli "
                               f"where its name, {match['first']}-{match['last']}, says "
                               f"{said}")
    if len(parts) == 1:
        return parts[0]
    for part, file in zip(parts[1:], files[1:], strict=True):
        if part.shape[1:] != parts[0].shape[1:]:
            raise ActFileError(f"{str(file)!r} holds features of shape {part.shape[1:]} per "
                               f"stimulus, {str(files[0])!r} {parts[0].shape[1:]}; the parts "
                               "of one module agree")
    return np.concatenate(parts)


def _unflatten(values: np.ndarray, shape: Sequence[int], file: Path) -> np.ndarray:
    if isinstance(shape, int | str) or not all(
            isinstance(size, int | np.integer) and size > 0 for size in shape):
        raise UsageError(f"shape={shape!r} is not a unit shape; give positive sizes such as "
                         "(256, 13, 13) or (197, 768)")
    if values.ndim != 2:
        raise ActFileError(f"{str(file)!r} holds {values.ndim}-D features {values.shape}; "
                           "shape= unflattens 2-D (flattened) features only")
    width = int(np.prod(shape))
    if width != values.shape[1]:
        raise ActFileError(f"{str(file)!r} holds {values.shape[1]} features per stimulus, but "
                           f"shape={tuple(shape)} has {width} units; give the layer's shape "
                           "before flattening")
    return values.reshape(values.shape[0], *map(int, shape))


def _file_names(folder: Path, n_stimuli: int) -> list[str] | None:
    """THINGSvision's image names, where ``file_names.txt`` lists one per stimulus."""
    for where in (folder, folder.parent):
        listing = where / "file_names.txt"
        if listing.is_file():
            names = [line.strip() for line in read_utf8(listing, "file_names.txt").splitlines()
                     if line.strip()]
            return names if len(names) == n_stimuli and len(set(names)) == n_stimuli else None
    return None


def _labelled(acts: Activations, ids: Sequence[Any],
              fields: Mapping[str, np.ndarray] | None = None) -> Activations:
    """Label the stimuli of every layer (one table for all)."""
    coords: dict[str, Any] = {"stimulus": np.asarray(ids, dtype=object)
                              if not np.issubdtype(np.asarray(ids).dtype, np.number)
                              else np.asarray(ids)}
    # text as Python strings, as files give it back
    coords.update({name: ("stimulus", np.asarray(values, dtype=object) if is_text(values)
                          else values) for name, values in (fields or {}).items()})
    return Activations({name: array.assign_coords(coords) for name, array in acts.items()},
                       attrs=acts.attrs)


# -- Brain-Score -----------------------------------------------------------------------------

def from_neuroid_assembly(assembly: xr.DataArray) -> Activations:
    """Read a Brain-Score ``NeuroidAssembly`` of model activations, one layer per ``layer``.

    Parameters
    ----------
    assembly
        Dims ``presentation`` and ``neuroid`` (and a ``time_bin`` of one
        bin, if any), as model-tools' activations extractor makes it:
        ``stimulus_id`` and the StimulusSet's columns along
        ``presentation``; ``layer`` and the 0-based ``channel``,
        ``channel_x``, ``channel_y`` (NaN for fc layers) or ``channel`` and
        ``embedding`` (transformer layers) along ``neuroid``, as coordinates
        or levels of a MultiIndex.

    Returns
    -------
    Activations
        Per layer, in order of appearance: ``(stimulus, channel, row,
        column)`` from ``channel``, ``channel_x`` and ``channel_y``
        (x is the row: model-tools flattens ``(n, channel, height, width)``);
        ``(stimulus, channel)`` where ``channel_x``/``channel_y`` are NaN or
        missing (a layer without ``channel`` numbers its neuroids in order);
        ``(stimulus, token, channel)`` from ``channel`` and ``embedding``.
        Numbers are 1-based (0-based + 1). ``stimulus_id`` labels the
        stimuli; the other coordinates along ``presentation`` are stimulus
        fields.

    Raises
    ------
    SelectionError
        If a coordinate is missing, a unit's number is not a 0-based unit
        number (NaN beside numbers, infinite, negative, fractional, beyond
        int64, text), a layer's neuroids do not fill its grid (each unit
        once), a layer has more than three unit axes, or a coordinate along
        ``presentation`` is named like the stimulus IDs or a unit dim
        (``stimulus``, ``token``, ``channel``, ``row``, ``column``).
    """
    if not isinstance(assembly, xr.DataArray):
        raise UsageError(f"an assembly is an xarray.DataArray, not a {type(assembly).__name__}")
    if "time_bin" in assembly.dims:
        if assembly.sizes["time_bin"] != 1:
            raise SelectionError(f"the assembly has {assembly.sizes['time_bin']} time bins; "
                                 "select one first (assembly.isel(time_bin=0))")
        assembly = assembly.isel(time_bin=0, drop=True)
    if set(assembly.dims) != {"presentation", "neuroid"}:
        raise SelectionError(f"the assembly has dims {assembly.dims}; a NeuroidAssembly of "
                             "activations has presentation and neuroid")
    for needed, dim in (("stimulus_id", "presentation"), ("layer", "neuroid")):
        if needed not in assembly.coords or assembly[needed].dims != (dim,):
            raise SelectionError(f"the assembly has no {needed!r} coordinate along {dim!r}; "
                                 "model-tools' assemblies have one")
    assembly = assembly.transpose("presentation", "neuroid")
    fields = {str(key): coord.values for key, coord in assembly.coords.items()
              if coord.dims == ("presentation",) and key not in ("presentation", "stimulus_id")}
    for key in fields:
        if key in _FROM_ASSEMBLY:
            # as a stimulus field it would replace the IDs (or a unit dim's numbers)
            raise SelectionError(f"the assembly's presentation coordinate {key!r} would be a "
                                 "stimulus field named like the stimulus IDs or a unit dim "
                                 f"({', '.join(_FROM_ASSEMBLY)}); rename or drop it")
    values = assembly.values
    layer_of = assembly["layer"].values
    layers = {}
    for name in pd.unique(layer_of):
        where = np.flatnonzero(layer_of == name)
        dims, numbers = _layer_units(assembly, where, str(name))
        layers[str(name)] = _on_grid(values[:, where], dims, numbers, str(name))
    return _labelled(Activations(layers), assembly["stimulus_id"].values, fields)


def _layer_units(assembly: xr.DataArray, where: np.ndarray,
                 name: str) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """Give a layer's unit dims and each neuroid's 0-based number along them."""
    def coord(key: str) -> np.ndarray | None:
        if key not in assembly.coords or assembly[key].dims != ("neuroid",):
            return None
        found = assembly[key].values[where]
        if found.dtype.kind not in "iuf":
            # text of digits would pass as numbers, other text fail in the conversion
            shown = f"text such as {found.tolist()[0]!r}" if is_text(found) and found.size \
                else f"{found.dtype} values"
            raise SelectionError(f"layer {name!r}: {key} holds {shown}, not 0-based unit "
                                 "numbers; model-tools numbers units 0, 1, 2, ...")
        found = found.astype(np.float64)
        return None if np.isnan(found).all() else found

    if coord("channel_temporal") is not None:
        raise SelectionError(f"layer {name!r} has channel_temporal, channel_x, channel_y and "
                             "channel: four unit axes, and layers have at most three; select "
                             "one channel_temporal first")
    kinds = ((_TOKEN_COORDS, ("token", "channel")), (_CONV_COORDS, ("channel", "row", "column")),
             (_CONV_COORDS[:1], ("channel",)))
    for keys, unit_dims in kinds:
        found = [coord(key) for key in keys]
        if all(axis is not None for axis in found):
            dims = unit_dims
            break
    else:  # no channel numbers: the neuroids in order
        return ("channel",), [np.arange(where.size, dtype=np.float64)]
    numbers = []
    for key, axis in zip(keys, found, strict=True):
        # beyond int64 (inf among them) the cast to int64 gives INT64_MIN: a negative number
        bad = ~np.isfinite(axis) | (axis < 0) | (axis != np.round(axis)) | (axis >= 2.0**63)
        if bad.any():
            raise SelectionError(f"layer {name!r}: {key} holds {axis[bad][0]:g}, which is not "
                                 "a 0-based unit number (NaN beside numbers, infinite, "
                                 "negative, fractional or beyond int64)")
        numbers.append(axis)
    return dims, numbers


def _on_grid(values: np.ndarray, dims: tuple[str, ...], numbers: list[np.ndarray],
             name: str) -> xr.DataArray:
    """Place a layer's neuroids on its grid of units, numbered from 1."""
    axes, codes = [], []
    for axis in numbers:
        # in order of first appearance: a grid saved from masked layers keeps its order
        code, labels = pd.factorize(axis.astype(np.int64))
        axes.append(np.asarray(labels, dtype=np.int64) + 1)
        codes.append(code)
    sizes = tuple(axis.size for axis in axes)
    flat = np.ravel_multi_index(codes, sizes)
    if flat.size != np.prod(sizes) or np.unique(flat).size != flat.size:
        raise SelectionError(f"the neuroids of layer {name!r} do not fill its "
                             f"{' x '.join(dims)} grid ({' x '.join(map(str, sizes))} units, "
                             f"{flat.size} neuroids); each unit must appear once")
    grid = np.empty((values.shape[0], flat.size), dtype=values.dtype)
    grid[:, flat] = values
    return xr.DataArray(grid.reshape(values.shape[0], *sizes), dims=("stimulus", *dims),
                        coords=dict(zip(dims, axes, strict=True)))


def open_brainio(path: str | os.PathLike[str]) -> Activations:
    """Read a BrainIO netCDF file of a model's assembly (see :func:`from_neuroid_assembly`).

    BrainIO writes an assembly with its MultiIndexes reset into plain
    coordinates, one variable in the file; it is read into memory.

    Raises
    ------
    ActFileError
        If the file is missing, a folder or not HDF5 (netCDF4), cannot be
        read as netCDF with one data variable, or its assembly is refused
        as :func:`from_neuroid_assembly` refuses it (naming the file).
    """
    where = path_arg(path, "BrainIO file")
    # in the words every open uses: HDF5's own text runs to several lines
    check_readable(where, "a BrainIO netCDF file", "the assembly as one netCDF4 variable")
    try:
        # a file without netCDF's dimensions (an .act.h5) is refused below by its dims,
        # without h5netcdf's warning about how it names them
        with xr.open_dataarray(where, engine="h5netcdf", phony_dims="sort") as opened:
            assembly = opened.load()
    except (OSError, ValueError) as err:
        raise ActFileError(f"cannot read {where!r} as a BrainIO netCDF assembly ({err})"
                           ) from None
    try:
        return from_neuroid_assembly(assembly)
    except SelectionError as err:
        raise ActFileError(f"{where!r}: {err}") from None


def to_neuroid_assembly(acts: Activations | Mapping[str, xr.DataArray],
                        layers: Sequence[str] | None = None) -> xr.DataArray:
    """Give layers in Brain-Score's shape: a ``presentation x neuroid`` assembly.

    The inverse of :func:`from_neuroid_assembly`: ``presentation`` is a
    MultiIndex of ``stimulus_id`` and the stimulus fields; ``neuroid`` a
    MultiIndex of ``neuroid_id`` (``<layer>.<n>``), ``layer`` and the
    0-based ``channel``, ``channel_x``, ``channel_y`` and ``embedding``,
    NaN where a layer has no such axis (as model-tools numbers them: the
    token of a transformer layer is its ``channel``, its channel the
    ``embedding``).

    Parameters
    ----------
    acts
        The layers, as :class:`~dnnmask_xr.Activations` or a mapping of
        layer name to ``DataArray``.
    layers
        The layers to give, in this order (a name or a list of names); by
        default all of them.

    Returns
    -------
    xarray.DataArray
        Dims ``presentation`` and ``neuroid``, the layers' neuroids one
        layer after the other.

    Raises
    ------
    SelectionError
        If a layer has unit dims other than ``(channel,)``, ``(token,
        channel)`` and ``(channel, row, column)``, or is not in ``acts``, or
        a stimulus field has the name of one of the assembly's own
        coordinates (``stimulus_id``, ``layer``, ``channel_x``, ...).
    UsageError
        If no layer is given.
    DnnMaskError
        If the layers label their stimuli differently (see
        :meth:`Activations.stimulus_table <dnnmask_xr.Activations.stimulus_table>`):
        one ``presentation`` dim labels every layer's values.
    """
    if not isinstance(acts, Activations):
        acts = Activations(acts)
    if layers is not None:
        acts = acts.sel(layer=layers)
    if not acts:
        raise UsageError("an assembly holds at least one layer, and "
                         + (f"layers={layers!r} names none" if layers is not None
                            else "the activations hold none"))
    # the check every write makes: the values of each layer are placed under the IDs
    # of the first, so they must describe the same stimuli in the same order
    table = acts.stimulus_table()
    for key in table.fields:
        if key in _OF_ASSEMBLY:
            # beside stimulus_id it would replace the IDs; beside the neuroid levels,
            # clash with them
            raise SelectionError(f"stimulus field {key!r} has the name of a coordinate the "
                                 f"assembly has of its own ({', '.join(_OF_ASSEMBLY)}); "
                                 "rename the field")
    parts, neuroids = [], []
    for name, array in acts.items():
        dims = unit_dims_of(array)
        keys = {("channel",): ("channel",), ("token", "channel"): _TOKEN_COORDS,
                ("channel", "row", "column"): _CONV_COORDS}.get(dims)
        if keys is None:
            raise SelectionError(f"layer {name!r} has the unit dims {dims}; Brain-Score's "
                                 "assemblies number (channel), (token, channel) and (channel, "
                                 "row, column) layers")
        grid = np.meshgrid(*(array[dim].values for dim in dims), indexing="ij")
        size = grid[0].size
        units = {"neuroid_id": [f"{name}.{i}" for i in range(size)], "layer": [name] * size}
        for key in ("channel", "channel_x", "channel_y", "embedding"):
            units[key] = np.full(size, np.nan)
        for key, axis in zip(keys, grid, strict=True):
            units[key] = axis.ravel() - 1.0
        neuroids.append(pd.DataFrame(units))
        # the size given, not -1: a layer of no stimuli has no size to infer
        parts.append(np.asarray(array.values).reshape(array.shape[0], size))
    index = pd.MultiIndex.from_frame(pd.concat(neuroids, ignore_index=True))
    presentation = pd.MultiIndex.from_frame(pd.DataFrame({
        "stimulus_id": table.ids, **{str(key): values for key, values in table.fields.items()}}))
    coords = xr.Coordinates.from_pandas_multiindex(presentation, "presentation").merge(
        xr.Coordinates.from_pandas_multiindex(index, "neuroid")).coords
    return xr.DataArray(np.concatenate(parts, axis=1), dims=("presentation", "neuroid"),
                        coords=coords)


# -- Net2Brain -------------------------------------------------------------------------------

def read_net2brain(path: str | os.PathLike[str]) -> Activations:
    """Read the features Net2Brain's ``FeatureExtractor`` saved in a folder.

    Parameters
    ----------
    path
        The folder: ``consolidated_<layer>.npz`` files (one per layer, one key
        per stimulus), or one ``<stimulus>.npz`` per stimulus (one key per
        layer), read in name order.

    Returns
    -------
    Activations
        One layer per file (or key), stimuli labelled by their keys (file
        names) in the first file's order; each stimulus's leading batch axis
        of 1 is dropped.

    Raises
    ------
    ActFileError
        If the folder holds no ``.npz`` file, a file cannot be read or holds
        no array or a single one (``np.save``'s), or the files disagree on
        their keys (a key that some files lack, whichever file holds it) or
        shapes.
    """
    where = Path(path_arg(path, "Net2Brain folder"))
    if not where.is_dir():
        raise ActFileError(f"{str(where)!r} is not a folder of Net2Brain features")
    files = sorted(file for file in where.iterdir() if file.suffix == ".npz")
    if not files:
        raise ActFileError(f"{str(where)!r} holds no .npz file of Net2Brain features")
    consolidated = [file for file in files if file.name.startswith("consolidated_")]
    if consolidated:
        tables = {file.stem.removeprefix("consolidated_"): _npz(file, "stimulus")
                  for file in consolidated}
        stimuli = list(next(iter(tables.values())))
        layers = {name: _stacked(table, stimuli, file, "stimulus")
                  for (name, table), file in zip(tables.items(), consolidated, strict=True)}
        return _labelled(Activations(layers), stimuli)
    per_stimulus = {file.stem: _npz(file, "layer") for file in files}
    names = list(next(iter(per_stimulus.values())))
    # every file against the first, both ways: a layer only later files hold is
    # refused, not dropped
    for keys, file in zip(per_stimulus.values(), files, strict=True):
        missing = [name for name in names if name not in keys]
        if missing:
            raise ActFileError(f"{str(file)!r} has no layer {missing[0]!r}, which "
                               f"{str(files[0])!r} has; every stimulus's file holds the "
                               "same layers")
        extra = [name for name in keys if name not in names]
        if extra:
            raise ActFileError(f"{str(file)!r} has a layer {extra[0]!r}, which "
                               f"{str(files[0])!r} has not; every stimulus's file holds the "
                               "same layers")
    layers = {name: _stacked({stimulus: keys[name] for stimulus, keys in per_stimulus.items()},
                             list(per_stimulus), files[0], "layer")
              for name in names}
    return _labelled(Activations(layers), list(per_stimulus))


def _npz(file: Path, per: str) -> dict[str, np.ndarray]:
    """Read an ``.npz`` file of Net2Brain's, one key per ``per`` (layer or stimulus)."""
    try:
        data = np.load(file, allow_pickle=False)
        if isinstance(data, np.ndarray):  # one array, as np.save writes it
            table = None
        else:
            with data:
                table = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ActFileError(f"cannot read {str(file)!r} as an .npz file ({err})") from None
    if table is None:
        raise ActFileError(f"{str(file)!r} holds one array, as np.save writes; Net2Brain's "
                           f".npz files hold one array per {per}")
    if not table:
        raise ActFileError(f"{str(file)!r} holds nothing; Net2Brain's .npz files hold one "
                           f"array per {per}")
    return table


def _stacked(table: Mapping[str, np.ndarray], keys: list[str], file: Path,
             what: str) -> np.ndarray:
    if what == "stimulus" and list(table) != keys and set(table) != set(keys):
        extra = sorted(set(table) ^ set(keys))[0]
        raise ActFileError(f"{str(file)!r}: stimulus key {extra!r} is in one layer's file "
                           "and not in the others; every layer's file holds the same stimuli")
    values = [table[key] for key in keys]
    # Net2Brain keeps each stimulus's batch axis of 1
    values = [value[0] if value.ndim > 1 and value.shape[0] == 1 else value for value in values]
    shapes = {value.shape for value in values}
    if len(shapes) > 1:
        raise ActFileError(f"{str(file)!r}: the stimuli's features have different shapes "
                           f"({', '.join(map(str, sorted(shapes)))}); a layer's are alike")
    return np.stack(values)
