"""The project's errors: bad input, said in one line.

Every error that bad data or a bad request can cause derives from
:class:`DnnMaskError`, itself a :class:`ValueError`; the command line turns
these into one line on stderr and exit status 1. Any other exception is a bug.
"""

from __future__ import annotations

import os


class DnnMaskError(ValueError):
    """Base of all errors caused by bad input."""


class FormatError(DnnMaskError):
    """A text file (``.dmask.csv``, ``.stim.csv``) breaks its format.

    Parameters
    ----------
    message
        What is wrong and what would be valid, starting lowercase.
    path
        The file at fault, if the text came from a file.
    line
        The 1-based line number at fault, if one line is to blame.
    """

    def __init__(
        self,
        message: str,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        where = [part for part in (self.path, None if line is None else f"line {line}") if part]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ActFileError(DnnMaskError):
    """An ``.act.h5`` file cannot be read or written as activations."""


class SelectionError(DnnMaskError):
    """A mask or selection does not fit the activations it is applied to."""


class UsageError(DnnMaskError):
    """A request combines options in a way that has no meaning.

    The command line reports these with exit status 2, like argparse's own
    errors, since the fix is in the command, not in a file.
    """


class OutputIsInputError(ActFileError, UsageError):
    """The output would replace a file the activations are read from.

    Both an :class:`ActFileError` (a file is at stake) and a
    :class:`UsageError` (the fix is another output path: exit status 2).
    """


class OutOfScopeError(UsageError, ImportError):
    """A part of DNNBrain that :mod:`dnnmask_xr.dnnbrain` does not provide.

    Raised on importing DNNBrain's model extraction (``dnnbrain.dnn.models``,
    PyTorch) or its brain side (``dnnbrain.brain``), and on asking for a name
    of theirs. Both a :class:`UsageError` and an :class:`ImportError`, so
    that a script's ``except ImportError`` still takes it.
    """


class IndexSelectionError(SelectionError, IndexError):
    """A row or item number out of range in :mod:`dnnmask_xr.dnnbrain`.

    Also an :class:`IndexError`, which DNNBrain's indexing (NumPy's, a
    list's) raised: iterating over an ``Activation`` or a
    ``Stimulus`` (``for part in act``, by ``__getitem__``) stops at
    it, and a script's ``except IndexError`` still takes it.
    """
