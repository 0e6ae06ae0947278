"""STAND-IN log writers: the seven implementations' training-log formats, from known per-iteration times.

Nothing here trains anything.  Each writer replays a training loop whose iteration times come from a
`TimeModel` (base step time, warm-up, noise, stalls) and logs them the way the implementation's
source does (research reference, /work/shared/reference/log-formats.md, "source semantics"):

* detectron2 v0.1.2: fvcore HistoryBuffer global running mean of the step time from the 3rd
  iteration on, printed ``{:.4f}`` every 20 iterations (0-based ``iter: 19, 39, ...``); coloured stdout
  on rank 0 and plain ``output/log.txt``.
* mmdetection b0d845f / mmcv 0.5: ``IterTimerHook`` times between successive ``after_iter``; the text
  logger prints the mean of the last 50 (buffer cleared after each line), per-epoch 1-based numbering;
  stderr, ``work_dirs/<cfg>/<stamp>.log`` and ``.log.json`` (``round(x, 5)``).
* maskrcnn-benchmark 0ce8f6f: ``SmoothedValue(20)``, ``time: median (global_avg)`` ``{:.4f}`` at
  1-based iterations 20, 40, ...; stdout and ``./log.txt``.
* tensorpack caafda: per-epoch ``Throughput (samples/sec)`` (``{:.5g}``) timed between before_epoch and
  after_epoch, epochs of 50 steps; every mpirun rank prints the main-loop lines, the chief the
  monitors; rank-0 ``train_log/maskrcnn/log.log`` keeps the ANSI colours; tqdm bars on stderr.
* SimpleDet 9187a1: MXNet-style Speedometer (rate over the last 10 batches, ``%.2f``), Asia/Shanghai
  ``MM-DD HH:MM:SS`` stamps; stderr and ``experiments/mask_r50v1_fpn_1x/log.txt``.
* Detectron: ``json_stats`` via print() every 20 iterations (0-based), ``time`` = mean of LR-update +
  RunNet time since the reset after iteration 20; stdout only.
* matterport: Keras 2.2.5 Progbar; per-epoch total in whole seconds; stdout only.

Each writer returns the per-iteration durations *as that implementation's timer defines them*
(`timed`), so a test knows the true throughput of any window.  It never looks at how our parsers
read the log.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import random
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

GREEN, RESET = "\x1b[32m", "\x1b[0m"


# --------------------------------------------------------------------------- time model and clocks


@dataclass
class TimeModel:
    """Per-iteration times: base x warm-up factor x noise, plus stalls."""

    base: float = 0.25  # seconds per iteration once warm
    warmup_iters: int = 0  # iterations whose time decays linearly from base*warmup_factor to base
    warmup_factor: float = 1.0
    noise: float = 0.0  # relative standard deviation (normal, clipped at 5% of base)
    stall_every: int = 0  # every N-th iteration stalls (data loader, GC), 0: never
    stall: float = 0.0  # extra seconds of a stall
    seed: int = 0

    def times(self, n: int) -> list[float]:
        rng = random.Random(self.seed)
        out = []
        for i in range(n):
            t = self.base
            if i < self.warmup_iters:
                t *= self.warmup_factor + (1.0 - self.warmup_factor) * i / max(1, self.warmup_iters)
            t *= max(0.05, 1.0 + self.noise * rng.gauss(0.0, 1.0)) if self.noise else 1.0
            if self.stall_every and (i + 1) % self.stall_every == 0:
                t += self.stall
            out.append(t)
        return out


class SimClock:
    """Simulated time: `run` advances it instantly (the --fast mode and the tests)."""

    def __init__(self, start: float):
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def run(self, seconds: float) -> None:
        self.t += seconds


class RealClock:
    """Real time: `run` sleeps, so a live display sees the log grow at the modelled pace."""

    def now(self) -> float:
        return time.time()

    def run(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


# --------------------------------------------------------------------------- where the lines go


class MemorySink:
    """Collects every stream in memory; `combined` is stdout and stderr interleaved as a pipe would capture them."""

    def __init__(self) -> None:
        self.streams: dict[str, io.StringIO] = {}
        self._combined = io.StringIO()

    def write(self, stream: str, text: str) -> None:
        self.streams.setdefault(stream, io.StringIO()).write(text)
        if stream in ("stdout", "stderr"):
            self._combined.write(text)

    def text(self, stream: str) -> str:
        return self.streams[stream].getvalue() if stream in self.streams else ""

    @property
    def combined(self) -> str:
        return self._combined.getvalue()


class FileSink:
    """Writes stdout/stderr to this process's streams and files relative to `root`, flushing every write."""

    def __init__(self, root: str | Path = ".") -> None:
        self.root = Path(root)
        self._files: dict[str, io.TextIOBase] = {}

    def write(self, stream: str, text: str) -> None:
        if stream == "stdout":
            f = sys.stdout
        elif stream == "stderr":
            f = sys.stderr
        else:
            f = self._files.get(stream)
            if f is None:
                path = self.root / stream
                path.parent.mkdir(parents=True, exist_ok=True)
                f = self._files[stream] = open(path, "w", encoding="utf-8")
        f.write(text)
        f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()


