"""Wall-clock stamps printed on log lines: a monotone axis for cross-checks, and the stale-log check.

Implementations print local time (Python logging's ``asctime``, ``time.localtime``), several without a
year (detectron2 ``[05/08 18:44:23 ...]``, SimpleDet ``05-08 18:44:23``, tensorpack ``[0508 18:44:23 @...]``);
SimpleDet converts to Asia/Shanghai whatever the host's zone (utils/logger.py L6-19 at 9187a10).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .errors import BadRequest, StaleLog

#: SimpleDet's logging converter (utils/logger.py L8-11 at 9187a10); China has kept UTC+8 without DST since 1991
SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

_SECS_PER_DAY = 86400


@dataclass(frozen=True)
class Stamp:
    """A wall-clock reading as a log line prints it."""

    printed: str  # the text as printed, for messages
    month: int = 1
    day: int = 1
    hour: int = 0
    minute: int = 0
    second: int = 0
    micro: int = 0
    year: int | None = None  # None: the format prints no year
    tz: dt.tzinfo | None = None  # None: the local time of the machine that wrote (and reads) the log
    resolution: float = 1.0  # the printed value truncates the true time by less than this many seconds
    posix: float | None = None  # an absolute POSIX time instead of a calendar reading (the torchvision row)

    def instants(self, near: dt.datetime) -> list[dt.datetime]:
        """The aware datetimes this stamp can stand for, the year (if unprinted) chosen nearest to `near`.

        Two when the local clock went back (DST) and the reading is ambiguous, else one.  A yearless
        stamp takes the year that puts it closest to `near` (the run's start), so a run that crosses
        New Year reads 01/01 as the next year, and an old log from days or weeks before reads as old.
        """
        if self.posix is not None:
            return [dt.datetime.fromtimestamp(self.posix, dt.timezone.utc)]
        local_near = near.astimezone(self.tz) if self.tz else near.astimezone()
        years = [self.year] if self.year is not None else [local_near.year + k for k in (-1, 0, 1)]
        best: list[dt.datetime] = []
        for y in years:
            try:
                naive = dt.datetime(y, self.month, self.day, self.hour, self.minute, self.second, self.micro)
            except ValueError:  # 02/29 outside a leap year
                continue
            cands = [
                naive.replace(tzinfo=self.tz, fold=f) if self.tz else naive.replace(fold=f).astimezone() for f in (0, 1)
            ]
            if not best or abs(cands[0] - near) < abs(best[0] - near):
                best = cands
        return sorted(set(best))


def check_fresh(fmt: str, walls: list[tuple[int | None, Stamp]], not_before: dt.datetime) -> None:
    """Raise StaleLog if any stamped record of the file was written before `not_before` (the run's start).

    A record counts as older only when every reading of its stamp, plus the stamp's resolution (the
    printed value is truncated), lies at or before `not_before`.
    """
    stale, first = 0, None
    for it, stamp in walls:
        inst = stamp.instants(not_before)
        if inst and inst[-1] + dt.timedelta(seconds=stamp.resolution) <= not_before:
            stale += 1
            if first is None:
                first = (it, stamp, inst[-1])
    if first is not None:
        it, stamp, when = first
        raise StaleLog(fmt, it, stamp.printed, when, not_before, stale, len(walls))


def check_not_before(not_before: dt.datetime | None) -> dt.datetime | None:
    if not_before is None:
        return None
    if not isinstance(not_before, dt.datetime) or not_before.tzinfo is None or not_before.utcoffset() is None:
        raise BadRequest(f"not_before must be a timezone-aware datetime (the run's start), got {not_before!r}")
    return not_before


#: Python logging's default asctime, `2020-05-08 18:44:23,494` (mmcv, maskrcnn-benchmark)
LOGGING_STAMP_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}),(\d{3})")


def logging_wall(text: str) -> Stamp | None:
    """The first logging asctime in `text` as a Stamp (local time, 1 ms resolution)."""
    m = LOGGING_STAMP_RE.search(text)
    if not m:
        return None
    y, mo, d, hh, mm, ss, ms = (int(g) for g in m.groups())
    return Stamp(m.group(0), mo, d, hh, mm, ss, ms * 1000, year=y, resolution=0.001)


def logging_stamp(text: str) -> float | None:
    """Seconds (local-time epoch; only differences are used) of the first logging asctime in `text`."""
    w = logging_wall(text)
    if w is None:
        return None
    return dt.datetime(w.year, w.month, w.day, w.hour, w.minute, w.second).timestamp() + w.micro / 1e6


def yearless(printed: str, month: int, day: int, hh: int, mm: int, ss: int, tz: dt.tzinfo | None = None) -> Stamp:
    return Stamp(printed, month, day, hh, mm, ss, tz=tz, resolution=1.0)


def _seconds(walls: list[tuple[int | None, Stamp]]) -> dict[int, tuple[float, float]]:
    """Completed iteration -> (seconds on a monotone axis, resolution) for the stamped records of one run."""
    clock, out = YearlessClock(), {}
    for it, st in walls:
        if st.posix is not None:
            t = st.posix
        elif st.year is None:
            t = clock(st.month, st.day, st.hour, st.minute, st.second)
        else:
            t = dt.datetime(st.year, st.month, st.day, st.hour, st.minute, st.second).timestamp() + st.micro / 1e6
        if it is not None:
            out.setdefault(it, (t, st.resolution))
    return out


def timestamp_check(walls: list[tuple[int | None, Stamp]], start: int, end: int) -> dict[str, float]:
    """Mean step time from the log's own wall-clock stamps at a span's edges, as an independent check.

    It includes whatever the implementation's own timer leaves out (logging, hooks, epoch-end callbacks),
    and its resolution is the stamps' (1 s for most), so it confirms a figure's magnitude, not its digits."""
    secs = _seconds(walls)
    if start in secs and end in secs:
        return {
            "timestamp_step_time": (secs[end][0] - secs[start][0]) / (end - start),
            "timestamp_resolution_s": secs[end][1],
        }
    return {}


def window_wall(
    walls: list[tuple[int | None, Stamp]], start: int, end: int, near: dt.datetime | None = None
) -> dict[str, float]:
    """When the window ran, as POSIX seconds: the stamps of the records at its edges (completed iterations
    `start` and `end`), read as the aware instants they stand for (a yearless stamp takes the year nearest
    `near`, the run's start; default now). Empty when either edge record carries no stamp. Telemetry
    (launcher/node/telemetry.py) reduces its samples over this span."""
    near = near or dt.datetime.now(dt.timezone.utc)
    at: dict[int, Stamp] = {}
    for it, st in walls:
        if it is not None:
            at.setdefault(it, st)
    if start not in at or end not in at:
        return {}
    try:
        a, b = at[start].instants(near), at[end].instants(near)
    except (OverflowError, ValueError, OSError):
        return {}
    if not a or not b:
        return {}
    t0, t1 = a[0].timestamp(), b[-1].timestamp()
    if not t1 > t0:
        return {}
    return {
        "window_wall_start": t0,
        "window_wall_end": t1,
        "window_wall_resolution_s": max(at[start].resolution, at[end].resolution),
    }


class YearlessClock:
    """Seconds on a monotone axis from timestamps that print no year (month/day/time only).

    Dates are placed in a leap year, so 02/29 parses; when a stamp goes backwards by more than a day
    the year rolled over (12/31 -> 01/01) and 366 days are added.  Only differences are meaningful.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._prev: float | None = None

    def __call__(self, month: int, day: int, hh: int, mm: int, ss: int) -> float:
        base = dt.datetime(2000, month, day, hh, mm, ss)
        t = (base - dt.datetime(2000, 1, 1)).total_seconds() + self._offset
        if self._prev is not None and t < self._prev - _SECS_PER_DAY:
            self._offset += 366 * _SECS_PER_DAY
            t += 366 * _SECS_PER_DAY
        self._prev = t
        return t
