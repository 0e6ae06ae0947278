"""detectron2 (v0.1.2 as pinned; also v0.1 and v0.3+ line variants): ``output/log.txt`` or coloured stdout.

Source semantics (reference log-formats.md section 1): every 20 iterations (0-based ``iter: 19, 39,
...``) ``CommonMetricPrinter`` prints ``time: {:.4f}``, the *global* running mean of the per-iteration
step time over 0-based iterations 2..k (``IterationTimer(warmup_iter=3)``, fvcore ``global_avg``).
So at a line ``iter: k`` the run has completed c = k+1 iterations and timed n = c-2 of them, and
``time * (c-2)`` is the total timed seconds of completed iterations 3..c.  A window costs the
difference of two such totals; only the two edge values' 4-decimal rounding matters.

The timer covers data loading, forward, backward, optimizer step and the metric gather; it excludes
the other hooks' ``after_step`` (LR scheduler, checkpointer, writer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import (LogParser, Progress, YearlessClock, build_measurement, check_window, clean_lines, dedupe,
                   require_records, span_from_cumulative, timestamp_check)

# "[05/14 14:23:58] d2.utils.events INFO:  eta: ..." (log.txt) or "[05/14 14:23:58 d2.utils.events]:  eta: ..."
# (stdout); rank>0 files keep the long logger name.
PREFIX_RE = re.compile(r"\[(?P<mo>\d{2})/(?P<d>\d{2}) (?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2})"
                       r"(?:\] (?:d2|detectron2)\.utils\.events INFO:| (?:d2|detectron2)\.utils\.events\]:)"
                       r"\s*eta: ")
ITER_RE = re.compile(r"\biter: (?P<iter>\d+)\s")
TIME_RE = re.compile(r"(?<![\w])time: (?P<time>\d+\.\d+)")
DATA_RE = re.compile(r"\bdata_time: (?P<dt>\d+\.\d+)")
START_RE = re.compile(r"Starting training from iteration (\d+)")


@dataclass(frozen=True)
class D2Record:
    iter: int  # as printed: 0-based index of the iteration just finished
    time: float | None  # global mean step time (None before the first timed iterations)
    time_digits: int
    data_time: float | None
    stamp: float  # seconds on a yearless monotone axis (1 s resolution)


def records(text: str) -> tuple[list[D2Record], int]:
    """All metric lines, in log order, and the start iteration (0 unless the log says it resumed)."""
    clock = YearlessClock()
    out: list[D2Record] = []
    start_iter = 0
    for line in clean_lines(text):
        ms = START_RE.search(line)
        if ms:
            start_iter = int(ms.group(1))
        m = PREFIX_RE.search(line)
        if not m:
            continue
        body = line[m.end():]
        mi = ITER_RE.search(body)
        if not mi:
            continue
        mt = TIME_RE.search(body)
        md = DATA_RE.search(body)
        stamp = clock(int(m["mo"]), int(m["d"]), int(m["H"]), int(m["M"]), int(m["S"]))
        out.append(D2Record(int(mi["iter"]), float(mt["time"]) if mt else None,
                            len(mt["time"].split(".")[1]) if mt else 0,
                            float(md["dt"]) if md else None, stamp))
    return out, start_iter


class Detectron2Parser(LogParser):
    name = "detectron2"
    description = "detectron2 CommonMetricPrinter lines (log.txt or coloured stdout); time = global running mean"

    def measure(self, text, window, images_per_iter):
        window = check_window(window)
        recs, start_iter = records(text)
        require_records(self.name, recs, "'d2.utils.events ... eta: ... iter:' lines")
        timed = dedupe(self.name, [(r.iter, (r.time, r.time_digits)) for r in recs if r.time is not None])
        stamps = {r.iter + 1: r.stamp for r in recs}
        last = max(r.iter for r in recs) + 1
        origin = start_iter + 2  # IterationTimer(warmup_iter=3) times from the 3rd iteration of this run on
        points = {origin: (0.0, 0.0)}
        for k, (t, digits) in timed.items():
            c = k + 1
            n = c - origin
            if n > 0:
                points[c] = (t * n, 0.5 * 10.0 ** -digits * n)
        span = span_from_cumulative(self.name, points, window, last, origin)
        a, b = span.start, span.end
        na, nb = a - origin, b - origin
        method = (f"difference of detectron2's running global mean step time (fvcore global_avg over iterations "
                  f"{origin + 1}..c): (time[iter {b - 1}] x {nb} - "
                  + (f"time[iter {a - 1}] x {na}" if na else "0")
                  + f") / {b - a} = mean over completed iterations {a + 1}..{b}; throughput = {images_per_iter} "
                  "images/iter / that; excludes the other hooks' after_step (writer, LR, checkpoint)")
        return build_measurement(span, window, images_per_iter, method, last,
                                 details=timestamp_check(stamps, span, 1.0))

    def progress(self, text):
        recs, _ = records(text)
        if not recs:
            return None
        r = recs[-1]
        return Progress(last_iter=r.iter + 1, rate=None, extra={"global_mean_step_time": r.time})
