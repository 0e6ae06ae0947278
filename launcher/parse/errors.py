"""Every way a log can fail to give a figure, one exception each, so a caller can tell the cases apart.

All are `ParseError` (itself a `ValueError`): the node turns any of them into a row that is not `ok`, with
the message as its reason; `python -m launcher.parse` maps them to exit codes.  Each message names the
problem and the way out.
"""

from __future__ import annotations

import datetime as dt


class ParseError(ValueError):
    """A log that cannot give a figure."""


class UnknownFormat(ParseError):
    """Nothing in the log looks like the expected format."""


class BadRequest(ParseError):
    """A question no log can answer: end <= start, images/iter not a positive whole number, a run the file lacks."""


class WindowNotCovered(ParseError):
    """The log stops (or starts) before the window does: a run killed, still warming up, or the wrong file."""

    def __init__(self, fmt: str, window: tuple[int, int], last_iter: int | None, detail: str = ""):
        self.fmt, self.window, self.last_iter = fmt, tuple(window), last_iter
        seen = "no iteration" if last_iter is None else f"iteration {last_iter}"
        msg = (
            f"{fmt} log does not cover the window: it needs completed iterations "
            f"{window[0]}..{window[1]} and the last one seen is {seen}"
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class SeveralRuns(ParseError):
    """The file holds more than one training run (a restart appending, a resume) and no run was chosen."""

    def __init__(self, fmt: str, runs: list[str]):
        self.fmt, self.count = fmt, len(runs)
        listing = "; ".join(f"run {i}: {d}" for i, d in enumerate(runs, 1))
        super().__init__(
            f"{fmt} log holds {len(runs)} runs ({listing}); a figure comes from one run's own records, so choose "
            f"one: run=K in measure() or --run K with python -m launcher.parse (1..{len(runs)}, or -1 for the "
            "last), or give each run its own log file"
        )


class StaleLog(ParseError):
    """A record stamped before this run started: the file is (or contains) an older run's log."""

    def __init__(
        self,
        fmt: str,
        iteration: int | None,
        printed: str,
        read_as: dt.datetime,
        not_before: dt.datetime,
        stale: int,
        stamped: int,
    ):
        self.fmt, self.iteration, self.printed = fmt, iteration, printed
        self.read_as, self.not_before = read_as, not_before
        what = (
            "is an older run's log"
            if stale == stamped
            else f"contains an older run's log ({stale} of its {stamped} stamped records)"
        )
        where = f"the record of iteration {iteration}" if iteration is not None else "a record"
        super().__init__(
            f"{fmt} log {what}: {where} is stamped {printed!r} (read as {read_as.isoformat()}), before this run "
            f"started at {not_before.isoformat()}. Another run wrote this file (an output directory shared "
            "between runs); give each run its own output directory, or move the old log aside before the run starts"
        )
