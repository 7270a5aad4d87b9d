"""Labelled, lazy, out-of-core masking of DNN activation files on xarray.

Open an ``.act.h5`` file with :func:`open_act`, select with xarray or a
:class:`DnnMask`, and write the result with :func:`save_act`; files move both
ways between this package and DNNBrain. :func:`mask_file` masks one file
into another without xarray, as ``dnn_mask`` does.

Names are imported on first use, so ``dnn_mask`` starts without importing
xarray or pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dnnmask_xr._version import __version__

#: Public name -> module that defines it; ``__all__`` is its keys.
_WHERE = {
    "ActFileError": "errors",
    "ActWriter": "xarray_.stream",
    "Activations": "xarray_.activations",
    "DnnMask": "formats.dmask",
    "DnnMaskError": "errors",
    "FormatError": "errors",
    "LayerMask": "formats.dmask",
    "OutputIsInputError": "errors",
    "SaveReport": "act.write",
    "SelectionError": "errors",
    "Stimuli": "formats.stim",
    "UsageError": "errors",
    "from_datatree": "xarray_.datatree",
    "from_neuroid_assembly": "xarray_.peers",
    "mask_file": "act.mask",
    "mask_from_flags": "act.select",
    "open_act": "xarray_.reader",
    "open_brainio": "xarray_.peers",
    "read_dmask": "formats.dmask",
    "read_net2brain": "xarray_.peers",
    "read_stim": "formats.stim",
    "read_thingsvision": "xarray_.peers",
    "save_act": "xarray_.save",
    "set_options": "xarray_.options",
    "stack_neuroids": "xarray_.neuroid",
    "to_datatree": "xarray_.datatree",
    "to_neuroid_assembly": "xarray_.peers",
    "unstack_neuroids": "xarray_.neuroid",
    "write_dmask": "formats.dmask",
    "write_stim": "formats.stim",
}

__all__ = ["__version__", *_WHERE]

if TYPE_CHECKING:
    from dnnmask_xr.act.mask import mask_file
    from dnnmask_xr.act.select import mask_from_flags
    from dnnmask_xr.act.write import SaveReport
    from dnnmask_xr.errors import (
        ActFileError,
        DnnMaskError,
        FormatError,
        OutputIsInputError,
        SelectionError,
        UsageError,
    )
    from dnnmask_xr.formats.dmask import DnnMask, LayerMask, read_dmask, write_dmask
    from dnnmask_xr.formats.stim import Stimuli, read_stim, write_stim
    from dnnmask_xr.xarray_.activations import Activations
    from dnnmask_xr.xarray_.datatree import from_datatree, to_datatree
    from dnnmask_xr.xarray_.neuroid import stack_neuroids, unstack_neuroids
    from dnnmask_xr.xarray_.options import set_options
    from dnnmask_xr.xarray_.peers import (
        from_neuroid_assembly,
        open_brainio,
        read_net2brain,
        read_thingsvision,
        to_neuroid_assembly,
    )
    from dnnmask_xr.xarray_.reader import open_act
    from dnnmask_xr.xarray_.save import save_act
    from dnnmask_xr.xarray_.stream import ActWriter


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dnnmask_xr' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dnnmask_xr.{_WHERE[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
