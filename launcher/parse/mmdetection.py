"""mmdetection b0d845f with mmcv 0.5.x: ``work_dirs/<config>/<stamp>.log.json`` (preferred), the text
``.log`` or the captured stderr.

Source semantics (reference section 2): every ``interval`` (50) iterations, counted **per epoch,
1-based** (``Epoch [1][50/7330]``), mmcv's TextLoggerHook prints ``time``: the mean of the last 50
per-iteration wall times from ``IterTimerHook``.  Those times tile the timeline (each runs from one
``after_iter`` to the next) and the buffer is emptied after every log line, so each printed value is
the mean over exactly the 50 iterations since the previous line.  A window costs the sum
``time x 50`` of the blocks that tile it.  The text log prints ``{:.3f}``, the json log ``round(x, 5)``.

The json log carries no epoch length, so there only epoch 1 maps onto global iterations; the text log
prints it (``[iter/len]``).  The last ``len mod 50`` iterations of an epoch are never logged, so a
window cannot span an epoch boundary.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

from .base import (LogParser, Progress, build_measurement, check_window, clean_lines, dedupe, logging_stamp,
                   require_records,
                   span_from_intervals)

TEXT_RE = re.compile(r"Epoch \[(?P<epoch>\d+)\]\[(?P<iter>\d+)/(?P<len>\d+)\]\s+lr: \S+, eta: .*?, "
                     r"time: (?P<time>\d+\.\d+), data_time: (?P<dt>\d+\.\d+)")


@dataclass(frozen=True)
class MmdetRecord:
    epoch: int  # 1-based
    iter: int  # 1-based within the epoch
    epoch_len: int | None  # iterations per epoch (text log only)
    time: float  # mean wall time per iteration over the block ending at `iter`
    time_err: float  # half a unit of the printed/rounded last digit
    stamp: float | None
    source: str  # "json" | "text"


def records(text: str) -> list[MmdetRecord]:
    out = []
    for line in clean_lines(text):
        s = line.strip()
        if s.startswith("{") and '"mode"' in s:
            try:
                d = json.loads(s)
            except json.JSONDecodeError:
                d = None
            if isinstance(d, dict) and d.get("mode") == "train" and "time" in d:
                out.append(MmdetRecord(int(d["epoch"]), int(d["iter"]), None, float(d["time"]), 0.5e-5, None, "json"))
            continue
        m = TEXT_RE.search(line)
        if not m:
            continue
        stamp = logging_stamp(line[:m.start()])
        digits = len(m["time"].split(".")[1])
        out.append(MmdetRecord(int(m["epoch"]), int(m["iter"]), int(m["len"]), float(m["time"]),
                               0.5 * 10.0 ** -digits, stamp, "text"))
    return out


def _interval(recs: list[MmdetRecord]) -> int:
    """The logging interval: the commonest step between consecutive records of one epoch."""
    diffs = Counter()
    for p, q in zip(recs, recs[1:]):
        if p.epoch == q.epoch and q.iter > p.iter:
            diffs[q.iter - p.iter] += 1
    if diffs:
        return diffs.most_common(1)[0][0]
    return recs[0].iter  # a single record: it covers the epoch's first iterations


class MmdetectionParser(LogParser):
    name = "mmdetection"
    description = "mmcv TextLoggerHook (.log.json or text); time = mean over the last `interval` iterations"

    def _global(self, recs):
        """(epoch, iter) -> completed iterations since the start, where the log lets us know."""
        lens = {r.epoch_len for r in recs if r.epoch_len}
        epoch_len = lens.pop() if len(lens) == 1 else None

        def glob(r: MmdetRecord) -> int | None:
            if r.epoch == 1:
                return r.iter
            return (r.epoch - 1) * epoch_len + r.iter if epoch_len else None
        return glob

    def measure(self, text, window, images_per_iter):
        window = check_window(window)
        recs = records(text)
        require_records(self.name, recs, "'Epoch [e][i/n] ... time:' lines or .log.json train records")
        kinds = {r.source for r in recs}
        if len(kinds) > 1:  # a capture holding both: use the finer json records
            recs = [r for r in recs if r.source == "json"]
        interval = _interval(recs)
        glob = self._global(recs)
        by_iter = dedupe(self.name, [(glob(r), r) for r in recs if glob(r) is not None])
        last = max(by_iter)
        blocks = [(c - interval, c, r.time * interval, r.time_err * interval) for c, r in by_iter.items()
                  if c - interval >= 0]
        span = span_from_intervals(self.name, blocks, window, last)
        src = "the .log.json (round(x, 5))" if recs[0].source == "json" else "the text log ({:.3f})"
        method = (f"sum of mmcv's per-block mean iteration times x {interval} from {src}: {span.records} "
                  f"consecutive blocks of {interval} iterations tiling completed iterations {span.start + 1}..{span.end} "
                  f"(per-epoch 1-based numbering mapped to global); throughput = {images_per_iter} images/iter x "
                  f"{span.end - span.start} / that total")
        stamps = {c: r.stamp for c, r in by_iter.items() if r.stamp is not None}
        details = {}
        if span.start in stamps and span.end in stamps:
            details = {"timestamp_step_time": (stamps[span.end] - stamps[span.start]) / (span.end - span.start),
                       "timestamp_resolution_s": 0.001}
        return build_measurement(span, window, images_per_iter, method, last, details=details)

    def progress(self, text):
        recs = records(text)
        if not recs:
            return None
        r = recs[-1]
        g = self._global(recs)(r)
        return Progress(last_iter=g if g is not None else r.iter, rate=None,
                        extra={"epoch": r.epoch, "iter_in_epoch": r.iter, "mean_step_time": r.time})
