"""Hardware and allocations at plan time (issue 12): the 2020 CUDA 10 stack on A100/H100, and each row's
ranks against the one-task allocation every backend gives it."""

from __future__ import annotations

import pytest

from launcher.fit import arch_problems, max_compute_capability, process_problems
from launcher.plan import plan, runnable_problems
from tests.conftest import run_launcher

SEED_ROWS = ["detectron2", "mmdetection", "maskrcnn_benchmark", "tensorpack", "simpledet", "detectron", "matterport"]


@pytest.mark.parametrize("row", SEED_ROWS)
@pytest.mark.parametrize("hw,cc", [("a100x8", "8.0"), ("h100x8", "9.0")])
def test_the_seed_stack_cannot_target_ampere_or_hopper(compose, tmp_path, row, hw, cc):
    spec = plan(compose(f"impl={row}", f"hardware={hw}"), tmp_path)
    (problem,) = arch_problems(spec)
    assert f"hardware={hw} has compute capability {cc}" in problem and "stop at sm_75" in problem
    assert "Use stack=today" in problem and f"CUDA >= {'11.0' if cc == '8.0' else '11.8'}" in problem
    assert problem in runnable_problems(spec)


@pytest.mark.parametrize("row", SEED_ROWS + ["torchvision"])
def test_every_row_fits_the_seeds_node(compose, tmp_path, row):
    spec = plan(compose(f"impl={row}", "hardware=v100x8"), tmp_path)
    assert runnable_problems(spec) == []


def test_todays_software_targets_todays_gpus(compose, tmp_path):
    spec = plan(compose("impl=detectron2", "hardware=h100x8", "impl.environment.software.cuda=12.4"), tmp_path)
    assert arch_problems(spec) == []
    assert max_compute_capability("10.2") == (7, 5) and max_compute_capability("11.8") == (9, 0)
    assert (
        plan(compose("impl=torchvision", "hardware=a100x8"), tmp_path)
        and arch_problems(plan(compose("impl=torchvision", "hardware=a100x8"), tmp_path)) == []
    )


def test_a_plan_refuses_and_a_dry_run_warns(tmp_path):
    p = run_launcher("impl=mmdetection", "hardware=a100x8", cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "compute capability 8.0" in p.stderr and "stack=today" in p.stderr
    p = run_launcher("impl=mmdetection", "hardware=h100x8", "dry_run=true", cwd=tmp_path, timeout=120)
    assert p.returncode == 0 and "warning: hardware=h100x8 has compute capability 9.0" in p.stdout


def test_ranks_against_the_allocation(compose, tmp_path):
    tp = plan(compose("impl=tensorpack", "hardware=v100x8"), tmp_path)
    tp.command = tp.command.replace("--mca ras ^slurm -H localhost:8 ", "")
    (slots,) = process_problems(tp)
    assert "mpirun -np 8" in slots and "has 1 slot under Slurm" in slots and "--mca ras ^slurm -H localhost:8" in slots
    tp.command = tp.command.replace("mpirun ", "mpirun --oversubscribe ")
    assert process_problems(tp) == []
    over = plan(compose("impl=maskrcnn_benchmark", "hardware=v100x8", "impl.processes.ranks=16"), tmp_path)
    assert any(
        "starts 8 ranks with torch.distributed.launch, impl.processes.ranks says 16" in p
        for p in process_problems(over)
    )
    assert any("starts 16 ranks (one per GPU) and hardware v100x8 gives 8 GPUs" in p for p in process_problems(over))
    few = plan(compose("impl=simpledet", "hardware=v100x8", "hardware.gpus=4"), tmp_path)
    assert any("drives 8 GPUs (fixed in its config)" in p for p in process_problems(few))
    assert process_problems(plan(compose("impl=detectron", "hardware=v100x8", "hardware.gpus=4"), tmp_path)) == []
    assert plan(compose("impl=detectron", "hardware=v100x8", "hardware.gpus=4"), tmp_path).images_per_iter == 8


@pytest.mark.parametrize("row", ["detectron2", "mmdetection"])
@pytest.mark.parametrize("hw", ["a100x8", "h100x8"])
def test_stack_today_is_what_the_refusal_points_at(compose, tmp_path, row, hw):
    """The rows that run on today's stack replace the seed's whole environment (the conda env, its CUDA 10
    software and create lines) with their managed venv: no CUDA 10 refusal on A100/H100, a software check of
    today's stack, nothing asked of envs_dir; the full-scale command still loads its pretrained file."""
    spec = plan(compose(f"impl={row}", f"hardware={hw}", "stack=today"), tmp_path)
    assert runnable_problems(spec) == []
    env = spec.environment
    assert env["kind"] == "venv" and env["managed"] and not env.get("path") and not env.get("create")
    assert (
        env["software"]["python"] == ">=3.10" and env["software"]["torch"] == ">=2.1" and "cuda" not in env["software"]
    )
    assert spec.scale == "full" and [w["dest"] for w in spec.weights] and spec.weights[0]["path"] in spec.command


@pytest.mark.parametrize("row", ["detectron2", "mmdetection"])
def test_a_cpu_smoke_run_of_todays_stack_asks_for_no_pretrained_file(compose, tmp_path, row):
    """Their CPU smoke scale loads no pretrained file (detectron2: MODEL.WEIGHTS '' after the seed's;
    mmdetection: its smoke config), so the check before submission must not ask for one."""
    from launcher import weights

    spec = plan(compose(f"impl={row}", "hardware.gpus=0", "stack=today", f"weights_dir={tmp_path / 'none'}"), tmp_path)
    assert spec.scale == "smoke" and spec.weights == [] and weights.problems(spec) == []
    assert runnable_problems(spec) == []
