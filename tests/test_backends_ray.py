"""The Ray backend against a real Ray head (the one `.ci/services/ray.sh start` runs: 8 GPUs declared).

Every row goes through the real node entry point (`python -m launcher.node RUN_DIR`) as a Ray job. The
scheduling rows run a *stand-in* command, `probe.py` (written below), that prints a real torchvision-
format log (`tvbench iter=N t=<stamp> images=2`), so the node parses it to a real result and the stamps
give each row's run interval to the microsecond. Nothing is mocked: if Ray scheduled differently, the
intervals would show it.

Skipped, with the reason, when no Ray Jobs API answers at $LAUNCHER_RAY_ADDRESS (default
http://127.0.0.1:8265).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from launcher import JOBS_DIR
from launcher.backends.ray import RayBackend, RayBackendError, jobs_api_answers, node_resources, session_head
from launcher.rundir import read_result
from launcher.spec import JobSpec

ADDRESS = os.environ.get("LAUNCHER_RAY_ADDRESS", "http://127.0.0.1:8265")
FINAL = ("ok", "failed", "timeout", "cancelled", "incomplete", "unknown")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

# A stand-in implementation for scheduling tests: prints our torchvision row's log format, one line per
# "iteration", with the wall-clock stamp taken after each one; writes its pid so a test can check it died.
PROBE = """\
import argparse, os, sys, time
p = argparse.ArgumentParser(description="stand-in row: prints a torchvision-format log, trains nothing")
p.add_argument("--iters", type=int, required=True)
p.add_argument("--dt", type=float, required=True)
p.add_argument("--pidfile")
a = p.parse_args()
if a.pidfile:
    open(a.pidfile, "w").write(str(os.getpid()))
print(f"probe start t={time.time():.6f}", flush=True)
for i in range(1, a.iters + 1):
    time.sleep(a.dt)
    print(f"tvbench iter={i} t={time.time():.6f} images=2 loss=1.0", flush=True)
"""

STAMP_RE = re.compile(r"t=(\d+\.\d+)")


@pytest.fixture(scope="module")
def backend():
    if not jobs_api_answers(ADDRESS):
        pytest.skip(
            f"no Ray Jobs API answers at {ADDRESS} (start one with .ci/services/ray.sh start, "
            "or set LAUNCHER_RAY_ADDRESS)"
        )
    b = RayBackend({"address": ADDRESS, "runtime_env": {}})
    yield b
    b.close()  # a head given by address is left running


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    (d / "probe.py").write_text(PROBE)
    return d


def probe_cmd(workdir: Path, iters: int, dt: float, pidfile: Path | None = None) -> str:
    cmd = f"{sys.executable} {workdir / 'probe.py'} --iters {iters} --dt {dt}"
    return cmd + (f" --pidfile {pidfile}" if pidfile else "")


def make_spec(
    workdir: Path,
    name: str,
    command: str,
    *,
    gpus: int = 0,
    cpus: int = 1,
    iters: int = 2,
    time_limit_min: int = 5,
    log_format: str = "torchvision",
    window=None,
    images_per_iter: int = 2,
    run_dir: Path | None = None,
) -> JobSpec:
    run_dir = run_dir or (workdir / f"{name}-{time.monotonic_ns()}")
    run_dir.mkdir(parents=True)
    spec = JobSpec(
        impl=name,
        label=f"{name} (stand-in)",
        title=name,
        framework="stand-in",
        command=command,
        images_per_iter=images_per_iter,
        window=list(window or [1, iters]),
        log_format=log_format,
        gpus=gpus,
        cpus=cpus,
        time_limit_min=time_limit_min,
        hardware="ci",
        backend="ray",
        backend_config={"name": "ray", "address": ADDRESS, "runtime_env": {}},
        scale="smoke",
        run_dir=str(run_dir),
    )
    spec.save()
    return spec


def wait_final(backend: RayBackend, ids, specs, timeout_s: float):
    """Poll until every job is final; return {job_id: JobState}. Fails (with the states) on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = {j: backend.state(j, s.run_dir) for j, s in zip(ids, specs)}
        if all(st.state in FINAL for st in states.values()):
            return states
        if time.monotonic() > deadline:
            pytest.fail(f"rows not final after {timeout_s}s: {states}")
        time.sleep(0.5)


