"""Provenance on this machine (no GPU), with a stand-in nvidia-smi, with broken tools, and with Slurm ids."""

from __future__ import annotations

import json
import os
import platform
import stat
import sys
from pathlib import Path

import pytest

from launcher.node import provenance
from launcher.spec import JobSpec

MLPERF_FIELDS = (
    "accelerator_model_name",
    "accelerators_per_node",
    "host_processor_model_name",
    "host_processors_per_node",
    "framework",
    "operating_system",
    "cuda_version",
    "cudnn_version",
    "nccl_version",
    "accelerator_interconnect_topology",
)


def _spec(tmp_path, framework="PyTorch"):
    return JobSpec(
        impl="torchvision",
        label="x",
        title="x",
        framework=framework,
        command="true",
        images_per_iter=2,
        window=[2, 8],
        log_format="torchvision",
        run_dir=str(tmp_path),
        hardware="local",
        commit="v0.1",
        commit_full="a" * 40,
        recipe_hash="b" * 64,
    )


def _path_without_nvidia_smi(monkeypatch, tmp_path, stand_in: str | None = None):
    """PATH = an empty bin dir (plus a stand-in nvidia-smi when given) + the Python's own dir."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    if stand_in is not None:
        exe = bindir / "nvidia-smi"
        exe.write_text(stand_in)
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.path.dirname(sys.executable)}")


def test_capture_without_gpus_leaves_fields_empty(tmp_path, monkeypatch):
    _path_without_nvidia_smi(monkeypatch, tmp_path)
    for k in ("SLURM_JOB_ID", "RAY_JOB_ID"):
        monkeypatch.delenv(k, raising=False)
    p = provenance.capture(_spec(tmp_path), probe=False)
    for f in MLPERF_FIELDS:
        assert f in p
    assert p["accelerator_model_name"] is None and p["accelerators_per_node"] == 0
    assert p["cuda_driver_version"] is None and p["accelerator_interconnect_topology"] is None
    assert p["host_processor_model_name"] and p["host_cpus_logical"] == os.cpu_count()
    assert p["python_version"] == platform.python_version()
    assert p["commit"] == "a" * 40 and p["recipe_hash"] == "b" * 64 and p["impl"] == "torchvision"
    assert p["scheduler_job_id"] is None
    json.dumps(p)  # serialisable as provenance.json / result.json["provenance"]


def test_framework_probe_reports_what_the_row_python_imports(tmp_path):
    import importlib.metadata

    p = provenance.capture(_spec(tmp_path), python=sys.executable)
    torch_version = importlib.metadata.version("torch")
    assert p["framework_version"].split("+")[0] == torch_version.split("+")[0]
    assert p["framework"] == f"PyTorch {p['framework_version']}"


def test_missing_framework_and_python_never_raise(tmp_path):
    p = provenance.capture(_spec(tmp_path, framework="MXNet"), python=sys.executable)
    assert p["framework_version"] is None and "framework_error" in p  # no mxnet here
    p = provenance.capture(_spec(tmp_path), python=str(tmp_path / "no-such-python"))
    assert p["framework_version"] is None and p["framework"] == "PyTorch"
    assert provenance.capture(None, probe=False)["impl"] is None


# A stand-in for the driver's tool (GPUs cannot exist here): prints nvidia-smi's real output formats.
STAND_IN = r"""#!/bin/sh
# stand-in nvidia-smi for tests: real output formats, no GPU
case "$*" in
  *--query-gpu*) printf 'Tesla V100-SXM2-32GB, 32768 MiB, 535.54.03\nTesla V100-SXM2-32GB, 32768 MiB, 535.54.03\n' ;;
  "topo -m") printf '\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tNV2\t0-19\nGPU1\tNV2\t X \t0-19\n' ;;
  "") printf '| NVIDIA-SMI 535.54.03   Driver Version: 535.54.03   CUDA Version: 12.2     |\n' ;;
  *) exit 9 ;;
