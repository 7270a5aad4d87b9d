"""Extract DNN activation for layer, channel, row and column of interest.

Reads an .act.h5 activation file and writes the units of interest to a new
.act.h5 file that DNNBrain reads as its own. Choose the units either with
-layer (and -chn), or with a .dmask.csv file (-dmask), not both.

  one -layer with -chn         those channels of that layer, all rows/columns
  one or more -layer, no -chn  those layers whole
  N -layer with N -chn         one channel per layer, paired in order

Numbers are 1-based, in any order, repeats allowed; the output keeps the
order given. Channel, row and column numbers of the input, stimulus IDs and
fields (-stim) are kept in the output's HDF5 attributes.

Examples
--------
  dnn_mask -act test.act.h5 -layer conv5 -chn 200 3 17 -out conv5.act.h5
  dnn_mask -act test.act.h5 -dmask test.dmask.csv -stim test.stim.csv -out masked.act.h5

exit status: 0 on success, 1 for a bad file or selection, 2 for misused
flags, 130 on Ctrl-C, 143 on SIGTERM. On failure nothing is written at -out.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from dnnmask_xr._interrupt import Interrupted
from dnnmask_xr.activations import format_bytes
from dnnmask_xr.dmask import read_dmask
from dnnmask_xr.errors import DnnMaskError, UsageError
from dnnmask_xr.reader import open_act
from dnnmask_xr.selection import mask_from_flags
from dnnmask_xr.writer import SUFFIX, check_output, same_file, save_act

PROG = "dnn_mask"
_NUMBER = re.compile(r"-\d+")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace=None):
        # Python < 3.12 expands abbreviations of single-dash long options
        # ('-ou' for '-out') even with allow_abbrev=False: refuse them here.
        known = set(self._option_string_actions)
        for token in args or ():
            name = token.split("=", 1)[0]
            if token == "--":
                break
            if name.startswith("-") and not _NUMBER.fullmatch(name) and name not in known:
                self.error(f"unrecognized argument: {token}")
        return super().parse_args(args, namespace)


def _get_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("-act", metavar="Activation", required=True,
                        help="path of a .act.h5 file which contains the activation to "
                             "extract from")
    parser.add_argument("-layer", metavar="Layer", nargs="+",
                        help="name of the target layer(s), e.g. 'conv1' for the first "
                             "convolution layer or 'fc1' for the first fully connected layer")
    parser.add_argument("-chn", metavar="Channel", nargs="+", type=int,
                        help="number(s) of the target channel(s), starting from 1; needs "
                             "-layer; default is all channels")
    parser.add_argument("-dmask", metavar="DnnMask",
                        help="path of a .dmask.csv file naming the layers, channels, rows "
                             "and columns of interest; excludes -layer and -chn")
    parser.add_argument("-stim", metavar="Stimulus",
                        help="path of a .stim.csv file describing the input's stimuli, one "
                             "row per stimulus; its IDs and fields are kept in the output")
    parser.add_argument("-out", metavar="Output", required=True,
                        help=f"output path, ending in {SUFFIX} (or .nc for netCDF4); written only "
                             "when complete")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each output layer's shape, dtype and size; write nothing")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress report on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dnn_mask``.

    Parameters
    ----------
    argv
        The arguments, without the program name; ``sys.argv[1:]`` if None.

    Returns
    -------
    int
        The exit status.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _get_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a misused flag already reported
        return int(done.code or 0)
    try:
        return _run(args, argv)
    except UsageError as err:
        return _fail(err, 2)
    except DnnMaskError as err:
        return _fail(err, 1)
    except OSError as err:
        # files named on the command line that cannot be read at all
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}", 1)
    except Interrupted as stop:
        return _fail(f"interrupted by {stop}; nothing was written", 128 + stop.signum)
    except KeyboardInterrupt:
        return _fail("interrupted; nothing was written", 130)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    _check_flags(args)
    if args.dmask is not None:
        mask = read_dmask(args.dmask)
    else:
        mask = mask_from_flags(args.layer, args.chn)
    with open_act(args.act, stim=args.stim) as acts:
        # DNNBrain reads numbers as positions in the file, whatever it holds
        masked = acts.mask(mask, by="position")
        if args.dry_run:
            print(f"would write {args.out!r}: {len(masked)} layer(s), {masked.n_stimuli} "
                  f"stimuli, {format_bytes(masked.nbytes)} before compression")
            print(masked.describe())
            return 0
        save_act(masked, args.out, attrs={"cmd": shlex.join([PROG, *argv])},
                 progress=not args.quiet and sys.stderr.isatty())
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    if args.dmask is not None and (args.layer is not None or args.chn is not None):
        raise UsageError("-dmask excludes -layer and -chn; choose units with one or the other")
    if args.dmask is None and args.layer is None:
        if args.chn is not None:
            raise UsageError("-chn needs -layer to say which layer the channels belong to")
        raise UsageError("no units chosen; give -layer (with or without -chn) or -dmask")
    check_output(args.out)
    if same_file(args.act, args.out):
        raise UsageError(f"-out {args.out!r} is the input file; dnn_mask never overwrites "
                         "its input: choose another -out")


def _fail(error: object, status: int) -> int:
    message = " ".join(str(error).split("\n"))
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
