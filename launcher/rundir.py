"""The run directory: the one contract between the submit host, the node and the gatherer.

Every row has its own directory; every stage talks to the others only through the files in it. This
module is that contract in one place, so no other module spells a file name, a state or a file
format:

    spec.json        the JobSpec (launcher/spec.py), written by plan on the submit host
    manifest.jsonl   one line per submission: row <-> backend <-> job id <-> run dir (backend)
    status.json      the node's marker: `running` while it runs, its final state after
    job.sh           the exact script the node ran
    train.log        the row's output as captured
    provenance.json  the machine as the job saw it
    result.json      the `Result` below: the only place a throughput figure lives

States: a node ends a row in one of `FINAL_STATES`; `LIVE_STATES` only ever come from a scheduler;
`unknown` is what is said when neither the run dir nor the scheduler can tell.

Writes that readers may race (status, result, spec) are atomic: temporary file in the same
directory, fsync, rename, so a reader sees the old file or the whole new one, whatever kills the
writer. Manifest lines are appended with one short write each (atomic under O_APPEND).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the spec module imports this one
    from .spec import JobSpec

# ---------------------------------------------------------------- the files

SPEC_FILE = "spec.json"
MANIFEST_FILE = "manifest.jsonl"
STATUS_FILE = "status.json"
JOB_SCRIPT = "job.sh"
TRAIN_LOG = "train.log"
PROVENANCE_FILE = "provenance.json"
RESULT_FILE = "result.json"
#: room the node keeps from its start (a run that fills the disk still gets a result written): see reserve_space
RESERVE_FILE = ".space-reserve"
RESERVE_BYTES = 128 * 1024

# ---------------------------------------------------------------- the states

#: how a row can end; result.json's `status` is always one of these
FINAL_STATES = ("ok", "failed", "incomplete", "timeout", "cancelled")
#: a job the scheduler still holds (never written in result.json)
LIVE_STATES = ("pending", "running")
UNKNOWN = "unknown"
#: every state a backend may report for a job
JOB_STATES = LIVE_STATES + FINAL_STATES + (UNKNOWN,)

RESULT_SCHEMA = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- atomic writes


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    tmp = _written_temporary(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    _sync_directory(path.parent)


def atomic_create_text(path: str | os.PathLike, text: str) -> None:
    """Create `path` with `text`, whole or not at all, and only if it does not exist (FileExistsError):
    the temporary file is linked to its name, which fails when the name is taken."""
    path = Path(path)
    tmp = _written_temporary(path, text)
    try:
        os.link(tmp, path)
    finally:
        _unlink(tmp)
    _sync_directory(path.parent)


def _written_temporary(path: Path, text: str) -> str:
    """A new temporary file beside `path` holding `text`, synced to disk. It is created exclusively with
    mode 0666, so the umask applies as to any other file (mkstemp's 0600 made results unreadable to the
    group sharing a sweep)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink(str(tmp))
        raise
    return str(tmp)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _sync_directory(directory: Path) -> None:
    """Make a rename or link in `directory` durable (best effort: not every file system allows it)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def set_aside(run_dir: str | os.PathLike, name: str, new_name: str | None = None) -> Path | None:
    """Rename `name` in the run dir to `new_name`, out of a new attempt's way (nothing written is lost).

    Without `new_name` the file becomes `<name>.<UTC time>.previous` beside itself (what a rerun or a
    node's new attempt leaves of the old one)."""
    src = Path(run_dir) / name
    if not src.exists():
        return None
    dst = src.with_name(new_name or f"{src.name}.{now_iso().replace(':', '')}.previous")
    os.replace(src, dst)
    return dst


def reserve_space(run_dir: str | os.PathLike, size: int = RESERVE_BYTES) -> bool:
    """Keep `size` bytes of the run dir's file system for the run's last words (its result.json and final
    status), whatever the command writes meanwhile; `release_space` gives them back just before. False when
    even that much is not free (nothing is kept then)."""
    path = Path(run_dir) / RESERVE_FILE
    try:
        with open(path, "wb") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError:
        release_space(run_dir)
        return False


def release_space(run_dir: str | os.PathLike) -> None:
    try:
        os.unlink(Path(run_dir) / RESERVE_FILE)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- status.json: the node's marker


def write_status(run_dir: str | os.PathLike, state: str, **fields: Any) -> None:
    """The node's marker: `running` (with started_at, host, pid, job_id) while it runs, its final state after."""
    atomic_write_json(Path(run_dir) / STATUS_FILE, {"state": state, **fields})


def read_status(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The node's marker as a dict; {} when there is none or it cannot be read."""
    try:
        data = json.loads((Path(run_dir) / STATUS_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------- manifest.jsonl


def append_manifest(spec: "JobSpec", job_id: str | None) -> dict:
    """Record row <-> backend <-> job id <-> run dir in the run dir and, for a sweep, the sweep dir."""
    entry = {"impl": spec.impl, "hardware": spec.hardware, "backend": spec.backend, "job_id": job_id,
             "run_dir": str(Path(spec.run_dir).resolve()), "submitted_at": now_iso()}
    line = json.dumps(entry, sort_keys=True) + "\n"
    dirs = [Path(spec.run_dir)]
    if spec.sweep_dir:
        dirs.append(Path(spec.sweep_dir))
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        with open(d / MANIFEST_FILE, "a", encoding="utf-8") as f:  # one short write: atomic under O_APPEND
            f.write(line)
    return entry


def read_manifest(directory: str | os.PathLike) -> list[dict]:
    """Every manifest line of a run or sweep dir, oldest first ([] when there is none)."""
    try:
        raw = (Path(directory) / MANIFEST_FILE).read_bytes().splitlines()
    except OSError:
        return []
    out = []
    for line in raw:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line from a killed writer; the rest stays usable
        if isinstance(entry, dict):
            out.append(entry)
    return out


def last_submission(run_dir: str | os.PathLike) -> dict | None:
    """The run dir's latest manifest line: the job that stands for the row now (a rerun supersedes)."""
    entries = read_manifest(run_dir)
    return entries[-1] if entries else None


# ---------------------------------------------------------------- result.json


class CorruptResult(ValueError):
    """A result file that cannot be read as a result."""


@dataclass
class Result:
    """result.json, schema 1 (docs/architecture.md lists every field)."""

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
    ranks: int | None = None  # the processes (world size) the row's own launcher started: hardware.ranks_per_node
    mean_step_time: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    schema: int = RESULT_SCHEMA

    def __post_init__(self) -> None:
        if self.status not in FINAL_STATES:
            raise ValueError(f"result status must be one of {FINAL_STATES}, not {self.status!r}")
        if self.status == "ok" and not _positive_number(self.throughput):
            raise ValueError(f"an ok result needs a finite, positive throughput, not {self.throughput!r}")
        if self.status != "ok" and self.throughput is not None:
            raise ValueError(f"a {self.status} result carries no throughput")

    @classmethod
    def for_spec(cls, spec: "JobSpec", status: str, **fields: Any) -> "Result":
        """The result of the row `spec` describes: its identity from the spec, the outcome from `fields`.

        The one way every writer (node, app, a scheduler settling a row) builds a result, so every
        result names its row the same way. `host` defaults to this machine, `finished_at` to now."""
        base: dict[str, Any] = dict(
            impl=spec.impl, label=spec.label, hardware=spec.hardware, backend=spec.backend,
            window_requested=list(spec.window), images_per_iter=spec.images_per_iter, reference=spec.reference,
            reference_hardware=spec.reference_hardware, tolerance=spec.tolerance, gpus=spec.gpus,
            run_dir=str(spec.run_dir), repo=spec.repo, commit=spec.commit_full or spec.commit,
            recipe_hash=spec.recipe_hash, command=spec.command, scale=spec.scale, stack=spec.stack,
            ranks=_ranks(spec), host=socket.gethostname(), finished_at=now_iso())
        base.update(fields)
        return cls(status=status, **base)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Result":
        """The result `data` describes; keys it does not know (a newer schema's) are left out."""
        return cls(**{k: v for k, v in data.items() if k in _RESULT_FIELDS})


def _ranks(spec: "JobSpec") -> int | None:
    """The world size a row's command starts on its node(s), as its plan says (impl.processes.ranks)."""
    ranks = (getattr(spec, "processes", None) or {}).get("ranks")
    try:
        return int(ranks) * max(1, int(getattr(spec, "nodes", 1) or 1)) if ranks is not None else None
    except (TypeError, ValueError):
        return None


def _positive_number(value: Any) -> bool:
    """A figure a table may show: a real number, finite and above zero (never NaN, inf, 0, a bool, a string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


_RESULT_FIELDS = frozenset(f.name for f in dataclasses.fields(Result))


def write_result(run_dir: str | os.PathLike, result: Result) -> Path:
    path = Path(run_dir) / RESULT_FILE
    atomic_write_json(path, result.to_dict())
    return path


def read_result(path: str | os.PathLike) -> Result:
    """Read a result file (or a run dir's); a corrupt or half-written one raises `CorruptResult` naming it."""
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
