"""Root objects whose values live outside the file: refused, or checked to the end.

HDF5 follows three kinds of pointers out of a file: external links (a name
that opens an object of another file), virtual datasets (values mapped
from datasets of other files) and external raw storage (a dataset's bytes
kept in other, plain files). DNNBrain never writes any of them, and
following them blindly lets a shared file read any file of the machine
into the activations (``/etc/passwd``), block forever on a FIFO, or turn
silently into fill values when a target is missing.

So by default such a root object is refused, in one line that names it and
what it points to, *before* HDF5 touches the target. With
``allow_external`` (``--allow-external``), every hop is checked before HDF5
follows it, to the end of the chain: a file an external link or a virtual
dataset points to may point on, through the same three kinds of pointers,
and each file on the way must be a regular file that exists and opens as
HDF5 (a virtual dataset's source dataset must cover its mapping, a raw
storage file hold all its bytes), so that following them can neither hang
nor give fill values. Chains deeper than :data:`MOST_FILES_DEEP` files,
loops, and virtual sources named with HDF5's printf patterns (``%b``,
``%%``: HDF5 opens another name than the one stored) are refused.
HDF5's prefix variables (``HDF5_EXT_PREFIX``, ``HDF5_VDS_PREFIX``,
``HDF5_EXTFILE_PREFIX``) would make HDF5 look for other files than the ones
checked, so a pointer of their kind is refused while they are set.

:func:`files_read` names every file so reached, for the writer's check that
the output never replaces an input.
"""

from __future__ import annotations

import contextlib
import os
import stat
from types import TracebackType

import h5py
import numpy as np

from dnnmask_xr.act.chunk_index import layer_index
from dnnmask_xr.errors import ActFileError

#: Soft links followed within a file before the chain is called a loop.
_MOST_SOFT_LINKS = 16
#: Files followed one behind the other (external links, virtual datasets) before the
#: chain is refused: as deep as HDF5 follows links by default.
MOST_FILES_DEEP = 16
_ASK = "activations outside the file are read only when asked for (--allow-external, " \
       "allow_external=True)"


def check_link(root: h5py.File, name: str, where: str, allow_external: bool) -> None:
    """Check the link ``name`` of the root, and every hop behind it, before it is opened.

    Soft links are followed inside the file; an external link is refused
    unless ``allow_external``, and then its target file and the object in
    it are checked as :mod:`this module <dnnmask_xr.act.external>` says.
    The storage of the object reached is left to :func:`check_storage`.

    Raises
    ------
    ActFileError
        For an external link that is not allowed or whose target cannot be
        followed safely, a user-defined link, or a loop of soft links.
    """
    if _link_kind(root, name) in (None, h5py.h5l.TYPE_HARD):
        return  # stored in the file (the usual layer), or missing: the caller says so
    with _Walk(allow_external) as walk:
        walk.follow(root, name, f"{where}: root object {name!r}", named=True)


def check_storage(dataset: h5py.Dataset, name: str, where: str, allow_external: bool) -> None:
    """Check where an opened layer's values are stored, to the end, before any is read.

    Raises
    ------
    ActFileError
        For a virtual dataset or external raw storage that is not allowed,
        or whose targets (at any depth) are missing, not regular files, too
        short, or lead in a loop.
    """
    with _Walk(allow_external) as walk:
        walk.storage(dataset, f"{where}:", f"layer {name!r}", depth=0)


def check_objects(root: h5py.File, where: str, allow_external: bool) -> None:
    """Check every object of ``root``, in groups at any depth, as layers are checked.

    For files whose layers live in groups (``.nc``): a link or a
    dataset's storage that reads another file is refused unless
    ``allow_external``, and then followed to the end as
    :func:`check_link` and :func:`check_storage` follow a layer.

    Raises
    ------
    ActFileError
        As :func:`check_link` and :func:`check_storage` do, naming the object.
    """
    with _Walk(allow_external) as walk:
        _walk_objects(walk, root, where)


def files_read(root: h5py.File) -> frozenset[str]:
    """Name every other file the objects of ``root`` read from, at every depth.

    External links' target files, virtual datasets' source files and
    external raw storage files, of objects in groups at any depth too,
    followed as HDF5 follows them (checked as with ``allow_external``, so
    no FIFO is opened); a pointer that cannot be followed is passed over
    (reading it fails in one line). The names are paths as HDF5 resolves
    them (relative ones from the working directory).
    """
    with _Walk(allow=True, lenient=True) as walk:
        _walk_objects(walk, root, repr(root.filename))
        return frozenset(walk.files)


