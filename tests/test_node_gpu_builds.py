"""The seed's PyTorch rows compiled for today's GPUs on a machine without one (issue 18): each row's CUDA sources,
from the git bundle, with its declared compat patches, built by `prepare_only=true` for the hardware group's
architectures with NVIDIA's compiler from the package index (`cuda_toolkit=index`, as on a login node with no
CUDA toolkit), then proven to hold device code for every architecture.

* detectron2 v0.1.2 for H100 (sm_90): `slow`, in CI.
* all three rows (detectron2, mmdetection, maskrcnn-benchmark) for A100 + H100 (sm_80 and sm_90): `heavy`, not in
  CI (tens of minutes of nvcc on 2 cores); run them with
  `python -m pytest -m heavy tests/test_node_gpu_builds.py` (README, "What has run where").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from launcher.node.toolchain import INDEX_TOOLKITS, device_code, extension_modules
from tests.conftest import ROOT, mirror, run_launcher

ROWS = {
    "detectron2": "detectron2.bundle",
    "mmdetection": "mmdetection.bundle",
    "maskrcnn_benchmark": "maskrcnn-benchmark.bundle",
}


def _torch_cuda_pinned() -> None:
    import torch

    cuda = torch.version.cuda
    if not cuda or ".".join(cuda.split(".")[:2]) not in INDEX_TOOLKITS:
        pytest.skip(f"this torch (CUDA {cuda}) has no pinned toolkit on the package index to build with")


def build_for_gpus(tmp_path: Path, row: str, archs: str, hardware: str = "h100x8") -> tuple[Path, float]:
    """`prepare_only=true` of ROW for ARCHS; returns the prepared tree and the wall time."""
    bundle = mirror(ROWS[row])
    if bundle is None:
        pytest.skip(f"no {ROWS[row]} in ../shared/mirrors (or $LAUNCHER_MIRRORS): the seed's code is not here")
    _torch_cuda_pinned()
    t0 = time.time()
    p = run_launcher(
        f"impl={row}",
        "stack=today",
        f"hardware={hardware}",
        f"hardware.compute_capability='{archs}'",
        "prepare_only=true",
        f"impl.repo={bundle}",
        f"cache_dir={tmp_path / 'cache'}",
        "cuda_toolkit=index",
        cwd=tmp_path,
        timeout=7200,
    )
    took = time.time() - t0
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    assert "toolchain: no CUDA toolkit here; installing CUDA" in out  # the index's compiler, pinned to torch's CUDA
    assert "build: done in" in out
    (tree,) = [d for d in (tmp_path / "cache" / "trees").iterdir() if d.name.startswith(row)]
    wanted = {int(a.replace(".", "")) for a in archs.split(";")}
    mods = extension_modules(tree)
    assert mods
    row_conf = yaml.safe_load((ROOT / "conf" / "impl" / f"{row}.yaml").read_text())
    host_only = set(row_conf["stacks"]["today"]["environment"].get("host_only_extensions") or ())
    for m in mods:
        rel = m.relative_to(tree)
        if str(rel.parent / rel.name.split(".", 1)[0]) in host_only:  # C++ only by design (declared)
            continue
        assert device_code(m)["elf"] >= wanted, m
        assert f"device code: {m.relative_to(tree)}: " in out
    (marker,) = tree.glob(".git/launcher-built-*.json")
    data = json.loads(marker.read_text())
    assert data["archs"] == sorted(a for a in archs.split(";")) and data["toolkit"].startswith("CUDA ")
    assert set(data["device_code"]) == {str(m.relative_to(tree)) for m in mods}
    assert (marker.with_name(marker.name.replace(".json", ".log"))).is_file()  # the build's log is kept beside it
    # the same recipe again: nothing to do
    again = run_launcher(
        f"impl={row}",
        "stack=today",
        f"hardware={hardware}",
        f"hardware.compute_capability='{archs}'",
        "prepare_only=true",
        f"impl.repo={bundle}",
        f"cache_dir={tmp_path / 'cache'}",
        "cuda_toolkit=index",
        cwd=tmp_path,
        timeout=600,
    )
    assert again.returncode == 0 and "build: already done" in again.stdout, again.stdout[-3000:]
    return tree, took


@pytest.mark.slow
def test_detectron2_v012_compiles_its_cuda_ops_for_h100_without_a_gpu(tmp_path):
    tree, took = build_for_gpus(tmp_path, "detectron2", "9.0")
    (so,) = tree.glob("detectron2/_C*.so")
    assert device_code(so)["elf"] == {90}
    print(f"detectron2 v0.1.2 sm_90 build (venv + compile) took {took:.0f} s")


def _heavy(request) -> None:
    if "heavy" not in (request.config.getoption("-m") or ""):
        pytest.skip("heavy (tens of minutes of nvcc): run with python -m pytest -m heavy tests/test_node_gpu_builds.py")


@pytest.mark.heavy
@pytest.mark.parametrize("row", sorted(ROWS))
def test_each_pytorch_row_compiles_for_a100_and_h100_without_a_gpu(tmp_path, request, row):
    _heavy(request)
    _tree, took = build_for_gpus(tmp_path, row, "8.0;9.0")
    print(f"{row} sm_80+sm_90 build (venv + compile) took {took:.0f} s")
