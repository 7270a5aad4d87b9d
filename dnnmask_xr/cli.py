"""Extract DNN activation for layer, channel, row and column of interest.

Reads an .act.h5 activation file and writes the units of interest to a new
.act.h5 file that DNNBrain reads as its own. Choose the units either with
-layer (and -chn), or with a .dmask.csv file (-dmask), not both.

  one -layer with -chn         those channels of that layer, all rows/columns
  one or more -layer, no -chn  those layers whole
  N -layer with N -chn         one channel per layer, paired in order

Numbers are 1-based, in any order, repeats allowed; the output keeps the
order given. Each option is given at most once: list all layers (channels)
after one -layer (-chn). Channel, row and column numbers of the input, stimulus IDs and
fields (-stim) are kept in the output's HDF5 attributes.

Layers of other networks have other unit dims: (stimulus, channel) for an
embedding, (stimulus, token, channel) for a transformer layer. -chn and a
.dmask.csv's chn, row and col lines address a layer's first, second and third
unit dim, whatever its name: -chn 3 1 of a (stimulus, token, channel) layer
keeps tokens 3 and 1. Errors name the dim.

Examples
--------
  dnn_mask -act test.act.h5 -layer conv5 -chn 200 3 17 -out conv5.act.h5
  dnn_mask -act test.act.h5 -dmask test.dmask.csv -stim test.stim.csv -out masked.act.h5

exit status: 0 on success, 1 for a bad file or selection, 2 for misused
flags (an option given twice, an -out that is the -act, -dmask or -stim
file included), 130 on Ctrl-C, 143 on SIGTERM,
129 on SIGHUP. On failure nothing is written at -out; a signal that comes
after -out was written is said on stderr, with status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import shlex
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import NoReturn

from dnnmask_xr._program import PROG, interruptible, run_program, writing, written_line
from dnnmask_xr._program import fail as _fail
from dnnmask_xr._program import say as _say
from dnnmask_xr._version import __version__
from dnnmask_xr.act._interrupt import Interrupted, signal_name
from dnnmask_xr.errors import DnnMaskError, UsageError

# Only what parsing the flags needs is imported here; numpy, h5py and the
# rest come in main(), so start-up stays short. Signals during start-up are
# dnnmask_xr._program's (see dnnmask_xr._start, the console script's entry point).
_NUMBER = re.compile(r"-\d+")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
#: The largest --memory: more is no machine's, and sizes are int64 downstream.
_MOST_MEMORY = 2**63 - 1
_INTEGER = re.compile(r"\s*([+-]?)0*([0-9]+)\s*")
# What people type for several channels in one word: '1,2,3', '1-10', '1,5-8'
# or a quoted '1 2 3'. Short numbers only: the hint lists them.
_LIST_ITEM = re.compile(r"([0-9]{1,18})(?:-([0-9]{1,18}))?")
_LIST_SEPARATOR = re.compile(r"\s*,\s*|\s+")
#: The most numbers of a range a hint lists before eliding the middle.
_HINT_NUMBERS = 10
#: The most words a hint's command has before eliding the middle.
_HINT_WORDS = 20
#: The largest channel number: unit numbers are int64.
_LARGEST = 2**63 - 1
#: How to give all values of an option that takes several, once.
_ONCE_HINTS = {"layer": "list all layers after one -layer (-layer conv5 fc3)",
               "chn": "list all channels after one -chn (-chn 1 2 3)"}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, status 2."""

    def error(self, message: str) -> NoReturn:
        # through _say: argparse before Python 3.11 lets a broken stderr raise
        _say(f"{self.prog}: error: {message} (see {self.prog} --help)")
        self.exit(2)

    def parse_args(self, args: Sequence[str] | None = None, namespace=None):
        # Python < 3.12 expands abbreviations of single-dash long options
        # ('-ou' for '-out') even with allow_abbrev=False: refuse them here.
        # argparse also keeps only the last of an option given twice
        # ('-layer conv5 -layer fc3' writes fc3 alone): refuse that too.
        known = self._option_string_actions
        seen: dict[str, str] = {}
        for token in args or ():
            name = token.split("=", 1)[0]
            if token == "--":
                break
            if not name.startswith("-") or _NUMBER.fullmatch(name):
                continue
            if name not in known:
                self.error(f"unrecognized argument: {token}")
            dest = known[name].dest
            if dest in seen:
                also = f" (also as {seen[dest]})" if seen[dest] != name else ""
                self.error(f"{name} given twice{also}; {_ONCE_HINTS.get(dest, 'give it once')}")
            seen[dest] = name
        return super().parse_args(args, namespace)


