"""The seed's own code, run for real through the launcher (issue 11): detectron2 v0.1.2 from the git bundle
in ../shared/mirrors, on today's stack (compat patches, a launcher-managed venv that sees this Python's torch,
built once), trained on a synthetic COCO-format set at CPU smoke scale, timed from its own log.txt.

Slow (a C++ build, ~1-3 min on 2 cores, then two ~2 min trainings): marked `slow`; CI runs it.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import parse
from launcher.rundir import read_result
from tests.conftest import mirrors_dir, run_launcher
from tests.coco_helpers import synth_coco

D2_COMMIT = "60205f80f300a7000373ea2dd6ff73574bf16978"


def run_dirs(cwd: Path) -> list[Path]:
    return sorted(p.parent for p in (cwd / "outputs").rglob("spec.json"))


@pytest.mark.slow
def test_detectron2_v012_runs_for_real_on_todays_stack(tmp_path):
    mirrors = mirrors_dir()
    if mirrors is None:
        pytest.skip("no detectron2.bundle in ../shared/mirrors (or $LAUNCHER_MIRRORS): the seed's code is not here")
    synth_coco(tmp_path)
    args = (
        "impl=detectron2",
        "stack=today",
        f"impl.repo={mirrors / 'detectron2.bundle'}",
        f"data.coco_root={tmp_path / 'syn' / 'coco'}",
        f"cache_dir={tmp_path / 'cache'}",
    )

    first = run_launcher(*args, cwd=tmp_path, timeout=1800)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "Detectron2 (stack=today)" in first.stdout and "ok (smoke)" in first.stdout  # the table says so
    assert "[launcher] venv: made" in first.stdout and "build: done in" in first.stdout
    (run1,) = run_dirs(tmp_path)
    r1 = read_result(run1)
    assert (r1.status, r1.stack, r1.scale, r1.data) == ("ok", "today", "smoke", "synthetic")
    assert r1.commit == D2_COMMIT and len(r1.recipe_hash) == 64
    assert r1.window == [20, 40] and r1.images_per_iter == 2 and r1.provenance.get("framework_version")
    # the figure is detectron2's own log.txt, written into this run's directory, read by its parser
    assert Path(r1.log_path) == run1 / "output" / "log.txt"
    again = parse.get_parser("detectron2").measure(Path(r1.log_path).read_text(), (20, 40), 2)
    assert again.throughput == r1.throughput and "time[iter 39] x 38" in r1.method
    # the compat patches are in the tree; the launcher's own interpreter got nothing installed
    spec = json.loads((run1 / "spec.json").read_text())
    csrc = Path(spec["checkout_dir"]) / "detectron2" / "layers" / "csrc"
    assert ".scalar_type()" in (csrc / "ROIAlign" / "ROIAlign_cpu.cpp").read_text()
    assert not any(".type()" in p.read_text() for p in csrc.rglob("*") if p.is_file())
    assert "ATen/cuda/Atomic.cuh" in (csrc / "deformable" / "deform_conv_cuda_kernel.cu").read_text()
    assert list(Path(spec["checkout_dir"], "detectron2").glob("_C*.so"))
    probe = subprocess.run([sys.executable, "-c", "import detectron2"], cwd=tmp_path, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'detectron2'" in probe.stderr

    second = run_launcher(*args, cwd=tmp_path, timeout=1800)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert "[launcher] venv: reusing" in second.stdout and "build: already done" in second.stdout
    assert "build: done in" not in second.stdout
    (run2,) = [d for d in run_dirs(tmp_path) if d != run1]
    r2 = read_result(run2)
    assert r2.status == "ok" and r2.recipe_hash == r1.recipe_hash and r2.stack == "today"
    assert Path(r2.log_path) == run2 / "output" / "log.txt"  # its own log, not the first run's
    assert r2.started_at >= r1.finished_at
    assert (
        parse.get_parser("detectron2").measure(Path(r2.log_path).read_text(), (20, 40), 2).throughput == r2.throughput
    )


MRB_COMMIT = "0ce8f6f64b5c462dc2e8cad14620a188f98b4411"


@pytest.mark.slow
def test_maskrcnn_benchmark_0ce8f6f_runs_for_real_on_todays_stack(tmp_path):
    """maskrcnn-benchmark at the seed's commit (issue 18): its compat patches (torch._six, an optional apex.amp,
    CPU RoIAlign/RoIPool backward, numpy's np.float), its CPU `_C` built in the managed venv (~1.5 min), then
    60 iterations through the seed's torch.distributed.launch (1 rank, ~3-7 min on 2 cores), timed from its log.txt."""
    mirrors = mirrors_dir()
    if mirrors is None or not (mirrors / "maskrcnn-benchmark.bundle").is_file():
        pytest.skip("no maskrcnn-benchmark.bundle in ../shared/mirrors (or $LAUNCHER_MIRRORS)")
    synth_coco(tmp_path)
    p = run_launcher(
        "impl=maskrcnn_benchmark",
        "stack=today",
        f"impl.repo={mirrors / 'maskrcnn-benchmark.bundle'}",
        f"data.coco_root={tmp_path / 'syn' / 'coco'}",
        f"data.coco2014_root={tmp_path / 'syn' / 'coco'}",
        f"cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
        timeout=2400,
    )
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert "ok (smoke)" in p.stdout and "build: done in" in p.stdout
    (run,) = run_dirs(tmp_path)
    r = read_result(run)
    assert (r.status, r.stack, r.scale, r.data, r.ranks) == ("ok", "today", "smoke", "synthetic", 1)
    assert r.commit == MRB_COMMIT and r.window == [20, 40] and r.images_per_iter == 2
    assert Path(r.log_path) == run / "output" / "log.txt"  # the row's own log in this run's directory
    again = parse.get_parser("maskrcnn_benchmark").measure(Path(r.log_path).read_text(), (20, 40), 2)
    assert again.throughput == r.throughput
    spec = json.loads((run / "spec.json").read_text())
    tree = Path(spec["checkout_dir"])
    assert list((tree / "maskrcnn_benchmark").glob("_C*.so"))
    assert (tree / "maskrcnn_benchmark" / "utils" / "amp_compat.py").is_file()  # the apex stand-in, no apex
    assert "np.float)" not in (tree / "maskrcnn_benchmark" / "modeling" / "rpn" / "anchor_generator.py").read_text()
