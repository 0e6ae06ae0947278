"""Issue 13, items 2, 5 and 6: a full disk, a killed launcher and a Ctrl-C leave every row accounted for."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from launcher.rundir import read_result, read_status
from launcher.spec import JobSpec
from tests.conftest import ROOT, tmpfs

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
#: a command that prints forever (far more than the file-size limit below), fast
FLOOD = "while true; do echo 'a line of output that fills the disk, over and over and over again'; done"


def node_run(run: Path, command: str, time_limit_min: int = 5) -> JobSpec:
    spec = JobSpec(
        impl="torchvision",
        label="t",
        title="t",
        framework="PyTorch",
        command=command,
        images_per_iter=2,
        window=[1, 2],
        log_format="torchvision",
        run_dir=str(run),
        min_gpus=0,
        stop_when_covered=False,
        time_limit_min=time_limit_min,
    )
    spec.save()
    return spec


def run_node_process(run: Path, preexec=None, timeout: float = 90) -> tuple[int, str, float]:
    t0 = time.monotonic()
    p = subprocess.Popen(
        [sys.executable, "-m", "launcher.node", str(run)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
        start_new_session=True,
    )
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"the node hung for {timeout} s (the time limit is minutes away)")
    return p.returncode, err, time.monotonic() - t0


def test_a_log_that_cannot_grow_stops_the_run(tmp_path):
    """RLIMIT_FSIZE makes every write past 256 KiB fail (EFBIG), as a full disk does (ENOSPC): the output
    pump used to die, the command then blocked on a full pipe and the node waited for the time limit."""
    run = tmp_path / "run"
    node_run(run, FLOOD)
    limit = 256 * 1024
    code, err, took = run_node_process(run, preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert code != 0 and took < 60
    r = read_result(run)
    assert r.status == "failed" and "train.log" in r.error and "File too large" in r.error, r.error
    assert read_status(run)["state"] == "failed"
    assert (run / "train.log").stat().st_size == limit  # everything that fitted is kept
    assert "File too large" in err


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs the right to mount: root in CI; skipped elsewhere)."""
    where = tmp_path / "disk"
    where.mkdir()
    with tmpfs(where, "; the RLIMIT_FSIZE test covers the path"):
        yield where


def test_a_full_disk_stops_the_run_and_still_leaves_a_result(small_disk):
    run = small_disk / "run"
    node_run(run, FLOOD)
    code, err, took = run_node_process(run)
    assert code != 0 and took < 60
    assert "No space left on device" in err
    r = read_result(run)  # written in the room the node kept for it
    assert r.status == "failed" and "No space left on device" in r.error
    assert read_status(run)["state"] == "failed"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def looping_command(tmp_path: Path, marker: str) -> str:
    """A row whose command (and a child of it) runs for minutes, writing its pids where the test finds them."""
    script = tmp_path / "loop.sh"
    script.write_text(
        f"echo $$ >> {tmp_path}/pids\n(exec -a {marker}-child sleep 300) &\necho $! >> {tmp_path}/pids\n"
        "while true; do echo tick; sleep 0.2; done\n"
    )
    return f"impl.command=bash {script}"


def test_a_killed_launcher_takes_its_command_with_it(tmp_path):
    marker = f"orphan-{uuid.uuid4().hex[:8]}"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launcher",
            looping_command(tmp_path, marker),
            "scale=full",
            "window.start=1",
            "window.end=2",
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pids: list[int] = []
    try:
        wait_for(
            lambda: (tmp_path / "pids").exists() and len((tmp_path / "pids").read_text().split()) == 2,
            120,
            "the command to start",
        )
        pids = [int(x) for x in (tmp_path / "pids").read_text().split()]
        assert all(alive(pid) for pid in pids)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        wait_for(lambda: not any(alive(pid) for pid in pids), 20, "the orphaned command to end")
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    run = next((tmp_path / "outputs").rglob("spec.json")).parent
    g = subprocess.run(
        [sys.executable, "-m", "launcher.gather", str(run), "--format", "json", "--no-record"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = json.loads(g.stdout)["runs"]
    assert [r["status"] for r in rows] == ["failed"], rows


def test_one_ctrl_c_ends_a_local_sweep(tmp_path):
    """A terminal's Ctrl-C sends SIGINT to the launcher's process group: the running row is cancelled, no
    other row starts, and the command exits 130."""
    marker = f"sweep-{uuid.uuid4().hex[:8]}"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launcher",
            "-m",
            "seed=1,2,3",
            looping_command(tmp_path, marker),
            "scale=full",
            "window.start=1",
            "window.end=2",
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: (tmp_path / "pids").exists() and len((tmp_path / "pids").read_text().split()) == 2,
            120,
            "the first row to start",
        )
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        started = (tmp_path / "pids").read_text().split() if (tmp_path / "pids").exists() else []
        leftover = [int(pid) for pid in started if alive(int(pid))]
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
    assert not leftover, "the sweep left commands running"
    assert p.returncode == 130, out[-2000:] + err[-2000:]
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    statuses = {d.name: read_result(d) for d in sorted(sweep.glob("*_torchvision"))}
    assert [r.status for r in statuses.values()] == ["cancelled"] * 3
    assert "SIGINT" in statuses["0_torchvision"].error
    assert all("not started" in r.error for name, r in statuses.items() if name != "0_torchvision")
    assert not (sweep / "1_torchvision" / "train.log").exists() and not (sweep / "2_torchvision" / "train.log").exists()
    assert len(started) == 2  # one command (and its child) started, not three


def test_a_signal_while_the_command_starts_still_cancels_it(tmp_path, monkeypatch):
    """Ctrl-C that lands between the command's start and the node's hold on it (the watchdog starting) used
    to be recorded and then ignored: the row ran on to its time limit."""
    import launcher.node.run as node
    from launcher.node.execute import Execution

    class SignalledWhileStarting(Execution):
        def start(self):
            started = super().start()
            os.kill(os.getpid(), signal.SIGINT)  # handled now, before node.execution is assigned
            return started

    monkeypatch.setattr(node, "Execution", SignalledWhileStarting)
    node_run(tmp_path / "run", "while true; do echo tick; sleep 0.2; done", time_limit_min=1)
    t0 = time.monotonic()
    r = node.run_node(tmp_path / "run")
    assert r.status == "cancelled" and "SIGINT" in r.error and time.monotonic() - t0 < 30