def _as_named(path: str) -> str:
    # a store's path without the slash a shell's completion adds; imported as a path is
    # parsed, so that --version and --help import no numpy
    from dnnmask_xr._args import as_named

    return as_named(path)


def _get_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("-act", metavar="Activation", required=True, type=_as_named,
                        help="path of a .act.h5 file which contains the activation to "
                             "extract from (or of a .nc file or .act.zarr store that "
                             "dnn_mask wrote)")
    parser.add_argument("-layer", metavar="Layer", nargs="+",
                        help="name of the target layer(s), e.g. 'conv1' for the first "
                             "convolution layer or 'fc1' for the first fully connected layer")
    parser.add_argument("-chn", metavar="Channel", nargs="+", type=channel_number,
                        help="number(s) of the target channel(s), starting from 1; needs "
                             "-layer; default is all channels (of a layer of other dims, its "
                             "first unit dim: tokens of a (stimulus, token, channel) layer)")
    parser.add_argument("-dmask", metavar="DnnMask",
                        help="path of a .dmask.csv file naming the layers, channels, rows "
                             "and columns of interest; excludes -layer and -chn (a regular "
                             "file of at most 256 MiB)")
    parser.add_argument("-stim", metavar="Stimulus",
                        help="path of a .stim.csv file describing the input's stimuli, one "
                             "row per stimulus; its IDs and fields are kept in the output (a "
                             "regular file of at most 256 MiB)")
    parser.add_argument("-out", metavar="Output", required=True, type=_as_named,
                        help="output path, ending in .act.h5 (or .nc for netCDF4, .act.zarr "
                             "for a zarr v3 store); written only when complete")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each output layer's shape, dtype and size; write nothing")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress report on stderr")
    parser.add_argument("--memory", metavar="SIZE", type=memory_size, default=None,
                        help="most memory for activations at once, e.g. 512M or 2G "
                             "(binary units; default 128M)")
    parser.add_argument("--threads", metavar="N", type=int, default=None,
                        help="threads that inflate and deflate chunks (default: all cores)")
    parser.add_argument("--allow-external", action="store_true",
                        help="follow layers whose values live in other files (external "
                             "links, virtual datasets, external raw storage): every file on "
                             "the way, up to 16 deep, checked to be a regular file and "
                             "counted as an input; refused by default")
    parser.add_argument("--verify", action="store_true",
                        help="also inflate the compressed chunks copied unchanged, to stop "
                             "on a damaged input chunk (slower)")
    return parser


def channel_number(text: str) -> int:
    """Read a ``-chn`` number as :func:`int` does, with any number of leading zeros.

    :func:`int` refuses more than 4300 digits, even ``0...01``. Leading
    zeros are dropped first; a number past int64 (any number of digits) is
    refused here, quoted in short (no layer has that many units), and any
    other is left for the mask to check against its layer, as before.
    """
    match = _INTEGER.fullmatch(text)
    if match is None:
        try:  # what int() alone takes ('1_0'), as DNNBrain's type=int does
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                _several_numbers_hint(text)
                or f"{_shorten(text)!r} is not an integer; channel numbers are 1-based integers"
            ) from None
    else:
        sign, digits = match.groups()
        # int() converts up to 4300 digits; a longer number is past int64 anyway
        number = int(sign + digits) if len(digits) <= len(str(_LARGEST)) else None
    # past int64, whatever its digits: no layer has that many units, so it is the flag
    # that is wrong (status 2), not the layer's range (status 1)
    if number is None or not -_LARGEST <= number <= _LARGEST:
        raise argparse.ArgumentTypeError(
            f"{_shorten(text)!r} is out of range for any layer; numbers are 1-based and at "
            f"most {_LARGEST}")
    return number


