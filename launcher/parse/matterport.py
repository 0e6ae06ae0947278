"""matterport/Mask_RCNN 3deaec (Keras 2.2.5 ``fit_generator``, verbose=1): the captured stdout only.

Source semantics, Keras 2.2.5: ``ProgbarLogger`` prints ``Epoch e/E`` (1-based, keras/callbacks.py L573)
and a ``Progbar(target=STEPS_PER_EPOCH)``; it skips the last batch's update (L600-603) and draws the
final ``50/50 [=====] - 57s 1s/step - loss: ...`` in ``on_epoch_end`` (L605-611), where ``57s`` is
``%.0f`` of the wall time since the Progbar was created in ``on_epoch_begin`` (keras/utils/
generic_utils.py L346, L377).  Epoch e covers completed steps S(e-1)+1..Se, so a window of whole epochs
costs the sum of those integer seconds: each is within 0.5 s of the truth.  Mid-epoch updates
(``ETA:`` lines) carry no timing.

Validation: ``fit_generator`` runs the validation pass when the epoch's steps are done and *before*
``on_epoch_end`` (keras/engine/training_generator.py L226-255), so an epoch line that carries
``val_loss`` includes the validation pass in its seconds.  Such an epoch cannot time training and is
refused; the seed's diff removes ``validation_data`` from matterport's ``fit_generator`` call
(jobs/matterport/hyperparams.diff, mrcnn/model.py L2367), so its epochs carry none.  The checkpoint and
TensorBoard callbacks run after the Progbar's final update and are excluded.  Each ``model.train`` logs
``Starting at epoch N. LR=...`` (mrcnn/model.py ``MaskRCNN.train``) before its first epoch.
Works on TTY captures (``\\b``/``\\r`` redraws) and pipe captures (one line per update).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import LogParser, ParseError, Progress, Run, RunBuilder, clean_lines, dedupe, span_from_intervals

EPOCH_RE = re.compile(r"^\s*Epoch (?P<epoch>\d+)/(?P<epochs>\d+)\s*$")
FINAL_RE = re.compile(r"(?P<step>\d+)/(?P<target>\d+) \[=+\] - (?P<secs>\d+)s (?P<per>\d+)(?P<unit>s|ms|us)/step")
MID_RE = re.compile(r"(?P<step>\d+)/(?P<target>\d+) \[[=>.]*\] - ETA: ")
START_RE = re.compile(r"^\s*Starting at epoch (?P<epoch>\d+)\. LR=")
VAL_RE = re.compile(r" - val_loss: ")


@dataclass(frozen=True)
class KerasEpoch:
    epoch: int  # 1-based
    steps: int  # steps in the epoch (the Progbar target)
    secs: int  # whole-epoch wall time, rounded to a second
    validated: bool = False  # the line carries val_* metrics: its seconds include the validation pass


def _scan(text: str) -> tuple[list[Run], tuple[int, int, int] | None]:
    epoch = None
    b = RunBuilder()
    mid: tuple[int, int, int] | None = None  # (epoch, step, target)
    for no, line in enumerate(clean_lines(text), 1):
        m = EPOCH_RE.match(line)
        if m:
            epoch = int(m["epoch"])
            continue
        m = FINAL_RE.search(line)
        if m and epoch is not None and int(m["step"]) == int(m["target"]):
            steps = int(m["target"])
            b.add(
                no,
                KerasEpoch(epoch, steps, int(m["secs"]), bool(VAL_RE.search(line))),
                key=epoch,
                iteration=epoch * steps,
            )
            mid = (epoch, int(m["step"]), steps)
            continue
        m = MID_RE.search(line)
        if m and epoch is not None:
            mid = (epoch, int(m["step"]), int(m["target"]))
        elif START_RE.match(line):
            b.mark(no, line.strip())
    return b.runs, mid


def scan(text: str) -> list[Run]:
    return _scan(text)[0]


class MatterportParser(
    LogParser, name="matterport", scan=scan, what="Keras 'Epoch e/E' headers followed by a final 'n/n [====] - Ns' line"
):
    def span(self, run, window, images_per_iter):
        by_epoch = dedupe(self.name, [(r.epoch, (r.steps, r.secs, r.validated)) for r in run.records])
        steps = {s for s, _, _ in by_epoch.values()}
        if len(steps) != 1:
            raise ParseError(f"matterport log has epochs of different lengths {sorted(steps)}; cannot map steps")
        spe = steps.pop()
        blocks = [((e - 1) * spe, e * spe, float(secs), 0.5) for e, (_, secs, _) in by_epoch.items()]
        span = span_from_intervals(self.name, blocks, window, max(by_epoch) * spe)
        e0, e1 = span.start // spe + 1, span.end // spe
        validated = [e for e in range(e0, e1 + 1) if by_epoch.get(e, (0, 0, False))[2]]
        if validated:
            raise ParseError(
                f"matterport log's epoch{'s' if len(validated) > 1 else ''} {', '.join(map(str, validated))} in the "
                f"window (epochs {e0}..{e1}) carr{'y' if len(validated) > 1 else 'ies'} val_loss: Keras runs the "
                "validation pass before the epoch's final progress line, so its seconds include validation and "
                "cannot time training. Run without validation_data (as the seed's diff does), or choose a window "
                "of epochs without val_* metrics"
            )
        return span

    def method(self, run, span, images_per_iter):
        spe = run.records[0].steps
        e0, e1 = span.start // spe + 1, span.end // spe
        return (
            f"sum of Keras' whole-epoch times (integer seconds, '%.0fs' on each epoch's final progress line) "
            f"over epochs {e0}..{e1} ({spe} steps each) = completed steps {span.start + 1}..{span.end}; "
            f"throughput = {span.end - span.start} x {images_per_iter} images / that sum; error bound: "
            "0.5 s per epoch, worst case; none of these epoch lines carries val_loss (a validation pass would be "
            "inside the epoch's seconds); excludes the between-epoch checkpoint/TensorBoard callbacks"
        )

    def progress(self, text):
        runs, mid = _scan(text)
        if mid is None:
            return None
        e, step, target = mid
        finals = [r for run in runs for r in run.records]
        extra = {"epoch": e, "step_in_epoch": step}
        if finals and finals[-1].secs > 0:
            extra["steps_per_s_last_epoch"] = finals[-1].steps / finals[-1].secs
        # img/s needs the images per step, which the log does not print: steps/s go in extra
        return Progress(last_iter=(e - 1) * target + step, rate=None, extra=extra)
