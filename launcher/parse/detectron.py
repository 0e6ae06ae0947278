"""Detectron (Caffe2): ``json_stats: {...}`` lines that ``print()`` writes to stdout (no log file, no time stamp).

Source semantics, Detectron 7aa91aa: ``train_model`` (detectron/utils/train.py L62-83) brackets the LR
update and ``workspace.RunNet`` with ``IterTic``/``IterToc``; ``LogIterStats`` (detectron/utils/
training_stats.py L85-90) prints every 20 iterations (0-based ``"iter": 0, 20, 40, ...``, and the last)
``"time"`` = the timer's ``average_time`` = total/calls since its last reset (detectron/utils/timer.py
L45-51), with 6 decimals (detectron/utils/logging.py L32-38).  The timer is reset after iteration
``start_iter + 20`` (train.py L80-83, after that line is printed), so at a line with 0-based iter
k > start_iter + 20 the mean covers 0-based iterations start_iter+21..k: completed iterations
start_iter+22..c with c = k+1, n = c - start_iter - 21 of them.  ``time * n`` is therefore a cumulative
total from the origin start_iter + 21, and a window costs the difference of two totals.  A run that
resumes logs ``========> Resuming from checkpoint <file> at start iter N`` (train.py L139-142); every run
logs ``Called with args:`` (tools/train_net.py L95) and ``Building model:`` (train.py L144).  Both the
quoted (``"time": "0.239992"``, since 2018-10) and unquoted (``"time": 0.266505``) forms, and
pretty-printed multi-line dumps, are read.

Detectron's field excludes the per-iteration stat fetch and logging, so its throughput is slightly
higher than wall-clock throughput (estimated at 1-3%, unmeasured).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .base import LogParser, ParseError, Progress, Run, RunBuilder, clean_lines, dedupe, span_from_cumulative
from .logfile import LazyLines

START_RE = re.compile(r"json_stats: (\{.*)$")
RUN_RE = re.compile(
    r"\bCalled with args:|\bBuilding model: |Resuming from checkpoint (?P<ckpt>\S+) at start iter "
    r"(?P<start>\d+)"
)
LOG_PERIOD = 20  # training_stats.py L44


@dataclass(frozen=True)
class DetectronRecord:
    iter: int  # 0-based index of the iteration just finished
    time: float
    digits: int
    stats: dict


def _digits(raw) -> int:
    s = str(raw)
    return len(s.split(".")[1]) if "." in s else 0


def _has(lines, i: int) -> bool:
    return lines.has(i) if isinstance(lines, LazyLines) else i < len(lines)


def _json_at(lines: list[str], i: int, first: str) -> tuple[dict | None, int]:
    """The ``json_stats: {`` object starting on line i (also when pretty-printed over several), and its last line."""
    buf, j = first, i
    while True:
        try:
            return json.loads(buf), j
        except json.JSONDecodeError:
            j += 1
            if not _has(lines, j) or j - i > 60:
                return None, i
            buf += "\n" + lines[j]


def scan(text: str) -> list[Run]:
    lines = clean_lines(text)
    if not isinstance(lines, list):  # a log file read lazily: a window of lines, never the whole file
        lines = LazyLines(lines)
    b, i = RunBuilder(), 0
    while _has(lines, i):
        m = START_RE.search(lines[i])
        if not m:
            mr = RUN_RE.search(lines[i])
            if mr:
                b.mark(i + 1, mr.group(0), start_iter=int(mr["start"]) if mr["start"] else None)
            i += 1
            continue
        d, j = _json_at(lines, i, m.group(1))
        if isinstance(d, dict) and "iter" in d and "time" in d:
            r = DetectronRecord(int(d["iter"]), float(d["time"]), _digits(d["time"]), d)
            b.add(i + 1, r, key=r.iter, iteration=r.iter + 1)
        i = j + 1
    return b.runs


def _origin(run: Run) -> int:
    """Completed iterations at the timer's reset (after 0-based iteration start_iter + 20)."""
    first = min(r.iter for r in run.records)
    start = run.info.get("start_iter", 0)
    if first != start and not (start < first < start + LOG_PERIOD and first % LOG_PERIOD == 0):
        said = f"says it resumed at {start}" if "start_iter" in run.info else "names no resume point"
        raise ParseError(
            f"detectron log starts at iteration {first} and {said}: the run was resumed (or the log is a "
            "fragment), and Detectron's timer reset point (start_iter + 20) cannot be located. Parse the "
            "run's whole stdout, from its 'Called with args:' line"
        )
    return start + LOG_PERIOD + 1


# earliest_start: the timer's reset point in a run from iteration 0 (see _origin)
class DetectronParser(
    LogParser, name="detectron", scan=scan, earliest_start=LOG_PERIOD + 1, what="'json_stats: {...}' lines"
):
    def span(self, run, window, images_per_iter):
        origin = _origin(run)
        by_iter = dedupe(self.name, [(r.iter, (r.time, r.digits)) for r in run.records])
        points = {origin: (0.0, 0.0)}
        for k, (t, digits) in by_iter.items():
            c = k + 1
            if c > origin:  # lines printed after the reset
                points[c] = (t * (c - origin), 0.5 * 10.0**-digits * (c - origin))
        return span_from_cumulative(self.name, points, window, max(by_iter) + 1, origin)

    def method(self, run, span, images_per_iter):
        origin = _origin(run)
        a, b = span.start, span.end
        return (
            f"difference of Detectron's mean iteration time since its timer reset after iteration "
            f'{origin - 1} ("time" of json_stats, 0-based iters): (time[iter {b - 1}] x {b - origin} - '
            + (f"time[iter {a - 1}] x {a - origin}" if a > origin else "0")
            + f") / {b - a} = mean over completed iterations {a + 1}..{b} (records every {LOG_PERIOD} 0-based "
            f"iterations); throughput = {images_per_iter} images/iter / that; the field times LR update + RunNet "
            "only (excludes per-iteration stat fetch and logging)"
        )

    def progress_of(self, run):
        r = run.records[-1]
        return Progress(last_iter=r.iter + 1, rate=None, extra={"mean_iter_time": r.time})
