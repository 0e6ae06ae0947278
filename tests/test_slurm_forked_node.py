"""The Slurm job's node entry point as a fork of submitit's process (launcher/backends/slurm/job.py, `ForkedNode`):
the same run as `python -m launcher.node RUN_DIR` in a new interpreter, in its own session, with its own signal
handlers, and never a second return into the caller. No Slurm here: `NodeCall` is called as submitit calls it,
in a Python of its own; the Slurm tests (test_backends_slurm.py, test_faults.py) run it under the real scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from launcher.backends.slurm.job import NodeCall
from launcher.rundir import LEASE_FILE, read_result
from tests.conftest import ROOT
from tests.nodespec import node_spec

CALLER = r"""
import json, os, sys
from launcher.backends.slurm.job import NodeCall
call = NodeCall(10, 0)
print("forks:", call._can_fork(), flush=True)
status = call(sys.argv[1])
print("returned:", json.dumps({"status": status, "pid": os.getpid(), "child": call._proc.pid,
      "kind": type(call._proc).__name__}), flush=True)
"""


def _call(run_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CALLER, str(run_dir)],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_node_runs_as_a_fork_of_the_caller_to_the_same_result(tmp_path):
    node_spec(tmp_path / "fork")
    node_spec(tmp_path / "exec")
    forked, execd = _call(tmp_path / "fork"), _call(tmp_path / "exec", LAUNCHER_NODE_EXEC="1")
    for p in (forked, execd):
        assert p.returncode == 0, p.stderr
        assert p.stdout.count("returned:") == 1, p.stdout  # the child never returns into the caller's code
    said = {n: json.loads(p.stdout.split("returned:")[1]) for n, p in (("fork", forked), ("exec", execd))}
    assert "forks: True" in forked.stdout and said["fork"]["kind"] == "ForkedNode"
    assert "forks: False" in execd.stdout and said["exec"]["kind"] == "Popen"
    for name in ("fork", "exec"):
        result = read_result(tmp_path / name / "result.json")
        assert said[name]["status"] == result.status == "ok", result.error
        status = json.loads((tmp_path / name / "status.json").read_text())
        assert status["state"] == "ok"
        assert not (tmp_path / name / LEASE_FILE).exists()  # given back by the child, which runs no atexit
    a, b = read_result(tmp_path / "fork" / "result.json"), read_result(tmp_path / "exec" / "result.json")
    assert (a.window, a.images_per_iter) == (b.window, b.images_per_iter)


def test_only_the_same_interpreter_and_launcher_fork():
    assert NodeCall(10, 0)._can_fork()
    assert not NodeCall(10, 0, python="/usr/bin/python3-elsewhere")._can_fork()
    assert not NodeCall(10, 0, pythonpath="/nonexistent/checkout")._can_fork()


def test_the_forked_node_has_its_own_session_and_signal_handlers(tmp_path):
    """The child leads its own session (stopping it reaches the row's whole tree), and SIGTERM reaches the node's
    handler, not the caller's: the row ends `cancelled` with the signal named, and the caller's handler never ran."""
    run = tmp_path / "run"
    node_spec(run, iters=400, step=0.05)
    caller = CALLER.replace(
        "call = NodeCall(10, 0)",
        "import signal\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('CALLER HANDLER', flush=True))\n"
        "call = NodeCall(10, 0)",
    )
    p = subprocess.Popen(
        [sys.executable, "-c", caller, str(run)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    node_pid = None
    while time.time() < deadline and node_pid is None:
        try:
            node_pid = json.loads((run / "status.json").read_text()).get("pid")
        except (OSError, ValueError):
            time.sleep(0.05)
    assert node_pid and node_pid != p.pid
    assert os.getsid(node_pid) == node_pid != os.getsid(p.pid)
    while "iter=" not in ((run / "train.log").read_text() if (run / "train.log").exists() else ""):
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(node_pid, signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert "CALLER HANDLER" not in out, out
    result = read_result(run / "result.json")
    assert result.status == "cancelled" and "SIGTERM" in (result.error or ""), result.error
    assert out.count("returned:") == 1 and '"status": "cancelled"' in out, out + err
