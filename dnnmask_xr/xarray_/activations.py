"""The activations of a network's layers, as labelled xarray arrays."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from dnnmask_xr._args import mapping_arg
from dnnmask_xr.act.checks import check_layer_name
from dnnmask_xr.act.describe import LayerSummary, count, describe_layers, layers_html
from dnnmask_xr.act.layout import (
    DIMS,
    NUMBERED_DIMS,
    axis_names,
    count_from_one,
    is_text,
    unit_dims_problem,
)
from dnnmask_xr.act.plan import INPUTS_KEY, text_inputs
from dnnmask_xr.act.select import (
    NumberMeaning,
    check_meaning,
    describe_numbers,
    layer_positions,
    missing_layer,
)
from dnnmask_xr.act.stimulus import StimulusTable, shared_stimulus, stimulus_labels
from dnnmask_xr.errors import DnnMaskError, SelectionError, UsageError
from dnnmask_xr.formats.dmask import DNNBRAIN_AXES, DnnMask, format_dmask
from dnnmask_xr.formats.stim import TEXT_KEY, Stimuli


class Activations(Mapping[str, xr.DataArray]):
    """Layers of activations, in order, each an ``xarray.DataArray``.

    Every layer has ``stimulus`` as its first dim, then one to three unit
    dims: ``(stimulus, channel, row, column)`` for a convolutional layer as
    DNNBrain stores it, ``(stimulus, channel)`` for an fc layer or an
    embedding, ``(stimulus, token, channel)`` for a transformer layer, or
    other names. Unit dims are labelled with 1-based numbers, so
    ``acts["conv5"].sel(channel=[1, 2, 3])`` means what ``-chn 1 2 3`` means,
    while ``.isel`` stays 0-based. All layers describe the same stimuli.

    Parameters
    ----------
    layers
        Layer name to array, in order: a ``DataArray`` with such dims, or
        anything ``numpy.asarray`` takes (a NumPy array, a CPU tensor) of 2,
        3 or 4 dims, which gets the dims ``(stimulus, channel)``,
        ``(stimulus, token, channel)`` or ``(stimulus, channel, row,
        column)``. Missing coordinates are numbered from 1.
    attrs
        Free metadata (provenance) written to the file's root on saving.
    stim_header
        The header of the stimulus table (``type``, ``path``, ...), kept as
        the attributes of every layer's ``stimulus`` coordinate too, so that
        layers taken out (``dict(acts)``) still carry it. None (default):
        the header the layers' ``stimulus`` coordinates carry (layers of
        none beside them take it); layers that carry different headers are
        refused.
    source
        The file the layers are read from, if any.
    closers
        Callables that release the files behind the layers.
    """

    def __init__(
        self,
        layers: Mapping[str, xr.DataArray],
        *,
        attrs: Mapping[str, Any] | None = None,
        stim_header: Mapping[str, str] | None = None,
        source: str | None = None,
        closers: Iterable[Callable[[], None]] = (),
    ) -> None:
        if not isinstance(layers, Mapping):
            raise DnnMaskError(f"layers are given as a mapping of layer name to DataArray, "
                               f"not a {type(layers).__name__}")
        layers = {name: _as_layer(name, array) for name, array in layers.items()}
        if stim_header is None:
            # a mapping of layers taken from Activations keeps the header on
            # each layer's stimulus coordinate
            stim_header = _shared_header(layers)
        self.stim_header: dict[str, str] = dict(mapping_arg(stim_header, "stim_header"))
        self._layers = {name: _with_header(array, self.stim_header)
                        for name, array in layers.items()}
        sizes = {name: array.sizes["stimulus"] for name, array in self._layers.items()}
        if len(set(sizes.values())) > 1:
            listing = ", ".join(f"{name!r}: {size}" for name, size in sizes.items())
            raise DnnMaskError(
                f"layers describe different numbers of stimuli ({listing}); all layers "
                "of an activation file describe the same stimuli"
            )
        self.attrs: dict[str, Any] = dict(mapping_arg(attrs, "attrs"))
        self.source = source
        self._closers = tuple(closers)
        self._table: StimulusTable | None = None

    def __getitem__(self, layer: str) -> xr.DataArray:
        try:
            return self._layers[layer]
        except (KeyError, TypeError):  # TypeError: an unhashable key names no layer
            raise KeyError(self._no_layer(layer).args[0]) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    @property
    def n_stimuli(self) -> int:
        """Number of stimuli (0 when there is no layer)."""
        return next(iter(self._layers.values())).sizes["stimulus"] if self._layers else 0

    @property
    def nbytes(self) -> int:
        """Bytes the layers take in memory once loaded."""
        return sum(array.nbytes for array in self._layers.values())

    @property
    def stimuli(self) -> Stimuli | None:
        """The stimulus table as a :class:`~dnnmask_xr.Stimuli`, if one is attached.

        A pandas view of :meth:`stimulus_table`, the one table.

        Raises
        ------
        DnnMaskError
            If the layers label their stimuli differently (as
            :meth:`stimulus_table` does).
        """
        if not self.stim_header or not self._layers:
            return None
        table = self.stimulus_table()
        # fields of text beyond DNNBrain's are declared, as a .stim.csv declares them
        text = [name for name, values in table.fields.items()
                if name not in ("label", "condition") and is_text(values)]
        header = {key: value for key, value in table.header.items() if key != TEXT_KEY}
        if text:
            header[TEXT_KEY] = ",".join(text)
        return Stimuli(header=header,
                       table=pd.DataFrame({"stimID": table.ids, **table.fields}))

    def stimulus_table(self) -> StimulusTable:
        """Return the one stimulus table all layers share, with the header.

        Checked once, when first asked for (every write asks).

        Raises
        ------
        DnnMaskError
            If a layer labels its stimuli differently from the first (see
            :func:`~dnnmask_xr.act.stimulus.shared_stimulus`).
        """
        if self._table is None:
            self._table = shared_stimulus(
                (name, StimulusTable(array["stimulus"].values, stimulus_fields(array)))
                for name, array in self._layers.items())
        return StimulusTable(self._table.ids, self._table.fields, self.stim_header)

    def mask(self, mask: DnnMask, *, by: NumberMeaning = "label") -> Activations:
        """Keep the layers, channels, rows and columns a mask names.

        Parameters
        ----------
        mask
            Layers in output order, each with the numbers to keep per axis
            (in the order given, repeats allowed). As in a ``.dmask.csv``,
            a mask's ``channel``, ``row`` and ``column`` numbers (``chn``,
            ``row``, ``col``) address a layer's first, second and third
            unit dim, whatever their names: ``chn`` numbers select tokens of
            a ``(stimulus, token, channel)`` layer. ``.sel`` selects by name.
        by
            ``"label"`` (default) selects by the ``channel``/``row``/
            ``column`` coordinates, like ``.sel``; ``"ordinal"`` takes
            number *n* as the *n*-th unit stored, from 1, as DNNBrain does. The two
            agree on files no mask has cut yet.

        Returns
        -------
        Activations
            Still lazy: nothing is read until values are asked for. The
            coordinates keep the original numbers.

        Raises
        ------
        SelectionError
            If a layer is missing or a number is not a unit of its layer.
        UsageError
            If ``by`` is not a known meaning.
        """
        by = check_meaning(by)
        if not isinstance(mask, DnnMask):
            mask = DnnMask(mask)
        missing = [layer for layer in mask if layer not in self._layers]
        if missing:
            raise self._no_layer(missing[0])
        layers = {}
        for layer, layer_mask in mask.items():
            array = self._layers[layer]
            unit_dims = unit_dims_of(array)
            labels = {stored: array[dim].values
                      for stored, dim in zip(NUMBERED_DIMS, unit_dims, strict=False)}
            positions = layer_positions(layer, layer_mask, labels, by, unit_dims)
            named = {axis_names(unit_dims)[stored]: found for stored, found in positions.items()}
            layers[layer] = with_inputs(array.isel(named), text_inputs(mask=mask))
        provenance = {"source": self.source} if self.source else {}
        provenance.update(mask=format_dmask(mask), mask_by=by)
        return self._derive(layers, attrs=provenance)

    def isel(self, indexers: Mapping[str, Any] | None = None,
             **indexers_kwargs: Any) -> Activations:
        """Select by 0-based position along the dims of every layer, and layers by position.

        Parameters
        ----------
        indexers
            Dim name to positions, as for ``xarray.DataArray.isel``:
            ``stimulus`` applies to every layer (all layers keep describing
            the same stimuli); ``channel``, ``row`` and ``column`` (also
            spelled ``chn``, ``col``) apply to every layer kept; ``layer``
            keeps the layers at these positions, in this order, or a slice
            of them.
        **indexers_kwargs
            The same, as keywords.

        Returns
        -------
        Activations
            Still lazy, with the stimulus header, ``attrs`` and ``source``
            kept.

        Raises
        ------
        SelectionError
            If a position is not in a layer (the error names the layer).
        UsageError
            If a dim is unknown, or an indexer is a single number (it would
            drop a dim every layer keeps; give a list).
        """
        return self._select("isel", *_indexers(indexers, indexers_kwargs, "isel"), {})

    def sel(self, indexers: Mapping[str, Any] | None = None, *, method: str | None = None,
            tolerance: Any = None, **indexers_kwargs: Any) -> Activations:
        """Select by label along the dims of every layer, and layers by name.

        ``acts.sel(stimulus=["n01.JPEG", "n04.JPEG"])`` keeps two stimuli of
        every layer; ``acts.sel(layer=["fc3", "conv5"], channel=[1, 2])``
        keeps channels 1 and 2 of two layers, in that order.

        Parameters
        ----------
        indexers
            Dim name to labels, as for ``xarray.DataArray.sel``: ``stimulus``
            (IDs, or a boolean array such as ``acts.condition == "cat"``)
            applies to every layer; ``channel``, ``row`` and ``column``
            (also spelled ``chn``, ``col``: the network's 1-based numbers)
            apply to every layer kept; ``layer`` keeps the layers of these
            names, in this order, or those of a slice from name to name
            (both included, as pandas slices labels).
        method, tolerance
            As for ``xarray.DataArray.sel``, for the dims of the layers.
        **indexers_kwargs
            The same as ``indexers``, as keywords.

        Returns
        -------
        Activations
            Still lazy, with the stimulus header, ``attrs`` and ``source``
            kept.

        Raises
        ------
        SelectionError
            If a label is not in a layer (the error names the layer), or a
            layer is not in the activations.
        UsageError
            If a dim is unknown, or an indexer is a single label (it would
            drop a dim every layer keeps; give a list).
        """
        options = {key: value for key, value in (("method", method), ("tolerance", tolerance))
                   if value is not None}
        return self._select("sel", *_indexers(indexers, indexers_kwargs, "sel"), options)

    def _select(self, how: str, indexers: dict[str, Any], given_as: Mapping[str, str],
                options: dict[str, Any]) -> Activations:
        names = list(self._layers)
        if "layer" in indexers:
            names = self._chosen_layers(how, indexers.pop("layer"))
        absent = [dim for dim in indexers
                  if not any(dim in self._layers[name].dims for name in names)]
        if absent:
            have = dict.fromkeys(["layer", *(str(dim) for name in names
                                             for dim in self._layers[name].dims)])
            shown = [_ALIASES.get(dim, dim) for dim in have]
            raise UsageError(f"{how}: {absent[0]!r} is not a dim of the layers chosen; their "
                             f"dims are {', '.join(shown[:-1])} and {shown[-1]}")
        for dim, value in indexers.items():
            _check_kept(how, given_as[dim], dim, value)
        layers = {}
        for name in names:
            array = self._layers[name]
            # a unit dim applies to the layers that have it, as in xarray.Dataset
            own = {dim: _plain_slice(value, array.sizes[dim]) if how == "isel" else value
                   for dim, value in indexers.items() if dim in array.dims}
            own = {dim: _booleans_in_order(how, name, array, dim, value)
                   for dim, value in own.items()}
            if how == "sel":
                self._check_unique(name, array, own)
                if not options:
                    _check_labels(name, array, own)
            try:
                layers[name] = getattr(array, how)(own, **options) if own else array
            except (KeyError, IndexError, ValueError, TypeError) as err:
                reason = str(err.args[0]) if err.args else type(err).__name__
                # xarray's first line says what; the reprs of both arrays follow it
                reason = (reason.splitlines() or [type(err).__name__])[0].rstrip(" :")
                raise SelectionError(f"layer {name!r} of {self._where()}: {reason}") from None
        return self._derive(layers, attrs=self.attrs)

    def _check_unique(self, name: str, array: xr.DataArray, indexers: Mapping[str, Any]) -> None:
        """Refuse labels to look up along a dim whose labels repeat (pandas cannot)."""
        for dim, value in indexers.items():
            index = array.indexes.get(dim)
            if index is None or index.is_unique or np.asarray(value).dtype.kind == "b":
                continue
            twice = pd.unique(index[index.duplicated()]).tolist()
            repeated = ", ".join(map(repr, twice[:5])) + (", ..." if len(twice) > 5 else "")
            raise SelectionError(f"layer {name!r} of {self._where()}: its {dim} labels repeat "
                                 f"({repeated}), so sel cannot tell those apart; select by "
                                 f"position with isel({dim}=[...])")

    def _chosen_layers(self, how: str, chosen: Any) -> list[str]:
        available = list(self._layers)
        if isinstance(chosen, slice):
            return self._layer_slice(how, chosen)
        if isinstance(chosen, str | int | np.integer):
            items = [chosen]
        elif isinstance(chosen, Iterable) and not isinstance(chosen, Mapping | set | bytes):
            items = list(chosen)
        else:
            raise _not_layers_chosen(how, chosen)
        names = []
        for item in items:
            if how == "isel":
                if not isinstance(item, int | np.integer) or isinstance(item, bool):
                    raise UsageError(f"isel(layer=...) takes layer positions (ints), not "
                                     f"{item!r}; select layers by name with sel(layer=...)")
                if not -len(available) <= item < len(available):
                    raise SelectionError(f"layer position {item} is out of range: "
                                         f"{self._where()} has {len(available)} layer(s)")
                names.append(available[item])
            else:
                if item not in self._layers:
                    raise self._no_layer(item)
                names.append(item)
        repeated = [name for name in names if names.count(name) > 1]
        if repeated:
            raise SelectionError(f"layer {repeated[0]!r} is chosen twice; each layer of "
                                 "Activations has one name")
        return names

    def _layer_slice(self, how: str, chosen: slice) -> list[str]:
        """Give the layers a slice takes: of positions for isel, from name to name for sel."""
        available = list(self._layers)
        if how == "sel":
            for end in (chosen.start, chosen.stop):
                if end is not None and (not isinstance(end, str) or end not in self._layers):
                    raise self._no_layer(end)
            # as pandas slices labels: both ends included, in either direction
            start = None if chosen.start is None else available.index(chosen.start)
            stop = None if chosen.stop is None else available.index(chosen.stop)
            if stop is not None:
                stop = stop - 1 if isinstance(chosen.step, int) and chosen.step < 0 else stop + 1
            chosen = slice(start, None if stop == -1 else stop, chosen.step)
        try:
            return available[chosen]
        except (TypeError, ValueError):  # ends that are no ints, a step of 0
            raise _not_layers_chosen(how, chosen) from None

    def with_stimuli(self, stimuli: Stimuli) -> Activations:
        """Label the stimuli with a stimulus table.

        Parameters
        ----------
        stimuli
            One row per stimulus, in the order of the activations.

        Returns
        -------
        Activations
            ``stimulus`` labelled by ``stimID``, every other field a
            coordinate along ``stimulus``.

        Raises
        ------
        SelectionError
            If the table's length differs from the number of stimuli, a
            field is named like a dimension, or the table lists a stimulus
            the layers hold at another row (it labels them by position).
        UsageError
            If ``stimuli`` is not a :class:`~dnnmask_xr.Stimuli` table.
        DnnMaskError
            If the layers label their stimuli differently (see
            :meth:`stimulus_table`): one table labels every layer's rows.
        """
        if not isinstance(stimuli, Stimuli):
            raise UsageError(f"stimuli are a Stimuli table (see read_stim), not a "
                             f"{type(stimuli).__name__}")
        if self._layers:
            # attached by position: every layer's rows must be the same stimuli, in order,
            # and the table may rename them but not reorder them
            carried = self.stimulus_table().ids
            dims = {dim for array in self._layers.values() for dim in unit_dims_of(array)}
            ids, fields = stimulus_labels(stimuli, self.n_stimuli, self._where(), dims, carried)
        else:
            ids, fields = np.asarray(stimuli.stim_ids), {}
        coords = {"stimulus": ids}
        coords.update({name: ("stimulus", values) for name, values in fields.items()})
        layers = {}
        for name, array in self._layers.items():
            old = list(stimulus_fields(array))
            layers[name] = with_inputs(array.drop_vars(old).assign_coords(coords),
                                       text_inputs(stimuli=stimuli))
        return self._derive(layers, attrs=self.attrs, stim_header=stimuli.header)

    def close(self) -> None:
        """Release the files behind the layers (they reopen if used again)."""
        for close in self._closers:
            close()

    def __enter__(self) -> Activations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """Describe each layer on one line.

        Name, shape, dtype, size once loaded, and the channel/row/column
        numbers where they are not simply ``1..n``.
        """
        return describe_layers(self._summaries())

    def _summaries(self) -> Iterator[LayerSummary]:
        for name, array in self._layers.items():
            yield name, array.shape, array.dtype, {dim: array[dim].values
                                                   for dim in unit_dims_of(array)}

    def __repr__(self) -> str:
        of = f" of {self.source!r}" if self.source else ""
        head = f"<Activations{of}: {len(self)} layer(s), {count(self.n_stimuli, 'stimulus')}>"
        body = self.describe()
        return f"{head}\n{body}" if body else head

    def _repr_html_(self) -> str:
        """Describe the activations in a notebook: a table of layers, then the stimuli."""
        head, *_ = repr(self).split("\n", 1)
        first = next(iter(self._layers.values()), None)
        fields = {} if first is None else {
            name: f"{coord.dtype}: {describe_numbers(coord.values, most=6)}"
            for name, coord in first.coords.items() if coord.dims == ("stimulus",)}
        return layers_html(
            head.strip("<>"), self._summaries(),
            {"stimulus coordinates": fields, "stimulus header": self.stim_header,
             "attributes": {key: describe_numbers(value, most=6) if np.ndim(value) else value
                            for key, value in self.attrs.items()}})

    def _no_layer(self, name: object) -> SelectionError:
        return missing_layer(name, self._where(), self._layers)

    def _where(self) -> str:
        return repr(self.source) if self.source else "the activations"

    def _derive(
        self,
        layers: Mapping[str, xr.DataArray],
        *,
        attrs: Mapping[str, Any],
        stim_header: Mapping[str, str] | None = None,
    ) -> Activations:
        return Activations(
            layers,
            attrs=attrs,
            stim_header=self.stim_header if stim_header is None else stim_header,
            source=self.source,
            closers=self._closers,
        )


def with_inputs(array: xr.DataArray, inputs: Mapping[str, str]) -> xr.DataArray:
    """Return ``array`` remembering that it was masked or labelled with ``inputs``.

    ``inputs`` maps a text file to what was read from it (see
    :data:`~dnnmask_xr.act.plan.INPUTS_KEY`); a write refuses to replace them.
    """
    if not inputs:
        return array
    array = array.copy(deep=False)  # a new encoding dict: the original keeps its own
    array.encoding = {**array.encoding,
                      INPUTS_KEY: {**array.encoding.get(INPUTS_KEY, {}), **inputs}}
    return array


def stimulus_fields(array: xr.DataArray) -> dict[str, np.ndarray]:
    """Return the coordinates along ``stimulus`` other than ``stimulus`` itself."""
    return {
        str(name): coord.values
        for name, coord in array.coords.items()
        if coord.dims == ("stimulus",) and name != "stimulus"
    }


#: DNNBrain's names for dims, shown beside them in errors.
_ALIASES = {"channel": "channel (chn)", "column": "column (col)"}

#: The dims a plain array of 2, 3 or 4 dims gets.
DIMS_BY_RANK: dict[int, tuple[str, ...]] = {
    2: ("stimulus", "channel"),
    3: ("stimulus", "token", "channel"),
    4: DIMS,
}


def unit_dims_of(array: xr.DataArray) -> tuple[str, ...]:
    """Give a layer's unit dims: its dims after ``stimulus``."""
    return tuple(map(str, array.dims[1:]))


def stored_unit_labels(array: xr.DataArray) -> dict[str, np.ndarray]:
    """Give a layer's unit numbers as a file stores them: along ``channel``, ``row``, ``column``.

    The unit dims go along those axes in order; the axes left over are
    padded, numbered ``1``.
    """
    unit_dims = unit_dims_of(array)
    return {stored: array[dim].values if dim else count_from_one(1)
            for stored, dim in zip(NUMBERED_DIMS, (*unit_dims, None, None), strict=False)}


def _as_layer(name: str, array: object) -> xr.DataArray:
    check_layer_name(name)
    if not isinstance(array, xr.DataArray):
        array = _from_values(name, array)
    if not array.dims or array.dims[0] != "stimulus":
        raise DnnMaskError(f"layer {name!r} has dims {array.dims}; a layer's first dim is "
                           "stimulus, then its unit dims, such as (stimulus, channel, row, "
                           "column) or (stimulus, token, channel) (use .transpose or .rename "
                           "to get there)")
    problem = unit_dims_problem(array.dims[1:])
    if problem:
        raise DnnMaskError(f"layer {name!r} has dims {array.dims}: {problem}")
    unknown = [dim for dim, size in array.sizes.items() if size != size]
    if unknown:
        # a dask array indexed by a dask array of booleans does not know its length yet
        raise DnnMaskError(f"layer {name!r} has an unknown length along {unknown[0]!r} (a "
                           "dask array indexed by values not computed yet); compute it first: "
                           "layer.copy(data=layer.data.compute_chunk_sizes())")
    missing = {dim: count_from_one(array.sizes[dim])
               for dim in array.dims if dim not in array.coords}
    if missing:
        array = array.assign_coords(missing)
    return array.rename(name)


def _from_values(name: str, values: object) -> xr.DataArray:
    """Give plain values (an array, a tensor) the dims their rank implies."""
    if isinstance(values, xr.Dataset | Mapping | str | bytes) or values is None:
        raise DnnMaskError(f"layer {name!r} is a {type(values).__name__}; a layer is an "
                           "xarray.DataArray, or an array of 2 to 4 dims")
    if isinstance(values, np.ma.MaskedArray):
        # xarray would store masked values as NaN, integers as float64
        masked = int(np.ma.count_masked(values))
        if masked:
            raise DnnMaskError(
                f"layer {name!r} is a masked array with {count(masked, 'masked value')}, which a "
                "file cannot mark; give .filled(...) to store a value in their place (np.nan for "
                "NaN), or .data to store the values under the mask")
        values = values.data
    # duck arrays (dask, cupy) stay as they are: np.asarray would compute them
    try:
        array = values if hasattr(values, "__array_function__") else np.asarray(values)
    except (ValueError, TypeError) as err:
        # nested lists of uneven lengths, or of what is no number
        raise DnnMaskError(f"layer {name!r} is a {type(values).__name__} that is no array of "
                           f"numbers ({err}); give an array with the same number of units "
                           "for every stimulus") from None
    dims = DIMS_BY_RANK.get(array.ndim)
    if dims is None or np.dtype(array.dtype).kind not in "biufc":
        raise DnnMaskError(
            f"layer {name!r} is a {array.ndim}-D {type(values).__name__} of {array.dtype}; "
            "plain arrays of numbers with 2, 3 or 4 dims are taken as (stimulus, channel), "
            "(stimulus, token, channel) or (stimulus, channel, row, column); give other "
            "layers as xarray.DataArray with named dims")
    # labelled as it is made: assign_coords afterwards costs five times as much, and a
    # streamed write labels every batch
    return xr.DataArray(array, dims=dims, coords={
        dim: count_from_one(size) for dim, size in zip(dims, array.shape, strict=True)})


def _not_layers_chosen(how: str, chosen: object) -> UsageError:
    kind = "layer positions (ints)" if how == "isel" else "layer names"
    return UsageError(f"{how}(layer=...) takes {kind}: one, a list or a slice, not {chosen!r}")


def _indexers(indexers: Mapping[str, Any] | None, kwargs: Mapping[str, Any],
              how: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge indexers given both ways, with DNNBrain's dim names, and check them.

    Returns the indexers by dim, and the name each dim was given by (``chn``
    for ``channel``), for errors to say what the caller wrote.
    """
    if indexers is not None and kwargs:
        raise UsageError(f"{how}: give indexers as a mapping or as keywords, not both")
    given = dict(mapping_arg(indexers, "indexers", "{'stimulus': [...]}") or kwargs)
    merged: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in given.items():
        dim = DNNBRAIN_AXES.get(key, key)
        if not isinstance(dim, str):
            raise UsageError(f"{how}: {key!r} is not a dim of activations; dims are named by "
                             "text: layer, stimulus, and the layers' unit dims (channel or "
                             "chn, row, column or col, token, ...)")
        if dim in merged:
            raise UsageError(f"{how}: {dim!r} is given twice ({key!r} is another name for it)")
        merged[dim] = value
        given_as[dim] = key
    return merged, given_as


def _booleans_in_order(how: str, name: str, array: xr.DataArray, dim: str, value: Any) -> Any:
    """Give booleans labelled along ``dim`` in the layer's order of its labels.

    xarray takes a boolean ``DataArray`` by position, whatever its labels:
    a condition computed on the stimuli in another order would choose other
    stimuli. Booleans labelled by the layer's labels in another order are
    put in its order; labelled by others, they are refused.

    Raises
    ------
    SelectionError
        If the booleans' labels are not the layer's along ``dim``.
    """
    if not (isinstance(value, xr.DataArray) and value.dtype == bool
            and value.dims == (dim,) and dim in value.coords):
        return value
    given, labels = value[dim].to_index(), array.indexes.get(dim)
    if labels is None or given.equals(labels):
        return value
    if (len(given) == len(labels) and given.is_unique and labels.is_unique
            and set(given) == set(labels)):
        return value.sel({dim: labels})
    raise SelectionError(f"{how}({dim}=...): the booleans are labelled by "
                         f"{count(len(given), str(dim))} that are not those of layer {name!r} "
                         f"({len(labels)}); compute them from these activations, or give "
                         ".values to take them in order")


def _plain_slice(positions: Any, size: int) -> Any:
    """Give a slice of positions with ends that lazy indexing cannot misread.

    A slice of negative step that starts before the first position
    (``slice(-9, -8, -1)`` of 5) is empty, but xarray's lazy indexing and
    dask normalise its start to -1 and then read that as the last position.
    Such a slice becomes ``slice(0, 0)``, and an end before the first
    position ``None``; other indexers are given back as they are.
    """
    if not isinstance(positions, slice):
        return positions
    try:
        start, stop, step = positions.indices(size)
    except (TypeError, ValueError):  # ends that are no ints, a step of 0: xarray says so
        return positions
    if not range(start, stop, step):
        return slice(0, 0)
    return slice(start, None if stop < 0 else stop, step)


def _check_kept(how: str, key: str, dim: str, value: Any) -> None:
    """Refuse an indexer that would drop ``dim`` or is none of what xarray indexes by.

    ``key`` is the name the caller gave ``dim`` by (``chn``), which the error repeats.
    """
    if isinstance(value, slice):
        return
    if value is None or isinstance(value, Mapping | set | frozenset):
        kind = "labels" if how == "sel" else "positions"
        raise UsageError(f"{how}({key}={value!r}) takes {kind}: a list, an array or a "
                         f"slice, not a {type(value).__name__}")
    if np.ndim(value) == 0:
        shown = value.item() if isinstance(value, np.ndarray | np.generic) else value
        raise UsageError(f"{how}({key}={shown!r}) would drop the {dim} dim, which every "
                         f"layer keeps; give a list ({key}=[{shown!r}]), or select from "
                         f"one layer (acts['conv5'].{how}({dim}={shown!r}))")


def _check_labels(name: str, array: xr.DataArray, indexers: Mapping[str, Any]) -> None:
    """Name the labels a list given to ``sel`` asks for that a layer lacks."""
    for dim, value in indexers.items():
        wanted = np.asarray(value) if isinstance(value, list | tuple | np.ndarray) else None
        if wanted is None or wanted.dtype.kind == "b" or wanted.ndim != 1:
            continue
        labels = array[dim].values
        known = set(labels.tolist())
        missing = [item for item in wanted.tolist() if item not in known]
        if missing:
            which = ", ".join(map(repr, missing[:5])) + (", ..." if len(missing) > 5 else "")
            have = (f"its {count(labels.size, 'stimulus')} have other IDs" if dim == "stimulus"
                    else f"its {dim} numbers are {describe_numbers(labels)}")
            raise SelectionError(f"layer {name!r} has no {dim} {which} ({have})")


def _header_of(array: xr.DataArray) -> dict[str, str]:
    """Give the stimulus header a layer carries, or ``{}`` if its attrs are not one."""
    attrs = array["stimulus"].attrs
    # a .stim.csv header has text entries and always a type and a path; other
    # attributes a stimulus coordinate may have (units, ...) are no header
    if not all(key in attrs for key in ("type", "path")) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in attrs.items()):
        return {}
    return dict(attrs)


def _shared_header(layers: Mapping[str, xr.DataArray]) -> dict[str, str]:
    """Give the one stimulus header the layers carry (layers without one carry none).

    Raises
    ------
    DnnMaskError
        If two layers carry different headers: neither may be dropped silently.
    """
    first: tuple[str, dict[str, str]] | None = None
    for name, array in layers.items():
        header = _header_of(array)
        if not header:
            continue
        if first is None:
            first = (name, header)
        elif header != first[1]:
            key = next(key for key in {**first[1], **header}
                       if first[1].get(key) != header.get(key))
            shown = " and ".join("none" if value is None else repr(value)
                                 for value in (first[1].get(key), header.get(key)))
            raise DnnMaskError(f"layers {first[0]!r} and {name!r} carry different stimulus "
                               f"headers ({key} {shown}); give the one header with "
                               "Activations(..., stim_header={...})")
    return {} if first is None else first[1]


def _with_header(array: xr.DataArray, header: Mapping[str, str]) -> xr.DataArray:
    attrs = array["stimulus"].attrs
    if attrs == header or (not header and not _header_of(array)):
        return array
    array = array.copy(deep=False)  # new attrs dicts: the caller's layer keeps its own
    array["stimulus"].attrs = dict(header)
    return array
