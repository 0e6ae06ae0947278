"""The Ray backend: every row is one Ray job, submitted through the Jobs API (`ray.job_submission`).

A job (not a task) is a shell command with reserved resources that outlives the submitter and has a status
the cluster keeps: the contract the other backends have. It runs `python -m launcher.node RUN_DIR`.

- Resources: the row's GPUs and CPUs (`entrypoint_num_gpus/cpus`), so two 8-GPU rows never share a node;
  not memory (Ray's `memory` is a fraction of RAM: asking `hardware.mem_gb` would pend forever).
- The launcher's code on the node: a shared filesystem (same `sys.executable`; a source checkout gets
  `PYTHONPATH`), or a `backend.runtime_env` that ships it (`working_dir`, `py_modules`, `pip`, a container).
- Time limits: Ray has none; the node enforces `spec.time_limit_min`, and `state()` stops a job still
  running `TIMEOUT_GRACE_S` past it (timeout).
- No address: a head started for the session (head.py), stopped by `close()`; so `wait=false` needs a
  head that outlives the launcher (`backend.address`).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

from ... import PACKAGE_DIR
from ...rundir import RESULT_FILE, JobState, State, read_status
from ...spec import JobSpec
from ..base import Backend, BackendConfig, job_environ
from .head import (
    STOP_WAIT_S,
    RayBackendError,
    auth_headers,
    jobs_api_answers,
    node_resources,
    record_session_job,
    session_address,
    session_head,
    start_session_head,
    stop_session_head,
)

#: a running job this long past its time limit is stopped by `state()` (the node should have ended it)
TIMEOUT_GRACE_S = 120
#: runtime_env keys that bring their own Python (so the entrypoint runs `python` from the job's PATH)
_OWN_PYTHON_KEYS = ("pip", "conda", "uv", "py_executable", "container", "image_uri")
#: runtime_env keys that ship the launcher's code to the node (so PYTHONPATH is left alone)
_SHIPS_CODE_KEYS = ("working_dir", "py_modules")

# Ray's job states -> ours
_RAY_STATES = {
    "PENDING": "pending",
    "RUNNING": "running",
    "SUCCEEDED": "ok",
    "FAILED": "failed",
    "STOPPED": "cancelled",
}


@dataclass
class RayConfig(BackendConfig):
    """conf/backend/ray.yaml: which cluster, and what each job's runtime_env adds."""

    name: str = "ray"
    address: Optional[str] = None  # http://head:8265; None starts a local head for the session
    runtime_env: Dict[str, Any] = field(default_factory=dict)


