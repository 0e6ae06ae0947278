"""Follow submitted rows until they end: state, current iteration, current img/s and ETA per row.

Reads only what the jobs write (their logs through the row's parser, status files) and the backend's
job states, so following can stop (Ctrl-C) and start again from any shell without touching the jobs.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, TextIO

from . import parse
from .backends import Backend
from .node.ownlog import log_file
from .rundir import FINAL_STATES, RESULT_FILE, JobState, State
from .spec import JobSpec


@dataclass
class Row:
    spec: JobSpec
    job_id: str | None
    state: JobState | None = None
    last_iter: int | None = None
    rate: float | None = None
    since: float | None = None

    def eta_s(self) -> float | None:
        if self.rate and self.last_iter is not None:
            remaining = max(0, self.spec.window[1] - self.last_iter) * self.spec.images_per_iter
            return remaining / self.rate
        return None


def _progress(spec: JobSpec) -> tuple[int | None, float | None]:
    path = log_file(spec)
    try:
        p = parse.get_parser(spec.log_format).progress(parse.read_log(path))
    except (OSError, parse.ParseError):
        return None, None
    return (p.last_iter, p.rate) if p else (None, None)


def describe(row: Row) -> str:
    st = row.state.state if row.state else "?"
    parts = [f"{row.spec.impl:<20}", f"{st:<10}", f"job {row.job_id or '-':<14}"]
    if row.last_iter is not None:
        parts.append(f"iter {row.last_iter}/{row.spec.window[1]}")
    if row.rate:
        parts.append(f"{row.rate:.2f} img/s")
    eta = row.eta_s()
    if eta is not None and st == State.RUNNING:
        parts.append(f"ETA {eta:.0f} s")
    if row.state and row.state.reason and st in FINAL_STATES and st != State.OK:
        parts.append(f"({row.state.reason.splitlines()[0][:80]})")
    elif row.state and row.state.reason and st == State.PENDING:  # Resources, Priority; or why it cannot start
        parts.append(f"({row.state.reason.splitlines()[0][:200]})")
    return "  ".join(parts)


def follow(
    specs: Sequence[JobSpec],
    job_ids: Sequence[str | None],
    backends: Mapping[str, Backend],
    poll_s: float = 2.0,
    out: TextIO = sys.stdout,
    timeout_s: float | None = None,
) -> list[Row]:
    """Poll until every row is in a final state (or `timeout_s` passes); print a line per change.
    `backends`: the sweep's backend instances by name; each is asked once per poll for all its rows."""
    rows = [Row(s, j) for s, j in zip(specs, job_ids)]
    _prewarm_gather()
    shown: dict[int, str] = {}
    t0 = time.monotonic()
    while True:
        live = [i for i, row in enumerate(rows) if not (row.state and row.state.state in FINAL_STATES)]
        for name in dict.fromkeys(rows[i].spec.backend for i in live):  # one scheduler query per backend and poll
            mine = [i for i in live if rows[i].spec.backend == name]
            for i, st in zip(mine, backends[name].states([(rows[i].job_id, rows[i].spec.run_dir) for i in mine])):
                rows[i].state = st
        for i in live:
            row = rows[i]
            row.last_iter, row.rate = _progress(row.spec)
            line = describe(row)
            if shown.get(i) != line:
                shown[i] = line
                print(f"[{time.strftime('%H:%M:%S')}] {line}", file=out, flush=True)
        if all(r.state and r.state.state in FINAL_STATES for r in rows):
            return rows
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            return rows
        _sleep_until_a_result(rows, poll_s)


def _prewarm_gather() -> None:
    """Import the gatherer (pandas: 1-2 s) in the background while the rows run, so the table comes as soon as
    the last row ends instead of after that import (bench/vs_plugin.py: the tail of a blocking launch)."""

    def warm() -> None:
        importlib.import_module("launcher.gather")
        importlib.import_module("launcher.catalog").load_rows()  # every row's published figure, for the table

    threading.Thread(target=warm, name="prewarm-gather", daemon=True).start()


#: how often the follower looks for a row's result.json between two scheduler polls
RESULT_LOOK_S = 0.1


def _sleep_until_a_result(rows: list[Row], poll_s: float) -> None:
    """Sleep `poll_s`, but wake as soon as a running row writes its result.json: the scheduler is asked every
    poll_s (5 s on Slurm), the run dirs ten times a second, so a sweep's end is seen within a tenth of a second
    instead of half a poll on average (bench/makespan.py, the 'follow' profile)."""

    def stamps() -> list[float | None]:
        out = []
        for r in rows:
            if r.state and r.state.state in FINAL_STATES:
                out.append(None)
                continue
            try:
                out.append((Path(r.spec.run_dir) / RESULT_FILE).stat().st_mtime)
            except OSError:
                out.append(None)
        return out

    before = stamps()
    deadline = time.monotonic() + poll_s
    while time.monotonic() < deadline:
        time.sleep(min(RESULT_LOOK_S, max(0.0, deadline - time.monotonic())))
        if stamps() != before:
            return


def reattach_hint(directory: str | Path) -> str:
    return (
        f"The jobs keep running. Re-attach: python -m launcher.gather {directory}\n"
        f"Cancel them:  python -m launcher.cancel {directory}"
    )
