"""matterport/Mask_RCNN 3deaec (Keras 2.2.5 ``fit_generator``, verbose=1): the captured stdout only.

Source semantics (reference section 7): ``ProgbarLogger`` prints ``Epoch e/E`` (1-based) and a
``Progbar(target=STEPS_PER_EPOCH)``; the epoch's final update prints
``50/50 [=====] - 57s 1s/step - loss: ...`` where ``57s`` is ``%.0f`` of the whole epoch's wall time
since ``on_epoch_begin`` (checkpoint and TensorBoard callbacks run after it).  Epoch e covers
completed steps 50(e-1)+1..50e, so a window of whole epochs costs the sum of those integer seconds:
each is within 0.5 s of the truth.  Mid-epoch updates (``ETA:`` lines) carry no timing.
Works on TTY captures (``\\b``/``\\r`` redraws) and pipe captures (one line per update).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import (LogParser, ParseError, Progress, build_measurement, check_window, clean_lines, dedupe, require_records,
                   span_from_intervals)

EPOCH_RE = re.compile(r"^\s*Epoch (?P<epoch>\d+)/(?P<epochs>\d+)\s*$")
FINAL_RE = re.compile(r"(?P<step>\d+)/(?P<target>\d+) \[=+\] - (?P<secs>\d+)s (?P<per>\d+)(?P<unit>s|ms|us)/step")
MID_RE = re.compile(r"(?P<step>\d+)/(?P<target>\d+) \[[=>.]*\] - ETA: ")


@dataclass(frozen=True)
class KerasEpoch:
    epoch: int  # 1-based
    steps: int  # steps in the epoch (the Progbar target)
    secs: int  # whole-epoch wall time, rounded to a second


def _scan(text: str):
    epoch = None
    finals: list[KerasEpoch] = []
    mid: tuple[int, int, int] | None = None  # (epoch, step, target)
    for line in clean_lines(text):
        m = EPOCH_RE.match(line)
        if m:
            epoch = int(m["epoch"])
            continue
        m = FINAL_RE.search(line)
        if m and epoch is not None and int(m["step"]) == int(m["target"]):
            finals.append(KerasEpoch(epoch, int(m["target"]), int(m["secs"])))
            mid = (epoch, int(m["step"]), int(m["target"]))
            continue
        m = MID_RE.search(line)
        if m and epoch is not None:
            mid = (epoch, int(m["step"]), int(m["target"]))
    return finals, mid


def records(text: str) -> list[KerasEpoch]:
    return _scan(text)[0]


class MatterportParser(LogParser):
    name = "matterport"
    description = "Keras Progbar epoch totals (integer seconds) from matterport's stdout"

    def measure(self, text, window, images_per_iter):
        window = check_window(window)
        recs = records(text)
        require_records(self.name, recs, "Keras 'Epoch e/E' headers followed by a final 'n/n [====] - Ns' line")
        by_epoch = dedupe(self.name, [(r.epoch, (r.steps, r.secs)) for r in recs])
        steps = {s for s, _ in by_epoch.values()}
        if len(steps) != 1:
            raise ParseError(f"matterport log has epochs of different lengths {sorted(steps)}; cannot map steps")
        spe = steps.pop()
        last = max(by_epoch) * spe
        blocks = [((e - 1) * spe, e * spe, float(secs), 0.5) for e, (_, secs) in by_epoch.items()]
        span = span_from_intervals(self.name, blocks, window, last)
        e0, e1 = span.start // spe + 1, span.end // spe
        method = (f"sum of Keras' whole-epoch times (integer seconds, '%.0fs' on each epoch's final progress line) "
                  f"over epochs {e0}..{e1} ({spe} steps each) = completed steps {span.start + 1}..{span.end}; "
                  f"throughput = {span.end - span.start} x {images_per_iter} images / that sum; error bound: "
                  f"0.5 s per epoch, worst case; excludes between-epoch checkpoint/TensorBoard callbacks")
        return build_measurement(span, window, images_per_iter, method, last)

    def progress(self, text):
        finals, mid = _scan(text)
        if mid is None:
            return None
        e, step, target = mid
        extra = {"epoch": e, "step_in_epoch": step}
        if finals and finals[-1].secs > 0:
            extra["steps_per_s_last_epoch"] = finals[-1].steps / finals[-1].secs
        # img/s needs the images per step, which the log does not print: steps/s go in extra
        return Progress(last_iter=(e - 1) * target + step, rate=None, extra=extra)
