"""The row's own log: which file the parser reads, and whether this run wrote it (issue 10, item 1).

Seed rows run in a work tree shared by every run of their recipe, and their logs land inside it
(detectron2 appends to output/log.txt, mmdetection leaves a *.log.json per run). Whatever the row's
config does about that, a figure is only ever taken from this run's own log: a log file last written
before the run started, or one holding records stamped before it, is refused (`measure(spec, since)`),
and an earlier attempt's logs inside the run dir are moved aside before a new attempt starts.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .. import parse
from ..rundir import TRAIN_LOG, set_aside
from ..spec import JobSpec


def log_file(spec: JobSpec) -> Path:
    """The file the row's parser reads: the one its config names (newest match), else the captured output."""
    if not spec.log_path:
        return Path(spec.run_dir) / TRAIN_LOG
    pattern = spec.log_path if os.path.isabs(spec.log_path) else str(spec.exec_dir / spec.log_path)
    matches = [Path(p) for p in glob.glob(pattern)]
    if not matches:
        return Path(pattern)
    return max(matches, key=lambda p: p.stat().st_mtime)


class OldLogFile(parse.ParseError):
    """The row's log file was last written before this run started: an older run's log, not this one's."""


def _iso(posix: float) -> str:
    return datetime.fromtimestamp(posix, timezone.utc).isoformat(timespec="milliseconds")


def measure(spec: JobSpec, since: "RunStart | None" = None):
    """Parse the row's log over its window (raises parse.ParseError subclasses, OSError).

    With `since` (the run's start) a log file last written before the run started (OldLogFile) and a log
    holding records stamped before it (parse.StaleLog) are refused: a work tree or output directory
    shared between runs must never lend this run another run's figure."""
    path = log_file(spec)
    not_before = None
    if since is not None:
        mtime = path.stat().st_mtime
        if mtime < since.file_clock:
            raise OldLogFile(
                f"{path} was last written at {_iso(mtime)}, before this run started at "
                f"{_iso(since.file_clock)}: it is an older run's log, and this run wrote nothing to it. "
                "Give each run its own output directory (the row's output option pointed into the "
                "run dir), or move the old log aside before the run starts"
            )
        not_before = datetime.fromtimestamp(since.wall_clock, timezone.utc)
    text = parse.read_log(path)
    return parse.get_parser(spec.log_format).measure(
        text, tuple(spec.window), spec.images_per_iter, not_before=not_before
    )


@dataclass(frozen=True)
class RunStart:
    """When this run started, on the two clocks a log is judged by: the node's (the stamps its records carry)
    and the file system's (the mtime of a file this node wrote at its start; on a network file system that is
    the server's clock, which is the one the log file's own mtime comes from)."""

    wall_clock: float
    file_clock: float

    @classmethod
    def now(cls, marker: Path) -> "RunStart":
        """The start, `marker` being a file just written in the run dir (status.json)."""
        wall = time.time()
        try:
            return cls(wall, marker.stat().st_mtime)
        except OSError:
            return cls(wall, wall)


def set_aside_own_logs(spec: JobSpec) -> list[Path]:
    """Rename an earlier attempt's logs in this row's run dir out of the way (a rerun, a requeue): its captured
    train.log and any file of the row's log pattern that lies inside the run dir. Files outside it (a work
    tree shared with other runs) are never touched: another run may be writing them."""
    run_dir = Path(spec.run_dir).resolve()
    moved = [set_aside(run_dir, TRAIN_LOG)]
    if spec.log_path:
        pattern = spec.log_path if os.path.isabs(spec.log_path) else str(spec.exec_dir / spec.log_path)
        for match in glob.glob(pattern):
            path = Path(match).resolve()
            if (
                run_dir in path.parents
                and path.is_file()
                and path.name != TRAIN_LOG
                and not path.name.endswith(".previous")
            ):
                moved.append(set_aside(path.parent, path.name))
    return [m for m in moved if m is not None]
