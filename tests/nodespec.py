"""A row for node-side tests of issue 21: a spec saved in a run dir whose command writes a torchvision-format
log (`tvbench iter=... t=...`) in real time. STAND-IN for a training: only its log's shape matters here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from launcher.spec import JobSpec
from tests.conftest import ROOT

WRITER = r"""
import sys, time
iters, step, jump = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print("tvbench run: stand-in", flush=True)
for i in range(1, iters + 1):
    time.sleep(step)
    print(f"tvbench iter={i} t={time.time() + (jump if i > iters // 2 else 0.0):.6f} images=2 loss=0.5", flush=True)
"""


def node_spec(run_dir: Path, iters: int = 10, step: float = 0.05, jump: float = 0.0, window=(2, 8)) -> JobSpec:
    """Save (and return) the spec of a stand-in row in `run_dir`: `iters` iterations of `step` s each, its stamps
    jumping forward by `jump` s halfway."""
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = run_dir.parent / "tv_writer.py"
    writer.write_text(WRITER)
    spec = JobSpec(
        impl="standin",
        label="stand-in",
        title="stand-in",
        framework="none",
        command=f"{sys.executable} {writer} {iters} {step} {jump}",
        images_per_iter=2,
        window=list(window),
        log_format="torchvision",
        run_dir=str(run_dir),
        stop_when_covered=False,
        min_gpus=0,
    )
    spec.save()
    return spec


def node_cli(
    run_dir: Path, timeout: float = 120, popen: bool = False
) -> subprocess.CompletedProcess | subprocess.Popen:
    """`python -m launcher.node RUN_DIR`: run to its end, or (popen) started and returned."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "launcher.node", str(run_dir)]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
