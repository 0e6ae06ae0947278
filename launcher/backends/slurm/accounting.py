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
from dataclasses import dataclass
from pathlib import Path

from ...rundir import RESULT_FILE, CorruptResult, JobState, State, read_result
from .job import submitit_log

#: sacct/squeue states, grouped by what they mean for a row
ACTIVE_PENDING = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
ACTIVE_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED"}

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
NEVER = {
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "MaxMemPerLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "AccountNotAllowed",
    "QOSNotAllowed",
    "DependencyNeverSatisfied",
    "QOSMinCpuNotSatisfied",
    "FrontEndDown",
}
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
        return (
            f"will not start as submitted: {reason} (the request exceeds what the partition, QOS or account "
            f"allows, or depends on a job that failed); cancel it (python -m launcher.cancel, or scancel "
            f"{job_id}) and resubmit with a request the partition can run"
        )
    if kind == "blocked":
        return f"blocked until an administrator (or you: scontrol release {job_id}) acts: {reason}"
    return reason


def pending_state(job_id: str, rec: dict, snap: Snapshot | None = None) -> JobState:
    """A queued job, with the controller's current reason (Priority, Resources, BeginTime), which is
    fresher than accounting's, explained when it means the job cannot start as submitted."""
    live = None
    if rec.get("Source") == "sacct":
        live = snap.squeue.get(job_id) if snap is not None else squeue_record(job_id)
    reason = _reason(live or rec)
    said = explain_pending(job_id, reason)
    if base_state(rec) != "PENDING":
        said = "requeued" + (f", {said}" if said else "")
    return JobState(State.PENDING, said)


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
        return JobState(State.TIMEOUT, f"TIMEOUT (time limit {_minutes(rec.get('Timelimit', ''))})")
    if base == "DEADLINE":
        return JobState(State.TIMEOUT, "DEADLINE (the job's deadline passed)")
    if base in ("CANCELLED", "REVOKED"):
        return JobState(State.CANCELLED, state)
    if base == "PREEMPTED":
        return JobState(State.CANCELLED, "PREEMPTED (not requeued)")
    if base == "OUT_OF_MEMORY":
        return JobState(State.FAILED, f"OUT_OF_MEMORY: the job exceeded its memory limit and was killed{see}")
    if base == "NODE_FAIL":
        return JobState(State.FAILED, f"NODE_FAIL: node {rec.get('NodeList') or '?'} failed under the job")
    if base == "BOOT_FAIL":
        return JobState(State.FAILED, f"BOOT_FAIL: node {rec.get('NodeList') or '?'} failed to boot")
    if base == "FAILED":
        sig = code.split(":")[-1] if ":" in code else "0"
        how = f"killed by signal {sig}" if sig not in ("", "0") else f"exit code {code}"
        return JobState(State.FAILED, f"FAILED ({how}) without writing {RESULT_FILE}{see}")
    if base == "COMPLETED":
        return JobState(State.FAILED, f"COMPLETED but wrote no {RESULT_FILE}{see}")
    return JobState(State.UNKNOWN, f"Slurm state {state}")


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


def sacct_records(job_ids: list[str]) -> dict[str, dict]:
    """Each job's allocation record from Slurm accounting (one `sacct` for all); a job it does not know yet
    (or no accounting) is left out."""
    if not job_ids:
        return {}
    lines = _query(["sacct", "-j", ",".join(job_ids), "-X", "-P", "-n", "--format=" + ",".join(_SACCT_FIELDS)])
    recs = []
    for line in lines or ():
        rec = dict(zip(_SACCT_FIELDS, line.split("|")))
        if len(rec) == len(_SACCT_FIELDS):
            recs.append({**rec, "Source": "sacct"})
    out: dict[str, dict] = {}
    for job_id in job_ids:
        exact = next((r for r in recs if r["JobID"] == job_id), None)
        out_rec = exact or next(
            (r for r in recs if _array_covers(r["JobID"], job_id) or r["JobID"].split("_")[0] == job_id), None
        )
        if out_rec is not None:
            out[job_id] = out_rec
    return out


def squeue_records(job_ids: list[str]) -> dict[str, dict]:
    """The controller's view of the jobs still in its queue (one `squeue` for all; accounting lags it by seconds)."""
    if not job_ids:
        return {}
    recs = []
    for line in _query(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"]) or ():
        jid, state, reason = (line.split("|") + ["", "", ""])[:3]
        recs.append({"JobID": jid, "State": state, "Reason": reason, "Source": "squeue"})
    out: dict[str, dict] = {}
    for job_id in job_ids:
        rec = next((r for r in recs if r["JobID"] == job_id or _array_covers(r["JobID"], job_id)), None)
        if rec is not None:
            out[job_id] = rec
    return out


def sacct_record(job_id: str) -> dict | None:
    """The job's allocation record from Slurm accounting, or None (unknown yet, or no accounting)."""
    return sacct_records([job_id]).get(job_id)


def squeue_record(job_id: str) -> dict | None:
    """The controller's view of a job still in the queue (accounting lags it by seconds)."""
    return squeue_records([job_id]).get(job_id)


@dataclass
class Snapshot:
    """What sacct and squeue said about a batch of jobs, each asked once (`Backend.states`)."""

    sacct: dict[str, dict]
    squeue: dict[str, dict]

    @classmethod
    def of(cls, job_ids: list[str]) -> Snapshot:
        return cls(sacct_records(job_ids), squeue_records(job_ids))

    def record(self, job_id: str) -> dict | None:
        return self.sacct.get(job_id) or self.squeue.get(job_id)
