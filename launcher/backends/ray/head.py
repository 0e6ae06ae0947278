"""The Ray head a launcher session starts when no `backend.address` is given, and the Jobs API probe.

No address (the embedded default): a Ray head is started for the session on free ports in its own
temporary directory (`EmbeddedHead`) and stopped by `RayBackend.close()` (or at interpreter exit)
once the launcher has waited for the rows. Every backend object of the process without an address
shares that one head (the one that submits and the one that follows); another process (a `gather`
while the launcher still waits) finds it through the row's SESSION_FILE.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ...node.process import group_alive, stop_group
from ...rundir import atomic_write_json
from ..base import BackendError
import ctypes

#: how long Ray lets a stopped job's processes finish after SIGTERM (the node writes its result then)
STOP_WAIT_S = 30
#: in a run dir submitted to a session head: where that head listens while its launcher runs
SESSION_FILE = "ray-session.json"

#: A session head serves this host only, so every one of its servers binds to loopback.  Ray 2.60 turns
#: `--node-ip-address=127.0.0.1` back into the host's routable address (services.resolve_ip_for_localhost)
#: unless it runs in single-machine mode, which `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` selects on Linux too
#: (ray_constants.ENABLE_RAY_CLUSTER; get_node_ip_address then answers 127.0.0.1).  With both, GCS, raylet,
#: object manager, dashboard and its agents, runtime-env agent, client server, metrics exporter and the
#: workers' gRPC servers all listen on 127.0.0.1 (tests/test_backends_ray_head.py checks with `ss`); without them
#: they listen on every interface, unauthenticated.  .ci/services/ray.sh starts its head the same way.
LOOPBACK_ARGS = ("--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1")
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

#: Loopback is not enough on a machine other users share: any local user could reach the Jobs API and run a
#: job as the launcher's user (issue 21, class 9).  So a session head also demands a token (Ray 2.52+:
#: RAY_AUTH_MODE=token): a new random one per head, in a file only its user can read (mode 0600, in the
#: head's own 0700 temporary directory), given to the head by path (RAY_AUTH_TOKEN_PATH), never on a command
#: line or in a run dir; the launcher's own clients send it as a bearer header (`auth_headers`).  (Its own
#: directory: Ray makes the head's temporary directory world-writable.)
TOKEN_FILE = "auth_token"

#: address -> token file of the session heads this process knows (its own, or one found via SESSION_FILE)
_TOKENS: dict[str, str] = {}


def auth_headers(address: str | None) -> dict[str, str]:
    """The Authorization header for a session head the launcher started ({} for any other head: Ray's own
    RAY_AUTH_MODE / RAY_AUTH_TOKEN settings apply there, docs/cluster.md)."""
    path = _TOKENS.get((address or "").rstrip("/"))
    if not path:
        return {}
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return {}
    return {"Authorization": f"Bearer {token}"}


def _write_token(directory: str) -> str:
    import secrets as _secrets

    path = os.path.join(directory, TOKEN_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(_secrets.token_hex(32))
    os.chmod(path, 0o600)  # whatever the umask
    return path


class RayBackendError(BackendError):
    """The Ray backend cannot do what was asked; the message names the problem and the way out."""


# ---------------------------------------------------------------- the embedded head


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jobs_api_answers(address: str, timeout: float = 3.0) -> bool:
    """True when a Ray Jobs API answers at `address` (GET /api/jobs/ lists the jobs, or asks for the
    token of a head with token authentication: Ray's own client then sends it, see docs/cluster.md)."""
    try:
        with urllib.request.urlopen(address.rstrip("/") + "/api/jobs/", timeout=timeout) as r:
            return r.status == 200
    except urllib.error.HTTPError as e:
        return e.code in (401, 403)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class EmbeddedHead:
    """A single-node Ray head started for one launcher session, stopped when the session ends.

    It runs `ray start --head --block` as the leader of its own process group: Ray ties the head's
    processes to that command (they die with it), and `stop()` signals exactly that group, never
    `ray stop`, which kills every Ray process on the machine by name (other heads included).
    Every port is chosen free, and its temporary directory is its own, so it coexists with any other
    Ray on the machine.  Every port listens on 127.0.0.1 only (LOOPBACK_ARGS): authentication is off,
    so nothing of it may face the network.
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
        self.token_file: str | None = None  # its token (mode 0600, in token_dir, mode 0700): see TOKEN_FILE
        self.token_dir: str | None = None

    def start(self) -> str:
        # a short path: Ray puts unix sockets in it (108-byte limit)
        self.tmpdir = tempfile.mkdtemp(prefix="lx-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.log_path = os.path.join(self.tmpdir, "head.log")
        dashboard_port = _free_port()
        ports = {
            "--port": _free_port(),
            "--dashboard-port": dashboard_port,
            "--ray-client-server-port": _free_port(),
            "--dashboard-agent-listen-port": _free_port(),
            "--dashboard-agent-grpc-port": _free_port(),
            "--runtime-env-agent-port": _free_port(),
            "--metrics-export-port": _free_port(),
            "--node-manager-port": _free_port(),
            "--object-manager-port": _free_port(),
        }
        ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
        cmd = [
            ray_bin if os.path.exists(ray_bin) else "ray",
            "start",
            "--head",
            "--block",
            *LOOPBACK_ARGS,
            "--include-dashboard=true",
            f"--temp-dir={self.tmpdir}",
            "--disable-usage-stats",
            f"--object-store-memory={256 * 2**20}",
        ]
        cmd += [f"{k}={v}" for k, v in ports.items()]
        if self.num_cpus is not None:
            cmd.append(f"--num-cpus={self.num_cpus}")
        if self.num_gpus is not None:
            cmd.append(f"--num-gpus={self.num_gpus}")
        # the token's own 0700 directory: Ray makes its temporary directory world-writable
        self.token_dir = tempfile.mkdtemp(prefix="lx-ray-token-", dir=os.path.dirname(self.tmpdir))
        self.token_file = _write_token(self.token_dir)
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN",)}
        env.update(
            **LOOPBACK_ENV,
            RAY_TMPDIR=self.tmpdir,
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=self.token_file,
            RAY_USAGE_STATS_ENABLED="0",
        )
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.tmpdir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.address = f"http://127.0.0.1:{dashboard_port}"
        _TOKENS[self.address] = self.token_file
        deadline = time.monotonic() + self.start_timeout_s
        while not jobs_api_answers(self.address, timeout=2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self._log_tail()
                self.stop(keep_files=True)  # its log explains the failure
                raise RayBackendError(
                    f"could not start a local Ray head (log: {self.log_path}):\n{tail}\n"
                    "Start one yourself (`ray start --head --dashboard-host=127.0.0.1`) and pass "
                    "backend.address=http://127.0.0.1:8265"
                )
            time.sleep(0.5)
        # the Jobs API answers before the raylet has registered the node's resources
        while not self.node_resources():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self._log_tail()
                self.stop(keep_files=True)  # its log explains the failure
                raise RayBackendError(
                    f"the local Ray head started but reported no node (log: {self.log_path}):\n{tail}"
                )
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
        stop_group(pgid, timeout_s, lambda: not group_alive(pgid), kill_wait_s=5)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILLed above
            pass
        if not keep_files and self.tmpdir:  # session logs and sockets: tens of MB per head
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        if self.token_dir:  # the token dies with its head
            shutil.rmtree(self.token_dir, ignore_errors=True)
            _TOKENS.pop((self.address or "").rstrip("/"), None)


def node_resources(address: str) -> list[dict[str, float]]:
    """Total resources of each alive node of the cluster whose dashboard is at `address`."""
    from ray.util.state import StateApiClient
    from ray.util.state.common import ListApiOptions, StateResource

    headers = auth_headers(address)
    client = StateApiClient(address=address, headers={"Content-Type": "application/json", **headers})
    nodes = client.list(StateResource.NODES, options=ListApiOptions(detail=True), raise_on_missing_output=True)
    return [dict(n.resources_total or {}) for n in nodes if n.state == "ALIVE"]


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the launcher dies (even by SIGKILL), so a crashed
    launcher leaves no head behind; Ray ties the head's own processes to `ray start --block`."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: atexit still stops it
        pass


# ---------------------------------------------------------------- the session head

#: the embedded head of this process, shared by every RayBackend without an address (the one that
#: submits and the one that follows), so a session never starts two
_SESSION: EmbeddedHead | None = None


def start_session_head() -> EmbeddedHead:
    global _SESSION
    head = EmbeddedHead()
    head.start()
    _SESSION = head
    atexit.register(stop_session_head)  # never leave a session's head behind
    print(
        f"[ray] started a local Ray head for this session at {head.address} (log {head.log_path}); "
        "it stops when the launcher ends",
        file=sys.stderr,
    )
    return head


def session_head() -> EmbeddedHead | None:
    """This process's session head, if one runs."""
    return _SESSION


def record_session_job(run_dir: str | Path, job_id: str) -> None:
    """A job submitted to the session head: stopped before the head stops, and noted in its run dir
    (SESSION_FILE) so another process (`gather` while this launcher waits) finds the head."""
    if _SESSION is None:
        return
    _SESSION.jobs.append(job_id)
    atomic_write_json(
        Path(run_dir) / SESSION_FILE,
        {
            "address": _SESSION.address,
            "launcher_pid": os.getpid(),
            "host": socket.gethostname(),
            "job_id": job_id,
            "token_file": _SESSION.token_file,
        },
    )  # its path, not the token


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
        client = JobSubmissionClient(head.address, headers=auth_headers(head.address) or None)
        live = [j for j in head.jobs if not client.get_job_status(j).is_terminal()]
        if live:
            print(
                f"[ray] the session's Ray head stops with the launcher: stopping {len(live)} unfinished "
                "job(s) (their rows end cancelled); pass backend.address to keep jobs beyond the launcher",
                file=sys.stderr,
            )
        for j in live:
            client.stop_job(j)
        deadline = time.monotonic() + STOP_WAIT_S + 10
        while live and time.monotonic() < deadline:
            time.sleep(0.5)
            live = [j for j in live if not client.get_job_status(j).is_terminal()]
    except Exception as e:  # the head is already going: nothing more to stop through it
        print(f"[ray] could not stop the session's jobs cleanly ({e})", file=sys.stderr)


def session_address(run_dir: str | Path | None) -> str | None:
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
    token_file = data.get("token_file")
    if address and isinstance(token_file, str) and os.path.isfile(token_file):
        _TOKENS[address.rstrip("/")] = token_file  # readable only by the head's user: another user gets nothing
    return address if address and jobs_api_answers(address, timeout=2) else None