# --------------------------------------------------------------------------- helpers


def _fmt_td(seconds: float) -> str:
    return str(dt.timedelta(seconds=int(seconds)))  # '1 day, 2:03:04' past a day


def _stamp(t: float, fmt: str, tz_hours: float = 0.0, millis: bool = False) -> str:
    d = dt.datetime.fromtimestamp(t, dt.timezone(dt.timedelta(hours=tz_hours)))
    s = d.strftime(fmt)
    if millis:
        s += ",%03d" % int((t - math.floor(t)) * 1000)
    return s


def _losses(rng: random.Random, names: list[str], it: int) -> dict[str, float]:
    return {n: max(1e-4, (0.8 + 0.2 * rng.random()) * 1.5 / (1 + it / 200) / len(names)) for n in names}


def _warn(opts: dict, sink, rng: random.Random, prob: float = 0.02) -> None:
    """Unrelated stderr noise (deprecation warnings, library chatter) as real captures have."""
    if opts.get("warnings", True) and rng.random() < prob:
        sink.write("stderr", "/usr/lib/python3.7/site-packages/torch/nn/functional.py:2351: UserWarning: "
                             "Default upsampling behavior when mode=bilinear is changed\n  warnings.warn(\n")


@dataclass
class Simulation:
    """What a stand-in run produced: the sink (streams/files) and the truth."""

    fmt: str
    images_per_iter: int
    timed: list[float]  # per completed iteration (index c-1), seconds as the implementation times them
    sink: object
    log_stream: str  # where the row's parser should read (a file path, or "combined" for the captured output)

    def true_throughput(self, window: tuple[int, int]) -> float:
        s, e = window
        return self.images_per_iter * (e - s) / sum(self.timed[s:e])

    def log_text(self) -> str:
        if self.log_stream == "combined":
            return self.sink.combined
        return self.sink.text(self.log_stream)


# --------------------------------------------------------------------------- detectron2


