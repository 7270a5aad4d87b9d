"""The ``.act.h5`` layout: which root objects are layers, and where labels live.

Knows nothing of xarray, so the command line can use it without importing
xarray or pandas.

DNNBrain's reader treats every root object as a layer, so coordinates and
provenance go into HDF5 attributes, which it ignores:

- on each layer dataset: ``channel``, ``row`` and ``column``, the 1-based
  numbers of the units stored (the network's numbers after a mask); a
  layer of other dims (an embedding ``(stimulus, channel)``, transformer
  tokens ``(stimulus, token, channel)``) is stored 4-D, padded with trailing
  length-1 axes as DNNBrain stores fc layers, its dims named in ``dims``
  and its labels in one attribute per unit dim, named after it;
- on the root: ``stimulus`` (the stimulus IDs), ``stimulus_fields`` (the
  names of the other stimulus fields, in order), one ``stimulus:<field>`` per
  field, ``stimulus_header`` (the ``.stim.csv`` header as JSON), and
  provenance (``source``, ``mask``, ``cmd``, ``date``, ``software``).

Files without these attributes (DNNBrain's) get numbers counted from 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import h5py
import numpy as np

from dnnmask_xr.act.chunk_index import layer_name
from dnnmask_xr.act.external import check_link, check_storage
from dnnmask_xr.errors import ActFileError

DIMS: tuple[str, str, str, str] = ("stimulus", "channel", "row", "column")
NUMBERED_DIMS: tuple[str, str, str] = ("channel", "row", "column")
#: The layer attribute naming the layer's dims (``stimulus`` first), written
#: only when they are not :data:`DIMS`.
DIMS_ATTR = "dims"
#: What a layer's unit dims (the dims after ``stimulus``) may be, said in errors.
UNIT_DIMS_RULE = ("a layer has 1 to 3 unit dims after stimulus, with distinct names that are "
                  "non-empty text without '/', other than stimulus, layer, neuroid and dims")
#: Names no unit dim may take: the stimulus dim, the attribute that lists the
#: dims, and the dims that Activations.sel and stack_neuroids add.
_NOT_UNIT_DIMS = ("stimulus", DIMS_ATTR, "layer", "neuroid")

STIMULUS = "stimulus"
STIMULUS_FIELDS = "stimulus_fields"
STIMULUS_FIELD_PREFIX = "stimulus:"
STIMULUS_HEADER = "stimulus_header"
#: Root attributes of a zarr store (``.act.zarr``) that keep the order of its
#: layers and of its stimulus fields (zarr lists a group's members in its own
#: order), and say that it was written exactly: every chunk stored, values and
#: attributes not encoded as CF conventions would
#: (:mod:`~dnnmask_xr.xarray_.zarr_store`).
LAYER_ORDER = "layer_order"
FIELD_ORDER = "stimulus_field_order"
EXACT_STORE = "act_zarr_exact"
#: The root attribute names a store keeps for itself, refused as provenance for
#: every suffix, so that what one suffix stores every other stores too.
STORE_ATTRS = (LAYER_ORDER, FIELD_ORDER, EXACT_STORE)

#: Most units (or stimuli) along any axis of a layer, and along all axes of
#: a file's layers together (the stimuli counted once). Every axis's labels
#: and selected positions are held in memory (8 bytes each), so a damaged
#: or hostile shape such as (2**61, 16, 1, 1), or a 1 KiB file declaring
#: 2**28 along every axis of each of its layers, is refused in one line rather
#: than failing to allocate; 2**28 is 2 GiB of labels, far beyond any network.
MAX_AXIS_LENGTH = 2**28
#: Largest item size per dtype kind: long doubles (float96/float128) differ
#: between platforms and cannot be coded like other numbers.
_LARGEST_ITEM = {"b": 1, "i": 8, "u": 8, "f": 8, "c": 16}
#: Why a layer of :func:`extended_precision` is refused, read or written.
EXTENDED = ("(extended precision), which numpy cannot handle the same way everywhere; layers "
            "hold numbers of at most 64 bits (complex: 128)")


def extended_precision(dtype: np.dtype) -> bool:
    """Whether ``dtype`` holds numbers wider than a layer's (``float128``, ``complex256``)."""
    return dtype.itemsize > _LARGEST_ITEM.get(dtype.kind, dtype.itemsize)


