"""The run pipeline on the local backend, as a user runs it: python -m launcher ..."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.node.execute import Execution, child_env
from launcher.rundir import read_result
from tests.conftest import ROOT, mirror, run_launcher

try:
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # pragma: no cover
    HAVE_TORCH = False


def only_run_dir(cwd: Path) -> Path:
    results = list((cwd / "outputs").rglob("result.json"))
    assert len(results) == 1, results
    return results[0].parent


# A stand-in command for the pipeline tests: prints lines in the torchvision row's log format.
TV_LINES = (
    "for i in $(seq 1 {n}); do printf 'tvbench iter=%d t=%s images=2 loss=1.0\\n' $i "
    "$(python -c 'import time; print(f\"{{time.time():.6f}}\")'); {after}; done"
)


def script(tmp_path: Path, text: str) -> str:
    """A command override: the shell text in a file (Hydra's override grammar keeps `;` and quotes for itself)."""
    path = tmp_path / f"cmd{len(list(tmp_path.glob('cmd*')))}.sh"
    path.write_text(text + "\n")
    return f"impl.command=bash {path}"


def test_failing_command_is_a_failed_row_with_its_output(tmp_path):
    p = run_launcher(
        script(tmp_path, "echo boom-marker-1; echo boom-marker-2 >&2; exit 3"),
        "scale=full",
        "window.start=1",
        "window.end=2",
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    r = read_result(only_run_dir(tmp_path))
    assert r.status == "failed" and r.throughput is None
    assert "status 3" in r.error and "boom-marker-1" in r.error and "boom-marker-2" in r.error
    assert r.returncode == 3
    assert "boom-marker-2" in (only_run_dir(tmp_path) / "train.log").read_text()  # stderr captured too


def test_log_short_of_the_window_is_incomplete(tmp_path):
    p = run_launcher(
        script(tmp_path, TV_LINES.format(n=3, after="true")),
        "scale=full",
        "window.start=2",
        "window.end=10",
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 1
    r = read_result(only_run_dir(tmp_path))
    assert r.status == "incomplete" and r.throughput is None
    assert "iteration 3" in r.error and "2..10" in r.error


def test_stops_once_the_log_covers_the_window(tmp_path):
    """A row that would train for ~100 s is stopped as soon as its log covers the window."""
    t0 = time.time()
    p = run_launcher(
        script(tmp_path, TV_LINES.format(n=200, after="sleep 0.5")),
        "impl.stop_when_covered=true",
        "scale=full",
        "window.start=1",
        "window.end=4",
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    r = read_result(only_run_dir(tmp_path))
    assert r.status == "ok" and r.window == [1, 4]
    assert 2 / 0.8 < r.throughput < 2 / 0.4  # 2 images per ~0.5 s step
    assert time.time() - t0 < 60


def test_signal_to_the_node_cancels_the_row(tmp_path):
    run = tmp_path / "run"
    # Run a row's node entry point the way a scheduler does, and signal it as scancel would.
    from launcher.spec import JobSpec

    spec = JobSpec(
        impl="torchvision",
        label="t",
        title="t",
        framework="PyTorch",
        command=TV_LINES.format(n=1000, after="sleep 0.2"),
        images_per_iter=2,
        window=[1, 900],
        log_format="torchvision",
        run_dir=str(run),
        stop_when_covered=False,
        min_gpus=0,
    )
    spec.save()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    node = subprocess.Popen(
        [sys.executable, "-m", "launcher.node", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 60
    log = run / "train.log"
    while time.time() < deadline and not (log.exists() and "iter=3 " in log.read_text()):
        time.sleep(0.2)
    node.send_signal(signal.SIGTERM)
    assert node.wait(60) == 1
    r = read_result(run)
    assert r.status == "cancelled" and "SIGTERM" in r.error
    # every process the command started is gone
    time.sleep(0.5)
    assert "sleep 0.2" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_time_limit_stops_the_whole_process_group(tmp_path):
    ex = Execution("sleep 30 & sleep 30; wait", tmp_path, child_env({}), tmp_path / "train.log").start()
    res = ex.wait(timeout_s=1.0)
    assert res.timed_out and res.elapsed_s < 15


@pytest.mark.workload
@pytest.mark.skipif(not HAVE_TORCH, reason="needs the workload extra: pip install -e '.[workload]'")
def test_real_tiny_torchvision_training_end_to_end(tmp_path):
    """The whole pipeline with a real Mask R-CNN training step: plan, execute, parse, result, table."""
    p = run_launcher(
        "hardware.gpus=0",
        "window.start=1",
        "window.end=3",
        "impl.options.images_per_gpu=1",
        "impl.options.min_size=128",
        "impl.options.max_size=160",
        cwd=tmp_path,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run = only_run_dir(tmp_path)
    r = read_result(run)
    assert r.status == "ok" and r.throughput > 0 and r.window == [1, 3]
    assert r.data == "synthetic" and r.scale == "smoke" and r.images_per_iter == 1
    assert r.method and r.error_bound is not None and r.error_bound < 0.01
    assert "Throughput (img/s)" in p.stdout and "torchvision" in p.stdout and "smoke" in p.stdout
    spec = json.loads((run / "spec.json").read_text())
    assert "--min-size 128 --max-size 160" in spec["command"]


def test_prepare_failure_is_a_failed_row_before_anything_is_submitted(tmp_path):
    p = run_launcher(
        "impl=maskrcnn_benchmark",
        "hardware=v100x8",
        f"impl.repo={tmp_path / 'no-such-mirror'}",
        f"cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 1 and "prepare failed" in p.stderr and "impl.repo" in p.stderr
    r = read_result(only_run_dir(tmp_path))
    assert r.status == "failed" and "prepare failed" in r.error and r.throughput is None
    assert not (only_run_dir(tmp_path) / "manifest.jsonl").exists()  # nothing was submitted
    # prepare_only reports the same problem without leaving a row behind
    p = run_launcher(
        "impl=maskrcnn_benchmark",
        "hardware=v100x8",
        f"impl.repo={tmp_path / 'no-such-mirror'}",
        f"cache_dir={tmp_path / 'cache'}",
        "prepare_only=true",
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 1 and "prepare failed" in p.stderr
    assert len(list((tmp_path / "outputs").rglob("result.json"))) == 1


def test_prepare_only_is_a_login_node_step(tmp_path):
    """No GPU and no data here (a login node): prepare_only still checks out and patches the row, and warns
    about everything the node will need instead of failing (the README's own example)."""
    bundle = mirror("maskrcnn-benchmark.bundle")
    repo = str(bundle) if bundle else None
    if repo is None:  # no bundle here: a repository with the two files the row's seed patches edit
        repo = str(tmp_path / "mirror")
        (tmp_path / "mirror" / "maskrcnn_benchmark" / "csrc" / "cuda").mkdir(parents=True)
        (tmp_path / "mirror" / "maskrcnn_benchmark" / "x.py").write_text("torch.uint8\n")
        (tmp_path / "mirror" / "maskrcnn_benchmark" / "csrc" / "cuda" / "nms.cu").write_text('AT_CHECK(x, "bad");\n')
        git(tmp_path / "mirror", "init", "-q")
        git(tmp_path / "mirror", "add", "-A")
        git(tmp_path / "mirror", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    commit = [] if bundle else ["impl.commit=HEAD"]
    p = run_launcher(
        "impl=maskrcnn_benchmark",
        "prepare_only=true",
        f"impl.repo={repo}",
        *commit,
        "hardware.gpus=0",
        f"data.coco_root={tmp_path / 'no-coco'}",
        f"cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "prepared maskrcnn_benchmark: work tree " in p.stdout and "recipe " in p.stdout
    need = [line for line in p.stdout.splitlines() if line.startswith("warning: the node will need: ")]
    for what in (
        "needs at least 1 GPU",
        f"data.coco_root={tmp_path / 'no-coco'} is not a directory",
        "R-50.pkl is missing",
        "python -m launcher.env create impl=maskrcnn_benchmark",
    ):
        assert any(what in line for line in need), (what, need)
    tree = next((tmp_path / "cache" / "trees").iterdir())
    assert bundle or "torch.bool" in next(tree.glob("maskrcnn_benchmark/**/*.py")).read_text()
    assert not list((tmp_path / "outputs").rglob("result.json"))  # nothing ran, nothing to report


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_seed_row_from_a_local_mirror_end_to_end(tmp_path):
    """maskrcnn-benchmark's recipe for real: checkout of a pinned tag from a local mirror, the seed's two
    patches, its COCO 2014 layout staged from a tiny COCO (2014 names linked onto the 2017 images), its
    pretrained file fetched into weights_dir from a file:// URL, then a stand-in printing
    maskrcnn-benchmark's own log format where the row's OUTPUT_DIR points: this run's directory."""
    from tests.coco_helpers import make_coco

    repo = tmp_path / "mirror"
    (repo / "maskrcnn_benchmark" / "csrc" / "cuda").mkdir(parents=True)
    (repo / "maskrcnn_benchmark" / "layers.py").write_text("mask = x.to(torch.uint8)\n")
    (repo / "maskrcnn_benchmark" / "csrc" / "cuda" / "nms.cu").write_text('AT_CHECK(x, "bad");\n')
    (repo / "README.md").write_text("torch.uint8 stays here\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "upstream")
    git(repo, "tag", "v-test")
    full = git(repo, "rev-parse", "HEAD")
    coco = make_coco(tmp_path / "coco")
    weights = tmp_path / "upstream-R-50.pkl"
    weights.write_bytes(b"pretend pickled R-50 weights")
    common = [
        f"cache_dir={tmp_path / 'cache'}",
        f"data.coco_root={coco['coco_root']}",
        f"data.coco2014_root={coco['coco2014_root']}",
        f"impl.weights.0.urls=[file://{weights}]",
        "impl.weights.0.md5_url=null",
    ]
    f = subprocess.run(
        [sys.executable, "-m", "launcher.weights", "fetch", "impl=maskrcnn_benchmark", *common],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f.returncode == 0 and "recorded sha256" in f.stdout, f.stdout + f.stderr
    standin = (
        "impl.command=python -m launcher.jobs.standin.standin_impl --format maskrcnn_benchmark --iters 60 "
        "--base 0.01 --fast --images-per-iter 16 --cwd ${lx.run_dir:}/output"
    )
    p = run_launcher(
        "impl=maskrcnn_benchmark",
        "hardware=local",
        "hardware.gpus=1",
        f"impl.repo={repo}",
        "impl.commit=v-test",
        "impl.build=[]",
        standin,
        *common,
        "impl.environment.kind=launcher",
        "impl.environment.check=false",
        "window.start=20",
        "window.end=60",
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    r = read_result(run_dir)
    assert r.status == "ok" and r.window == [20, 60] and r.images_per_iter == 16
    assert r.commit == full and r.recipe_hash and r.repo == str(repo)
    tree = Path(json.loads((run_dir / "spec.json").read_text())["checkout_dir"])
    assert (tree / "maskrcnn_benchmark" / "layers.py").read_text() == "mask = x.to(torch.bool)\n"
    assert (tree / "maskrcnn_benchmark" / "csrc" / "cuda" / "nms.cu").read_text() == 'TORCH_CHECK(x, "bad");\n'
    assert (tree / "README.md").read_text() == "torch.uint8 stays here\n"  # outside the patches' globs
    # the job script linked the staged 2014 layout where paths_catalog.py reads it
    staged = tmp_path / "cache" / "data" / "coco2014"
    assert (tree / "datasets" / "coco").resolve() == staged.resolve()
    assert (tree / "datasets" / "coco" / "train2014" / "COCO_train2014_000000000009.jpg").resolve() == (
        coco["coco_root"] / "train2017" / "000000000009.jpg"
    ).resolve()
    # its log is this run's own (OUTPUT_DIR), none in the shared work tree
    assert r.log_path == str(run_dir / "output" / "log.txt") and not (tree / "log.txt").exists()


def test_simpledet_fixed_paths_land_in_each_runs_own_directory(tmp_path):
    """SimpleDet writes experiments/<cfg>/log.txt relative to its work tree and reads pretrain_model/ and data/
    there. Run twice from one prepared tree (same recipe): the first run's log lands in its run dir through
    the `experiments` link; the second run's command crashes, and it is reported failed, never `ok` with the
    first run's figure (issue 10 item 1). An experiments/ left in the tree is moved aside, not deleted."""
    from tests.coco_helpers import make_coco
    from tests.test_data_stage import simpledet_repo

    repo = simpledet_repo(tmp_path)
    coco = make_coco(tmp_path / "coco", with_2014=False)
    blob = tmp_path / "resnet-v1-50-0000.params"
    blob.write_bytes(b"pretend params")
    crash = tmp_path / "crash-now"
    standin = (
        "python -m launcher.jobs.standin.standin_impl --format simpledet --iters 520 --base 0.01 --fast "
        "--images-per-iter 16"
    )
    command = script(tmp_path, f"test -f {crash} && {{ sleep 1; echo crashed; exit 1; }}; {standin}")
    common = [
        f"cache_dir={tmp_path / 'cache'}",
        f"data.coco_root={coco['coco_root']}",
        f"impl.repo={repo}",
        "impl.commit=HEAD",
        f"impl.weights.0.urls=[file://{blob}]",
    ]
    f = subprocess.run(
        [sys.executable, "-m", "launcher.weights", "fetch", "impl=simpledet", *common],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f.returncode == 0, f.stderr
    run = lambda *more: run_launcher(
        "impl=simpledet",
        "hardware=local",
        "hardware.gpus=1",
        "impl.processes.gpus=null",
        "impl.build=[]",
        command,
        *common,
        "impl.environment.kind=launcher",
        "impl.environment.check=false",
        *more,
        cwd=tmp_path,
        timeout=300,
    )
    assert run("prepare_only=true").returncode == 0
    (tree,) = (tmp_path / "cache" / "trees").iterdir()
    (tree / "experiments" / "old").mkdir(parents=True)  # someone ran SimpleDet by hand in the tree
    (tree / "experiments" / "old" / "log.txt").write_text("an earlier run's log\n")
    p = run()
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    first = only_run_dir(tmp_path)
    r1 = read_result(first)
    assert r1.status == "ok" and r1.log_path == str(first / "output/experiments/mask_r50v1_fpn_1x/log.txt")
    assert Path(json.loads((first / "spec.json").read_text())["checkout_dir"]) == tree
    assert (tree / "experiments").resolve() == (first / "output" / "experiments").resolve()
    assert (tree / "pretrain_model" / "resnet-v1-50-0000.params").read_bytes() == b"pretend params"
    (aside,) = tree.glob("experiments.moved-*")
    assert (aside / "old" / "log.txt").read_text() == "an earlier run's log\n"

    crash.touch()
    # its own run dir: Hydra names one by the second, and the first run can take less than a second
    p = run(f"hydra.run.dir={tmp_path / 'outputs' / 'second'}")
    assert p.returncode == 1
    (second,) = [d for d in (tmp_path / "outputs").rglob("result.json") if d.parent != first]
    r2 = read_result(second.parent)
    assert r2.status == "failed" and r2.throughput is None and "crashed" in r2.error, r2
    assert json.loads((second.parent / "spec.json").read_text())["checkout_dir"] == str(tree)  # the same tree,
    assert [t.name for t in (tmp_path / "cache" / "trees").iterdir()] == [tree.name]  # still clean: not re-made
    assert read_result(first).status == "ok"  # the first run's result and log are untouched
