"""The Slurm backend against a real single-node Slurm (8 declared GPUs, real accounting).

Start the cluster first: `.ci/services/slurm.sh start` (it prints SLURM_CONF; these tests also find
the cluster it started from this checkout by themselves). Without it the cluster tests are skipped
with the reason; the pure mapping tests at the top run everywhere.

Rows here are stand-ins (named so): `STANDIN` prints the torchvision row's log format with real
wall-clock stamps of a sleep loop, so the whole path (submitit -> node entry point -> parser ->
result.json -> sacct) runs through the real scheduler without a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.backends import get_backend, job_state
from launcher.backends.base import JobState
from launcher.backends.slurm import SlurmBackend
from launcher.backends.slurm.accounting import _array_covers, _minutes, map_final
from launcher.backends.slurm.job import NodeCall, signal_delay_s
from launcher.rundir import read_manifest, read_result
from launcher.spec import JobSpec

ROOT = Path(__file__).resolve().parent.parent
FINAL = ("ok", "failed", "timeout", "cancelled", "incomplete", "unknown")

# a stand-in implementation: N iterations of SLEEP seconds, each logged in the torchvision row's format
STANDIN = (
    'python3 -u -c "import sys, time\n'
    "n, dt = int(sys.argv[1]), float(sys.argv[2])\n"
    "for i in range(1, n + 1):\n"
    "    time.sleep(dt)\n"
    "    print(f'tvbench iter={{i}} t={{time.time():.6f}} images=2 loss=1.0', flush=True)\n"
    '" {n} {dt}'
)


# Stand-in rows share the CI node (the array tests are about rows running side by side); a benchmark row
# takes the whole node (--exclusive, --mem=0: the backend's defaults, tested below).
SHARED = {"exclusive": False, "mem": "hardware"}


def standin(n: int = 8, dt: float = 0.5) -> str:
    return STANDIN.format(n=n, dt=dt)


def make_spec(
    base: Path,
    name: str,
    command: str,
    *,
    gpus: int = 1,
    time_limit_min: int = 5,
    sweep: bool = True,
    window=(2, 8),
    **backend_config,
) -> JobSpec:
    run_dir = base / f"{name}"
    run_dir.mkdir(parents=True)
    spec = JobSpec(
        impl=name,
        label=f"{name} (stand-in)",
        title=f"{name} (stand-in)",
        framework="stand-in",
        command=command,
        images_per_iter=2,
        window=list(window),
        log_format="torchvision",
        stop_when_covered=False,
        hardware="ci",
        gpus=gpus,
        cpus=1,
        time_limit_min=time_limit_min,
        backend="slurm",
        backend_config={**SHARED, **backend_config},
        run_dir=str(run_dir.resolve()),
        sweep_dir=str(base.resolve()) if sweep else None,
    )
    spec.save()
    return spec


# --------------------------------------------------------------------------------------------------
# pure pieces: no cluster needed
# --------------------------------------------------------------------------------------------------


def test_parameters_one_task_per_node_with_the_rows_resources(tmp_path):
    spec = make_spec(tmp_path, "r", "true", gpus=8, time_limit_min=90)
    spec.cpus, spec.mem_gb, spec.gpu_type, spec.backend_config = 80, 480, "v100", {}
    # a benchmark wants the whole node by default: --exclusive and all of its memory (--mem=0)
    p = SlurmBackend({}).parameters(spec)
    assert p["exclusive"] is True and p["mem"] == "0"
    b = SlurmBackend(
        {
            "partition": "gpu",
            "account": "bench",
            "qos": "high",
            "constraint": "volta32gb",
            "exclusive": True,
            "array_parallelism": 2,
            "additional_parameters": {"reservation": "r1"},
            "setup": ["module load cuda"],
            "mem": "hardware",
            "gres_type": "typed",
        }
    )
    p = b.parameters(spec)
    assert p["nodes"] == 1 and p["ntasks_per_node"] == 1  # the row's own launcher spawns its ranks
    assert p["gres"] == "gpu:v100:8" and "cpus_per_task" not in p and p["mem"] == "480GB" and p["time"] == 90
    untyped = SlurmBackend({"gres_type": "untyped", "mem": "400G", "exclusive": False}).parameters(spec)
    assert untyped["gres"] == "gpu:8" and untyped["mem"] == "400G" and "exclusive" not in untyped
    assert untyped["cpus_per_task"] == 80  # a shared node needs the count; a whole one does not
    assert (p["partition"], p["account"], p["qos"], p["constraint"]) == ("gpu", "bench", "high", "volta32gb")
    assert p["exclusive"] is True and p["array_parallelism"] == 2
    assert p["additional_parameters"] == {"reservation": "r1"}
    assert p["setup"][0].startswith("export PYTHONPATH=") and p["setup"][-1] == "module load cuda"
    spec.nodes = 2  # one allocation of two nodes, still one task per node (tests/test_multinode.py)
    assert b.parameters(spec)["nodes"] == 2 and b.parameters(spec)["ntasks_per_node"] == 1


def test_sbatch_script_asks_for_the_rows_resources(tmp_path):
    """What submitit would hand to sbatch, rendered without submitting."""
    from submitit.slurm.slurm import _make_sbatch_string

    spec = make_spec(tmp_path, "r", "true", gpus=4, time_limit_min=30)
    text = _make_sbatch_string(command="python -m x", folder=tmp_path / "%j", **SlurmBackend({}).parameters(spec))
    for line in (
        "#SBATCH --gres=gpu:4",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --nodes=1",
        "#SBATCH --time=30",
        "#SBATCH --cpus-per-task=1",
        f"#SBATCH --signal=USR2@{signal_delay_s(30)}",
    ):
        assert line in text


def test_sacct_states_map_to_ours_with_the_schedulers_reason():
    rec = lambda state, **kw: {
        "JobID": "7",
        "State": state,
        "Reason": "None",
        "ExitCode": "0:0",
        "Timelimit": "00:01:00",
        "NodeList": "n1",
        **kw,
    }
    assert map_final(rec("TIMEOUT"), "7") == JobState("timeout", "TIMEOUT (time limit 1 min)")
    assert map_final(rec("CANCELLED by 0"), "7") == JobState("cancelled", "CANCELLED by 0")
    assert map_final(rec("OUT_OF_MEMORY"), "7").state == "failed"
    assert "OUT_OF_MEMORY" in map_final(rec("OUT_OF_MEMORY"), "7").reason
    assert map_final(rec("NODE_FAIL"), "7") == JobState("failed", "NODE_FAIL: node n1 failed under the job")
    assert map_final(rec("PREEMPTED"), "7").state == "cancelled"
    assert "killed by signal 9" in map_final(rec("FAILED", ExitCode="0:9"), "7").reason
    assert "exit code 1:0" in map_final(rec("FAILED", ExitCode="1:0"), "7").reason
    assert map_final(rec("COMPLETED"), "7").state == "failed"  # completed without a result is not ok
    assert _minutes("1-02:00:00") == "26 h 0 min" and _minutes("00:30:00") == "30 min"


def test_pending_array_records_cover_their_tasks():
    assert _array_covers("12_[0-2%3]", "12_1") and _array_covers("12_[0,4-5]", "12_5")
    assert not _array_covers("12_[0-2]", "12_3") and not _array_covers("13_[0-2]", "12_1")


def test_node_call_pickles_without_its_child():
    import pickle

    call = NodeCall(5, 2)
    call._proc = subprocess.Popen(["true"])
    call._proc.wait()
    again = pickle.loads(pickle.dumps(call))
    assert again._proc is None and again.max_requeue == 2 and again.time_limit_min == 5


def test_get_backend_is_lazy_and_rejects_unknown_names():
    code = (
        "import sys; from launcher.backends import get_backend; get_backend('slurm'); "
        "assert 'ray' not in sys.modules, 'ray imported for slurm'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    with pytest.raises(ValueError, match="available: local, ray, slurm"):
        get_backend("pbs")


# --------------------------------------------------------------------------------------------------
# against the real cluster
# --------------------------------------------------------------------------------------------------


def _slurm_conf() -> str | None:
    if os.environ.get("SLURM_CONF"):
        return os.environ["SLURM_CONF"]
    state = Path(os.environ.get("LAUNCHER_CI_STATE", ROOT / ".ci" / "state")) / "slurm" / "etc" / "slurm.conf"
    return str(state) if state.exists() else None


@pytest.fixture(scope="module")
def cluster():
    """The CI cluster's environment (SLURM_CONF), or a skip saying how to start it."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip("Slurm client commands not installed: run `.ci/services/slurm.sh start` (as root)")
    conf = _slurm_conf()
    mp = pytest.MonkeyPatch()
    if conf:
        mp.setenv("SLURM_CONF", conf)
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%T %G"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        mp.undo()
        pytest.skip("Slurm controller does not answer (sinfo timed out): run `.ci/services/slurm.sh start`")
    if p.returncode != 0 or not any(s in p.stdout for s in ("idle", "mixed", "allocated")):
        mp.undo()
        pytest.skip(
            f"Slurm cluster is down ({(p.stderr or p.stdout).strip()[:200]}): run `.ci/services/slurm.sh start`"
        )
    if "gpu:8" not in p.stdout:
        mp.undo()
        pytest.skip(f"this Slurm node does not declare 8 GPUs ({p.stdout.strip()}); the CI cluster does")
    yield conf
    mp.undo()


