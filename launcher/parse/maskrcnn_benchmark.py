"""maskrcnn-benchmark 0ce8f6f (and forks with the same trainer, e.g. FCOS): ``./log.txt`` or stdout.

Source semantics (reference section 3): every 20 iterations (global, **1-based** ``iter: 20, 40, ...``)
the trainer prints ``time: MED (AVG)`` with ``{:.4f}``: the median of the last 20 step times and the
global mean since iteration 1 (``SmoothedValue.global_avg``).  ``AVG * c`` is the total wall time of
iterations 1..c, so a window costs ``AVG[end]*end - AVG[start]*start`` (0 at c=0).  The step time is
the full wall-clock interval between consecutive optimizer steps (data wait and logging included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import (LogParser, Progress, build_measurement, check_window, clean_lines, dedupe, logging_stamp,
                   require_records,
                   span_from_cumulative, timestamp_check)

LINE_RE = re.compile(r"\beta: .*?\biter: (?P<iter>\d+)\s.*?(?<![\w])time: (?P<med>\d+\.\d+) \((?P<avg>\d+\.\d+)\)")


@dataclass(frozen=True)
class MrbRecord:
    iter: int  # completed iterations (1-based)
    median: float
    avg: float  # global mean step time over iterations 1..iter
    digits: int
    stamp: float | None  # unix-like seconds from the line's own timestamp (ms), if it has one


def records(text: str) -> list[MrbRecord]:
    out = []
    for line in clean_lines(text):
        m = LINE_RE.search(line)
        if not m:
            continue
        stamp = logging_stamp(line[:m.start()])
        out.append(MrbRecord(int(m["iter"]), float(m["med"]), float(m["avg"]), len(m["avg"].split(".")[1]), stamp))
    return out


class MaskrcnnBenchmarkParser(LogParser):
    name = "maskrcnn_benchmark"
    description = "maskrcnn-benchmark trainer lines; time: median-of-20 (global mean since iteration 1)"

    def measure(self, text, window, images_per_iter):
        window = check_window(window)
        recs = records(text)
        require_records(self.name, recs, "'eta: ... iter: N ... time: M (A)' trainer lines")
        by_iter = dedupe(self.name, [(r.iter, (r.avg, r.digits)) for r in recs])
        last = max(by_iter)
        points = {0: (0.0, 0.0)}
        for c, (avg, digits) in by_iter.items():
            points[c] = (avg * c, 0.5 * 10.0 ** -digits * c)
        span = span_from_cumulative(self.name, points, window, last, 0)
        a, b = span.start, span.end
        method = (f"difference of maskrcnn-benchmark's global mean step time (the parenthesised value of 'time:', "
                  f"mean over iterations 1..c): (avg[{b}] x {b} - " + (f"avg[{a}] x {a}" if a else "0")
                  + f") / {b - a} = mean wall time per iteration over completed iterations {a + 1}..{b}; "
                  f"throughput = {images_per_iter} images/iter / that")
        stamps = {r.iter: r.stamp for r in recs if r.stamp is not None}
        return build_measurement(span, window, images_per_iter, method, last,
                                 details=timestamp_check(stamps, span, 0.001))

    def progress(self, text):
        recs = records(text)
        if not recs:
            return None
        r = recs[-1]
        return Progress(last_iter=r.iter, rate=None, extra={"median_step_time": r.median, "global_mean_step_time": r.avg})
