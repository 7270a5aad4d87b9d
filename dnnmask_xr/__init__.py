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

#: Public name -> module that defines it.
_WHERE = {
    "Activations": "activations",
    "ActFileError": "errors",
    "DnnMask": "dmask",
    "DnnMaskError": "errors",
    "FormatError": "errors",
    "LayerMask": "dmask",
    "SaveReport": "writer",
    "SelectionError": "errors",
    "Stimuli": "stim",
    "UsageError": "errors",
    "format_dmask": "dmask",
    "format_stim": "stim",
    "from_datatree": "datatree",
    "mask_file": "extract",
    "mask_from_flags": "selection",
    "open_act": "reader",
    "parse_dmask": "dmask",
    "parse_stim": "stim",
    "read_dmask": "dmask",
    "read_stim": "stim",
    "save_act": "save",
    "stack_neuroids": "neuroid",
    "to_datatree": "datatree",
    "unstack_neuroids": "neuroid",
    "write_dmask": "dmask",
    "write_stim": "stim",
}

__all__ = [
    "ActFileError",
    "Activations",
    "DnnMask",
    "DnnMaskError",
    "FormatError",
    "LayerMask",
    "SaveReport",
    "SelectionError",
    "Stimuli",
    "UsageError",
    "__version__",
    "format_dmask",
    "format_stim",
    "from_datatree",
    "mask_file",
    "mask_from_flags",
    "open_act",
    "parse_dmask",
    "parse_stim",
    "read_dmask",
    "read_stim",
    "save_act",
    "stack_neuroids",
    "to_datatree",
    "unstack_neuroids",
    "write_dmask",
    "write_stim",
]

if TYPE_CHECKING:
    from dnnmask_xr.activations import Activations
    from dnnmask_xr.datatree import from_datatree, to_datatree
    from dnnmask_xr.dmask import (
        DnnMask,
        LayerMask,
        format_dmask,
        parse_dmask,
        read_dmask,
        write_dmask,
    )
    from dnnmask_xr.errors import (
        ActFileError,
        DnnMaskError,
        FormatError,
        SelectionError,
        UsageError,
    )
    from dnnmask_xr.extract import mask_file
    from dnnmask_xr.neuroid import stack_neuroids, unstack_neuroids
    from dnnmask_xr.reader import open_act
    from dnnmask_xr.save import save_act
    from dnnmask_xr.selection import mask_from_flags
    from dnnmask_xr.stim import Stimuli, format_stim, parse_stim, read_stim, write_stim
    from dnnmask_xr.writer import SaveReport


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dnnmask_xr' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dnnmask_xr.{_WHERE[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
