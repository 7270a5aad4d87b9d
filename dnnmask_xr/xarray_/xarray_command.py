"""``dnn_mask`` with a zarr store at either end, or a ``.nc`` file as its input.

The command masks ``.act.h5`` files with the core alone
(:mod:`dnnmask_xr.act`), to ``.act.h5`` or ``.nc``; a store is read and
written, and a ``.nc`` file read (its layers are groups, which the core's
reader of root datasets does not take), through the xarray side
(:mod:`~dnnmask_xr.xarray_.zarr_store`, :mod:`~dnnmask_xr.xarray_.store`),
which the command imports only then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dnnmask_xr.act.checks import is_url
from dnnmask_xr.act.plan import Plan
from dnnmask_xr.act.write import DEFAULT_MEMORY, checked
from dnnmask_xr.xarray_.activations import Activations
from dnnmask_xr.xarray_.reader import open_act
from dnnmask_xr.xarray_.save import plan_layers, save_act


def mask_through_xarray(act: str, out: str, mask: Any, *, stim: str | None = None,
               attrs: Mapping[str, Any] | None = None, memory: int = DEFAULT_MEMORY,
               threads: int | None = None, dry_run: bool = False, verify: bool = False,
               allow_external: bool = False) -> Plan | None:
    """Do what ``dnn_mask`` does with a zarr store at either end, or a ``.nc`` as input.

    The input is opened with :func:`~dnnmask_xr.open_act`, masked by
    position as DNNBrain reads mask numbers, and saved with
    :func:`~dnnmask_xr.save_act`: the same units and values as the command
    on an ``.act.h5``, through the xarray side, which ``dnn_mask`` imports
    only then.

    Returns
    -------
    Plan or None
        With ``dry_run``, what would be written (nothing is), checked as the
        write would check it before writing; else None.
    """
    with open_act(act, stim=stim, allow_external=allow_external) as acts:
        masked = _without_layer_attrs(acts.mask(mask, by="ordinal"))
        if dry_run:
            plan = plan_layers(masked, attrs)
            # what the write would refuse before writing, while the input is open
            checked(plan, out)
            if is_url(out):
                # what a store's write finds at its URL when it begins
                from dnnmask_xr.xarray_.url_store import check_free

                check_free(out, None)
            return plan
        save_act(masked, out, attrs=attrs, memory=memory, threads=threads, verify=verify)
    return None


def _without_layer_attrs(acts: Activations) -> Activations:
    """Give the layers without their own attributes, as the command writes an ``.act.h5``.

    ``dnn_mask`` carries none of its input's attributes over (the core's
    :func:`~dnnmask_xr.act.mask.plan_mask` writes a layer's unit numbers
    and dims alone); ``save_act`` of the same layers keeps them.
    """
    layers = {}
    for name, layer in acts.items():
        layer = layer.copy(deep=False)
        layer.attrs = {}
        layers[name] = layer
    return acts._derive(layers, attrs=acts.attrs)
