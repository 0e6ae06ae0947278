"""Detectron (Caffe2): ``json_stats: {...}`` lines that ``print()`` writes to stdout (no log file, no time stamp).

Source semantics (reference section 6): every 20 iterations (global, **0-based** ``"iter": 0, 20, 40,
...``, and the last) the ``"time"`` field is the iteration timer's ``average_time`` with 6 decimals:
the mean of (LR update + ``workspace.RunNet``) times since the timer was reset.  The reset happens
after iteration ``start_iter + 20`` (after that line is printed), so at a line with 0-based iter k >= 40
the mean covers 0-based iterations 21..k, i.e. completed iterations 22..c with c = k+1 and
n = c-21 of them.  ``time * (c-21)`` is therefore a cumulative total, and a window costs the
difference of two totals.  Both the quoted (``"time": "0.239992"``, since 2018-10) and unquoted
(``"time": 0.266505``) forms, and pretty-printed multi-line dumps, are read.

Detectron's field excludes the per-iteration stat fetch and logging, so its throughput is slightly
higher than wall-clock throughput (the reference estimates 1-3%, unmeasured).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .base import (LogParser, ParseError, Progress, build_measurement, check_window, clean_lines, dedupe,
                   require_records, span_from_cumulative)

START_RE = re.compile(r"json_stats: (\{.*)$")


@dataclass(frozen=True)
class DetectronRecord:
    iter: int  # 0-based index of the iteration just finished
    time: float
    digits: int
    stats: dict


def _digits(raw) -> int:
    s = str(raw)
    return len(s.split(".")[1]) if "." in s else 0


def _json_objects(text: str):
    """Each ``json_stats: {`` object, also when it spans several lines (a pretty-printed copy)."""
    lines = clean_lines(text)
    i = 0
    while i < len(lines):
        m = START_RE.search(lines[i])
        if not m:
            i += 1
            continue
        buf = m.group(1)
        j = i
        while True:
            try:
                yield json.loads(buf)
                break
            except json.JSONDecodeError:
                j += 1
                if j >= len(lines) or j - i > 60:
                    break
                buf += "\n" + lines[j]
        i = j + 1 if j > i else i + 1


def records(text: str) -> list[DetectronRecord]:
    out = []
    for d in _json_objects(text):
        if "iter" not in d or "time" not in d:
            continue
        out.append(DetectronRecord(int(d["iter"]), float(d["time"]), _digits(d["time"]), d))
    return out


class DetectronParser(LogParser):
    name = "detectron"
    description = "Detectron json_stats lines on stdout; time = mean since the reset after iteration 20"

    def measure(self, text, window, images_per_iter):
        window = check_window(window)
        recs = records(text)
        require_records(self.name, recs, "'json_stats: {...}' lines")
        by_iter = dedupe(self.name, [(r.iter, (r.time, r.digits)) for r in recs])
        last = max(by_iter) + 1
        first = min(by_iter)
        if first != 0:
            raise ParseError(f"detectron log starts at iteration {first}, not 0: the run was resumed (or the log is "
                             "a fragment), and Detectron's timer reset point (start_iter + 20) cannot be located. "
                             "Parse the log of a run that started at iteration 0")
        origin = 21  # reset after 0-based iteration 20 = after 21 completed iterations
        points = {origin: (0.0, 0.0)}
        for k, (t, digits) in by_iter.items():
            c = k + 1
            if k >= 40:
                points[c] = (t * (c - origin), 0.5 * 10.0 ** -digits * (c - origin))
        span = span_from_cumulative(self.name, points, window, last, origin)
        a, b = span.start, span.end
        method = (f"difference of Detectron's mean iteration time since its timer reset after iteration 20 "
                  f"(\"time\" of json_stats, 0-based iters): (time[iter {b - 1}] x {b - origin} - "
                  + (f"time[iter {a - 1}] x {a - origin}" if a > origin else "0")
                  + f") / {b - a} = mean over completed iterations {a + 1}..{b} (log period 20 from 0-based iter 0, "
                  f"so the nearest covering records); throughput = {images_per_iter} images/iter / that; the field "
                  "times LR update + RunNet only (excludes per-iteration stat fetch and logging)")
        return build_measurement(span, window, images_per_iter, method, last)

    def progress(self, text):
        recs = records(text)
        if not recs:
            return None
        r = recs[-1]
        return Progress(last_iter=r.iter + 1, rate=None, extra={"mean_iter_time": r.time})
