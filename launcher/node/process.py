"""Process groups: how every part of the launcher ends a process tree it started.

A row's command, the node entry point inside a Slurm job and an embedded Ray head each run as the
leader of their own process group (`start_new_session=True`), so one signal to the group reaches
every rank, data loader or raylet they spawned. Ending one is always the same: SIGTERM, so the tree
can write what it must (the node writes its result), then SIGKILL for whatever is left after a grace
period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group `pgid` exists (an unreaped leader counts)."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, not ours
        return True


def stop_group(
    pgid: int,
    grace_s: float,
    done: Callable[[], bool] | None = None,
    *,
    kill_wait_s: float = 0.0,
    background: bool = False,
    poll_s: float = 0.2,
) -> None:
    """SIGTERM the process group `pgid`; SIGKILL it if `done()` is not true within `grace_s`.

    `done` defaults to "the group is gone"; pass `lambda: proc.poll() is not None` when the leader's
    end is what counts. `kill_wait_s`: how long to wait for `done()` after SIGKILL. `background`:
    send SIGTERM now and leave the waiting and the SIGKILL to a daemon thread (the caller goes on).
    """
    done = done or (lambda: not group_alive(pgid))
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return

    def kill_after_grace() -> None:
        if _wait(done, grace_s, poll_s):
            return
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        _wait(done, kill_wait_s, poll_s)

    if background:
        threading.Thread(target=kill_after_grace, name=f"stop-group-{pgid}", daemon=True).start()
    else:
        kill_after_grace()


# launcher/node/watchdog.py's text, run as `python -I -c` (isolated: no module of the launcher or the cwd loads)
_WATCHDOG = (Path(__file__).parent / "watchdog.py").read_text(encoding="utf-8")


def watch_group(pgid: int, grace_s: float) -> subprocess.Popen:
    """A watchdog that ends the process group `pgid` (TERM, then KILL after `grace_s`) if this process dies
    first: a launcher killed with SIGKILL cannot stop its command, and a command in its own session would
    otherwise live on under PID 1. Kill the watchdog (`.kill()`) once the group has ended normally."""
    return subprocess.Popen(
        [sys.executable, "-I", "-c", _WATCHDOG, str(os.getpid()), str(pgid), str(grace_s)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=True,
    )


def _wait(done: Callable[[], bool], timeout_s: float, poll_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
