"""Rows across a cluster, against the real multi-node Slurm and Ray that .ci/run starts (two nodes each, every
node a network namespace with its own hostname and address: .ci/services/netns.sh).

* a 2-node torchvision row (1 rank per node, CPU, gloo) trains to `ok` through each backend, with both hosts and
  world size 2 in its result, and provenance from each node;
* a sweep of whole-node rows runs on both nodes at once, and rows that each need a node's 8 GPUs never share one;
* a node that dies during a 2-node row (everything in its namespace SIGKILLed: slurmd or the Ray worker, the job
  step, the row's processes) ends that row `failed`, naming the lost node, within a bounded time, while the
  rest of the sweep carries on.

Scheduling tests use stand-in rows (named so: a sleep loop printing the torchvision log format); the 2-node
rows that must train run the real torchvision row at a tiny CPU scale (3 iterations). The pure plan-time checks
at the top run everywhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.backends import get_backend
from launcher.rundir import read_result
from launcher.spec import JobSpec
from tests.conftest import ROOT, run_launcher

RAY_ADDRESS = os.environ.get("LAUNCHER_RAY_ADDRESS", "http://127.0.0.1:8265")
FINAL = ("ok", "failed", "timeout", "cancelled", "incomplete")
# a stand-in: N iterations of DT seconds in the torchvision log format, on every node of the row
STANDIN = (
    'echo "node $LAUNCHER_NODE_RANK of $LAUNCHER_NNODES on $(hostname), master '
    '$LAUNCHER_MASTER_ADDR:$LAUNCHER_MASTER_PORT"; python3 -u -c "import sys, time\n'
    "n, dt = int(sys.argv[1]), float(sys.argv[2])\n"
    "for i in range(1, n + 1):\n"
    "    time.sleep(dt)\n"
    "    print(f'tvbench iter={{i}} t={{time.time():.6f}} images=2 loss=1.0', flush=True)\n"
    '" {n} {dt}'
)
TINY = ["impl=torchvision", "hardware.nodes=2", "window.start=1", "window.end=3", "hardware.time_limit_min=10"]


# ------------------------------------------------------------------------------------------------ plan time


def plan_row(compose, tmp_path, *overrides):
    from launcher.plan import plan, runnable_problems

    spec = plan(compose(*overrides), tmp_path)
    return spec, runnable_problems(spec)


def test_each_row_spans_nodes_its_own_way_or_refuses_saying_why(compose, tmp_path):
    spans = {
        "torchvision": "torchrun --nnodes=2",
        "detectron2": "--num-machines 2 --machine-rank",
        "maskrcnn_benchmark": "torch.distributed.launch --nproc_per_node=8 --nnodes=2",
        "mmdetection": "torch.distributed.launch --nproc_per_node=8 --nnodes=2",
        "tensorpack": '-H "$LAUNCHER_MPI_HOSTS" -np 16',
    }
    for impl, text in spans.items():
        spec, problems = plan_row(compose, tmp_path / impl, f"impl={impl}", "hardware=v100x8", "hardware.nodes=2")
        assert text in spec.command and problems == [], (impl, spec.command, problems)
        assert '"$LAUNCHER_NODE_RANK"' in spec.command or "$LAUNCHER_MPI_HOSTS" in spec.command
        one, _ = plan_row(compose, tmp_path / f"{impl}1", f"impl={impl}", "hardware=v100x8")
        assert "LAUNCHER_" not in one.command  # one node: the seed's command, untouched
    for impl, why in {"simpledet": "MXNet", "detectron": "Caffe2", "matterport": "Keras"}.items():
        _, problems = plan_row(compose, tmp_path / impl, f"impl={impl}", "hardware=v100x8", "hardware.nodes=2")
        assert len(problems) == 1 and "cannot span hardware.nodes=2" in problems[0] and why in problems[0], problems


def test_the_figure_counts_the_global_batch(compose, tmp_path):
    spec, _ = plan_row(compose, tmp_path / "a", "impl=torchvision", "hardware=v100x8", "hardware.nodes=2")
    assert spec.images_per_iter == 2 * 8 * 2 and spec.nodes == 2
    spec, _ = plan_row(compose, tmp_path / "b", "impl=mmdetection", "hardware=v100x8", "hardware.nodes=4")
    assert spec.images_per_iter == 2 * 8 * 4
    spec, _ = plan_row(compose, tmp_path / "c", "impl=detectron2", "hardware=v100x8", "hardware.nodes=2")
    assert spec.images_per_iter == 16  # SOLVER.IMS_PER_BATCH is global already


def test_a_row_that_cannot_span_nodes_is_refused_before_anything_runs(tmp_path):
    p = run_launcher("impl=simpledet", "hardware=v100x8", "hardware.nodes=2", cwd=tmp_path)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "simpledet cannot span hardware.nodes=2 nodes" in p.stderr + p.stdout
    assert not list(tmp_path.rglob("result.json"))  # refused before anything ran (nothing was submitted)
    dry = run_launcher("impl=simpledet", "hardware=v100x8", "hardware.nodes=2", "dry_run=true", cwd=tmp_path)
    assert "simpledet cannot span hardware.nodes=2 nodes" in dry.stdout + dry.stderr  # the dry run shows it too


def test_the_dry_run_shows_the_allocation_over_nodes(tmp_path):
    p = run_launcher(*TINY, "backend=slurm", "dry_run=true", cwd=tmp_path)
    out = p.stdout + p.stderr
    assert "nodes=2" in out and "ntasks_per_node=1" in out and "one task on each of 2 nodes" in out, out[-3000:]


# ------------------------------------------------------------------------------------------------ clusters


def _slurm_nodes() -> list[str]:
    try:
        p = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T %G"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [ln.split()[0] for ln in p.stdout.splitlines() if "gpu:8" in ln and re.search(r"idle|mixed|alloc", ln)]


def _ray_nodes() -> int:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{RAY_ADDRESS}/api/v0/nodes?limit=100", timeout=5) as r:
            return sum(1 for n in json.load(r)["data"]["result"]["result"] if n.get("state") == "ALIVE")
    except (OSError, ValueError, KeyError):
        return 0


SLURM2 = pytest.mark.skipif(
    len(_slurm_nodes()) < 2,
    reason="no Slurm cluster of two 8-GPU nodes answers: run `bash .ci/services/slurm.sh start` (as .ci/run does)",
)
RAY2 = pytest.mark.skipif(
    _ray_nodes() < 2,
    reason=f"no Ray cluster of two nodes at {RAY_ADDRESS}: run `bash .ci/services/ray.sh start` (as .ci/run does)",
)
BACKENDS = [
    pytest.param("slurm", marks=[pytest.mark.slurm, SLURM2]),
    pytest.param("ray", marks=[pytest.mark.ray, RAY2]),
]


def backend_args(backend: str) -> list[str]:
    return [f"backend={backend}", "backend.poll_s=1"] + ([f"backend.address={RAY_ADDRESS}"] if backend == "ray" else [])


def only_run_dir(base: Path) -> Path:
    found = [p.parent for p in base.rglob("result.json") if p.parent.name != "nodes"]
    assert len(found) == 1, found
    return found[0]


def check_two_node_run(run: Path) -> None:
    r = read_result(run)
    assert r.status == "ok" and r.throughput and r.throughput > 0
    assert r.nodes == 2 and r.ranks == 2 and r.images_per_iter == 2
    assert len(r.hosts) == 2 and len(set(r.hosts)) == 2 and None not in r.hosts, r.hosts
    assert r.host == r.hosts[0]
    assert "world_size=2" in (run / "train.log").read_text()  # torch's own count of the ranks that met
    peer = json.loads((run / "nodes" / "rank1.json").read_text())
    assert peer["returncode"] == 0 and peer["host"] == r.hosts[1]
    # provenance on every node: the leader's beside the result, each other node's under nodes/
    assert json.loads((run / "provenance.json").read_text())
    assert json.loads((run / "nodes" / "provenance.rank1.json").read_text())


@pytest.mark.workload
@pytest.mark.ray
@RAY2
def test_a_two_node_torchvision_row_trains_on_two_ray_nodes(tmp_path):
    """The real torchvision row, one rank per node on CPU with gloo, over both nodes of the Ray cluster."""
    p = run_launcher(*TINY, *backend_args("ray"), cwd=tmp_path, timeout=600)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    check_two_node_run(only_run_dir(tmp_path))


@pytest.mark.workload
@pytest.mark.slurm
@SLURM2
def test_a_scaling_sweep_over_nodes_gathers_into_a_scaling_table(tmp_path):
    """`-m hardware.nodes=1,2` on Slurm: the real torchvision row on one node and on two (one rank per node,
    gloo), both ok; the 2-node run has both hosts and world size 2; the sweep ends with the seed's table and
    the scaling table below it, and `gather --view scaling` shows it again with its plot."""
    p = run_launcher(
        "-m",
        *[a for a in TINY if not a.startswith("hardware.nodes")],
        "hardware.nodes=1,2",
        *backend_args("slurm"),
        cwd=tmp_path,
        timeout=600,
    )
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    runs = sorted(p.parent for p in tmp_path.rglob("result.json") if p.parent.name != "nodes")
    assert [read_result(r).nodes for r in runs] == [1, 2], runs
    check_two_node_run(runs[1])
    assert "Scaling (python -m launcher.gather DIR --view scaling)" in p.stdout, p.stdout[-3000:]
    sweep = runs[0].parent
    assert (sweep / "scaling.png").is_file() and (sweep / "scaling.csv").is_file()
    rows = (sweep / "scaling.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].split(",")[3:5] == ["1", "1"] and rows[2].split(",")[3:5] == ["2", "2"]
    assert rows[2].split(",")[11] == "1 rank on 1 node", rows  # one curve: the 2-node run against the 1-node one
    g = subprocess.run(
        [sys.executable, "-m", "launcher.gather", str(sweep), "--view", "scaling", "--no-record"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert g.returncode == 0 and "img/s per rank" in g.stdout, g.stderr


# --------------------------------------------------------------------------------- stand-in rows, submitted


def make_spec(
    base: Path, name: str, command: str, *, backend: str, nodes: int = 1, gpus: int = 8, n: int = 6, **backend_config
) -> JobSpec:
    run_dir = base / name
    run_dir.mkdir(parents=True)
    spec = JobSpec(
        impl=name,
        label=f"{name} (stand-in)",
        title=f"{name} (stand-in)",
        framework="stand-in",
        command=command,
        images_per_iter=2,
        window=[2, n],
        log_format="torchvision",
        stop_when_covered=False,
        hardware="ci",
        gpus=gpus,
        cpus=1,
        nodes=nodes,
        time_limit_min=5,
        processes={"spawner": "single", "ranks": 1, "span": "torchrun" if nodes > 1 else None},
        backend=backend,
        backend_config={"mem": "hardware", **backend_config},
        run_dir=str(run_dir.resolve()),
        sweep_dir=str(base.resolve()),
    )
    spec.save()
    return spec


def backend_for(backend: str):
    return get_backend(backend, {"address": RAY_ADDRESS} if backend == "ray" else {})


def states_of(b, ids, specs):
    return [b.state(i, s.run_dir) for i, s in zip(ids, specs)]


def wait_final(b, ids, specs, timeout_s: float):
    deadline = time.time() + timeout_s
    while True:
        states = states_of(b, ids, specs)
        if all(st.state in FINAL for st in states):
            return states
        if time.time() > deadline:
            pytest.fail(f"not finished after {timeout_s:.0f} s: {states}")
        time.sleep(1)


def stamps(spec: JobSpec) -> tuple[float, float]:
    ts = [
        float(ln.split(" t=")[1].split()[0])
        for ln in (Path(spec.run_dir) / "train.log").read_text().splitlines()
        if ln.startswith("tvbench iter=")
    ]
    return ts[0], ts[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_whole_node_rows_run_on_both_nodes_at_once_and_never_share_one(backend, tmp_path):
    """Three rows that each need a node's 8 GPUs (Slurm: --exclusive, the default) on a two-node cluster: two
    run at the same time on different nodes, the third waits, and no two overlap on one node."""
    specs = [make_spec(tmp_path, f"whole{k}", STANDIN.format(n=6, dt=1.0), backend=backend) for k in range(3)]
    b = backend_for(backend)
    ids = b.submit(specs)
    states = wait_final(b, ids, specs, 240)
    assert [s.state for s in states] == ["ok"] * 3, states
    runs = [(read_result(s.run_dir).host, *stamps(s)) for s in specs]
    pairs = [(a, c) for i, a in enumerate(runs) for c in runs[i + 1 :]]
    overlapping = [(a, c) for a, c in pairs if min(a[2], c[2]) - max(a[1], c[1]) > 1.0]
    assert overlapping, f"no two whole-node rows ran at the same time: {runs}"
    assert all(a[0] != c[0] for a, c in overlapping), f"two 8-GPU rows overlapped on one node: {runs}"
    assert len({h for h, _, _ in runs}) == 2, runs


def _kill_node(backend: str, node: str) -> None:
    script = ROOT / ".ci" / "services" / f"{backend}.sh"
    subprocess.run(["bash", str(script), "kill-node", node], check=True, capture_output=True, timeout=60)


def _restart(backend: str) -> None:
    script = ROOT / ".ci" / "services" / f"{backend}.sh"
    p = subprocess.run(
        ["bash", str(script), "start"],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
        },
    )
    assert p.returncode == 0, p.stderr[-2000:]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_node_that_dies_fails_its_row_in_bounded_time_and_the_sweep_goes_on(backend, tmp_path):
    """A 2-node stand-in row; once it runs, its second node dies (every process in the node's namespace
    SIGKILLed). The row ends `failed`, naming the lost node, within 120 s; a one-node row of the same sweep
    still runs to `ok`. The node is brought back afterwards."""
    if os.geteuid() != 0:
        pytest.skip("killing a CI node needs root (it signals the processes of a network namespace)")
    extra = {"exclusive": True} if backend == "slurm" else {}
    spanning = make_spec(tmp_path, "spanning", STANDIN.format(n=200, dt=1.0), backend=backend, nodes=2, n=200, **extra)
    other = make_spec(tmp_path, "other", STANDIN.format(n=4, dt=0.5), backend=backend, n=4, **extra)
    b = backend_for(backend)
    ids = b.submit([spanning, other])
    nodes = Path(spanning.run_dir) / "nodes"
    deadline = time.time() + 180
    while not (
        (nodes / "rank1.alive").is_file()
        and (nodes / "rank0.alive").is_file()
        and (Path(spanning.run_dir) / "train.log").is_file()
        and "iter=2 " in (Path(spanning.run_dir) / "train.log").read_text()
    ):
        assert time.time() < deadline, f"the 2-node row did not start: {states_of(b, ids, [spanning, other])}"
        time.sleep(1)
    hosts = {r: json.loads((nodes / f"rank{r}.alive").read_text())["host"] for r in (0, 1)}
    # Slurm: any node may die; Ray: a worker (the head holds the cluster), whichever rank it runs
    rank = 1 if backend == "slurm" or hosts[1] != "lxci-r1" else 0
    victim = hosts[rank]
    try:
        _kill_node(backend, victim)
        killed = time.time()
        while b.state(ids[0], spanning.run_dir).state not in FINAL:
            assert time.time() - killed < 120, (
                f"the row still reads {b.state(ids[0], spanning.run_dir)} "
                f"{time.time() - killed:.0f} s after node {victim} died"
            )
            time.sleep(1)
        st = b.state(ids[0], spanning.run_dir)
        assert st.state == "failed" and f"node rank {rank}" in st.reason and victim in st.reason, st
        assert read_result(spanning.run_dir).status == "failed"
        rest = wait_final(b, ids[1:], [other], 240)
        assert rest[0].state == "ok", rest
    finally:
        _restart(backend)