def _walk_objects(walk: _Walk, root: h5py.File, where: str) -> None:
    """Follow every link in ``root`` (groups' at any depth), then each dataset's storage."""
    links: list[tuple[bytes, int]] = []
    # HDF5 visits groups through hard links only: soft and external links
    # are listed, not entered, so the walk follows them itself
    root.id.links.visit(lambda name, info: links.append((name, info.type)), info=True)
    for raw, kind in links:
        what = f"{where}: object {raw.decode('utf-8', 'replace')!r}"
        try:
            name = _text(raw, what, "is named")
            if kind == h5py.h5l.TYPE_HARD and not _reads_elsewhere(root, raw):
                continue  # stored here: nothing to follow (most objects, quickly)
            node = walk.follow(root, name, what, named=True)
            if isinstance(node, h5py.Dataset):
                walk.storage(node, f"{where}:", f"object {name!r}", depth=0)
            elif node is not None and kind == h5py.h5l.TYPE_EXTERNAL:
                # HDF5's visit does not enter it, so what it holds would go
                # unchecked (and h5netcdf cannot read through it)
                raise ActFileError(f"{what} is an external link to a group; only datasets "
                                   "are followed into other files")
        except ActFileError:
            if not walk.lenient:
                raise


def _reads_elsewhere(root: h5py.File, name: bytes) -> bool:
    """Tell whether the object hard-linked at ``name`` is a dataset stored in other files."""
    try:
        if h5py.h5o.get_info(root.id, name=name).type != h5py.h5o.TYPE_DATASET:
            return False
        plist = h5py.h5d.open(root.id, name).get_create_plist()
    except (KeyError, OSError, RuntimeError, ValueError):
        return True  # let the walk say what is wrong with it
    return plist.get_layout() == h5py.h5d.VIRTUAL or plist.get_external_count() > 0