#: The dtype kinds of text: Python strings (object), bytes, numpy's fixed-width
#: unicode and NumPy 2's variable-width StringDType (what zarr 3 and pandas give).
TEXT_KINDS = "OSUT"


def is_text(values: Any) -> bool:
    """Tell whether an array (or a dtype) holds text, in any of numpy's ways."""
    dtype = values if isinstance(values, np.dtype) else np.asarray(values).dtype
    return dtype.kind in TEXT_KINDS


def plain_text(value: Any) -> Any:
    """Give text arrays of numpy's unicode or StringDType as Python strings (dtype object).

    The form h5py and h5netcdf store as variable-length UTF-8, and the one
    reading gives back; anything else is returned as it is.
    """
    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind in "UT":
        return np.array(value.tolist(), dtype=object).reshape(value.shape) if value.ndim else (
            str(value))
    return value


def count_from_one(size: int) -> np.ndarray:
    """Return the numbers ``1..size``, the labels of an axis nobody renamed."""
    return np.arange(1, size + 1, dtype=np.int64)


def is_counted_from_one(labels: np.ndarray) -> bool:
    """Tell whether ``labels`` are exactly ``1..len(labels)``."""
    labels = np.asarray(labels)
    return labels.dtype.kind in "iu" and np.array_equal(labels, count_from_one(labels.size))


def read_attrs(
    node: h5py.HLObject, where: str, wanted: Callable[[str], bool] | None = None
) -> dict[str, Any]:
    """Read a file object's attributes (those ``wanted``, or all) as a plain dict.

    Only the values asked for are read: a damaged attribute value (a
    variable-length string in a damaged global heap) can crash HDF5, so
    the command never reads the ones it does not use. A damaged attribute
    message makes h5py fail in several ways (even asking whether a name
    exists); here that is one error naming the object.

    Raises
    ------
    ActFileError
        If an attribute cannot be read.
    """
    name = node.name.lstrip("/") or "the root"
    key = None
    try:
        values = {}
        for key in list(node.attrs):
            if wanted is None or wanted(key):
                values[key] = _decoded(node.attrs[key])
        return values
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeError) as err:
        which = "attributes" if key is None else f"attribute {key!r}"
        raise ActFileError(f"{where}: the {which} of {name} cannot be read; the file is "
                           f"damaged ({err})") from None


def _decoded(value: Any) -> Any:
    """Give fixed-length byte strings (Julia's, MATLAB's, h5py's ``np.bytes_``) as text.

    As xarray's HDF5 backends read attributes: UTF-8 bytes are text; bytes
    that are not UTF-8 are given as they are (a write refuses them).
    """
    try:
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, np.ndarray) and value.dtype.kind == "S":
            return np.array([item.decode("utf-8") for item in value.ravel().tolist()],
                            dtype=object).reshape(value.shape)
    except UnicodeDecodeError:
        pass
    return value


def unit_dims_problem(dims: Sequence[object]) -> str | None:
    """Say what is wrong with a layer's unit dims (those after ``stimulus``), or None."""
    if not 1 <= len(dims) <= len(NUMBERED_DIMS):
        return f"it has {len(dims)} unit dims; {UNIT_DIMS_RULE}"
    for name in dims:
        if not isinstance(name, str) or not name or "/" in name or name in _NOT_UNIT_DIMS:
            return f"unit dim {name!r} is not a valid name; {UNIT_DIMS_RULE}"
    if len(set(dims)) != len(dims):
        return f"a unit dim is named twice; {UNIT_DIMS_RULE}"
    return None


