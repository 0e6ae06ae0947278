"""Re-analyse a log without re-running: ``python -m launcher.parse --impl NAME [--window S E] [--images-per-iter N] LOG``.

Defaults come from the row's own config (composed with Hydra exactly as a run would be, on the seed's
hardware ``v100x8``): its ``log.format``, its images per iteration, and the window 100-500.
Prints one JSON object on stdout; exits 2 with a message on stderr when the log does not cover the
window (3) or is not in the expected format (4), so scripts can tell the cases apart.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import formats, get_parser, read_log
from .base import ParseError, UnknownFormat, WindowNotCovered

EXIT_USAGE, EXIT_NOT_COVERED, EXIT_UNKNOWN, EXIT_PARSE = 2, 3, 4, 5


def row_defaults(impl: str, hardware: str = "v100x8") -> dict:
    """The row's log format, images/iter and window, from its Hydra config (raises ValueError for a bad name)."""
    import launcher.config  # noqa: F401  (registers the schema and the ${lx.*} resolvers)
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from launcher import CONF_DIR

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose(config_name="config", overrides=[f"impl={impl}", f"hardware={hardware}"])
    except HydraException as exc:
        raise ValueError(f"cannot compose the config of row {impl!r}: {exc}") from None
    return {"format": cfg.impl.log.format, "images_per_iter": int(cfg.impl.images_per_iter),
            "window": [int(cfg.window.start), int(cfg.window.end)],
            "log_path": OmegaConf.select(cfg, "impl.log.path")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launcher.parse", description=__doc__.split("\n\n")[0])
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--impl", help="row name (conf/impl/<name>.yaml); its log.format picks the parser")
    who.add_argument("--format", dest="fmt", help=f"log format directly: {', '.join(formats())}")
    ap.add_argument("--window", nargs=2, type=int, metavar=("START", "END"),
                    help="completed iterations, 1-based: 100 500 = iterations 101..500 (default: the row's, 100 500)")
    ap.add_argument("--images-per-iter", type=int, help="images per iteration (default: the row's config on v100x8)")
    ap.add_argument("--hardware", default="v100x8", help="hardware config for the row's defaults (default v100x8)")
    ap.add_argument("log", help="the log file (e.g. output/log.txt, a .log.json, a captured train.log)")
    args = ap.parse_args(argv)

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
    ipi = args.images_per_iter or defaults["images_per_iter"]
    if ipi is None:
        print("error: --images-per-iter is required with --format (or give --impl NAME to take it from the row)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        parser = get_parser(fmt)
        text = read_log(args.log)
        m = parser.measure(text, window, int(ipi))
    except FileNotFoundError:
        print(f"error: no such log file: {args.log}", file=sys.stderr)
        return EXIT_USAGE
    except WindowNotCovered as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_COVERED
    except UnknownFormat as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except (ParseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PARSE
    out = {"impl": args.impl, "format": fmt, "log": args.log, **m.to_dict()}
    print(json.dumps(out, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
