"""Every Ray head the launcher (or CI) starts listens on loopback only.

A Ray head runs arbitrary code for whoever reaches its ports (GCS, raylet, dashboard and its agents,
runtime-env agent, client server, metrics, the workers' gRPC servers), and the heads here run with
authentication off, so none of those ports may face the network.  Checked with `ss` over every process
of the head while a job runs on it (so the job supervisor's worker is up too), not from its flags.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.backends.ray import RayBackend, jobs_api_answers, session_head
from launcher.spec import JobSpec
from tests.conftest import ROOT

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

if shutil.which("ss") is None:  # pragma: no cover - iproute2 is on every CI machine
    pytest.skip("needs `ss` (iproute2) to list listening sockets", allow_module_level=True)


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").split("%", 1)[0]
    if host in ("*", ""):
        return False
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listening(pids: set[int]) -> list[tuple[str, str, str]]:
    """(protocol, local address:port, process) of every TCP/UDP socket the given processes listen on."""
    out = subprocess.run(["ss", "-H", "-l", "-t", "-u", "-n", "-p"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 7:
            continue
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.append((fields[0], fields[4], fields[6]))
    return found


def _ppids() -> dict[int, int]:
    table = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                table[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return table


def head_processes(leader: int, marker: str) -> set[int]:
    """The head's processes: its process group, every descendant of its leader, and any process whose
    command line names the head's own temporary directory (workers, agents)."""
    pids = {int(p) for p in subprocess.run(["pgrep", "-g", str(leader)], capture_output=True, text=True).stdout.split()}
    ppids = _ppids()
    frontier = {leader} | pids
    while frontier:
        children = {p for p, pp in ppids.items() if pp in frontier} - pids
        pids |= children
        frontier = children
    for p in ppids:
        try:
            if marker in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace"):
                pids.add(p)
        except OSError:
            continue
    return pids


def assert_loopback_only(leader: int, marker: str, at_least: int) -> list[tuple[str, str, str]]:
    socks = listening(head_processes(leader, marker))
    exposed = [s for s in socks if not _is_loopback(s[1].rsplit(":", 1)[0])]
    assert not exposed, "listening beyond loopback:\n" + "\n".join(" ".join(s) for s in exposed)
    assert len(socks) >= at_least, f"found only {len(socks)} listening sockets, the check saw too little: {socks}"
    return socks


PROBE = "import time, sys\nfor i in range(1, 400):\n    time.sleep(0.25)\n    print(f'tvbench iter={i} t={time.time():.6f} images=2 loss=1.0', flush=True)\n"


def probe_spec(tmp_path, window=(1, 399), text: str = PROBE) -> JobSpec:
    """A saved one-CPU Ray row whose command prints torchvision-format records (PROBE: every 0.25 s)."""
    probe = tmp_path / "probe.py"
    probe.write_text(text)
    run = tmp_path / "run"
    run.mkdir()
    spec = JobSpec(
        impl="probe",
        label="probe",
        title="probe",
        framework="stand-in",
        command=f"{sys.executable} {probe}",
        images_per_iter=2,
        window=list(window),
        log_format="torchvision",
        gpus=0,
        cpus=1,
        time_limit_min=5,
        hardware="ci",
        backend="ray",
        scale="smoke",
        backend_config={"name": "ray", "address": None, "runtime_env": {}},
        run_dir=str(run),
        stop_when_covered=False,
        min_gpus=0,
    )
    spec.save()
    return spec


def test_embedded_head_listens_on_loopback_only(tmp_path):
    spec = probe_spec(tmp_path)
    run = Path(spec.run_dir)
    backend = RayBackend({"address": None})
    try:
        (job_id,) = backend.submit([spec])
        head = session_head()
        assert head is not None and head.proc is not None
        deadline = time.monotonic() + 90
        log = run / "train.log"
        while not (log.exists() and "iter=2 " in log.read_text()):  # the job's supervisor and its worker are up
            assert time.monotonic() < deadline, backend.state(job_id, str(run))
            time.sleep(0.3)
        # GCS, raylet (2), dashboard, dashboard agent (http, grpc), runtime-env agent, client server, metrics
        socks = assert_loopback_only(head.proc.pid, head.tmpdir, at_least=8)
        names = " ".join(s[2] for s in socks)
        assert "gcs_server" in names and "raylet" in names, names
    finally:
        backend.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ci_head_listens_on_loopback_only(tmp_path):
    """.ci/services/ray.sh on its own state dir and ports (the shared CI head is left alone)."""
    script = ROOT / ".ci" / "services" / "ray.sh"
    state = Path("/tmp") / f"lx-ci-{os.getpid()}"  # short: Ray's unix sockets live under it
    env = dict(
        os.environ,
        LAUNCHER_CI_STATE=str(state),
        LAUNCHER_RAY_DASHBOARD_PORT=str(_free_port()),
        LAUNCHER_RAY_GCS_PORT=str(_free_port()),
        LAUNCHER_RAY_CLIENT_PORT=str(_free_port()),
        LAUNCHER_RAY_AGENT_PORT=str(_free_port()),
        LAUNCHER_RAY_CPUS="2",
        LAUNCHER_RAY_GPUS="0",
        LAUNCHER_RAY_NODES="1",  # the one-node head on loopback (the CI cluster's nodes are namespaces)
        PYTHON=sys.executable,
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    )
    try:
        p = subprocess.run(["bash", str(script), "start"], env=env, capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stderr[-3000:]
        address = p.stdout.strip().split("=", 1)[1]
        assert jobs_api_answers(address)
        leader = int((state / "ray" / "head.pid").read_text())
        time.sleep(3)  # the agents bind a moment after the Jobs API answers
        assert_loopback_only(leader, str(state), at_least=7)
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, text=True, timeout=60)
        shutil.rmtree(state, ignore_errors=True)


CONNECT = """
import sys
from launcher.backends.ray import RayBackend, RayBackendError
try:
    b = RayBackend({"address": sys.argv[1]})
    print("jobs", b.connect().list_jobs())
except RayBackendError as e:
    print("refused", e)
"""


def test_a_head_with_token_authentication_is_reached_with_the_token(tmp_path):
    """docs/cluster.md's advice holds: against a head started with RAY_AUTH_MODE=token the launcher's
    probe sees the Jobs API (401 is an answer) and its client gets in with RAY_AUTH_MODE=token and the
    token in its environment, and is refused, saying so, without them."""
    token = "launcher-test-" + os.urandom(12).hex()
    tmp = Path("/tmp") / f"lx-tok-{os.getpid()}"
    tmp.mkdir()
    port = _free_port()
    ports = [
        f"--port={_free_port()}",
        f"--dashboard-port={port}",
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
    ]
    env = dict(
        os.environ,
        RAY_TMPDIR=str(tmp),
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
    )
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            *ports,
            f"--temp-dir={tmp}",
            "--num-cpus=1",
            "--num-gpus=0",
            "--disable-usage-stats",
        ],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not jobs_api_answers(address):
            assert head.poll() is None and time.monotonic() < deadline, "the token head did not start"
            time.sleep(0.5)
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        client_env["PYTHONPATH"] = str(ROOT)

        def connect(**extra: str) -> str:
            return subprocess.run(
                [sys.executable, "-c", CONNECT, address],
                env=dict(client_env, **extra),
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout

        out = connect(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
        assert out.startswith("jobs []"), out
        out = connect()
        assert out.startswith("refused") and "RAY_AUTH_MODE=token" in out, out
    finally:
        os.killpg(head.pid, 15)
        time.sleep(2)
        try:
            os.killpg(head.pid, 9)
        except ProcessLookupError:
            pass
        head.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
