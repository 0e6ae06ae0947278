"""detectron2 (v0.1.2 as pinned; also v0.1 and v0.3+ line variants): ``output/log.txt`` or coloured stdout.

Source semantics, detectron2 v0.1.2 (60205f8): ``PeriodicWriter(period=20)`` (engine/defaults.py L361,
engine/hooks.py L165) runs ``CommonMetricPrinter.write`` (utils/events.py L174-229) after 0-based
iterations 19, 39, ...; its ``time: {:.4f}`` (L187, L224) is the *global* running mean
(fvcore ``HistoryBuffer.global_avg``) of the step times ``IterationTimer`` records
(engine/hooks.py L133-138) once ``iter - start_iter + 1 >= 3``.  ``EventStorage(start_iter)`` is new in
every ``train()`` call (engine/train_loop.py L122-127, which logs ``Starting training from iteration
N`` first), so the mean's origin is N + 2 completed iterations: at a line ``iter: k`` the run has
completed c = k+1 iterations and ``time * (c - N - 2)`` is the total timed seconds of iterations N+3..c.
A window costs the difference of two such totals; only the two edge values' 4-decimal rounding matters.

The timer covers data loading, forward, backward, optimizer step and the metric gather; it excludes
the other hooks' ``after_step`` (LR scheduler, checkpointer, writer).  Stamps ``[%m/%d %H:%M:%S`` are
local time without a year (utils/logger.py L61, L70).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import (
    LogParser,
    ParseError,
    Progress,
    Run,
    RunBuilder,
    Stamp,
    clean_lines,
    dedupe,
    span_from_cumulative,
    yearless,
)

# "[05/14 14:23:58] d2.utils.events INFO:  eta: ..." (log.txt) or "[05/14 14:23:58 d2.utils.events]:  eta: ..."
# (stdout); rank>0 files keep the long logger name.
PREFIX_RE = re.compile(
    r"\[(?P<mo>\d{2})/(?P<d>\d{2}) (?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2})"
    r"(?:\] (?:d2|detectron2)\.utils\.events INFO:| (?:d2|detectron2)\.utils\.events\]:)"
    r"\s*eta: "
)
ITER_RE = re.compile(r"\biter: (?P<iter>\d+)\s")
TIME_RE = re.compile(r"(?<![\w])time: (?P<time>\d+\.\d+)")
DATA_RE = re.compile(r"\bdata_time: (?P<dt>\d+\.\d+)")
START_RE = re.compile(r"Starting training from iteration (\d+)")
PERIOD = 20  # PeriodicWriter(period=20)
WARMUP = 2  # IterationTimer(warmup_iter=3): the first two iterations of a run are not timed


@dataclass(frozen=True)
class D2Record:
    iter: int  # as printed: 0-based index of the iteration just finished
    time: float | None  # global mean step time (None before the first timed iterations)
    time_digits: int
    data_time: float | None
    wall: Stamp  # the line's [MM/DD HH:MM:SS], local time, no year


def _record(line: str) -> D2Record | None:
    m = PREFIX_RE.search(line)
    if not m:
        return None
    body = line[m.end() :]
    mi = ITER_RE.search(body)
    if not mi:
        return None
    mt, md = TIME_RE.search(body), DATA_RE.search(body)
    parts = [int(m[k]) for k in ("mo", "d", "H", "M", "S")]
    printed = f"{m['mo']}/{m['d']} {m['H']}:{m['M']}:{m['S']}"
    return D2Record(
        int(mi["iter"]),
        float(mt["time"]) if mt else None,
        len(mt["time"].split(".")[1]) if mt else 0,
        float(md["dt"]) if md else None,
        yearless(printed, *parts),
    )


def scan(text: str) -> list[Run]:
    """The metric lines grouped by run: a run begins at each ``Starting training from iteration N``."""
    b = RunBuilder()
    for no, line in enumerate(clean_lines(text), 1):
        ms = START_RE.search(line)
        if ms:
            b.mark(no, ms.group(0), start_iter=int(ms.group(1)))
            continue
        r = _record(line)
        if r is not None:
            b.add(no, r, key=r.iter, iteration=r.iter + 1, wall=r.wall)
    return b.runs


# earliest_start: the running mean's origin in a run from iteration 0 (its first two iterations are untimed)
class Detectron2Parser(
    LogParser, name="detectron2", scan=scan, earliest_start=WARMUP, what="'d2.utils.events ... eta: ... iter:' lines"
):
    def _origin(self, run: Run) -> int:
        """Completed iterations at which the run's running mean starts (its value there is 0)."""
        if "start_iter" in run.info:
            return run.info["start_iter"] + WARMUP
        first = min(r.iter for r in run.records) + 1
        if first <= PERIOD:
            return WARMUP
        raise ParseError(
            f"detectron2 log's first record is at completed iteration {first}, past the first logging "
            f"period ({PERIOD}), and it has no 'Starting training from iteration N' line: the run may "
            "have resumed, and the origin of its running mean (N + 2) is unknown. Parse the run's whole "
            "log (output/log.txt, or the captured stdout from the start)"
        )

    def span(self, run, window, images_per_iter):
        origin = self._origin(run)
        timed = dedupe(self.name, [(r.iter, (r.time, r.time_digits)) for r in run.records if r.time is not None])
        points = {origin: (0.0, 0.0)}
        for k, (t, digits) in timed.items():
            n = k + 1 - origin
            if n > 0:
                points[k + 1] = (t * n, 0.5 * 10.0**-digits * n)
        last = max(r.iter for r in run.records) + 1
        return span_from_cumulative(self.name, points, window, last, origin)

    def method(self, run, span, images_per_iter):
        origin = self._origin(run)
        a, b = span.start, span.end
        na, nb = a - origin, b - origin
        return (
            f"difference of detectron2's running global mean step time (fvcore global_avg over iterations "
            f"{origin + 1}..c): (time[iter {b - 1}] x {nb} - "
            + (f"time[iter {a - 1}] x {na}" if na else "0")
            + f") / {b - a} = mean over completed iterations {a + 1}..{b}; throughput = {images_per_iter} "
            "images/iter / that; excludes the other hooks' after_step (writer, LR, checkpoint)"
        )

    def progress_of(self, run):
        r = run.records[-1]
        return Progress(last_iter=r.iter + 1, rate=None, extra={"global_mean_step_time": r.time})
