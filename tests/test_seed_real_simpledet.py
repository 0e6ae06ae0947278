"""SimpleDet 9187a10 (Mask R-CNN R50-FPN) run for real through the launcher on today's stack (issue 19): from the
git bundle in ../shared/mirrors, the package index's mxnet 1.9.1 with SimpleDet's own C++ operators (Proposal_v3,
SigmoidCrossEntropy, ProposalMaskTarget) compiled against the wheel and loaded at start, ROIAlign_v2 substituted by
MXNet's contrib ROIAlign, trained on a synthetic COCO-format set at CPU smoke scale, timed from SimpleDet's own
log.txt.

Its build clones MXNet's source (tag 1.9.1, for src/operator's headers) and mxnext (d9af618) from GitHub; on a host
without GitHub, point it at clones: LAUNCHER_MXNET_REPO, LAUNCHER_MXNEXT_REPO. Slow (a venv, three operators
compiled, a CPU training): 6-7 min on 2 shared cores (6 min 03 s from empty caches on 2026-12-07), so it runs
only when asked:

    LAUNCHER_REAL_MX=1 LAUNCHER_MXNET_REPO=... LAUNCHER_MXNEXT_REPO=... python -m pytest tests/test_seed_real_simpledet.py
"""

import json
import os
from pathlib import Path

import pytest

from launcher import parse
from launcher.rundir import read_result
from tests.conftest import mirror, run_launcher
from tests.coco_helpers import synth_coco

SD_COMMIT = "9187a10569dd4eab6bfe5c64361a280357b8cd6c"


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("LAUNCHER_REAL_MX"),
    reason="~7 min (an MXNet venv, C++ operators, a CPU "
    "training): outside CI's time budget; run with LAUNCHER_REAL_MX=1",
)
def test_simpledet_9187a10_runs_for_real_on_mxnet_191(tmp_path):
    bundle = mirror("simpledet.bundle")
    if bundle is None:
        pytest.skip("no simpledet.bundle in ../shared/mirrors (or $LAUNCHER_MIRRORS): the seed's code is not here")
    synth_coco(tmp_path)
    extra = [
        f"++impl.options.{k}={os.environ[v]}"
        for k, v in (("mxnet_repo", "LAUNCHER_MXNET_REPO"), ("mxnext_repo", "LAUNCHER_MXNEXT_REPO"))
        if os.environ.get(v)
    ]
    run = run_launcher(
        "impl=simpledet",
        "stack=today",
        f"impl.repo={bundle}",
        f"data.coco_root={tmp_path / 'syn' / 'coco'}",
        f"cache_dir={tmp_path / 'cache'}",
        *extra,
        cwd=tmp_path,
        timeout=3000,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "SimpleDet (stack=today)" in run.stdout and "ok (smoke)" in run.stdout
    assert "with SimpleDet operators" in run.stdout  # the build's own check that the operators registered
    (run_dir,) = sorted(p.parent for p in (tmp_path / "outputs").rglob("spec.json"))
    r = read_result(run_dir)
    assert (r.status, r.stack, r.scale, r.data) == ("ok", "today", "smoke", "synthetic")
    assert r.commit == SD_COMMIT and r.images_per_iter == 1
    log = Path(r.log_path)
    assert log == run_dir / "output" / "experiments" / "mask_r50v1_fpn_1x_smoke" / "log.txt"
    again = parse.get_parser("simpledet").measure(log.read_text(), tuple(r.window_requested), 1)
    assert again.throughput == r.throughput
    tree = Path(json.loads((run_dir / "spec.json").read_text())["checkout_dir"])
    assert (tree / "build" / "launcher" / "libsimpledet_ops.so").is_file()
    assert "NotImplemented" not in (tree / "operator_cxx/contrib/sigmoid_cross_entropy.cc").read_text()
