"""A log file can hold several training runs; a figure comes from one run's own records.

How several runs end up in one file: an implementation that opens its log in append mode (detectron2
``output/log.txt``, maskrcnn-benchmark ``log.txt``) in a work tree reused by a rerun, a job that the
scheduler restarted and that appends to the same captured output, a resume from a checkpoint.  Running
means restart with each run (detectron2's ``EventStorage``, maskrcnn-benchmark's ``MetricLogger``), and
iteration numbers may repeat, so records of two runs must never be combined.

Each format names the lines that begin a run (``Starting training from iteration N``, ``Start
training``, ...); a run also begins where the iteration count goes back without such a line.  Lines
before a run's first record (a config dump, the checkpoint it loads) belong to that run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest, SeveralRuns
from .stamps import Stamp


@dataclass
class Run:
    """One training run's records, in log order."""

    line: int  # 1-based line of the file where the run starts (its marker, else its first record)
    marker: str | None  # what marks the start: the marker line, or why a new run was inferred
    records: list = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # what the markers say (start iteration, checkpoint loaded)
    walls: list[tuple[int | None, Stamp]] = field(default_factory=list)  # stamped records: (iteration, stamp)
    first: int | None = None  # completed iterations at the first / last record whose global count is known
    last: int | None = None

    def describe(self) -> str:
        span = f"iterations {self.first}..{self.last}" if self.first is not None else f"{len(self.records)} records"
        start = f"line {self.line}" + (f", {self.marker!r}" if self.marker else "")
        return f"{span} (from {start})"


class RunBuilder:
    """Groups records into runs while a format's scanner walks the log."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self._key: Any = None

    def mark(self, line: int, marker: str, **info: Any) -> None:
        """A line that begins a run: starts a new run unless the current one has no records yet."""
        cur = self.runs[-1] if self.runs else None
        if cur is None or cur.records:
            cur = Run(line, marker.strip()[:80])
            self.runs.append(cur)
            self._key = None
        cur.info.update({k: v for k, v in info.items() if v is not None})

    def add(
        self, line: int, record: Any, key: Any = None, iteration: int | None = None, wall: Stamp | None = None
    ) -> None:
        """A record; `key` orders records within a run (a smaller key than the last one starts a new run)."""
        if not self.runs:
            self.runs.append(Run(line, None))
        elif key is not None and self._key is not None and key < self._key:
            self.runs.append(Run(line, f"iteration count went back to {record_label(key)}"))
        cur = self.runs[-1]
        cur.records.append(record)
        if key is not None:
            self._key = key
        if iteration is not None:
            cur.first = iteration if cur.first is None else min(cur.first, iteration)
            cur.last = iteration if cur.last is None else max(cur.last, iteration)
        if wall is not None:
            cur.walls.append((iteration, wall))


def record_label(key: Any) -> str:
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


def pick_run(fmt: str, runs: list[Run], run: int | None) -> tuple[int, Run]:
    """The run to measure (1-based index and run): the only one, or the one `run` names (-1: the last)."""
    n = len(runs)
    if run is None:
        if n == 1:
            return 1, runs[0]
        raise SeveralRuns(fmt, [r.describe() for r in runs])
    if isinstance(run, bool) or not isinstance(run, int):
        raise BadRequest(f"run must be a whole number (1-based, -1 for the last), got {run!r}")
    if run == -1:
        return n, runs[-1]
    if 1 <= run <= n:
        return run, runs[run - 1]
    raise BadRequest(
        f"run={run}: the {fmt} log holds {n} run{'s' if n != 1 else ''}; choose 1..{n}, or -1 for the last"
    )
