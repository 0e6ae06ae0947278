"""`python -m launcher.data synth --out DIR [--images N] [--val-images M] [--seed S] [--force]`
writes DIR/coco (see launcher/data/synth.py) and prints the `data.coco_root=` override to use it.

`python -m launcher.data stage [impl=a,b] [overrides] [--force]`: each row's COCO layout (launcher/prepare/stage_cli.py)."""

from __future__ import annotations

import argparse
import sys
import time

from ..prepare import stage_cli
from .synth import Params, SynthError, synth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m launcher.data", description="The data the rows read, and data sets the launcher makes itself."
    )
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="a tiny COCO-format set (2017 and 2014 names, 80 categories, polygon masks)")
    s.add_argument("--out", required=True, help="directory to write; the set goes to OUT/coco")
    s.add_argument("--images", type=int, default=Params.images, help="training images (default %(default)s)")
    s.add_argument("--val-images", type=int, default=Params.val_images, help="validation images (default %(default)s)")
    s.add_argument("--seed", type=int, default=Params.seed, help="same seed, same files (default %(default)s)")
    s.add_argument(
        "--max-instances",
        type=int,
        default=Params.max_instances,
        help="objects per image at most (default %(default)s)",
    )
    s.add_argument("--force", action="store_true", help="replace a set of ours made with other parameters")
    stage_cli.add_parser(sub)
    args = ap.parse_args(argv)
    if args.command == "stage":
        return args.func(args)
    t0 = time.monotonic()
    params = Params(images=args.images, val_images=args.val_images, seed=args.seed, max_instances=args.max_instances)
    try:
        root, counts, written = synth(args.out, params, force=args.force)
    except SynthError as e:
        print(f"launcher.data: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # making --out itself, the final rename: the place and the way out
        print(
            f"launcher.data: error: cannot write {e.filename or args.out}: {e.strerror or e}; choose an --out "
            "you can write to",
            file=sys.stderr,
        )
        return 2
    what = "wrote" if written else "already there (same parameters), kept"
    print(
        f"launcher.data: {what} a synthetic COCO-format set in {root} in {time.monotonic() - t0:.1f} s: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    print(f"use it with: data.coco_root={root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