def _ray_env() -> None:
    """Client-side settings: no usage-stats prompt or upload, no auth token on a plain local head."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _orphan_state(job_id: str) -> JobState:
    """A job of an ended session head with no result: the head (and the job) ended with its launcher."""
    return JobState(
        State.FAILED,
        f"job {job_id} ran on the Ray head of a launcher session that has ended "
        "(backend.address was unset), and the row wrote no result; rerun it",
    )


class RayBackend(Backend):
    """Submits rows as Ray jobs to `config.address`, or to this process's session head.

    `wait=False` without an address is refused before anything is submitted: the session head's jobs
    die with the launcher.
    """

    name = "ray"
    Config = RayConfig
    config: RayConfig
    env_vars = ("RAY_JOB_ID", "RAY_JOB_SUBMISSION_ID", "RAY_ADDRESS")

    @classmethod
    def job_id_in_job(cls, environ: Mapping[str, str] = os.environ) -> str | None:
        """The submission id `_submit` chose, which it also passes to the node as LAUNCHER_JOB_ID."""
        return environ.get("RAY_JOB_SUBMISSION_ID") or environ.get("RAY_JOB_ID") or None

    def __init__(self, config: Mapping[str, Any] | BackendConfig | None = None, *, wait: bool = True) -> None:
        super().__init__(config, wait=wait)
        self.config_address: str | None = self.config.address or None
        self.runtime_env: dict[str, Any] = dict(self.config.runtime_env or {})
        if self.config_address is None and not self.wait:
            raise RayBackendError(
                "backend=ray with wait=false needs backend.address: without one the launcher starts a Ray "
                "head for this session only, and its jobs would die with it when the launcher returns. "
                "Start a head that outlives the launcher (`ray start --head --dashboard-host=127.0.0.1`, "
                "or .ci/services/ray.sh start) and pass backend.address=http://127.0.0.1:8265, or use wait=true."
            )
        self._client = None
        self._client_address: str | None = None
        _ray_env()

    # -- connection

    @property
    def address(self) -> str | None:
        """The Jobs API in use: the configured one, else the session head's (None when none runs)."""
        if self.config_address:
            return self.config_address
        head = session_head()
        return head.address if head is not None else None

    @property
    def embedded(self) -> bool:
        return self.config_address is None

    def connect(self, start: bool = False, run_dir: str | Path | None = None):
        """The Jobs API client, or None when the row's session head is gone.

        Only submission may start the session head (`start=True`): reading a state must never start a
        cluster. Another process (`python -m launcher.gather` while the launcher still waits) finds a
        live session head through the row's SESSION_FILE.
        """
        address = self.address
        if self.embedded and session_head() is None:
            if start:
                address = start_session_head().address
            else:
                address = session_address(run_dir)
                if address is None:
                    return None
        if self._client is None or self._client_address != address:
            from ray.job_submission import JobSubmissionClient

            if self.config_address and not jobs_api_answers(address):
                raise RayBackendError(
                    f"no Ray Jobs API answers at backend.address={address}. Is the head running "
                    "(`ray status`), with its dashboard on (`ray start --head --include-dashboard=true`) and "
                    "its port reachable from here (an SSH tunnel to the head's 127.0.0.1:8265, see "
                    "docs/cluster.md)? Leave backend.address unset to start a local head for this session "
                    "(wait=true)."
                )
            try:
                self._client = JobSubmissionClient(address, headers=auth_headers(address) or None)
            except Exception as e:  # ConnectionError, RuntimeError from the SDK
                raise RayBackendError(
                    f"cannot connect to the Ray Jobs API at {address}: {e}"
                    + (
                        " (a head with token authentication: set RAY_AUTH_MODE=token and the "
                        "token, see docs/cluster.md)"
                        if "token" in str(e).lower()
                        else ""
                    )
                ) from e
            self._client_address = address
        return self._client

    def close(self) -> None:
        """End this process's session head, if one runs (a head given by address is left alone).

        Jobs still unfinished on it are stopped through the Jobs API first, so each node gets SIGTERM
        and writes a `cancelled` result and each row's whole process tree ends (killing the head alone
        would orphan a row's command). Also runs at interpreter exit.
        """
        self._client = None
        if self.embedded:
            stop_session_head()

    # -- submit

    def describe(self, spec: JobSpec) -> list[str]:
        where = self.config_address or "a local Ray head started for this session"
        if spec.nodes > 1:
            return [
                f"ray (Jobs API at {where}): a placement group of {spec.nodes} bundles, STRICT_SPREAD (one per "
                f"node), each {spec.gpus} GPUs and {spec.cpus} CPUs; node 0 leads",
                f"ray entrypoint:  {self.entrypoint(spec)}",
            ]
        return [
            f"ray (Jobs API at {where}): entrypoint_num_gpus={spec.gpus} entrypoint_num_cpus={spec.cpus}",
            f"ray entrypoint:  {self.entrypoint(spec)}",
        ]

    def entrypoint(self, spec: JobSpec) -> str:
        run_dir = str(Path(spec.run_dir).resolve())
        python = "python" if any(k in self.runtime_env for k in _OWN_PYTHON_KEYS) else sys.executable
        # cd into the run dir unless the runtime_env ships the code as the job's working dir: `python -m`
        # puts the cwd first on sys.path, and the head's own cwd could hold a different launcher checkout
        cd = "" if "working_dir" in self.runtime_env else f"cd {shlex.quote(run_dir)} && "
        # a row over several nodes: a driver that places one node entry point per node (span.py)
        module = "launcher.node" if spec.nodes <= 1 else "launcher.backends.ray.span"
        return f"{cd}exec {shlex.quote(python)} -m {module} {shlex.quote(run_dir)}"

    def job_runtime_env(self) -> dict[str, Any]:
        """The configured runtime_env plus what the shared-filesystem default needs."""
        env = {k: v for k, v in self.runtime_env.items()}
        env_vars = dict(env.get("env_vars") or {})
        if not any(k in env for k in _SHIPS_CODE_KEYS) and not _installed_site_wide():
            checkout = str(PACKAGE_DIR.parent)
            env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (checkout, env_vars.get("PYTHONPATH")) if p)
        env_vars.setdefault("RAY_JOB_STOP_WAIT_TIME_S", str(STOP_WAIT_S))
        env_vars.setdefault("PYTHONUNBUFFERED", "1")
        env["env_vars"] = {k: str(v) for k, v in env_vars.items()}
        return env

    def check(self, specs: Sequence[JobSpec]) -> list[str]:
        """Before anything is queued: can some node of the cluster ever hold each row?

        On the embedded head (one node, nothing to add) a row that cannot fit is an error; on a
        cluster given by address it is a warning, since an autoscaler may add a node that fits.
        Returns the warnings.
        """
        nodes = self._node_resources()
        problems = []
        for spec in specs:
            if nodes is None:
                break
            fitting = sum(1 for n in nodes if n.get("GPU", 0) >= spec.gpus and n.get("CPU", 0) >= spec.cpus)
            if fitting < max(1, spec.nodes):
                have = ", ".join(f"{int(n.get('GPU', 0))} GPUs/{int(n.get('CPU', 0))} CPUs" for n in nodes) or "none"
                many = "one node" if spec.nodes <= 1 else f"{spec.nodes} nodes, each"
                problems.append(
                    f"row {spec.impl}: needs {many} with {spec.gpus} GPUs and {spec.cpus} CPUs; "
                    f"the Ray cluster at {self.address} has nodes with {have}"
                )
        if problems and self.embedded:  # one node, nothing will join
            raise RayBackendError(
                "; ".join(problems) + ". Pick a smaller hardware config (hardware=local) or "
                "pass backend.address of a cluster that has such a node."
            )
        for p in problems:
            print(f"[ray] warning: {p}; the job stays pending until a node that fits joins", file=sys.stderr)
        return problems

    def _node_resources(self) -> list[dict[str, float]] | None:
        try:
            return node_resources(self.address)
        except Exception as e:  # the state API is optional for submission
            print(f"[ray] warning: could not list the cluster's nodes ({e}); not checking resources", file=sys.stderr)
            return None

    def _submit(self, specs: list[JobSpec]) -> Iterator[tuple[JobSpec, str]]:
        client = self.connect(start=True)
        self.check(specs)
        for spec in specs:
            submission_id = f"launcher-{spec.impl}-{uuid.uuid4().hex[:10]}"
            runtime_env = self.job_runtime_env()
            # the node records where it ran (result.json's job_id): the id is known before the job starts
            runtime_env["env_vars"].update(job_environ(submission_id, num_nodes=1), LAUNCHER_BACKEND=self.name)
            # impl.env_pass: by name from this environment into the job's (held by the head, never a run dir file)
            runtime_env["env_vars"].update({n: os.environ[n] for n in spec.env_pass or [] if n in os.environ})
            job_id = client.submit_job(
                entrypoint=self.entrypoint(spec),
                submission_id=submission_id,
                runtime_env=runtime_env,
                # over several nodes the driver reserves nothing: its placement group holds each node's share
                entrypoint_num_gpus=spec.gpus if spec.nodes <= 1 else 0,
                entrypoint_num_cpus=spec.cpus if spec.nodes <= 1 else 0,
                metadata={
                    "launcher_impl": spec.impl,
                    "launcher_hardware": spec.hardware,
                    "launcher_run_dir": str(Path(spec.run_dir).resolve()),
                    "launcher_time_limit_min": str(spec.time_limit_min),
                },
            )
            if self.embedded:
                record_session_job(spec.run_dir, job_id)
            yield spec, job_id

    # -- state

    def _job_info(self, job_id: str, run_dir: str | Path | None) -> tuple[Any, JobState | None]:
        """(Ray's record of the job, None), or (None, what to say instead when there is no record to read)."""
        try:
            client = self.connect(run_dir=run_dir)
            if client is None:  # submitted to a session head of a launcher that has ended
                return None, _orphan_state(job_id)
            return client.get_job_info(job_id), None
        except RayBackendError as e:  # the head does not answer
            return None, JobState(State.UNKNOWN, str(e))
        except Exception as e:  # the SDK raises RuntimeError for an unknown job id
            if "does not exist" in str(e) or "404" in str(e):
                return None, JobState(
                    State.FAILED,
                    f"the Ray cluster at {self.address} has no record of job {job_id} "
                    "(its head was restarted, so the job died with it) and the row "
                    "wrote no result",
                )
            return None, JobState(State.UNKNOWN, f"cannot read job {job_id} from {self.address}: {e}")

    def _settled(self, job_id: str, run_dir: str | Path | None, own: JobState) -> JobState:
        """A `cancelled` result of a job our backstop stopped past its time limit is a timeout."""
        if own.state != "cancelled":
            return own
        info, _ = self._job_info(job_id, run_dir)
        if info is not None and _ours(info) == "cancelled" and _overran(info, run_dir):
            return JobState(State.TIMEOUT, _overran_reason(info))
        return own

    def _scheduler_state(self, job_id: str, run_dir: str | Path | None) -> JobState:
        info, instead = self._job_info(job_id, run_dir)
        if info is None:
            return instead  # type: ignore[return-value]
        ours, message = _ours(info), info.message or None
        if ours == "pending":
            return JobState(State.PENDING, message)
        if ours == "running":
            return self._running(job_id, info, run_dir, message)
        if ours == "cancelled":
            if _overran(info, run_dir):
                return JobState(State.TIMEOUT, _overran_reason(info))
            return JobState(State.CANCELLED, message or "stopped through the Ray Jobs API")
        if ours == "ok":
            return JobState(State.FAILED, f"the Ray job succeeded but the row wrote no {RESULT_FILE} in {run_dir}")
        return JobState(ours, message)

    def _running(self, job_id: str, info, run_dir: str | Path | None, message: str | None) -> JobState:
        limit_s = _time_limit_s(info)
        started = _node_started(run_dir)
        if limit_s is not None and started is not None:
            elapsed = time.time() - started
            if elapsed > limit_s + TIMEOUT_GRACE_S:
                try:
                    self.connect(run_dir=run_dir).stop_job(job_id)
                except Exception:  # already ending
                    pass
                return JobState(
                    State.TIMEOUT,
                    f"still running {elapsed / 60:.1f} min after its start, past its time "
                    f"limit of {limit_s / 60:.0f} min; stopped by the launcher",
                )
        return JobState(State.RUNNING, message)

    def cancel(self, job_id: str) -> None:
        client = self.connect()
        if client is None:  # its session head is gone, and the job ended with it: nothing was stopped here
            raise RayBackendError(
                f"the Ray head that ran {job_id} is gone (its launcher ended), and the job with it; nothing to cancel"
            )
        if not client.stop_job(job_id):  # Ray: the job had already ended
            raise RayBackendError(f"Ray says job {job_id} had already ended; nothing was stopped")


