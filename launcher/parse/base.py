"""The template every log parser follows, and the figure it produces.

A parser recovers the true mean step time over a window from what the implementation logs (a difference
of running means weighted by their counts, a harmonic mean of per-interval rates over equal-work
intervals, a sum of per-epoch times), never an average of whatever numbers appear. Windows count
completed iterations, 1-based: ``window=(100, 500)`` is iterations 101..500. Where a window's edges may
fall when the log's records miss them, and the arithmetic of both log shapes: spans.py.

`LogParser.measure` is the one template: check the request -> the format's runs and records -> which
run (runs.py) -> stale check (`not_before`) -> the format's span -> its method text -> `build_measurement`,
which refuses any figure that is not finite and positive. A format supplies `scan`, `span` and `method`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar

from .errors import BadRequest, ParseError, SeveralRuns, StaleLog, UnknownFormat, WindowNotCovered
from .runs import Run, RunBuilder, pick_run
from .spans import Span, span_from_cumulative, span_from_intervals
from .stamps import SHANGHAI, Stamp, check_fresh, check_not_before, logging_wall, timestamp_check, window_wall, yearless

__all__ = [
    "BadRequest",
    "LogParser",
    "Measurement",
    "ParseError",
    "Progress",
    "Run",
    "RunBuilder",
    "SHANGHAI",
    "SeveralRuns",
    "Span",
    "StaleLog",
    "Stamp",
    "UnknownFormat",
    "WindowNotCovered",
    "build_measurement",
    "check_images_per_iter",
    "check_window",
    "clean_lines",
    "dedupe",
    "logging_wall",
    "span_from_cumulative",
    "span_from_intervals",
    "yearless",
]

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def clean_lines(text):
    """Split a captured log into lines: ANSI colours stripped, `\\r` and `\\b` progress redraws split.

    `text` is a string (a list comes back) or a log file read lazily (logfile.LogText: the lines come one
    at a time, so a parse holds its records, never the whole text)."""
    from .logfile import LogText

    if isinstance(text, LogText):
        return _stream_lines(text)
    text = ANSI_RE.sub("", text).replace("\x08", "")
    return [line.rstrip() for line in re.split(r"\r\n|\r|\n", text)]


def _stream_lines(log):
    for raw in log:
        if raw.endswith("\r"):
            raw = raw[:-1]
        raw = ANSI_RE.sub("", raw).replace("\x08", "") if ("\x1b" in raw or "\x08" in raw) else raw
        if "\r" in raw:
            yield from (part.rstrip() for part in raw.split("\r"))
        else:
            yield raw.rstrip()


@dataclass
class Measurement:
    """A throughput figure and how it was computed. Never built for an uncovered window."""

    throughput: float  # images per second over the window; always finite and > 0
    window: tuple[int, int]  # the window actually used (completed iterations, 1-based, exclusive start)
    window_requested: tuple[int, int]
    images_per_iter: int
    method: str  # how the figure was computed, in words a reader can check against the log
    error_bound: float  # relative error the log's rounding/resolution allows over `window` (0.001 = 0.1%)
    mean_step_time: float  # seconds per iteration over the window
    last_iter: int  # last completed iteration seen in the run measured
    #: optional extras a reader can check (records used, a timestamp cross-check, the run chosen)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window"] = list(self.window)
        d["window_requested"] = list(self.window_requested)
        return d


@dataclass
class Progress:
    """What a live display shows for a running job."""

    last_iter: int
    rate: float | None = None  # latest img/s the log supports, if any
    extra: dict[str, Any] = field(default_factory=dict)


def check_window(window: tuple[int, int]) -> tuple[int, int]:
    try:
        start, end = (int(w) for w in window)
    except (TypeError, ValueError):
        raise BadRequest(f"window must be two whole numbers START END, got {window!r}") from None
    if start < 0 or end <= start:
        raise BadRequest(f"window must satisfy 0 <= start < end, got {start}..{end}")
    return start, end


def check_images_per_iter(images_per_iter: Any) -> int:
    """Images per iteration must be a positive whole number: 0, negatives, NaN and 2.5 are refused."""
    ok = (isinstance(images_per_iter, int) and not isinstance(images_per_iter, bool)) or (
        isinstance(images_per_iter, float) and math.isfinite(images_per_iter) and images_per_iter.is_integer()
    )
    if not ok or images_per_iter <= 0:
        raise BadRequest(f"images per iteration must be a positive whole number, got {images_per_iter!r}")
    return int(images_per_iter)


def dedupe(fmt: str, items: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """Key -> value, dropping exact repeats (mpirun copies, a log read twice); conflicting repeats are an error."""
    out: dict[Any, Any] = {}
    for key, val in items:
        if key in out and out[key] != val:
            raise ParseError(
                f"{fmt} log has two different records for iteration {key}: {out[key]} and {val}; "
                "it probably holds more than one run (resumed or restarted) with nothing that marks "
                "where the second begins. Split the file and parse the run you want"
            )
        out[key] = val
    return out


def build_measurement(
    span: Span, window: tuple[int, int], images_per_iter: int, method: str, details: dict[str, Any] | None = None
) -> Measurement:
    """Turn a Span into a Measurement; the bound covers the printed-digit error of `elapsed`.

    If the true cost lies in [elapsed - err, elapsed + err], the throughput's relative error is at most
    err / (elapsed - err); `span.rel_err` adds any error already relative (per-block rate rounding).
    Every number it returns is finite and positive: anything else is a ParseError, never a figure.
    """
    n = span.end - span.start
    where = f"over iterations {span.start + 1}..{span.end}"
    if n <= 0 or not (math.isfinite(span.elapsed) and span.elapsed > 0):
        raise ParseError(
            f"non-positive or non-finite elapsed time {span.elapsed!r} {where}; "
            "the log is inconsistent (two runs in one file?)"
        )
    if not (math.isfinite(span.abs_err) and 0 <= span.abs_err < span.elapsed):
        raise ParseError(
            f"the log's rounding ({span.abs_err!r} s) is as large as the time it measures "
            f"({span.elapsed!r} s) {where}: no figure can be given; choose a longer window"
        )
    images = span.images if span.images is not None else images_per_iter * n
    throughput = images / span.elapsed
    bound = span.abs_err / (span.elapsed - span.abs_err) + span.rel_err + 1e-12  # + float arithmetic
    step = span.elapsed / n
    if not all(math.isfinite(x) and x > 0 for x in (throughput, bound, step)):
        raise ParseError(
            f"the log gives no usable figure {where}: throughput {throughput!r}, mean step time "
            f"{step!r}, error bound {bound!r}"
        )
    measured = (span.start, span.end)
    if measured != tuple(window):
        method += (
            f". MEASURED WINDOW {measured[0]}..{measured[1]} differs from the requested {window[0]}..{window[1]}"
            f" (shifted by {measured[0] - window[0]:+d} at the start, {measured[1] - window[1]:+d} at the end): "
            "the log's records fall off the requested iterations, so the window runs between the nearest "
            "record boundaries at or after each requested edge"
        )
    extra = {"records_used": span.records, "elapsed_s": span.elapsed, **span.details, **(details or {})}
    if measured != tuple(window):
        extra["window_shift"] = [measured[0] - window[0], measured[1] - window[1]]
    return Measurement(
        throughput=throughput,
        window=measured,
        window_requested=tuple(window),
        images_per_iter=images_per_iter,
        method=method,
        error_bound=bound,
        mean_step_time=step,
        last_iter=span.last_iter,
        details=extra,
    )


class LogParser:
    """The template.  A format declares ``class P(LogParser, name=..., what=..., scan=...)`` and implements
    `span`, `method` and `progress_of`."""

    name: ClassVar[str] = ""
    #: what the format's record lines look like, for the message when a file has none
    what: ClassVar[str] = "records"
    #: the format's records, grouped by training run (see runs.py), in log order: text -> list[Run]
    scan: ClassVar[Callable[[str], list[Run]]]
    #: the smallest window start any log of this format can cover: the first record boundary of a run
    #: that starts at iteration 0 (a resumed run's is later).  The plan refuses a window.start below it.
    earliest_start: ClassVar[int] = 0

    def __init_subclass__(
        cls,
        name: str = "",
        what: str = "",
        scan: Callable[[str], list[Run]] | None = None,
        earliest_start: int | None = None,
        **kw: Any,
    ) -> None:
        super().__init_subclass__(**kw)
        cls.name = name or cls.name
        cls.what = what or cls.what
        if earliest_start is not None:
            cls.earliest_start = earliest_start
        if scan is not None:
            cls.scan = staticmethod(scan)

    def measure(
        self,
        text: str,
        window: tuple[int, int],
        images_per_iter: int,
        *,
        run: int | None = None,
        not_before: dt.datetime | None = None,
    ) -> Measurement:
        """The figure over `window` from one run of the log `text`.

        `run`: which run of a file that holds several (1-based, -1 for the last); without it such a file
        raises SeveralRuns.  `not_before`: the run's start (timezone-aware); a record stamped before it
        raises StaleLog (formats whose records carry no stamps ignore it).
        """
        window = check_window(window)
        images_per_iter = check_images_per_iter(images_per_iter)
        not_before = check_not_before(not_before)
        runs = self.runs(text)
        if not any(r.records for r in runs):
            raise UnknownFormat(
                f"no {self.what} found: this does not look like a {self.name} log "
                "(wrong file, wrong --impl/--format, or the run died before its first log line)"
            )
        if not_before is not None:
            check_fresh(self.name, [w for r in runs for w in r.walls], not_before)
        index, chosen = pick_run(self.name, runs, run)
        if not chosen.records:
            raise WindowNotCovered(
                self.name,
                window,
                None,
                f"run {index} of {len(runs)}, {chosen.describe()}, "
                "has no records: it stopped before its first log line",
            )
        span = self.span(chosen, window, images_per_iter)
        span.details.update(timestamp_check(chosen.walls, span.start, span.end))
        span.details.update(window_wall(chosen.walls, span.start, span.end, not_before))  # for telemetry
        method = self.method(chosen, span, images_per_iter)
        details = None
        if len(runs) > 1:
            method = f"run {index} of the {len(runs)} in the file ({chosen.describe()}): {method}"
            details = {"run": index, "runs_in_file": len(runs)}
        return build_measurement(span, window, images_per_iter, method, details)

    def runs(self, text: str) -> list[Run]:
        """The format's records, grouped by training run (see runs.py), in log order."""
        return type(self).scan(text)

    def records(self, text: str) -> list:
        """Every record of every run, in log order."""
        return [r for run in self.runs(text) for r in run.records]

    def span(self, run: Run, window: tuple[int, int], images_per_iter: int) -> Span:
        """The stretch of `run` that measures `window`, and its cost (span_from_cumulative / _intervals)."""
        raise NotImplementedError

    def method(self, run: Run, span: Span, images_per_iter: int) -> str:
        """How the figure was computed, in words a reader can check against the log."""
        raise NotImplementedError

    def progress(self, text: str) -> Progress | None:
        """Last completed iteration (1-based) and latest rate, or None when nothing is parsable yet."""
        try:
            runs = [r for r in self.runs(text) if r.records]
        except ParseError:
            return None
        return self.progress_of(runs[-1]) if runs else None

    def progress_of(self, run: Run) -> Progress | None:
        """Progress as the last run's records show it (the run has at least one record)."""
        return None

    def data_kind(self, text: str) -> str | None:
        """What the run trained on. The seed implementations only train on COCO."""
        return "coco"
