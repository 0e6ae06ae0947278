"""Our own row's log (jobs/torchvision/train.py): one line per completed iteration with a wall-clock stamp.

Line format (rank 0 only)::

    tvbench iter=<n> t=<unix seconds, 6 decimals> images=<images this iteration, all ranks> loss=<float>

``iter`` is the 1-based count of completed iterations and ``t`` is taken after the iteration's
optimizer step (after a CUDA synchronize on GPUs), so ``t[end] - t[start]`` is exactly the wall time
of iterations start+1..end: a cumulative format whose every iteration is a record.  Each run starts
with a ``tvbench run:`` header line.  Only rank 0 prints, so an iteration printed twice with different
values is an error that names it (two runs in one file), never last-one-wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import LogParser, Progress, Run, RunBuilder, Stamp, clean_lines, dedupe, span_from_cumulative

LINE_RE = re.compile(r"^tvbench iter=(?P<iter>\d+) t=(?P<t>\d+\.\d+) images=(?P<images>\d+)")
START_RE = re.compile(r"^tvbench run: ")
STAMP_ERR = 1e-6  # each stamp printed to 1 microsecond (0.5 us rounding, plus the double's ~0.24 us at 1.7e9 s)


@dataclass(frozen=True)
class TvRecord:
    iter: int
    t: float
    images: int


def scan(text: str) -> list[Run]:
    b = RunBuilder()
    for no, line in enumerate(clean_lines(text), 1):
        s = line.strip()
        m = LINE_RE.match(s)
        if m:
            r = TvRecord(int(m["iter"]), float(m["t"]), int(m["images"]))
            b.add(
                no,
                r,
                iteration=r.iter,  # no key: a run starts only at its header, a repeat is an error
                wall=Stamp(f"t={m['t']}", posix=r.t, resolution=STAMP_ERR),
            )
        elif START_RE.match(s):
            b.mark(no, "tvbench run:")
    return b.runs


def _by_iter(fmt: str, run: Run) -> dict[int, tuple[float, int]]:
    return dedupe(fmt, [(r.iter, (r.t, r.images)) for r in run.records])


# earliest_start: the first stamp is taken after iteration 1 (nothing stamps the start of iteration 1)
class TorchvisionParser(LogParser, name="torchvision", scan=scan, earliest_start=1, what="'tvbench iter=' lines"):
    def span(self, run, window, images_per_iter):
        recs = _by_iter(self.name, run)
        points = {i: (t, STAMP_ERR) for i, (t, _) in recs.items()}
        span = span_from_cumulative(self.name, points, window, max(recs))
        counted = [recs[i][1] for i in range(span.start + 1, span.end + 1) if i in recs]
        if len(counted) == span.end - span.start:
            span.images = sum(counted)  # what the log says each iteration processed
        return span

    def method(self, run, span, images_per_iter):
        a, b = span.start, span.end
        what = (
            "images in iterations (their images= fields)"
            if span.images is not None
            else (f"{images_per_iter} images/iter x {b - a} iterations")
        )
        return f"{what} {a + 1}..{b} / (t[{b}] - t[{a}]) from per-iteration wall-clock stamps"

    def data_kind(self, text):
        m = next((m for line in clean_lines(text) if (m := re.match(r"tvbench data=(\w+)", line))), None)
        return m.group(1) if m else None

    def progress_of(self, run):
        recs = {r.iter: (r.t, r.images) for r in run.records}
        last = max(recs)
        rate = None
        prev = [i for i in recs if i < last]
        if prev:
            p = max(prev)
            dt = recs[last][0] - recs[p][0]
            if dt > 0:
                rate = sum(recs[i][1] for i in range(p + 1, last + 1) if i in recs) / dt
        return Progress(last_iter=last, rate=rate)