def _ours(info) -> str:
    """Ray's state of a job as ours (`unknown` for a state Ray adds later)."""
    return _RAY_STATES.get(str(getattr(info.status, "value", info.status)), "unknown")


def _installed_site_wide() -> bool:
    """Whether the launcher is imported from an installed distribution (so the node's Python finds it)."""
    parts = PACKAGE_DIR.parts
    return "site-packages" in parts or "dist-packages" in parts


def _time_limit_s(info) -> float | None:
    try:
        return float((info.metadata or {})["launcher_time_limit_min"]) * 60
    except (KeyError, TypeError, ValueError):
        return None


def _node_started(run_dir: str | Path | None) -> float | None:
    """When the node entry point started the row (status.json), as a POSIX time; None if it has not.

    Ray's own start time counts the time a job waited for resources, which is no part of its limit.
    """
    if run_dir is None:
        return None
    try:
        return datetime.fromisoformat(str(read_status(run_dir)["started_at"]).replace("Z", "+00:00")).timestamp()
    except (ValueError, KeyError, TypeError):
        return None


def _overran(info, run_dir: str | Path | None) -> bool:
    """Whether a stopped job had run past its time limit (plus the grace) when it was stopped."""
    limit_s, started = _time_limit_s(info), _node_started(run_dir)
    if limit_s is None or started is None:
        return False
    end = (info.end_time / 1000) if info.end_time else time.time()
    return end - started > limit_s + TIMEOUT_GRACE_S


def _overran_reason(info) -> str:
    limit_s = _time_limit_s(info) or 0
    return f"ran past its time limit of {limit_s / 60:.0f} min and was stopped"