class _Walk:
    """One walk along the pointers out of a file, each hop checked before HDF5 follows it.

    Files it opens are closed at the end; ``files`` names every file reached.
    ``lenient`` passes over what cannot be followed instead of raising, to
    list what can.
    """

    def __init__(self, allow: bool, *, lenient: bool = False) -> None:
        self.allow = allow
        self.lenient = lenient
        self.files: set[str] = set()
        self._opened: dict[str, h5py.File] = {}
        self._checked: set[tuple[str, str]] = set()  # datasets whose storage is checked
        self._chain: list[tuple[str, str]] = []  # the datasets being followed, for loops

    def __enter__(self) -> _Walk:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for file in self._opened.values():
            with contextlib.suppress(Exception):
                file.close()

    def follow(self, group: h5py.Group, path: str, what: str, *, named: bool,
               depth: int = 0, soft_left: int = _MOST_SOFT_LINKS,
               ) -> h5py.Group | h5py.Dataset | None:
        """Open ``path`` from ``group`` link by link, each link checked first.

        ``what`` says where the path comes from; ``named`` tells that it
        names the object ``path`` leads to (a link met at its end is then
        said to be that object). Returns None for a path that leads
        nowhere (opening it fails in one line).
        """
        node: h5py.Group | h5py.Dataset = group.file["/"] if path.startswith("/") else group
        parts = [part for part in path.split("/") if part not in ("", ".")]
        for at, part in enumerate(parts):
            if not isinstance(node, h5py.Group):
                return None
            last = named and at == len(parts) - 1
            subject = None if last else repr(f"{node.file.filename}:{_join(node.name, part)}")
            kind = _link_kind(node, part)
            if kind is None:
                return None
            if kind == h5py.h5l.TYPE_HARD:
                try:
                    node = node[part]
                except (KeyError, OSError, RuntimeError, ValueError):
                    return None
            elif kind == h5py.h5l.TYPE_SOFT:
                if soft_left == 0:
                    raise ActFileError(_lead(what, subject, f"is a chain of more than "
                                             f"{_MOST_SOFT_LINKS} soft links (a loop?)"))
                target = _text(node.id.links.get_val(part.encode()),
                               _lead(what, subject, "is a soft link"), "to")
                found = self.follow(node, target, what, named=last, depth=depth,
                                    soft_left=soft_left - 1)
                if found is None:
                    return None
                node = found
            elif kind == h5py.h5l.TYPE_EXTERNAL:
                if soft_left == 0:
                    raise ActFileError(_lead(what, subject, f"is a link past the "
                                             f"{_MOST_SOFT_LINKS} HDF5 follows in one path"))
                node = self._external(node, part, _lead(what, subject, "is an external link"),
                                      soft_left - 1, depth)
            else:
                raise ActFileError(_lead(what, subject, f"is a user-defined HDF5 link (type "
                                         f"{kind}); layers are datasets stored in the file"))
        return node

    def _external(self, group: h5py.Group, link: str, what: str, soft_left: int, depth: int,
                  ) -> h5py.Group | h5py.Dataset:
        file, path = (_text(part, what, "to")
                      for part in group.id.links.get_val(link.encode()))
        what = f"{what} to {f'{file}:{path}'!r}"
        if not self.allow:
            raise ActFileError(f"{what}; {_ASK}")
        self._no_prefix("HDF5_EXT_PREFIX", b"", what)
        _within_depth(depth, what)
        target = self._open(_beside(group.file, file), what)
        # HDF5 counts the links of one path across files: soft ones and
        # external ones alike, at most 16
        node = self.follow(target, path, what, named=False, depth=depth + 1,
                           soft_left=soft_left)
        if node is None:
            raise ActFileError(f"{what}, but {file!r} has no object {path!r}")
        return node

    def storage(self, dataset: h5py.Dataset, what: str, subject: str, depth: int) -> None:
        """Check where ``dataset`` keeps its values, and every file behind them.

        ``what`` and ``subject`` start the error lines: ``f"{what} {subject}
        is a virtual dataset of ..."``.
        """
        key = (os.path.realpath(dataset.file.filename), dataset.name)
        if key in self._checked:
            return
        plist = dataset.id.get_create_plist()
        layout = plist.get_layout()
        if layout == h5py.h5d.VIRTUAL:
            try:
                sources = [(plist.get_virtual_filename(i), plist.get_virtual_dsetname(i))
                           for i in range(plist.get_virtual_count())]
            except UnicodeDecodeError:
                raise ActFileError(f"{what} {subject} is a virtual dataset whose source names "
                                   "hold bytes that are not UTF-8 text, which are not "
                                   "followed") from None
            shown = ", ".join(f"{file}:{path}" for file, path in sources[:3])
            more = f" and {len(sources) - 3} more" if len(sources) > 3 else ""
            lead = f"{what} {subject} is a virtual dataset of {shown}{more}"
            if not self.allow:
                raise ActFileError(f"{lead}; {_ASK}")
            if key in self._chain:
                raise ActFileError(f"{lead}, but its sources lead back to it (a loop of "
                                   "virtual datasets)")
            self._no_prefix("HDF5_VDS_PREFIX",
                            dataset.id.get_access_plist().get_virtual_prefix(), lead)
            _within_depth(depth, lead)
            self._chain.append(key)
            try:
                for i, (file, path) in enumerate(sources):
                    try:
                        self._source(dataset, plist, i, file, path, lead, depth)
                    except ActFileError:
                        if not self.lenient:
                            raise
            finally:
                self._chain.pop()
        elif layout == h5py.h5d.CONTIGUOUS and plist.get_external_count():
            segments = [plist.get_external(i) for i in range(plist.get_external_count())]
            shown = ", ".join(os.fsdecode(file) for file, _, _ in segments[:3])
            lead = f"{what} {subject} keeps its values in other files ({shown})"
            if not self.allow:
                raise ActFileError(f"{lead}; {_ASK}")
            self._no_prefix("HDF5_EXTFILE_PREFIX",
                            dataset.id.get_access_plist().get_efile_prefix(), lead)
            needed = int(np.prod(dataset.shape)) * dataset.dtype.itemsize
            self.files.update(_check_segments(segments, needed, lead))
        self._checked.add(key)

    def _source(self, dataset: h5py.Dataset, plist: h5py.h5p.PropDCID, index: int,
                file: str, path: str, what: str, depth: int) -> None:
        """Check one mapping of a virtual dataset: its source, to the end, covers it."""
        if "%" in file or "%" in path:
            # HDF5 reads "%%" as "%" and "%b" as a block number: the file it
            # opens is not the one named here, so it cannot be checked
            raise ActFileError(f"{what}, but source {file}:{path} is named with HDF5's "
                               "printf patterns (%b, %%), which name other files than the "
                               "one written; only plain source names are followed")
        root = dataset.file if file == "." else self._open(_beside(dataset.file, file), what)
        source = self.follow(root, path, what, named=False, depth=depth + 1)
        if not isinstance(source, h5py.Dataset):
            raise ActFileError(f"{what}, but {file!r} has no dataset {path!r}")
        try:
            shape = source.shape
        except (OSError, RuntimeError, ValueError) as err:
            raise ActFileError(f"{what}, but dataset {path!r} of {file!r} cannot be read "
                               f"({err})") from None
        try:
            covered = _covers(shape, plist, index)
        except (RuntimeError, ValueError, OSError):  # an unlimited mapping has no bounds
            raise ActFileError(f"{what}, but its mapping {index} has no fixed bounds (an "
                               "unlimited mapping); only fixed mappings are followed") from None
        if not covered:
            raise ActFileError(f"{what}, but dataset {path!r} of {file!r} (shape {shape}) "
                               "is smaller than its mapping")
        self.storage(source, f"{what}, and", repr(f"{file}:{path}"), depth + 1)
        # HDF5 reads the source's chunks never written as whatever memory held
        # when it has no fill value: the rule of any layer, applied here
        try:
            layer_index(source, hdf5_decodes=True)
        except ActFileError as err:
            raise ActFileError(f"{what}, but {err}") from None

    def _open(self, path: str, what: str) -> h5py.File:
        """Open another file the chain leads to, once checked to be a regular file."""
        key = os.path.realpath(path)
        # every name is kept, aliases (symbolic links) of a file opened
        # already too: HDF5 opens each name again at each read, and a link
        # may be pointed elsewhere since
        if key in self._opened:
            self.files.add(path)
            return self._opened[key]
        _check_target(path, what)
        self.files.add(path)
        error: Exception | None = None
        # the file may be open in this process already, without HDF5's locking
        for options in ({}, {"locking": False}):
            try:
                self._opened[key] = h5py.File(path, "r", **options)
                return self._opened[key]
            except (OSError, RuntimeError, ValueError) as err:
                error = error or err
        raise ActFileError(f"{what}, but {str(path)!r} cannot be read as HDF5 ({error})")

    def _no_prefix(self, variable: str, in_plist: bytes, what: str) -> None:
        """Refuse to follow a pointer while HDF5 would look for its file elsewhere."""
        if self.lenient:
            return
        if os.environ.get(variable):
            raise ActFileError(f"{what}, but {variable} is set ({os.environ[variable]!r}), "
                               "so HDF5 would look for the file there, not where it was "
                               "checked; unset it to follow files outside")
        if in_plist:
            raise ActFileError(f"{what}, but HDF5 was started with {variable} set "
                               f"({os.fsdecode(in_plist)!r}), so it would look for the file "
                               "there, not where it was checked; unset it and start again")


