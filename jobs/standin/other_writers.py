"""STAND-IN log writers of tensorpack, SimpleDet, Detectron (Caffe2) and matterport (Keras).

Each replays the implementation's training loop over known iteration times and logs them the way its
source does (see formats.py for the sources); each returns the per-iteration times as the
implementation's own timer defines them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random

from .sim import GREEN, RESET, clock_stamp, fake_losses, fmt_td, stderr_noise

# --------------------------------------------------------------------------- tensorpack


def _humanize(sec: float) -> str:
    """tensorpack.utils.utils.humanize_time_delta."""
    if sec < 60:
        return "{:.3g} seconds".format(sec)
    t = dt.datetime(2000, 1, 1) + dt.timedelta(seconds=int(sec))
    vals = [int(sec // 86400), t.hour, t.minute, t.second]
    return " ".join(
        f"{v} {u}{'s' if v > 1 else ''}" for v, u in zip(vals, ["day", "hour", "minute", "second"]) if v > 0
    )


def run_tensorpack(n, times, clock, sink, opts):
    """tensorpack main loop (epochs of STEPS_PER_EPOCH) + ThroughputTracker + ScalarPrinter, under mpirun."""
    spe = opts.get("steps_per_epoch", 50)
    ranks = opts.get("ranks", 8)
    overhead = opts.get("epoch_end_overhead", 0.7)  # callbacks after each epoch, outside the epoch timer
    rng = random.Random(opts.get("seed", 0) + 4)
    logfile = "train_log/maskrcnn/log.log"

    def log(msg, where, chief_only=False):
        line = f"{GREEN}[{clock_stamp(clock.now(), '%m%d %H:%M:%S')} @{where}]{RESET} {msg}\n"
        sink.write(logfile, line)  # rank 0's file handler, same coloured formatter
        copies = 1 if chief_only else ranks
        order = list(range(copies))
        rng.shuffle(order)  # mpirun forwards the ranks' lines in whatever order they come
        for _ in order:
            sink.write("stdout", line)

    log("Setup callbacks graph ...", "base.py:209")  # every rank, before the session
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
                    sink.write(
                        "stderr",
                        f"\r{int(100 * (step + 1) / spe):3d}%|{'#' * ((step + 1) * 20 // spe):20s}|"
                        f"{step + 1}/{spe}[{int(el) // 60:02d}:{int(el) % 60:02d}<00:00,"
                        f"{(step + 1) / max(el, 1e-9):5.2f}it/s]" + ("\n" if step == spe - 1 else ""),
                    )
        secs = clock.now() - t0  # _after_epoch
        log(f"Epoch {epoch} (global_step {g}) finished, time:{_humanize(secs)}.", "base.py:285")
        clock.run(overhead)
        thr = spe * ranks / secs
        scalars = {
            "GPUUtil/0": 95.0 + rng.random(),
            "HostFreeMemory (GB)": 32.8,
            "PeakMemory(MB)/gpu:0": 7201.6,
            "QueueInput/queue_size": 49.8,
            "Throughput (samples/sec)": thr,
            "learning_rate": 0.01,
            "total_cost": 2.0 / (1 + g / 300),
            "wd_cost": 0.6169,
        }
        log(
            "Estimated Time Left: " + _humanize(secs * (opts.get("max_epoch", 360) - epoch)),
            "misc.py:109",
            chief_only=True,
        )
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
        line = f"{clock_stamp(clock.now(), '%m-%d %H:%M:%S', tz_hours=8)} {msg}\n"
        sink.write("stderr", line)
        sink.write(path, line)

    log(f"total iter {total}")  # detection_train.py L190
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
            stderr_noise(opts, sink, rng)
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
                    log(
                        head
                        + f"Speed: {speed:.2f} samples/sec\tTrain-"
                        + "".join(f"{k}={v:f},\t" for k, v in metrics.items())
                    )
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
    """Detectron tools/train_net.py loop + TrainingStats: json_stats every 20 (0-based), timer reset after
    iteration start_iter + 20 (``start_iter``: AUTO_RESUME found model_iter{start_iter - 1}.pkl)."""
    quoted = opts.get("variant", "quoted") == "quoted"
    start_iter = opts.get("start_iter", 0)
    net_share = opts.get("net_share", 0.97)  # the rest: UpdateIterStats (blob fetch), outside the timer
    schedule = opts.get("schedule_iters", 90000)
    rng = random.Random(opts.get("seed", 0) + 6)
    total, calls = 0.0, 0
    timed = []
    sink.write("stdout", "INFO train_net.py:  95: Called with args:\n")
    if start_iter:
        sink.write(
            "stdout",
            f"INFO train.py: 139: ========> Resuming from checkpoint /out/model_iter{start_iter - 1}.pkl"
            f" at start iter {start_iter}\n",
        )
    sink.write("stdout", "INFO train.py: 144: Building model: generalized_rcnn\n")
    for cur_iter in range(start_iter, n):
        t0 = clock.now()  # IterTic
        clock.run(net_share * times[cur_iter - start_iter])  # LR update + workspace.RunNet
        diff = clock.now() - t0  # IterToc
        total += diff
        calls += 1
        timed.append(diff)
        clock.run((1 - net_share) * times[cur_iter - start_iter])  # UpdateIterStats
        stderr_noise(opts, sink, rng)
        if cur_iter % 20 == 0 or cur_iter == n - 1:
            avg = total / calls
            stats = {
                "accuracy_cls": 0.9 + 0.05 * rng.random(),
                "eta": fmt_td(avg * (schedule - cur_iter)),
                "iter": cur_iter,
                "loss": 1.0 / (1 + cur_iter / 300),
                "loss_bbox": 0.2,
                "loss_cls": 0.3,
                "loss_mask": 0.4,
                "lr": 0.02,
                "mb_qsize": 64,
                "mem": 3084,
                "time": avg,
            }
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
        if cur_iter == start_iter + 20:  # ResetIterTimer after start_iter + LOG_PERIOD
            total, calls = 0.0, 0
    return timed


# --------------------------------------------------------------------------- matterport (Keras Progbar)


def run_matterport(n, times, clock, sink, opts):
    """Keras 2.2.5 fit_generator(verbose=1): ProgbarLogger prints per step, the epoch total in whole seconds.

    ``validation_s``: fit_generator's validation pass, run before on_epoch_end, so inside the printed seconds."""
    spe = opts.get("steps_per_epoch", 50)
    val_s = opts.get("validation_s", 0.0)
    epochs_total = opts.get("epochs", 40)
    tty = opts.get("tty", False)
    overhead = opts.get("epoch_end_overhead", 1.5)  # ModelCheckpoint .h5 save + TensorBoard, after the Progbar
    rng = random.Random(opts.get("seed", 0) + 7)
    names = ["loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"]
    timed, g = [], 0
    sink.write(
        "stdout",
        "Starting at epoch 0. LR=0.02\n\nCheckpoint Path: /logs/coco20200101T0000/mask_rcnn_coco_{epoch:04d}.h5\n",
    )
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
            for k, v in fake_losses(rng, names, g).items():
                sums[k] += v
            if step == spe and val_s:
                clock.run(val_s)  # training_generator.py L226-250: validation, then callbacks.on_epoch_end
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
                eta_s = (
                    "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
                    if eta > 3600
                    else "%d:%02d" % (eta // 60, eta % 60)
                    if eta > 60
                    else "%ds" % eta
                )
                info = " - ETA: " + eta_s
            else:
                tpu = (now - start) / step
                info = " - %.0fs" % (now - start)
                info += (
                    " %.0fs/step" % tpu
                    if tpu >= 1
                    else " %.0fms/step" % (tpu * 1e3)
                    if tpu >= 1e-3
                    else " %.0fus/step" % (tpu * 1e6)
                )
            for k in names:
                avg = sums[k] / step
                info += " - %s:" % k + (" %.4f" % avg if abs(avg) > 1e-3 else " %.4e" % avg)
            if step == spe and val_s:
                info += "".join(" - val_%s: %.4f" % (k, 1.1 * sums[k] / step) for k in names)
            prefix = ("\b" * total_width + "\r") if tty else "\n"
            total_width = len(bar) + len(info)
            sink.write("stdout", prefix + bar + info + ("\n" if step == spe else ""))
            last_update = now
        clock.run(overhead)
        if g >= n:
            break
    return timed
