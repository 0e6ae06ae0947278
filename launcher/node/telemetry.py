"""What the hardware did while the row's window ran: GPU memory, utilisation, power, clocks, temperature.

The node samples for the whole command, each sample with its time, and reduces over the measured
window's wall-clock span once the parser has found the window (the log's own stamps at the window's
edge records: `launcher.parse.stamps.window_wall`):

    sampler = telemetry.start(run_dir)        # before the command starts (None when turned off)
    sampler.watch(pgid)                       # the command's process group (host RSS)
    ...                                       # the command runs, the parser finds the window
    result["telemetry"] = sampler.reduce(measurement, spec)   # stops the sampling, reduces over the window

GPUs: `nvidia-smi --query-gpu=<QUERY> --format=csv,noheader,nounits -lms PERIOD` as a child process whose
output goes straight to `telemetry.csv` in the run dir (no Python in the sampling loop; the driver's own
tool, one NVML session, every PERIOD ms: its cost is measured in bench/telemetry.py). The host: a thread
reads /proc/stat (CPU utilisation of the whole host) and the rss of every process of the command's
process group (its resident memory), every PERIOD ms, into `host-telemetry.csv`. Only this node is
sampled: a job on several nodes gets per-GPU figures for this node's GPUs and no J/img.

What result.json's `telemetry` holds (each figure with how it was computed, `method`):
  gpu_sampled           whether any GPU sample lies in the span (else `note` says why not)
  span                  the wall-clock span reduced over: the window's (`from: window`), or, when the log
                        stamps no time at the window's edges, nothing is reduced for the window
  gpus[]                per GPU: samples, peak memory used (MiB), mean utilisation (%), mean power (W),
                        mean SM / memory clock (MHz), peak temperature (C)
  memory_used_peak_mib  the largest per-GPU peak; power_mean_w the sum of the GPUs' mean powers;
                        utilization_mean_pct the mean of the GPUs' mean utilisations
  energy_j_per_img      mean total power (W) x the window's seconds / the window's images
  host                  CPU utilisation over the span (from /proc/stat), peak RSS of the command (MiB)
  host_name, nodes_sampled   which node was sampled (and "1 of N" for a multi-node job)

Settings (environment of the node): LAUNCHER_TELEMETRY=0 turns sampling off; LAUNCHER_TELEMETRY_PERIOD_MS
(default 500) is the sampling period.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .process import stop_group, watch_group
from ..rundir import HOST_TELEMETRY_FILE, TELEMETRY_FILE, set_aside

SCHEMA = 1
DEFAULT_PERIOD_MS = 500
#: what nvidia-smi is asked, in this order (noheader: the order is the contract)
GPU_QUERY = (
    "timestamp",
    "index",
    "uuid",
    "name",
    "memory.used",
    "memory.total",
    "utilization.gpu",
    "power.draw",
    "clocks.sm",
    "clocks.mem",
    "temperature.gpu",
)
#: nvidia-smi's `timestamp` (local time, milliseconds)
TIMESTAMP_FORMAT = "%Y/%m/%d %H:%M:%S.%f"


def enabled(environ: dict | None = None) -> bool:
    env = os.environ if environ is None else environ
    return str(env.get("LAUNCHER_TELEMETRY", "1")).strip().lower() not in ("0", "false", "no", "off")


def period_ms(environ: dict | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        return max(50, int(env.get("LAUNCHER_TELEMETRY_PERIOD_MS", DEFAULT_PERIOD_MS)))
    except (TypeError, ValueError):
        return DEFAULT_PERIOD_MS


def start(run_dir: str | os.PathLike) -> "Sampler | None":
    """The node's hook: a started Sampler, or None when LAUNCHER_TELEMETRY=0. An earlier attempt's sample
    files in the run dir are kept beside it (`<file>.<time>.previous`), never written over."""
    if not enabled():
        return None
    try:
        for name in (TELEMETRY_FILE, HOST_TELEMETRY_FILE):
            set_aside(run_dir, name)
        return Sampler(run_dir).start()
    except Exception:  # telemetry must never cost a run: no sampler, and result.json's telemetry stays empty
        return None


def _number(text: str) -> float | None:
    """A value as nvidia-smi prints it without units; `[N/A]`, `[Not Supported]`, `[Unknown Error]` -> None."""
    try:
        v = float(text.strip())
    except ValueError:
        return None
    return v if v == v else None


def parse_gpu_csv(text: str) -> list[dict[str, Any]]:
    """nvidia-smi's rows for GPU_QUERY (noheader, nounits) -> samples with `t` in POSIX seconds.

    A line that does not have every field (the tool killed mid-line, an error message) is skipped."""
    out = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if len(row) != len(GPU_QUERY):
            continue
        rec = dict(zip(GPU_QUERY, (c.strip() for c in row)))
        try:
            t = dt.datetime.strptime(rec["timestamp"], TIMESTAMP_FORMAT).timestamp()  # local time, as printed
        except ValueError:
            continue
        sample: dict[str, Any] = {"t": t, "index": rec["index"], "uuid": rec["uuid"], "name": rec["name"]}
        for f in GPU_QUERY[4:]:
            sample[f] = _number(rec[f])
        out.append(sample)
    return out


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole host from /proc/stat's first line."""
    try:
        with open("/proc/stat", "rb") as f:
            parts = f.readline().split()
    except OSError:
        return None
    if not parts or parts[0] != b"cpu":
        return None
    vals = [int(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(vals)
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return total - idle, total


_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def _stat(pid: str) -> tuple[int, int] | None:
    """(pgrp, rss KiB) of one process from /proc/PID/stat; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # the fields after the command name (in parentheses, which may hold spaces): state ppid pgrp ... rss
        rest = stat[stat.rindex(b")") + 2 :].split()
        return int(rest[2]), int(rest[21]) * _PAGE_KIB
    except (OSError, ValueError, IndexError):
        return None


class GroupRSS:
    """The resident memory of a process group: every process's rss summed. Listing all of /proc costs ~17 us a
    process, so it is done every `rescan` samples (new processes join then); in between only the group's
    known processes are read."""

    def __init__(self, pgid: int, rescan: int = 10):
        self.pgid, self.rescan, self.n = pgid, rescan, 0
        self.pids: set[str] = set()

    def __call__(self) -> int | None:
        if self.n % self.rescan == 0:
            try:
                self.pids = {p for p in os.listdir("/proc") if p.isdigit()}
            except OSError:
                return None
        self.n += 1
        total, members = 0, set()
        for pid in self.pids:
            st = _stat(pid)
            if st is not None and st[0] == self.pgid:
                total += st[1]
                members.add(pid)
        self.pids = members
        return total if members else None


class Sampler:
    """Samples the GPUs (nvidia-smi) and the host (/proc) while the row's command runs."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        period: int | None = None,
        nvidia_smi: str | None = None,
        environ: dict | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.period_ms = period or period_ms(environ)
        self.nvidia_smi = nvidia_smi if nvidia_smi is not None else shutil.which("nvidia-smi") or ""
        self.gpu_path = self.run_dir / TELEMETRY_FILE
        self.host_path = self.run_dir / HOST_TELEMETRY_FILE
        self.proc: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self._err = self.run_dir / (TELEMETRY_FILE + ".stderr")
        self.gpu_problem: str | None = None if self.nvidia_smi else "nvidia-smi not found on PATH"
        self._rss: GroupRSS | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.host_samples: list[tuple[float, int, int, int | None]] = []  # t, cpu busy, cpu total, rss KiB
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def start(self) -> "Sampler":
        self.started_at = time.time()
        if self.nvidia_smi:
            try:
                with open(self.gpu_path, "wb") as out, open(self._err, "wb") as err:
                    self.proc = subprocess.Popen(
                        [
                            self.nvidia_smi,
                            f"--query-gpu={','.join(GPU_QUERY)}",
                            "--format=csv,noheader,nounits",
                            "-lms",
                            str(self.period_ms),
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        close_fds=True,
                        start_new_session=True,
                    )
                self._watchdog = watch_group(self.proc.pid, 2.0)  # it ends with the node, even on SIGKILL
            except OSError as e:
                self.gpu_problem = f"cannot start {self.nvidia_smi}: {e.strerror or e}"
                self.proc = None
        self._thread = threading.Thread(target=self._host_loop, name="telemetry-host", daemon=True)
        self._thread.start()
        return self

    def watch(self, pgid: int | None) -> None:
        """The command's process group, whose resident memory the host samples add up."""
        self._rss = GroupRSS(pgid) if pgid else None

    def _host_loop(self) -> None:
        period = self.period_ms / 1000.0
        try:
            f = open(self.host_path, "w", encoding="utf-8")
        except OSError:
            f = None
        try:
            if f:
                f.write("time,cpu_busy_jiffies,cpu_total_jiffies,command_rss_kib\n")
            while True:
                t = time.time()
                cpu = _cpu_times()
                rss = self._rss() if self._rss is not None else None
                if cpu is not None:
                    self.host_samples.append((t, cpu[0], cpu[1], rss))
                    if f:
                        f.write(f"{t:.3f},{cpu[0]},{cpu[1]},{'' if rss is None else rss}\n")
                if self._stop.wait(max(0.0, t + period - time.time())):
                    break
        finally:
            if f:
                f.close()

    def stop(self) -> None:
        """End the sampling (idempotent)."""
        if self.stopped_at is not None:
            return
        self.stopped_at = time.time()
        self._stop.set()
        if self.proc is not None:
            if self.proc.poll() is None:
                stop_group(self.proc.pid, 2.0, lambda: self.proc.poll() is not None, kill_wait_s=2.0)
            rc = self.proc.poll()
            if rc not in (0, None) and rc > 0:
                self.gpu_problem = f"nvidia-smi exited with status {rc}: {_first_line(self._err)}"
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
        try:
            if self._err.stat().st_size == 0:
                self._err.unlink()  # kept only when the tool said something
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)

    def gpu_samples(self) -> list[dict[str, Any]]:
        try:
            return parse_gpu_csv(self.gpu_path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return []

    def reduce(self, measurement: Any = None, spec: Any = None) -> dict[str, Any]:
        """result.json's `telemetry`: the samples over the window of `measurement` (a parse.Measurement) of the
        row `spec` (a JobSpec: images per iteration, nodes). Stops the sampling first. Never raises: telemetry
        must not cost a run its result."""
        try:
            self.stop()
            out = self._reduce(measurement, getattr(spec, "images_per_iter", None))
            out["host_name"] = socket.gethostname()
            nodes = getattr(spec, "nodes", 1) or 1
            if nodes > 1:  # only this node's GPUs were sampled: a total would count part of the job
                out["nodes_sampled"] = f"1 of {nodes} (this node, {out['host_name']})"
                if out.get("energy_j_per_img") is not None:
                    out["energy_j_per_img"] = None
                    out.setdefault("method", {})["energy"] = (
                        f"not given: the job ran on {nodes} nodes and only this node's GPUs were sampled"
                    )
            return out
        except Exception as e:  # pragma: no cover - a bug of ours
            return {"schema": SCHEMA, "gpu_sampled": False, "error": f"telemetry not reduced: {e!r}"}

    def _reduce(self, measurement: Any, images_per_iter: int | None) -> dict[str, Any]:
        details = getattr(measurement, "details", None) or {}
        start, end = details.get("window_wall_start"), details.get("window_wall_end")
        images = None
        if measurement is not None:  # the images the figure counts: throughput x the parser's elapsed time
            a, b = measurement.window
            elapsed = details.get("elapsed_s")
            images = (
                round(measurement.throughput * elapsed)
                if elapsed
                else (images_per_iter or measurement.images_per_iter) * (b - a)
            )
        return reduce_samples(
            self.gpu_samples(),
            self.host_samples,
            start,
            end,
            images,
            period_ms=self.period_ms,
            gpu_problem=self.gpu_problem,
            resolution_s=details.get("window_wall_resolution_s"),
            measured=measurement is not None,
            environ_visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
        )


def _first_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no output)"
    return lines[0][:200] if lines else "(no output)"


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds")


def _mean(vals: list[float]) -> float | None:
    return sum(vals) / len(vals) if vals else None


def _visible(samples: list[dict], visible: str | None) -> tuple[list[dict], str | None]:
    """Only the GPUs CUDA_VISIBLE_DEVICES names (by index or UUID), when it names GPUs nvidia-smi lists."""
    if not visible or not samples:
        return samples, None
    wanted = [v.strip() for v in visible.split(",") if v.strip()]
    keep = [
        s
        for s in samples
        if s["index"] in wanted or any(w.startswith("GPU-") and s["uuid"].startswith(w) for w in wanted)
    ]
    if not keep:
        return samples, None
    return keep, f"restricted to CUDA_VISIBLE_DEVICES={visible}"


def reduce_samples(
    gpu: list[dict[str, Any]],
    host: list[tuple[float, int, int, int | None]],
    start: float | None,
    end: float | None,
    images: int | None,
    *,
    period_ms: int,
    gpu_problem: str | None = None,
    resolution_s: float | None = None,
    measured: bool = True,
    environ_visible: str | None = None,
) -> dict[str, Any]:
    """The figures over [start, end] (POSIX seconds); every figure says how it was computed."""
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "period_ms": period_ms,
        "gpu_sampled": False,
        "samples_file": TELEMETRY_FILE,
        "host_samples_file": HOST_TELEMETRY_FILE,
    }
    if start is None or end is None:
        why = (
            "the log stamps no wall-clock time at the window's edge records, so the samples cannot be placed in "
            "the window"
            if measured
            else "no window was measured"
        )
        out["span"] = None
        out["note"] = f"nothing reduced: {why}; the raw samples are in {TELEMETRY_FILE} / {HOST_TELEMETRY_FILE}"
        if gpu_problem:
            out["note"] += f"; no GPU sampled: {gpu_problem}"
        return out
    secs = end - start
    out["span"] = {
        "from": "window",
        "start": _iso(start),
        "end": _iso(end),
        "seconds": secs,
        "how": "the wall-clock stamps of the log's records at the window's edges"
        + (f" (resolution {resolution_s:g} s)" if resolution_s else ""),
    }
    inside = [s for s in gpu if start <= s["t"] <= end]
    inside, restricted = _visible(inside, environ_visible)
    per: dict[str, list[dict]] = {}
    for s in inside:
        per.setdefault(s["index"], []).append(s)
    gpus = []
    for idx in sorted(per, key=lambda x: (len(x), x)):
        ss = per[idx]

        def col(name: str, ss: list[dict] = ss) -> list[float]:
            return [s[name] for s in ss if s.get(name) is not None]

        mem, util, power = col("memory.used"), col("utilization.gpu"), col("power.draw")
        gpus.append(
            {
                "index": idx,
                "uuid": ss[0]["uuid"],
                "name": ss[0]["name"],
                "samples": len(ss),
                "memory_used_peak_mib": max(mem) if mem else None,
                "memory_total_mib": ss[0].get("memory.total"),
                "utilization_mean_pct": _mean(util),
                "power_mean_w": _mean(power),
                "power_samples": len(power),
                "sm_clock_mean_mhz": _mean(col("clocks.sm")),
                "mem_clock_mean_mhz": _mean(col("clocks.mem")),
                "temperature_max_c": max(col("temperature.gpu"), default=None),
            }
        )
    out["gpus"] = gpus
    if gpus:
        n = min(g["samples"] for g in gpus)
        out["gpu_sampled"] = True
        peaks = [g["memory_used_peak_mib"] for g in gpus if g["memory_used_peak_mib"] is not None]
        utils = [g["utilization_mean_pct"] for g in gpus if g["utilization_mean_pct"] is not None]
        out["memory_used_peak_mib"] = max(peaks) if peaks else None
        out["utilization_mean_pct"] = _mean(utils)
        powered = all(g["power_mean_w"] is not None for g in gpus)
        out["power_mean_w"] = sum(g["power_mean_w"] for g in gpus) if powered else None
        where = (
            f"{len(gpus)} GPU(s), {n}+ nvidia-smi samples each every {period_ms} ms with timestamps inside "
            f"the window ({secs:.1f} s)" + (f", {restricted}" if restricted else "")
        )
        method = {
            "memory": f"largest memory.used of any sample of any GPU ({where})",
            "utilization": f"mean over the GPUs of each GPU's mean utilization.gpu ({where})",
            "power": (
                f"sum over the GPUs of each GPU's mean power.draw ({where})"
                if powered
                else "power.draw not reported by every GPU ([N/A]): no total power"
            ),
        }
        if powered and images and secs > 0:
            out["energy_j_per_img"] = out["power_mean_w"] * secs / images
            out["images"] = images
            method["energy"] = (
                f"mean total power {out['power_mean_w']:.1f} W x {secs:.2f} s (the window's "
                f"wall-clock span) / {images} images in the window; GPU board power only (no "
                "CPU, memory, network or cooling)"
            )
        else:
            out["energy_j_per_img"] = None
        out["method"] = method
    else:
        out["note"] = "no GPU sampled: " + (
            gpu_problem
            or (
                f"no nvidia-smi sample has a timestamp inside the window ({secs:.2f} s; sampling every {period_ms} ms)"
                if gpu
                else "nvidia-smi printed no sample"
            )
        )
    h = [s for s in host if start <= s[0] <= end]
    host_out: dict[str, Any] = {"samples": len(h), "cpu_count": os.cpu_count()}
    if len(h) >= 2 and h[-1][2] > h[0][2]:
        host_out["cpu_utilization_pct"] = 100.0 * (h[-1][1] - h[0][1]) / (h[-1][2] - h[0][2])
    rss = [s[3] for s in h if s[3] is not None]
    host_out["command_rss_peak_mib"] = max(rss) / 1024.0 if rss else None
    host_out["method"] = (
        f"CPU: busy / total jiffies of the whole host (/proc/stat) between the first and last of "
        f"{len(h)} samples inside the window, every {period_ms} ms (100% = all "
        f"{os.cpu_count()} logical CPUs busy); RSS: largest sum of the resident set sizes over the command's "
        "process group at any sample (the rss field of /proc/PID/stat)"
    )
    out["host"] = host_out
    return out
