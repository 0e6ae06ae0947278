"""Re-analyse a log without re-running: ``python -m launcher.parse --impl NAME [--window S E] [--images-per-iter N]
[--run K] LOG``.

Defaults come from the row's own config (composed with Hydra exactly as a run would be, on the seed's
hardware ``v100x8``): its ``log.format``, its images per iteration, and the window 100-500.
Prints one JSON object on stdout and exits 0; otherwise prints the reason on stderr and exits with a
code scripts can tell apart: 2 a bad request (no such file or row, a window with END <= START, images per
iteration not a positive whole number, a --run the file does not have), 3 the log does not cover the
window, 4 the log is not in the expected format, 5 any other reason the log gives no figure (a stale
log, a resumed run whose origin cannot be located, inconsistent records), 6 the file holds several runs
and --run was not given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf

from .. import CONF_DIR
from .. import config as _config  # noqa: F401  (registers the schema and the ${lx.*} resolvers)
from ..defaults import REFERENCE_HARDWARE
from . import formats, get_parser, read_log
from .errors import BadRequest, ParseError, SeveralRuns, UnknownFormat, WindowNotCovered

EXIT_USAGE, EXIT_NOT_COVERED, EXIT_UNKNOWN, EXIT_PARSE, EXIT_SEVERAL_RUNS = 2, 3, 4, 5, 6


def row_defaults(impl: str, hardware: str = REFERENCE_HARDWARE) -> dict:
    """The row's log format, images/iter and window, from its Hydra config (raises ValueError for a bad name)."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose(config_name="config", overrides=[f"impl={impl}", f"hardware={hardware}"])
    except HydraException as exc:
        raise ValueError(f"cannot compose the config of row {impl!r}: {exc}") from None
    return {
        "format": cfg.impl.log.format,
        "images_per_iter": int(cfg.impl.images_per_iter),
        "window": [int(cfg.window.start), int(cfg.window.end)],
        # unresolved: a row's log may live in its run dir (${lx.run_dir:}), which only a planned run knows
        "log_path": OmegaConf.to_container(cfg.impl.log, resolve=False).get("path"),
    }


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m launcher.parse",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--impl", help="row name (conf/impl/<name>.yaml); its log.format picks the parser")
    who.add_argument("--format", dest="fmt", help=f"log format directly: {', '.join(formats())}")
    ap.add_argument(
        "--window",
        nargs=2,
        type=int,
        metavar=("START", "END"),
        help="completed iterations, 1-based: 100 500 = iterations 101..500 (default: the row's, 100 500)",
    )
    ap.add_argument("--images-per-iter", type=int, help="images per iteration (default: the row's config on v100x8)")
    ap.add_argument(
        "--hardware",
        default=REFERENCE_HARDWARE,
        help=f"hardware config for the row's defaults (default {REFERENCE_HARDWARE})",
    )
    ap.add_argument(
        "--run", type=int, metavar="K", help="which run of a file that holds several (1-based; -1 for the last)"
    )
    ap.add_argument(
        "--not-before",
        type=dt.datetime.fromisoformat,
        metavar="ISO",
        help="the run's start, with its UTC offset (2020-05-08T18:44:00+02:00): refuse a log whose "
        "records are stamped earlier (what the node checks)",
    )
    ap.add_argument("log", help="the log file (e.g. output/log.txt, a .log.json, a captured train.log)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    defaults = {"window": [100, 500], "images_per_iter": None}
    if args.impl:
        try:
            defaults = row_defaults(args.impl, args.hardware)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        fmt = defaults["format"]
    else:
        fmt = args.fmt
    window = tuple(args.window or defaults["window"])
    images = args.images_per_iter if args.images_per_iter is not None else defaults["images_per_iter"]
    if images is None:
        print(
            "error: --images-per-iter is required with --format (or give --impl NAME to take it from the row)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if fmt not in formats():
        print(f"error: no parser for log format {fmt!r}; known formats: {', '.join(formats())}", file=sys.stderr)
        return EXIT_USAGE
    if os.path.isdir(args.log):
        hint = (
            f"{args.impl} logs to {defaults['log_path']}"
            if defaults.get("log_path")
            else "e.g. output/log.txt, a .log.json, a captured train.log"
        )
        print(f"error: {args.log} is a directory: give the log file in it ({hint})", file=sys.stderr)
        return EXIT_USAGE
    try:
        m = get_parser(fmt).measure(read_log(args.log), window, images, run=args.run, not_before=args.not_before)
    except FileNotFoundError:
        print(f"error: no such log file: {args.log}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: cannot read {args.log}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ParseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        codes = (
            (BadRequest, EXIT_USAGE),
            (WindowNotCovered, EXIT_NOT_COVERED),
            (UnknownFormat, EXIT_UNKNOWN),
            (SeveralRuns, EXIT_SEVERAL_RUNS),
        )
        return next((code for cls, code in codes if isinstance(exc, cls)), EXIT_PARSE)
    out = {"impl": args.impl, "format": fmt, "log": args.log, **m.to_dict()}
    print(json.dumps(out, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
