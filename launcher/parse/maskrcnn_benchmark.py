"""maskrcnn-benchmark 0ce8f6f (and forks with the same trainer, e.g. FCOS): ``./log.txt`` or stdout.

Source semantics, maskrcnn-benchmark 0ce8f6f: ``do_train`` (maskrcnn_benchmark/engine/trainer.py L56-125)
creates a fresh ``MetricLogger`` and logs ``Start training`` (L57-58), then every 20 iterations (global,
**1-based**, L108) prints ``time: MED (AVG)`` with ``{:.4f}`` (utils/metric_logger.py L60-66): the median of
the last 20 step times and ``SmoothedValue.global_avg``, the mean of every step time since this
``do_train`` began (L36-37).  The step time is the full wall-clock interval between consecutive
optimizer steps (L77-103: data wait and logging included).

A run that resumes from a checkpoint starts at the iteration the checkpoint stored
(tools/train_net.py L65-72; utils/checkpoint.py L52-71 logs ``Loading checkpoint from <file>`` first),
so its average covers iterations o+1..c, where o is the resume point.  Checkpoints are saved as
``model_{:07d}.pth`` of the iteration (trainer.py L126-127), so a run that loaded ``model_0010000.pth``
and whose first record is at 10020 resumed at 10000.  ``AVG[c] x (c - o)`` is then the total wall time of
iterations o+1..c, and a window costs ``AVG[b](b-o) - AVG[a](a-o)`` (0 at c = o).  When the first record
is past the first period and the resume point cannot be read off the checkpoint's name, the parser refuses.
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
    logging_wall,
    span_from_cumulative,
)

LINE_RE = re.compile(r"\beta: .*?\biter: (?P<iter>\d+)\s.*?(?<![\w])time: (?P<med>\d+\.\d+) \((?P<avg>\d+\.\d+)\)")
CKPT_RE = re.compile(r"\bLoading checkpoint from (?P<file>\S+)")  # utils/checkpoint.py L60
START_RE = re.compile(r"(?:\bStart training|\bUsing \d+ GPUs)\s*$")  # trainer.py L57, tools/train_net.py L176
RESUME_RE = re.compile(r"model_(?P<iter>\d{7})\.pth$")  # trainer.py L127: "model_{:07d}".format(iteration)
PERIOD = 20


@dataclass(frozen=True)
class MrbRecord:
    iter: int  # completed iterations (1-based)
    median: float
    avg: float  # global mean step time over the iterations this do_train ran, up to `iter`
    digits: int
    wall: Stamp | None  # the line's logging asctime (1 ms), if it has one


def scan(text: str) -> list[Run]:
    """Trainer lines grouped by run; ``Using N GPUs``, ``Loading checkpoint from`` and ``Start training`` begin one."""
    b = RunBuilder()
    for no, line in enumerate(clean_lines(text), 1):
        m = LINE_RE.search(line)
        if m:
            head = line[: m.start()]
            r = MrbRecord(
                int(m["iter"]), float(m["med"]), float(m["avg"]), len(m["avg"].split(".")[1]), logging_wall(head)
            )
            b.add(no, r, key=r.iter, iteration=r.iter, wall=r.wall)
            continue
        mc = CKPT_RE.search(line)
        if mc:
            b.mark(no, mc.group(0), checkpoint=mc["file"])
        elif START_RE.search(line):
            b.mark(no, line.split("INFO: ")[-1])
    return b.runs


def resume_point(run: Run) -> tuple[int, str | None]:
    """Where the run's MetricLogger average starts (0, or the iteration it resumed at) and the checkpoint."""
    first = min(r.iter for r in run.records)
    ckpt = run.info.get("checkpoint")
    m = RESUME_RE.search(ckpt or "")
    if m and int(m["iter"]) < first <= int(m["iter"]) + PERIOD:
        return int(m["iter"]), ckpt
    if first <= PERIOD:
        return 0, None
    if ckpt is None:
        why = "the log shows no 'Loading checkpoint from ...' line naming the checkpoint it resumed from"
    elif not m:
        why = (
            f"the checkpoint it loaded ({ckpt}) is not named model_NNNNNNN.pth, so the iteration it resumed at "
            "is unknown"
        )
    else:
        why = (
            f"the checkpoint it loaded ({ckpt}) stores iteration {int(m['iter'])}, which does not fit a first "
            f"record at {first} (expected within {PERIOD} iterations after it)"
        )
    raise ParseError(
        f"maskrcnn_benchmark log's first record is at iteration {first}, past the first logging period "
        f"({PERIOD}): the run resumed from a checkpoint, and its global average covers only the "
        f"iterations since the resume point, but {why}. Parse a log that includes the run's start (its "
        "whole log.txt or captured stdout)"
    )


class MaskrcnnBenchmarkParser(
    LogParser, name="maskrcnn_benchmark", scan=scan, what="'eta: ... iter: N ... time: M (A)' trainer lines"
):
    def span(self, run, window, images_per_iter):
        origin, _ = resume_point(run)
        by_iter = dedupe(self.name, [(r.iter, (r.avg, r.digits)) for r in run.records])
        points = {origin: (0.0, 0.0)}
        for c, (avg, digits) in by_iter.items():
            if c > origin:
                points[c] = (avg * (c - origin), 0.5 * 10.0**-digits * (c - origin))
        return span_from_cumulative(self.name, points, window, max(by_iter), origin)

    def method(self, run, span, images_per_iter):
        o, ckpt = resume_point(run)
        a, b = span.start, span.end
        since = (
            f"since the resume from {ckpt} at iteration {o} (a resumed run's MetricLogger starts afresh)"
            if ckpt
            else "since iteration 1"
        )
        return (
            f"difference of maskrcnn-benchmark's global mean step time (the parenthesised value of 'time:', the "
            f"mean over iterations {o + 1}..c, {since}): (avg[{b}] x {b - o} - "
            + (f"avg[{a}] x {a - o}" if a > o else "0")
            + f") / {b - a} = mean wall time per iteration over completed iterations {a + 1}..{b}; "
            f"throughput = {images_per_iter} images/iter / that"
        )

    def progress_of(self, run):
        r = run.records[-1]
        return Progress(
            last_iter=r.iter, rate=None, extra={"median_step_time": r.median, "global_mean_step_time": r.avg}
        )
