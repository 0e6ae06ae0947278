"""tensorpack caafda8 (examples/FasterRCNN, Mask R-CNN R50-FPN) run for real through the launcher on today's stack
(issue 19): from the git bundle in ../shared/mirrors, TensorFlow 2.15 (tensorflow-cpu) in tf.compat.v1 graph mode
with the row's compat patches, in an isolated launcher-managed venv, the replicated trainer with one tower on the
CPU, trained on a synthetic COCO-format set at smoke scale and timed from tensorpack's own log.log.

Slow: 2 min 43 s through the launcher alone on 2 cores (70 s of it making the venv: a 207 MB TensorFlow wheel),
9 min 48 s while other jobs shared the cores. Past CI's budget, so it runs only when asked:

    LAUNCHER_REAL_TF=1 python -m pytest tests/test_seed_real_tensorpack.py

With `hardware.ranks_per_node=2` the row is tensorpack's horovod trainer, 2 CPU ranks started by `horovodrun --gloo`,
with horovod 0.28.1 compiled into the venv by the row's build (6 min 39 s in all from empty caches on 2 shared cores,
the horovod build ~4 min of it; ~40 min at a higher load):

    LAUNCHER_REAL_TF=1 LAUNCHER_REAL_HOROVOD=1 python -m pytest tests/test_seed_real_tensorpack.py -k horovod
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import parse
from launcher.rundir import read_result
from tests.conftest import mirror, run_launcher
from tests.coco_helpers import synth_coco

TP_COMMIT = "caafda80b17898b3532c86108155bf7ec0c4d245"


def _bundle_and_data(tmp_path: Path) -> Path:
    bundle = mirror("tensorpack.bundle")
    if bundle is None:
        pytest.skip("no tensorpack.bundle in ../shared/mirrors (or $LAUNCHER_MIRRORS): the seed's code is not here")
    synth_coco(tmp_path)
    return bundle


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("LAUNCHER_REAL_TF"),
    reason="3-10 min (a TensorFlow venv, a CPU training): outside CI's time budget; run with LAUNCHER_REAL_TF=1",
)
def test_tensorpack_caafda8_runs_for_real_on_tf2(tmp_path):
    bundle = _bundle_and_data(tmp_path)
    run = run_launcher(
        "impl=tensorpack",
        "stack=today",
        f"impl.repo={bundle}",
        f"data.coco_root={tmp_path / 'syn' / 'coco'}",
        f"cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "tensorpack (stack=today)" in run.stdout and "ok (smoke)" in run.stdout
    assert "[launcher] venv: made" in run.stdout
    (run_dir,) = sorted(p.parent for p in (tmp_path / "outputs").rglob("spec.json"))
    r = read_result(run_dir)
    assert (r.status, r.stack, r.scale, r.data) == ("ok", "today", "smoke", "synthetic")
    assert r.commit == TP_COMMIT and r.window == [5, 20] and r.images_per_iter == 1
    # the figure is tensorpack's own log.log (--logdir in this run's directory), read again by its parser
    log = Path(r.log_path)
    assert log == run_dir / "output" / "train_log" / "log.log"
    text = log.read_text(errors="replace")
    assert "TensorFlow           2.15.1" in text and "training one tower on the CPU" in text
    assert parse.get_parser("tensorpack").measure(text, (5, 20), 1).throughput == r.throughput
    assert "epochs 2..4" in r.method
    # the TF 1 -> tf.compat.v1 patches are in the tree, the venv is TF 2 and isolated from the launcher's Python
    tree = Path(json.loads((run_dir / "spec.json").read_text())["checkout_dir"])
    assert "import tensorflow.compat.v1 as tf" in (tree / "examples/FasterRCNN/modeling/backbone.py").read_text()
    assert "tf.disable_v2_behavior()" in (tree / "tensorpack/compat/__init__.py").read_text()
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert "2.15.1" in json.dumps(prov)
    probe = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert probe.returncode != 0  # nothing went into the launcher's own interpreter


@pytest.mark.slow
@pytest.mark.skipif(
    not (os.environ.get("LAUNCHER_REAL_TF") and os.environ.get("LAUNCHER_REAL_HOROVOD")),
    reason="a horovod build (4-40 min) and 2 CPU ranks: run with LAUNCHER_REAL_TF=1 LAUNCHER_REAL_HOROVOD=1",
)
def test_tensorpack_caafda8_trains_two_horovod_ranks_over_gloo(tmp_path):
    bundle = _bundle_and_data(tmp_path)
    run = run_launcher(
        "impl=tensorpack",
        "stack=today",
        "hardware.ranks_per_node=2",
        f"impl.repo={bundle}",
        f"data.coco_root={tmp_path / 'syn' / 'coco'}",
        f"cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
        timeout=4500,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "tensorpack (stack=today)" in run.stdout and "ok (smoke)" in run.stdout
    assert "with gloo" in run.stdout  # the build's own check: hvd.gloo_built()
    (run_dir,) = sorted(p.parent for p in (tmp_path / "outputs").rglob("spec.json"))
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["command"].startswith("horovodrun --gloo -np 2 python train.py ")
    r = read_result(run_dir)
    assert (r.status, r.stack, r.scale, r.ranks, r.images_per_iter) == ("ok", "today", "smoke", 2, 2)
    log = Path(r.log_path)
    text = log.read_text(errors="replace")
    assert "TensorFlow           2.15.1" in text and "Horovod" in text
    assert parse.get_parser("tensorpack").measure(text, (5, 20), 2).throughput == r.throughput
    # the node's software check asked horovod what it was built with
    prov = json.dumps(json.loads((run_dir / "provenance.json").read_text()))
    assert "horovod_built" in prov and "0.28.1" in prov
