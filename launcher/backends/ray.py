"""The Ray backend: every row becomes one Ray job, submitted through the Jobs API (`ray.job_submission`).

Why the Jobs API rather than Ray tasks: a job is a shell command that runs on a node of the cluster with
reserved resources, survives the submitting process (`wait=false`, re-attach later from any shell), and
has a status the cluster keeps, which is exactly the contract the other backends have. Each job runs
the one node entry point, `python -m launcher.node RUN_DIR`, so a row behaves the same as anywhere else.

Resources. The entrypoint reserves the row's GPUs (`entrypoint_num_gpus=spec.gpus`) so two 8-GPU rows
never share a node's GPUs (Ray runs them one after the other), and the row's CPUs
(`entrypoint_num_cpus=spec.cpus`: data loaders and the row's own rank processes need them on a real
cluster). Memory is not reserved: `hardware.mem_gb` describes the machine, not the row's need, and Ray's
`memory` resource is only a fraction of a node's RAM, so asking for it would leave the job pending forever.

How the launcher's code reaches the node (pick one):
  * shared filesystem (the default, as on most GPU clusters): the node runs the same Python interpreter
    path as the submit host (`sys.executable`), and when the launcher is not installed into that
    environment (a source checkout) the job's runtime_env gets `PYTHONPATH=<the checkout>`. Run
    directories must be on the shared filesystem too (the node reads spec.json and writes result.json).
  * a runtime_env that ships or installs it: `backend.runtime_env={working_dir: ., ...}` or
    `py_modules`, `pip`, `conda`, `uv`, `py_executable`, `container`/`image_uri`; the launcher then
    leaves PYTHONPATH alone and, when the runtime_env brings its own Python, runs `python` from its PATH.

Time limits. Ray jobs have none, so the node entry point enforces `spec.time_limit_min` itself and
writes `status: timeout`; as a backstop against a node that cannot (hung, SIGKILLed children), `state()`
stops a job still running `TIMEOUT_GRACE_S` past its limit and reports it as `timeout`.

No address (the embedded default): a Ray head is started for the session on free ports in its own
temporary directory (`EmbeddedHead`) and stopped by `close()` once the launcher has waited for the rows.
`wait=false` is refused without an address: the embedded head is the launcher's child and its jobs die
with it, so "submit and come back later" needs a head that outlives the launcher (`ray start --head`,
or `.ci/services/ray.sh start`) passed as `backend.address`.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import PACKAGE_DIR
from ..rundir import RESULT_FILE, SPEC_FILE, STATUS_FILE, CorruptResult, atomic_write_json, read_result
from ..spec import JobSpec
from .base import Backend, JobState, append_manifest

#: a running job this long past its time limit is stopped by `state()` (the node should have ended it)
TIMEOUT_GRACE_S = 120
#: how long Ray lets a stopped job's processes finish after SIGTERM (the node writes its result then)
STOP_WAIT_S = 30
#: runtime_env keys that bring their own Python (so the entrypoint runs `python` from the job's PATH)
_OWN_PYTHON_KEYS = ("pip", "conda", "uv", "py_executable", "container", "image_uri")
#: runtime_env keys that ship the launcher's code to the node (so PYTHONPATH is left alone)
_SHIPS_CODE_KEYS = ("working_dir", "py_modules")

#: in a run dir submitted to a session head: where that head listens while its launcher runs
SESSION_FILE = "ray-session.json"

# Ray's job states -> ours, before the node's own result.json is consulted
_RAY_STATES = {"PENDING": "pending", "RUNNING": "running", "SUCCEEDED": "ok", "FAILED": "failed",
               "STOPPED": "cancelled"}


class RayBackendError(RuntimeError):
    """The Ray backend cannot do what was asked; the message names the problem and the way out."""


def _ray_env() -> None:
    """Client-side settings: no usage-stats prompt or upload, no auth token on a plain local head."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


