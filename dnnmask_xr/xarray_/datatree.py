"""Activations as an ``xarray.DataTree``: the stimuli on the root, one node per layer.

The tree of activations ``acts`` is::

    /                  coords: stimulus (index) and the stimulus fields
                       (label, condition, ...) along it; attrs: provenance;
                       stimulus.attrs: the .stim.csv header (type, path, ...)
    /conv5             coords: the stimulus fields, channel, row, column;
                       data: conv5
    /fc3               coords: the stimulus fields, channel, row, column;
                       data: fc3

Each layer node holds one variable named after the layer, with dims
``(stimulus, channel, row, column)``. The ``stimulus`` index is stored once,
on the root, and every layer node inherits it. xarray's nodes inherit
indexes only, not the other coordinates, so the stimulus fields are on
every layer node as well as on the root: ``tree["conv5"]["conv5"]`` is
labelled as ``acts["conv5"]`` is, and ``.groupby("condition")`` works on
it as on the tree's root. The ``.nc`` files :func:`~dnnmask_xr.save_act`
writes hold the same layout, so ``xr.open_datatree`` opens this tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import xarray as xr

from dnnmask_xr.act.layout import DIMS, EXACT_STORE, FIELD_ORDER, LAYER_ORDER
from dnnmask_xr.act.stimulus import same_values
from dnnmask_xr.errors import ActFileError, DnnMaskError
from dnnmask_xr.xarray_.activations import Activations


def to_datatree(acts: Activations | Mapping[str, xr.DataArray]) -> xr.DataTree:
    """Turn activations into a tree: stimuli on the root, a node per layer.

    Parameters
    ----------
    acts
        The layers (or a mapping of name to layer). Lazy layers stay lazy,
        dask-backed ones dask-backed.

    Returns
    -------
    xarray.DataTree
        The root holds the ``stimulus`` coordinate (with the stimulus-table
        header as its attributes), the other stimulus fields along it, and
        ``acts.attrs``; each child, named after a layer in order, holds
        that layer under its own name with the stimulus fields and its
        ``channel``, ``row`` and ``column`` numbers, and inherits the
        ``stimulus`` index. Closing the tree closes ``acts``.

    Raises
    ------
    DnnMaskError
        If the layers label their stimuli differently, or a layer is named
        like a dimension or a stimulus field.
    """
    if not isinstance(acts, Activations):
        acts = Activations(acts)
    groups = as_groups(acts)
    for name in acts:
        if name not in groups[f"/{name}"].data_vars:
            raise DnnMaskError(
                f"layer {name!r} has the name of a dimension or stimulus field; a tree "
                "needs distinct names: rename the layer, as in "
                f"Activations({{'{name}_layer': acts[{name!r}], ...}})"
            )
    # a node inherits the root's stimulus index, not its other coordinates
    tree = xr.DataTree.from_dict({path: group if path == "/" else group.drop_vars("stimulus")
                                  for path, group in groups.items()})
    tree.set_close(acts.close)
    return tree


def as_groups(acts: Activations) -> dict[str, xr.Dataset]:
    """Give the groups of :func:`to_datatree` as datasets, each with its stimulus index.

    The ``dnnact`` backend's ``open_groups`` gives these, as xarray's
    netCDF backends give a file's groups (``/`` and ``/<layer>``). A layer
    is the variable named after it, unless a dataset cannot hold that name
    beside its coordinates (a layer named ``channel``, or like a stimulus
    field): it is then ``<name>_layer``, and its group still bears its name.

    Raises
    ------
    DnnMaskError
        If the layers label their stimuli differently.
    """
    root = xr.Dataset(attrs=dict(acts.attrs))
    groups: dict[str, xr.Dataset] = {"/": root}
    if not acts:
        return groups
    table = acts.stimulus_table()
    fields = table.fields
    stimulus = xr.Variable("stimulus", table.ids, attrs=dict(table.header))
    groups["/"] = root.assign_coords(
        {"stimulus": stimulus, **{name: ("stimulus", v) for name, v in fields.items()}})
    taken = set(DIMS) | set(fields)
    for name, array in acts.items():
        variable = name
        taken_here = taken | set(map(str, array.dims))
        while variable in taken_here:
            variable = f"{variable}_layer"
        groups[f"/{name}"] = array.to_dataset(name=variable)
    return groups


def from_datatree(tree: xr.DataTree) -> Activations:
    """Turn a tree made by :func:`to_datatree` (or read from a file) into activations.

    Parameters
    ----------
    tree
        A root holding the stimulus coordinates, and one child per layer,
        each with a single variable of dims ``(stimulus, channel, row,
        column)``.

    Returns
    -------
    Activations
        The layers in node order, each labelled with the stimulus fields
        (the root's where its node has none, as in trees and ``.nc`` files
        made before layer nodes held them), with its node's attributes
        beside its variable's; ``attrs`` from the root's
        attributes, the stimulus-table header from those of its
        ``stimulus`` coordinate, ``source`` from ``tree.encoding`` (set
        when the tree was read from a file). Closing them closes the tree.

    Raises
    ------
    DnnMaskError
        If the root holds variables, a node is nested deeper than one
        level or holds other than one variable, a node's stimulus field
        differs from the root's, or a node's attribute from its variable's.
    """
    if not isinstance(tree, xr.DataTree):
        raise DnnMaskError(f"from_datatree takes an xarray.DataTree, not a "
                           f"{type(tree).__name__}")
    for node in tree.children.values():
        if node.children:
            raise DnnMaskError(
                f"node {node.path!r} holds groups ({', '.join(node.children)}); a tree of "
                "activations has one node per layer under its root, and nothing deeper"
            )
    # a layer node's dataset with what it inherits: the root's stimulus index
    groups = {"/": tree.to_dataset(),
              **{node.path: node.to_dataset() for node in tree.children.values()}}
    return from_groups(groups, source=tree.encoding.get("source"), closers=[tree.close])


def from_groups(
    groups: Mapping[str, xr.Dataset], *, source: str | None = None,
    closers: Iterable[Callable[[], None]] = (),
) -> Activations:
    """Turn the groups of :func:`as_groups` (``/`` and ``/<layer>``) into activations.

    Raises
    ------
    DnnMaskError
        As :func:`from_datatree`.
    """
    groups = _in_stored_order(groups, source)
    root = groups.get("/", xr.Dataset())
    if root.data_vars:
        raise DnnMaskError(
            f"the root holds variables ({', '.join(map(str, root.data_vars))}); a tree of "
            "activations holds each layer in a node of its own, named after it"
        )
    fields = {
        str(name): coord
        for name, coord in root.coords.items()
        if coord.dims == ("stimulus",) and name != "stimulus"
    }
    layers = {}
    for path, group in groups.items():
        if path == "/":
            continue
        variables = list(group.data_vars)
        if len(variables) != 1:
            raise DnnMaskError(
                f"node {path!r} holds {len(variables)} variables "
                f"({', '.join(map(str, variables)) or 'none'}); a layer node holds one, "
                "with dims (stimulus, *unit dims)"
            )
        layer = group[variables[0]]
        for key, coord in fields.items():
            # both copies are the user's to change: refuse to pick one
            if key in layer.coords and not layer[key].variable.equals(coord.variable):
                raise DnnMaskError(
                    f"node {path!r} holds stimulus field {key!r} with values other "
                    "than the root's; a tree of activations holds each field alike on the "
                    "root and on every layer node: change it on all of them")
        # the node's own attrs describe its layer: kept with the variable's (they were
        # dropped without a word), neither copy picked over the other
        for key, value in group.attrs.items():
            if key in layer.attrs and not same_values(layer.attrs[key], value):
                raise DnnMaskError(
                    f"node {path!r} has attribute {key!r} = {value!r}, and its variable "
                    f"{variables[0]!r} has {key!r} = {layer.attrs[key]!r}; a layer's "
                    "attributes are one set: give the attribute on one of them")
        if group.attrs:
            layer = layer.copy(deep=False)
            layer.attrs = {**group.attrs, **layer.attrs}
        inherited = {key: coord for key, coord in fields.items() if key not in layer.coords}
        # the header given below becomes the attrs of every layer's stimulus
        layers[path.strip("/")] = layer.assign_coords(inherited) if inherited else layer
    header = {}
    if "stimulus" in root.coords:
        header = {str(key): str(value) for key, value in root["stimulus"].attrs.items()}
    return Activations(layers, attrs=root.attrs, stim_header=header, source=source,
                       closers=closers)


def _in_stored_order(groups: Mapping[str, xr.Dataset],
                     source: str | None) -> dict[str, xr.Dataset]:
    """Put a ``.act.zarr`` store's groups in the order its root lists, without those lists.

    A store keeps its layers' order and its stimulus fields' order in root
    attributes (:data:`~dnnmask_xr.act.layout.LAYER_ORDER`,
    :data:`~dnnmask_xr.act.layout.FIELD_ORDER`), since zarr lists groups
    and arrays by name; a tree read from it by xarray's own zarr engine
    carries them. Other trees are given as they are.
    """
    root = groups.get("/", xr.Dataset())
    if not any(key in root.attrs for key in (LAYER_ORDER, FIELD_ORDER, EXACT_STORE)):
        return dict(groups)
    attrs = dict(root.attrs)
    attrs.pop(EXACT_STORE, None)
    layers = [path.strip("/") for path in groups if path != "/"]
    order = _layer_order(source, attrs.pop(LAYER_ORDER, None), layers)
    fields = [str(name) for name in np.atleast_1d(attrs.pop(FIELD_ORDER, []))]
    root = _fields_in_order(root, fields)
    root.attrs = attrs
    by_name = {path.strip("/"): group for path, group in groups.items() if path != "/"}
    return {"/": root, **{f"/{name}": _fields_in_order(by_name[name], fields)
                          for name in order}}


def _layer_order(source: str | None, order: object, groups: list[str]) -> list[str]:
    """Give the layers in the order the root's ``layer_order`` lists them, every one once.

    Raises
    ------
    ActFileError
        If it lists a layer twice, one the store has no group of, or leaves
        out a group: the store was changed or damaged, and a layer dropped
        without a word would be lost to every save.
    """
    if order is None:
        return groups
    listed = [str(name) for name in np.atleast_1d(np.asarray(order, dtype=object))]
    twice = sorted({name for name in listed if listed.count(name) > 1})
    absent = [name for name in listed if name not in groups]
    unlisted = [name for name in groups if name not in listed]
    problem = (f"lists layer(s) {', '.join(map(repr, twice))} more than once" if twice else
               f"lists layer(s) {', '.join(map(repr, absent))}, which the store has no "
               "group of" if absent else
               f"leaves out the group(s) {', '.join(map(repr, unlisted))}" if unlisted else "")
    if problem:
        where = repr(source) if source else "the tree"
        raise ActFileError(f"{where}: the root's attribute {LAYER_ORDER!r} {problem}; it "
                           "lists every layer group of the store once, in order")
    return listed


def _fields_in_order(group: xr.Dataset, fields: list[str]) -> xr.Dataset:
    present = [name for name in fields if name in group.coords]
    if not present:
        return group
    values = {name: group[name].variable for name in present}
    return group.drop_vars(present).assign_coords(values)
