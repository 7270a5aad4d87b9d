"""Labelled, lazy, out-of-core masking of DNN activation files on xarray.

Open an ``.act.h5`` file with :func:`open_act`, select with xarray or a
:class:`DnnMask`, and write the result with :func:`save_act`; files move both
ways between this package and DNNBrain.
"""

from dnnmask_xr._version import __version__
from dnnmask_xr.activations import Activations
from dnnmask_xr.datatree import from_datatree, to_datatree
from dnnmask_xr.dmask import DnnMask, LayerMask, format_dmask, parse_dmask, read_dmask, write_dmask
from dnnmask_xr.errors import ActFileError, DnnMaskError, FormatError, SelectionError, UsageError
from dnnmask_xr.neuroid import stack_neuroids, unstack_neuroids
from dnnmask_xr.reader import open_act
from dnnmask_xr.selection import mask_from_flags
from dnnmask_xr.stim import Stimuli, format_stim, parse_stim, read_stim, write_stim
from dnnmask_xr.writer import save_act

__all__ = [
    "ActFileError",
    "Activations",
    "DnnMask",
    "DnnMaskError",
    "FormatError",
    "LayerMask",
    "SelectionError",
    "Stimuli",
    "UsageError",
    "__version__",
    "format_dmask",
    "format_stim",
    "from_datatree",
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
