"""The ``dnn_mask`` console script's entry point: signals handled from the start.

It hands :func:`~dnnmask_xr._program.run_program` the command before
anything heavy is imported, so that Ctrl-C, SIGTERM and SIGHUP give the
same one line and exit status whenever they come
(:mod:`dnnmask_xr._program`).
"""

from __future__ import annotations

from dnnmask_xr._program import run_program


def run() -> int:
    """Run ``dnn_mask`` as a program.

    Returns
    -------
    int
        The exit status: :func:`dnnmask_xr.cli.main`'s, or ``128 + n`` for
        signal ``n`` before it (130 for Ctrl-C, 143 for SIGTERM).
    """
    return run_program(_main)


def _main() -> int:
    # imported once the handlers are in place: a signal during the import
    # is recorded, not raised inside it
    from dnnmask_xr.cli import main

    return main()
