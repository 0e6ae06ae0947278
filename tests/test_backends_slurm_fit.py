"""Allocations a real cluster can run (issue 12): a request no node of the partition can satisfy is refused
before submission, naming the resource and the largest node; a job pending for a reason that means it can
never start is said to be so by the live display and by gather; tensorpack's mpirun gets its 8 ranks inside
the one-task allocation every row has.

The CI cluster's one node advertises 96 CPUs, 1 TB and 8 GPUs (.ci/services/slurm.sh): the tests ask for
more than that rather than reconfigure the shared cluster.
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

from launcher.backends.slurm import SlurmBackend
from launcher.backends.slurm.accounting import explain_pending, pending_class
from launcher.backends.slurm.fit import Node, fit_problem, mem_mb, parse_gres
from launcher.follow import Row, describe
from tests.conftest import run_launcher
from tests.test_backends_slurm import cluster, make_spec, standin, wait_for  # noqa: F401  (the cluster fixture)

ROOT = Path(__file__).resolve().parent.parent
STANDIN = [
    "hydra.searchpath=[file://" + str(ROOT / "tests" / "conf") + "]",
    "impl=standin",
    "backend=slurm",
    "hardware=local",
    "hardware.gpus=1",
    "hardware.cpus=1",
    "hardware.mem_gb=1",
    "hardware.time_limit_min=5",
    "window.start=2",
    "window.end=10",
]


# --------------------------------------------------------------------------------------------------
# pure pieces
# --------------------------------------------------------------------------------------------------


def test_pending_reasons_that_mean_never_say_so():
    for reason in (
        "PartitionConfig",
        "PartitionTimeLimit",
        "PartitionNodeLimit",
        "MaxMemPerLimit",
        "DependencyNeverSatisfied",
        "QOSMaxGRESPerJob",
        "AssocMaxCpuPerJobLimit",
        "InvalidQOS",
    ):
        assert pending_class(reason) == "never", reason
        said = explain_pending("7", reason)
        assert said.startswith(f"will not start as submitted: {reason}") and "scancel 7" in said
    for reason in ("JobHeldUser", "PartitionDown", "ReqNodeNotAvail, UnavailableNodes:n[1-2]"):
        assert pending_class(reason) == "blocked" and explain_pending("7", reason).startswith("blocked until")
    for reason in ("Resources", "Priority", "BeginTime", "QOSGrpGRES", "AssocGrpCpuLimit", None):
        assert pending_class(reason) == "waiting" and explain_pending("7", reason) == reason


def test_fit_names_the_resource_and_the_largest_node():
    nodes = (
        Node("a1", 64, 512 * 1024, parse_gres("gpu:a100:4(S:0-1)"), {"a100"}),
        Node("v1", 80, 768 * 1024, parse_gres("gpu:v100:8,gpu:v100_mig:2"), {"volta32gb"}),
    )
    ok = {"cpus_per_task": 80, "ntasks_per_node": 1, "gres": "gpu:v100:8", "mem": "0", "constraint": "volta32gb"}
    assert fit_problem(ok, "gpu", nodes) is None
    too_many = fit_problem({**ok, "gres": "gpu:v100:9"}, "gpu", nodes)
    assert "asks for 9 GPUs of gres type v100" in too_many and "the largest node is v1 (80 CPUs, 768 GB" in too_many
    assert "asks for 96 CPUs" in fit_problem({**ok, "cpus_per_task": 96}, "gpu", nodes)
    assert "asks for 1000 GB of memory" in fit_problem({**ok, "mem": "1000G"}, "gpu", nodes)
    assert "set backend.gres_type=untyped" in fit_problem({**ok, "gres": "gpu:h100:8"}, "gpu", nodes)
    # each resource exists somewhere, but not together on one node
    both = fit_problem({**ok, "gres": "gpu:8", "constraint": "a100"}, "gpu", nodes)
    assert "asks for that combination of 80 CPUs, 0 GB of memory, 8 GPUs" in both, both
    assert mem_mb("480GB") == 480 * 1024 and mem_mb("0") is None and mem_mb("2T") == 2 * 1024**2


def test_dry_run_shows_the_whole_node_request(tmp_path):
    p = run_launcher(
        "impl=tensorpack",
        "hardware=v100x8",
        "backend=slurm",
        "dry_run=true",
        "backend.gres_type=typed",
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "gres=gpu:v100:8" in p.stdout and "mem=0" in p.stdout and "exclusive=True" in p.stdout
    assert "the row starts 8 ranks itself (mpirun)" in p.stdout


# --------------------------------------------------------------------------------------------------
# against the real cluster
# --------------------------------------------------------------------------------------------------


def _no_submission(cwd: Path) -> None:
    results = list((cwd / "outputs").rglob("result.json"))
    assert len(results) == 1 and not list((cwd / "outputs").rglob("manifest.jsonl")), "it was submitted"
    r = json.loads(results[0].read_text())
    assert r["status"] == "failed" and "prepare failed" in r["error"]


@pytest.mark.slurm
@pytest.mark.parametrize(
    "ask,named",
    [
        (["hardware.gpus=9"], "it asks for 9 GPUs; the largest node is vm (96 CPUs, 1024 GB, gpu:8)"),
        (["backend.mem=2000G"], "it asks for 2000 GB of memory; the largest node is vm (96 CPUs, 1024 GB, gpu:8)"),
        # a whole node (--exclusive, the default) asks no CPU count: only a shared request can ask too many
        (["backend.exclusive=false", "hardware.cpus=97"], "it asks for 97 CPUs; the largest node is vm"),
    ],
)
def test_a_request_no_node_can_satisfy_is_refused_before_submission(cluster, tmp_path, ask, named):
    p = run_launcher(*STANDIN, *ask, cwd=tmp_path, timeout=180)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    first = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]
    named = named.replace(" vm", f" {first}")  # the CI nodes are alike: the largest is the first listed
    assert "no node in Slurm partition 'ci' can run this row as asked" in p.stderr and named in p.stderr, p.stderr
    _no_submission(tmp_path)


@pytest.mark.slurm
def test_what_sinfo_cannot_see_is_asked_of_sbatch_test_only(cluster, tmp_path):
    more = len(subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()) + 1
    p = run_launcher(*STANDIN, f"+backend.additional_parameters.nodes={more}", cwd=tmp_path, timeout=180)
    assert p.returncode == 1 and "sbatch --test-only refuses the request" in p.stderr, p.stderr
    assert f"--nodes={more}" in p.stderr and "Requested node configuration is not available" in p.stderr
    _no_submission(tmp_path)


@pytest.mark.slurm
def test_a_job_that_can_never_start_is_reported_by_follow_and_gather(cluster, tmp_path):
    """A row that depends on a job that failed pends with DependencyNeverSatisfied: it will never start."""
    failed = (
        subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--job-name=launcher-test-fails",
                f"--output={tmp_path}/%j.out",
                "--wrap",
                "false",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .split(";")[0]
    )
    wait_for(
        lambda: (
            subprocess.run(["sacct", "-j", failed, "-X", "-n", "-o", "State"], capture_output=True, text=True)
            .stdout.strip()
            .startswith("FAILED")
        ),
        60,
        "the first job failing",
    )
    spec = make_spec(
        tmp_path, "orphan", standin(4, 0.2), sweep=False, additional_parameters={"dependency": f"afterok:{failed}"}
    )
    b = SlurmBackend(spec.backend_config)
    (job_id,) = b.submit([spec])
    try:
        st = wait_for(
            lambda: (s := b.state(job_id, spec.run_dir)).reason and "Never" in s.reason and s,
            60,
            "Slurm to say the dependency can never be satisfied",
        )
        assert st.state == "pending" and st.reason.startswith("will not start as submitted: DependencyNeverSatisfied")
        line = describe(Row(spec, job_id, st))
        assert "pending" in line and "will not start as submitted: DependencyNeverSatisfied" in line, line
        g = subprocess.run(
            [sys.executable, "-m", "launcher.gather", spec.run_dir, "--format", "json", "--no-record"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        (row,) = [r for r in json.loads(g.stdout)["runs"] if r.get("job_id") == job_id]
        assert row["status"] == "pending", row
        assert row["reason"].startswith("will not start as submitted: DependencyNeverSatisfied"), row
    finally:
        subprocess.run(["scancel", job_id], check=False)


@pytest.mark.slurm
@pytest.mark.skipif(
    shutil.which("mpirun") is None,
    reason="OpenMPI's mpirun is not installed here "
    "(Debian: openmpi-bin); the check that tensorpack's mpirun fits a one-task allocation needs it",
)
def test_tensorpack_mpirun_gets_its_ranks_in_a_one_task_allocation(cluster, tmp_path, compose):
    """The row's own mpirun prefix, planned for v100x8, run by the real Slurm in the one-task allocation the
    backend asks for: 8 ranks start (a plain `mpirun -np 8` there fails: 'not enough slots')."""
    from launcher.plan import plan

    spec = plan(compose("impl=tensorpack", "hardware=v100x8", "backend=slurm"), tmp_path / "run")
    prefix = spec.command.split(" ./train.py")[0]
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    rank = "echo rank=$OMPI_COMM_WORLD_RANK"
    params = {**SlurmBackend({"exclusive": False, "mem": "hardware"}).parameters(spec), "mem": "1G"}
    from launcher.backends.slurm.fit import sbatch_args

    def run(cmd: list[str]) -> str:
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.txt"
        jid = subprocess.run(
            ["sbatch", "--parsable", *sbatch_args(params), f"--output={out}", "--wrap", " ".join(cmd)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        wait_for(
            lambda: (
                subprocess.run(["sacct", "-j", jid, "-X", "-n", "-o", "State"], capture_output=True, text=True)
                .stdout.strip()
                .split(" ")[0]
                in ("COMPLETED", "FAILED")
            ),
            120,
            f"job {jid}",
        )
        time.sleep(1)
        return out.read_text()

    words = prefix.split()
    good = run([words[0], *root, *words[1:], "bash", "-c", f"'{rank}'"])
    assert sorted(line for line in good.splitlines() if line.startswith("rank=")) == [f"rank={i}" for i in range(8)], (
        good
    )
    plain = run(["mpirun", *root, "-np", "8", "bash", "-c", f"'{rank}'"])
    assert "not enough slots" in plain, plain
