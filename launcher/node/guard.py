"""Checks the node makes before it believes a figure or a spec (issue 21, classes 3 and 11).

* `clock_refusal`: the node knows when the row's command started and ended on its own monotonic clock.
  A figure's window lies inside that run, so a window the log says lasted longer than the whole command
  (log stamps that jumped: an NTP step, a suspended VM, a clock set by hand; or a log that is not this
  run's) is refused, naming both durations, never reported as a (tiny) throughput.
* `unreadable_spec_result`: a spec.json that cannot be read (truncated by a full disk, edited by hand)
  still ends in a `failed` result.json that says so, never a traceback and no row.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

from ..rundir import RESULT_FILE, SPEC_FILE, Result, now_iso, set_aside, write_result

#: what the test stand-in (launcher/jobs/standin, --fast) prints first: its log's times are simulated, not spent.
#: Only a stand-in says so, and the figure then says it too (`simulated_clock`); a real row's log never does.
SIMULATED_CLOCK_MARKER = "launcher stand-in: SIMULATED CLOCK (--fast): the times in this log were not spent"

#: how much longer than the command a window may look: the command's start-up and the stamps' own rounding
#: are well under this; a jumped clock is minutes to hours
CLOCK_SLACK_S = 1.0


def clock_refusal(m, run_s: float | None) -> str | None:
    """The error when measurement `m`'s window lasted longer than the command that wrote it (`run_s`,
    monotonic), else None."""
    if run_s is None or m is None:
        return None
    window_s = float(m.mean_step_time) * (m.window[1] - m.window[0])
    shortest = window_s * (1.0 - min(float(m.error_bound or 0.0), 0.5))  # the log's rounding, in its favour
    if shortest <= run_s + CLOCK_SLACK_S:
        return None
    return (
        f"the log says iterations {m.window[0] + 1}..{m.window[1]} took {window_s:.1f} s, but the command ran "
        f"only {run_s:.1f} s by this node's monotonic clock: the log's clock jumped during the run (an NTP step, "
        "a suspended machine, a clock set by hand) or the log is not this run's own. No figure is given; "
        "run the row again (and check the node's clock: timedatectl, chronyc tracking)"
    )


def simulated_clock(train_log: Path) -> bool:
    """Whether the captured output declares the stand-in's simulated clock (looked for in its first 64 KiB)."""
    try:
        with open(train_log, "rb") as f:
            return SIMULATED_CLOCK_MARKER.encode() in f.read(1 << 16)
    except OSError:
        return False


def _salvage(text: str, key: str) -> str | None:
    m = re.search(rf'"{key}"\s*:\s*"([^"\\]{{1,200}})"', text)
    return m.group(1) if m else None


def unreadable_spec_result(run_dir: str | os.PathLike, error: Exception) -> str:
    """Write a `failed` result.json for a run dir whose spec.json cannot be read; return the message."""
    run_dir = Path(run_dir).resolve()
    path = run_dir / SPEC_FILE
    try:
        text = path.read_bytes()[: 1 << 20].decode("utf-8", "replace")
    except OSError:
        text = ""
    message = (
        f"{path} cannot be read as a job spec ({type(error).__name__}: {error}); it is truncated or was "
        "edited. The node ran nothing. Plan the row again (python -m launcher ... with a new run dir, or "
        "rerun=failed), which writes a whole spec.json"
    )
    result = Result(
        impl=_salvage(text, "impl") or "unknown",
        hardware=_salvage(text, "hardware") or "unknown",
        backend=_salvage(text, "backend") or "unknown",
        status="failed",
        error=message,
        label=_salvage(text, "label") or "",
        run_dir=str(run_dir),
        started_at=now_iso(),
        finished_at=now_iso(),
        host=socket.gethostname(),
    )
    try:
        set_aside(run_dir, RESULT_FILE)
        write_result(run_dir, result)
    except OSError as e:
        return f"{message} (and no result.json could be written: {e.strerror or e})"
    return message


def load_json_object(path: Path) -> dict:
    """A JSON object from `path`; ValueError naming the file otherwise."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data
