"""Our own row's log (jobs/torchvision/train.py): one line per completed iteration with a wall-clock stamp.

Line format (rank 0 only)::

    tvbench iter=<n> t=<unix seconds, 6 decimals> images=<images this iteration, all ranks> loss=<float>

``iter`` is the 1-based count of completed iterations and ``t`` is taken after the iteration's
optimizer step (after a CUDA synchronize on GPUs), so ``t[end] - t[start]`` is exactly the wall time
of iterations start+1..end.
"""

from __future__ import annotations

import re

from .base import LogParser, Measurement, Progress, UnknownFormat, WindowNotCovered, check_window, clean_lines

LINE_RE = re.compile(r"^tvbench iter=(?P<iter>\d+) t=(?P<t>\d+\.\d+) images=(?P<images>\d+)")


def _records(text: str) -> dict[int, tuple[float, int]]:
    recs: dict[int, tuple[float, int]] = {}
    for line in clean_lines(text):
        m = LINE_RE.match(line.strip())
        if m:
            recs[int(m["iter"])] = (float(m["t"]), int(m["images"]))
    return recs


class TorchvisionParser(LogParser):
    name = "torchvision"
    description = "launcher's torchvision row: per-iteration wall-clock stamps"

    def measure(self, text, window, images_per_iter):
        start, end = check_window(window)
        recs = _records(text)
        if not recs:
            raise UnknownFormat("no 'tvbench iter=' lines: this is not a torchvision-row log")
        last = max(recs)
        if end not in recs or (start > 0 and start not in recs):
            raise WindowNotCovered(self.name, (start, end), last)
        t0 = recs[start][0] if start > 0 else None
        if t0 is None:
            raise WindowNotCovered(self.name, (start, end), last, "window start 0 has no time stamp; start at 1 or later")
        elapsed = recs[end][0] - t0
        images = sum(recs[i][1] for i in range(start + 1, end + 1) if i in recs)
        if any(i not in recs for i in range(start + 1, end + 1)):
            images = images_per_iter * (end - start)
        step = elapsed / (end - start)
        return Measurement(
            throughput=images / elapsed,
            window=(start, end),
            window_requested=(start, end),
            images_per_iter=images_per_iter,
            method=(f"images in iterations {start + 1}..{end} / (t[{end}] - t[{start}]) from per-iteration "
                    "wall-clock stamps"),
            error_bound=2e-6 / elapsed,  # two stamps, each printed to 1 microsecond
            mean_step_time=step,
            last_iter=last,
        )

    def data_kind(self, text):
        m = re.search(r"^tvbench data=(\w+)", text, re.M)
        return m.group(1) if m else None

    def progress(self, text):
        recs = _records(text)
        if not recs:
            return None
        last = max(recs)
        rate = None
        prev = [i for i in recs if i < last]
        if prev:
            p = max(prev)
            dt = recs[last][0] - recs[p][0]
            if dt > 0:
                rate = sum(recs[i][1] for i in range(p + 1, last + 1) if i in recs) / dt
        return Progress(last_iter=last, rate=rate)
