"""Config composition for every row, rejection of bad values, and the dry-run plan of every seed row."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from launcher.plan import ConfigError, plan, runnable_problems
from tests.conftest import run_launcher

SEED_ROWS = ["detectron2", "mmdetection", "maskrcnn_benchmark", "tensorpack", "simpledet", "detectron", "matterport"]
ROWS = SEED_ROWS + ["torchvision"]

# The commands exactly as the seed page gives them (../shared/seed/detectron2-benchmarks.readable.md).
SEED_COMMANDS = {
    "detectron2": "python tools/train_net.py --config-file configs/Detectron1-Comparisons/mask_rcnn_R_50_FPN_noaug_1x.yaml --num-gpus 8",
    "mmdetection": "./tools/dist_train.sh configs/mask_rcnn/mask_rcnn_r50_caffe_fpn_1x_coco.py 8",
    "maskrcnn_benchmark": "python -m torch.distributed.launch --nproc_per_node=8 tools/train_net.py --config-file configs/e2e_mask_rcnn_R_50_FPN_1x.yaml",
    "tensorpack": "mpirun -np 8 ./train.py --config DATA.BASEDIR=/data/coco TRAINER=horovod BACKBONE.STRIDE_1X1=True TRAIN.STEPS_PER_EPOCH=50 --load ImageNet-R50-AlignPadding.npz",
    "simpledet": "python detection_train.py --config config/mask_r50v1_fpn_1x.py",
    "detectron": "python tools/train_net.py --cfg configs/12_2017_baselines/e2e_mask_rcnn_R-50-FPN_1x.yaml",
    "matterport": "python coco.py train --dataset=/data/coco/ --model=imagenet",
}
# What the launcher runs: the seed's command, pointed at the pretrained file in weights_dir, at the staged
# data layout and at this run's own output directory (issue 12, issue 10 item 1), tensorpack's mpirun given
# slots in a one-task allocation, and Detectron's GPU count stated. W=weights_dir, S=data.stage_dir, R=run dir.
PLANNED = {
    "detectron2": SEED_COMMANDS["detectron2"] + " MODEL.WEIGHTS {W}/detectron2/ImageNetPretrained/MSRA/R-50.pkl"
    " OUTPUT_DIR {R}/output",
    "mmdetection": SEED_COMMANDS["mmdetection"] + " --work-dir {R}/output"
    " --options model.pretrained={W}/mmcv/resnet50_msra-5891d200.pth",
    "maskrcnn_benchmark": SEED_COMMANDS["maskrcnn_benchmark"]
    + " MODEL.WEIGHT {W}/detectron/ImageNetPretrained/MSRA/R-50.pkl OUTPUT_DIR {R}/output",
    "tensorpack": "mpirun --mca ras ^slurm -H localhost:8 -np 8 ./train.py --config DATA.BASEDIR={S}/coco2017/coco "
    "TRAINER=horovod BACKBONE.STRIDE_1X1=True TRAIN.STEPS_PER_EPOCH=50 "
    "--load {W}/tensorpack/ImageNet-R50-AlignPadding.npz --logdir {R}/output/train_log",
    "simpledet": SEED_COMMANDS["simpledet"],  # fixed paths: links in its setup lines
    "detectron": SEED_COMMANDS["detectron"] + " NUM_GPUS 8 TRAIN.WEIGHTS {W}/detectron/ImageNetPretrained/MSRA/R-50.pkl"
    " OUTPUT_DIR {R}/output",
    "matterport": "python coco.py train --dataset={S}/coco2014 "
    "--model={W}/keras/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 --logs={R}/output/logs",
}
SEED_REFERENCE = {
    "detectron2": 62,
    "mmdetection": 53,
    "maskrcnn_benchmark": 53,
    "tensorpack": 50,
    "simpledet": 39,
    "detectron": 19,
    "matterport": 14,
}
SEED_COMMIT = {
    "detectron2": "v0.1.2",
    "mmdetection": "b0d845f",
    "maskrcnn_benchmark": "0ce8f6f",
    "tensorpack": "caafda",
    "simpledet": "9187a1",
    "matterport": "3deaec",
}


@pytest.mark.parametrize("row", ROWS)
@pytest.mark.parametrize("hw", ["local", "v100x8", "a100x8", "h100x8"])
def test_every_row_composes_and_plans(compose, row, hw, tmp_path):
    overrides = [f"impl={row}", f"hardware={hw}"]
    if hw == "local" and row != "torchvision":
        overrides.append("hardware.gpus=2")  # seed rows need GPUs (see test_seed_rows_need_gpus)
    cfg = compose(*overrides)
    spec = plan(cfg, tmp_path)
    assert spec.impl == row and spec.hardware == hw
    assert spec.images_per_iter > 0 and "${" not in spec.command
    assert spec.window[1] > spec.window[0]


@pytest.mark.parametrize("row", SEED_ROWS)
def test_seed_rows_carry_the_seed_facts(compose, row, tmp_path):
    spec = plan(compose(f"impl={row}", "hardware=v100x8", "weights_dir=/w", "data.stage_dir=/s"), tmp_path / "run")
    # the seed's command, then only what points the row at its weights, its staged data and this run's directory
    assert spec.command == PLANNED[row].format(W="/w", S="/s", R=(tmp_path / "run").resolve())
    assert spec.reference == SEED_REFERENCE[row] and spec.reference_hardware == "v100x8"
    assert spec.images_per_iter in (8, 16)
    assert spec.window == [100, 500] and spec.scale == "full"
    assert spec.repo and spec.repo.startswith("https://github.com/")
    if row in SEED_COMMIT:
        assert spec.commit == SEED_COMMIT[row]
    else:  # Detectron: the seed names no commit; the config pins one and says so
        assert spec.commit and "no commit" in spec.commit_note


@pytest.mark.parametrize("row", ["tensorpack", "mmdetection"])
def test_seed_rows_need_gpus(compose, row, tmp_path):
    spec = plan(compose(f"impl={row}", "hardware=local", "hardware.gpus=0"), tmp_path)
    assert any("needs at least 1 GPU" in p for p in runnable_problems(spec))
    p = run_launcher(f"impl={row}", "hardware=local", "hardware.gpus=0", cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "needs at least 1 GPU" in p.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("result.json"))


def test_env_vars_of_the_seed(compose, tmp_path):
    for row in ("tensorpack", "matterport"):
        assert plan(compose(f"impl={row}"), tmp_path).env["TF_CUDNN_USE_AUTOTUNE"] == "0"


def test_gpu_count_and_data_root_are_interpolated(compose, tmp_path):
    spec = plan(compose("impl=tensorpack", "hardware=a100x8", "hardware.gpus=4", "cache_dir=/shared/cache"), tmp_path)
    assert spec.command.startswith("mpirun --mca ras ^slurm -H localhost:4 -np 4 ")
    assert "DATA.BASEDIR=/shared/cache/data/coco2017/coco " in spec.command
    assert spec.images_per_iter == 4 and spec.processes == {
        "spawner": "mpirun",
        "ranks": 4,
        "gpus": None,
        "span": "mpirun",
        "span_blocker": "",
    }


@pytest.mark.parametrize(
    "override,key",
    [
        ("window.start=abc", "window.start"),
        ("window.end=1.5x", "window.end"),
        ("dry_run=maybe", "dry_run"),
        ("impl.images_per_iter=many", "images_per_iter"),
    ],
)
def test_type_errors_name_the_key(compose, override, key):
    with pytest.raises((ConfigCompositionException, ValidationError)) as e:
        compose(override)
    assert key in str(e.value) + str(e.value.__cause__)


def test_window_order_is_checked(compose, tmp_path):
    with pytest.raises(ConfigError, match=r"window.start=600 must be less than window.end="):
        plan(compose("window.start=600"), tmp_path, overrides=["window.start=600"])
    with pytest.raises(ConfigError, match=r"window.start=600 must be less than window.end=500"):
        plan(compose("window.start=600", "hardware=v100x8"), tmp_path)


def test_unknown_impl_lists_the_options(tmp_path):
    p = run_launcher("impl=nosuchrow", cwd=tmp_path, timeout=120)
    assert p.returncode != 0
    assert "Could not find 'impl/nosuchrow'" in p.stderr and "simpledet" in p.stderr


def test_cpu_smoke_scale_only_without_gpus(compose, tmp_path):
    smoke = plan(compose("impl=torchvision", "hardware=local", "hardware.gpus=0"), tmp_path)
    full = plan(compose("impl=torchvision", "hardware=local", "hardware.gpus=1"), tmp_path)
    assert smoke.scale == "smoke" and smoke.window[1] < 100
    assert full.scale == "full" and full.window == [100, 500] and "--min-size 800 --max-size 1333" in full.command
    forced = plan(compose("impl=torchvision", "hardware.gpus=0", "scale=full"), tmp_path)
    assert forced.scale == "full" and forced.window == [100, 500]


def test_torchvision_uses_one_process_per_gpu(compose, tmp_path):
    assert plan(compose("impl=torchvision", "hardware=h100x8"), tmp_path).command.startswith(
        "torchrun --standalone --nproc_per_node=8 "
    )
    assert plan(compose("impl=torchvision", "hardware.gpus=0"), tmp_path).command.startswith("python ")


@pytest.mark.parametrize("row", SEED_ROWS)
def test_dry_run_prints_the_seed_command_and_touches_nothing(row, tmp_path):
    p = run_launcher(
        f"impl={row}",
        "hardware=v100x8",
        "dry_run=true",
        "weights_dir=/w",
        "data.stage_dir=/s",
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    run_dir = p.stdout.split("run dir:", 1)[1].split()[0]
    assert PLANNED[row].format(W="/w", S="/s", R=run_dir) in p.stdout
    # its data layout, weights, environment and allocation, each on its own line
    for section in ("environment:", "data:", "weights:", "allocation:"):
        assert f"\n{section}" in p.stdout, section
    assert list(tmp_path.iterdir()) == []  # no outputs/, no checkout


def test_user_overrides_win_over_smoke_scale(compose, tmp_path):
    over = ["impl=torchvision", "hardware.gpus=0", "window.end=5", "impl.options.min_size=200"]
    spec = plan(compose(*over), tmp_path, overrides=over)
    assert spec.scale == "smoke" and spec.window[1] == 5 and "--min-size 200 " in spec.command


@pytest.mark.parametrize(
    "mode,has_result,state,wanted",
    [
        ("failed", True, "ok", False),
        ("failed", True, "failed", True),
        ("failed", True, "timeout", True),
        ("failed", True, "incomplete", True),
        ("failed", True, "cancelled", True),
        ("failed", False, None, True),
        ("failed", False, "failed", True),
        ("failed", False, "running", False),
        ("failed", False, "pending", False),
        ("missing", True, "ok", False),
        ("missing", True, "failed", False),
        ("missing", False, None, True),
        ("missing", False, "failed", True),
        ("missing", False, "running", False),
        ("missing", False, "pending", False),
    ],
)
def test_rerun_selects_exactly_its_rows(mode, has_result, state, wanted):
    from launcher.rerun import rerun_wanted

    assert rerun_wanted(mode, has_result, state) is wanted


@pytest.mark.parametrize(
    "row", ["mmdetection", "maskrcnn_benchmark", "tensorpack", "simpledet", "detectron", "matterport"]
)
def test_each_seed_row_writes_where_only_its_run_writes(compose, tmp_path, row):
    """Issue 10 item 1, config side: the row's own output option points into its run directory and its log
    is read from there (or from the captured output). (detectron2's OUTPUT_DIR: the d2real branch.)"""
    run_dir = tmp_path / "run"
    spec = plan(compose(f"impl={row}", "hardware=v100x8"), run_dir)
    out = str(run_dir / "output")
    assert out in spec.command or any(out in line for line in spec.setup), row
    assert spec.log_path is None or spec.log_path.startswith(out + "/"), spec.log_path
    if row == "tensorpack":  # tensorpack deletes the folder it is given: never the run dir itself
        assert f"--logdir {out}/train_log" in spec.command
