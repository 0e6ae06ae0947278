"""Telemetry from the node (launcher/node/telemetry.py): what the GPUs (or, without GPUs, the host) did over the window.

GPUs cannot exist here: jobs/standin/bin/nvidia-smi is a STAND-IN for the driver's tool that prints its real CSV
(units in the header, `--format` options, `-lms` loop) with made-up, deterministic figures (see its docstring:
GPU i draws 250 + 25*i W, peaks at 20400 + 512*i MiB after 5 samples). The pipeline tests run the real node
(python -m launcher) with it first on PATH.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from launcher.node import telemetry
from launcher.parse import get_parser
from launcher.rundir import HOST_TELEMETRY_FILE, TELEMETRY_FILE, read_result
from tests.conftest import ROOT, run_launcher

STANDIN_BIN = ROOT / "jobs" / "standin" / "bin"
FIX = Path(__file__).parent / "fixtures" / "logs"
PERIOD_MS = 200

# A command that writes the torchvision row's log format (posix stamps per iteration), 0.15 s per iteration.
TV_CMD = (
    "for i in $(seq 1 {n}); do printf 'tvbench iter=%d t=%s images=2 loss=1.0\\n' $i "
    "$(python -c 'import time; print(f\"{{time.time():.6f}}\")'); sleep 0.15; done"
)


def _run(tmp_path: Path, path: str, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    cmd = tmp_path / "cmd.sh"
    cmd.write_text(TV_CMD.format(n=30) + "\n")
    p = run_launcher(
        f"impl.command=bash {cmd}",
        "scale=full",
        "window.start=5",
        "window.end=25",
        cwd=tmp_path,
        timeout=180,
        env={"PATH": path, "LAUNCHER_TELEMETRY_PERIOD_MS": str(PERIOD_MS), **env},
    )
    results = list((tmp_path / "outputs").rglob("result.json"))
    assert len(results) == 1, p.stdout + p.stderr
    return p, results[0].parent


def _log_times(run_dir: Path) -> dict[int, float]:
    out = {}
    for line in (run_dir / "train.log").read_text().splitlines():
        if line.startswith("tvbench iter="):
            f = dict(kv.split("=", 1) for kv in line.split()[1:])
            out[int(f["iter"])] = float(f["t"])
    return out


def test_the_stand_in_prints_nvidia_smis_csv():
    """The stand-in's output is what the real tool prints (header with units, values without with nounits)."""
    exe = STANDIN_BIN / "nvidia-smi"
    out = subprocess.run(
        [exe, "--query-gpu=timestamp,index,memory.used,utilization.gpu,power.draw,temperature.gpu", "--format=csv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0] == "timestamp, index, memory.used [MiB], utilization.gpu [%], power.draw [W], temperature.gpu"
    assert out[1].split(", ")[2:] == ["20000 MiB", "95 %", "250.00 W", "60"]
    dt.datetime.strptime(out[1].split(", ")[0], telemetry.TIMESTAMP_FORMAT)
    rows = subprocess.run(
        [exe, f"--query-gpu={','.join(telemetry.GPU_QUERY)}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    samples = telemetry.parse_gpu_csv(rows)
    assert [s["index"] for s in samples] == ["0", "1"] and samples[1]["power.draw"] == 275.0
    bad = subprocess.run([exe, "--query-gpu=power.bogus", "--format=csv"], capture_output=True, text=True)
    assert bad.returncode == 2 and 'Field "power.bogus" is not a valid field to query.' in bad.stdout


def test_parse_gpu_csv_keeps_only_whole_samples_and_reads_na_as_missing():
    text = (
        "2024/05/01 12:00:00.250, 0, GPU-a, Tesla V100-SXM2-32GB, 1200, 32768, 97, 251.30, 1530, 877, 61\n"
        "2024/05/01 12:00:00.250, 1, GPU-b, Tesla V100-SXM2-32GB, 1300, 32768, 95, [N/A], 1530, 877, 60\n"
        "2024/05/01 12:00:00.750, 0, GPU-a, Tesla V100-SXM2-32GB, 14\n"  # killed mid-line
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    )
    s = telemetry.parse_gpu_csv(text)
    assert len(s) == 2 and s[0]["power.draw"] == 251.3 and s[1]["power.draw"] is None
    assert s[0]["t"] == dt.datetime(2024, 5, 1, 12, 0, 0, 250000).timestamp()  # local time, as printed


def _sample(t, index, mem, util, power):
    return {
        "t": t,
        "index": str(index),
        "uuid": f"GPU-{index}",
        "name": "X",
        "memory.used": mem,
        "memory.total": 80000.0,
        "utilization.gpu": util,
        "power.draw": power,
        "clocks.sm": 1980.0,
        "clocks.mem": 2619.0,
        "temperature.gpu": 60.0,
    }


def test_reduce_counts_only_samples_inside_the_window():
    gpu = [
        _sample(t, i, mem=1000 * t + i, util=50 + t, power=100.0 + 100 * i + (900 if t in (0, 10) else 0))
        for t in range(11)
        for i in (0, 1)
    ]
    host = [(float(t), 10 * t, 20 * t, 1024 * t) for t in range(11)]
    r = telemetry.reduce_samples(gpu, host, 2.0, 8.0, images=120, period_ms=1000)
    assert r["gpu_sampled"] and r["span"]["seconds"] == 6.0
    g0, g1 = r["gpus"]
    assert g0["samples"] == 7 and g0["power_mean_w"] == 100.0 and g1["power_mean_w"] == 200.0  # 0 and 10 are outside
    assert g1["memory_used_peak_mib"] == 8001 and r["memory_used_peak_mib"] == 8001
    assert r["utilization_mean_pct"] == 55.0 and r["power_mean_w"] == 300.0
    assert r["energy_j_per_img"] == 300.0 * 6.0 / 120 and "300.0 W x 6.00 s" in r["method"]["energy"]
    assert r["host"]["cpu_utilization_pct"] == 50.0 and r["host"]["command_rss_peak_mib"] == 8.0
    only = telemetry.reduce_samples(gpu, host, 2.0, 8.0, images=120, period_ms=1000, environ_visible="1")
    assert [g["index"] for g in only["gpus"]] == ["1"] and "CUDA_VISIBLE_DEVICES=1" in only["method"]["power"]
    no_window = telemetry.reduce_samples(gpu, host, None, None, images=None, period_ms=1000)
    assert not no_window["gpu_sampled"] and "stamps no wall-clock time" in no_window["note"]
    na = [dict(s, **{"power.draw": None}) if s["index"] == "1" else s for s in gpu]
    r = telemetry.reduce_samples(na, host, 2.0, 8.0, images=120, period_ms=1000)
    assert r["power_mean_w"] is None and r["energy_j_per_img"] is None  # never a total from part of the GPUs


def test_the_window_s_wall_clock_span_comes_from_the_log_s_stamps():
    m = get_parser("mmdetection").measure((FIX / "mmdetection_issue2672.log").read_text(), (1200, 1300), 16)
    assert m.details["window_wall_end"] - m.details["window_wall_start"] == pytest.approx(59.300, abs=1e-6)
    # detectron2 prints local time without a year (01:30:24 -> 01:30:45 here)
    m = get_parser("detectron2").measure((FIX / "detectron2_d2go524_v0.5.txt").read_text(), (20, 100), 16)
    assert m.details["window_wall_end"] - m.details["window_wall_start"] == 21.0
    assert dt.datetime.fromtimestamp(m.details["window_wall_start"]).strftime("%m/%d %H:%M:%S") == "04/05 01:30:24"


@pytest.mark.timeout(240)
def test_the_node_records_what_the_gpus_did_over_the_window(tmp_path):
    p, run_dir = _run(tmp_path, f"{STANDIN_BIN}{os.pathsep}{os.environ['PATH']}")
    r = read_result(run_dir)
    assert r.status == "ok", p.stdout + p.stderr
    t = r.telemetry
    times = _log_times(run_dir)
    assert t["gpu_sampled"] and t["span"]["from"] == "window"
    start = dt.datetime.fromisoformat(t["span"]["start"]).timestamp()
    assert start == pytest.approx(times[5], abs=1e-3) and t["span"]["seconds"] == pytest.approx(times[25] - times[5])
    assert [g["index"] for g in t["gpus"]] == ["0", "1"]
    for i, g in enumerate(t["gpus"]):
        assert g["power_mean_w"] == 250 + 25 * i and g["memory_used_peak_mib"] == 20400 + 512 * i
        assert g["name"] == "NVIDIA H100 80GB HBM3" and 95 <= g["utilization_mean_pct"] <= 99
        # samples every 200 ms over a ~3 s window: within one sample of seconds / period (timestamps are ms)
        assert abs(g["samples"] - t["span"]["seconds"] / (PERIOD_MS / 1000)) <= 2
    assert t["power_mean_w"] == 525.0 and t["memory_used_peak_mib"] == 20912
    images = r.throughput * (times[25] - times[5])
    assert t["images"] == round(images) == 40
    assert t["energy_j_per_img"] == pytest.approx(525.0 * t["span"]["seconds"] / 40)
    assert set(t["method"]) == {"memory", "utilization", "power", "energy"}
    # every sample the reduction used is in the run dir, with its timestamp, inside the window
    rows = list(csv.reader((run_dir / TELEMETRY_FILE).open(), skipinitialspace=True))
    stamps = [dt.datetime.strptime(row[0], telemetry.TIMESTAMP_FORMAT).timestamp() for row in rows]
    inside = [s for s in stamps if times[5] <= s <= times[25]]
    assert len(inside) == sum(g["samples"] for g in t["gpus"]) and len(stamps) > len(inside)
    assert (run_dir / HOST_TELEMETRY_FILE).is_file() and t["host"]["samples"] >= 2
    # the sampler is gone with the run
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _stdout(pid) == str(run_dir / TELEMETRY_FILE)]


def _stdout(pid: str) -> str:
    """Where a process's stdout goes (a sampler left running would still write telemetry.csv)."""
    try:
        return os.readlink(f"/proc/{pid}/fd/1")
    except OSError:
        return ""


@pytest.mark.timeout(240)
def test_without_gpus_the_node_records_the_host_and_says_no_gpu_was_sampled(tmp_path):
    path = os.environ["PATH"]
    if shutil.which("nvidia-smi", path=path):
        pytest.skip("this machine has an nvidia-smi on PATH: the no-GPU case cannot be shown here")
    p, run_dir = _run(tmp_path, path)
    r = read_result(run_dir)
    assert r.status == "ok", p.stdout + p.stderr
    t = r.telemetry
    assert t["gpu_sampled"] is False and "no GPU sampled: nvidia-smi not found on PATH" in t["note"]
    assert "gpus" in t and t["gpus"] == [] and not t.get("energy_j_per_img")
    h = t["host"]
    assert 0 <= h["cpu_utilization_pct"] <= 100 and h["command_rss_peak_mib"] > 0 and h["samples"] >= 2
    assert "/proc/stat" in h["method"] and not (run_dir / TELEMETRY_FILE).exists()


@pytest.mark.timeout(240)
def test_a_failing_nvidia_smi_is_named_and_costs_the_run_nothing(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "nvidia-smi"
    exe.write_text(
        '#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9\n'
    )
    exe.chmod(0o755)
    p, run_dir = _run(tmp_path, f"{bindir}{os.pathsep}{os.environ['PATH']}")
    r = read_result(run_dir)
    assert r.status == "ok", p.stdout + p.stderr
    assert r.telemetry["gpu_sampled"] is False
    assert "couldn't communicate with the NVIDIA driver" in r.telemetry["note"] or "status 9" in r.telemetry["note"]


@pytest.mark.timeout(240)
def test_telemetry_can_be_turned_off(tmp_path):
    _, run_dir = _run(tmp_path, f"{STANDIN_BIN}{os.pathsep}{os.environ['PATH']}", LAUNCHER_TELEMETRY="0")
    r = read_result(run_dir)
    assert r.status == "ok" and r.telemetry == {}
    assert not (run_dir / TELEMETRY_FILE).exists() and not (run_dir / HOST_TELEMETRY_FILE).exists()
    assert json.loads((run_dir / "result.json").read_text())["telemetry"] == {}


def test_a_sampler_never_outlives_its_stop(tmp_path):
    s = telemetry.Sampler(tmp_path, period=100, nvidia_smi=str(STANDIN_BIN / "nvidia-smi")).start()
    deadline = time.monotonic() + 30  # the stand-in is a Python start-up: seconds on a loaded machine
    while len(s.gpu_samples()) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    s.stop()
    assert s.proc.poll() is not None and s.gpu_samples()
    n = len(s.gpu_samples())
    time.sleep(0.3)
    assert len(s.gpu_samples()) == n


def test_a_multi_node_job_gets_no_energy_per_image_from_one_node_s_gpus(tmp_path):
    """The node samples its own GPUs only: per-GPU figures stay, a J/img from part of the job is withheld."""
    from types import SimpleNamespace

    t0 = 1_714_521_600.0
    lines = [
        f"{dt.datetime.fromtimestamp(t0 + k * 0.5).strftime(telemetry.TIMESTAMP_FORMAT)[:-3]}, {i}, GPU-{i}, "
        f"NVIDIA H100 80GB HBM3, 1000, 81559, 90, 300.00, 1980, 2619, 60"
        for k in range(21)
        for i in (0, 1)
    ]
    s = telemetry.Sampler(tmp_path, nvidia_smi="unused")
    s.gpu_path.write_text("\n".join(lines) + "\n")
    m = SimpleNamespace(
        window=(10, 30),
        images_per_iter=16,
        throughput=32.0,
        details={"window_wall_start": t0 + 1, "window_wall_end": t0 + 9, "elapsed_s": 10.0},
    )
    one = s.reduce(m, SimpleNamespace(images_per_iter=16, nodes=1))
    assert one["power_mean_w"] == 600.0 and one["images"] == 320
    assert one["energy_j_per_img"] == pytest.approx(600.0 * 8 / 320)
    two = s.reduce(m, SimpleNamespace(images_per_iter=16, nodes=2))
    assert two["energy_j_per_img"] is None and "only this node's GPUs" in two["method"]["energy"]
    assert two["nodes_sampled"].startswith("1 of 2") and two["gpus"][0]["power_mean_w"] == 300.0
