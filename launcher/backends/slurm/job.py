"""What runs inside a Slurm job: the node entry point under submitit, and the job's end on a signal.

* **The same node entry point as every backend.** The submitit job runs `NodeCall`, which runs
  the node entry point (`python -m launcher.node RUN_DIR`) as a child process in its own session.
  A child (not `run_node` in-process) keeps the node's own SIGTERM/SIGUSR2 handlers intact next to
  submitit's, and lets `NodeCall` stop the node and settle its result when Slurm says the time is
  up or the job is preempted. When the node's Python is this very interpreter and launcher, the
  child is a fork of this process (`ForkedNode`) rather than a new interpreter: the same entry
  point without a second Python start-up and launcher import (0.1-0.2 s of CPU a row, paid while
  a sweep's rows start side by side; bench/vs_plugin.py).
* **Time limit vs preemption.** submitit asks Slurm for SIGUSR2 shortly before the time limit
  (`--signal=USR2@N`); a preemption that lets the job checkpoint sends the same signal. `NodeCall.
  checkpoint` tells them apart as submitit does (time used against time requested): a time limit
  ends the row as `timeout` (running it again would run out of time again); a preemption requeues
  it, at most `max_requeue` times, keeping the interrupted attempt's result as
  `result.preempted-<n>.json`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

from ... import PACKAGE_DIR
from ...node.process import stop_group
from ...rundir import RESULT_FILE, CorruptResult, Result, now_iso, read_result, read_status, set_aside, write_result
from ...spec import JobSpec
from ..base import job_environ

#: the project root: put on the job's PYTHONPATH so the node can import `launcher` without installing it
PROJECT_ROOT = PACKAGE_DIR.parent
#: submitit's pickles and logs, in the sweep dir (or the run dir of a single row)
SUBMITIT_DIR = ".submitit"


def submitit_folder(spec: JobSpec) -> Path:
    """One submitit folder per sweep (every row's pickles and logs), or per run for a single row."""
    base = Path(spec.sweep_dir) if spec.sweep_dir else Path(spec.run_dir)
    return base.resolve() / SUBMITIT_DIR / "%j"


def submitit_log(run_dir: str | Path, job_id: str, stream: str = "err") -> Path | None:
    """The submitit log of a job (stream 'out' or 'err'), where the node's output and errors land."""
    try:
        spec = JobSpec.load(run_dir)
    except (OSError, ValueError, TypeError):
        return None
    folder = Path(str(submitit_folder(spec)).replace("%j", str(job_id)))
    return folder / f"{job_id}_0_log.{stream}"


def signal_delay_s(time_limit_min: int) -> int:
    """Seconds before the time limit at which Slurm sends SIGUSR2 (submitit's `signal_delay_s`).

    submitit's 90 s would fire at once in a job of a minute or two; a quarter of the limit (at least
    15 s) keeps short jobs running for most of their time. Slurm may send it up to a minute early.
    """
    return int(min(90, max(15, time_limit_min * 60 // 4)))


#: the Slurm variables the node keeps in provenance
SLURM_ENV = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_NODELIST",
    "SLURM_JOB_NUM_NODES",
    "SLURM_JOB_PARTITION",
    "SLURM_CLUSTER_NAME",
)


def slurm_job_id(environ: Mapping[str, str]) -> str | None:
    """The job's id as submitit returned it: an array task as ARRAYID_INDEX (what sacct -j takes), else the job id."""
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return environ.get("SLURM_JOB_ID") or None


def slurm_nodes(environ: Mapping[str, str]) -> tuple[str | None, int | None]:
    count = environ.get("SLURM_JOB_NUM_NODES", "")
    return environ.get("SLURM_JOB_NODELIST") or None, int(count) if count.isdigit() else None


#: the signals a node handles itself; blocked around the fork so none reaches submitit's handlers in the child
NODE_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2)


class ForkedNode:
    """`python -m launcher.node RUN_DIR` as a fork of this process: what `subprocess.Popen` of it would be
    (its own session, ENV as its environment, the same stdout / stderr), with Popen's `pid`, `poll()` and
    `returncode`. The child starts from Python's default signal handlers, never returns into the caller (it
    leaves with os._exit, so submitit's code after the call never runs twice), and gives back its leases."""

    def __init__(self, run_dir: str, env: Mapping[str, str]) -> None:
        from ...node import run as node_run  # imported here, before the fork: the child starts with it

        self.returncode: int | None = None
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # nothing buffered is written twice
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, NODE_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                _node_child(node_run, run_dir, env, old_mask)  # never returns
        finally:  # the caller's signals come through again, the fork made or not
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        self.pid = pid

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already (a signal handler's poll): its code is kept below
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _node_child(node_run: Any, run_dir: str, env: Mapping[str, str], mask: Any) -> None:
    code = 1
    try:
        os.setsid()
        for s in NODE_SIGNALS:
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [sys.executable, "-m", "launcher.node", str(run_dir)]
        code = node_run.main([str(run_dir)])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            from ... import lease

            lease.release_all()  # what the node's atexit would do; os._exit runs no atexit
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


class NodeCall:
    """What a Slurm job runs: the node entry point for one run dir, with submitit's checkpoint hook.

    Picklable and stateless apart from how many times this row has been requeued after a preemption.
    """

    def __init__(
        self,
        time_limit_min: int,
        max_requeue: int,
        python: str | None = None,
        pythonpath: str | None = None,
        requeues: int = 0,
    ) -> None:
        self.time_limit_min = int(time_limit_min)
        self.max_requeue = int(max_requeue)
        self.python = python or sys.executable
        self.pythonpath = pythonpath or str(PROJECT_ROOT)
        self.requeues = requeues
        self._proc: subprocess.Popen | ForkedNode | None = None
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
        env.update(job_environ(slurm_job_id(env), *slurm_nodes(env), {k: env[k] for k in SLURM_ENV if k in env}))
        return env

    def _can_fork(self) -> bool:
        """Whether a fork of this process is the node's Python: the same interpreter (as named: a venv's python
        is a link to the base one, with other packages) and the same launcher, on a system with fork."""
        if os.environ.get("LAUNCHER_NODE_EXEC") or not hasattr(os, "fork"):  # LAUNCHER_NODE_EXEC=1: always a new Python
            return False
        try:
            return os.path.abspath(self.python) == os.path.abspath(sys.executable) and os.path.samefile(
                self.pythonpath, PROJECT_ROOT
            )
        except OSError:
            return False

    def __call__(self, run_dir: str) -> str:
        """Run the node entry point to its end; return the status it wrote in result.json."""
        self._started = time.time()
        # its own session: stopping it (checkpoint) reaches the row's whole process tree
        self._proc = None
        if self._can_fork():
            try:
                self._proc = ForkedNode(str(run_dir), self._env())
            except OSError:  # no fork (memory): a new Python, which Popen starts without copying this process
                self._proc = None
        if self._proc is None:
            self._proc = subprocess.Popen(
                [self.python, "-m", "launcher.node", str(run_dir)], env=self._env(), start_new_session=True
            )
        # poll rather than wait(): submitit's SIGUSR2 handler may interrupt this loop, and a blocking
        # Popen.wait() would hold the lock the handler needs to reap the child
        while self._proc.poll() is None:
            time.sleep(0.1)
        code = self._proc.returncode
        if os.environ.get("SLURM_NODEID", "0") != "0":  # a row over several nodes: node 0 writes the result
            if code != 0:
                raise RuntimeError(
                    f"node {os.environ.get('SLURMD_NODENAME')} of the row exited with code {code}; "
                    f"see {Path(run_dir) / 'nodes'}"
                )
            return "peer"
        result = _own_result(run_dir)
        _end_allocation_after_a_lost_node(run_dir)
        if result is None:
            raise RuntimeError(
                f"the node entry point exited with code {code} without writing "
                f"{Path(run_dir) / RESULT_FILE}; its output is in this job's submitit log"
            )
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
        return (
            f"Slurm time limit of {self.time_limit_min} min reached (stopped after "
            f"{time.time() - self._started:.0f} s on the scheduler's warning); raise hardware.time_limit_min"
        )

    def _stop_node(self, grace_s: float = 30.0) -> None:
        """Ask the node to stop (it writes a 'cancelled' result), then make sure its tree is gone."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        stop_group(proc.pid, grace_s, lambda: proc.poll() is not None)

    def checkpoint(self, run_dir: str) -> Any:
        """submitit calls this on SIGUSR2: return a resubmission to requeue, None to end the job."""
        from submitit.helpers import DelayedSubmission

        timed_out = self._timed_out()
        self._stop_node()
        if timed_out:
            settle_result(run_dir, "timeout", self._timeout_reason())
            return None
        if self.requeues >= self.max_requeue:
            settle_result(
                run_dir,
                "cancelled",
                f"preempted after {self.requeues} requeue(s); "
                f"max_requeue={self.max_requeue} reached, not requeued again",
            )
            return None
        set_aside(run_dir, RESULT_FILE, f"result.preempted-{self.requeues + 1}.json")  # kept, not lost
        again = NodeCall(self.time_limit_min, self.max_requeue, self.python, self.pythonpath, self.requeues + 1)
        return DelayedSubmission(again, run_dir)


def _end_allocation_after_a_lost_node(run_dir: str | Path) -> None:
    """A row over several nodes that lost one has ended `failed` (node 0 wrote why): end its job now. Slurm
    would otherwise wait for the dead node's task until the node is declared down, then requeue the whole job
    (NODE_FAIL), and the row would be pending again instead of failed."""
    from ...span import read_done

    if read_done(run_dir).get("lost") and os.environ.get("SLURM_JOB_ID"):
        subprocess.run(["scancel", os.environ["SLURM_JOB_ID"]], capture_output=True, timeout=60)


def _own_result(run_dir: str | Path) -> Result | None:
    try:
        return read_result(Path(run_dir) / RESULT_FILE)
    except CorruptResult:
        return None


def settle_result(run_dir: str | Path, status: str, reason: str) -> Result:
    """Make result.json say `status` with `reason`, unless the row already ended `ok`.

    The node's own words are kept after ours; a run with no result yet gets one built from its spec.
    """
    run_dir = Path(run_dir)
    old = _own_result(run_dir)
    if old is not None and old.status == "ok":
        return old
    if old is not None:
        set_aside(run_dir, RESULT_FILE)  # the node's own result is kept beside ours, never overwritten
        error = reason + (f"\nthe node reported: {old.error}" if old.error else "")
        new = dataclasses.replace(
            old, status=status, error=error, throughput=None, finished_at=old.finished_at or now_iso()
        )
    else:
        spec = JobSpec.load(run_dir)
        spec.run_dir = str(run_dir)
        new = Result.for_spec(
            spec,
            status,
            error=reason,
            started_at=read_status(run_dir).get("started_at"),
            job_id=slurm_job_id(os.environ),
        )
    write_result(run_dir, new)
    return new
