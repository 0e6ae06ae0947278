"""matterport/Mask_RCNN 3deaec5 (samples/coco, Mask R-CNN R50-FPN) run for real through the launcher on today's stack
(issue 19): TensorFlow 2.15 (tensorflow-cpu, Keras 2.15 as tf.keras) in tf.compat.v1 graph mode with the row's compat
patches, in an isolated launcher-managed venv, coco.py's own training at smoke scale on a synthetic COCO-format set,
timed from Keras' progress bar on stdout.

There is no mirror of the repository (1.8 GB): LAUNCHER_MATTERPORT_REPO names a local git repository whose HEAD holds
3deaec5's tree (README, 'What has run where', says how the one used here was made and what it lacks). Its commit is
passed as impl.commit, so the run records that commit and the pin it stands in for, never the pin's hash.

Slow (a TensorFlow venv, 20 CPU steps after a minute of graph building), so it runs only when asked:

    LAUNCHER_REAL_MATTERPORT=1 LAUNCHER_MATTERPORT_REPO=/path/to/Mask_RCNN python -m pytest tests/test_seed_real_matterport.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import parse
from launcher.rundir import read_result
from tests.conftest import run_launcher
from tests.coco_helpers import synth_coco

#: the blobs of 3deaec5's tree that the seed's diff names (its index lines) and the row's code needs
TREE_3DEAEC5 = {
    "mrcnn/model.py": "62cb2b0951a200a40c56c2db4d650b8566f191d9",
    "mrcnn/parallel_model.py": "d2bf53bb88e52d067743474877c8f20521e60af8",
    "samples/coco/coco.py": "5d172b5ce6e7ac76664ad9052dc85f6d45c1beef",
    "mrcnn/utils.py": "ff93e1065754250bde1d6ed589eb3bf4dc619114",
    "mrcnn/config.py": "6f91170f37cff6fe56d31f1c7f5472d1708a9dd3",
    "mrcnn/__init__.py": "8b137891791fe96927ad78e64b0aad7bded08bdc",
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("LAUNCHER_REAL_MATTERPORT"),
    reason="3-10 min (a TensorFlow venv, a CPU training): outside CI's time budget; run with LAUNCHER_REAL_MATTERPORT=1",
)
def test_matterport_3deaec5_runs_for_real_on_tf2(tmp_path):
    repo = Path(os.environ.get("LAUNCHER_MATTERPORT_REPO") or "/nonexistent")
    if not (repo / ".git").exists() and not (repo / "HEAD").exists():
        pytest.skip("LAUNCHER_MATTERPORT_REPO names no git repository holding 3deaec5's tree")
    commit = _git(repo, "rev-parse", "HEAD")
    for path, blob in TREE_3DEAEC5.items():  # the tree is 3deaec5's where the row's code is
        assert _git(repo, "rev-parse", f"HEAD:{path}") == blob, path
    synth_coco(tmp_path)
    coco = tmp_path / "syn" / "coco"
    run = run_launcher(
        "impl=matterport",
        "stack=today",
        f"impl.repo={repo}",
        f"impl.commit={commit}",
        f"data.coco_root={coco}",
        f"data.coco2014_root={coco}",
        f"cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "ok (smoke)" in run.stdout
    (run_dir,) = sorted(p.parent for p in (tmp_path / "outputs").rglob("spec.json"))
    r = read_result(run_dir)
    assert (r.status, r.stack, r.scale, r.data) == ("ok", "today", "smoke", "synthetic")
    assert r.window == [5, 20] and r.images_per_iter == 1
    # the commit that ran, and the pin it stands in for
    assert r.commit == commit != "3deaec5d902d16e1daf56b62d5971d428dc920bc" and r.pinned_commit == "3deaec"
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["pinned_commit"] == "3deaec" and "2.15.1" in json.dumps(prov)
    # the figure is Keras' own progress bar (stdout, captured as train.log), read again by the row's parser
    text = Path(r.log_path).read_text(errors="replace")
    assert "Epoch 4/40" in text and "smoke scale: no pretrained weights loaded" in text
    assert parse.get_parser("matterport").measure(text, (5, 20), 1).throughput == r.throughput
    assert "epochs 2..4" in r.method
    tree = Path(json.loads((run_dir / "spec.json").read_text())["checkout_dir"])
    assert "tf.disable_v2_behavior()" in (tree / "mrcnn/model.py").read_text()
    probe = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert probe.returncode != 0  # nothing went into the launcher's own interpreter
