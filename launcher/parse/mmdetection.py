"""mmdetection b0d845f with mmcv 0.5.x: ``work_dirs/<config>/<stamp>.log.json`` (preferred), the text
``.log`` or the captured stderr.

Source semantics, mmcv v0.5.1 (what mmdetection b0d845f requires): ``IterTimerHook`` (runner/hooks/
iter_timer.py L10-18) records each iteration's wall time from one ``after_iter`` to the next (the
epoch's first from ``before_epoch``).  Every ``interval`` (50) iterations, counted **per epoch, 1-based**,
``LoggerHook.after_train_iter`` (runner/hooks/logger/base.py L37-47) averages the last ``interval``
values (``LogBuffer.average``, runner/log_buffer.py L33-41) and ``TextLoggerHook`` prints that mean as
``Epoch [e][i/len] ... time: {:.3f}`` (runner/hooks/logger/text.py L65-77) and dumps it to the json log
as ``round(x, 5)`` (L99-116).  Consecutive records therefore tile the epoch in blocks of ``interval``
iterations, and a window costs the sum of ``time x interval`` over the blocks that tile it.  The last
``len mod interval`` iterations of an epoch are never logged (``ignore_last``), so a window cannot span
an epoch boundary.

The json log numbers iterations within each epoch and carries no epoch length, so only epoch 1 maps onto
the run's global count; the text log prints it (``[iter/len]``).  Each run logs ``Start running, host:
...`` (runner/runner.py L361) and writes a new ``<stamp>.log.json`` that opens with its meta line.
mmengine's logs (MMDetection 3.x) are a different format and are refused by name.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

from .base import (
    LogParser,
    ParseError,
    Progress,
    Run,
    RunBuilder,
    Stamp,
    UnknownFormat,
    clean_lines,
    dedupe,
    logging_wall,
    span_from_intervals,
)

TEXT_RE = re.compile(
    r"Epoch \[(?P<epoch>\d+)\]\[(?P<iter>\d+)/(?P<len>\d+)\]\s+lr: \S+, eta: .*?, "
    r"time: (?P<time>\d+\.\d+), data_time: (?P<dt>\d+\.\d+)"
)
START_RE = re.compile(r"\bStart running, host: ")
#: mmengine's LogProcessor header ("Epoch(train)  [1][  50/7330]  ...", "Iter(train) [ 50/90000]  ...")
MMENGINE_RE = re.compile(r"\b(?:Epoch|Iter)\(train\)\s*(?:\[\s*\d+\]\s*)?\[\s*\d+/\d+\]")


@dataclass(frozen=True)
class MmdetRecord:
    epoch: int  # 1-based
    iter: int  # 1-based within the epoch
    epoch_len: int | None  # iterations per epoch (text log only)
    time: float  # mean wall time per iteration over the block ending at `iter`
    time_err: float  # half a unit of the printed/rounded last digit
    source: str  # "json" | "text"
    wall: Stamp | None  # the text line's logging asctime (1 ms); the json has none


def _json_line(s: str) -> dict | None:
    try:
        d = json.loads(s)
    except json.JSONDecodeError:
        return None
    return d if isinstance(d, dict) else None


def scan(text: str) -> tuple[list[Run], list[Run], bool]:
    """(json runs, text runs, whether mmengine lines were seen)."""
    jb, tb, mmengine = RunBuilder(), RunBuilder(), False
    for no, line in enumerate(clean_lines(text), 1):
        s = line.strip()
        if s.startswith("{"):
            d = _json_line(s)
            if d is None:
                continue
            if d.get("mode") == "train" and "time" in d:
                r = MmdetRecord(int(d["epoch"]), int(d["iter"]), None, float(d["time"]), 0.5e-5, "json", None)
                jb.add(no, r, key=(r.epoch, r.iter), iteration=r.iter if r.epoch == 1 else None)
            elif "mode" not in d and "time" in d and "step" in d:
                mmengine = True  # mmengine's scalars json: {"lr": ..., "time": ..., "epoch": 1, "iter": 50, "step": 50}
            elif {"env_info", "seed", "config", "exp_name"} & set(d):
                jb.mark(no, "the .log.json's meta line")  # runner.meta, dumped first by before_run (text.py L40-46)
            continue
        m = TEXT_RE.search(line)
        if m:
            head = line[: m.start()]
            e, i, n = int(m["epoch"]), int(m["iter"]), int(m["len"])
            r = MmdetRecord(
                e, i, n, float(m["time"]), 0.5 * 10.0 ** -len(m["time"].split(".")[1]), "text", logging_wall(head)
            )
            tb.add(no, r, key=(e, i), iteration=(e - 1) * n + i, wall=r.wall)
        elif START_RE.search(line):
            tb.mark(no, "Start running")
        elif MMENGINE_RE.search(line):
            mmengine = True
    return jb.runs, tb.runs, mmengine


def _interval(recs: list[MmdetRecord]) -> int:
    """The logging interval: the commonest step between consecutive records of one epoch."""
    diffs = Counter(q.iter - p.iter for p, q in zip(recs, recs[1:]) if p.epoch == q.epoch and q.iter > p.iter)
    return diffs.most_common(1)[0][0] if diffs else recs[0].iter  # one record: it covers the epoch's start


def _epoch_len(recs: list[MmdetRecord]) -> int | None:
    lens = {r.epoch_len for r in recs if r.epoch_len}
    return lens.pop() if len(lens) == 1 else None


def _global(r: MmdetRecord, epoch_len: int | None) -> int | None:
    """Completed iterations since the run's start, where the log lets us know."""
    if r.epoch == 1:
        return r.iter
    return (r.epoch - 1) * epoch_len + r.iter if epoch_len else None