esac
"""


def test_nvidia_smi_output_is_parsed(tmp_path, monkeypatch):
    _path_without_nvidia_smi(monkeypatch, tmp_path, STAND_IN)
    p = provenance.capture(None, probe=False)
    assert p["accelerator_model_name"] == "Tesla V100-SXM2-32GB"
    assert p["accelerators_per_node"] == 2 and p["accelerator_memory_capacity"] == "32768 MiB"
    assert p["cuda_driver_version"] == "535.54.03" and p["cuda_driver_api_version"] == "12.2"
    assert "NV2" in p["accelerator_interconnect_topology"] and p["accelerator_interconnect"] == "NVLink (NV2)"


def test_failing_nvidia_smi_leaves_fields_empty(tmp_path, monkeypatch):
    _path_without_nvidia_smi(monkeypatch, tmp_path, "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    p = provenance.capture(None, probe=False)
    assert p["accelerator_model_name"] is None and p["cuda_driver_version"] is None


def test_scheduler_ids(tmp_path, monkeypatch):
    """The node records what the backend read inside its job (Backend.job_environ), in the form the
    manifest has: an array task as ARRAYID_INDEX, as sacct -j takes it and result.json's job_id says."""
    from launcher.backends.slurm import SlurmBackend

    slurm = {"SLURM_JOB_ID": "1234", "SLURM_JOB_NODELIST": "gpu[01-02]", "SLURM_JOB_NUM_NODES": "2"}
    for k, v in SlurmBackend.job_environ(slurm).items():
        monkeypatch.setenv(k, v)
    p = provenance.capture(None, probe=False)
    assert p["scheduler_job_id"] == "1234" and p["scheduler_node_list"] == "gpu[01-02]"
    assert p["number_of_nodes"] == 2 and p["env"]["SLURM_JOB_ID"] == "1234"
    array = {**slurm, "SLURM_ARRAY_JOB_ID": "1200", "SLURM_ARRAY_TASK_ID": "3"}
    monkeypatch.setenv("LAUNCHER_JOB_ID", SlurmBackend.job_environ(array)["LAUNCHER_JOB_ID"])
    assert provenance.capture(None, probe=False)["scheduler_job_id"] == "1200_3"


def test_container_environment_from_spec(tmp_path):
    s = _spec(tmp_path)
    s.environment = {"kind": "container", "path": "/images/d2.sif", "runtime": "apptainer"}
    p = provenance.capture(s, probe=False)
    assert p["container_image"] == "/images/d2.sif" and p["environment"]["kind"] == "container"


def test_write_is_atomic_json(tmp_path):
    path = provenance.write(tmp_path, provenance.capture(None, probe=False))
    assert json.loads(path.read_text())["schema"] == provenance.SCHEMA


@pytest.mark.timeout(60)
def test_capture_is_cheap_without_probe(tmp_path):
    import time

    t = time.perf_counter()
    provenance.capture(None, probe=False)
    assert time.perf_counter() - t < 5


def test_the_framework_probe_runs_in_the_rows_environment(tmp_path, monkeypatch):
    """Provenance records the framework the row's command imports: a venv row's probe runs inside its venv (not the
    `python` first on the node's PATH, which may be another interpreter); a launcher row's is this interpreter."""
    import dataclasses
    import subprocess

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    row = dataclasses.replace(_spec(tmp_path), environment={"kind": "venv", "path": str(venv)})
    p = provenance.capture(row)
    assert p["python_executable"] == str(venv / "bin" / "python")  # the venv's, though it sees no torch
    assert p["framework_version"] is None and "torch" in p["framework_error"]
    monkeypatch.setenv("PATH", f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")  # another `python` first on PATH
    p = provenance.capture(dataclasses.replace(_spec(tmp_path), environment={"kind": "launcher"}))
    assert Path(p["python_executable"]).parent == Path(sys.executable).parent and p["framework_version"]


def test_a_launcher_row_with_nothing_to_import_is_probed_in_process(tmp_path, monkeypatch):
    """A row that runs the launcher's own Python with a framework the probe does not import (a stand-in) has its
    Python named without a subprocess (it started one only to say so): the same answer the subprocess gives."""
    import dataclasses
    import subprocess

    real_run, started = subprocess.run, []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: started.append(a) or real_run(*a, **k))
    row = dataclasses.replace(_spec(tmp_path, framework="stand-in"), environment={"kind": "launcher"})
    fast = provenance.probe_framework("stand-in", spec=row)
    assert not started
    slow = provenance.probe_framework("stand-in", spec=dataclasses.replace(row, env={"PYTHONPATH": str(tmp_path)}))
    assert len(started) == 1
    assert fast == slow and fast["python_executable"] and "framework_version" not in fast
    provenance.probe_framework("pytorch", spec=row)  # a framework it imports: always in the row's own Python
    assert len(started) == 2