def interval(spec: JobSpec) -> tuple[float, float]:
    """The row's run interval from its own log: first stamp (before iteration 1) to the last."""
    stamps = [float(m) for m in STAMP_RE.findall((Path(spec.run_dir) / "train.log").read_text())]
    assert len(stamps) >= 2, f"{spec.run_dir}/train.log has no stamps"
    return stamps[0], stamps[-1]


# ------------------------------------------------------------- submitted first: the time-limit row


@pytest.fixture(scope="module")
def overtime(backend, workdir):
    """A row that outlives its 1-minute limit, submitted before the other tests so its minute overlaps
    theirs; `test_time_limit_is_timeout` (last in the file) collects it."""
    spec = make_spec(workdir, "overtime", probe_cmd(workdir, iters=600, dt=1.0), iters=600, time_limit_min=1)
    (job_id,) = backend.submit([spec])
    return job_id, spec, time.monotonic()


@pytest.fixture(scope="module", autouse=True)
def _start_overtime_early(request):
    if "backend" in request.fixturenames and jobs_api_answers(ADDRESS):
        request.getfixturevalue("overtime")


# ------------------------------------------------------------- tests


def test_three_rows_run_in_parallel_and_reattach(backend, workdir):
    specs = [make_spec(workdir, f"par{i}", probe_cmd(workdir, iters=20, dt=0.5), cpus=2, iters=20) for i in range(3)]
    ids = backend.submit(specs)
    assert len(set(ids)) == 3
    states = wait_final(backend, ids, specs, 120)
    assert [st.state for st in states.values()] == ["ok"] * 3, states
    spans = [interval(s) for s in specs]
    assert max(a for a, _ in spans) < min(b for _, b in spans), f"run intervals do not overlap: {spans}"
    # re-attach as the gatherer does: a fresh backend from the spec's config, and the manifest
    again = RayBackend(JobSpec.load(specs[0].run_dir).backend_config)
    assert again.state(ids[0], specs[0].run_dir).state == "ok"
    manifest = (Path(specs[0].run_dir) / "manifest.jsonl").read_text()
    assert ids[0] in manifest and "ray" in manifest
    for s in specs:  # the node's own figure, from the stand-in's stamps
        r = read_result(s.run_dir)
        assert r.status == "ok" and r.throughput and abs(r.throughput - 2 / 0.5) / 4 < 0.2, r


def test_two_full_node_rows_run_one_after_the_other(backend, workdir):
    gpus = max((n.get("GPU", 0) for n in node_resources(ADDRESS)), default=0)
    if gpus != 8:
        pytest.skip(f"the head at {ADDRESS} declares {gpus} GPUs on its largest node; this test needs 8")
    # one more row than the cluster has 8-GPU nodes (CI's has two): two never overlap on one node
    nodes = sum(1 for n in node_resources(ADDRESS) if n.get("GPU", 0) >= 8)
    specs = [
        make_spec(workdir, f"gpu8-{i}", probe_cmd(workdir, iters=6, dt=0.5), gpus=8, iters=6) for i in range(nodes + 1)
    ]
    ids = backend.submit(specs)
    states = wait_final(backend, ids, specs, 120 * nodes)
    assert [st.state for st in states.values()] == ["ok"] * len(specs), states
    runs = sorted((read_result(s.run_dir).host, *interval(s)) for s in specs)
    for (h0, a0, a1), (h1, b0, b1) in zip(runs, runs[1:]):
        assert h0 != h1 or a1 < b0, f"two 8-GPU rows overlapped on 8-GPU node {h0}: {(a0, a1)} and {(b0, b1)}"


