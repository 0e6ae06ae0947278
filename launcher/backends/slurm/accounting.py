"""What Slurm says about a job: accounting (`sacct`), the controller's queue (`squeue`), and our states.

A finished job that left no result.json is still a row with a reason: `map_final` turns the
scheduler's record into our state with the scheduler's own words ("CANCELLED by 0", "TIMEOUT (time
limit 1 min)"). Accounting lags the controller by seconds, so before `sacct` knows a fresh job,
`squeue` answers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from ...rundir import RESULT_FILE, CorruptResult, read_result
from ..base import JobState
from .job import submitit_log

#: sacct/squeue states, grouped by what they mean for a row
ACTIVE_PENDING = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
ACTIVE_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING",
                  "RESIZING", "STOPPED"}

_SACCT_FIELDS = ("JobID", "State", "Reason", "ExitCode", "Timelimit", "Elapsed", "NodeList")


def slurm_command(cmd: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def base_state(rec: dict) -> str:
    """The record's state without its qualifiers: 'CANCELLED by 0' -> 'CANCELLED', 'RUNNING+' -> 'RUNNING'."""
    return rec["State"].split()[0].rstrip("+")


def job_record(job_id: str) -> dict | None:
    """Accounting's record of the job, else the controller's (a job too fresh for accounting), else None."""
    return sacct_record(job_id) or squeue_record(job_id)


#: pending reasons that mean the job will never start as submitted (slurm-22.05 job_mgr.c:7169-7299, `man squeue`
#: JOB REASON CODES; with EnforcePartLimits=NO, the default, such a job is accepted and waits for ever)
NEVER = {"PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "MaxMemPerLimit", "BadConstraints",
         "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed", "DependencyNeverSatisfied",
         "QOSMinCpuNotSatisfied", "FrontEndDown"}
_NEVER_PATTERN = re.compile(r"^(QOS|Assoc)Max\w*PerJob\w*$")
#: pending until an administrator (or the user) acts; ReqNodeNotAvail is often transient on large sites
BLOCKED = {"PartitionDown", "PartitionInactive", "JobHeldAdmin", "JobHeldUser", "NodeDown", "ReqNodeNotAvail"}


def pending_class(reason: str | None) -> str:
    """`never` (will not start as submitted), `blocked` (until someone acts) or `waiting` (the normal queue)."""
    code = re.split(r"[,( ]", (reason or "").strip(), maxsplit=1)[0]
    if code in NEVER or _NEVER_PATTERN.match(code):
        return "never"
    return "blocked" if code in BLOCKED else "waiting"


def explain_pending(job_id: str, reason: str | None) -> str | None:
    """The scheduler's reason, and what it means when the job cannot start as it is."""
    kind = pending_class(reason)
    if kind == "never":
        return (f"will not start as submitted: {reason} (the request exceeds what the partition, QOS or account "
                f"allows, or depends on a job that failed); cancel it (python -m launcher.cancel, or scancel "
                f"{job_id}) and resubmit with a request the partition can run")
    if kind == "blocked":
        return f"blocked until an administrator (or you: scontrol release {job_id}) acts: {reason}"
    return reason


def pending_state(job_id: str, rec: dict) -> JobState:
    """A queued job, with the controller's current reason (Priority, Resources, BeginTime), which is
    fresher than accounting's, explained when it means the job cannot start as submitted."""
    live = squeue_record(job_id) if rec.get("Source") == "sacct" else None
    reason = _reason(live or rec)
    said = explain_pending(job_id, reason)
    if base_state(rec) != "PENDING":
        said = "requeued" + (f", {said}" if said else "")
    return JobState("pending", said)


def killed_by_signal(run_dir: str | Path | None) -> bool:
    """Whether the row's command ended by a signal (negative return code), as its result says."""
    try:
        code = read_result(Path(run_dir) / RESULT_FILE).returncode  # type: ignore[arg-type]
    except (CorruptResult, TypeError):
        return False
    return code is not None and code < 0


def _reason(rec: dict) -> str | None:
    reason = rec.get("Reason") or ""
    return reason if reason and reason != "None" else None


def _minutes(limit: str) -> str:
    """Slurm's '[D-]HH:MM:SS' time limit as a short phrase ('1 min', '2 h 30 min')."""
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", limit or "")
    if not m:
        return limit or "unknown"
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    total = d * 1440 + h * 60 + mi + (1 if s else 0)
    return f"{total} min" if total < 120 else f"{total // 60} h {total % 60} min"