def _lead(what: str, subject: str | None, text: str) -> str:
    """Say what a link is: the object ``what`` names, or ``subject`` further on."""
    return f"{what} {text}" if subject is None else f"{what}, and {subject} {text}"


def _within_depth(depth: int, what: str) -> None:
    if depth >= MOST_FILES_DEEP:
        raise ActFileError(f"{what}, but the chain goes more than {MOST_FILES_DEEP} files "
                           "deep (a loop?); chains of files are followed that far")


def _join(group: str, name: str) -> str:
    return f"{group.rstrip('/')}/{name}"


def _link_kind(group: h5py.Group, link: str) -> int | None:
    """Give the type of the link ``link`` of ``group``, None if there is none."""
    try:
        return group.id.links.get_info(link.encode()).type
    except (KeyError, OSError, RuntimeError, ValueError):
        return None


def _beside(root: h5py.File, file: str) -> str:
    """Say where HDF5 finds a relative external file: beside the file naming it.

    Joined as text, not as a ``Path``, which would drop a trailing ``/`` or
    ``/.`` that HDF5 keeps (and then fails to open, giving fill values).
    """
    return os.path.join(os.path.dirname(root.filename), file)


def _text(raw: bytes, what: str, verb: str) -> str:
    """Decode a name stored in a file, refusing bytes that are not UTF-8.

    Decoded with replacement characters, the name checked would not be the
    one HDF5 follows.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ActFileError(f"{what} {verb} {raw!r}, which is not UTF-8 text; such names are "
                           "not followed") from None


def _check_target(path: str, what: str) -> int:
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


def _check_segments(segments: list[tuple[bytes, int, int]], needed: int, what: str,
                    ) -> list[str]:
    """Check external raw storage files: regular files holding the bytes they should.

    Returns the files' names.
    """
    files = []
    for file, offset, size in segments:
        if needed <= 0:
            break
        # HDF5 resolves these names from the working directory, as open() does
        target = os.fsdecode(file)
        length = _check_target(target, what)
        files.append(str(target))
        wanted = needed if size == h5py.h5f.UNLIMITED else min(size, needed)
        if offset + wanted > length:
            raise ActFileError(f"{what}, but {str(target)!r} holds {length} bytes, fewer "
                               f"than the {offset + wanted} its part of the layer needs")
        needed -= wanted
    return files
