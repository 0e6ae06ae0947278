"""A whole-node Slurm request (`backend.exclusive=true`, the default) asks for no CPU count (issue 19): with
--exclusive the job gets all of the node's CPUs whatever their number, so `hardware=v100x8` (cpus: 80) no
longer asks `--cpus-per-task=80`, which an 8-GPU node with fewer Slurm CPUs could never give; the one task's
srun step is given the node's CPUs through SLURM_CPUS_PER_TASK=$SLURM_CPUS_ON_NODE. A shared-node request
(`backend.exclusive=false`) still asks for the hardware group's count.

The first test reads the sbatch script submitit renders for the real v100x8 plan; the second submits to the CI
cluster (skipped without it) and reads the script submitit submitted, and what the job saw.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from launcher.backends import get_backend
from launcher.backends.slurm import SlurmBackend
from launcher.plan import plan
from tests.test_backends_slurm import cluster, make_spec, wait_final  # noqa: F401  (cluster: the fixture)


def sbatch_text(spec, tmp_path: Path, **config) -> str:
    from submitit.slurm.slurm import _make_sbatch_string

    return _make_sbatch_string(
        command="python -m launcher.node RUN", folder=tmp_path / "%j", **SlurmBackend(config).parameters(spec)
    )


def test_v100x8_whole_node_asks_no_cpu_count(compose, tmp_path):
    spec = plan(compose("impl=detectron2", "hardware=v100x8", "backend=slurm"), tmp_path / "run")
    assert spec.cpus == 80  # the hardware group still says what the seed's node had
    text = sbatch_text(spec, tmp_path, **spec.backend_config)
    assert "#SBATCH --exclusive" in text and "#SBATCH --mem=0" in text and "#SBATCH --gres=gpu:8" in text
    assert "cpus-per-task" not in text.split("# setup")[0]  # no #SBATCH --cpus-per-task line
    assert 'export SLURM_CPUS_PER_TASK="${SLURM_CPUS_ON_NODE:-1}"' in text
    assert text.index("SLURM_CPUS_PER_TASK") < text.index("srun ")  # set before the step starts
    spec.backend_config = {**spec.backend_config, "exclusive": False, "mem": "hardware"}
    shared = sbatch_text(spec, tmp_path)
    assert "#SBATCH --cpus-per-task=80" in shared and "--exclusive" not in shared
    assert "SLURM_CPUS_PER_TASK" not in shared


@pytest.mark.slurm
def test_a_whole_node_job_gets_the_nodes_cpus(cluster, tmp_path):  # noqa: F811
    probe = "python3 -c \"import os; print('cpus', os.environ.get('SLURM_CPUS_PER_TASK'), os.environ.get('SLURM_CPUS_ON_NODE'), len(os.sched_getaffinity(0)))\""
    spec = make_spec(tmp_path, "whole", probe, gpus=0, exclusive=True, mem="hardware")
    spec.cpus = 4096  # more CPUs than any node has: a whole-node request must not ask for them
    spec.save()
    b = get_backend("slurm", {})
    assert b.placement_problems(spec) == []
    (job_id,) = b.submit([spec])
    wait_final(b, [job_id], [spec], 90)
    submitted = list(Path(spec.run_dir).parent.rglob("*_submission.sh")) + list(
        Path(spec.run_dir).rglob("*_submission.sh")
    )
    assert submitted, "submitit's submission script not found"
    text = submitted[0].read_text()
    assert "#SBATCH --exclusive" in text and "--cpus-per-task" not in text.split("# setup")[0]
    m = re.search(r"^cpus (\S+) (\S+) (\d+)$", (Path(spec.run_dir) / "train.log").read_text(), re.MULTILINE)
    assert m, (Path(spec.run_dir) / "train.log").read_text()[-2000:]
    per_task, on_node, affinity = m.groups()
    assert per_task == on_node and int(on_node) >= 1 and int(affinity) >= 1