# ---------------------------------------------------------------- the embedded head


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jobs_api_answers(address: str, timeout: float = 3.0) -> bool:
    """True when a Ray Jobs API answers at `address` (GET /api/jobs/ lists the jobs)."""
    try:
        with urllib.request.urlopen(address.rstrip("/") + "/api/jobs/", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class EmbeddedHead:
    """A single-node Ray head started for one launcher session, stopped when the session ends.

    It runs `ray start --head --block` as the leader of its own process group: Ray ties the head's
    processes to that command (they die with it), and `stop()` signals exactly that group, never
    `ray stop`, which kills every Ray process on the machine by name (other heads included).
    Every port is chosen free, and its temporary directory is its own, so it coexists with any other
    Ray on the machine.
    """

    def __init__(self, num_cpus: int | None = None, num_gpus: int | None = None, start_timeout_s: float = 120):
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.address: str | None = None
        self.tmpdir: str | None = None
        self.log_path: str | None = None
        self.jobs: list[str] = []  # submitted to it, stopped before it stops

    def start(self) -> str:
        # a short path: Ray puts unix sockets in it (108-byte limit)
        self.tmpdir = tempfile.mkdtemp(prefix="lx-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.log_path = os.path.join(self.tmpdir, "head.log")
        dashboard_port = _free_port()
        ports = {"--port": _free_port(), "--dashboard-port": dashboard_port,
                 "--ray-client-server-port": _free_port(), "--dashboard-agent-listen-port": _free_port(),
                 "--dashboard-agent-grpc-port": _free_port(), "--runtime-env-agent-port": _free_port(),
                 "--metrics-export-port": _free_port(), "--node-manager-port": _free_port(),
                 "--object-manager-port": _free_port()}
        ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
        cmd = [ray_bin if os.path.exists(ray_bin) else "ray", "start", "--head", "--block",
               "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--temp-dir={self.tmpdir}",
               "--disable-usage-stats", f"--object-store-memory={256 * 2**20}"]
        cmd += [f"{k}={v}" for k, v in ports.items()]
        if self.num_cpus is not None:
            cmd.append(f"--num-cpus={self.num_cpus}")
        if self.num_gpus is not None:
            cmd.append(f"--num-gpus={self.num_gpus}")
        env = dict(os.environ, RAY_TMPDIR=self.tmpdir, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=self.tmpdir, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        self.address = f"http://127.0.0.1:{dashboard_port}"
        deadline = time.monotonic() + self.start_timeout_s
        while not jobs_api_answers(self.address, timeout=2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self._log_tail()
                self.stop(keep_files=True)  # its log explains the failure
                raise RayBackendError(
                    f"could not start a local Ray head (log: {self.log_path}):\n{tail}\n"
                    "Start one yourself (`ray start --head --dashboard-host=127.0.0.1`) and pass "
                    "backend.address=http://127.0.0.1:8265")
            time.sleep(0.5)
        # the Jobs API answers before the raylet has registered the node's resources
        while not self.node_resources():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self._log_tail()
                self.stop(keep_files=True)  # its log explains the failure
                raise RayBackendError(f"the local Ray head started but reported no node (log: {self.log_path}):\n{tail}")
            time.sleep(0.5)
        return self.address

    def node_resources(self) -> list[dict[str, float]]:
        return node_resources(self.address)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except (OSError, TypeError):
            return "(no log)"

    def stop(self, timeout_s: float = 3, keep_files: bool = False) -> None:
        """SIGTERM the head's process group, SIGKILL what is left after `timeout_s`.

        `ray start --block` itself ignores SIGTERM and its GCS and raylet take ~10 s to act on it, so
        the group is SIGKILLed soon after, as `ray stop --force` would; the jobs' own processes (in
        sessions of their own) are killed by their supervisors' watchers when the raylet goes.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(pgid):
                time.sleep(0.2)
            if not _group_alive(pgid):
                break
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILLed above
            pass
        if not keep_files and self.tmpdir:  # session logs and sockets: tens of MB per head
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def node_resources(address: str) -> list[dict[str, float]]:
    """Total resources of each alive node of the cluster whose dashboard is at `address`."""
    from ray.util.state import list_nodes

    return [dict(n.resources_total or {}) for n in list_nodes(address=address, detail=True) if n.state == "ALIVE"]


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the launcher dies (even by SIGKILL), so a crashed
    launcher leaves no head behind; Ray ties the head's own processes to `ray start --block`."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: atexit still stops it
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, not ours
        return True


# ---------------------------------------------------------------- the session head

#: the embedded head of this process, shared by every RayBackend without an address (the one that
#: submits and the one that follows), so a session never starts two
_SESSION: EmbeddedHead | None = None


def _start_session_head() -> EmbeddedHead:
    global _SESSION
    head = EmbeddedHead()
    head.start()
    _SESSION = head
    atexit.register(stop_session_head)  # never leave a session's head behind
    print(f"[ray] started a local Ray head for this session at {head.address} (log {head.log_path}); "
          "it stops when the launcher ends", file=sys.stderr)
    return head


def stop_session_head() -> None:
    """Stop this process's session head after stopping its unfinished jobs (see RayBackend.close)."""
    global _SESSION
    head, _SESSION = _SESSION, None
    if head is None:
        return
    try:
        _stop_jobs(head)
    finally:
        head.stop()


def _stop_jobs(head: EmbeddedHead) -> None:
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(head.address)
        live = [j for j in head.jobs if not client.get_job_status(j).is_terminal()]
        if live:
            print(f"[ray] the session's Ray head stops with the launcher: stopping {len(live)} unfinished "
                  "job(s) (their rows end cancelled); pass backend.address to keep jobs beyond the launcher",
                  file=sys.stderr)
        for j in live:
            client.stop_job(j)
        deadline = time.monotonic() + STOP_WAIT_S + 10
        while live and time.monotonic() < deadline:
            time.sleep(0.5)
            live = [j for j in live if not client.get_job_status(j).is_terminal()]
    except Exception as e:  # the head is already going: nothing more to stop through it
        print(f"[ray] could not stop the session's jobs cleanly ({e})", file=sys.stderr)


def _session_address(run_dir: str | Path | None) -> str | None:
    """The address of the live session head a row was submitted to from another process, if any."""
    if run_dir is None:
        return None
    try:
        data = json.loads((Path(run_dir) / SESSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("host") != socket.gethostname():  # a session head listens on 127.0.0.1 of its own host
        return None
    address = data.get("address")
    return address if address and jobs_api_answers(address, timeout=2) else None


def _orphan_state(job_id: str, run_dir: str | Path | None) -> JobState:
    """A job of an ended session head with no result: the head (and the job) ended with its launcher."""
    return JobState("failed", f"job {job_id} ran on the Ray head of a launcher session that has ended "
                              "(backend.address was unset), and the row wrote no result; rerun it")


# ---------------------------------------------------------------- the backend


class RayBackend(Backend):
    """Submits rows as Ray jobs to `config['address']`, or to this process's session head.

    `config` is the row's backend config (conf/backend/ray.yaml); the launcher adds `wait` (its own
    `wait` key) so that `wait=false` without an address is refused before anything is submitted.
    """

    name = "ray"

    def __init__(self, config: Mapping[str, Any] | None = None):
        config = dict(config or {})
        self.config_address: str | None = config.get("address") or None
        self.runtime_env: dict[str, Any] = dict(config.get("runtime_env") or {})
        self.wait = bool(config.get("wait", True))
        if self.config_address is None and not self.wait:
            raise RayBackendError(
                "backend=ray with wait=false needs backend.address: without one the launcher starts a Ray "
                "head for this session only, and its jobs would die with it when the launcher returns. "
                "Start a head that outlives the launcher (`ray start --head --dashboard-host=127.0.0.1`, "
                "or .ci/services/ray.sh start) and pass backend.address=http://127.0.0.1:8265, or use wait=true.")
        self._client = None
        self._client_address: str | None = None
        _ray_env()

    # -- connection

    @property
    def address(self) -> str | None:
        """The Jobs API in use: the configured one, else the session head's (None when none runs)."""
        if self.config_address:
            return self.config_address
        return _SESSION.address if _SESSION is not None else None

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
        if self.embedded and _SESSION is None:
            if start:
                address = _start_session_head().address
            else:
                address = _session_address(run_dir)
                if address is None:
                    return None
        if self._client is None or self._client_address != address:
            from ray.job_submission import JobSubmissionClient

            if self.config_address and not jobs_api_answers(address):
                raise RayBackendError(
                    f"no Ray Jobs API answers at backend.address={address}. Is the head running "
                    "(`ray status`), with its dashboard on (`ray start --head --include-dashboard=true "
                    "--dashboard-host=0.0.0.0`) and that port reachable from here? Leave backend.address "
                    "unset to start a local head for this session (wait=true).")
            try:
                self._client = JobSubmissionClient(address)
            except Exception as e:  # ConnectionError, RuntimeError from the SDK
                raise RayBackendError(f"cannot connect to the Ray Jobs API at {address}: {e}") from e
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
        return [f"ray (Jobs API at {where}): entrypoint_num_gpus={spec.gpus} entrypoint_num_cpus={spec.cpus}",
                f"ray entrypoint:  {self.entrypoint(spec)}"]

    def entrypoint(self, spec: JobSpec) -> str:
        run_dir = str(Path(spec.run_dir).resolve())
        python = "python" if any(k in self.runtime_env for k in _OWN_PYTHON_KEYS) else sys.executable
        # cd into the run dir unless the runtime_env ships the code as the job's working dir: `python -m`
        # puts the cwd first on sys.path, and the head's own cwd could hold a different launcher checkout
        cd = "" if "working_dir" in self.runtime_env else f"cd {shlex.quote(run_dir)} && "
        return f"{cd}exec {shlex.quote(python)} -m launcher.node {shlex.quote(run_dir)}"

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
            if not any(n.get("GPU", 0) >= spec.gpus and n.get("CPU", 0) >= spec.cpus for n in nodes):
                have = ", ".join(f"{int(n.get('GPU', 0))} GPUs/{int(n.get('CPU', 0))} CPUs" for n in nodes) or "none"
                problems.append(f"row {spec.impl}: needs one node with {spec.gpus} GPUs and {spec.cpus} CPUs; "
                                f"the Ray cluster at {self.address} has nodes with {have}")
        if problems and self.embedded:  # one node, nothing will join
            raise RayBackendError("; ".join(problems) + ". Pick a smaller hardware config (hardware=local) or "
                                  "pass backend.address of a cluster that has such a node.")
        for p in problems:
            print(f"[ray] warning: {p}; the job stays pending until a node that fits joins", file=sys.stderr)
        return problems

    def _node_resources(self) -> list[dict[str, float]] | None:
        try:
            return node_resources(self.address)
        except Exception as e:  # the state API is optional for submission
            print(f"[ray] warning: could not list the cluster's nodes ({e}); not checking resources", file=sys.stderr)
            return None

    def submit(self, specs: Sequence[JobSpec]) -> list[str]:
        for spec in specs:
            if not (Path(spec.run_dir) / SPEC_FILE).is_file():
                raise RayBackendError(f"{spec.run_dir}/{SPEC_FILE} is missing: save the spec (spec.save()) "
                                      "before submitting it")
        client = self.connect(start=True)
        self.check(specs)
        ids = []
        for spec in specs:
            submission_id = f"launcher-{spec.impl}-{uuid.uuid4().hex[:10]}"
            runtime_env = self.job_runtime_env()
            # the node records where it ran (result.json's job_id), as SLURM_JOB_ID tells it on Slurm
            runtime_env["env_vars"].update(LAUNCHER_JOB_ID=submission_id, LAUNCHER_BACKEND=self.name)
            job_id = client.submit_job(
                entrypoint=self.entrypoint(spec),
                submission_id=submission_id,
                runtime_env=runtime_env,
                entrypoint_num_gpus=spec.gpus,
                entrypoint_num_cpus=spec.cpus,
                metadata={"launcher_impl": spec.impl, "launcher_hardware": spec.hardware,
                          "launcher_run_dir": str(Path(spec.run_dir).resolve()),
                          "launcher_time_limit_min": str(spec.time_limit_min)},
            )
            if self.embedded and _SESSION is not None:
                _SESSION.jobs.append(job_id)
                atomic_write_json(Path(spec.run_dir) / SESSION_FILE,
                                  {"address": _SESSION.address, "launcher_pid": os.getpid(),
                                   "host": socket.gethostname(), "job_id": job_id})
            append_manifest(spec, job_id)
            ids.append(job_id)
        return ids

    # -- state

    def state(self, job_id: str, run_dir: str | Path | None = None) -> JobState:
        """Ray's view of the job, corrected by the node's own result.json (the node knows best why it ended)."""
        result = _read_final(run_dir)
        try:
            client = self.connect(run_dir=run_dir)
            if client is None:  # submitted to a session head of a launcher that has ended
                return result or _orphan_state(job_id, run_dir)
            info = client.get_job_info(job_id)
        except RayBackendError as e:  # the head does not answer: the row's own files are all there is
            if result is not None:
                return result
            return JobState("unknown", str(e))
        except Exception as e:  # the SDK raises RuntimeError for an unknown job id
            if result is not None:
                return result
            if "does not exist" in str(e) or "404" in str(e):
                return JobState("failed", f"the Ray cluster at {self.address} has no record of job {job_id} "
                                          "(its head was restarted, so the job died with it) and the row wrote "
                                          "no result")
            return JobState("unknown", f"cannot read job {job_id} from {self.address}: {e}")
        ray_state = str(getattr(info.status, "value", info.status))
        message = info.message or None
        ours = _RAY_STATES.get(ray_state, "unknown")
        if ours == "pending":
            return JobState("pending", message)
        if ours == "running":
            if result is not None:  # the node has written its result; the job is only exiting
                return result
            return self._running(job_id, info, run_dir, message)
        # final
        overran = ours == "cancelled" and _overran(info, run_dir)
        if result is not None:
            if overran and result.state == "cancelled":  # stopped by our backstop, not by a user
                return JobState("timeout", _overran_reason(info))
            return result
        if ours == "cancelled":
            if overran:
                return JobState("timeout", _overran_reason(info))
            return JobState("cancelled", message or "stopped through the Ray Jobs API")
        if ours == "ok":
            return JobState("failed", f"the Ray job succeeded but the row wrote no {RESULT_FILE} in {run_dir}")
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
                return JobState("timeout", f"still running {elapsed / 60:.1f} min after its start, past its time "
                                           f"limit of {limit_s / 60:.0f} min; stopped by the launcher")
        return JobState("running", message)

    def cancel(self, job_id: str) -> None:
        client = self.connect()
        if client is None:  # its session head is gone, and the job ended with it
            return
        client.stop_job(job_id)

    def logs(self, job_id: str) -> str:
        """The job's driver output as Ray captured it (the node's own log is RUN_DIR/train.log)."""
        client = self.connect()
        return client.get_job_logs(job_id) if client is not None else ""


def _installed_site_wide() -> bool:
    """Whether the launcher is imported from an installed distribution (so the node's Python finds it)."""
    parts = PACKAGE_DIR.parts
    return "site-packages" in parts or "dist-packages" in parts


def _read_final(run_dir: str | Path | None) -> JobState | None:
    if run_dir is None or not (Path(run_dir) / RESULT_FILE).exists():
        return None
    try:
        r = read_result(Path(run_dir) / RESULT_FILE)
    except CorruptResult as e:
        return JobState("failed", str(e))
    return JobState(r.status, r.error if r.status != "ok" else None)


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
        data = json.loads((Path(run_dir) / STATUS_FILE).read_text(encoding="utf-8"))
        return datetime.fromisoformat(str(data["started_at"]).replace("Z", "+00:00")).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
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