class MmdetectionParser(
    LogParser, name="mmdetection", what="'Epoch [e][i/n] ... time:' lines or .log.json train records"
):
    def runs(self, text):
        jruns, truns, mmengine = scan(text)
        if any(r.records for r in jruns):  # a capture holding both: the json's 5 decimals beat {:.3f}
            return jruns
        if mmengine and not any(r.records for r in truns):
            raise UnknownFormat(
                "this is an mmengine log (MMDetection 3.x and the other OpenMMLab 2.0 codebases: 'Epoch(train) "
                "[e][i/n]' / 'Iter(train)' lines, or its vis_data scalars json), not the mmcv TextLoggerHook format "
                "of the pinned mmdetection (b0d845f, mmcv 0.5): mmengine's 'time' is a mean over the LogProcessor's "
                "window_size, a config setting the log does not print, so whether its values tile the run cannot be "
                "checked from the log. Run the row's pinned mmdetection, or time the run another way"
            )
        return truns

    def _check_json_epochs(self, recs: list[MmdetRecord], window: tuple[int, int]) -> None:
        epochs = sorted({r.epoch for r in recs})
        if recs[0].source != "json" or epochs == [1]:
            return
        ends1 = [r.iter for r in recs if r.epoch == 1]
        if ends1 and window[1] <= max(ends1):
            return
        raise ParseError(
            f"mmdetection .log.json holds epochs {epochs[0]}..{epochs[-1]}, but it numbers iterations within each "
            "epoch and records no epoch length, so iterations past epoch 1 "
            + (f"(which it logs up to {max(ends1)}) " if ends1 else "(absent here: the run resumed) ")
            + f"cannot be placed on the run's count, and the window {window[0]}..{window[1]} lies past them. Parse "
            "the text log of the same run instead (the <stamp>.log beside the .log.json, or the captured stderr), "
            "whose 'Epoch [e][i/len]' lines carry the length, or choose a window inside epoch 1"
        )

    def span(self, run, window, images_per_iter):
        recs = run.records
        self._check_json_epochs(recs, window)
        interval, epoch_len = _interval(recs), _epoch_len(recs)
        by_iter = dedupe(self.name, [(_global(r, epoch_len), r) for r in recs if _global(r, epoch_len) is not None])
        blocks = [
            (c - interval, c, r.time * interval, r.time_err * interval) for c, r in by_iter.items() if c - interval >= 0
        ]
        return span_from_intervals(self.name, blocks, window, max(by_iter))

    def method(self, run, span, images_per_iter):
        interval = _interval(run.records)
        src = "the .log.json (round(x, 5))" if run.records[0].source == "json" else "the text log ({:.3f})"
        return (
            f"sum of mmcv's per-block mean iteration times x {interval} from {src}: {span.records} "
            f"consecutive blocks of {interval} iterations tiling completed iterations {span.start + 1}..{span.end} "
            f"(per-epoch 1-based numbering mapped to global); throughput = {images_per_iter} images/iter x "
            f"{span.end - span.start} / that total"
        )

    def progress_of(self, run):
        g, r = _global(run.records[-1], _epoch_len(run.records)), run.records[-1]
        return Progress(
            last_iter=g if g is not None else r.iter,
            rate=None,
            extra={"epoch": r.epoch, "iter_in_epoch": r.iter, "mean_step_time": r.time},
        )
