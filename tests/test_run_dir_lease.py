"""Issue 21, class 1: one live attempt per run dir. A lease, not a lock: a live owner keeps the run dir, a dead
one's successor breaks it (and keeps the old lease beside), and `rerun=failed` while the first sweep still
runs leaves that sweep's rows alone, so no row is trained twice at once and no result is overwritten."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from launcher import lease
from launcher.rundir import read_result
from tests.conftest import ROOT, run_launcher
from tests.nodespec import node_cli, node_spec

STANDIN = ["hydra.searchpath=[file://" + str(ROOT / "tests" / "conf") + "]", "impl=standin", "scale=full"]


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def plant_lease(run_dir: Path, **fields) -> None:
    holder = {
        "owner": "someone",
        "host": socket.gethostname(),
        "boot_id": lease.boot_id(),
        "pid": dead_pid(),
        "pid_start": "1",
        "heartbeat": time.time(),
        "since": "earlier",
        "what": "node",
    }
    holder.update(fields)
    (run_dir / lease.LEASE_FILE).write_text(json.dumps(holder))


def test_a_second_node_in_a_live_run_dir_writes_nothing(tmp_path):
    node_spec(tmp_path / "run", iters=30, step=0.1)
    first = node_cli(tmp_path / "run", popen=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "train.log").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    second = node_cli(tmp_path / "run")
    assert second.returncode == 1 and "owned by a live attempt" in second.stderr, second.stderr
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-2000:]
    assert read_result(tmp_path / "run").status == "ok"
    assert not list((tmp_path / "run").glob("*.previous"))  # nothing of the first set aside by the second
    assert not (tmp_path / "run" / lease.LEASE_FILE).exists()  # given back at the end


def test_a_dead_owners_lease_is_broken_and_kept(tmp_path):
    node_spec(tmp_path / "run")
    plant_lease(tmp_path / "run")  # same host, same boot, its process gone
    p = node_cli(tmp_path / "run")
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "run").glob(".lease.*.broken"))) == 1


def test_another_hosts_lease_lives_while_its_heartbeat_does(tmp_path):
    node_spec(tmp_path / "run")
    plant_lease(tmp_path / "run", host="node-17", boot_id="other", heartbeat=time.time())
    p = node_cli(tmp_path / "run")
    assert p.returncode == 1 and "node-17" in p.stderr, p.stderr
    assert not (tmp_path / "run" / "result.json").exists()
    plant_lease(tmp_path / "run", host="node-17", boot_id="other", heartbeat=time.time() - lease.STALE_S - 5)
    p = node_cli(tmp_path / "run")
    assert p.returncode == 0, p.stderr


def test_a_recycled_pid_does_not_keep_a_lease(tmp_path):
    node_spec(tmp_path / "run")
    plant_lease(tmp_path / "run", pid=os.getppid(), pid_start="0")  # a live pid, but not the process that took it
    assert node_cli(tmp_path / "run").returncode == 0


def test_rerun_failed_while_the_first_sweep_runs_leaves_its_rows_alone(tmp_path):
    """The issue's case: rerun=failed issued while the first sweep is still running used to resubmit the rows
    that sweep had planned but not started; both then trained the same row in the same run dir."""
    sweep = tmp_path / "sweep"
    rows = [
        "-m",
        *STANDIN,
        "impl.options.iters=40",
        "impl.options.base=0.15,0.05",
        "window.start=10",
        "window.end=30",
        f"hydra.sweep.dir={sweep}",
    ]
    e = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    first = subprocess.Popen(
        [sys.executable, "-m", "launcher", *rows],
        cwd=tmp_path,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(sweep.glob("0_*/train.log")):
        time.sleep(0.2)
    assert list(sweep.glob("0_*/train.log")), first.communicate(timeout=60)
    rerun = run_launcher(*rows, "rerun=failed", cwd=tmp_path, timeout=300)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count("owned by a live attempt") == 2, rerun.stdout  # the running row and the planned one
    for row in sorted(sweep.glob("[0-9]_*")):
        assert read_result(row).status == "ok"
        assert not list(row.glob("*.previous")), list(row.iterdir())  # one attempt: nothing set aside, nothing lost
        starts = (row / "output" / "log.txt").read_text().count("Starting training")
        assert starts <= 1, f"{row.name} was trained {starts} times"
