"""The ``.act.h5`` layout: opening files, listing layers, and where labels live.

Knows nothing of xarray, so the command line can use it without importing
xarray or pandas.

DNNBrain's reader treats every root object as a layer, so coordinates and
provenance go into HDF5 attributes, which it ignores:

- on each layer dataset: ``channel``, ``row`` and ``column``, the 1-based
  numbers of the units stored (the network's numbers after a mask);
- on the root: ``stimulus`` (the stimulus IDs), ``stimulus_fields`` (the
  names of the other stimulus fields, in order), one ``stimulus:<field>`` per
  field, ``stimulus_header`` (the ``.stim.csv`` header as JSON), and
  provenance (``source``, ``mask``, ``cmd``, ``date``, ``software``).

Files without these attributes (DNNBrain's) get numbers counted from 1.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from dnnmask_xr.act.external import check_link, check_storage, files_read
from dnnmask_xr.errors import ActFileError

DIMS: tuple[str, str, str, str] = ("stimulus", "channel", "row", "column")
NUMBERED_DIMS: tuple[str, str, str] = ("channel", "row", "column")

STIMULUS = "stimulus"
STIMULUS_FIELDS = "stimulus_fields"
STIMULUS_FIELD_PREFIX = "stimulus:"
STIMULUS_HEADER = "stimulus_header"

#: Most units (or stimuli) along any axis of a layer. Every axis's labels
#: and selected positions are held in memory (8 bytes each), so a damaged
#: or hostile shape such as (2**61, 16, 1, 1) is refused in one line rather
#: than failing to allocate; 2**28 is 2 GiB of labels, far beyond any network.
MAX_AXIS_LENGTH = 2**28
#: Largest item size per dtype kind: long doubles (float96/float128) differ
#: between platforms and cannot be coded like other numbers.
_LARGEST_ITEM = {"b": 1, "i": 8, "u": 8, "f": 8, "c": 16}


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
                values[key] = node.attrs[key]
        return values
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeError) as err:
        which = "attributes" if key is None else f"attribute {key!r}"
        raise ActFileError(f"{where}: the {which} of {name} cannot be read; the file is "
                           f"damaged ({err})") from None


def decode_unit_labels(dataset: h5py.Dataset, where: str,
                       attrs: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Read a layer's channel, row and column numbers.

    Parameters
    ----------
    dataset
        A 4-D layer dataset.
    where
        How to name the file in errors.
    attrs
        The dataset's attributes, if already read (by :func:`read_attrs`);
        otherwise only ``channel``, ``row`` and ``column`` are read here.

    Returns
    -------
    dict
        ``{"channel": ..., "row": ..., "column": ...}``, int64 arrays.
    """
    numbers = {}
    if attrs is None:
        attrs = read_attrs(dataset, where, NUMBERED_DIMS.__contains__)
    for dim, size in zip(NUMBERED_DIMS, dataset.shape[1:], strict=True):
        if dim not in attrs:
            numbers[dim] = count_from_one(size)
            continue
        value = np.atleast_1d(attrs[dim])
        if value.dtype.kind not in "iu" or value.ndim != 1 or value.size != size:
            raise ActFileError(
                f"{where}: attribute {dim!r} of layer {_layer(dataset)!r} must hold "
                f"{size} integer {dim} numbers, one per {dim} of the layer; it holds "
                f"{value.size} value(s) of type {value.dtype}"
            )
        if value.dtype.kind == "u" and value.size and value.max() > np.iinfo(np.int64).max:
            # int64 would wrap them to negative numbers: other labels, silently
            raise ActFileError(
                f"{where}: attribute {dim!r} of layer {_layer(dataset)!r} holds the {dim} "
                f"number {int(value.max())}, beyond the int64 range of {dim} numbers"
            )
        numbers[dim] = value.astype(np.int64)
    return numbers


def encode_unit_labels(dataset: h5py.Dataset, numbers: Mapping[str, np.ndarray]) -> None:
    """Store a layer's channel, row and column numbers as its attributes."""
    for dim in NUMBERED_DIMS:
        dataset.attrs.create(dim, np.asarray(numbers[dim], dtype=np.int64))


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
    if values.dtype.kind in "OUT":
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
    if array.dtype.kind in "OSU":
        return np.array([_as_str(v, name, where) for v in array], dtype=object)
    return array


def _decode_strings(value: Any, name: str, where: str) -> list[str]:
    array = np.atleast_1d(np.asarray(value))
    if array.size and array.dtype.kind not in "OSU":
        raise ActFileError(f"{where}: attribute {name!r} must list field names as strings")
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

