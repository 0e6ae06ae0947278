"""SimpleDet 9187a1 (and the later ``Iter:``/``Lr:`` variant): ``experiments/<config>/log.txt`` or stderr.

Source semantics, SimpleDet 9187a10: ``Speedometer(train_data.batch_size, frequent=pGen.log_frequency)``
(detection_train.py L172; ``log_frequency = 10`` in config/mask_r50v1_fpn_1x.py L17), MXNet-style
(utils/callback.py L14-36).  Called after each batch with the 0-based index n within the epoch: at
n = 0 it starts its clock; at every n % 10 == 0 after that it logs ``Speed: %.2f samples/sec`` =
10 x batch_size / (seconds since the previous log) and restarts the clock.  The line ``Batch [n]`` thus
covers completed iterations n-9 .. n+1 (1-based): blocks (n-9, n+1], boundaries at 1, 11, 21, ...  A
window costs the sum of the blocks' ``10 x images_per_iter / Speed``: the harmonic mean of the speeds.
With the later format, ``Iter: g/total`` gives the global 0-based batch index; without it only epoch 0
maps onto global iterations.  Stamps ``%m-%d %H:%M:%S`` are Asia/Shanghai time whatever the host's
zone (utils/logger.py L6-19); each run logs ``total iter N`` before training (detection_train.py L190).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import (
    SHANGHAI,
    LogParser,
    Progress,
    Run,
    RunBuilder,
    Stamp,
    clean_lines,
    dedupe,
    span_from_intervals,
    yearless,
)

LINE_RE = re.compile(
    r"(?:(?P<mo>\d{2})-(?P<d>\d{2}) (?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2}) )?"
    r"Epoch\[(?P<epoch>\d+)\] Batch \[(?P<batch>\d+)\]"
    r"(?:\s+Iter: (?P<giter>\d+)/(?P<total>\d+)\s+Lr: (?P<lr>[-+.\deE]+))?"
    r"\s+Speed: (?P<speed>\d+(?:\.\d+)?) samples/sec"
)
START_RE = re.compile(r"\btotal iter \d+\s*$")


@dataclass(frozen=True)
class SdRecord:
    epoch: int  # 0-based
    batch: int  # 0-based index within the epoch of the batch just finished
    global_iter: int | None  # 0-based global batch index (later format only)
    speed: float  # samples/sec over the last `frequent` batches
    speed_err: float
    wall: Stamp | None  # the line's MM-DD HH:MM:SS (Asia/Shanghai, no year), if it has one

    @property
    def completed(self) -> int | None:
        """Completed iterations since the run's start, where the line lets us know."""
        if self.global_iter is not None:
            return self.global_iter + 1
        return self.batch + 1 if self.epoch == 0 else None


def _record(m: re.Match) -> SdRecord:
    wall = None
    if m["mo"]:
        parts = [int(m[k]) for k in ("mo", "d", "H", "M", "S")]
        wall = yearless(f"{m['mo']}-{m['d']} {m['H']}:{m['M']}:{m['S']}", *parts, tz=SHANGHAI)
    sp = m["speed"]
    err = 0.5 * 10.0 ** -(len(sp.split(".")[1]) if "." in sp else 0)
    return SdRecord(int(m["epoch"]), int(m["batch"]), int(m["giter"]) if m["giter"] else None, float(sp), err, wall)


def scan(text: str) -> list[Run]:
    b = RunBuilder()
    for no, line in enumerate(clean_lines(text), 1):
        m = LINE_RE.search(line)
        if m:
            r = _record(m)
            b.add(no, r, key=(r.epoch, r.batch), iteration=r.completed, wall=r.wall)
        elif START_RE.search(line):
            b.mark(no, line.split(" ", 2)[-1])
    return b.runs


def _frequent(recs: list[SdRecord]) -> int:
    steps = sorted({q.batch - p.batch for p, q in zip(recs, recs[1:]) if q.epoch == p.epoch and q.batch > p.batch})
    return steps[0] if steps else recs[0].batch


# earliest_start: the Speedometer starts its clock after batch 0, so the first block is (1, 11]
class SimpledetParser(
    LogParser, name="simpledet", scan=scan, earliest_start=1, what="'Epoch[e] Batch [n] ... Speed: X samples/sec' lines"
):
    def span(self, run, window, images_per_iter):
        freq = _frequent(run.records)
        by_c = dedupe(self.name, [(r.completed, r) for r in run.records if r.completed is not None])
        blocks = []
        for c, r in by_c.items():
            if r.batch < freq:
                continue
            secs = freq * images_per_iter / r.speed if r.speed > 0 else float("inf")
            rel = r.speed_err / r.speed if r.speed > 0 else 0.0
            blocks.append((c - freq, c, secs, secs * rel / max(1 - rel, 1e-300)))
        return span_from_intervals(self.name, blocks, window, max(by_c) if by_c else None)

    def method(self, run, span, images_per_iter):
        freq, n = _frequent(run.records), span.end - span.start
        return (
            f"harmonic mean of SimpleDet's Speedometer rates over {span.records} consecutive {freq}-batch "
            f"windows: {n} x {images_per_iter} images / sum of ({freq} x {images_per_iter} / "
            f"Speed), covering completed iterations {span.start + 1}..{span.end} (line 'Batch [n]' covers "
            f"iterations n-{freq - 1}..n+1); assumes the Speedometer's batch_size = images_per_iter"
        )

    def progress_of(self, run):
        r = run.records[-1]
        c = r.completed
        return Progress(last_iter=c if c is not None else r.batch + 1, rate=r.speed, extra={"epoch": r.epoch})
