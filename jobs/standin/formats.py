"""STAND-IN log writers: the seven implementations' training-log formats, from known per-iteration times.

Nothing here trains anything.  Each writer replays a training loop whose iteration times come from a
`TimeModel` (base step time, warm-up, noise, stalls) and logs them the way the implementation's source
does at its pinned commit (the parser module of each format in launcher/parse/ cites the source lines):

* detectron2 v0.1.2: ``Starting training from iteration N``; fvcore HistoryBuffer global running mean
  of the step time from the run's 3rd iteration on, printed ``{:.4f}`` every 20 iterations (0-based
  ``iter: 19, 39, ...``); coloured stdout on rank 0 and plain ``output/log.txt``.  Option ``start_iter``:
  a run resumed from a checkpoint.
* mmdetection b0d845f / mmcv 0.5: ``Start running``; ``IterTimerHook`` times between successive
  ``after_iter``; the text logger prints the mean of the last 50, per-epoch 1-based numbering; stderr,
  ``work_dirs/<cfg>/<stamp>.log`` and ``.log.json`` (``round(x, 5)``, opened by a meta line).
* maskrcnn-benchmark 0ce8f6f: ``Using N GPUs``, ``Loading checkpoint from ...``, ``Start training``;
  ``SmoothedValue(20)``, ``time: median (global_avg)`` ``{:.4f}`` at 1-based iterations 20, 40, ...;
  stdout and ``./log.txt``.  Options ``start_iter`` (resumed from ``model_{:07d}.pth``, the average
  restarting there) and ``checkpoint`` (the file the log says it loaded).
* tensorpack caafda: ``Setup callbacks graph ...``; per-epoch ``Throughput (samples/sec)`` (``{:.5g}``)
  timed between before_epoch and after_epoch, epochs of 50 steps; every mpirun rank prints the
  main-loop lines, the chief the monitors; rank-0 ``train_log/maskrcnn/log.log`` keeps the ANSI
  colours; tqdm bars on stderr.
* SimpleDet 9187a1: ``total iter N``; MXNet-style Speedometer (rate over the last 10 batches, ``%.2f``),
  Asia/Shanghai ``MM-DD HH:MM:SS`` stamps; stderr and ``experiments/mask_r50v1_fpn_1x/log.txt``.
* Detectron: ``Called with args:`` / ``Building model:``; ``json_stats`` via print() every 20
  iterations (0-based), ``time`` = mean of LR-update + RunNet time since the reset after iteration
  start_iter + 20; stdout only.  Option ``start_iter``: ``Resuming from checkpoint ... at start iter N``.
* matterport: ``Starting at epoch N. LR=...``; Keras 2.2.5 Progbar; per-epoch total in whole seconds;
  stdout only.  Option ``validation_s``: a validation pass of that many seconds per epoch, inside the
  epoch's printed seconds, with ``val_*`` metrics on the line (the seed's diff turns validation off).

Each writer returns the per-iteration durations *as that implementation's timer defines them*
(`timed`), so a test knows the true throughput of any window.  It never looks at how our parsers
read the log.  The torchvision row has no stand-in: its log is written by jobs/torchvision/train.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from .other_writers import run_detectron, run_matterport, run_simpledet, run_tensorpack
from .pytorch_writers import run_detectron2, run_maskrcnn_benchmark, run_mmdetection
from .sim import FileSink, MemorySink, RealClock, SimClock, Simulation, TimeModel

__all__ = [
    "DEFAULT_START",
    "FORMATS",
    "FileSink",
    "FormatInfo",
    "MemorySink",
    "Simulation",
    "TimeModel",
    "default_images_per_iter",
    "simulate",
]


@dataclass(frozen=True)
class FormatInfo:
    run: Callable
    log: str  # what the row's config reads: a file relative to the cwd, or "combined" (captured output)
    images_per_iter: int = 16
    #: files the implementation opens for appending (detectron2 utils/logger.py L101 "a"; maskrcnn-benchmark's
    #: logging.FileHandler, utils/logger.py L20, default "a"; mmcv appends to <stamp>.log.json, text.py L106)
    appends: tuple[str, ...] = ()


FORMATS: dict[str, FormatInfo] = {
    "detectron2": FormatInfo(run_detectron2, "output/log.txt", appends=("output/log.txt",)),
    "mmdetection": FormatInfo(run_mmdetection, "work_dirs/mask_rcnn_r50_caffe_fpn_1x_coco/*.log.json"),
    "maskrcnn_benchmark": FormatInfo(run_maskrcnn_benchmark, "log.txt", appends=("log.txt",)),
    "tensorpack": FormatInfo(run_tensorpack, "train_log/maskrcnn/log.log", 8),
    "simpledet": FormatInfo(run_simpledet, "experiments/mask_r50v1_fpn_1x/log.txt"),
    "detectron": FormatInfo(run_detectron, "combined"),
    "matterport": FormatInfo(run_matterport, "combined"),
}

DEFAULT_START = dt.datetime(2020, 12, 31, 23, 58, 30, tzinfo=dt.timezone.utc).timestamp()


def simulate(
    fmt: str,
    iters: int,
    model: TimeModel | None = None,
    *,
    realtime: bool = False,
    sink=None,
    start: float | None = None,
    **opts,
) -> Simulation:
    """Run the stand-in for `fmt` up to completed iteration `iters`; the default start (UTC 2020-12-31
    23:58:30) makes yearless timestamps cross midnight and the new year in a few minutes of simulated time.

    With ``start_iter=N`` (detectron2, maskrcnn_benchmark, detectron) the run resumes after iteration N:
    its `timed` covers iterations N+1..iters and `Simulation.first_iter` is N.
    """
    try:
        info = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown stand-in format {fmt!r}; choose from {', '.join(sorted(FORMATS))}") from None
    model = model or TimeModel()
    opts.setdefault("images_per_iter", info.images_per_iter)
    opts.setdefault("seed", model.seed)
    if fmt == "tensorpack":
        opts.setdefault("ranks", opts["images_per_iter"])
    clock = RealClock() if realtime else SimClock(DEFAULT_START if start is None else start)
    sink = sink if sink is not None else MemorySink()
    times = model.times(iters + 200)  # writers that finish a whole epoch may run past `iters`
    timed = info.run(iters, times, clock, sink, opts)
    log = info.log
    if "*" in log and isinstance(sink, MemorySink):
        log = next(k for k in sink.streams if k.endswith(".log.json"))
    return Simulation(fmt, opts["images_per_iter"], timed, sink, log, opts.get("start_iter", 0))


def default_images_per_iter(fmt: str) -> int:
    return FORMATS[fmt].images_per_iter