def axis_names(unit_dims: Sequence[str]) -> dict[str, str]:
    """Name each stored axis (``channel``, ``row``, ``column``) as the layer names it.

    The first, second and third unit dims are stored along DNNBrain's
    channel, row and column axes; an axis the layer pads keeps its stored name.
    """
    return {stored: unit_dims[axis] if axis < len(unit_dims) else stored
            for axis, stored in enumerate(NUMBERED_DIMS)}


def decode_units(dataset: h5py.Dataset, where: str, attrs: Mapping[str, Any] | None = None,
                 ) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """Read a layer's unit dims and the numbers of its units along each stored axis.

    Parameters
    ----------
    dataset
        A 4-D layer dataset.
    where
        How to name the file in errors.
    attrs
        The dataset's attributes, if already read (by :func:`read_attrs`);
        otherwise only the ones needed are read here.

    Returns
    -------
    unit_dims, numbers
        The names of the layer's unit dims (``("channel", "row", "column")``
        for a layer without a ``dims`` attribute, as DNNBrain writes them),
        and ``{"channel": ..., "row": ..., "column": ...}``, the int64
        numbers along the stored axes (``[1]`` along an axis the layer pads).

    Raises
    ------
    ActFileError
        If ``dims`` is not a valid list of dims for the layer's shape, or a
        label attribute does not hold one integer per unit.
    """
    name = layer_name(dataset)
    if attrs is None:
        attrs = read_attrs(dataset, where, DIMS_ATTR.__eq__)
        unit_dims = _decode_dims(attrs, dataset, name, where)
        attrs = read_attrs(dataset, where, set(unit_dims).__contains__)
    else:
        unit_dims = _decode_dims(attrs, dataset, name, where)
    numbers = {}
    for axis, (stored, size) in enumerate(zip(NUMBERED_DIMS, dataset.shape[1:], strict=True)):
        dim = unit_dims[axis] if axis < len(unit_dims) else None
        if dim is None or dim not in attrs:  # a padded axis, or numbers never written
            numbers[stored] = count_from_one(size)
            continue
        value = np.atleast_1d(attrs[dim])
        if value.dtype.kind not in "iu" or value.ndim != 1 or value.size != size:
            raise ActFileError(
                f"{where}: attribute {dim!r} of layer {name!r} must hold "
                f"{size} integer {dim} numbers, one per {dim} of the layer; it holds "
                f"{value.size} value(s) of type {value.dtype}"
            )
        if value.dtype.kind == "u" and value.size and value.max() > np.iinfo(np.int64).max:
            # int64 would wrap them to negative numbers: other labels, silently
            raise ActFileError(
                f"{where}: attribute {dim!r} of layer {name!r} holds the {dim} "
                f"number {int(value.max())}, beyond the int64 range of {dim} numbers"
            )
        numbers[stored] = value.astype(np.int64)
    return unit_dims, numbers


def _decode_dims(attrs: Mapping[str, Any], dataset: h5py.Dataset, name: str,
                 where: str) -> tuple[str, ...]:
    if DIMS_ATTR not in attrs:
        return NUMBERED_DIMS
    dims = _decode_strings(attrs[DIMS_ATTR], DIMS_ATTR, f"{where}: layer {name!r}",
                           "the layer's dims")
    if not dims or dims[0] != "stimulus":
        raise ActFileError(f"{where}: attribute {DIMS_ATTR!r} of layer {name!r} lists "
                           f"{dims}; it names the layer's dims, stimulus first")
    unit_dims = tuple(dims[1:])
    problem = unit_dims_problem(unit_dims)
    if problem:
        raise ActFileError(f"{where}: attribute {DIMS_ATTR!r} of layer {name!r} lists "
                           f"{dims}: {problem}")
    padded = dataset.shape[1 + len(unit_dims):]
    if any(size != 1 for size in padded):
        raise ActFileError(f"{where}: layer {name!r} has shape {dataset.shape} but its "
                           f"attribute {DIMS_ATTR!r} names {len(dims)} dims {tuple(dims)}; "
                           "the stored axes after the named ones must have length 1")
    return unit_dims


