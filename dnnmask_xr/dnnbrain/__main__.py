"""Run a DNNBrain script unchanged: ``python -m dnnmask_xr.dnnbrain SCRIPT [ARGS...]``.

The script runs as ``python SCRIPT ARGS...`` would run it, with ``import
dnnbrain`` (and ``dnnbrain.io.fileio``, ``dnnbrain.dnn.core``,
``dnnbrain.dnn.base``, ``dnnbrain.utils.util``) giving
:mod:`dnnmask_xr.dnnbrain`'s modules. An error of this package ends it with
one line on stderr, ``SCRIPT: error: ...``, and exit status 1 (2 for a
usage error, as ``dnn_mask``); anything else behaves as in Python.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Sequence

USAGE = "usage: python -m dnnmask_xr.dnnbrain SCRIPT [ARGS...]"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script ``argv[0]`` with the arguments after it.

    Parameters
    ----------
    argv
        The script and its arguments; ``sys.argv[1:]`` if None.

    Returns
    -------
    int
        0 once the script has run; 1 or 2 after an error of this package
        (the script's own ``sys.exit`` passes through).
    """
    from dnnmask_xr._program import say
    from dnnmask_xr.dnnbrain import install
    from dnnmask_xr.errors import DnnMaskError, UsageError

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.splitlines()[0] + "\n\n" + USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    script = args[0]
    prog = os.path.basename(script)
    try:
        if not os.path.isfile(script):
            raise UsageError(f"script {script!r} is not a file; {USAGE}")
        install()
        sys.argv = [script, *args[1:]]
        # as `python SCRIPT` does: the script's folder first on the path
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")
    except DnnMaskError as error:
        say(f"{prog}: error: {' '.join(str(error).splitlines())}")
        return 2 if isinstance(error, UsageError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
