"""The result of one run (`result.json`): the only place a throughput figure lives.

Written atomically (temporary file in the same directory, fsync, rename) so a reader never sees a
half-written file, whatever kills the writer; read back with a clear error naming the file when it
is corrupt.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = 1
RESULT_FILE = "result.json"

#: Final states a node can write. `pending` / `running` only ever come from a backend's job state.
FINAL_STATES = ("ok", "failed", "incomplete", "timeout", "cancelled")


class CorruptResult(ValueError):
    """A result file that cannot be read as a result."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Result:
    impl: str
    hardware: str
    backend: str
    status: str
    label: str = ""
    throughput: float | None = None
    window: list[int] | None = None
    window_requested: list[int] | None = None
    images_per_iter: int | None = None
    method: str | None = None
    error_bound: float | None = None
    error: str | None = None
    reference: float | None = None
    reference_hardware: str | None = None
    tolerance: float | None = None
    gpus: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    host: str | None = None
    job_id: str | None = None
    run_dir: str | None = None
    repo: str | None = None
    commit: str | None = None
    recipe_hash: str | None = None
    command: str | None = None
    returncode: int | None = None
    log_path: str | None = None
    data: str | None = None
    scale: str | None = None
    stack: str | None = None  # seed | today (conf/stack/): which software the row's code ran on
    mean_step_time: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        if self.status not in FINAL_STATES:
            raise ValueError(f"result status must be one of {FINAL_STATES}, not {self.status!r}")
        if self.status == "ok" and not (self.throughput and self.throughput > 0):
            raise ValueError("an ok result needs a positive throughput")
        if self.status != "ok" and self.throughput is not None:
            raise ValueError(f"a {self.status} result carries no throughput")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Result":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_result(run_dir: str | os.PathLike, result: Result) -> Path:
    path = Path(run_dir) / RESULT_FILE
    atomic_write_json(path, result.to_dict())
    return path


def read_result(path: str | os.PathLike) -> Result:
    """Read a result file; a corrupt or half-written one raises `CorruptResult` naming it."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptResult(f"{path}: not a readable result file ({e}); re-run the row or delete the file") from e
    if not isinstance(data, dict):
        raise CorruptResult(f"{path}: expected a JSON object, found {type(data).__name__}")
    try:
        return Result.from_dict(data)
    except (TypeError, ValueError) as e:
        raise CorruptResult(f"{path}: {e}") from e
