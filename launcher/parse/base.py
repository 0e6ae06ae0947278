"""The one small interface every log parser implements.

A parser turns an implementation's own log into per-iteration timing records and computes the
average throughput over a window of iterations *exactly*: from what the implementation logs it
recovers the true mean step time over the window (a difference of running means weighted by their
counts, a harmonic mean of per-interval rates over equal-work intervals, a sum of per-epoch
times), never an average of whatever numbers appear.

Windows count completed iterations, 1-based, the way the detectron2 page says "iterations 100-500":
``window=(100, 500)`` is the 400 iterations after the 100th, up to and including the 500th.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def clean_lines(text: str) -> list[str]:
    """Split a captured log into lines: ANSI colours stripped, `\\r` and `\\b` progress redraws split."""
    text = ANSI_RE.sub("", text).replace("\x08", "")
    return [line.rstrip() for line in re.split(r"\r\n|\r|\n", text)]


class ParseError(ValueError):
    """A log that cannot give a figure."""


class UnknownFormat(ParseError):
    """Nothing in the log looks like the expected format."""


class WindowNotCovered(ParseError):
    """The log stops (or starts) before the window does: a run killed, still warming up, or the wrong file."""

    def __init__(self, fmt: str, window: tuple[int, int], last_iter: int | None, detail: str = ""):
        self.fmt, self.window, self.last_iter = fmt, tuple(window), last_iter
        seen = "no iteration" if last_iter is None else f"iteration {last_iter}"
        msg = (f"{fmt} log does not cover the window: it needs completed iterations "
               f"{window[0]}..{window[1]} and the last one seen is {seen}")
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


@dataclass
class Measurement:
    """A throughput figure and how it was computed. Never built for an uncovered window."""

    throughput: float  # images per second over the window
    window: tuple[int, int]  # the window actually used (completed iterations, 1-based, exclusive start)
    window_requested: tuple[int, int]
    images_per_iter: int
    method: str  # how the figure was computed, in words a reader can check against the log
    error_bound: float  # relative error the log's rounding/resolution allows (0.001 = 0.1%)
    mean_step_time: float  # seconds per iteration over the window
    last_iter: int  # last completed iteration seen in the log
    #: optional extras a reader can check (records used, a timestamp cross-check); never needed for the figure
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


class LogParser:
    """Base class: subclasses set `name` and implement `measure` (and usually `progress`)."""

    name: ClassVar[str] = ""
    #: file name patterns this parser reads when the row's config names no log file
    description: ClassVar[str] = ""

    def measure(self, text: str, window: tuple[int, int], images_per_iter: int) -> Measurement:
        raise NotImplementedError

    def progress(self, text: str) -> Progress | None:
        """Last completed iteration (1-based) and latest rate, or None when nothing is parsable yet."""
        return None

    def data_kind(self, text: str) -> str | None:
        """What the run trained on. The seed implementations only train on COCO."""
        return "coco"


#: Python logging's default asctime, `2020-05-08 18:44:23,494` (mmcv, maskrcnn-benchmark)
LOGGING_STAMP_RE = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3})")


def logging_stamp(text: str) -> float | None:
    """Seconds (local-time epoch; only differences are used) of the first logging asctime in `text`."""
    import datetime as dt

    m = LOGGING_STAMP_RE.search(text)
    if not m:
        return None
    return dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000


def check_window(window: tuple[int, int]) -> tuple[int, int]:
    start, end = int(window[0]), int(window[1])
    if start < 0 or end <= start:
        raise ValueError(f"window must satisfy 0 <= start < end, got {start}..{end}")
    return start, end


# ------------------------------------------------------------------ shared arithmetic
#
# Every format reduces to one of two shapes.  Cumulative: at completed iteration c the log gives
# (directly or as running mean x count) S(c), the total timed seconds since a fixed origin, so the
# window costs S(end) - S(start) and only the two edge records' rounding matters.  Intervals: the
# log gives the duration of consecutive, non-overlapping blocks of iterations (a mean over the last
# 50, a rate over the last 10 batches, an epoch total), so the window costs the sum of the blocks
# that tile it and every block's rounding adds up.


@dataclass
class Span:
    """The stretch of iterations a figure is computed over and what it cost."""

    start: int  # completed iterations, exclusive
    end: int  # inclusive
    elapsed: float  # seconds the implementation timed for iterations start+1..end
    abs_err: float  # worst-case absolute error of `elapsed` from the printed digits
    records: int  # log records used


def span_from_cumulative(fmt: str, points: dict[int, tuple[float, float]], window: tuple[int, int],
                         last_iter: int | None, origin: int | None = None) -> Span:
    """Window cost from cumulative totals `points[c] = (S(c), abs error of S(c))`.

    Uses the nearest records that cover the window: the last one at or before `start`, the first one
    at or after `end`.  `origin` is the earliest iteration S is defined from (its value there is 0 by
    construction); a window starting before it cannot be measured from this log.
    """
    start, end = window
    before = [c for c in points if c <= start]
    after = [c for c in points if c >= end]
    if not before:
        first = min(points) if points else None
        detail = (f"the log's timing starts after iteration {origin}" if origin is not None
                  else f"first usable record is at iteration {first}")
        raise WindowNotCovered(fmt, window, last_iter, detail)
    if not after:
        raise WindowNotCovered(fmt, window, last_iter)
    a, b = max(before), min(after)
    (sa, ea), (sb, eb) = points[a], points[b]
    return Span(a, b, sb - sa, ea + eb, 2)


def span_from_intervals(fmt: str, intervals: list[tuple[int, int, float, float]], window: tuple[int, int],
                        last_iter: int | None) -> Span:
    """Window cost from blocks `(a, b, seconds, abs error)` covering completed iterations a+1..b.

    Chooses the latest block boundary at or before `start`, then walks consecutive blocks until one
    ends at or after `end`.  A hole in the chain (a block the log never printed) is an error, not a
    guess.
    """
    start, end = window
    by_start: dict[int, tuple[int, int, float, float]] = {}
    for blk in intervals:
        by_start.setdefault(blk[0], blk)
    if not by_start:
        raise WindowNotCovered(fmt, window, last_iter, "no timing records")
    cands = [a for a in by_start if a <= start]
    if not cands:
        raise WindowNotCovered(fmt, window, last_iter,
                               f"the first timed block starts after iteration {min(by_start)}")
    a = max(cands)
    cur, elapsed, err, n = a, 0.0, 0.0, 0
    while cur < end:
        blk = by_start.get(cur)
        if blk is None:
            ends = [b for (_, b, _, _) in by_start.values()]
            if cur >= max(ends):
                raise WindowNotCovered(fmt, window, last_iter)
            nxt = min((s for s in by_start if s > cur), default=None)
            raise ParseError(f"{fmt} log has no timing record for iterations {cur + 1}..{nxt} inside the "
                             f"window {start}..{end} (lines missing or the window spans an epoch boundary); "
                             "choose a window inside one stretch of records")
        elapsed += blk[2]
        err += blk[3]
        n += 1
        cur = blk[1]
    return Span(a, cur, elapsed, err, n)


def build_measurement(span: Span, window: tuple[int, int], images_per_iter: int, method: str,
                      last_iter: int, rel_err: float = 0.0, details: dict[str, Any] | None = None) -> Measurement:
    """Turn a Span into a Measurement; the bound covers the printed-digit error of `elapsed`.

    If the true cost lies in [elapsed - err, elapsed + err], the throughput's relative error is at most
    err / (elapsed - err); `rel_err` adds any error already relative (e.g. per-block rate rounding).
    """
    if span.elapsed <= 0:
        raise ParseError(f"non-positive elapsed time {span.elapsed!r} over iterations {span.start}..{span.end}; "
                         "the log is inconsistent (two runs in one file?)")
    n = span.end - span.start
    bound = span.abs_err / max(span.elapsed - span.abs_err, 1e-300) + rel_err
    bound += 1e-12  # float arithmetic
    return Measurement(
        throughput=images_per_iter * n / span.elapsed,
        window=(span.start, span.end),
        window_requested=tuple(window),
        images_per_iter=images_per_iter,
        method=method,
        error_bound=bound,
        mean_step_time=span.elapsed / n,
        last_iter=last_iter,
        details={"records_used": span.records, "elapsed_s": span.elapsed, **(details or {})},
    )


def require_records(fmt: str, records: list, what: str) -> None:
    if not records:
        raise UnknownFormat(f"no {what} found: this does not look like a {fmt} log "
                            "(wrong file, wrong --impl/--format, or the run died before its first log line)")


def dedupe(fmt: str, items: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """Key -> value, dropping exact repeats (mpirun copies, a log read twice); conflicting repeats are an error."""
    out: dict[Any, Any] = {}
    for key, val in items:
        if key in out and out[key] != val:
            raise ParseError(f"{fmt} log has two different records for iteration {key}: {out[key]} and {val}; "
                             "it probably holds more than one run (resumed or restarted). Split the file and "
                             "parse the run you want")
        out[key] = val
    return out


_SECS_PER_DAY = 86400


class YearlessClock:
    """Seconds on a monotone axis from timestamps that print no year (month/day/time only).

    Dates are placed in a leap year, so 02/29 parses; when a stamp goes backwards by more than a day
    the year rolled over (12/31 -> 01/01) and 366 days are added.  Only differences are meaningful.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._prev: float | None = None

    def __call__(self, month: int, day: int, hh: int, mm: int, ss: int) -> float:
        import datetime as _dt

        base = _dt.datetime(2000, month, day, hh, mm, ss)
        t = (base - _dt.datetime(2000, 1, 1)).total_seconds() + self._offset
        if self._prev is not None and t < self._prev - _SECS_PER_DAY:
            self._offset += 366 * _SECS_PER_DAY
            t += 366 * _SECS_PER_DAY
        self._prev = t
        return t


def timestamp_check(stamps: dict[int, float], span: Span, resolution: float) -> dict[str, Any]:
    """Mean step time from the log's own wall-clock stamps at the span's edges, as an independent check."""
    if span.start in stamps and span.end in stamps:
        dt = stamps[span.end] - stamps[span.start]
        n = span.end - span.start
        return {"timestamp_step_time": dt / n, "timestamp_resolution_s": resolution}
    return {}
