"""The window arithmetic every format shares, and the rule for where a window's edges may fall.

Every format reduces to one of two shapes.

Cumulative: at completed iteration c the log gives (directly, or as a running mean times its count)
S(c), the total timed seconds since a fixed origin where S = 0, so iterations a+1..b cost
S(b) - S(a) and only the two edge records' rounding matters.  Every record, and the origin, is a
boundary: any two of them delimit an exactly measurable stretch.

Intervals: the log gives the duration of consecutive, non-overlapping blocks of iterations (a mean over
the last 50, a rate over the last 10 batches, an epoch's total), so a stretch costs the sum of the
blocks that tile it and every block's rounding adds up.  The boundaries are the blocks' edges, but a
stretch must be a chain of logged blocks: it starts where a block starts and ends where one ends.  An
edge where a block ends and none starts (mmcv's unlogged epoch tail, SimpleDet's Speedometer restarting
each epoch) has a hole after it.

The edge rule (both shapes).  Windows count completed iterations: (s, e) means iterations s+1..e.
When the log has no boundary exactly at s or e, the measured window is (a, b] with

* a = the nearest boundary at or after s: the figure never includes an iteration before the requested
  start (those are the warm-up side, and the old "widen to cover" rule let them in: +0.4% on
  Detectron's 81..501 for a 100..500 request, -7.7% on a real SimpleDet log);
* b = the nearest boundary at or after e (for intervals: the end of the block that contains e, walking
  the chain from a), so the window keeps its requested length up to the record spacing.

The log must have a boundary at or before s (else it starts after the window: WindowNotCovered) and one
at or after e (else it stops before the window ends: WindowNotCovered).  Each edge moves by less than
the log's record period; a larger move means records are missing there, and is refused rather than
silently measuring a different stretch.  For intervals, a hole between a and b is refused too (naming
the iterations no record times), and a window that lies inside a single block cannot be timed at all.
The Measurement reports both windows and says in its method when they differ.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .errors import ParseError, WindowNotCovered


@dataclass
class Span:
    """The stretch of iterations a figure is computed over and what it cost."""

    start: int  # completed iterations, exclusive
    end: int  # inclusive
    elapsed: float  # seconds the implementation timed for iterations start+1..end
    abs_err: float  # worst-case absolute error of `elapsed` from the printed digits
    records: int  # log records used
    last_iter: int = 0  # last completed iteration seen in the run
    rel_err: float = 0.0  # error already relative (per-block rate rounding), added to the bound
    images: int | None = None  # images the log itself counts over the stretch (None: images/iter x iterations)
    details: dict[str, Any] = field(default_factory=dict)


def _period(values: list[int]) -> int | None:
    """The commonest gap between consecutive boundaries: the log's record period."""
    gaps = Counter(b - a for a, b in zip(values, values[1:]) if b > a)
    return gaps.most_common(1)[0][0] if gaps else None


def _check_shift(fmt: str, window: tuple[int, int], a: int, b: int, period: int | None) -> None:
    s, e = window
    for side, req, got in (("start", s, a), ("end", e, b)):
        if period is not None and got - req >= period:
            raise ParseError(
                f"{fmt} log has no record near the window's {side} ({req}): the nearest boundary at or "
                f"after it is iteration {got}, {got - req} iterations on, and the log records every "
                f"{period}; lines are missing there, so the window {s}..{e} cannot be measured from "
                "this log (choose a window its records cover)"
            )


def span_from_cumulative(
    fmt: str,
    points: dict[int, tuple[float, float]],
    window: tuple[int, int],
    last_iter: int | None,
    origin: int | None = None,
) -> Span:
    """Window cost from cumulative totals `points[c] = (S(c), abs error of S(c))` (include the origin).

    Edges as the module docstring says: the nearest boundaries at or after the requested start and end.
    """
    s, e = window
    cs = sorted(points)
    if not cs or cs[0] > s:
        first = cs[0] if cs else None
        detail = (
            f"the run's timing starts after iteration {origin}"
            if origin is not None and first == origin
            else f"first usable record is at iteration {first}"
        )
        raise WindowNotCovered(fmt, window, last_iter, detail)
    a = next((c for c in cs if c >= s), None)
    b = next((c for c in cs if c >= e), None)
    if a is None or b is None:
        raise WindowNotCovered(fmt, window, last_iter)
    if a >= e:
        below = max(c for c in cs if c < s) if any(c < s for c in cs) else None
        raise ParseError(
            f"{fmt} window {s}..{e} holds no record boundary (records at {below} and {a}): it is "
            "shorter than the log's record spacing; widen it"
        )
    _check_shift(fmt, window, a, b, _period(cs))
    (sa, ea), (sb, eb) = points[a], points[b]
    return Span(a, b, sb - sa, ea + eb, 2, last_iter=last_iter or 0)


def span_from_intervals(
    fmt: str, intervals: list[tuple[int, int, float, float]], window: tuple[int, int], last_iter: int | None
) -> Span:
    """Window cost from blocks `(a, b, seconds, abs error)` covering completed iterations a+1..b.

    Starts at the nearest block edge at or after `start` and walks consecutive blocks until one ends at
    or after `end`.  A hole in the chain (a block the log never printed) is an error, not a guess, and
    so is a block whose time is not a finite number >= 0.
    """
    s, e = window
    by_start: dict[int, tuple[int, int, float, float]] = {}
    for blk in intervals:
        by_start.setdefault(blk[0], blk)
    if not by_start:
        raise WindowNotCovered(fmt, window, last_iter, "no timing records")
    edges = sorted(set(by_start) | {blk[1] for blk in by_start.values()})
    if edges[0] > s:
        raise WindowNotCovered(fmt, window, last_iter, f"the first timed block starts after iteration {edges[0]}")
    a = next((x for x in edges if x >= s), None)
    if a is None:
        raise WindowNotCovered(fmt, window, last_iter)
    if a >= e:
        inside = next(((x, y) for x, y, _, _ in by_start.values() if x < s and y >= e), None)
        where = f"inside the one record of iterations {inside[0] + 1}..{inside[1]}" if inside else "between records"
        raise ParseError(
            f"{fmt} window {s}..{e} lies {where}: no block of the log starts and ends within it, so "
            "it cannot be timed; widen it"
        )
    cur, elapsed, err, n = a, 0.0, 0.0, 0
    while cur < e:
        blk = by_start.get(cur)
        if blk is None:
            if cur >= edges[-1]:
                raise WindowNotCovered(fmt, window, last_iter)
            nxt = min((x for x in by_start if x > cur), default=None)
            raise ParseError(
                f"{fmt} log has no timing record for iterations {cur + 1}..{nxt} inside the "
                f"window {s}..{e} (lines missing or the window spans an epoch boundary); "
                "choose a window inside one stretch of records"
            )
        if not (math.isfinite(blk[2]) and blk[2] >= 0):  # 0 is a rounded value (Keras' "0s"), not a corruption
            raise ParseError(
                f"{fmt} log's record for iterations {blk[0] + 1}..{blk[1]} gives a time of {blk[2]!r} "
                "seconds, which no run can take; the line is corrupt or the rate printed is 0"
            )
        elapsed += blk[2]
        err += blk[3]
        n += 1
        cur = blk[1]
    _check_shift(fmt, window, a, cur, _period(edges))
    return Span(a, cur, elapsed, err, n, last_iter=last_iter or 0)
