"""The checks every write passes, made once, before anything is created.

:func:`~dnnmask_xr.act.write.write` calls them for every route: the output
path, the inputs it must never replace, and everything in the plan that the
reader would refuse to read back (names, labels, attributes, the stimulus
table).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dnnmask_xr._args import STORE_SUFFIX, mapping_arg
from dnnmask_xr._atomic import input_refused, real_target, refuse_non_regular
from dnnmask_xr.act.external import files_read
from dnnmask_xr.act.files import open_file
from dnnmask_xr.act.layout import (
    DIMS,
    DIMS_ATTR,
    EXTENDED,
    FIELD_NAME_RULE,
    NUMBERED_DIMS,
    STIMULUS_FIELD_PREFIX,
    STORE_ATTRS,
    axis_names,
    extended_precision,
    is_field_name,
    is_reserved,
    unit_dims_problem,
)
from dnnmask_xr.act.plan import Plan
from dnnmask_xr.errors import ActFileError, DnnMaskError, OutputIsInputError, UsageError

SUFFIX = ".act.h5"
#: The suffix of netCDF4 outputs (laid out by :mod:`dnnmask_xr.act.nc`).
NC_SUFFIX = ".nc"
#: The suffix of zarr v3 stores (written by :mod:`dnnmask_xr.xarray_.zarr_store`).
ZARR_SUFFIX = STORE_SUFFIX
SUFFIXES = (SUFFIX, NC_SUFFIX, ZARR_SUFFIX)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: What fsspec reads as a glob pattern in a path (it asks ``glob.has_magic``).
_PATTERN = re.compile(r"[*?[]")
#: Attribute names HDF5's dimension scales and netCDF use for themselves.
SYSTEM_ATTRS = ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "coordinates")


def own_attrs(stored: Mapping[str, Any], unit_dims: tuple[str, ...]) -> dict[str, Any]:
    """Keep a layer's own attributes of those stored on its dataset.

    Leaves out what the layout stores there itself: the unit dims' names
    and numbers, and HDF5's and netCDF's own attributes.
    """
    return {key: value for key, value in stored.items()
            if key not in (*unit_dims, DIMS_ATTR) and key not in SYSTEM_ATTRS}


def check_output(target: str) -> None:
    """Check that an output file can be created at ``target``.

    A symbolic link at ``target`` is written through, as DNNBrain's
    ``h5py.File(target, "w")`` does: the checks apply to the file it points
    to (which need not exist yet) and its folder.

    Raises
    ------
    ActFileError
        If the target is a folder (whatever its name) or another
        non-regular file (a device, a FIFO), its folder is missing, not a
        folder or not writable, or symbolic links at ``target`` lead in a
        circle.
    UsageError
        If the name ends in none of ``.act.h5``, ``.nc`` and ``.act.zarr``.

    Notes
    -----
    A zarr store (``.act.zarr``) is a folder: one there is replaced if it is
    a zarr store, and refused if it is any other folder or a file. At a URL
    (``s3://...``) only a zarr store is written, and what is there already
    is checked as it is written (:mod:`~dnnmask_xr.xarray_.url_store`).
    """
    if not isinstance(target, str):
        raise UsageError(f"output path {target!r} is not a path")
    if is_url(target):
        if not target.endswith(ZARR_SUFFIX):
            raise UsageError(f"output {target!r} is a URL: only a zarr store ({ZARR_SUFFIX!r}) "
                             "is written to one; write an .act.h5 or .nc file to a local path")
        if _PATTERN.search(target):
            # fsspec expands them when it removes a path: the objects of a failed write
            # would stay, and other stores that the pattern matches would go
            raise UsageError(f"output {target!r} holds '*', '?' or '[', which fsspec reads as "
                             "a pattern: removing a failed write would remove whatever it "
                             "matches; name the store without them")
        return
    store = target.endswith(ZARR_SUFFIX)
    if os.path.isdir(target) and not (store and is_zarr_store(target)):
        # before the suffix: 'out/' names a folder that exists, not a badly named file
        example = os.path.join(target, f"masked{SUFFIX}")
        raise ActFileError(f"cannot write {target!r}: it is a folder" + (
            " but not a zarr store; remove it or name another store" if store else
            f"; name a file in it, like {example!r}"))
    if not target.endswith(SUFFIXES):
        raise UsageError(f"output {target!r} does not end in {SUFFIX!r}, {NC_SUFFIX!r} or "
                         f"{ZARR_SUFFIX!r}; name it like 'masked{SUFFIX}'")
    try:
        real = real_target(target)
    except OSError:
        raise ActFileError(f"cannot write {target!r}: its symbolic links lead in a circle "
                           "(or too deep)") from None
    linked = (f" (the symbolic link {target!r} points to {str(real)!r})"
              if os.path.islink(target) else "")
    folder = real.parent if linked else Path(target).parent
    if folder.exists() and not folder.is_dir():
        raise ActFileError(f"cannot write {target!r}: {str(folder)!r} is a file, not a "
                           f"folder{linked}")
    if not folder.is_dir():
        raise ActFileError(f"cannot write {target!r}: folder {str(folder)!r} does not "
                           f"exist{linked}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ActFileError(f"cannot write {target!r}: folder {str(folder)!r} is not "
                           f"writable{linked}")
    longest = _name_max(folder)
    if len(os.fsencode(real.name)) > longest:
        raise ActFileError(f"cannot write {target!r}: its file name is "
                           f"{len(os.fsencode(real.name))} bytes long, and names in "
                           f"{str(folder)!r} are at most {longest} bytes{linked}")
    if store:
        if real.exists() and not real.is_dir():
            raise ActFileError(f"cannot write {target!r}: it is a file, not a zarr store "
                               f"(a folder){linked}; remove it or name another store")
    else:
        # the atomic writer's own check, made before anything is planned (a dry run too)
        refuse_non_regular(target, real)


def check_names_apart(plan: Plan, what: str) -> None:
    """Refuse a layer named as a dimension or a stimulus field: a layout of groups mixes them.

    For ``.nc`` and ``.act.zarr``, where each layer is a group beside the
    root's stimulus variables; ``what`` names the format in the error.

    Raises
    ------
    DnnMaskError
        Naming the layer.
    """
    for layer in plan.layers:
        if layer.name in (*DIMS, *layer.dims, *plan.stimulus.fields):
            raise DnnMaskError(f"layer {layer.name!r} has the name of a dimension or "
                               f"stimulus field, which {what} cannot tell apart; rename the "
                               "layer")


def check_header_keys(plan: Plan, what: str) -> None:
    """Refuse stimulus header keys that ``what`` keeps for itself on a variable.

    For ``.nc`` and ``.act.zarr``, where the header is the attributes of the
    stimulus variable: HDF5's dimension scales and netCDF keep some names,
    and readers decode ``coordinates`` and names starting with ``_``
    (``_FillValue``, ``_Encoding``).

    Raises
    ------
    DnnMaskError
        Naming the key.
    """
    for key in plan.stimulus.header:
        if key in SYSTEM_ATTRS or key.startswith("_"):
            raise DnnMaskError(f"stimulus header key {key!r} names an attribute {what} keeps "
                               "for itself on the stimulus variable; rename the key, or save "
                               "as .act.h5")


def is_url(path: str) -> bool:
    """Tell whether ``path`` is a URL (``protocol://...``), for fsspec, not a local path."""
    return bool(_URL.match(path))


def storage_options_for(where: Sequence[str],
                        storage_options: object) -> Mapping[str, Any] | None:
    """Check ``storage_options`` against the paths given with it: fsspec's, for a URL.

    Returns
    -------
    Mapping or None
        The options, for the paths that are URLs.

    Raises
    ------
    UsageError
        If they are not a mapping, or no path is a URL (a local path takes none).
    """
    if storage_options is None:
        return None
    options = mapping_arg(storage_options, "storage_options", "{'anon': True}")
    if not any(map(is_url, where)):
        raise UsageError("storage_options= is for zarr stores at a URL (s3://...); "
                         f"{where[0]!r} is a local path")
    return options


def is_zarr_store(path: str) -> bool:
    """Tell whether the folder ``path`` is a zarr store (its root holds ``zarr.json``)."""
    return os.path.isfile(os.path.join(path, "zarr.json"))


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_not_input(plan: Plan, target: str) -> None:
    """Refuse to replace a file the plan reads.

    The files the plan reads are those the layers are read from
    (:attr:`Plan.sources`), every file their objects read from in turn
    (external links' targets, virtual datasets' sources and external raw
    storage, at every depth: :func:`~dnnmask_xr.act.external.files_read`),
    and the text files it was made from (:attr:`Plan.inputs`: the
    ``.dmask.csv`` and ``.stim.csv``). A zarr store that is replaced is a
    folder replaced whole: every such file inside it is refused too; and
    nothing is written inside a store the layers are read from. A
    file this process holds open is refused where every output is put in
    place (:func:`~dnnmask_xr._atomic.atomic_path`).

    Raises
    ------
    OutputIsInputError
        If ``target`` is such a file (by any path, links included), a
        folder holding one, a URL the layers are read from, or a path or
        URL inside a store they are read from.
    """
    sources = {_local(source) for source in plan.sources}
    original, target = target, _local(target)
    for source in sorted(sources):
        # writing there adds objects to a store the layers are read from
        if _lies_inside(target, source):
            raise OutputIsInputError(input_refused(
                original, f"it lies inside {source!r}, which the layers are read from and "
                          "which writing there would change"))
    if is_url(target):
        if _url_key(target) in {_url_key(source) for source in sources}:
            raise OutputIsInputError(input_refused(original, "the layers are read from it"))
        return
    if not os.path.exists(target):
        return
    folder = os.path.isdir(target)

    def refuse_if_replaced(path: str, why: str) -> None:
        if same_file(path, target):
            raise OutputIsInputError(input_refused(original, why))
        if folder and _inside(path, target):
            raise OutputIsInputError(input_refused(
                original, f"it holds {path!r}, which replacing the folder would remove; "
                          + why.replace(" it", " that file")))

    for source in sorted(source for source in sources if not is_url(source)):
        refuse_if_replaced(source, "the layers are read from it")
        for behind in sorted(_files_behind(source)):
            refuse_if_replaced(behind, f"layers of {source!r} read their values from it "
                                       "through an external link, a virtual dataset or "
                                       "external raw storage")
    for source, what in sorted(plan.inputs.items()):
        refuse_if_replaced(source, f"the {what} was read from it")


def _lies_inside(target: str, source: str) -> bool:
    """Tell whether ``target`` lies inside ``source``, a store (a folder or a URL's objects)."""
    if is_url(target) or is_url(source):
        return (is_url(target) and is_url(source)
                and _url_key(target).startswith(_url_key(source) + "/"))
    return os.path.isdir(source) and _inside(target, source)


def _url_key(url: str) -> str:
    """Give a URL as compared with another: ``memory:///a/`` and ``memory://a`` are one."""
    protocol, _, path = url.partition("://")
    return f"{protocol}://{path.strip('/')}"


def _inside(path: str, folder: str) -> bool:
    """Tell whether ``path`` lies inside ``folder`` (links resolved), at any depth."""
    return any(same_file(parent, folder) for parent in Path(os.path.realpath(path)).parents)


def _local(path: str) -> str:
    """Give a ``file://`` URL as the local path it names, to compare with other paths."""
    return path.removeprefix("file://") if path.startswith("file:///") else path


def _files_behind(source: str) -> frozenset[str]:
    """Name the files the objects of ``source`` read from, none if it is not HDF5."""
    try:
        root = open_file(source)
    except DnnMaskError:  # not HDF5 (a netCDF3 file xarray read) or gone: nothing behind
        return frozenset()
    with root:
        return files_read(root)


def check_plan(plan: Plan) -> None:
    """Refuse, before anything is created, what the reader would refuse to read back.

    Raises
    ------
    DnnMaskError
        For a layer name that is empty, holds ``/`` or is not UTF-8; labels
        that are not integers or overflow int64; a reserved or unstorable
        attribute; a stimulus table of the wrong length.
    """
    seen: set[str] = set()
    for layer in plan.layers:
        check_layer_name(layer.name)
        if layer.name in seen:
            raise DnnMaskError(f"layer {layer.name!r} is named twice; name each layer once")
        seen.add(layer.name)
        if len(layer.shape) != 4:
            raise DnnMaskError(f"layer {layer.name!r} has {len(layer.shape)} dims; layers "
                               f"have the 4 dims {DIMS}")
        problem = unit_dims_problem(layer.dims)
        if problem:
            raise DnnMaskError(f"layer {layer.name!r} has dims {('stimulus', *layer.dims)}: "
                               f"{problem}")
        for dim in layer.dims:
            _check_attr_name(dim, f"unit dim of layer {layer.name!r}")
        if any(size != 1 for size in layer.shape[1 + len(layer.dims):]):
            raise DnnMaskError(f"layer {layer.name!r} has {len(layer.dims)} unit dim(s) but "
                               f"is stored with shape {layer.shape}; the stored axes after "
                               "them must have length 1")
        clash = [dim for dim in layer.dims if dim in plan.stimulus.fields]
        if clash:
            raise DnnMaskError(f"layer {layer.name!r} has the unit dim {clash[0]!r}, which is "
                               "also the name of a stimulus field; rename one of them")
        if extended_precision(layer.dtype):
            raise DnnMaskError(f"layer {layer.name!r} holds {layer.dtype} values {EXTENDED}; "
                               "cast it to float64 (complex128)")
        check_unit_labels(layer.name, layer.labels, layer.shape[1:], layer.dims)
        _check_attrs(layer.attrs, f"layer {layer.name!r}",
                     reserved=(*layer.dims, DIMS_ATTR))
        if layer.shape[0] != plan.stimulus.ids.size:
            raise DnnMaskError(f"layer {layer.name!r} has {layer.shape[0]} stimuli but the "
                               f"stimulus table lists {plan.stimulus.ids.size}")
    _check_attrs(plan.attrs, "the file's root", reserved=())
    stimulus = plan.stimulus
    _check_values(stimulus.ids, "stimulus IDs")
    for name, values in stimulus.fields.items():
        if not is_field_name(name):
            raise DnnMaskError(f"stimulus field name {name!r} is not valid; {FIELD_NAME_RULE}")
        _check_text(name, "stimulus field name")
        _check_attr_name(name, "stimulus field name", STIMULUS_FIELD_PREFIX)
        if np.shape(values) != stimulus.ids.shape:
            raise DnnMaskError(f"stimulus field {name!r} holds {np.size(values)} values for "
                               f"{stimulus.ids.size} stimuli; give one per stimulus")
        _check_values(values, f"stimulus field {name!r}")
    for key, value in stimulus.header.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise DnnMaskError(f"stimulus header entry {key!r}: {value!r} is not text; a "
                               ".stim.csv header maps names to text")
        _check_attr_name(key, "stimulus header key")


def check_layer_name(name: object) -> None:
    """Check a layer name: text, not empty, without ``/``, valid UTF-8 without NUL.

    Raises
    ------
    DnnMaskError
        If it is not such a name.
    """
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name:
        raise DnnMaskError(f"layer name {name!r} is not valid; a layer is a dataset at the "
                           "file's root, named by non-empty text without '/' (for "
                           "'features/3' use 'features.3')")
    _check_text(name, "layer name")


def check_unit_labels(name: str, labels: Mapping[str, np.ndarray],
                       sizes: tuple[int, ...] | None = None,
                       unit_dims: tuple[str, ...] = NUMBERED_DIMS) -> None:
    """Check that a layer's labels along the stored axes are int64 integers.

    ``labels`` is keyed by the stored axes (``channel``, ``row``,
    ``column``); errors name them as the layer's ``unit_dims`` do.

    Raises
    ------
    DnnMaskError
        If one of them is not, or does not fit int64, or (with ``sizes``)
        has other than one label per unit.
    """
    names = axis_names(unit_dims)
    for axis, stored in enumerate(NUMBERED_DIMS):
        axis_labels = np.asarray(labels[stored])
        dim = names[stored]
        if axis_labels.dtype.kind not in "iu":
            raise DnnMaskError(f"layer {name!r}: {dim} labels are {axis_labels.dtype}, not "
                               f"integers; {dim} labels are the 1-based numbers of the "
                               "network's units")
        if (axis_labels.dtype.kind == "u" and axis_labels.size
                and axis_labels.max() > np.iinfo(np.int64).max):
            raise DnnMaskError(f"layer {name!r}: {dim} label {int(axis_labels.max())} is "
                               "beyond the int64 range that files store unit numbers in")
        if sizes is not None and axis_labels.shape != (sizes[axis],):
            raise DnnMaskError(f"layer {name!r}: {axis_labels.size} {dim} labels for "
                               f"{sizes[axis]} {dim}s; give one per unit")


def _check_attrs(attrs: Mapping[str, Any], where: str, reserved: tuple[str, ...]) -> None:
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise DnnMaskError(f"attribute name {key!r} of {where} is not valid; attribute "
                               "names are non-empty text")
        _check_text(key, f"attribute name of {where}")
        _check_attr_name(key, f"attribute name of {where}")
        if key in reserved or key in SYSTEM_ATTRS or (
                not reserved and (is_reserved(key) or key in STORE_ATTRS)):
            # the root's: an .act.h5 keeps the stimuli there, a zarr store the order of
            # its layers and fields too
            raise DnnMaskError(f"attribute {key!r} of {where} is reserved: the file keeps "
                               "labels there; rename the attribute")
        _check_values(value, f"attribute {key!r} of {where}")


#: The longest attribute name HDF5 stores, in UTF-8 bytes: the name and its NUL are
#: counted in 16 bits (a longer one fails deep inside h5py, as a KeyError).
MAX_ATTR_NAME = 2**16 - 2


def _check_attr_name(name: str, what: str, prefix: str = "") -> None:
    """Refuse a name a file stores as an attribute's name (after ``prefix``) if too long."""
    size = len(name.encode("utf-8", "surrogatepass"))
    longest = MAX_ATTR_NAME - len(prefix.encode("utf-8"))
    if size > longest:
        raise DnnMaskError(f"{what} {name[:20] + '...'!r} is {size} bytes long; files store "
                           f"it as an attribute name, of at most {longest} bytes (UTF-8); "
                           "shorten it")


def _check_values(value: Any, what: str) -> None:
    """Refuse values a file cannot give back as they were: None, bytes, mappings, mixtures."""
    try:
        array = None if value is None or isinstance(value, Mapping | set) else np.asarray(value)
    except (ValueError, TypeError):
        array = None  # nested lists of uneven lengths
    storable = array is not None and (
        array.dtype.kind in "biufUT"
        or (array.dtype.kind == "O" and all(isinstance(item, str) for item in array.flat))
    ) and not (
        # numbers beside text, which NumPy turns into text
        array.dtype.kind in "UT" and isinstance(value, list | tuple)
        and not all(isinstance(item, str) for item in _leaves(value)))
    if not storable:
        raise DnnMaskError(f"{what} holds {_brief(value)}, which a file cannot store; give "
                           "text, numbers, or a list of either")
    if array.dtype.kind in "OUT":
        for item in _texts(value):
            _check_text(item, what)


def _brief(value: Any) -> str:
    """Show a value in one line of bounded length: an array by its dtype and a few items."""
    if isinstance(value, np.ndarray):
        items = np.array2string(value, separator=", ", threshold=6, edgeitems=2,
                                max_line_width=sys.maxsize)
        text = f"{value.dtype} values {items}"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 120 else f"{text[:117]}..."


def _leaves(value: Any) -> Iterator[Any]:
    """Give the items of a value of nested lists or tuples, or the value itself."""
    if isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _texts(value: Any) -> Iterator[str]:
    """Give the text items of an attribute's value as the writer is given them.

    NumPy drops a ``str``'s trailing NUL characters when it makes an array
    of it, so a value's own strings are checked, not ``np.asarray``'s.
    """
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)
    else:
        yield from map(str, np.asarray(value).flat)


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeError:
        raise DnnMaskError(f"{what} {text!r} is not valid UTF-8 text") from None
    if "\x00" in text:
        # HDF5 keeps names and strings as C strings: it would cut them there
        raise DnnMaskError(f"{what} {text!r} holds a NUL character, which HDF5 cannot store")


def same_file(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    """Tell whether two paths name the same file (links and ``..`` included)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return Path(first).resolve() == Path(second).resolve()
