"""tensorpack caafda examples/FasterRCNN: rank-0 ``train_log/maskrcnn/log.log`` (ANSI-coloured), the
captured stdout of all ``mpirun`` ranks, or ``stats.json``.

Source semantics, tensorpack caafda8: after each epoch (``STEPS_PER_EPOCH``, 50 in the seed's recipe;
epochs 1-based) the main loop logs ``Epoch e (global_step g) finished`` (tensorpack/train/base.py L284);
then ``ThroughputTracker(samples_per_step=cfg.TRAIN.NUM_GPUS)`` (examples/FasterRCNN/train.py L93) puts
``Throughput (samples/sec)`` = steps x samples_per_step / seconds its timer ran, which runs only between
``before_epoch`` and ``after_epoch`` (tensorpack/callbacks/prof.py L328-350: epoch-end callbacks
excluded), and ``ScalarPrinter`` prints it as ``{:.5g}`` (tensorpack/callbacks/monitor.py L474).  Each
epoch's time is therefore ``steps x images_per_iter / value`` (samples_per_step = NUM_GPUS = images
per step, one image per GPU), and a window of whole epochs costs the sum: the harmonic mean of the
rates, not their mean.

Under mpirun every rank prints the main-loop lines (``Start Epoch``, ``... finished``), so stdout holds
up to eight copies of those; ScalarPrinter is a chief-only monitor, so ``Throughput`` lines come from
rank 0 only.  Each value is attributed to the latest epoch announced as finished before it.  A run
logs ``Setup callbacks graph ...`` (tensorpack/train/base.py L209) before its first epoch; the
example's ``set_logger_dir(logdir, 'd')`` (examples/FasterRCNN/train.py L54) starts each run's log.log
afresh.  Stamps ``[%m%d %H:%M:%S @file:line]`` are local time without a year (utils/logger.py L31, L53).
"""

from __future__ import annotations

import json
import math
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
    clean_lines,
    dedupe,
    span_from_intervals,
    yearless,
)

STAMP = r"\[(?P<mo>\d{2})(?P<d>\d{2}) (?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2}) @[\w.]+:\d+\]\s*"
FINISHED_RE = re.compile(STAMP + r"Epoch (?P<epoch>\d+) \(global_step (?P<gs>\d+)\) finished, time:\s*(?P<dur>.+?)\.?$")
THROUGHPUT_RE = re.compile(STAMP + r"Throughput \(samples/sec\): (?P<thr>[-+.\deE]+|nan|inf)\s*$")
START_RE = re.compile(r"\bSetup callbacks graph \.\.\.")


@dataclass(frozen=True)
class TpRecord:
    epoch: int  # 1-based
    global_step: int  # steps completed at the end of this epoch
    throughput: float  # samples/sec over this epoch's steps
    rel_err: float  # half a unit in the 5th significant digit, relative
    wall: Stamp | None = None


@dataclass(frozen=True)
class TpFinished:
    """``Epoch e (global_step g) finished``: printed by every rank (up to 8 copies on stdout)."""

    epoch: int
    global_step: int


def _rel_err_5g(raw: str) -> float:
    """Relative half-unit of the 5th significant digit of a '{:.5g}' value.

    `.5g` drops trailing zeros, so "50" stands for 50.000: the resolution is that of the 5th
    significant digit, not of the last digit printed (which would claim a 1% error for "50").
    A value printed with more digits than five (another version's format) is taken at its own."""
    mant = raw.lower().split("e")[0].lstrip("+-")
    digits = mant.replace(".", "").lstrip("0")
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    exp = int(raw.lower().split("e")[1]) if "e" in raw.lower() else 0
    val = abs(float(raw))
    if val == 0 or not digits or not math.isfinite(val):
        return float("inf")
    printed_unit = 10.0 ** (exp - decimals)
    fifth_digit_unit = 10.0 ** (math.floor(math.log10(val)) - 4)
    return 0.5 * min(printed_unit, fifth_digit_unit) / val


def _from_stats_json(text: str) -> list[TpRecord] | None:
    s = text.strip() if isinstance(text, str) else (text.whole_if("[") or "").strip()
    if not s.startswith("["):
        return None
    try:
        data = json.loads(s)
    except json.JSONDecodeError:
        return None
    out = []
    for d in data if isinstance(data, list) else []:
        if isinstance(d, dict) and "Throughput (samples/sec)" in d and "global_step" in d:
            # stats.json stores full-precision floats
            out.append(
                TpRecord(int(d.get("epoch_num", 0)), int(d["global_step"]), float(d["Throughput (samples/sec)"]), 1e-15)
            )
    return out