def encode_units(dataset: h5py.Dataset, unit_dims: Sequence[str],
                 numbers: Mapping[str, np.ndarray]) -> None:
    """Store a layer's unit numbers as its attributes, and its dims unless they are DNNBrain's.

    ``numbers`` holds the numbers along the stored axes (``channel``,
    ``row``, ``column``); each unit dim's are stored under its own name.
    """
    for stored, dim in zip(NUMBERED_DIMS, unit_dims, strict=False):
        dataset.attrs.create(dim, np.asarray(numbers[stored], dtype=np.int64))
    if tuple(unit_dims) != NUMBERED_DIMS:
        _create(dataset.attrs, DIMS_ATTR, np.array(["stimulus", *unit_dims], dtype=object))


def decode_stimulus(
    attrs: Mapping[str, Any], size: int, where: str
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, str]]:
    """Read the stimulus IDs, fields and table header from root attributes.

    Parameters
    ----------
    attrs
        The root attributes.
    size
        The number of stimuli of the file's layers.
    where
        How to name the file in errors.

    Returns
    -------
    ids, fields, header
        The stimulus labels (``1..size`` when the file has none), the other
        fields by name in order, and the ``.stim.csv`` header (empty if none).
    """
    ids = _decode_values(attrs[STIMULUS], size, STIMULUS, where) if STIMULUS in attrs else None
    fields = {}
    for name in _decode_strings(attrs.get(STIMULUS_FIELDS, []), STIMULUS_FIELDS, where):
        if name in fields:
            raise ActFileError(f"{where}: attribute {STIMULUS_FIELDS!r} names {name!r} more "
                               "than once; it lists each stimulus field once")
        if not is_field_name(name):
            # a field named like a dimension would replace that dimension's
            # coordinate: .sel(channel=1) would select stimuli
            raise ActFileError(f"{where}: attribute {STIMULUS_FIELDS!r} names the stimulus "
                               f"field {name!r}; {FIELD_NAME_RULE}")
        key = STIMULUS_FIELD_PREFIX + name
        if key not in attrs:
            raise ActFileError(f"{where}: attribute {STIMULUS_FIELDS!r} names {name!r} "
                               f"but there is no attribute {key!r}")
        fields[name] = _decode_values(attrs[key], size, key, where)
    header: dict[str, str] = {}
    if STIMULUS_HEADER in attrs:
        text = _as_str(attrs[STIMULUS_HEADER], STIMULUS_HEADER, where)
        try:
            header = json.loads(text)
        except (TypeError, ValueError) as err:
            raise ActFileError(
                f"{where}: attribute {STIMULUS_HEADER!r} is not a JSON object ({err})"
            ) from None
        if not isinstance(header, dict) or not all(isinstance(v, str) for v in header.values()):
            raise ActFileError(f"{where}: attribute {STIMULUS_HEADER!r} must be a JSON object "
                               "of strings, like {\"type\": \"image\", \"path\": \"/data\"}")
    return (count_from_one(size) if ids is None else ids), fields, header


def encode_stimulus(
    attrs: MutableMapping[str, Any],
    ids: np.ndarray,
    fields: Mapping[str, np.ndarray],
    header: Mapping[str, str],
) -> None:
    """Store stimulus IDs, fields and header as root attributes.

    Nothing is written for stimuli that carry no information (labels
    ``1..n``, no fields, no header), so such files stay as DNNBrain writes them.
    """
    if not fields and not header and is_counted_from_one(ids):
        return
    _create(attrs, STIMULUS, ids)
    _create(attrs, STIMULUS_FIELDS, np.array(list(fields), dtype=object))
    for name, values in fields.items():
        _create(attrs, STIMULUS_FIELD_PREFIX + name, values)
    if header:
        attrs[STIMULUS_HEADER] = json.dumps(dict(header))


