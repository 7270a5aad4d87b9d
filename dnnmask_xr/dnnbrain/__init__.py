"""DNNBrain's Python API for its files, on today's Python and NumPy.

The modules mirror DNNBrain's paths: ``dnnmask_xr.dnnbrain.io.fileio``,
``dnnmask_xr.dnnbrain.dnn.core``, ``dnnmask_xr.dnnbrain.dnn.base`` and
``dnnmask_xr.dnnbrain.utils.util`` give what ``dnnbrain.io.fileio``,
``dnnbrain.dnn.core``, ``dnnbrain.dnn.base`` and ``dnnbrain.utils.util``
give for activation files, masks, stimulus tables and RDMs, over this
package's readers and writers, without PyTorch, OpenCV, nipy, scikit-learn
or the ``DNNBRAIN_DATA`` variable. :func:`install` lets ``import dnnbrain``
find them (``python -m dnnmask_xr.dnnbrain SCRIPT`` does it for a script).
Model extraction and the brain side are out of scope: importing them raises
an :class:`~dnnmask_xr.errors.OutOfScopeError`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from dnnmask_xr.errors import OutOfScopeError, UsageError

__all__ = ["MODULES", "install"]

#: DNNBrain's module names that :func:`install` points at this package's.
MODULES: tuple[str, ...] = (
    "dnnbrain",
    "dnnbrain.io",
    "dnnbrain.io.fileio",
    "dnnbrain.dnn",
    "dnnbrain.dnn.base",
    "dnnbrain.dnn.core",
    "dnnbrain.utils",
    "dnnbrain.utils.util",
)

_HERE = __name__  # "dnnmask_xr.dnnbrain"


def install() -> None:
    """Make ``import dnnbrain`` (and its file modules) import this package's.

    After it, ``from dnnbrain.dnn.core import Activation`` and the like run
    unchanged, in this process (a notebook's kernel, say). Calling it again
    does nothing more.

    Raises
    ------
    UsageError
        If DNNBrain itself is already imported in this process: restart it
        (the kernel) and call ``install()`` before importing ``dnnbrain``.
    """
    for name in MODULES:
        mine = _HERE + name[len("dnnbrain"):]
        there = sys.modules.get(name)
        if there is not None and getattr(there, "__name__", None) != mine:
            raise UsageError(
                f"DNNBrain's own {name!r} is already imported (from "
                f"{getattr(there, '__file__', None) or 'unknown'}); restart Python (or the "
                "kernel) and call dnnmask_xr.dnnbrain.install() before importing dnnbrain"
            )
    for name in MODULES:
        sys.modules[name] = importlib.import_module(_HERE + name[len("dnnbrain"):])


def out_of_scope(module: str, what: str) -> NoReturn:
    """Refuse a module of DNNBrain this package does not provide, in one line.

    Parameters
    ----------
    module
        The module asked for (``dnnbrain.dnn.models`` or this package's name
        for it).
    what
        What that module is for, as the message says it.

    Raises
    ------
    OutOfScopeError
        Always.
    """
    name = "dnnbrain" + module[len(_HERE):] if module.startswith(_HERE) else module
    error = OutOfScopeError(
        f"{name} ({what}) is out of scope of dnnmask_xr.dnnbrain, which gives DNNBrain's "
        "file API (activations, masks, stimuli, RDMs); install DNNBrain itself for it"
    )
    error.name = name  # as ImportError's, the module refused
    raise error


def missing_names(module: str, names: Iterable[str], what: str) -> Callable[[str], Any]:
    """Make a module ``__getattr__`` that refuses DNNBrain's names left out of scope.

    Parameters
    ----------
    module
        The module's ``__name__``.
    names
        DNNBrain's names in that module that this package does not provide.
    what
        What they need or are for, as the message says it.

    Returns
    -------
    callable
        ``__getattr__(name)``: an :class:`~dnnmask_xr.errors.OutOfScopeError`
        for those names, ``AttributeError`` for any other.
    """
    left_out = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name in left_out:
            out_of_scope(f"{module}.{name}", what)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