def map_final(rec: dict, job_id: str, run_dir: str | Path | None = None) -> JobState:
    """A finished Slurm job that left no result.json: our state, the scheduler's words as the reason."""
    state = rec["State"]
    base = base_state(rec)
    code = rec.get("ExitCode") or ""
    log = submitit_log(run_dir, job_id) if run_dir else None
    see = f"; its log: {log}" if log else ""
    if base == "TIMEOUT":
        return JobState("timeout", f"TIMEOUT (time limit {_minutes(rec.get('Timelimit', ''))})")
    if base == "DEADLINE":
        return JobState("timeout", "DEADLINE (the job's deadline passed)")
    if base in ("CANCELLED", "REVOKED"):
        return JobState("cancelled", state)
    if base == "PREEMPTED":
        return JobState("cancelled", "PREEMPTED (not requeued)")
    if base == "OUT_OF_MEMORY":
        return JobState("failed", f"OUT_OF_MEMORY: the job exceeded its memory limit and was killed{see}")
    if base == "NODE_FAIL":
        return JobState("failed", f"NODE_FAIL: node {rec.get('NodeList') or '?'} failed under the job")
    if base == "BOOT_FAIL":
        return JobState("failed", f"BOOT_FAIL: node {rec.get('NodeList') or '?'} failed to boot")
    if base == "FAILED":
        sig = code.split(":")[-1] if ":" in code else "0"
        how = f"killed by signal {sig}" if sig not in ("", "0") else f"exit code {code}"
        return JobState("failed", f"FAILED ({how}) without writing {RESULT_FILE}{see}")
    if base == "COMPLETED":
        return JobState("failed", f"COMPLETED but wrote no {RESULT_FILE}{see}")
    return JobState("unknown", f"Slurm state {state}")


def _array_covers(record_id: str, job_id: str) -> bool:
    """Whether sacct's record id (e.g. '123_[0-2%3]' for a still-pending array) covers `job_id`."""
    m = re.fullmatch(r"(\d+)_\[([^\]]*)\]", record_id)
    j = re.fullmatch(r"(\d+)_(\d+)", job_id)
    if not (m and j) or m.group(1) != j.group(1):
        return False
    index = int(j.group(2))
    for part in m.group(2).split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and int(lo) <= index <= int(hi or lo):
            return True
    return False


def _query(cmd: list[str]) -> list[str] | None:
    """The output lines of a Slurm client command; None when it is missing, hangs or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        p = slurm_command(cmd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.splitlines() if p.returncode == 0 else None


#: one `sacct` for every job a follower watches (prefetch), reused by each job's state for BATCH_TTL_S: a sweep of
#: 200 rows asks accounting once per poll, not 200 times (bench/makespan.py: 'follow' profile)
_BATCH: dict = {"t": -1e9, "ids": frozenset(), "lines": None}
BATCH_TTL_S = 1.5


def prefetch(job_ids) -> None:
    """Ask accounting about all of `job_ids` in one call; sacct_record answers from it for BATCH_TTL_S."""
    ids = frozenset(str(j) for j in job_ids if j)
    if not ids:
        return
    bases = sorted({j.split("_")[0] for j in ids})
    lines = _query(["sacct", "-j", ",".join(bases), "-X", "-P", "-n", "--format=" + ",".join(_SACCT_FIELDS)])
    _BATCH.update(t=time.monotonic(), ids=ids, lines=lines)


def sacct_record(job_id: str) -> dict | None:
    """The job's allocation record from Slurm accounting, or None (unknown yet, or no accounting)."""
    if job_id in _BATCH["ids"] and _BATCH["lines"] is not None and time.monotonic() - _BATCH["t"] < BATCH_TTL_S:
        lines = _BATCH["lines"]
    else:
        lines = _query(["sacct", "-j", job_id, "-X", "-P", "-n", "--format=" + ",".join(_SACCT_FIELDS)])
    fallback = None
    for line in lines or ():
        rec = dict(zip(_SACCT_FIELDS, line.split("|")))
        if len(rec) < len(_SACCT_FIELDS):
            continue
        rec["Source"] = "sacct"
        if rec["JobID"] == job_id:
            return rec
        if _array_covers(rec["JobID"], job_id) or (rec["JobID"].split("_")[0] == job_id and fallback is None):
            fallback = rec
    return fallback


def squeue_record(job_id: str) -> dict | None:
    """The controller's view of a job still in the queue (accounting lags it by seconds)."""
    for line in _query(["squeue", "-h", "-j", job_id, "-o", "%i|%T|%r"]) or ():
        jid, state, reason = (line.split("|") + ["", "", ""])[:3]
        if jid == job_id or _array_covers(jid, job_id):
            return {"JobID": jid, "State": state, "Reason": reason, "Source": "squeue"}
    return None
