"""Issue 21, class 6: `python -m launcher.cancel` on a local sweep stops what it says it stops (the running row
and the rows not started yet), says so once, and says when it cannot (exit non-zero)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from launcher.rundir import read_result
from tests.conftest import ROOT

STANDIN = ["hydra.searchpath=[file://" + str(ROOT / "tests" / "conf") + "]", "impl=standin", "scale=full"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def cancel(*dirs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "launcher.cancel", *map(str, dirs)], env=ENV, capture_output=True, text=True, timeout=120
    )


def test_cancel_stops_a_local_sweep_and_says_so_once(tmp_path):
    sweep = tmp_path / "sweep"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launcher",
            "-m",
            *STANDIN,
            "impl.options.iters=60",
            "impl.options.base=0.5,0.05",
            "window.start=10",
            "window.end=30",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(sweep.glob("0_*/output/log.txt")):
        time.sleep(0.2)
    first = cancel(sweep)
    out, err = launcher.communicate(timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("cancelled") >= 2 and "(was running)" in first.stdout, first.stdout
    running, planned = sorted(sweep.glob("[0-9]_*"))
    assert read_result(running).status == "cancelled", read_result(running).error
    assert read_result(planned).status == "cancelled" and read_result(planned).started_at is None
    assert not (planned / "train.log").exists()  # never started
    again = cancel(sweep)
    assert again.returncode == 0 and "(was" not in again.stdout and again.stdout.count("already cancelled") == 2, (
        again.stdout
    )


def test_cancel_of_a_row_running_on_another_host_says_it_cannot(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps({"impl": "standin"}))
    (run / "status.json").write_text(
        json.dumps({"state": "running", "host": "node-17", "pid": 4242, "started_at": "2026-01-01T00:00:00+00:00"})
    )
    (run / "manifest.jsonl").write_text(
        json.dumps(
            {
                "impl": "standin",
                "hardware": "local",
                "backend": "local",
                "job_id": "local-4242-run",
                "run_dir": str(run),
                "submitted_at": "2026-01-01T00:00:00+00:00",
            }
        )
        + "\n"
    )
    p = cancel(run)
    assert p.returncode == 1 and "node-17" in p.stdout and "cancelled" not in p.stdout.replace("not cancelled", ""), (
        p.stdout
    )
