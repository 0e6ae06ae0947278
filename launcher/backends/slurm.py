"""Slurm backend, through submitit: rows become batch jobs (a job array per sweep), states come from sacct.

Why it is built this way:

* **One task per node.** Every seed row brings its own process launcher (`torch.distributed.launch`,
  `dist_train.sh`, `mpirun -np 8`, one process driving all GPUs), so a job is one node, one task,
  the row's GPUs as `--gres=gpu:N`; the row's command spawns its ranks. srun never multiplies them.
* **The same node entry point as every backend.** The submitit job runs `NodeCall`, which starts
  `python -m launcher.node RUN_DIR` as a child process. A child (not `run_node` in-process) keeps
  the node's own SIGTERM/SIGUSR2 handlers intact next to submitit's, and lets `NodeCall` stop the
  node and settle its result when Slurm says the time is up or the job is preempted.
* **Arrays.** The rows of one `submit()` call that share resources go out as one job array
  (`executor.batch()`), capped by `array_parallelism`; ids are `ARRAYID_INDEX`.
* **Honest states.** `state()` believes the node's `result.json` when it belongs to this job; else
  it maps Slurm accounting (`sacct`) to our states with the scheduler's own words as the reason
  ("CANCELLED by 0", "TIMEOUT (time limit 1 min)"), so a job that died without a result is still a
  row with a reason. Before accounting knows a fresh job, `squeue` answers.
* **Time limit vs preemption.** submitit asks Slurm for SIGUSR2 shortly before the time limit
  (`--signal=USR2@N`); a preemption that lets the job checkpoint sends the same signal. `NodeCall.
  checkpoint` tells them apart as submitit does (time used against time requested): a time limit
  ends the row as `timeout` (running it again would run out of time again); a preemption requeues
  it, at most `max_requeue` times, keeping the interrupted attempt's result as
  `result.preempted-<n>.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .. import PACKAGE_DIR
from ..rundir import RESULT_FILE, SPEC_FILE, STATUS_FILE, CorruptResult, Result, now_iso, read_result, write_result
from ..spec import JobSpec
from .base import Backend, JobState, append_manifest

#: the project root: put on the job's PYTHONPATH so the node can import `launcher` without installing it
PROJECT_ROOT = PACKAGE_DIR.parent
SUBMITIT_DIR = ".submitit"

#: sacct/squeue states, grouped by what they mean for a row
ACTIVE_PENDING = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
ACTIVE_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING",
                  "RESIZING", "STOPPED"}
FINAL_STATES = {"ok", "failed", "timeout", "cancelled", "incomplete"}


class SlurmUnavailable(RuntimeError):
    """The Slurm client commands are missing or the controller does not answer."""


# --------------------------------------------------------------------------------------------------
# node side: the callable submitit runs in the job
# --------------------------------------------------------------------------------------------------

def signal_delay_s(time_limit_min: int) -> int:
    """Seconds before the time limit at which Slurm sends SIGUSR2 (submitit's `signal_delay_s`).

    submitit's 90 s would fire at once in a job of a minute or two; a quarter of the limit (at least
    15 s) keeps short jobs running for most of their time. Slurm may send it up to a minute early.
    """
    return int(min(90, max(15, time_limit_min * 60 // 4)))


class NodeCall:
    """What a Slurm job runs: the node entry point for one run dir, with submitit's checkpoint hook.

    Picklable and stateless apart from how many times this row has been requeued after a preemption.
    """

    def __init__(self, time_limit_min: int, max_requeue: int, python: str | None = None,
                 pythonpath: str | None = None, requeues: int = 0) -> None:
        self.time_limit_min = int(time_limit_min)
        self.max_requeue = int(max_requeue)
        self.python = python or sys.executable
        self.pythonpath = pythonpath or str(PROJECT_ROOT)
        self.requeues = requeues
        self._proc: subprocess.Popen | None = None
        self._started = 0.0

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_proc"] = None  # a running child never travels in a pickle
        return state

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [self.pythonpath] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["LAUNCHER_REQUEUES"] = str(self.requeues)
        return env

    def __call__(self, run_dir: str) -> str:
        """Run the node entry point to its end; return the status it wrote in result.json."""
        self._started = time.time()
        # its own session: stopping it (checkpoint) reaches the row's whole process tree
        self._proc = subprocess.Popen([self.python, "-m", "launcher.node", str(run_dir)], env=self._env(),
                                      start_new_session=True)
        # poll rather than wait(): submitit's SIGUSR2 handler may interrupt this loop, and a blocking
        # Popen.wait() would hold the lock the handler needs to reap the child
        while self._proc.poll() is None:
            time.sleep(0.5)
        code = self._proc.returncode
        result = _own_result(run_dir)
        if result is None:
            raise RuntimeError(f"the node entry point exited with code {code} without writing "
                               f"{Path(run_dir) / RESULT_FILE}; its output is in this job's submitit log")
        signalled = result.status == "cancelled" or (result.status == "failed" and (result.returncode or 0) < 0)
        if signalled and self._near_limit(margin_s=5):
            # Slurm's SIGTERM at the time limit looks like a cancellation to the node (or, when the
            # command got the signal first, like a command that died)
            result = settle_result(run_dir, "timeout", self._timeout_reason())
        return result.status

    # -- submitit's hook: called on SIGUSR2 (time limit near, or preemption) ----------------------
    def _timed_out(self) -> bool:
        """submitit's own rule (SignalHandler.has_timed_out): past min(80 %, limit - 10 min) of the time.

        So in a job of 10 min or less every SIGUSR2 counts as the time limit (and is never requeued),
        as submitit itself would decide.
        """
        limit = self.time_limit_min * 60.0
        return time.time() - self._started >= min(0.8 * limit, limit - 600.0)

    def _near_limit(self, margin_s: float) -> bool:
        """Whether the job ran to within `margin_s` of its time limit (Slurm's SIGTERM at the limit)."""
        return time.time() - self._started + margin_s >= self.time_limit_min * 60.0

    def _timeout_reason(self) -> str:
        return (f"Slurm time limit of {self.time_limit_min} min reached (stopped after "
                f"{time.time() - self._started:.0f} s on the scheduler's warning); raise hardware.time_limit_min")

    def _stop_node(self, grace_s: float = 30.0) -> None:
        """Ask the node to stop (it writes a 'cancelled' result), then make sure its tree is gone."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.time() + grace_s
        while time.time() < deadline:
            if proc.poll() is not None:
                return
            time.sleep(0.2)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def checkpoint(self, run_dir: str) -> Any:
        """submitit calls this on SIGUSR2: return a resubmission to requeue, None to end the job."""
        from submitit.helpers import DelayedSubmission

        timed_out = self._timed_out()
        self._stop_node()
        if timed_out:
            settle_result(run_dir, "timeout", self._timeout_reason())
            return None
        if self.requeues >= self.max_requeue:
            settle_result(run_dir, "cancelled", f"preempted after {self.requeues} requeue(s); "
                                                f"max_requeue={self.max_requeue} reached, not requeued again")
            return None
        set_aside_result(run_dir, f"preempted-{self.requeues + 1}")
        again = NodeCall(self.time_limit_min, self.max_requeue, self.python, self.pythonpath, self.requeues + 1)
        return DelayedSubmission(again, run_dir)


def _job_id_here() -> str | None:
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def _own_result(run_dir: str | Path) -> Result | None:
    try:
        return read_result(Path(run_dir) / RESULT_FILE)
    except CorruptResult:
        return None


def set_aside_result(run_dir: str | Path, tag: str) -> Path | None:
    """Keep an interrupted attempt's result next to the run (nothing written is lost) and clear the way."""
    src = Path(run_dir) / RESULT_FILE
    if not src.exists():
        return None
    dst = src.with_name(f"result.{tag}.json")
    os.replace(src, dst)
    return dst


def settle_result(run_dir: str | Path, status: str, reason: str) -> Result:
    """Make result.json say `status` with `reason`, unless the row already ended `ok`.

    The node's own words are kept after ours; a run with no result yet gets one built from its spec.
    """
    run_dir = Path(run_dir)
    old = _own_result(run_dir)
    if old is not None and old.status == "ok":
        return old
    if old is not None:
        error = reason + (f"\nthe node reported: {old.error}" if old.error else "")
        new = dataclasses.replace(old, status=status, error=error, throughput=None,
                                  finished_at=old.finished_at or now_iso())
    else:
        spec = JobSpec.load(run_dir)
        started = None
        try:
            started = json.loads((run_dir / STATUS_FILE).read_text(encoding="utf-8")).get("started_at")
        except (OSError, ValueError):
            pass
        new = Result(impl=spec.impl, label=spec.label, hardware=spec.hardware, backend=spec.backend,
                     status=status, error=reason, window_requested=list(spec.window),
                     images_per_iter=spec.images_per_iter, reference=spec.reference,
                     reference_hardware=spec.reference_hardware, tolerance=spec.tolerance, gpus=spec.gpus,
                     started_at=started, finished_at=now_iso(), host=os.uname().nodename,
                     job_id=_job_id_here(), run_dir=str(run_dir), repo=spec.repo,
                     commit=spec.commit_full or spec.commit, recipe_hash=spec.recipe_hash,
                     command=spec.command, scale=spec.scale)
    write_result(run_dir, new)
    return new


# --------------------------------------------------------------------------------------------------
# submit side
# --------------------------------------------------------------------------------------------------

def _run(cmd: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_slurm() -> None:
    """Fail before queueing anything when Slurm cannot be reached, saying why and what to do."""
    missing = [c for c in ("sbatch", "srun", "sacct", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        raise SlurmUnavailable(f"Slurm client commands not found: {', '.join(missing)}; run on a Slurm "
                               "login node (or start the CI cluster: .ci/services/slurm.sh start)")
    try:
        p = _run(["sinfo", "-h", "-o", "%P %a"], timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmUnavailable(f"`sinfo` did not answer: {e}") from e
    if p.returncode != 0:
        conf = os.environ.get("SLURM_CONF", "the default slurm.conf")
        raise SlurmUnavailable(f"the Slurm controller does not answer (`sinfo` failed with {conf}): "
                               f"{p.stderr.strip()}; check SLURM_CONF or that slurmctld is up")


def _submitit_folder(spec: JobSpec) -> Path:
    """One submitit folder per sweep (every row's pickles and logs), or per run for a single row."""
    base = Path(spec.sweep_dir) if spec.sweep_dir else Path(spec.run_dir)
    return base.resolve() / SUBMITIT_DIR / "%j"


def submitit_log(run_dir: str | Path, job_id: str, stream: str = "err") -> Path | None:
    """The submitit log of a job (stream 'out' or 'err'), where the node's output and errors land."""
    try:
        spec = JobSpec.load(run_dir)
    except (OSError, ValueError, TypeError):
        return None
    folder = Path(str(_submitit_folder(spec)).replace("%j", str(job_id)))
    return folder / f"{job_id}_0_log.{stream}"


class SlurmBackend(Backend):
    name = "slurm"

    def __init__(self, config: dict | None = None) -> None:
        self.config = dict(config or {})

    # -- resources ---------------------------------------------------------------------------------
    def parameters(self, spec: JobSpec) -> dict[str, Any]:
        """submitit SlurmExecutor parameters for one row: one node, one task, its GPUs, CPUs, memory, time."""
        cfg = {**self.config, **{k: v for k, v in (spec.backend_config or {}).items() if v is not None}}
        if spec.nodes != 1:
            raise ValueError(f"row {spec.impl}: nodes={spec.nodes}, but the Slurm backend runs one-node rows "
                             "(each seed row is one 8-GPU node); set hardware.nodes=1")
        setup = [f"export PYTHONPATH={shlex.quote(str(PROJECT_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]
        setup += list(cfg.get("setup") or [])
        params: dict[str, Any] = {
            "nodes": 1,
            "ntasks_per_node": 1,  # the row's own launcher spawns its ranks
            "cpus_per_task": max(1, int(spec.cpus)),
            "time": int(spec.time_limit_min),
            "signal_delay_s": signal_delay_s(spec.time_limit_min),
            "setup": setup,
        }
        if spec.gpus:
            params["gres"] = f"gpu:{int(spec.gpus)}"
        if spec.mem_gb:
            params["mem"] = f"{int(spec.mem_gb)}GB"
        for key in ("partition", "account", "qos", "constraint"):
            if cfg.get(key):
                params[key] = str(cfg[key])
        if cfg.get("exclusive"):
            params["exclusive"] = True
        if cfg.get("array_parallelism"):
            params["array_parallelism"] = int(cfg["array_parallelism"])
        extra = cfg.get("additional_parameters") or {}
        if extra:
            params["additional_parameters"] = dict(extra)
        return params

    def describe(self, spec: JobSpec) -> list[str]:
        params = {k: v for k, v in self.parameters(spec).items() if k != "setup"}
        return [f"slurm (submitit): {' '.join(f'{k}={v}' for k, v in params.items())}",
                "slurm job runs:  python -m launcher.node RUN_DIR (one task on one node)"]

    def _node_call(self, spec: JobSpec) -> NodeCall:
        cfg = {**self.config, **(spec.backend_config or {})}
        max_requeue = cfg.get("max_requeue")
        return NodeCall(spec.time_limit_min, 2 if max_requeue is None else int(max_requeue))

    # -- Backend API -----------------------------------------------------------------------------
    def submit(self, specs: Sequence[JobSpec]) -> list[str]:
        """Submit every spec (saved in its run dir); rows with equal resources go as one job array."""
        import submitit

        specs = list(specs)
        if not specs:
            return []
        for spec in specs:
            if not (Path(spec.run_dir) / SPEC_FILE).is_file():
                raise FileNotFoundError(f"{Path(spec.run_dir) / SPEC_FILE} is missing: save the spec "
                                        "(JobSpec.save) before submitting it")
        check_slurm()
        groups: dict[str, list[int]] = {}
        params_of: dict[str, tuple[Path, dict]] = {}
        for i, spec in enumerate(specs):
            params = self.parameters(spec)
            folder = _submitit_folder(spec)
            key = json.dumps([str(folder), params], sort_keys=True, default=str)
            groups.setdefault(key, []).append(i)
            params_of[key] = (folder, params)
        ids: list[str | None] = [None] * len(specs)
        for key, members in groups.items():
            folder, params = params_of[key]
            first = specs[members[0]]
            name = first.impl if len(members) == 1 else Path(first.sweep_dir or first.run_dir).name
            params = {**params, "job_name": f"launcher-{name}"}
            # timeouts never requeue (max_num_timeout=0); preemption requeues are bounded by NodeCall
            executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
            executor.update_parameters(**params)
            jobs = []
            with executor.batch():
                for i in members:
                    jobs.append(executor.submit(self._node_call(specs[i]), str(Path(specs[i].run_dir).resolve())))
            for i, job in zip(members, jobs):
                ids[i] = str(job.job_id)
                append_manifest(specs[i], ids[i])
        return [str(i) for i in ids]

    def state(self, job_id: str, run_dir: str | Path | None = None) -> JobState:
        if not job_id:
            return JobState("unknown", "no job id: the row was never submitted")
        job_id = str(job_id)
        result = _result_for(run_dir, job_id)
        rec = sacct_record(job_id)
        if rec is None:
            rec = squeue_record(job_id)
        if rec is None:
            if result is not None:
                return result
            return JobState("unknown", f"Slurm knows no job {job_id} (neither sacct nor squeue lists it)")
        base = rec["State"].split()[0].rstrip("+")
        if base in ACTIVE_PENDING:
            # the controller's current reason (Priority, Resources, BeginTime) is fresher than accounting's
            live = squeue_record(job_id) if rec.get("Source") == "sacct" else None
            return JobState("pending", _reason(live or rec, requeued=base != "PENDING"))
        if base in ACTIVE_RUNNING:
            # sacct lags the controller by seconds: a result written meanwhile is the fresher word
            return result or JobState("running", "suspended" if base == "SUSPENDED" else None)
        if result is None:
            return map_final(rec, job_id, run_dir)
        if result.state == "cancelled" or (result.state == "failed" and killed_by_signal(run_dir)):
            # the node only saw a signal (or its command die of one); the scheduler knows why it came:
            # who cancelled, a time limit, a preemption
            sched = map_final(rec, job_id, run_dir)
            if sched.state in ("cancelled", "timeout"):
                return JobState(sched.state, f"{sched.reason}; the node reported: {result.reason}")
        return result

    def cancel(self, job_id: str) -> None:
        p = _run(["scancel", str(job_id)])
        if p.returncode != 0:
            raise RuntimeError(f"scancel {job_id} failed: {p.stderr.strip() or p.stdout.strip()}")


def _result_for(run_dir: str | Path | None, job_id: str) -> JobState | None:
    """The node's result for this job as a JobState (None when absent or written by another job)."""
    if not run_dir:
        return None
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return None
    try:
        res = read_result(path)
    except CorruptResult as e:
        return JobState("failed", str(e))
    if res.job_id and res.job_id != job_id:
        return None  # an earlier submission's result in the same run dir
    return JobState(res.status, res.error)


def killed_by_signal(run_dir: str | Path | None) -> bool:
    """Whether the row's command ended by a signal (negative return code), as its result says."""
    try:
        code = read_result(Path(run_dir) / RESULT_FILE).returncode  # type: ignore[arg-type]
    except (CorruptResult, TypeError):
        return False
    return code is not None and code < 0


def _reason(rec: dict, requeued: bool = False) -> str | None:
    reason = rec.get("Reason") or ""
    parts = []
    if requeued:
        parts.append("requeued")
    if reason and reason != "None":
        parts.append(reason)
    return ", ".join(parts) or None


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
    base = state.split()[0].rstrip("+")
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


_SACCT_FIELDS = ("JobID", "State", "Reason", "ExitCode", "Timelimit", "Elapsed", "NodeList")


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


def sacct_record(job_id: str) -> dict | None:
    """The job's allocation record from Slurm accounting, or None (unknown yet, or no accounting)."""
    if shutil.which("sacct") is None:
        return None
    try:
        p = _run(["sacct", "-j", job_id, "-X", "-P", "-n", "--format=" + ",".join(_SACCT_FIELDS)])
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    fallback = None
    for line in p.stdout.splitlines():
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
    if shutil.which("squeue") is None:
        return None
    try:
        p = _run(["squeue", "-h", "-j", job_id, "-o", "%i|%T|%r"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    for line in p.stdout.splitlines():
        jid, state, reason = (line.split("|") + ["", "", ""])[:3]
        if jid == job_id or _array_covers(jid, job_id):
            return {"JobID": jid, "State": state, "Reason": reason, "Source": "squeue"}
    return None
