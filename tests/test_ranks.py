"""`hardware.ranks_per_node` (issue 18): how many processes each row's own launcher starts (mp.spawn,
torch.distributed.launch, torchrun): one per GPU by default, 1 without GPUs; 2 on a CPU runs the multi-rank path
(gloo, DDP, the rows' own gather / reduce code) that 8 GPUs take, less NCCL.  Images per iteration stay the
global batch, and result.json records the world size (`ranks`).

The plan-level checks run everywhere; the torchvision row trains with 2 ranks for real (`workload`); the seed
rows' 2-rank runs build and train their real code (`heavy`: python -m pytest -m heavy tests/test_ranks.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher import parse
from launcher.plan import ConfigError, plan, runnable_problems
from launcher.prepare.recipe import recipe_hash
from launcher.rundir import Result, read_result
from tests.conftest import mirror, run_launcher
from tests.coco_helpers import synth_coco


def test_ranks_default_to_the_gpu_count_and_to_one_without_gpus(compose, tmp_path):
    v100 = plan(compose("impl=detectron2", "hardware=v100x8"), tmp_path)
    assert v100.processes["ranks"] == 8 and "--num-gpus 8 " in v100.command  # the seed's command, unchanged
    cpu = plan(compose("impl=torchvision", "hardware.gpus=0"), tmp_path)
    assert cpu.processes["ranks"] == 1 and cpu.command.startswith("python ")
    assert Result.for_spec(v100, "failed").ranks == 8 and Result.for_spec(cpu, "failed").ranks == 1


@pytest.mark.parametrize(
    "row, launched, images",
    [
        ("detectron2", "--num-gpus 2 ", 2),  # SOLVER.IMS_PER_BATCH is global: 1 image per rank
        ("mmdetection", "dist_train.sh configs/launcher/mask_rcnn_r50_caffe_fpn_1x_coco_smoke.py 2 ", 4),  # 2 per rank
        ("maskrcnn_benchmark", "torch.distributed.launch --nproc_per_node=2 tools/train_net.py", 2),  # global
        ("torchvision", "torchrun --standalone --nproc_per_node=2 ", 2),  # 1 per rank at smoke scale
        ("tensorpack", "horovodrun --gloo -np 2 python train.py ", 2),  # TRAINER=horovod, 1 image per rank
    ],
)
def test_two_ranks_on_a_cpu_start_the_rows_own_launcher_with_two_processes(compose, tmp_path, row, launched, images):
    spec = plan(compose(f"impl={row}", "stack=today", "hardware.gpus=0", "hardware.ranks_per_node=2"), tmp_path)
    assert spec.scale == "smoke" and launched in spec.command, spec.command
    assert spec.processes["ranks"] == 2 and spec.images_per_iter == images
    assert runnable_problems(spec) == []
    assert Result.for_spec(spec, "failed").ranks == 2


def test_tensorpack_takes_horovodrun_and_a_horovod_build_only_with_several_ranks(compose, tmp_path):
    """tensorpack on stack=today (issue 19): one rank is the replicated trainer in one process, as before; N > 1
    ranks are its horovod trainer started by `horovodrun --gloo`, with horovod built into the row's venv (its own
    recipe) and the node checking what horovod was built with; over nodes, one horovodrun with every host."""
    one = plan(compose("impl=tensorpack", "stack=today", "hardware.gpus=0"), tmp_path / "one")
    two = plan(compose("impl=tensorpack", "stack=today", "hardware.gpus=0", "hardware.ranks_per_node=2"), tmp_path)
    assert "TRAINER=replicated" in one.command and "horovod" not in json.dumps(one.build)
    assert "horovod" not in json.dumps(one.environment["software"])
    assert "TRAINER=horovod" in two.command and two.processes["spawner"] == "horovodrun"
    assert any("HOROVOD_WITH_GLOO=1" in b and 'horovod==0.28.1"' in b for b in two.build)
    assert two.environment["software"]["horovod_built"] == "gloo"
    assert recipe_hash(one) != recipe_hash(two)  # its own venv and tree
    many = plan(
        compose("impl=tensorpack", "stack=today", "hardware.gpus=0", "hardware.ranks_per_node=2", "hardware.nodes=2"),
        tmp_path / "many",
    )
    assert many.command.startswith('horovodrun --gloo -np 4 -H "$LAUNCHER_MPI_HOSTS" python train.py ')
    assert many.images_per_iter == 4 and runnable_problems(many) == []
    single = plan(compose("impl=tensorpack", "stack=today", "hardware.gpus=0", "hardware.nodes=2"), tmp_path / "s")
    assert any("replicated trainer is one process on one node" in p for p in runnable_problems(single))


def test_more_ranks_than_gpus_and_zero_ranks_are_refused(compose, tmp_path):
    spec = plan(compose("impl=detectron2", "hardware=v100x8", "hardware.ranks_per_node=16"), tmp_path)
    assert any("starts 16 ranks (one per GPU) and hardware v100x8 gives 8 GPUs" in p for p in runnable_problems(spec))
    with pytest.raises(ConfigError, match=r"hardware.ranks_per_node=0 must be at least 1"):
        plan(compose("impl=torchvision", "hardware.ranks_per_node=0"), tmp_path)


@pytest.mark.workload
def test_torchvision_trains_with_two_cpu_ranks_through_ddp(tmp_path):
    p = run_launcher(
        "impl=torchvision",
        "hardware.gpus=0",
        "hardware.ranks_per_node=2",
        f"cache_dir={tmp_path / 'c'}",
        cwd=tmp_path,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (res,) = list((tmp_path / "outputs").rglob("result.json"))
    r = read_result(res)
    assert (r.status, r.ranks, r.images_per_iter) == ("ok", 2, 2)
    log = (res.parent / "train.log").read_text()
    assert "world_size=2" in log or "world size 2" in log or "ranks=2" in log, log[-2000:]


ROWS = {
    "detectron2": ("detectron2.bundle", "detectron2"),
    "mmdetection": ("mmdetection.bundle", "mmdetection"),
    "maskrcnn_benchmark": ("maskrcnn-benchmark.bundle", "maskrcnn_benchmark"),
}


@pytest.mark.heavy
@pytest.mark.parametrize("row", sorted(ROWS))
def test_each_pytorch_seed_row_trains_with_two_cpu_ranks_from_an_empty_cache(tmp_path, request, row):
    """The row's own launcher, gloo, DDP and its own gather / reduce code; the figure from rank 0's log over the
    global batch.  Builds from an empty cache_dir (the recipe's pinned packages)."""
    if "heavy" not in (request.config.getoption("-m") or ""):
        pytest.skip("heavy (a build and a 2-rank training): python -m pytest -m heavy tests/test_ranks.py")
    bundle = mirror(ROWS[row][0])
    if bundle is None:
        pytest.skip(f"no {ROWS[row][0]} in ../shared/mirrors")
    coco = synth_coco(tmp_path)
    extra = ["window.end=20"] if row == "mmdetection" else []  # 100 images / 4 per iteration: one epoch is 25
    p = run_launcher(
        f"impl={row}",
        "stack=today",
        f"impl.repo={bundle}",
        f"data.coco_root={coco}",
        f"data.coco2014_root={coco}",
        "hardware.ranks_per_node=2",
        f"cache_dir={tmp_path / 'cache'}",
        *extra,
        cwd=tmp_path,
        timeout=5400,
    )
    assert p.returncode == 0, p.stdout[-5000:] + p.stderr[-3000:]
    (res,) = list((tmp_path / "outputs").rglob("result.json"))
    r = read_result(res)
    assert (r.status, r.ranks, r.stack) == ("ok", 2, "today")
    spec = json.loads((res.parent / "spec.json").read_text())
    assert r.images_per_iter == spec["images_per_iter"]
    again = parse.get_parser(spec["log_format"]).measure(
        Path(r.log_path).read_text(), tuple(r.window_requested), r.images_per_iter
    )
    assert again.throughput == r.throughput
