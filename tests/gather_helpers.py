"""Run directories as the node and the backends write them, for the gatherer's tests.

Results go through the project's own writer (launcher.rundir.write_result), specs through
JobSpec.save and manifests through launcher.rundir.append_manifest, so the files are the real formats.
"""

from __future__ import annotations

import json
from pathlib import Path

from launcher.rundir import STATUS_FILE, Result, append_manifest, write_result
from launcher.spec import JobSpec

REFS = {
    "detectron2": 62,
    "mmdetection": 53,
    "maskrcnn_benchmark": 53,
    "tensorpack": 50,
    "simpledet": 39,
    "detectron": 19,
    "matterport": 14,
    "torchvision": None,
}


def spec(run_dir: Path, impl: str, hardware: str = "v100x8", sweep_dir: Path | None = None, **kw) -> JobSpec:
    run_dir.mkdir(parents=True, exist_ok=True)
    s = JobSpec(
        impl=impl,
        label=impl,
        title=impl,
        framework="PyTorch",
        command="train",
        images_per_iter=16,
        window=[100, 500],
        log_format=impl,
        run_dir=str(run_dir),
        hardware=hardware,
        gpus=8,
        reference=REFS.get(impl),
        reference_hardware="v100x8" if REFS.get(impl) else None,
        sweep_dir=str(sweep_dir) if sweep_dir else None,
        backend="slurm",
        **kw,
    )
    s.save(run_dir)
    return s


def result(
    run_dir: Path,
    impl: str,
    status: str = "ok",
    throughput: float | None = None,
    *,
    hardware: str = "v100x8",
    n: int = 0,
    **kw,
) -> Result:
    run_dir.mkdir(parents=True, exist_ok=True)
    ref = REFS.get(impl)
    fields = dict(
        impl=impl,
        hardware=hardware,
        backend="slurm",
        status=status,
        throughput=throughput,
        reference=ref,
        reference_hardware="v100x8" if ref else None,
        tolerance=0.05,
        gpus=8,
        error_bound=0.001 if status == "ok" else None,
        scale="full",
        recipe_hash="r1",
        commit="0123456789abcdef0123456789abcdef01234567",
        run_dir=str(run_dir),
        job_id=str(100 + n),
        started_at=f"2024-05-01T{n // 60:02d}:{n % 60:02d}:00+00:00",
        finished_at=f"2024-05-01T{n // 60:02d}:{n % 60:02d}:30+00:00",
        error=None if status == "ok" else f"{status}: something went wrong",
        provenance={"accelerator_model_name": "Tesla V100-SXM2-32GB", "cuda_driver_version": "535.54.03"},
    )
    fields.update(kw)
    r = Result(**fields)
    write_result(run_dir, r)
    return r


def submitted(
    run_dir: Path, impl: str, job_id: str = "42", running_marker: bool = False, sweep_dir: Path | None = None
) -> JobSpec:
    s = spec(run_dir, impl, sweep_dir=sweep_dir)
    append_manifest(s, job_id)
    if running_marker:
        (run_dir / STATUS_FILE).write_text(
            json.dumps({"state": "running", "started_at": "2024-05-01T00:00:00+00:00", "host": "node7", "pid": 1})
        )
    return s
