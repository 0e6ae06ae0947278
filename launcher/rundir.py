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

States (`State`, a str enum): a node ends a row in one of `FINAL_STATES`; `LIVE_STATES` only ever come
from a scheduler; `unknown` is what is said when neither the run dir nor the scheduler can tell.

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
from enum import Enum
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
TELEMETRY_FILE = "telemetry.csv"  # nvidia-smi's samples while the command ran (launcher/node/telemetry.py)
HOST_TELEMETRY_FILE = "host-telemetry.csv"  # the host's CPU and the command's RSS, same period
#: room the node keeps from its start (a run that fills the disk still gets a result written): see reserve_space
RESERVE_FILE = ".space-reserve"
RESERVE_BYTES = 128 * 1024
#: the lease of the attempt that owns the run dir (launcher/lease.py: one live attempt per run dir)
LEASE_FILE = ".lease"
#: `python -m launcher.cancel`'s request to a row (launcher/localcancel.py)
CANCEL_FILE = "cancel-request.json"

#: What a backend tells the node inside its job (Backend.job_environ); the node reads these, never a
#: scheduler's own variables: the job id as `submit` returned it, the job's nodes, the scheduler's
#: variables worth keeping in provenance (a JSON object).
JOB_ID_VAR, JOB_NODES_VAR, JOB_NUM_NODES_VAR, SCHEDULER_ENV_VAR = (
    "LAUNCHER_JOB_ID",
    "LAUNCHER_JOB_NODES",
    "LAUNCHER_JOB_NUM_NODES",
    "LAUNCHER_SCHEDULER_ENV",
)

# ---------------------------------------------------------------- the states


class State(str, Enum):
    """Every state a row's job can be in. A str, so it compares with, and is written as, its value."""

    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    INCOMPLETE = "incomplete"  # the log stopped short of the window
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # neither the run dir nor the scheduler can tell

    __str__ = str.__str__
    __format__ = str.__format__

    @classmethod
    def of(cls, value: str) -> "State":
        """The state called `value`; ValueError naming the states there are."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown job state {value!r}; one of {', '.join(s.value for s in cls)}") from None


#: how a row can end; result.json's `status` is always one of these
FINAL_STATES = (State.OK, State.FAILED, State.INCOMPLETE, State.TIMEOUT, State.CANCELLED)
#: a job the scheduler still holds (never written in result.json)
LIVE_STATES = (State.PENDING, State.RUNNING)
UNKNOWN = State.UNKNOWN


@dataclass
class JobState:
    """A job's state as a backend reports it, and why (a pending reason, how it failed)."""

    state: State
    reason: str | None = None

    def __post_init__(self) -> None:
        self.state = State.of(self.state)


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


#: the largest state file (spec, status, result, manifest) read back; a bigger one is not ours
MAX_STATE_BYTES = 64 << 20


def read_small(path: str | os.PathLike, limit: int = MAX_STATE_BYTES) -> bytes:
    """The bytes of a state file the launcher wrote (spec/status/result/manifest), read only when it is a regular
    file of at most `limit` bytes: a FIFO planted in its place never blocks a reader, /dev/zero or a huge file
    never fills memory (OSError naming it; callers treat it as unreadable)."""
    import stat as _stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise OSError(f"{path} is {st.st_size} bytes, more than any file the launcher writes ({limit})")
        chunks, size = [], 0
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            size += len(block)
            if size > limit:
                raise OSError(f"{path} grew past {limit} bytes while being read")
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


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
    from .safeio import open_new  # never through a link planted in the run dir

    path = Path(run_dir) / RESERVE_FILE
    try:
        with open_new(path) as f:
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
        data = json.loads(read_small(Path(run_dir) / STATUS_FILE))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------- manifest.jsonl


def append_manifest(spec: "JobSpec", job_id: str | None) -> dict:
    """Record row <-> backend <-> job id <-> run dir in the run dir and, for a sweep, the sweep dir."""
    run_dir = Path(spec.run_dir).resolve()
    entry = {
        "impl": spec.impl,
        "hardware": spec.hardware,
        "backend": spec.backend,
        "job_id": job_id,
        "run_dir": str(run_dir),
        "submitted_at": now_iso(),
    }
    dirs = [Path(spec.run_dir)]
    if spec.sweep_dir:
        dirs.append(Path(spec.sweep_dir))
    from .safeio import append_text  # never through a link planted in the run or sweep dir

    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        # where the run dir lies relative to this manifest: a sweep copied elsewhere finds its own rows
        rel = os.path.relpath(run_dir, d.resolve())
        line = json.dumps({**entry, "rel_run_dir": rel}, sort_keys=True) + "\n"
        append_text(d / MANIFEST_FILE, line)  # one short write: atomic under O_APPEND
    return entry


def read_manifest(directory: str | os.PathLike) -> list[dict]:
    """Every manifest line of a run or sweep dir, oldest first ([] when there is none)."""
    try:
        raw = read_small(Path(directory) / MANIFEST_FILE).splitlines()
    except OSError:
        return []
    from .trust import checked_entry  # validated and rebased onto where the manifest lies now

    out = []
    for line in raw:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line from a killed writer; the rest stays usable
        if isinstance(entry, dict):
            out.append(checked_entry(entry, Path(directory)))
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
    pinned_commit: str | None = None  # the row's own pin when the commit that ran is another (plan.py)
    recipe_hash: str | None = None
    command: str | None = None
    returncode: int | None = None
    log_path: str | None = None
    data: str | None = None
    scale: str | None = None
    stack: str | None = None  # seed | today (conf/stack/): which software the row's code ran on
    mean_step_time: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    telemetry: dict[str, Any] = field(default_factory=dict)  # GPU / host figures over the window (telemetry.py)
    nodes: int | None = None  # nodes the row ran on (hardware.nodes); null in older results
    ranks: int | None = None  # the world size the row's own launcher started: ranks per node x nodes
    hosts: list[str | None] | None = None  # every node's host, node rank order (launcher/span.py)
    schema: int = RESULT_SCHEMA

    def __post_init__(self) -> None:
        if self.status not in FINAL_STATES:
            raise ValueError(f"result status must be one of {', '.join(FINAL_STATES)}, not {self.status!r}")
        self.status = State(self.status)
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
            impl=spec.impl,
            label=spec.label,
            hardware=spec.hardware,
            backend=spec.backend,
            window_requested=list(spec.window),
            images_per_iter=spec.images_per_iter,
            reference=spec.reference,
            reference_hardware=spec.reference_hardware,
            tolerance=spec.tolerance,
            gpus=spec.gpus,
            run_dir=str(spec.run_dir),
            repo=spec.repo,
            commit=spec.commit_full or spec.commit,
            pinned_commit=getattr(spec, "pinned_commit", None),
            recipe_hash=spec.recipe_hash,
            command=spec.command,
            scale=spec.scale,
            stack=spec.stack,
            host=socket.gethostname(),
            finished_at=now_iso(),
            nodes=int(spec.nodes),
            ranks=_ranks(spec),
        )
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
        data = json.loads(read_small(path).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptResult(f"{path}: not a readable result file ({e}); re-run the row or delete the file") from e
    if not isinstance(data, dict):
        raise CorruptResult(f"{path}: expected a JSON object, found {type(data).__name__}")
    try:
        return Result.from_dict(data)
    except (TypeError, ValueError) as e:
        raise CorruptResult(f"{path}: {e}") from e
