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

from collections.abc import Mapping

import xarray as xr

from dnnmask_xr.act.layout import DIMS
from dnnmask_xr.errors import DnnMaskError
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
    root = xr.Dataset(attrs=dict(acts.attrs))
    nodes: dict[str, xr.Dataset] = {}
    if acts:
        table = acts.stimulus_table()
        fields = table.fields
        stimulus = xr.Variable("stimulus", table.ids, attrs=dict(table.header))
        root = root.assign_coords(
            {"stimulus": stimulus, **{name: ("stimulus", v) for name, v in fields.items()}}
        )
        for name, array in acts.items():
            clash = set(DIMS) | set(fields)
            if name in clash:
                raise DnnMaskError(
                    f"layer {name!r} has the name of a dimension or stimulus field; a tree "
                    "needs distinct names: rename the layer, as in "
                    f"Activations({{'{name}_layer': acts[{name!r}], ...}})"
                )
            # the node inherits the root's stimulus index, not its other coordinates
            nodes[name] = array.drop_vars("stimulus").to_dataset(name=name)
    tree = xr.DataTree.from_dict({"/": root, **nodes})
    tree.set_close(acts.close)
    return tree


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
        made before layer nodes held them); ``attrs`` from the root's
        attributes, the stimulus-table header from those of its
        ``stimulus`` coordinate, ``source`` from ``tree.encoding`` (set
        when the tree was read from a file). Closing them closes the tree.

    Raises
    ------
    DnnMaskError
        If the root holds variables, a node is nested deeper than one
        level or holds other than one variable, or a node's stimulus field
        differs from the root's.
    """
    if not isinstance(tree, xr.DataTree):
        raise DnnMaskError(f"from_datatree takes an xarray.DataTree, not a "
                           f"{type(tree).__name__}")
    if tree.data_vars:
        raise DnnMaskError(
            f"the root holds variables ({', '.join(map(str, tree.data_vars))}); a tree of "
            "activations holds each layer in a node of its own, named after it"
        )
    fields = {
        str(name): coord
        for name, coord in tree.coords.items()
        if coord.dims == ("stimulus",) and name != "stimulus"
    }
    layers = {}
    for name, node in tree.children.items():
        if node.children:
            raise DnnMaskError(
                f"node {node.path!r} holds groups ({', '.join(node.children)}); a tree of "
                "activations has one node per layer under its root, and nothing deeper"
            )
        variables = list(node.data_vars)
        if len(variables) != 1:
            raise DnnMaskError(
                f"node {node.path!r} holds {len(variables)} variables "
                f"({', '.join(map(str, variables)) or 'none'}); a layer node holds one, "
                f"with dims {DIMS}"
            )
        layer = node.to_dataset()[variables[0]]
        for key, coord in fields.items():
            # both copies are the user's to change: refuse to pick one
            if key in layer.coords and not layer[key].variable.equals(coord.variable):
                raise DnnMaskError(
                    f"node {node.path!r} holds stimulus field {key!r} with values other "
                    "than the root's; a tree of activations holds each field alike on the "
                    "root and on every layer node: change it on all of them")
        inherited = {key: coord for key, coord in fields.items() if key not in layer.coords}
        # the header given below becomes the attrs of every layer's stimulus
        layers[name] = layer.assign_coords(inherited)
    header = {}
    if "stimulus" in tree.coords:
        header = {str(key): str(value) for key, value in tree["stimulus"].attrs.items()}
    return Activations(layers, attrs=tree.attrs, stim_header=header,
                       source=tree.encoding.get("source"), closers=[tree.close])
