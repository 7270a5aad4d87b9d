"""Every route that writes, behind the command's arguments and the command's errors.

``python tests/routes.py ROUTE DNN_MASK_ARGS...`` writes what
``dnn_mask DNN_MASK_ARGS...`` writes, through ``ROUTE``:

- ``command``: :func:`dnnmask_xr.cli.main` itself;
- ``mask_file``: ``dx.mask_file(act, out, mask, ...)``;
- ``save_act-activations``: ``dx.save_act(dx.open_act(act).mask(mask), out, ...)``;
- ``save_act-dict``: the same layers as a plain dict (which has no
  ``stim_header``: the ``.stim.csv`` header is not kept, by design);
- ``save_act-datatree``: the same layers as ``dx.to_datatree(...)``;
- ``open_act-values``: the layers read into memory through ``open_act``'s
  lazy arrays (``.load()``), then saved: the route a notebook takes;
- ``ActWriter``: the same layers streamed a few stimuli at a time (read
  into memory batch by batch) through ``dx.ActWriter``: the route of an
  extraction run.

:data:`READ_ROUTES` are the routes that read an input file in different
ways (the command's chunk copy, ``mask_file``, ``open_act`` + ``.values``,
``save_act`` of an opened file); hostile-input tests run on them.

The mask is built as the command builds it (its own parser,
``mask_from_flags``, ``read_dmask``, numbers ``by="ordinal"``), and the
output's root gets the same ``cmd`` attribute. The project's errors are
reported as the command reports them, so one set of assertions holds for
every route: a :class:`~dnnmask_xr.DnnMaskError` is one ``dnn_mask: error:``
line and status 1 (2 for a :class:`~dnnmask_xr.UsageError`), printed by the
command's own ``_fail`` (so a closed or broken stderr changes no status); an
``Interrupted`` write is one line and status 128 + the signal's number, or
status 0 and a line saying the output was written. Anything else is a bug
and surfaces as a traceback.

:func:`run` does the same in the calling process (the damaged-file checks
run many cases in one child).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

#: The routes, in the order tests list them.
ROUTES = ("command", "mask_file", "save_act-activations", "save_act-dict", "save_act-datatree",
          "open_act-values", "ActWriter")
#: The routes that read an input each their own way.
READ_ROUTES = ("command", "mask_file", "open_act-values", "save_act-activations")
PROG = "dnn_mask"


def run(route: str, argv: Sequence[str]) -> int:
    """Write what ``dnn_mask argv`` writes through ``route``; return the command's status."""
    from dnnmask_xr.act._interrupt import Interrupted, signal_name
    from dnnmask_xr.cli import _fail, _say, main
    from dnnmask_xr.errors import DnnMaskError, UsageError

    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; routes: {', '.join(ROUTES)}")
    if route == "command":
        return main(argv)
    try:
        _write(route, list(argv))
    except SystemExit as done:  # the command's parser: --help, or a misused flag
        return int(done.code or 0)
    except UsageError as err:
        return _fail(err, 2)
    except DnnMaskError as err:
        return _fail(err, 1)
    except Interrupted as stop:
        if stop.written:
            _say(f"{PROG}: interrupted by {signal_name(stop.signum)} after {stop.written!r} "
                 "was written; the output is complete")
            return 0
        return _fail(f"interrupted by {signal_name(stop.signum)}; nothing was written",
                     128 + stop.signum)
    except KeyboardInterrupt:
        # Python's own Ctrl-C, in the program's code between writes (where an ActWriter's
        # batches are read): said as dnn_mask says it
        return _fail("interrupted by SIGINT; nothing was written", 130)
    return 0


def _write(route: str, argv: list[str]) -> None:
    import dnnmask_xr as dx
    from dnnmask_xr.act.write import DEFAULT_MEMORY
    from dnnmask_xr.cli import _check_flags, _get_parser

    args = _get_parser().parse_args(argv)
    _check_flags(args)
    if args.dry_run:
        raise dx.UsageError("--dry-run is the command's own; the Python routes always write")
    if args.dmask is not None:
        mask = dx.read_dmask(args.dmask)
    else:
        mask = dx.mask_from_flags(args.layer, args.chn)
    options = {"attrs": {"cmd": shlex.join([PROG, *argv])},
               "memory": args.memory or DEFAULT_MEMORY, "threads": args.threads,
               "verify": args.verify}
    if route == "mask_file":
        dx.mask_file(args.act, args.out, mask, stim=args.stim, by="ordinal",
                     allow_external=args.allow_external, **options)
        return
    with dx.open_act(args.act, stim=args.stim, allow_external=args.allow_external) as acts:
        masked = acts.mask(mask, by="ordinal")
        if route == "open_act-values":
            # every value read through the lazy layers (.values), then saved
            # from memory: the reading route, not the file-to-file copy
            dx.save_act(dx.Activations({name: layer.load() for name, layer in masked.items()},
                                       attrs=masked.attrs, stim_header=masked.stim_header),
                        args.out, **options)
        elif route == "save_act-dict":
            dx.save_act(dict(masked), args.out, **options)
        elif route == "ActWriter":
            _stream(masked, args.out, options)
        elif route == "save_act-datatree":
            dx.save_act(dx.to_datatree(masked), args.out, **options)
        else:
            dx.save_act(masked, args.out, **options)


def _stream(masked, out: str, options: dict) -> None:
    import dnnmask_xr as dx

    options = {key: value for key, value in options.items() if key != "verify"}
    with dx.ActWriter(out, **options) as writer:
        # batches of 2 stimuli, the last one shorter where the count is odd (one
        # empty batch for layers of no stimulus)
        for start in range(0, max(1, masked.n_stimuli), 2):
            batch = masked.isel(stimulus=slice(start, start + 2))
            writer.append({name: layer.load() for name, layer in batch.items()},
                          stimuli=dx.Stimuli(masked.stim_header, _table(batch))
                          if masked.stim_header else None)


def _table(batch):
    import pandas as pd

    table = batch.stimulus_table()
    return pd.DataFrame({"stimID": table.ids, **table.fields})


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