def _several_numbers_hint(text: str, flag: str = "-chn") -> str | None:
    """Say how to give the numbers ``text`` holds in one word, or None if it holds none.

    DNNBrain's flags take one number per word (``type=int, nargs='+'``), so
    ``1,2,3`` and ``1-10`` are refused rather than guessed at; the message
    spells out the command that means what was probably meant.
    """
    items = [item for item in _LIST_SEPARATOR.split(text.strip()) if item]
    matches = [_LIST_ITEM.fullmatch(item) for item in items]
    if not items or not all(matches):
        return None
    ranges = [(int(match[1]), int(match[2])) for match in matches if match[2]]
    quoted = repr(_shorten(text))
    if len(items) < 2 and not ranges:
        # '1,' of '-chn 1, 2, 3': the other numbers are in other words
        return (f"{quoted} is not a number; separate numbers with spaces, not commas "
                f"({flag} 1 2 3)" if "," in text else None)
    words = []
    for match in matches:
        first, last = int(match[1]), int(match[2] or match[1])
        step = 1 if last >= first else -1
        if abs(last - first) < _HINT_NUMBERS:
            words += [str(number) for number in range(first, last + step, step)]
        else:
            words += [str(first), str(first + step), str(first + 2 * step), "...", str(last)]
    if len(words) > _HINT_WORDS:
        words = [*words[:3], "...", words[-1]]
    listed = f"{flag} {' '.join(words)}"
    if ranges:
        what = "is a range" if len(items) == 1 else "holds a range"
        seq = ""
        if len(items) == 1 and "..." in words:
            first, last = ranges[0]
            step = "" if last >= first else " -1"
            seq = f" (or, in a shell, {flag} $(seq {first}{step} {last}))"
        return (f"{quoted} {what}, which {flag} does not take; list every number, separated "
                f"by spaces: {listed}{seq}")
    if "," in text:
        return f"{quoted} is not a number; separate numbers with spaces, not commas: {listed}"
    return f"{quoted} is not a number; give each number as its own word, not quoted: {listed}"


