"""python -m launcher.gather PATH... [--format rst|md|csv|json] [--out DIR] [--plot FILE.png] [--html FILE.html]
                              [--view table|scaling]
                              [--history [--since DATE] [--impl NAME] [--hardware NAME]] [--db PATH]

Exit status: 0 all read; 3 something was skipped (a corrupt or half-written result, an unreadable
directory or history store, a directory without runs: listed by path on stderr); 1 a file asked for
(--out, --plot, --html) could not be written (the table is printed first); 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import DEFAULT_DB, FORMATS, Problem, gather, write_tables
from . import history as hist
import json

from .render import render, render_history
from .table import summary
from .plot import plot

EXIT_SKIPPED = 3
EXIT_NOT_WRITTEN = 1

EPILOG = """\
rules (launcher/gather/stats.py):
  repeats    runs of one impl + hardware + recipe hash + scale: mean, sd, min-max, n;
             olympic mean (drop 1 min, 1 max) from 5 runs on
  unstable   coefficient of variation > max(2%, 3 x the largest parser error bound)
  verdict    ratio = measured / published; reproduced if |ratio-1| <= tolerance (inclusive, default 5%),
             else faster / slower; n/a without a published figure, on other hardware (see img/s per
             GPU) or at smoke scale
  regression latest figure < mean of up to 5 runs before it - max(2 sd, 2 x error bound, 2%)
exit status: 0 ok, 3 something was skipped (listed on stderr), 1 --out / --plot not written, 2 usage
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m launcher.gather",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The benchmark table from any set of sweep or run directories.",
    )
    ap.add_argument("paths", nargs="*", metavar="PATH", help="sweep or run directories (searched recursively)")
    ap.add_argument("--format", choices=FORMATS, default="rst", help="output format (default: the seed's RST)")
    ap.add_argument("--out", metavar="DIR", help="also write table.rst, table.md, results.csv here")
    ap.add_argument("--plot", metavar="FILE.png", help="draw measured vs published (and history with --history)")
    ap.add_argument(
        "--html",
        metavar="FILE.html",
        help="also write the report: one self-contained page (table, "
        "charts, history, scaling, each row's provenance and telemetry)",
    )
    ap.add_argument("--history", action="store_true", help="show the trend per row from the history store")
    ap.add_argument("--since", metavar="DATE", help="history from this date on (ISO, e.g. 2024-05-01)")
    ap.add_argument("--impl", metavar="NAME", help="history of this row only")
    ap.add_argument("--hardware", metavar="NAME", help="history on this hardware only")
    ap.add_argument("--db", metavar="PATH", default=DEFAULT_DB, help=f"history store (default {DEFAULT_DB})")
    ap.add_argument("--no-record", action="store_true", help="do not append what is gathered to the history")
    ap.add_argument(
        "--view",
        choices=("table", "scaling"),
        default="table",
        help="table: the seed's table (default); scaling: img/s, per rank and efficiency against the "
        "smallest run of each row over nodes and ranks (launcher/gather/scaling.py); --plot draws it",
    )
    args = ap.parse_args(argv)
    if not args.paths and not args.history:
        ap.error("give sweep or run directories, or --history")
    if not args.history and (args.since or args.impl or args.hardware):
        ap.error("--since, --impl and --hardware filter the history: add --history")
    if args.since:
        try:
            args.since = hist.parse_since(args.since)
        except ValueError as e:
            ap.error(str(e))

    problems: list = []
    not_written: list[str] = []
    table = trend = history_frame = None
    if args.paths:
        runs, problems = gather(args.paths, db=None if args.no_record else args.db)
        if runs.empty:  # a wrong path must not look like a sweep where nothing ran
            problems += [
                Problem(
                    os.path.abspath(p),
                    "no runs found under it (no run directory with spec.json or "
                    "result.json); the table shows the published rows only",
                )
                for p in args.paths
                if os.path.isdir(p)
            ]
        table = summary(runs)
    if args.history:
        try:
            history_frame = hist.load(args.db, since=args.since, impl=args.impl, hardware=args.hardware)
            trend = hist.trend(history_frame)
        except hist.HistoryError as e:
            problems.append(f"history not shown: {e}")
    if args.paths and args.view == "scaling":
        from .scaling import plot_scaling, render_scaling, scaling_table

        scaling = scaling_table(runs)
        sys.stdout.write(render_scaling(scaling, "rst" if args.format == "console" else args.format))
        if args.plot:
            try:
                print(f"wrote {plot_scaling(scaling, args.plot)}", file=sys.stderr)
            except OSError as e:
                not_written.append(f"cannot write the plot {args.plot} (--plot): {e.strerror or e}")
            args.plot = None
    elif args.paths:
        if not (trend is not None and args.format == "json"):
            sys.stdout.write(render(runs, args.format, table=table))
        if args.out:
            not_written += _write_tables(runs, args.out)
    if trend is not None:
        _print_history(trend, args, json.loads(render(runs, "json", table=table)) if args.paths else None)
    if args.plot:
        if table is None:
            table = summary(gather([], db=None)[0])  # the published rows alone
        try:
            print(f"wrote {plot(table, args.plot, history_frame)}", file=sys.stderr)
        except OSError as e:
            not_written.append(f"cannot write the plot {args.plot} (--plot): {e.strerror or e}")
    if args.html:
        from .html import write_report

        not_written += write_report(args, runs if args.paths else None, table, problems)
    for msg in not_written:
        print(f"error: {msg}", file=sys.stderr)
    for p in problems:
        print(f"skipped: {p}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} item(s) skipped; the table above has everything else", file=sys.stderr)
        return EXIT_SKIPPED
    return EXIT_NOT_WRITTEN if not_written else 0


def _write_tables(runs, out: str) -> list[str]:
    """--out: the table files; what could not be written, as messages (the table is printed already)."""
    try:
        for p in write_tables(runs, out):
            print(f"wrote {p}", file=sys.stderr)
    except OSError as e:
        return [
            f"cannot write the tables to {out} (--out): {e.strerror or e}; the table above is complete: "
            "point --out at a directory you can write to"
        ]
    return []


def _print_history(trend, args: argparse.Namespace, runs_doc: dict | None) -> None:
    if args.format == "json":  # one JSON document: runs, table and history together
        doc = runs_doc or {}
        doc["history"] = json.loads(render_history(trend, "json"))
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        if runs_doc is not None:
            sys.stdout.write("\n")
        sys.stdout.write(render_history(trend, args.format))
    if trend.empty:
        print(f"no ok results in {args.db} matching the filters", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