#: What a stimulus field may be called, said in errors.
FIELD_NAME_RULE = f"field names are not empty, hold no '/' and are none of {', '.join(DIMS)}"


def is_field_name(name: object) -> bool:
    """Tell whether ``name`` may name a stimulus field (a coordinate along ``stimulus``)."""
    return isinstance(name, str) and bool(name) and "/" not in name and name not in DIMS


def is_reserved(name: str) -> bool:
    """Tell whether a root attribute holds stimuli rather than free metadata."""
    return name in (STIMULUS, STIMULUS_FIELDS, STIMULUS_HEADER) or name.startswith(
        STIMULUS_FIELD_PREFIX
    )


def _create(attrs: MutableMapping[str, Any], name: str, values: np.ndarray) -> None:
    values = np.asarray(values)
    if is_text(values):
        # variable-length UTF-8: what h5py gives back as str, and what any
        # HDF5 reader understands; fixed-width numpy unicode has no HDF5 type
        attrs.create(name, np.array([str(v) for v in values], dtype=object),
                     dtype=h5py.string_dtype())
    else:
        attrs.create(name, values)


def _decode_values(value: Any, size: int, name: str, where: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray(value))
    if array.ndim != 1:
        raise ActFileError(f"{where}: attribute {name!r} is {array.ndim}-D (shape "
                           f"{array.shape}); it needs a list of one value per stimulus")
    if array.size != size:
        raise ActFileError(f"{where}: attribute {name!r} holds {array.size} value(s) "
                           f"but the layers have {size} stimuli; it needs one per stimulus")
    if is_text(array):
        return np.array([_as_str(v, name, where) for v in array], dtype=object)
    if array.dtype.kind not in "biuf":
        # what no write stores (complex, compound, ...): said here, naming the file
        shown = array.dtype.descr if array.dtype.names else array.dtype
        raise ActFileError(f"{where}: attribute {name!r} holds {shown} values; stimulus IDs "
                           "and fields are text or numbers")
    return array


def _decode_strings(value: Any, name: str, where: str, what: str = "field names") -> list[str]:
    array = np.atleast_1d(np.asarray(value))
    if array.size and not is_text(array):
        raise ActFileError(f"{where}: attribute {name!r} must list {what} as strings")
    return [_as_str(v, name, where) for v in array]


def _as_str(value: Any, name: str, where: str) -> str:
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        # h5py hands ASCII-typed strings with other bytes over as surrogate escapes
        text.encode("utf-8")
    except UnicodeError:
        shown = bytes(value) if isinstance(value, bytes) else value
        raise ActFileError(f"{where}: attribute {name!r} holds {shown!r}, which is not "
                           "UTF-8 text") from None
    return text

def layer_datasets(
    root: h5py.File, where: str, *, allow_external: bool = False
) -> dict[str, h5py.Dataset]:
    """Return the layers at a file's root, in order, each checked.

    Parameters
    ----------
    root
        The open file.
    where
        How to name the file in errors.
    allow_external
        Follow external links, virtual datasets and external raw storage
        (:mod:`dnnmask_xr.act.external`); refused by default.

    Raises
    ------
    ActFileError
        If a root object is not a 4-D numeric dataset stored in the file,
        the layers disagree on the number of stimuli, declare more than
        :data:`MAX_AXIS_LENGTH` stimuli and units along all their axes
        together, or the file is damaged.
    """
    try:
        names = layer_names(root)
    except (OSError, RuntimeError, KeyError) as err:
        raise ActFileError(f"{where!r} is damaged: cannot list its layers ({err})") from None
    layers = {name: layer_dataset(root, name, where, allow_external=allow_external)
              for name in names}
    sizes = {name: dataset.shape[0] for name, dataset in layers.items()}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{name!r}: {size}" for name, size in sizes.items())
        raise ActFileError(f"{where!r}: layers describe different numbers of stimuli "
                           f"({listing}); every layer must have one row per stimulus")
    # each axis was bounded alone; labels are made for every axis of every layer
    units = sum(sum(dataset.shape[1:]) for dataset in layers.values())
    total = units + next(iter(sizes.values()), 0)
    if total > MAX_AXIS_LENGTH:
        largest = max(layers, key=lambda name: sum(layers[name].shape[1:]))
        raise ActFileError(f"{where!r}: layers declare {total} stimuli and units along their "
                           f"axes together (the largest, {largest!r}, has shape "
                           f"{layers[largest].shape}); a file has at most {MAX_AXIS_LENGTH} "
                           "along all axes of its layers together")
    return layers


