"""Root objects whose values live outside the file: refused, or checked first.

HDF5 follows three kinds of pointers out of a file: external links (a root
name that opens an object of another file), virtual datasets (values
mapped from datasets of other files) and external raw storage (a dataset's
bytes kept in other, plain files). DNNBrain never writes any of them, and
following them blindly lets a shared file read any file of the machine
into the activations (``/etc/passwd``), block forever on a FIFO, or turn
silently into fill values when a target is missing.

So by default such a root object is refused, in one line that names it and
what it points to, *before* HDF5 touches the target. With
``allow_external`` (``--allow-external``), the targets are checked first:
each must be a regular file that exists (a virtual dataset's source dataset
too, large enough for its mapping; a raw storage file long enough for its
bytes), so that following them can neither hang nor give fill values.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import h5py
import numpy as np

from dnnmask_xr.errors import ActFileError

#: Soft links followed within a file before the chain is called a loop.
_MOST_SOFT_LINKS = 16
_ASK = "activations outside the file are read only when asked for (--allow-external, " \
       "allow_external=True)"


def check_link(root: h5py.File, name: str, where: str, allow_external: bool) -> None:
    """Check the link ``name`` of the root before it is opened.

    Soft links are followed inside the file; an external link is refused
    unless ``allow_external``, and then its target must be a regular file.

    Raises
    ------
    ActFileError
        For an external link that is not allowed or whose file is not a
        regular file, a user-defined link, or a loop of soft links.
    """
    group, link = root, name
    for _ in range(_MOST_SOFT_LINKS):
        kind = _link_kind(group, link)
        if kind is None:  # a hard link, or a missing name the caller reports
            return
        if kind == h5py.h5l.TYPE_SOFT:
            target = group.id.links.get_val(link.encode()).decode("utf-8", "replace")
            group, link = _parent(root, group, target)
            if group is None:
                return  # a link to nowhere: opening it fails in one line
            continue
        if kind != h5py.h5l.TYPE_EXTERNAL:
            raise ActFileError(f"{where}: root object {name!r} is a user-defined HDF5 link "
                               f"(type {kind}); layers are datasets stored in the file")
        file, path = (part.decode("utf-8", "replace")
                      for part in group.id.links.get_val(link.encode()))
        pointed = f"{file}:{path}"
        if not allow_external:
            raise ActFileError(f"{where}: root object {name!r} is an external link to "
                               f"{pointed!r}; {_ASK}")
        _check_target(_beside(root, file), f"{where}: root object {name!r} is an external "
                      f"link to {pointed!r}")
        return
    raise ActFileError(f"{where}: root object {name!r} is a chain of more than "
                       f"{_MOST_SOFT_LINKS} soft links (a loop?)")


def check_storage(dataset: h5py.Dataset, name: str, where: str, allow_external: bool) -> None:
    """Check where an opened layer's values are stored, before any is read.

    Raises
    ------
    ActFileError
        For a virtual dataset or external raw storage that is not allowed,
        or whose targets are missing, not regular files, or too short.
    """
    plist = dataset.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        sources = [(plist.get_virtual_filename(i), plist.get_virtual_dsetname(i))
                   for i in range(plist.get_virtual_count())]
        shown = ", ".join(f"{file}:{path}" for file, path in sources[:3])
        more = f" and {len(sources) - 3} more" if len(sources) > 3 else ""
        what = f"{where}: layer {name!r} is a virtual dataset of {shown}{more}"
        if not allow_external:
            raise ActFileError(f"{what}; {_ASK}")
        for i, (file, path) in enumerate(sources):
            _check_virtual_source(dataset, plist, i, file, path, what)
    elif layout == h5py.h5d.CONTIGUOUS and plist.get_external_count():
        segments = [plist.get_external(i) for i in range(plist.get_external_count())]
        shown = ", ".join(os.fsdecode(file) for file, _, _ in segments[:3])
        what = f"{where}: layer {name!r} keeps its values in other files ({shown})"
        if not allow_external:
            raise ActFileError(f"{what}; {_ASK}")
        _check_segments(segments, int(np.prod(dataset.shape)) * dataset.dtype.itemsize, what)


def _link_kind(group: h5py.Group, link: str) -> int | None:
    try:
        kind = group.id.links.get_info(link.encode()).type
    except (KeyError, OSError, RuntimeError, ValueError):
        return None
    return None if kind == h5py.h5l.TYPE_HARD else kind


def _parent(root: h5py.File, group: h5py.Group, target: str) -> tuple[h5py.Group | None, str]:
    """Find the group holding a soft link's target, and the target's last name."""
    parent, _, last = target.rstrip("/").rpartition("/")
    if not last:
        return None, ""
    if target.startswith("/"):
        parent = parent or "/"
        base = root
    else:
        base = group
    try:
        node = base[parent] if parent else base
    except (KeyError, OSError, RuntimeError, ValueError):
        return None, ""
    return (node, last) if isinstance(node, h5py.Group) else (None, "")


def _beside(root: h5py.File, file: str) -> Path:
    """Say where HDF5 finds a relative external file: beside the file naming it."""
    named = Path(file)
    return named if named.is_absolute() else Path(root.filename).parent / named


def _check_target(path: Path, what: str) -> int:
    """Check that ``path`` is a regular file without opening it; return its size."""
    try:
        found = os.stat(path)
    except OSError as err:
        raise ActFileError(f"{what}, but {str(path)!r} cannot be read "
                           f"({err.strerror or err})") from None
    if not stat.S_ISREG(found.st_mode):
        raise ActFileError(f"{what}, but {str(path)!r} is not a regular file (a FIFO, a "
                           "device or a folder); only regular files are followed")
    return found.st_size


def _check_virtual_source(
    dataset: h5py.Dataset, plist: h5py.h5p.PropDCID, index: int, file: str, path: str,
    what: str,
) -> None:
    """Check one mapping of a virtual dataset: its source exists and covers it."""
    source_file = dataset.file if file == "." else None
    try:
        if source_file is None:
            target = _beside(dataset.file, file)
            _check_target(target, what)
            source_file = h5py.File(target, "r")
        try:
            source = source_file.get(path)
            if not isinstance(source, h5py.Dataset):
                raise ActFileError(f"{what}, but {file!r} has no dataset {path!r}")
            if not _covers(source.shape, plist, index):
                raise ActFileError(f"{what}, but dataset {path!r} of {file!r} (shape "
                                   f"{source.shape}) is smaller than its mapping")
        finally:
            if source_file is not dataset.file:
                source_file.close()
    except (OSError, RuntimeError, ValueError) as err:
        raise ActFileError(f"{what}, but {file!r} cannot be read ({err})") from None


def _covers(shape: tuple[int, ...], plist: h5py.h5p.PropDCID, index: int) -> bool:
    """Tell whether a source of ``shape`` holds every value mapping ``index`` takes.

    Whatever of a mapping falls outside its source reads as fill values.
    """
    source = plist.get_virtual_srcspace(index)
    if source.get_select_type() == h5py.h5s.SEL_ALL:
        # the whole source maps onto the virtual selection, which it must fill
        first, last = plist.get_virtual_vspace(index).get_select_bounds()
        return tuple(b - a + 1 for a, b in zip(first, last, strict=True)) == tuple(shape)
    bounds = source.get_select_bounds()
    return bounds is None or (len(bounds[1]) == len(shape) and all(
        end < size for end, size in zip(bounds[1], shape, strict=True)))


def _check_segments(segments: list[tuple[bytes, int, int]], needed: int, what: str) -> None:
    """Check external raw storage files: regular files holding the bytes they should."""
    for file, offset, size in segments:
        if needed <= 0:
            return
        # HDF5 resolves these names from the working directory, as open() does
        target = Path(os.fsdecode(file))
        length = _check_target(target, what)
        wanted = needed if size == h5py.h5f.UNLIMITED else min(size, needed)
        if offset + wanted > length:
            raise ActFileError(f"{what}, but {str(target)!r} holds {length} bytes, fewer "
                               f"than the {offset + wanted} its part of the layer needs")
        needed -= wanted