def test_failing_command_is_failed_with_reason(backend, workdir):
    spec = make_spec(workdir, "fails", "echo 'stand-in: about to fail' >&2; exit 3")
    (job_id,) = backend.submit([spec])
    st = wait_final(backend, [job_id], [spec], 90)[job_id]
    assert st.state == "failed", st
    assert st.reason, "a failed row must say why"
    assert read_result(spec.run_dir).returncode == 3
    assert "about to fail" in (Path(spec.run_dir) / "train.log").read_text()


def test_stopped_job_is_cancelled_and_its_command_ends(backend, workdir):
    pidfile = workdir / "stopme.pid"
    spec = make_spec(workdir, "stopme", probe_cmd(workdir, iters=300, dt=1.0, pidfile=pidfile), iters=300)
    (job_id,) = backend.submit([spec])
    deadline = time.monotonic() + 90
    while not pidfile.exists():  # the row's command itself runs
        assert time.monotonic() < deadline, backend.state(job_id, spec.run_dir)
        assert backend.state(job_id, spec.run_dir).state in ("pending", "running")
        time.sleep(0.3)
    assert backend.state(job_id, spec.run_dir).state == "running"
    backend.cancel(job_id)
    st = wait_final(backend, [job_id], [spec], 60)[job_id]
    assert st.state == "cancelled", st
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), f"the stopped row's command (pid {pid}) still runs"


def test_unknown_job_is_failed_not_pending(backend, workdir):
    spec = make_spec(workdir, "ghost", "true")
    st = backend.state("launcher-ghost-0000000000", spec.run_dir)
    assert st.state == "failed" and "no record" in st.reason, st


SEED_FORMATS = ("detectron2", "mmdetection", "maskrcnn_benchmark", "tensorpack", "simpledet", "detectron", "matterport")


def test_standin_seed_rows_in_one_submit(backend, workdir):
    """The seven seed rows as stand-ins (real-format logs, trains nothing) through Ray and the node's real
    parsers: each row's figure matches the stand-in's known truth."""
    if importlib.util.find_spec("launcher.jobs.standin.standin_impl") is None:
        pytest.skip(f"no stand-in implementation at {JOBS_DIR / 'standin'} yet")
    from launcher import parse
    from launcher.jobs.standin.formats import FORMATS

    specs = []
    for fmt in SEED_FORMATS:
        try:
            parse.get_parser(fmt)
        except parse.UnknownFormat:
            pytest.skip(f"no {fmt} parser yet")
        run_dir = workdir / f"standin-{fmt}"
        truth = run_dir / "truth.json"
        command = (
            f"{sys.executable} -m launcher.jobs.standin.standin_impl --format {fmt} --iters 520 "
            f"--images-per-iter 16 --window 100 500 --fast --truth {truth}"
        )
        log = FORMATS[fmt].log
        spec = make_spec(
            workdir, f"standin-{fmt}", command, window=[100, 500], images_per_iter=16, log_format=fmt, run_dir=run_dir
        )
        spec.log_path = None if log == "combined" else log
        spec.stop_when_covered = False
        spec.save()
        specs.append(spec)
    ids = backend.submit(specs)
    states = wait_final(backend, ids, specs, 150)
    assert {s.impl: st.state for s, st in zip(specs, states.values())} == {s.impl: "ok" for s in specs}, states
    for spec in specs:
        r = read_result(spec.run_dir)
        truth = json.loads((Path(spec.run_dir) / "truth.json").read_text())["throughput"]
        assert abs(r.throughput - truth) <= max(r.error_bound or 0, 0.01) * truth, (
            spec.impl,
            r.throughput,
            truth,
            r.method,
        )