def run_detectron2(n, times, clock, sink, opts):
    """detectron2 v0.1.2 train loop + IterationTimer + PeriodicWriter(CommonMetricPrinter) every 20."""
    variant = opts.get("variant", "v0.1.2")  # v0.1 | v0.1.2 | v0.3
    schedule = opts.get("schedule_iters", n)
    rng = random.Random(opts.get("seed", 0) + 1)
    count, gavg = 0, 0.0  # fvcore HistoryBuffer(time): global running mean
    times_hist: list[float] = []
    data_hist: list[float] = []
    timed = []
    names = ["loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"]
    loss_hist: dict[str, list[float]] = {k: [] for k in names}
    sink.write("stdout", f"{GREEN}[{_stamp(clock.now(), '%m/%d %H:%M:%S')} d2.engine.train_loop]: {RESET}"
                         "Starting training from iteration 0\n")
    sink.write("output/log.txt", f"[{_stamp(clock.now(), '%m/%d %H:%M:%S')}] d2.engine.train_loop INFO: "
                                 "Starting training from iteration 0\n")
    for k in range(n):
        t0 = clock.now()  # IterationTimer.before_step
        clock.run(times[k])
        sec = clock.now() - t0  # after_step of the first hook
        timed.append(sec)
        data_hist.append(0.1 * sec)
        for name, v in _losses(rng, names, k).items():
            loss_hist[name].append(v)
        if k + 1 >= 3:  # iter_done >= warmup_iter
            times_hist.append(sec)
            count += 1
            gavg += (sec - gavg) / count
        _warn(opts, sink, rng)
        if (k + 1) % 20 == 0 or k == n - 1:
            losses = {nm: statistics.median(v[-20:]) for nm, v in loss_hist.items()}
            losses = {"total_loss": sum(losses.values()), **losses}
            lf = "{:.4g}" if variant == "v0.3" else "{:.3f}"
            loss_s = "  ".join(f"{nm}: {lf.format(v)}" for nm, v in losses.items())
            if count:
                eta = _fmt_td(statistics.median(times_hist[-1000:]) * (schedule - k))
                time_s = f"time: {gavg:.4f}  "
            else:
                eta, time_s = "N/A", ""
            data_s = f"data_time: {statistics.mean(data_hist[-20:]):.4f}  "
            lr = 0.02 * min(1.0, (k + 1) / 1000)
            lr_s = f"{lr:.5g}" if variant == "v0.3" else f"{lr:.6f}"
            lead = "" if variant == "v0.1" else " "
            msg = f"{lead}eta: {eta}  iter: {k}  {loss_s}  {time_s}{data_s}lr: {lr_s}  max_mem: 3961M"
            stamp = _stamp(clock.now(), "%m/%d %H:%M:%S")
            sink.write("stdout", f"{GREEN}[{stamp} d2.utils.events]: {RESET}{msg}\n")
            sink.write("output/log.txt", f"[{stamp}] d2.utils.events INFO: {msg}\n")
    return timed


# --------------------------------------------------------------------------- mmdetection


