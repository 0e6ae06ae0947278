"""STAND-IN log writers of the PyTorch implementations: detectron2, mmdetection, maskrcnn-benchmark.

Each replays the implementation's training loop over known iteration times and logs them the way its
source does (see formats.py for the sources); each returns the per-iteration times as the
implementation's own timer defines them.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import deque

from .sim import GREEN, RESET, clock_stamp, fake_losses, fmt_td, stderr_noise

# --------------------------------------------------------------------------- detectron2


def run_detectron2(n, times, clock, sink, opts):
    """detectron2 v0.1.2 train loop + IterationTimer + PeriodicWriter(CommonMetricPrinter) every 20.

    ``start_iter``: resume_or_load found a checkpoint; train(start_iter, max_iter) opens a new EventStorage,
    so the running mean restarts and the warm-up iterations count from there."""
    variant = opts.get("variant", "v0.1.2")  # v0.1 | v0.1.2 | v0.3
    start_iter = opts.get("start_iter", 0)
    schedule = opts.get("schedule_iters", n)
    rng = random.Random(opts.get("seed", 0) + 1)
    count, gavg = 0, 0.0  # fvcore HistoryBuffer(time): global running mean
    times_hist: list[float] = []
    data_hist: list[float] = []
    timed = []
    names = ["loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"]
    loss_hist: dict[str, list[float]] = {k: [] for k in names}
    sink.write(
        "stdout",
        f"{GREEN}[{clock_stamp(clock.now(), '%m/%d %H:%M:%S')} d2.engine.train_loop]: {RESET}"
        f"Starting training from iteration {start_iter}\n",
    )
    sink.write(
        "output/log.txt",
        f"[{clock_stamp(clock.now(), '%m/%d %H:%M:%S')}] d2.engine.train_loop INFO: "
        f"Starting training from iteration {start_iter}\n",
    )
    for k in range(start_iter, n):
        t0 = clock.now()  # IterationTimer.before_step
        clock.run(times[k - start_iter])
        sec = clock.now() - t0  # after_step of the first hook
        timed.append(sec)
        data_hist.append(0.1 * sec)
        for name, v in fake_losses(rng, names, k).items():
            loss_hist[name].append(v)
        if k - start_iter + 1 >= 3:  # iter_done >= warmup_iter
            times_hist.append(sec)
            count += 1
            gavg += (sec - gavg) / count
        stderr_noise(opts, sink, rng)
        if (k + 1) % 20 == 0 or k == n - 1:
            losses = {nm: statistics.median(v[-20:]) for nm, v in loss_hist.items()}
            losses = {"total_loss": sum(losses.values()), **losses}
            lf = "{:.4g}" if variant == "v0.3" else "{:.3f}"
            loss_s = "  ".join(f"{nm}: {lf.format(v)}" for nm, v in losses.items())
            if count:
                eta = fmt_td(statistics.median(times_hist[-1000:]) * (schedule - k))
                time_s = f"time: {gavg:.4f}  "
            else:
                eta, time_s = "N/A", ""
            data_s = f"data_time: {statistics.mean(data_hist[-20:]):.4f}  "
            lr = 0.02 * min(1.0, (k + 1) / 1000)
            lr_s = f"{lr:.5g}" if variant == "v0.3" else f"{lr:.6f}"
            lead = "" if variant == "v0.1" else " "
            msg = f"{lead}eta: {eta}  iter: {k}  {loss_s}  {time_s}{data_s}lr: {lr_s}  max_mem: 3961M"
            stamp = clock_stamp(clock.now(), "%m/%d %H:%M:%S")
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
    stamp0 = clock_stamp(clock.now(), "%Y%m%d_%H%M%S")
    wd = "work_dirs/mask_rcnn_r50_caffe_fpn_1x_coco"
    text_path, json_path = f"{wd}/{stamp0}.log", f"{wd}/{stamp0}.log.json"
    for msg in (
        "Start running, host: bench@node01, work_dir: /repo/" + wd,  # mmcv runner.py L361-363
        "workflow: [('train', 1)], max: 12 epochs",
    ):
        line = f"{clock_stamp(clock.now(), '%Y-%m-%d %H:%M:%S', millis=True)} - mmdet - INFO - {msg}\n"
        sink.write("stderr", line)
        sink.write(text_path, line)
    sink.write(
        json_path,
        json.dumps({"env_info": "sys.platform: linux\nPython: 3.7.7\nCUDA available: True", "seed": None}) + "\n",
    )
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
            for k, v in fake_losses(rng, names, g).items():
                buf_loss[k].append(92.0 + 5 * v if k == "acc" else v)
            stderr_noise(opts, sink, rng)
            if (inner + 1) % interval == 0:
                tm, dtm = statistics.mean(buf_time[-interval:]), statistics.mean(buf_data[-interval:])
                losses = {k: statistics.mean(v[-interval:]) for k, v in buf_loss.items()}
                losses["loss"] = sum(v for k, v in losses.items() if k.startswith("loss"))
                lr = 0.02 * min(1.0, 1 / 3 + (2 / 3) * (g + 1) / 500)
                time_sec_tot += tm * interval
                eta = fmt_td(time_sec_tot / (g + 1) * (schedule - g - 1))
                lr_s = f"{lr:.3e}" if lr_fmt == "mmcv0.6" else f"{lr:.5f}"
                text = (
                    f"Epoch [{epoch + 1}][{inner + 1}/{epoch_len}]\tlr: {lr_s}, eta: {eta}, time: {tm:.3f}, "
                    f"data_time: {dtm:.3f}, memory: 6836, " + ", ".join(f"{k}: {v:.4f}" for k, v in losses.items())
                )
                line = f"{clock_stamp(clock.now(), '%Y-%m-%d %H:%M:%S', millis=True)} - mmdet - INFO - {text}\n"
                sink.write("stderr", line)
                sink.write(text_path, line)
                rec = {
                    "mode": "train",
                    "epoch": epoch + 1,
                    "iter": inner + 1,
                    "lr": round(lr, 5),
                    "time": round(tm, 5),
                    "data_time": round(dtm, 5),
                    "memory": 6836,
                    **{k: round(v, 5) for k, v in losses.items()},
                }
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
    """maskrcnn_benchmark.engine.trainer.do_train with MetricLogger / SmoothedValue(window_size=20).

    ``start_iter``: the checkpointer found ``model_{start_iter:07d}.pth`` and the run continues from there
    with a fresh MetricLogger; ``checkpoint`` overrides the file name the log says it loaded."""
    schedule = opts.get("schedule_iters", 90000)
    start_iter = opts.get("start_iter", 0)
    ckpt = opts.get("checkpoint") or (
        f"./model_{start_iter:07d}.pth" if start_iter else "catalog://ImageNetPretrained/MSRA/R-50"
    )
    rng = random.Random(opts.get("seed", 0) + 3)
    names = ["loss", "loss_box_reg", "loss_classifier", "loss_mask", "loss_objectness", "loss_rpn_box_reg"]
    meters: dict[str, list] = {}  # name -> [deque(20), total, count]

    def update(**kw):
        for k, v in kw.items():
            m = meters.setdefault(k, [deque(maxlen=20), 0.0, 0])
            m[0].append(v)
            m[1] += v
            m[2] += 1

    def log(name, msg):
        line = f"{clock_stamp(clock.now(), '%Y-%m-%d %H:%M:%S', millis=True)} {name} INFO: {msg}\n"
        sink.write("stdout", line)
        sink.write("log.txt", line)

    log("maskrcnn_benchmark", "Using 8 GPUs")  # tools/train_net.py L176
    log("maskrcnn_benchmark.utils.checkpoint", f"Loading checkpoint from {ckpt}")  # utils/checkpoint.py L60
    log("maskrcnn_benchmark.trainer", "Start training")  # engine/trainer.py L57
    timed = []
    end = clock.now()
    for iteration in range(start_iter + 1, n + 1):
        clock.run(0.05 * times[iteration - 1 - start_iter])
        data_time = clock.now() - end
        clock.run(0.95 * times[iteration - 1 - start_iter])
        ls = fake_losses(rng, names[1:], iteration)
        update(loss=sum(ls.values()), **ls)
        batch_time = clock.now() - end
        end = clock.now()
        timed.append(batch_time)
        update(time=batch_time, data=data_time)
        stderr_noise(opts, sink, rng)
        if iteration % 20 == 0 or iteration == n:
            eta = fmt_td(meters["time"][1] / meters["time"][2] * (schedule - iteration))
            ms = "  ".join(f"{k}: {_torch_median(m[0]):.4f} ({m[1] / m[2]:.4f})" for k, m in meters.items())
            msg = "  ".join([f"eta: {eta}", f"iter: {iteration}", ms, f"lr: {0.02:.6f}", f"max mem: {4358:.0f}"])
            log("maskrcnn_benchmark.trainer", msg)
    return timed
