"""SimpleDet 9187a1 (and the later ``Iter:``/``Lr:`` variant): ``experiments/<config>/log.txt`` or stderr.

Source semantics (reference section 5): MXNet-style ``Speedometer(batch_size=16, frequent=10)``.
Called after each batch with the 0-based index n within the epoch: at n = 0 it starts its clock;
at every n % 10 == 0 after that it logs ``Speed: %.2f samples/sec`` = 10 x batch_size / (seconds
since the previous log) and restarts the clock.  The line ``Batch [n]`` thus covers completed
iterations n-9 .. n+1 (1-based): blocks (n-9, n+1], boundaries at 1, 11, 21, ...  A window costs
the sum of the blocks' ``10 x images_per_iter / Speed``: the harmonic mean of the speeds.
With the later format, ``Iter: g/total`` gives the global 0-based batch index; without it only
epoch 0 maps onto global iterations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import (LogParser, Progress, YearlessClock, build_measurement, check_window, clean_lines, dedupe,
                   require_records, span_from_intervals, timestamp_check)

LINE_RE = re.compile(r"(?:(?P<mo>\d{2})-(?P<d>\d{2}) (?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2}) )?"
                     r"Epoch\[(?P<epoch>\d+)\] Batch \[(?P<batch>\d+)\]"
                     r"(?:\s+Iter: (?P<giter>\d+)/(?P<total>\d+)\s+Lr: (?P<lr>[-+.\deE]+))?"
                     r"\s+Speed: (?P<speed>\d+(?:\.\d+)?) samples/sec")


@dataclass(frozen=True)
class SdRecord:
    epoch: int  # 0-based
    batch: int  # 0-based index within the epoch of the batch just finished
    global_iter: int | None  # 0-based global batch index (later format only)
    speed: float  # samples/sec over the last `frequent` batches
    speed_err: float
    stamp: float | None


def records(text: str) -> list[SdRecord]:
    clock = YearlessClock()
    out = []
    for line in clean_lines(text):
        m = LINE_RE.search(line)
        if not m:
            continue
        stamp = clock(*(int(m[k]) for k in ("mo", "d", "H", "M", "S"))) if m["mo"] else None
        sp = m["speed"]
        err = 0.5 * 10.0 ** -(len(sp.split(".")[1]) if "." in sp else 0)
        out.append(SdRecord(int(m["epoch"]), int(m["batch"]), int(m["giter"]) if m["giter"] else None,
                            float(sp), err, stamp))
    return out


def _frequent(recs: list[SdRecord]) -> int:
    steps = sorted({q.batch - p.batch for p, q in zip(recs, recs[1:]) if q.epoch == p.epoch and q.batch > p.batch})
    return steps[0] if steps else recs[0].batch


class SimpledetParser(LogParser):
    name = "simpledet"
    description = "SimpleDet Speedometer lines; Speed = samples/sec over the last `frequent` batches"

    @staticmethod
    def _completed(r: SdRecord) -> int | None:
        if r.global_iter is not None:
            return r.global_iter + 1
        return r.batch + 1 if r.epoch == 0 else None

    def measure(self, text, window, images_per_iter):
        window = check_window(window)
        recs = records(text)
        require_records(self.name, recs, "'Epoch[e] Batch [n] ... Speed: X samples/sec' lines")
        freq = _frequent(recs)
        by_c = dedupe(self.name, [(self._completed(r), r) for r in recs if self._completed(r) is not None])
        last = max(by_c)
        blocks = []
        for c, r in by_c.items():
            if r.speed <= 0 or r.batch < freq:
                continue
            secs = freq * images_per_iter / r.speed
            rel = r.speed_err / r.speed
            blocks.append((c - freq, c, secs, secs * rel / max(1 - rel, 1e-300)))
        span = span_from_intervals(self.name, blocks, window, last)
        method = (f"harmonic mean of SimpleDet's Speedometer rates over {span.records} consecutive {freq}-batch "
                  f"windows: {span.end - span.start} x {images_per_iter} images / sum of ({freq} x {images_per_iter} / "
                  f"Speed), covering completed iterations {span.start + 1}..{span.end} (line 'Batch [n]' covers "
                  f"iterations n-{freq - 1}..n+1, so the nearest covering windows); assumes the Speedometer's "
                  "batch_size = images_per_iter")
        stamps = {c: r.stamp for c, r in by_c.items() if r.stamp is not None}
        return build_measurement(span, window, images_per_iter, method, last,
                                 details=timestamp_check(stamps, span, 1.0))

    def progress(self, text):
        recs = records(text)
        if not recs:
            return None
        r = recs[-1]
        c = self._completed(r)
        return Progress(last_iter=c if c is not None else r.batch + 1, rate=r.speed, extra={"epoch": r.epoch})
