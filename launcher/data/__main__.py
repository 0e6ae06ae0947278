"""`python -m launcher.data stage [impl=a,b] [overrides] [--force]`: each row's COCO layout (stage_cli.py)."""

from __future__ import annotations

import argparse
import sys

from . import stage_cli


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launcher.data", description="The data the rows read.")
    sub = ap.add_subparsers(dest="command", required=True)
    stage_cli.add_parser(sub)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