class FileIdentity(NamedTuple):
    """What tells an open file from another one put at its path since.

    A file replaced by a rename (what ``dnn_mask`` and ``save_act`` do to an
    existing output) has another inode; one rewritten in place, another size
    or modification time. The status change time is kept too: no program
    can set it, so a rewrite whose modification time is set back (``os.utime``,
    ``cp -p``, ``rsync -t``) still shows; it also moves when the file's
    permissions or links change, which is then refused as a change too.
    The device is left out: machines that mount one share (a dask cluster's
    workers) see the same file on different devices.
    """

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


#: The other files a layer reads from (``allow_external``), each as it was at open.
SourceFiles = tuple[tuple[str, FileIdentity], ...]


def file_identity(where: str) -> FileIdentity:
    """Identify the file at ``where`` now, before it is opened.

    Raises
    ------
    ActFileError
        If the file cannot be looked at (missing, permission denied).
    """
    try:
        return _identity(os.stat(where))
    except OSError as err:
        failed = err
    check_readable(where)  # says why in the words every open uses
    raise ActFileError(f"cannot open {where!r}: {failed.strerror or failed}")


def _identity(status: os.stat_result) -> FileIdentity:
    return FileIdentity(status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def source_files(root: h5py.File) -> SourceFiles:
    """Identify every other file the objects of ``root`` read from, at every depth.

    HDF5 opens them again by name at each read (a virtual dataset's
    sources, external links' targets, external raw storage), so each read
    checks them (:meth:`HeldFile.hold`), where the file itself is checked
    when it is opened again. ``root`` is opened by its absolute path, as it
    is read later: links' and virtual datasets' files are then named
    absolutely too, and found again after ``os.chdir`` (raw storage files
    stay named from the working folder, as HDF5 finds them).
    """
    return tuple((file, file_identity(file)) for file in sorted(files_read(root)))


def _check_sources(sources: SourceFiles, where: str) -> None:
    for file, identity in sources:
        try:
            same = _identity(os.stat(file)) == identity
        except OSError:
            same = False
        if not same:
            raise ActFileError(f"{where!r}: {file!r}, which its layers read from, changed "
                               "since the file was opened (it was replaced, rewritten or "
                               "removed), so its values no longer match the labels read then; "
                               "open the file again to read what it holds now") from None


class HeldFile(h5py.File):
    """An open file that reads hold: closing it waits for the last read to let go.

    xarray's file cache closes the file it evicts when another file is
    opened, from whichever thread opens it; a read that is still inflating
    chunks of the evicted file on other threads would then read through
    closed identifiers. A read holds the file (:meth:`hold`) from before
    its first HDF5 call to after its last, and a close asked for meanwhile
    happens when it lets go (:meth:`release`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = threading.Lock()
        self._holders = 0
        self._closing = False
        self.sources: SourceFiles = ()

    def hold(self) -> bool:
        """Hold the file open; False if it is closed or closing (open it again).

        Raises
        ------
        ActFileError
            If a file its layers read from (:attr:`sources`) changed since
            the file was first opened.
        """
        with self._guard:
            if self._closing or not self.id.valid:
                return False
            if self.sources:
                _check_sources(self.sources, self.filename)
            self._holders += 1
            return True

    def release(self, lock: AbstractContextManager[Any] | None = None) -> None:
        """Let go of a hold; the last to let go of a file asked to close closes it.

        ``lock`` is held around that close, an HDF5 call.
        """
        with self._guard:
            self._holders -= 1
            close = self._closing and not self._holders
        if close:
            with lock if lock is not None else nullcontext():
                super().close()

    def close(self) -> None:
        """Close the file now, or once the reads that hold it let go."""
        with self._guard:
            self._closing = True
            if self._holders:
                return
        super().close()


def open_file(where: str, mode: str = "r", identity: FileIdentity | None = None,
              sources: SourceFiles = ()) -> HeldFile:
    """Open an ``.act.h5`` file for reading, even while another process writes it.

    HDF5's default locking comes first: within a process HDF5 shares one
    handle per file and refuses opens whose locking flags differ. Reading
    never changes the file, so a lock it cannot take (another process has
    the file open for writing, or the file system has no locks) must not
    make the activations unreadable: the file is then opened without one.
    A file a SWMR writer holds open (``swmr_mode=True``) is opened in
    HDF5's SWMR read mode, which sees what the writer had flushed.

    Parameters
    ----------
    where
        The file's path.
    mode
        Must be ``"r"``; it is there for ``CachingFileManager``, which
        passes it on.
    identity
        The file as it was when first opened (:func:`file_identity`): a
        lazy layer's file manager reopens it with this, in this process
        (after a close, or after xarray's cache closed it) or in a dask
        worker, so that values are never read from another file under
        the labels read from the first.
    sources
        The other files its layers read from (:func:`source_files`), which
        every read of the opened file checks (:meth:`HeldFile.hold`).

    Raises
    ------
    ActFileError
        If the file is missing, a folder, unreadable, not HDF5 or damaged,
        marked open for writing by a program that is not a SWMR writer, or
        not the file ``identity`` describes.
    """
    if mode != "r":
        raise ValueError(f"mode={mode!r}: .act.h5 inputs are opened read-only ('r')")
    check_readable(where)
    root = _open_read_only(where)
    if identity is not None and _opened_identity(root, where) != identity:
        root.close()
        raise ActFileError(f"{where!r} changed since it was opened (it was replaced or "
                           "rewritten, or its permissions changed), so its values may no "
                           "longer match the labels read then; open it again to read what it "
                           "holds now") from None
    root.sources = sources
    return root


def _open_read_only(where: str) -> HeldFile:
    error = None
    for options in ({}, {"locking": False}, {"swmr": True}, {"swmr": True, "locking": False}):
        try:
            return HeldFile(where, "r", **options)
        except (OSError, RuntimeError, ValueError) as err:
            error = error or err
            if not _may_retry(err, options):
                break
    if "already open for write" in str(error):
        raise ActFileError(f"cannot read {where!r}: HDF5 marks it as open for writing by "
                           "another program (or by one that stopped before closing it; "
                           "'h5clear -s' clears the mark once no program writes it)") from None
    raise ActFileError(f"cannot read {where!r}: the file is damaged ({error})") from None


def _opened_identity(root: h5py.File, where: str) -> FileIdentity:
    """Identify the file HDF5 opened: its own descriptor, not the path, which may have moved on."""
    try:
        return _identity(os.fstat(root.id.get_vfd_handle()))
    except (OSError, TypeError, ValueError, RuntimeError):  # a driver without a descriptor
        return file_identity(where)


def _may_retry(err: Exception, tried: dict[str, bool]) -> bool:
    """Tell whether another way of opening might succeed where ``tried`` failed."""
    text = str(err).lower()
    return "lock" in text or ("already open for write" in text and not tried.get("swmr"))


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
        the layers disagree on the number of stimuli, or the file is damaged.
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
    return layers


def check_readable(where: str) -> None:
    """Check that ``where`` is a readable HDF5 file, with one-line errors.

    Each error is raised ``from None``: called by xarray's file manager on a
    cache miss, it would otherwise be shown chained to the manager's
    ``KeyError``, which says nothing of the file.
    """
    file = Path(where)
    if not file.exists():
        raise ActFileError(f"cannot open {where!r}: no such file") from None
    if file.is_dir():
        raise ActFileError(f"cannot open {where!r}: it is a folder, not an .act.h5 file"
                           ) from None
    if not os.access(file, os.R_OK):
        raise ActFileError(f"cannot open {where!r}: permission denied") from None
    try:
        is_hdf5 = h5py.is_hdf5(where)
    except OSError as err:
        raise ActFileError(f"cannot open {where!r}: {err.strerror or err}") from None
    if not is_hdf5:
        raise ActFileError(f"{where!r} is not an HDF5 file; an .act.h5 file is HDF5 with "
                           "one 4-D dataset per layer") from None


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
    if dtype.itemsize > _LARGEST_ITEM[dtype.kind]:
        raise ActFileError(f"{where!r}: layer {name!r} holds {dtype} values (extended "
                           "precision), which numpy cannot handle the same way everywhere; "
                           "layers hold numbers of at most 64 bits (complex: 128)")
    too_long = [(dim, size) for dim, size in zip(DIMS, node.shape, strict=True)
                if size > MAX_AXIS_LENGTH]
    if too_long:
        dim, size = too_long[0]
        raise ActFileError(f"{where!r}: layer {name!r} declares {size} along its {dim} "
                           f"axis (shape {node.shape}); layers have at most "
                           f"{MAX_AXIS_LENGTH} along each axis")
    check_storage(node, name, repr(where), allow_external)
    return node


def _layer(dataset: h5py.Dataset) -> str:
    return dataset.name.lstrip("/")
