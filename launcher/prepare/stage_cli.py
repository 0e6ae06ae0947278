"""`python -m launcher.data stage [impl=a,b] [data.coco_root=...] [data.coco2014_root=...] [--force]`

Builds each named row's COCO layout (every seed row's when none is named) under data.stage_dir, runs the
row's own script for derived files (SimpleDet's roidb: it prepares the row's checkout first, and runs in
the row's environment), and prints what each row reads there and whether it is there. Exit 1 when a
row's data is incomplete, naming what is missing and where it comes from."""

from __future__ import annotations

import argparse

from ..cli import plan_rows
from ..data.stage import problems, stage
from .checkout import prepare


def add_parser(sub) -> None:
    s = sub.add_parser(
        "stage", help="build each row's COCO layout from your COCO folders (symlinks)", description=__doc__
    )
    s.add_argument(
        "overrides", nargs="*", help="config overrides as for python -m launcher (impl=a,b data.coco_root=...)"
    )
    s.add_argument(
        "--force",
        action="store_true",
        help="re-point a layout staged from other folders; rebuild link farms and derived files",
    )
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    bad = 0
    for cfg, spec in plan_rows(args.overrides):
        ds = spec.dataset or {}
        if not ds.get("layout"):
            print(f"{spec.impl}: reads no staged COCO layout (data.coco_root={spec.data_root})")
            continue
        try:
            if ds.get("derive") and spec.repo:
                spec = prepare(spec, cfg.cache_dir, log=print)  # its own script makes them, in its work tree
            root = stage(spec, log=print, force=args.force)
        except Exception as e:  # noqa: BLE001 - StageError, a git or an environment failure: reported alike
            bad += 1
            print(f"{spec.impl}: error: {e}")
            continue
        missing, later = problems(spec)
        print(f"{spec.impl}: {ds['layout']} layout at {root}" + (" (complete)" if not missing else ""))
        for line in missing + later:
            print(f"  {line}")
        bad += bool(missing)
    return 1 if bad else 0
