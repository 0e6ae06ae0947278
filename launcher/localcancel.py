"""`python -m launcher.cancel` on rows the local backend runs (issue 21, class 6).

A local row runs inside the launcher's own process, so there is no scheduler to ask.  Cancel used to
print "cancelled ... (was running)" and exit 0 while the row ran on to `ok`.  Now it stops what it says
it stops, or says it cannot:

* a row not started yet (its launcher holds it, planned): a cancel request (`CANCEL_FILE`) in its run
  dir; the launcher writes it a `cancelled` result instead of starting it.  A row whose launcher is gone
  gets its `cancelled` result at once;
* a running row: the cancel request, then SIGUSR2 to the process its status.json and its lease name
  (the same process, on this host, in this boot), which stops that row's command only (the sweep goes on
  to its next row); cancel then waits for the row's result and says `cancelled` only once it reads so;
* a row running on another host, or that does not stop within `WAIT_S`: said so, exit non-zero.

A second cancel finds the row `cancelled` (or its request already made) and says that, not the claim again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

from . import lease
from .rundir import (
    CANCEL_FILE,
    FINAL_STATES,
    RESULT_FILE,
    Result,
    atomic_create_text,
    now_iso,
    read_status,
    set_aside,
    write_result,
)

#: how long cancel waits for a running row's result (the command gets SIGTERM, SIGKILL 10 s later)
WAIT_S = 45.0


def cancel_requested(run_dir: str | os.PathLike) -> dict | None:
    try:
        data = json.loads((Path(run_dir) / CANCEL_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"at": "?"}
    return data if isinstance(data, dict) else {"at": "?"}


def not_started(spec, reason: str) -> None:
    """A `cancelled` result for a row that never started (kept aside: a result already there)."""
    holder = lease.live_holder(spec.run_dir)
    if holder is not None:  # another live attempt owns it: its result is its own to write
        return
    set_aside(spec.run_dir, RESULT_FILE)
    write_result(spec.run_dir, Result.for_spec(spec, "cancelled", started_at=None, error=reason))
    lease.release(spec.run_dir)


def _request(run_dir: Path) -> bool:
    """Record the cancel request; False when one was made already."""
    try:
        atomic_create_text(
            run_dir / CANCEL_FILE,
            json.dumps({"at": now_iso(), "by_pid": os.getpid(), "host": socket.gethostname()}) + "\n",
        )
        return True
    except FileExistsError:
        return False


def _final(run_dir: Path) -> str | None:
    try:
        data = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status if status in FINAL_STATES else None


def cancel_local(run_dir: str | os.PathLike, state: str, wait_s: float = WAIT_S) -> tuple[bool, str]:
    """Cancel the local row in `run_dir` whose state is `state`: (done, what to print)."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    holder = lease.read(run_dir) or {}
    if status.get("state") != "running":  # planned, not started
        if not _request(run_dir):
            return True, f"already asked to cancel ({(cancel_requested(run_dir) or {}).get('at')}): it will not start"
        if lease.live_holder(run_dir) is None:  # its launcher is gone: nothing will ever start it
            from .spec import JobSpec

            try:
                not_started(
                    JobSpec.load(run_dir),
                    "cancelled before it started (python -m launcher.cancel); its launcher had ended",
                )
            except (OSError, ValueError, TypeError) as e:
                return False, f"cannot write its cancelled result: {e}"
        return True, f"cancelled (was {state}): it will not start"
    host = status.get("host")
    if host and host != socket.gethostname():
        return False, (
            f"it runs on {host}, in the launcher there (local backend): cancel it from {host} "
            "(python -m launcher.cancel there, or Ctrl-C in that launcher's terminal)"
        )
    pid = status.get("pid")
    if not isinstance(pid, int) or holder.get("pid") != pid or not lease.alive(holder):
        return False, (
            f"its status.json names process {pid}, which is not the live owner of the run dir "
            f"({lease.describe(holder) if holder else 'no lease'}); nothing was signalled"
        )
    if not _request(run_dir):
        return (
            True,
            f"already being cancelled (asked at {(cancel_requested(run_dir) or {}).get('at')}); not asked again",
        )
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError:
        return False, f"its process {pid} ended before it could be signalled"
    except PermissionError:
        return False, f"not allowed to signal its process {pid} (another user's launcher)"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        now = _final(run_dir)
        if now is not None:
            if now == "cancelled":
                return True, f"cancelled (was {state}): its command stopped, result.json says cancelled"
            return False, f"asked to stop, but the row ended {now} first"
        time.sleep(0.3)
    return False, f"asked to stop (SIGUSR2 to {pid}), but it has not ended after {wait_s:.0f} s; check its run dir"