def run_mmdetection(n, times, clock, sink, opts):
    """mmcv 0.5 EpochBasedRunner: IterTimerHook + TextLoggerHook(interval=50), per-epoch 1-based numbering."""
    interval = opts.get("interval", 50)
    epoch_len = opts.get("epoch_len", 7330)
    lr_fmt = opts.get("variant", "mmcv0.5")  # mmcv0.5: lr {:.5f} | mmcv0.6: lr {:.3e}
    schedule = opts.get("schedule_iters", 12 * epoch_len)
    rng = random.Random(opts.get("seed", 0) + 2)
    stamp0 = _stamp(clock.now(), "%Y%m%d_%H%M%S")
    wd = "work_dirs/mask_rcnn_r50_caffe_fpn_1x_coco"
    text_path, json_path = f"{wd}/{stamp0}.log", f"{wd}/{stamp0}.log.json"
    sink.write(json_path, json.dumps({"env_info": "sys.platform: linux\nPython: 3.7.7\nCUDA available: True",
                                      "seed": None}) + "\n")
    names = ["loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "acc", "loss_bbox", "loss_mask"]
    timed, time_sec_tot, g = [], 0.0, 0
    epoch = 0
    while g < n:
        t = clock.now()  # IterTimerHook.before_epoch
        buf_time, buf_data, buf_loss = [], [], {k: [] for k in names}
        for inner in range(epoch_len):
            if g >= n:
                break
            clock.run(0.1 * times[g])
            data_time = clock.now() - t  # before_iter
            clock.run(0.9 * times[g])
            it_time = clock.now() - t  # after_iter
            t = clock.now()
            timed.append(it_time)
            buf_time.append(it_time)
            buf_data.append(data_time)
            for k, v in _losses(rng, names, g).items():
                buf_loss[k].append(92.0 + 5 * v if k == "acc" else v)
            _warn(opts, sink, rng)
            if (inner + 1) % interval == 0:
                tm, dtm = statistics.mean(buf_time[-interval:]), statistics.mean(buf_data[-interval:])
                losses = {k: statistics.mean(v[-interval:]) for k, v in buf_loss.items()}
                losses["loss"] = sum(v for k, v in losses.items() if k.startswith("loss"))
                lr = 0.02 * min(1.0, 1 / 3 + (2 / 3) * (g + 1) / 500)
                time_sec_tot += tm * interval
                eta = _fmt_td(time_sec_tot / (g + 1) * (schedule - g - 1))
                lr_s = f"{lr:.3e}" if lr_fmt == "mmcv0.6" else f"{lr:.5f}"
                text = (f"Epoch [{epoch + 1}][{inner + 1}/{epoch_len}]\tlr: {lr_s}, eta: {eta}, time: {tm:.3f}, "
                        f"data_time: {dtm:.3f}, memory: 6836, "
                        + ", ".join(f"{k}: {v:.4f}" for k, v in losses.items()))
                line = f"{_stamp(clock.now(), '%Y-%m-%d %H:%M:%S', millis=True)} - mmdet - INFO - {text}\n"
                sink.write("stderr", line)
                sink.write(text_path, line)
                rec = {"mode": "train", "epoch": epoch + 1, "iter": inner + 1, "lr": round(lr, 5),
                       "time": round(tm, 5), "data_time": round(dtm, 5), "memory": 6836,
                       **{k: round(v, 5) for k, v in losses.items()}}
                sink.write(json_path, json.dumps(rec) + "\n")
                buf_time.clear(), buf_data.clear(), [v.clear() for v in buf_loss.values()]
            g += 1
        epoch += 1
    return timed


# --------------------------------------------------------------------------- maskrcnn-benchmark


def _torch_median(values) -> float:
    """torch.Tensor.median(): the lower of the two middle values for an even count."""
    s = sorted(values)
    return s[(len(s) - 1) // 2]


def run_maskrcnn_benchmark(n, times, clock, sink, opts):
    """maskrcnn_benchmark.engine.trainer.do_train with MetricLogger / SmoothedValue(window_size=20)."""
    schedule = opts.get("schedule_iters", 90000)
    rng = random.Random(opts.get("seed", 0) + 3)
    names = ["loss", "loss_box_reg", "loss_classifier", "loss_mask", "loss_objectness", "loss_rpn_box_reg"]
    meters: dict[str, list] = {}  # name -> [deque(20), total, count]

    def update(**kw):
        for k, v in kw.items():
            m = meters.setdefault(k, [deque(maxlen=20), 0.0, 0])
            m[0].append(v)
            m[1] += v
            m[2] += 1

    timed = []
    end = clock.now()
    for iteration in range(1, n + 1):
        clock.run(0.05 * times[iteration - 1])
        data_time = clock.now() - end
        clock.run(0.95 * times[iteration - 1])
        ls = _losses(rng, names[1:], iteration)
        update(loss=sum(ls.values()), **ls)
        batch_time = clock.now() - end
        end = clock.now()
        timed.append(batch_time)
        update(time=batch_time, data=data_time)
        _warn(opts, sink, rng)
        if iteration % 20 == 0 or iteration == n:
            eta = _fmt_td(meters["time"][1] / meters["time"][2] * (schedule - iteration))
            ms = "  ".join(f"{k}: {_torch_median(m[0]):.4f} ({m[1] / m[2]:.4f})" for k, m in meters.items())
            msg = "  ".join([f"eta: {eta}", f"iter: {iteration}", ms, f"lr: {0.02:.6f}", f"max mem: {4358:.0f}"])
            line = f"{_stamp(clock.now(), '%Y-%m-%d %H:%M:%S', millis=True)} maskrcnn_benchmark.trainer INFO: {msg}\n"
            sink.write("stdout", line)
            sink.write("log.txt", line)
    return timed


# --------------------------------------------------------------------------- tensorpack


def _humanize(sec: float) -> str:
    """tensorpack.utils.utils.humanize_time_delta."""
    if sec < 60:
        return "{:.3g} seconds".format(sec)
    t = dt.datetime(2000, 1, 1) + dt.timedelta(seconds=int(sec))
    vals = [int(sec // 86400), t.hour, t.minute, t.second]
    return " ".join(f"{v} {u}{'s' if v > 1 else ''}" for v, u in zip(vals, ["day", "hour", "minute", "second"]) if v > 0)


def run_tensorpack(n, times, clock, sink, opts):
    """tensorpack main loop (epochs of STEPS_PER_EPOCH) + ThroughputTracker + ScalarPrinter, under mpirun."""
    spe = opts.get("steps_per_epoch", 50)
    ranks = opts.get("ranks", 8)
    overhead = opts.get("epoch_end_overhead", 0.7)  # callbacks after each epoch, outside the epoch timer
    rng = random.Random(opts.get("seed", 0) + 4)
    logfile = "train_log/maskrcnn/log.log"

    def log(msg, where, chief_only=False):
        line = f"{GREEN}[{_stamp(clock.now(), '%m%d %H:%M:%S')} @{where}]{RESET} {msg}\n"
        sink.write(logfile, line)  # rank 0's file handler, same coloured formatter
        copies = 1 if chief_only else ranks
        order = list(range(copies))
        rng.shuffle(order)  # mpirun forwards the ranks' lines in whatever order they come
        for _ in order:
            sink.write("stdout", line)

    timed, g = [], 0
    epochs = math.ceil(n / spe)
    for epoch in range(1, epochs + 1):
        log(f"Start Epoch {epoch} ...", "base.py:275")
        t0 = clock.now()  # ThroughputTracker._before_epoch
        for step in range(spe):
            s0 = clock.now()
            clock.run(times[g])
            timed.append(clock.now() - s0)
            g += 1
            if step % 10 == 9 or step == spe - 1:  # tqdm bar, every rank, on stderr
                el = clock.now() - t0
                for _ in range(ranks):
                    sink.write("stderr", f"\r{int(100 * (step + 1) / spe):3d}%|{'#' * ((step + 1) * 20 // spe):20s}|"
                                         f"{step + 1}/{spe}[{int(el) // 60:02d}:{int(el) % 60:02d}<00:00,"
                                         f"{(step + 1) / max(el, 1e-9):5.2f}it/s]" + ("\n" if step == spe - 1 else ""))
        secs = clock.now() - t0  # _after_epoch
        log(f"Epoch {epoch} (global_step {g}) finished, time:{_humanize(secs)}.", "base.py:285")
        clock.run(overhead)
        thr = spe * ranks / secs
        scalars = {"GPUUtil/0": 95.0 + rng.random(), "HostFreeMemory (GB)": 32.8, "PeakMemory(MB)/gpu:0": 7201.6,
                   "QueueInput/queue_size": 49.8, "Throughput (samples/sec)": thr, "learning_rate": 0.01,
                   "total_cost": 2.0 / (1 + g / 300), "wd_cost": 0.6169}
        log("Estimated Time Left: " + _humanize(secs * (opts.get("max_epoch", 360) - epoch)), "misc.py:109",
            chief_only=True)
        for k in sorted(scalars):
            log(f"{k}: {scalars[k]:.5g}", "monitor.py:474", chief_only=True)
    return timed


# --------------------------------------------------------------------------- SimpleDet


def run_simpledet(n, times, clock, sink, opts):
    """SimpleDet's Speedometer(batch_size, frequent=10), Asia/Shanghai stamps, variant with/without Iter:/Lr:."""
    freq = opts.get("frequent", 10)
    bs = opts.get("images_per_iter", 16)
    epoch_len = opts.get("epoch_len", 7330)
    later = opts.get("variant", "9187a1") == "later"
    rng = random.Random(opts.get("seed", 0) + 5)
    path = "experiments/mask_r50v1_fpn_1x/log.txt"
    total = opts.get("schedule_iters", 6 * epoch_len)

    def log(msg):
        line = f"{_stamp(clock.now(), '%m-%d %H:%M:%S', tz_hours=8)} {msg}\n"
        sink.write("stderr", line)
        sink.write(path, line)

    timed, g, epoch = [], 0, 0
    init, tic, last_count = False, 0.0, -1
    while g < n:
        e0 = clock.now()
        metrics = {"RpnAcc": 0.55, "RpnL1": 1.1, "RcnnAcc": 0.54, "RcnnL1": 2.8}
        for nbatch in range(epoch_len):
            if g >= n:
                break
            s0 = clock.now()
            clock.run(times[g])
            timed.append(clock.now() - s0)
            for k in metrics:
                metrics[k] += 0.001 * rng.random()
            _warn(opts, sink, rng)
            # Speedometer.__call__(BatchEndParam(epoch, nbatch, ...))
            if last_count > nbatch:
                init = False
            last_count = nbatch
            if init:
                if nbatch % freq == 0:
                    speed = freq * bs / (clock.now() - tic)
                    head = f"Epoch[{epoch}] Batch [{nbatch}]\t"
                    if later:
                        head += f"Iter: {g}/{total}\tLr: {0.02:.5f}\t"
                    log(head + f"Speed: {speed:.2f} samples/sec\tTrain-"
                        + "".join(f"{k}={v:f},\t" for k, v in metrics.items()))
                    tic = clock.now()
            else:
                init, tic = True, clock.now()
            g += 1
        else:
            for k, v in metrics.items():
                log(f"Epoch[{epoch}] Train-{k}={v:f}")
            log(f"Epoch[{epoch}] Time cost={clock.now() - e0:.3f}")
        epoch += 1
    return timed


# --------------------------------------------------------------------------- Detectron


def run_detectron(n, times, clock, sink, opts):
    """Detectron tools/train_net.py loop + TrainingStats: json_stats every 20 (0-based), timer reset after iter 20."""
    quoted = opts.get("variant", "quoted") == "quoted"
    net_share = opts.get("net_share", 0.97)  # the rest: UpdateIterStats (blob fetch), outside the timer
    schedule = opts.get("schedule_iters", 90000)
    rng = random.Random(opts.get("seed", 0) + 6)
    total, calls = 0.0, 0
    timed = []
    sink.write("stdout", "INFO train.py: 193: Building model: generalized_rcnn\n")
    for cur_iter in range(n):
        t0 = clock.now()  # IterTic
        clock.run(net_share * times[cur_iter])  # LR update + workspace.RunNet
        diff = clock.now() - t0  # IterToc
        total += diff
        calls += 1
        timed.append(diff)
        clock.run((1 - net_share) * times[cur_iter])  # UpdateIterStats
        _warn(opts, sink, rng)
        if cur_iter % 20 == 0 or cur_iter == n - 1:
            avg = total / calls
            stats = {"accuracy_cls": 0.9 + 0.05 * rng.random(), "eta": _fmt_td(avg * (schedule - cur_iter)),
                     "iter": cur_iter, "loss": 1.0 / (1 + cur_iter / 300), "loss_bbox": 0.2, "loss_cls": 0.3,
                     "loss_mask": 0.4, "lr": 0.02, "mb_qsize": 64, "mem": 3084, "time": avg}
            for lvl in range(2, 7):
                stats[f"loss_rpn_bbox_fpn{lvl}"] = 0.01 * rng.random()
                stats[f"loss_rpn_cls_fpn{lvl}"] = 0.01 * rng.random()
            parts = []
            for k in sorted(stats):
                v = stats[k]
                if isinstance(v, float):
                    parts.append(f'"{k}": "{v:.6f}"' if quoted else f'"{k}": {v:.6f}')
                else:
                    parts.append(f'"{k}": {json.dumps(v)}')
            sink.write("stdout", "json_stats: {" + ", ".join(parts) + "}\n")
        if cur_iter == 20:  # ResetIterTimer after start_iter + LOG_PERIOD
            total, calls = 0.0, 0
    return timed


# --------------------------------------------------------------------------- matterport (Keras Progbar)


def run_matterport(n, times, clock, sink, opts):
    """Keras 2.2.5 fit_generator(verbose=1): ProgbarLogger prints per step, the epoch total in whole seconds."""
    spe = opts.get("steps_per_epoch", 50)
    epochs_total = opts.get("epochs", 40)
    tty = opts.get("tty", False)
    overhead = opts.get("epoch_end_overhead", 1.5)  # ModelCheckpoint .h5 save + TensorBoard, after the Progbar
    rng = random.Random(opts.get("seed", 0) + 7)
    names = ["loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"]
    timed, g = [], 0
    sink.write("stdout", "Starting at epoch 0. LR=0.02\n\nCheckpoint Path: /logs/coco20200101T0000/mask_rcnn_coco_{epoch:04d}.h5\n")
    for epoch in range(1, math.ceil(n / spe) + 1):
        sink.write("stdout", f"Epoch {epoch}/{epochs_total}\n")
        start = clock.now()  # Progbar created in on_epoch_begin
        last_update, total_width = 0.0, 0
        sums = {k: 0.0 for k in names}
        numdigits = len(str(spe))
        for step in range(1, spe + 1):
            s0 = clock.now()
            clock.run(times[g])
            timed.append(clock.now() - s0)
            g += 1
            for k, v in _losses(rng, names, g).items():
                sums[k] += v
            now = clock.now()
            if step < spe and now - last_update < 0.05:
                continue  # Progbar interval throttle
            bar = ("%" + str(numdigits) + "d/%d [") % (step, spe)
            prog_width = int(30 * step / spe)
            if prog_width > 0:
                bar += "=" * (prog_width - 1) + (">" if step < spe else "=")
            bar += "." * (30 - prog_width) + "]"
            if step < spe:
                eta = (now - start) / step * (spe - step)
                eta_s = ("%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60) if eta > 3600
                         else "%d:%02d" % (eta // 60, eta % 60) if eta > 60 else "%ds" % eta)
                info = " - ETA: " + eta_s
            else:
                tpu = (now - start) / step
                info = " - %.0fs" % (now - start)
                info += (" %.0fs/step" % tpu if tpu >= 1 else " %.0fms/step" % (tpu * 1e3) if tpu >= 1e-3
                         else " %.0fus/step" % (tpu * 1e6))
            for k in names:
                avg = sums[k] / step
                info += " - %s:" % k + (" %.4f" % avg if abs(avg) > 1e-3 else " %.4e" % avg)
            prefix = ("\b" * total_width + "\r") if tty else "\n"
            total_width = len(bar) + len(info)
            sink.write("stdout", prefix + bar + info + ("\n" if step == spe else ""))
            last_update = now
        clock.run(overhead)
        if g >= n:
            break
    return timed


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class FormatInfo:
    run: Callable
    log: str  # what the row's config reads: a file relative to the cwd, or "combined" (captured output)
    images_per_iter: int = 16


FORMATS: dict[str, FormatInfo] = {
    "detectron2": FormatInfo(run_detectron2, "output/log.txt"),
    "mmdetection": FormatInfo(run_mmdetection, "work_dirs/mask_rcnn_r50_caffe_fpn_1x_coco/*.log.json"),
    "maskrcnn_benchmark": FormatInfo(run_maskrcnn_benchmark, "log.txt"),
    "tensorpack": FormatInfo(run_tensorpack, "train_log/maskrcnn/log.log", 8),
    "simpledet": FormatInfo(run_simpledet, "experiments/mask_r50v1_fpn_1x/log.txt"),
    "detectron": FormatInfo(run_detectron, "combined"),
    "matterport": FormatInfo(run_matterport, "combined"),
}

DEFAULT_START = dt.datetime(2020, 12, 31, 23, 58, 30, tzinfo=dt.timezone.utc).timestamp()


def simulate(fmt: str, iters: int, model: TimeModel | None = None, *, realtime: bool = False, sink=None,
             start: float | None = None, **opts) -> Simulation:
    """Run the stand-in for `fmt` for `iters` iterations; the default start (UTC 2020-12-31 23:58:30)
    makes yearless timestamps cross midnight and the new year in a few minutes of simulated time."""
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
    return Simulation(fmt, opts["images_per_iter"], timed, sink, log)


def default_images_per_iter(fmt: str) -> int:
    return FORMATS[fmt].images_per_iter