def _wall(m: re.Match) -> Stamp:
    return yearless(f"{m['mo']}{m['d']} {m['H']}:{m['M']}:{m['S']}", *(int(m[k]) for k in ("mo", "d", "H", "M", "S")))


def scan(text: str) -> list[Run]:
    """Finished lines (TpFinished) and throughput records (TpRecord), grouped by run."""
    b = RunBuilder()
    js = _from_stats_json(text)
    if js is not None:
        for r in js:
            b.add(1, TpFinished(r.epoch, r.global_step), iteration=r.global_step)
            b.add(1, r)
        return b.runs
    current: tuple[int, int] | None = None
    for no, line in enumerate(clean_lines(text), 1):
        m = FINISHED_RE.search(line)
        if m:
            ep = (int(m["epoch"]), int(m["gs"]))
            if current is None or ep[1] >= current[1]:
                current = ep
            b.add(no, TpFinished(*ep), iteration=ep[1], wall=_wall(m))
            continue
        m = THROUGHPUT_RE.search(line)
        if m and current is not None:
            b.add(no, TpRecord(current[0], current[1], float(m["thr"]), _rel_err_5g(m["thr"]), _wall(m)), wall=_wall(m))
        elif START_RE.search(line):
            b.mark(no, "Setup callbacks graph ...")
            current = None
    return b.runs


def _split(run: Run) -> tuple[list[TpRecord], list[tuple[int, int]]]:
    return (
        [r for r in run.records if isinstance(r, TpRecord)],
        [(r.epoch, r.global_step) for r in run.records if isinstance(r, TpFinished)],
    )


def records(text: str) -> tuple[list[TpRecord], list[tuple[int, int]]]:
    """Epoch records with a throughput, and every (epoch, global_step) announced as finished (every run)."""
    recs: list[TpRecord] = []
    finished: list[tuple[int, int]] = []
    for run in scan(text):
        r, f = _split(run)
        recs += r
        finished += f
    return recs, finished


def _steps_per_epoch(finished: list[tuple[int, int]]) -> int:
    eps = sorted(set(finished))
    diffs = Counter(g2 - g1 for (e1, g1), (e2, g2) in zip(eps, eps[1:]) if e2 == e1 + 1)
    if diffs:
        return diffs.most_common(1)[0][0]
    e, g = eps[0]
    if e >= 1 and g % e == 0:
        return g // e
    raise ParseError(f"tensorpack log: cannot tell the steps per epoch from epoch {e} ending at global_step {g}")


class TensorpackParser(LogParser, name="tensorpack", scan=scan, what="'Epoch N (global_step G) finished' lines"):
    def span(self, run, window, images_per_iter):
        recs, finished = _split(run)
        if not finished:
            raise ParseError(
                "tensorpack log has Throughput lines but no 'Epoch N (global_step G) finished' line to "
                "place them; parse the whole log.log (or captured stdout)"
            )
        spe = _steps_per_epoch(finished)
        if not recs:
            raise ParseError(
                "tensorpack log has epochs but no 'Throughput (samples/sec)' lines: ThroughputTracker "
                "was not among the callbacks, or this is a non-chief rank's output"
            )
        by_step = dedupe(self.name, [(r.global_step, (r.throughput, r.rel_err)) for r in recs])
        blocks = []
        for g, (thr, rel) in by_step.items():
            ok = math.isfinite(thr) and thr > 0
            secs = spe * images_per_iter / thr if ok else float("nan")
            blocks.append((g - spe, g, secs, secs * rel / max(1 - rel, 1e-300) if ok else 0.0))
        span = span_from_intervals(self.name, blocks, window, max(g for _, g in finished))
        return span

    def method(self, run, span, images_per_iter):
        spe, n = _steps_per_epoch(_split(run)[1]), span.end - span.start
        return (
            f"harmonic mean of tensorpack's per-epoch 'Throughput (samples/sec)' ({{:.5g}}) over epochs "
            f"{span.start // spe + 1}..{span.end // spe} ({spe} steps each): {n} x {images_per_iter} images / "
            f"sum over epochs of ({spe} x {images_per_iter} / throughput), i.e. completed steps "
            f"{span.start + 1}..{span.end}; assumes samples_per_step = images_per_iter (one image per GPU); "
            "excludes epoch-end callbacks, by tensorpack's design"
        )

    def progress_of(self, run):
        recs, finished = _split(run)
        if not finished:
            return None
        return Progress(last_iter=max(g for _, g in finished), rate=recs[-1].throughput if recs else None)
