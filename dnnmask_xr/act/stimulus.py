"""The one stimulus table of a write: IDs, fields and the ``.stim.csv`` header.

Every route that writes labels its stimuli through :class:`StimulusTable`:
read from a file's root attributes, from a ``.stim.csv`` (checked against
the activations by :func:`stimulus_labels`), or shared by labelled layers
(:func:`shared_stimulus`, the one rule for all routes). numpy only: pandas
is imported only when a ``.stim.csv`` is read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dnnmask_xr.act.layout import DIMS, count_from_one
from dnnmask_xr.errors import DnnMaskError, SelectionError

if TYPE_CHECKING:
    from dnnmask_xr.formats.stim import Stimuli


@dataclass(frozen=True)
class StimulusTable:
    """The stimulus table of a file: IDs, fields and the ``.stim.csv`` header.

    The numpy-only form of :class:`~dnnmask_xr.Stimuli` (which holds a
    pandas table), so that ``dnn_mask`` writes stimuli without pandas.
    """

    ids: np.ndarray
    fields: Mapping[str, np.ndarray] = field(default_factory=dict)
    header: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def counted(cls, size: int) -> StimulusTable:
        """Label stimuli nobody labelled: IDs ``1..size``."""
        return cls(count_from_one(size))

    @classmethod
    def joined(cls, tables: Sequence[StimulusTable]) -> StimulusTable:
        """Give the tables' stimuli one after the other, under the first's fields and header."""
        first = tables[0]
        if len(tables) == 1:
            return first
        return cls(np.concatenate([table.ids for table in tables]),
                   {name: np.concatenate([table.fields[name] for table in tables])
                    for name in first.fields},
                   first.header)

    def rows(self, rows: slice) -> StimulusTable:
        """Give the table of the stimuli ``rows`` selects."""
        return StimulusTable(self.ids[rows],
                             {name: values[rows] for name, values in self.fields.items()},
                             self.header)

    def difference(self, other: StimulusTable) -> str | None:
        """Say how ``other`` labels the stimuli differently, or None if it does not.

        NaN equals NaN here: a float field left empty is the same in both.
        """
        if not same_values(self.ids, other.ids):
            return "stimulus IDs differ"
        if list(self.fields) != list(other.fields):
            return (f"fields {list(other.fields)} differ from {list(self.fields)}")
        for name, values in self.fields.items():
            if not same_values(values, other.fields[name]):
                return f"values of field {name!r} differ"
        return None


def shared_stimulus(tables: Iterable[tuple[str, StimulusTable]]) -> StimulusTable:
    """Return the stimulus table that every layer shares: the one rule for all routes.

    Parameters
    ----------
    tables
        ``(layer name, table)`` pairs, in layer order.

    Raises
    ------
    DnnMaskError
        If a layer labels its stimuli differently from the first (IDs, field
        names or any field's values; NaN equals NaN).
    """
    first: tuple[str, StimulusTable] | None = None
    for name, table in tables:
        if first is None:
            first = (name, table)
            continue
        difference = first[1].difference(table)
        if difference:
            raise DnnMaskError(f"layer {name!r} labels its stimuli differently from layer "
                               f"{first[0]!r} ({difference}); all layers of a file share one "
                               "stimulus table")
    return StimulusTable.counted(0) if first is None else first[1]


def same_values(first: np.ndarray, second: np.ndarray) -> bool:
    """Tell whether two label arrays are equal, NaN equal to NaN."""
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        return False
    if first.dtype.kind in "fc" and second.dtype.kind in "fc":
        return bool(np.array_equal(first, second, equal_nan=True))
    if first.dtype.kind == "O" or second.dtype.kind == "O":
        return all(_same_item(a, b) for a, b in zip(first.tolist(), second.tolist(),
                                                    strict=True))
    return bool(np.array_equal(first, second))


def _same_item(first: Any, second: Any) -> bool:
    # float('nan') in an object array: a field left empty in a text table
    return bool(first == second) or (first != first and second != second)


@contextlib.contextmanager
def blaming(stim: object) -> Iterator[None]:
    """Name the ``.stim.csv`` file in a stimulus-table error raised inside."""
    try:
        yield
    except SelectionError as err:
        if not isinstance(stim, str | os.PathLike):
            raise
        raise SelectionError(f"{os.fspath(stim)}: {err}") from None


def stimulus_labels(
    stimuli: Stimuli, n_stimuli: int, where: str, dims: Iterable[str] = (),
    carried: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Check a stimulus table against the activations it describes.

    Parameters
    ----------
    stimuli
        The table, one row per stimulus.
    n_stimuli
        How many stimuli the activations hold.
    where
        The activations, for errors (a quoted path, say).
    dims
        The unit dims of the layers, which no field may be named like (as
        DNNBrain's dims).
    carried
        The stimulus IDs the activations carry already, if any: the table
        labels their rows by position, so it may rename them but not list
        them in another order.

    Returns
    -------
    tuple
        The stimulus IDs, and every other field by name.

    Raises
    ------
    SelectionError
        If the table's length differs from the number of stimuli, a field
        is named like a dimension, or the table lists a stimulus the
        activations carry at another row.
    """
    if len(stimuli) != n_stimuli:
        listed = f"{len(stimuli)} stimulus" if len(stimuli) == 1 else f"{len(stimuli)} stimuli"
        raise SelectionError(f"the stimulus table lists {listed} but {where} holds "
                             f"{n_stimuli}; give one row per stimulus, in order")
    if carried is not None:
        _check_same_order(np.asarray(stimuli.stim_ids), carried, where)
    fields = {name: stimuli.table[name].to_numpy() for name in stimuli.table.columns
              if name != "stimID"}
    taken = (*DIMS, *(dim for dim in dims if dim not in DIMS))
    clash = [name for name in fields if name in taken]
    if clash:
        raise SelectionError(f"stimulus field {clash[0]!r} has the name of a dimension; "
                             f"rename it (dimensions: {', '.join(taken)})")
    return np.asarray(stimuli.stim_ids), fields


def _check_same_order(ids: np.ndarray, carried: np.ndarray, where: str) -> None:
    """Refuse a table that lists a stimulus the activations carry at another row.

    Relabelled by position, that row's values would go under another
    stimulus's ID without a word. Activations numbered ``1..n`` carry no
    IDs of their own (DNNBrain's files have none).
    """
    if np.array_equal(carried, count_from_one(carried.size)):
        return
    given, held = _keys(ids), _keys(carried)
    if np.array_equal(given, held):
        return  # the IDs held, in their order: a table that adds fields
    listed, first = np.unique(held, return_index=True)
    # the row each given ID is held at (the first, if held twice)
    at = np.searchsorted(listed, given).clip(max=listed.size - 1)
    moved = np.flatnonzero((listed[at] == given) & (given != held))
    if moved.size:
        row = int(moved[0])
        raise SelectionError(
            f"the stimulus table lists {ids.tolist()[row]!r} in row {row + 1}, but {where} "
            f"holds it as stimulus {int(first[at[row]]) + 1}; a table labels the stimuli by "
            "position: list them in the order they are held (or reorder the layers with "
            ".sel(stimulus=...) before labelling them)")


def _keys(stimuli: np.ndarray) -> np.ndarray:
    # IDs compared as they are written: 7 and '7' are one stimulus in a .stim.csv
    if stimuli.dtype.kind in "iuU":
        return stimuli.astype(str)  # as str() writes each, at numpy's speed
    return np.array([str(stimulus) for stimulus in stimuli.tolist()], dtype=str)


def read_table(
    stim: str | os.PathLike[str] | Stimuli, n_stim: int, where: str, dims: Iterable[str] = (),
    carried: np.ndarray | None = None,
) -> tuple[StimulusTable, Stimuli]:
    """Read a ``.stim.csv`` (or take a table) and check it against ``n_stim`` stimuli.

    Returns
    -------
    tuple
        The table as a :class:`StimulusTable`, and as given (a
        :class:`~dnnmask_xr.Stimuli`, whose ``source`` names its file).

    Raises
    ------
    SelectionError, FormatError
        If the file is not a stimulus table, or the table does not fit
        (the error names the ``.stim.csv``).
    """
    # pandas is imported only when a stimulus table is given
    from dnnmask_xr.formats.stim import Stimuli, read_stim

    table = stim if isinstance(stim, Stimuli) else read_stim(stim)
    with blaming(stim):
        ids, fields = stimulus_labels(table, n_stim, where, dims, carried)
    return StimulusTable(ids, fields, table.header), table