def layer_names(root: h5py.Group) -> list[str]:
    """List the root's objects in creation order where the file tracks it.

    Files this package writes track creation order, so layers come back in
    the order written. h5py iterates in that order only from some version
    on (older ones list by name), so the order is asked for explicitly.
    Files without tracking (DNNBrain's) list by name, as h5py does.

    Raises
    ------
    ActFileError
        If a name is not UTF-8 (h5py could not name the layer either).
    """
    names: list[bytes] = []
    order = (h5py.h5.INDEX_CRT_ORDER
             if root["/"].id.get_create_plist().get_link_creation_order()
             else h5py.h5.INDEX_NAME)
    root.id.links.iterate(names.append, idx_type=order)
    decoded = []
    for name in names:
        try:
            decoded.append(name.decode("utf-8"))
        except UnicodeDecodeError:
            raise ActFileError(f"{root.filename!r}: root object {name!r} has a name that is "
                               "not UTF-8 text; layer names are UTF-8") from None
    return decoded


def layer_dataset(
    root: h5py.File, name: str, where: str, *, allow_external: bool = False
) -> h5py.Dataset:
    """Return the root object ``name``, checked to be a 4-D numeric dataset.

    Its link is checked before it is opened, and its storage before any of
    its values is read (:mod:`dnnmask_xr.act.external`).
    """
    check_link(root, name, repr(where), allow_external)
    try:
        node = root[name]
    except (OSError, KeyError, RuntimeError, ValueError, UnicodeError) as err:
        raise ActFileError(f"{where!r}: cannot read layer {name!r} ({err})") from None
    kind = ("a group" if isinstance(node, h5py.Group) else
            f"a {node.ndim}-D dataset" if isinstance(node, h5py.Dataset) else "not a dataset")
    if not isinstance(node, h5py.Dataset) or node.ndim != 4:
        raise ActFileError(f"{where!r}: root object {name!r} is {kind}; every root object of "
                           "an .act.h5 file must be a 4-D dataset (stimulus, channel, row, "
                           "column)")
    try:
        dtype = node.dtype
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        raise ActFileError(f"{where!r}: layer {name!r} holds values of a type numpy cannot "
                           f"represent; the file is damaged ({err})") from None
    if dtype.kind not in "biufc":
        raise ActFileError(f"{where!r}: layer {name!r} holds {dtype} values; layers "
                           "hold numbers (integer, float or complex)")
    if extended_precision(dtype):
        raise ActFileError(f"{where!r}: layer {name!r} holds {dtype} values {EXTENDED}")
    too_long = [(dim, size) for dim, size in zip(DIMS, node.shape, strict=True)
                if size > MAX_AXIS_LENGTH]
    if too_long:
        dim, size = too_long[0]
        raise ActFileError(f"{where!r}: layer {name!r} declares {size} along its {dim} "
                           f"axis (shape {node.shape}); layers have at most "
                           f"{MAX_AXIS_LENGTH} along each axis")
    check_storage(node, name, repr(where), allow_external)
    return node