def wait_final(backend, ids, specs, timeout_s: float, poll_s: float = 1.0) -> list[JobState]:
    deadline = time.time() + timeout_s
    while True:
        states = [backend.state(i, s.run_dir) for i, s in zip(ids, specs)]
        if all(st.state in FINAL for st in states):
            return states
        if time.time() > deadline:
            pytest.fail(f"jobs {ids} not finished after {timeout_s:.0f} s: {states}")
        time.sleep(poll_s)


def wait_for(pred, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.time() + timeout_s
    while not (value := pred()):
        if time.time() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(poll_s)
    return value


def stamps(spec: JobSpec) -> tuple[float, float]:
    """First and last wall-clock stamp the row's log printed: when it really ran."""
    ts = [
        float(line.split(" t=")[1].split()[0])
        for line in (Path(spec.run_dir) / "train.log").read_text().splitlines()
        if line.startswith("tvbench iter=")
    ]
    return ts[0], ts[-1]


def running(spec: JobSpec) -> bool:
    f = Path(spec.run_dir) / "status.json"
    return (
        f.exists()
        and json.loads(f.read_text()).get("state") == "running"
        and (Path(spec.run_dir) / "train.log").exists()
    )


@pytest.mark.slurm
def test_three_rows_run_side_by_side_as_one_array(cluster, tmp_path):
    specs = [make_spec(tmp_path, f"standin{k}", standin(8, 0.5), gpus=2) for k in range(3)]
    b = get_backend("slurm", {})
    ids = b.submit(specs)
    assert len({i.split("_")[0] for i in ids}) == 1 and all("_" in i for i in ids), f"not one array: {ids}"
    states = wait_final(b, ids, specs, 90)
    assert [s.state for s in states] == ["ok"] * 3, states
    spans = [stamps(s) for s in specs]
    overlap = min(end for _, end in spans) - max(start for start, _ in spans)
    assert overlap > 1.5, f"the rows did not run in parallel: {spans}"
    # each row got its own GPUs, and the manifests tie row <-> job id <-> run dir for the gatherer
    for spec, job_id in zip(specs, ids):
        r = read_result(spec.run_dir)
        assert r.job_id == job_id and r.throughput and r.throughput > 0
        assert job_state(read_manifest(spec.run_dir)[-1]).state == "ok"
    assert {e["job_id"] for e in read_manifest(tmp_path)} == set(ids)


@pytest.mark.slurm
def test_two_rows_needing_all_eight_gpus_run_one_after_the_other(cluster, tmp_path):
    """On each node: the CI cluster has several nodes, so one more 8-GPU row than nodes; two of them never
    overlap on one node (tests/test_multinode.py has the rows of a sweep running on both nodes at once)."""
    nodes = len(subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split())
    specs = [make_spec(tmp_path, f"full{k}", standin(6, 0.5), gpus=8, window=(2, 6)) for k in range(nodes + 1)]
    b = get_backend("slurm", {})
    ids = b.submit(specs)
    # while one runs, the other waits for resources, and says so
    seen = wait_for(
        lambda: [b.state(i, s.run_dir) for i, s in zip(ids, specs)] if any(running(s) for s in specs) else None,
        60,
        "an 8-GPU row starting",
    )
    waiting = [st for st in seen if st.state == "pending"]
    assert waiting and waiting[0].reason in ("Resources", "Priority"), seen
    states = wait_final(b, ids, specs, 90)
    assert [s.state for s in states] == ["ok"] * len(specs), states
    runs = sorted((read_result(s.run_dir).host, *stamps(s)) for s in specs)
    for (h0, a0, a1), (h1, b0, b1) in zip(runs, runs[1:]):
        assert h0 != h1 or b0 > a1, f"two 8-GPU rows overlapped on one 8-GPU node {h0}: {(a0, a1)} and {(b0, b1)}"


@pytest.mark.slurm
def test_failed_timed_out_cancelled_and_vanished_rows_each_say_why(cluster, tmp_path):
    b = get_backend("slurm", {})
    fail = make_spec(tmp_path, "fails", "echo the stand-in breaks; exit 3", sweep=False)
    late = make_spec(
        tmp_path, "overruns", "for i in $(seq 300); do echo tick $i; sleep 1; done", time_limit_min=1, sweep=False
    )
    # the job's main process killed: nothing is left to write result.json (an OOM kill, a dead node)
    gone = make_spec(tmp_path, "vanishes", "kill -9 $SLURM_TASK_PID; sleep 60", sweep=False)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    stuck = [make_spec(sweep, f"stuck{k}", "sleep 300") for k in range(2)]
    ids = {s.impl: b.submit([s])[0] for s in (fail, late, gone)}
    stuck_ids = b.submit(stuck)

    wait_for(lambda: all(running(s) for s in stuck), 60, "the rows to cancel starting")
    out = subprocess.run(
        [sys.executable, "-m", "launcher.cancel", str(sweep)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("cancelled ") == 2, out.stdout

    wait_final(b, stuck_ids, stuck, 60)
    for job_id, spec in zip(stuck_ids, stuck):
        # the node writes `cancelled` at once; the scheduler's words follow when accounting catches up (~5 s)
        st = wait_for(
            lambda: (
                (s := b.state(job_id, spec.run_dir)).reason.startswith("CANCELLED by")
                and "; the node reported: " in s.reason
                and s
            ),
            30,
            f"sacct to report job {job_id} cancelled and its node's result",
        )
        assert st.state == "cancelled" and "; the node reported: " in st.reason, st
    st = wait_final(b, [ids["fails"]], [fail], 60)[0]
    assert st.state == "failed" and "status 3" in st.reason and "the stand-in breaks" in st.reason, st
    st = wait_final(b, [ids["vanishes"]], [gone], 60)[0]
    assert not (Path(gone.run_dir) / "result.json").exists()
    assert st.state == "failed" and st.reason.startswith("FAILED") and "result.json" in st.reason, st
    st = wait_final(b, [ids["overruns"]], [late], 150)[0]
    # ended on the scheduler's warning (SIGUSR2) or by its SIGTERM at the limit: a timeout either way
    assert st.state == "timeout" and "time limit" in st.reason and "1 min" in st.reason, st
    assert read_result(late.run_dir).status == "timeout"
    # the second cancel finds nothing left to do and says so
    again = subprocess.run(
        [sys.executable, "-m", "launcher.cancel", str(sweep)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert again.stdout.count("already cancelled") == 2, again.stdout


@pytest.mark.slurm
def test_preemption_requeues_a_bounded_number_of_times(cluster, tmp_path):
    """submitit's preemption signal (SIGUSR2 well before the time limit) requeues, at most max_requeue times."""
    b = get_backend("slurm", {"max_requeue": 1})
    spec = make_spec(
        tmp_path, "preempted", "echo attempt $LAUNCHER_REQUEUES; sleep 300", time_limit_min=30, sweep=False
    )
    job_id = b.submit([spec])[0]
    log = Path(spec.run_dir) / "train.log"

    def attempt_running(n):
        return running(spec) and log.exists() and f"attempt {n}" in log.read_text()

    for n in range(2):
        wait_for(lambda: attempt_running(n), 60, f"attempt {n} running")
        time.sleep(1)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        if n == 0:
            wait_for(lambda: (Path(spec.run_dir) / "result.preempted-1.json").exists(), 30, "the requeue")
            assert b.state(job_id, spec.run_dir).state == "pending"
            # Slurm holds a requeued job for two minutes; release it now rather than wait. Not within the
            # second of the requeue: slurmd refuses a credential issued in the second its predecessor was
            # revoked in ("Killing non-startable batch JobId=N: Job credential revoked" in slurmctld.log)
            time.sleep(2)
            wait_for(
                lambda: (
                    subprocess.run(
                        ["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True
                    ).returncode
                    == 0
                ),
                20,
                "releasing the requeued job",
            )
    st = wait_final(b, [job_id], [spec], 60)[0]
    assert st.state == "cancelled" and "max_requeue=1" in st.reason, st
    assert read_result(Path(spec.run_dir) / "result.preempted-1.json").status == "cancelled"  # kept, not lost


@pytest.mark.slurm
@pytest.mark.workload
def test_torchvision_tiny_row_completes(cluster, tmp_path, compose):
    pytest.importorskip("torchvision")
    if not (ROOT / "jobs" / "torchvision" / "train.py").exists():
        pytest.skip("jobs/torchvision/train.py is not in this checkout yet")
    from launcher.plan import plan

    overrides = [
        "impl=torchvision",
        "hardware=local",
        "backend=slurm",
        "scale=smoke",
        "window.start=1",
        "window.end=3",
        "impl.options.min_size=128",
        "impl.options.max_size=160",
    ]
    spec = plan(compose(*overrides), tmp_path / "tv", overrides=overrides)
    spec.cpus = min(spec.cpus, 2)
    Path(spec.run_dir).mkdir(parents=True)
    spec.save()
    b = get_backend("slurm", spec.backend_config)
    job_id = b.submit([spec])[0]
    st = wait_final(b, [job_id], [spec], 240, poll_s=2)[0]
    assert st.state == "ok", f"{st}\n{(Path(spec.run_dir) / 'train.log').read_text()[-3000:]}"
    r = read_result(spec.run_dir)
    assert r.throughput > 0 and r.job_id == job_id and r.backend == "slurm"


@pytest.mark.slurm
def test_seed_rows_as_stand_ins_through_slurm_measure_the_simulated_truth(cluster, tmp_path, compose):
    """Three seed rows, planned from their real configs for v100x8 (8 GPUs, 80 CPUs, 480 GB per job),
    with the command swapped for the STAND-IN implementation writing that row's log format where the
    row reads it: the scheduler, the node entry point and the row's parser give back the throughput
    the stand-in simulated (its --truth file), within the parser's stated error bound."""
    from launcher.plan import plan

    sweep = tmp_path / "sweep"
    specs = []
    for k, impl in enumerate(("detectron2", "mmdetection", "simpledet")):
        overrides = [
            f"impl={impl}",
            "hardware=v100x8",
            "backend=slurm",
            "scale=full",
            "window.start=100",
            "window.end=500",
            "hardware.time_limit_min=5",
        ]
        spec = plan(compose(*overrides), sweep / f"{k}_{impl}", sweep_dir=sweep, overrides=overrides)
        spec.label += " (stand-in)"
        spec.repo = spec.commit = spec.checkout_dir = None
        spec.patches, spec.build, spec.setup, spec.paths = [], [], [], {}
        spec.environment, spec.workdir = {"kind": "host"}, "."
        spec.dataset, spec.weights = {}, []
        # the stand-in writes the row's log where the row's own output option points: its run dir
        spec.command = (
            f"{sys.executable} -m launcher.jobs.standin.standin_impl --format {spec.log_format} "
            f"--iters 520 --base 0.3 --noise 0.05 --seed {k} --window 100 500 --fast "
            f"--truth {Path(spec.run_dir) / 'standin-truth.json'} --log-path '{spec.log_path}'"
        )
        Path(spec.run_dir).mkdir(parents=True)
        spec.save()
        specs.append(spec)
    assert (specs[0].gpus, specs[0].cpus, specs[0].mem_gb) == (8, 80, 480)
    b = get_backend("slurm", specs[0].backend_config)
    ids = b.submit(specs)
    states = wait_final(b, ids, specs, 120)
    for spec, st in zip(specs, states):
        log = (Path(spec.run_dir) / "train.log").read_text()
        assert st.state == "ok", f"{spec.impl}: {st}\n{log[-2000:]}"
        r = read_result(spec.run_dir)
        # the truth over the window the parser used (an epoch- or period-based log may shift it)
        timed = json.loads((Path(spec.run_dir) / "standin-truth.json").read_text())["timed"]
        s, e = r.window
        truth = spec.images_per_iter * (e - s) / sum(timed[s:e])
        assert abs(r.throughput - truth) / truth <= max(r.error_bound, 1e-9) + 1e-6, (spec.impl, r.throughput, truth)