@pytest.mark.workload
def test_torchvision_tiny_row(backend, workdir):
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        pytest.skip("torch/torchvision not installed (the workload extra)")
    train = JOBS_DIR / "torchvision" / "train.py"
    if not train.is_file():
        pytest.skip(f"{train} not present")
    command = (
        f"{sys.executable} {train} --iters 3 --images-per-gpu 1 --min-size 128 --max-size 160 "
        f"--coco-root {workdir / 'no-coco'} --data synthetic --seed 0"
    )
    spec = make_spec(workdir, "torchvision", command, cpus=2, iters=3, window=[1, 3], images_per_iter=1)
    (job_id,) = backend.submit([spec])
    st = wait_final(backend, [job_id], [spec], 240)[job_id]
    assert st.state == "ok", (st, (Path(spec.run_dir) / "train.log").read_text()[-2000:])
    r = read_result(spec.run_dir)
    assert r.throughput > 0 and r.window == [1, 3]


def test_embedded_head_for_the_session(workdir):
    """No address: one head for the process (the follower shares the submitter's), stopped by close();
    a row still running then is stopped through Ray first, so it ends `cancelled` and its command dies."""
    submitter = RayBackend({"address": None})
    quick = make_spec(workdir, "emb-quick", probe_cmd(workdir, iters=2, dt=0.2))
    pidfile = workdir / "emb-slow.pid"
    slow = make_spec(workdir, "emb-slow", probe_cmd(workdir, iters=300, dt=1.0, pidfile=pidfile), iters=300)
    for s in (quick, slow):
        s.backend_config = {"name": "ray", "address": None, "runtime_env": {}}
        s.save()
    try:
        ids = submitter.submit([quick, slow])
        head = session_head()
        assert head is not None and head.address != ADDRESS
        follower = RayBackend(quick.backend_config)  # as launcher.follow builds it
        assert wait_final(follower, ids[:1], [quick], 90)[ids[0]].state == "ok"
        assert session_head() is head, "the follower started a second head"
        deadline = time.monotonic() + 60
        while not pidfile.exists():
            assert time.monotonic() < deadline, follower.state(ids[1], slow.run_dir)
            time.sleep(0.3)
    finally:
        submitter.close()
    assert session_head() is None and not jobs_api_answers(head.address)
    assert head.proc is None
    st = RayBackend({"address": None}).state(ids[1], slow.run_dir)  # from files; starts no head
    assert st.state == "cancelled", st
    assert session_head() is None
    assert not _alive(int(pidfile.read_text()))


def test_wait_false_without_address_is_refused():
    with pytest.raises(RayBackendError, match="backend.address"):
        RayBackend({"address": None}, wait=False)


def test_time_limit_is_timeout(backend, overtime):
    job_id, spec, submitted = overtime
    st = wait_final(backend, [job_id], [spec], 150 - (time.monotonic() - submitted))
    assert st[job_id].state == "timeout", st
    assert st[job_id].reason


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(
    __import__("shutil").which("mpirun") is None,
    reason="OpenMPI's mpirun is not installed here "
    "(Debian: openmpi-bin); the check that tensorpack's mpirun fits a Ray job needs it",
)
def test_tensorpack_mpirun_gets_its_ranks_as_a_ray_job(backend, workdir, compose):
    """tensorpack's planned mpirun prefix (slots from -H, not from Slurm) inside a Ray job that reserves the
    row's 8 GPUs: 8 ranks start, as in a one-task Slurm allocation (tests/test_backends_slurm_fit.py)."""
    from launcher.plan import plan

    prefix = plan(compose("impl=tensorpack", "hardware=v100x8"), workdir / "tp-plan").command.split(" ./train.py")[0]
    if os.geteuid() == 0:
        prefix = prefix.replace("mpirun", "mpirun --allow-run-as-root", 1)
    cmd = f"{prefix} bash -c 'echo rank=$OMPI_COMM_WORLD_RANK' && {probe_cmd(workdir, iters=2, dt=0.1)}"
    spec = make_spec(workdir, "tp-mpirun", cmd, gpus=8)
    (job_id,) = backend.submit([spec])
    st = wait_final(backend, [job_id], [spec], 120)[job_id]
    log = (Path(spec.run_dir) / "train.log").read_text()
    assert st.state == "ok", (st, log[-2000:])
    assert sorted(line for line in log.splitlines() if line.startswith("rank=")) == [f"rank={i}" for i in range(8)]