def memory_size(text: str) -> int:
    """Read a size such as ``512M``, ``2G``, ``1.5GiB`` or ``1000000`` as bytes."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{_shorten(text)!r} is not a size; give bytes or a "
                                         "number with K, M, G or T, such as 512M")
    # Decimal: exact for any number of digits (float overflows at 400, int() stops at 4300)
    exact = Decimal(match[1]) * _UNITS[match[2].upper()]
    if exact > _MOST_MEMORY:
        raise argparse.ArgumentTypeError(f"{_shorten(text)!r} is more than any memory; give "
                                         f"at most {_MOST_MEMORY} bytes, such as 512M or 2G")
    size = int(exact)
    if size < 1:
        raise argparse.ArgumentTypeError(f"{_shorten(text)!r} is not a positive size")
    return size


def _shorten(text: str, most: int = 40) -> str:
    return text if len(text) <= most else f"{text[:most - 3]}... ({len(text)} characters)"


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
    _open_std_fds()
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
        if stop.written:
            # the signal came after the rename: the output is complete
            _say(written_line(stop.signum, stop.written))
            return 0
        return _fail(f"interrupted by {stop}; nothing was written", 128 + stop.signum)
    except KeyboardInterrupt:  # Python's own Ctrl-C, outside the writer and dnn_mask's run()
        return _fail(f"interrupted by {signal_name(signal.SIGINT)}; nothing was written",
                     128 + signal.SIGINT)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    _check_flags(args)
    from dnnmask_xr.act.checks import NC_SUFFIX, ZARR_SUFFIX, check_output
    from dnnmask_xr.act.files import open_file
    from dnnmask_xr.act.mask import mask_file, plan_mask
    from dnnmask_xr.act.select import mask_from_flags
    from dnnmask_xr.act.write import DEFAULT_MEMORY, checked, progress_bar
    from dnnmask_xr.formats.dmask import read_dmask

    shown = not args.quiet and sys.stderr.isatty()
    # What the run imports later, imported while a signal is only recorded:
    # raised inside an import, it can come out as another error.
    later = {"dnnmask_xr.formats.stim": args.stim is not None,  # pandas
             "dnnmask_xr.act.nc": args.out.endswith(".nc"),  # h5netcdf
             "tqdm": shown and not args.dry_run}
    for module in (name for name, needed in later.items() if needed):
        importlib.import_module(module)
    interruptible()
    check_output(args.out)
    if args.dmask is not None:
        mask = read_dmask(args.dmask)
    else:
        mask = mask_from_flags(args.layer, args.chn)
    if args.act.endswith((ZARR_SUFFIX, NC_SUFFIX)) or args.out.endswith(ZARR_SUFFIX):
        # a zarr store at either end, or a .nc read: through the xarray side, imported only here
        from dnnmask_xr.xarray_.xarray_command import mask_through_xarray

        # a dry run writes nothing: a signal then is no signal after a write
        with contextlib.nullcontext() if args.dry_run else writing(args.out):
            plan = mask_through_xarray(args.act, args.out, mask, stim=args.stim,
                              attrs={"cmd": shlex.join([PROG, *argv])},
                              memory=args.memory or DEFAULT_MEMORY, threads=args.threads,
                              dry_run=args.dry_run, verify=args.verify,
                              allow_external=args.allow_external)
        if plan is None:
            return 0
    elif args.dry_run:
        with open_file(args.act) as root:
            # DNNBrain reads numbers as the n-th unit stored, whatever the file holds
            plan = plan_mask(root, mask, stim=args.stim, by="ordinal",
                             allow_external=args.allow_external)
            # what the run would refuse before writing, while the input is open
            checked(plan, args.out)
    if args.dry_run:
        print(plan.summary(args.out))
        print(plan.describe())
        return 0
    with writing(args.out), progress_bar(shown) as on_progress:
        mask_file(args.act, args.out, mask, stim=args.stim, by="ordinal",
                  attrs={"cmd": shlex.join([PROG, *argv])},
                  memory=args.memory or DEFAULT_MEMORY, threads=args.threads,
                  on_progress=on_progress, verify=args.verify,
                  allow_external=args.allow_external)
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    if args.dmask is not None and (args.layer is not None or args.chn is not None):
        raise UsageError("-dmask excludes -layer and -chn; choose units with one or the other")
    if args.dmask is None and args.layer is None:
        if args.chn is not None:
            raise UsageError("-chn needs -layer to say which layer the channels belong to")
        raise UsageError("no units chosen; give -layer (with or without -chn) or -dmask")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads} is not a positive number of threads")


def _open_std_fds() -> None:
    """Open ``/dev/null`` on stdin, stdout and stderr where they are closed.

    Run with ``2>&-``, the first file this process opened would become
    file descriptor 2, and whatever is written to stderr (an error line, a
    warning) would go into it, an output file included. Python, finding no
    stderr at start-up, sets ``sys.stderr`` to None: it gets one on
    ``/dev/null``, so that what writes there needs no special case.
    """
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", buffering=1, closefd=False,
                                    errors="backslashreplace"))


if __name__ == "__main__":
    sys.exit(run_program(main))
