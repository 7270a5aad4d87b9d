"""DNNBrain's ``dnnbrain.io.fileio``: its file classes, over this package's readers and writers.

:class:`ActivationFile` reads with :func:`~dnnmask_xr.open_act` and writes
with :func:`~dnnmask_xr.save_act`; :class:`MaskFile` with
:func:`~dnnmask_xr.read_dmask` and :func:`~dnnmask_xr.write_dmask`;
:class:`StimulusFile` reads with :func:`~dnnmask_xr.read_stim` and writes
DNNBrain's text, checked by this package's parser. So every write is atomic
and every error one line naming the file, while what comes back and what is
written is what DNNBrain gives. The readers and writers are imported on
first use: importing this module imports numpy and no more.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from dnnmask_xr.errors import ActFileError, DnnMaskError, UsageError

__all__ = ["ActivationFile", "MaskFile", "RdmFile", "StimulusFile"]

#: DNNBrain's mask dict: layer to ``{'chn': [...] or 'all', 'row': ..., 'col': ...}``.
MaskDict = Mapping[str, Mapping[str, Any]]


def _file_name(fname: object, suffix: str, kind: str) -> str:
    if isinstance(fname, os.PathLike):
        fname = os.fspath(fname)
    if not isinstance(fname, str) or not fname.endswith(suffix):
        raise UsageError(f"{kind} takes a file name ending in {suffix}, not {fname!r}")
    return fname


class StimulusFile:
    """A ``.stim.csv`` file, read and written as DNNBrain's ``StimulusFile`` does.

    Parameters
    ----------
    fname
        The file name, ending in ``.stim.csv``.

    Raises
    ------
    UsageError
        If the name does not end in ``.stim.csv``.
    """

    def __init__(self, fname: str) -> None:
        self.fname = _file_name(fname, ".stim.csv", "StimulusFile")

    def read(self) -> dict[str, Any]:
        """Read the header and the stimuli.

        Returns
        -------
        dict
            The header's keys (``type``, ``path``, ...) and ``'data'``: an
            ``OrderedDict`` of field name to array, typed as DNNBrain types
            them: ``stimID`` and ``condition`` fixed-width unicode (an int64
            frame number for ``type=video``), ``label`` int64, the others
            float64, but for the text fields the header's ``text`` key lists
            (unicode, as ``condition``).

        Raises
        ------
        FormatError
            If the file is missing or breaks the format; the error names
            the file and line.
        """
        from dnnmask_xr.formats.stim import read_stim

        stimuli = read_stim(self.fname)
        result: dict[str, Any] = dict(stimuli.header)
        data: OrderedDict[str, np.ndarray] = OrderedDict()
        for name in stimuli.table.columns:
            column = stimuli.table[name].to_numpy()
            # numeric fields are int64 or float64 already, copied since pandas gives a
            # read-only view; text becomes numpy's fixed-width unicode, what DNNBrain's
            # np.asarray(..., dtype=np.str) gave
            data[name] = (column.copy() if column.dtype.kind in "iuf"
                          else np.asarray(column.tolist(), dtype=str))
        result["data"] = data
        return result

    def write(self, type: str, path: str, data: Mapping[str, Any], **opt_meta: Any) -> None:
        """Write stimuli in DNNBrain's text: the same bytes its writer gives.

        ``type=``, ``path=``, the other keys, the ``data=`` line and one
        row per stimulus, the last without a line end; each value as numpy
        spells it once all fields are in one array (so a table of numbers
        only spells integers as ``1.0``, as DNNBrain's does). The text is
        checked by this package's parser before anything is written, and
        the file appears whole or not at all.

        Parameters
        ----------
        type
            ``'image'``, ``'video'`` or ``'video_clip'``.
        path
            The folder of the images or clips, or the video file.
        data
            Field name to an array of one value per stimulus; ``stimID`` is
            required.
        **opt_meta
            Other header keys, such as ``title``; ``text`` lists fields
            other than ``stimID`` and ``condition`` that hold text.

        Raises
        ------
        DnnMaskError
            If the fields differ in length or the text would not read back
            as written (a value with ``,`` or a line break, a text field
            not listed in ``text``, no ``stimID``), or the file cannot be
            written (its folder is missing, it is a folder); nothing is
            written.
        """
        from dnnmask_xr._atomic import atomic_path
        from dnnmask_xr.formats.stim import parse_stim

        if not isinstance(data, Mapping):
            raise UsageError(f"stimulus data is a dict of field name to array, not a "
                             f"{type(data).__name__}")
        lines = [f"type={type}", f"path={path}"]
        lines += [f"{key}={value}" for key, value in opt_meta.items()]
        lines.append(f"data={','.join(map(str, data))}")
        columns = [np.asarray(value) for value in data.values()]
        lengths = {str(name): column.shape for name, column in zip(data, columns, strict=True)}
        if len({shape for shape in lengths.values()}) > 1 or any(
                len(shape) != 1 for shape in lengths.values()):
            raise DnnMaskError(f"{self.fname}: stimulus data fields are arrays of one value per "
                               f"stimulus, all of one length; their shapes are {lengths}")
        _check_text_declared(self.fname, data, columns, opt_meta.get("text"))
        # DNNBrain's own spelling: one array of every field, as text, transposed
        rows = np.array(columns).astype(str).T if columns else np.empty((0, 0), str)
        text = "\n".join(lines) + "\n" + "\n".join(",".join(row) for row in rows)
        _check_reads_back(self.fname, {"type": type, "path": path, **opt_meta}, data, rows,
                          parse_stim(text, self.fname))
        with atomic_path(self.fname) as tmp:
            tmp.write_bytes(text.encode("utf-8"))


def _check_reads_back(fname: str, header: Mapping[str, Any], data: Mapping[str, Any],
                      rows: np.ndarray, parsed: Any) -> None:
    """Refuse text that this package's reader would read otherwise than it was given.

    The reader strips whitespace around keys, names and values, splits a
    header line at its first ``=`` and skips blank lines: a key holding
    ``=``, a value or name with whitespace around it, or a row that is a
    blank line (an empty ``stimID`` and no other field) would come back
    changed, or not at all, without a word.
    """
    from dnnmask_xr.formats.stim import TEXT_KEY

    hint = ("a .stim.csv key holds no '=', and no key, name or value has whitespace around "
            "it or a line break")
    for key, value in header.items():
        if key != TEXT_KEY and parsed.header.get(str(key)) != str(value):
            raise DnnMaskError(f"{fname}: header key {str(key)!r} with value {str(value)!r} "
                               f"would not read back as written; {hint}")
    names = [str(name) for name in data]
    if list(parsed.table.columns) != names:
        raise DnnMaskError(f"{fname}: field names {names} would read back as "
                           f"{list(parsed.table.columns)}; {hint}")
    if len(parsed) != len(rows):
        raise DnnMaskError(f"{fname}: {len(rows)} stimuli would read back as {len(parsed)}: "
                           "a stimulus with the empty stimID '' and no other field is a blank "
                           "line, which reading skips; give it a stimID")
    for position, name in enumerate(names):
        column = parsed.table[name].to_numpy()
        if column.dtype.kind != "O":
            continue
        for number, (written, read) in enumerate(zip(rows[:, position], column.tolist(),
                                                     strict=True), 1):
            if written != read:
                raise DnnMaskError(f"{fname}: field {name!r}, stimulus number {number}: value "
                                   f"{written!r} would read back as {read!r}; {hint}")


def _check_text_declared(fname: str, data: Mapping[str, Any], columns: list[np.ndarray],
                         declared: object) -> None:
    """Refuse a field of text that the header does not list in ``text``, saying how to list it."""
    listed = {name.strip() for name in str(declared or "").split(",")}
    for name, column in zip(data, columns, strict=True):
        if name in ("stimID", "label", "condition") or name in listed:
            continue
        if column.dtype.kind in "US" or (column.dtype.kind == "O" and any(
                isinstance(value, str) for value in column.tolist())):
            raise DnnMaskError(f"{fname}: field {name!r} holds text, which DNNBrain's reader "
                               f"takes for numbers; list it in the header key text "
                               f"(write(..., text={str(name)!r}), a line text={name})")


class ActivationFile:
    """An ``.act.h5`` file, read and written as DNNBrain's ``ActivationFile`` does.

    Parameters
    ----------
    fname
        The file name, ending in ``.act.h5``.

    Raises
    ------
    UsageError
        If the name does not end in ``.act.h5``.
    """

    def __init__(self, fname: str) -> None:
        self.fname = _file_name(fname, ".act.h5", "ActivationFile")

    def read(self, dmask: MaskDict | None = None) -> dict[str, np.ndarray]:
        """Read the layers, or the part of them a mask keeps.

        Parameters
        ----------
        dmask
            DNNBrain's mask dict (``{'conv5': {'chn': [200, 3, 17], 'row':
            'all', 'col': 'all'}}``, as :meth:`MaskFile.read` gives), or
            None for every layer whole. Number *n* is the *n*-th unit
            stored, from 1, in the order given, repeats included.

        Returns
        -------
        dict
            Layer name to a 4-D array ``(n_stim, n_chn, n_row, n_col)`` in
            the file's dtype: the mask's layers in its order, or the file's
            layers in the order DNNBrain lists them.

        Raises
        ------
        ActFileError
            If the file is missing or not an activation file.
        SelectionError
            If the mask names a layer the file lacks, or a number that is
            not a unit of the layer (0, negative, past the end).
        """
        from dnnmask_xr.formats.dmask import DnnMask
        from dnnmask_xr.xarray_.reader import open_act

        with open_act(self.fname) as acts:
            chosen = acts if dmask is None else acts.mask(DnnMask(dmask), by="ordinal")
            layers = {}
            for name, layer in chosen.items():
                values = np.asarray(layer.values)
                # a layer of fewer unit dims is stored padded, as DNNBrain reads it
                layers[name] = values.reshape(values.shape + (1,) * (4 - values.ndim))
        return layers

    def write(self, activation: Mapping[str, Any]) -> None:
        """Write layers to the file, replacing it.

        Each layer becomes one gzip (level 4) dataset of the array's shape
        and dtype at the root, listed in name order as DNNBrain's files
        are; the file appears whole or not at all.

        Parameters
        ----------
        activation
            Layer name to array ``(n_stim, n_chn, n_row, n_col)`` (2 and 3
            dims are taken too).

        Raises
        ------
        DnnMaskError
            If a layer is not an array of 2 to 4 dims, or the layers differ
            in their number of stimuli.
        ActFileError
            If the file cannot be written.
        """
        from dnnmask_xr.xarray_.save import save_act

        if not isinstance(activation, Mapping):
            raise UsageError(f"activation is a dict of layer name to array, not a "
                             f"{type(activation).__name__}")
        # HDF5 lists the names of a file DNNBrain writes in byte order
        names = sorted(activation, key=lambda name: str(name).encode("utf-8", "surrogatepass"))
        save_act({name: np.asarray(activation[name]) for name in names}, self.fname)


class MaskFile:
    """A ``.dmask.csv`` file, read and written as DNNBrain's ``MaskFile`` does.

    Parameters
    ----------
    fname
        The file name, ending in ``.dmask.csv``.

    Raises
    ------
    UsageError
        If the name does not end in ``.dmask.csv``.
    """

    def __init__(self, fname: str) -> None:
        self.fname = _file_name(fname, ".dmask.csv", "MaskFile")

    def read(self) -> OrderedDict[str, dict[str, list[int] | str]]:
        """Read the mask.

        Returns
        -------
        OrderedDict
            Layer name to ``{'chn': [...] or 'all', 'row': ..., 'col': ...}``,
            in file order.

        Raises
        ------
        FormatError
            If the file is missing or breaks the format; the error names
            the file and line.
        """
        from dnnmask_xr.formats.dmask import read_dmask

        return OrderedDict(read_dmask(self.fname).to_dnnbrain())

    def write(self, dmask: MaskDict) -> None:
        """Write the mask, as the text DNNBrain writes.

        Parameters
        ----------
        dmask
            Layer name to ``{'chn': [...] or 'all', 'row': ..., 'col': ...}``.

        Raises
        ------
        DnnMaskError
            If an axis is not one of ``chn``, ``row``, ``col``, a number is
            not an integer, or there is no layer, or the file cannot be
            written (its folder is missing, it is a folder); nothing is
            written.
        """
        from dnnmask_xr.formats.dmask import DnnMask, write_dmask

        write_dmask(DnnMask(dmask), self.fname)


#: DNNBrain's RDM types (of brain activations, of DNN activations): their upper triangles' dims.
RDM_TYPES = {"bRDM": 1, "dRDM": 2}
#: The shape of each type's upper triangles, for messages.
RDM_SHAPES = {"bRDM": "((n_item^2-n_item)/2,)", "dRDM": "(n_iter, (n_item^2-n_item)/2)"}


def check_rdms(rdm_type: object, rdm_dict: Mapping[str, Any], where: str) -> None:
    """Check RDMs' type and shapes as DNNBrain's ``RdmFile`` does.

    Parameters
    ----------
    rdm_type
        ``'bRDM'`` (values 1-D) or ``'dRDM'`` (values 2-D).
    rdm_dict
        Key to the upper triangles.
    where
        The file, for errors.

    Raises
    ------
    DnnMaskError
        If the type is neither, a key is not text naming a dataset at the
        root (empty, or with ``/``), or a value has the other number of dims
        or a length that is no upper triangle's.
    """
    # a str first: a file's attribute may be an array, which a dict cannot look up
    if not isinstance(rdm_type, str) or rdm_type not in RDM_TYPES:
        raise DnnMaskError(f"{where}: RDM type {rdm_type!r} is not one of bRDM (of brain "
                           "activations), dRDM (of DNN activations)")
    for key, value in rdm_dict.items():
        if not isinstance(key, str) or not key or "/" in key or key == ".":
            # HDF5 takes 'a/b' for a dataset b in a group a: read back, no RDM 'a/b'
            raise DnnMaskError(f"{where}: RDM key {key!r} is not valid; a key names a dataset "
                               "at the file's root: non-empty text without '/' (for "
                               "'features/3' use 'features.3')")
        if np.ndim(value) != RDM_TYPES[rdm_type]:
            raise DnnMaskError(f"{where}: {rdm_type} {key!r} has shape {np.shape(value)}; a "
                               f"{rdm_type}'s shape is {RDM_SHAPES[rdm_type]}")
        rdm_items(np.shape(value)[-1], f"{where}: {rdm_type} {key!r}")


def rdm_items(n_values: int, what: str) -> int:
    """Give the number of items whose upper triangle holds ``n_values`` values.

    Raises
    ------
    DnnMaskError
        If ``n_values`` is no ``(n_item^2-n_item)/2`` (the square could not
        be rebuilt); the error starts with ``what``.
    """
    root = math.isqrt(1 + 8 * n_values)
    if root * root != 1 + 8 * n_values:
        raise DnnMaskError(f"{what} holds {n_values} values per RDM, which is no upper "
                           "triangle's (n_item^2-n_item)/2: 1, 3, 6, 10, ...")
    return (1 + root) // 2


class RdmFile:
    """An ``.rdm.h5`` file of RDMs' upper triangles, as DNNBrain's ``RdmFile``.

    Parameters
    ----------
    fname
        The file name, ending in ``.rdm.h5``.

    Raises
    ------
    UsageError
        If the name does not end in ``.rdm.h5``.
    """

    def __init__(self, fname: str) -> None:
        self.fname = _file_name(fname, ".rdm.h5", "RdmFile")

    def read(self) -> tuple[str, dict[str, np.ndarray]]:
        """Read the RDMs.

        Returns
        -------
        rdm_type : str
            ``'bRDM'`` or ``'dRDM'``, the root's ``type`` attribute.
        rdm_dict : dict
            Key (a brain ROI's label or a layer's name) to the upper
            triangles: ``((n_item^2-n_item)/2,)`` for a bRDM,
            ``(n_iter, (n_item^2-n_item)/2)`` for a dRDM.

        Raises
        ------
        ActFileError
            If the file cannot be read as HDF5.
        DnnMaskError
            If its type or shapes are not an RDM file's, or it holds a group.
        """
        import h5py

        try:
            with h5py.File(self.fname, "r") as root:
                rdm_type = root.attrs.get("type")
                if isinstance(rdm_type, bytes):
                    rdm_type = rdm_type.decode("utf-8", "replace")
                values = dict(root.items())
                for key, item in values.items():
                    if not isinstance(item, h5py.Dataset):
                        raise DnnMaskError(f"{self.fname}: {key!r} is a group, not an RDM; an "
                                           "RDM file holds one dataset per key at its root")
                check_rdms(rdm_type, values, self.fname)
                rdm_dict = {key: item[()] for key, item in values.items()}
        except OSError as error:
            raise ActFileError(f"{self.fname}: cannot read it as an RDM file: "
                               f"{' '.join(str(error).split())}") from None
        return str(rdm_type), rdm_dict

    def write(self, rdm_type: str, rdm_dict: Mapping[str, Any]) -> None:
        """Write the RDMs (gzip datasets, the type as the root's ``type``), atomically.

        Parameters
        ----------
        rdm_type
            ``'bRDM'`` or ``'dRDM'``.
        rdm_dict
            Key to the upper triangles, shaped as :meth:`read` gives them.

        Raises
        ------
        DnnMaskError
            If the type or a shape is wrong; nothing is written.
        ActFileError
            If the file cannot be written.
        """
        import h5py

        from dnnmask_xr._atomic import atomic_path

        check_rdms(rdm_type, rdm_dict, self.fname)
        try:
            with atomic_path(self.fname) as tmp, h5py.File(tmp, "w") as root:
                root.attrs["type"] = rdm_type
                for key, value in rdm_dict.items():
                    root.create_dataset(key, data=value, compression="gzip")
        except OSError as error:
            raise ActFileError(f"{self.fname}: cannot write it: "
                               f"{' '.join(str(error).split())}") from None
