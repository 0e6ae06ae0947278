"""Provenance: the machine as a job saw it, captured on the node at the start of every job.

A figure without its machine is not comparable: the table joins GPU model, driver, commit and
recipe hash beside each throughput, and `result.json["provenance"]` / `provenance.json` keep the
rest. Field names follow MLPerf's system description JSON (`accelerator_model_name`,
`accelerators_per_node`, `host_processor_model_name`, `framework`, `operating_system`, ...) where one
exists, so a reader who knows MLPerf submissions knows what each field means.

Every probe is cheap and guarded: a missing tool (no `nvidia-smi` on a CPU machine, no framework in
the environment) leaves its fields `None`, and nothing here ever raises into the run. The framework
probe runs in a subprocess with a timeout, so the launcher process never pays for importing torch or
TensorFlow and a hanging import cannot hang the job.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..rundir import JOB_ID_VAR, JOB_NODES_VAR, JOB_NUM_NODES_VAR, PROVENANCE_FILE, SCHEDULER_ENV_VAR, atomic_write_json
from ..spec import JobSpec
from . import framework_probe

SCHEMA = 1

#: Environment variables that name the devices, the container or the Python environment (the scheduler's
#: come from the backend: SCHEDULER_ENV_VAR).
CONTAINER_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "APPTAINER_CONTAINER",
    "SINGULARITY_CONTAINER",
    "ENROOT_ROOTFS",
    "PYXIS_CONTAINER_IMAGE",
    "NVIDIA_PYTORCH_VERSION",
    "NVIDIA_TENSORFLOW_VERSION",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "VIRTUAL_ENV",
)

# launcher/node/framework_probe.py, sent as `python -c <its text> FRAMEWORK` to the row's own Python.
_PROBE = (Path(__file__).parent / "framework_probe.py").read_text(encoding="utf-8")


def _safe(fn: Callable[[], Any], default: Any = None) -> Any:
    """Run one probe; any failure is a missing field, never a failed run."""
    try:
        return fn()
    except Exception:
        return default


def _run(cmd: list[str], timeout: float = 20, env: dict[str, str] | None = None) -> str | None:
    """stdout of a command, or None when the tool is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None and not os.path.isabs(cmd[0]):
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return p.stdout if p.returncode == 0 else None


def _nvidia_smi() -> dict[str, Any]:
    """GPU model, count, memory and driver from `nvidia-smi --query-gpu`; the topology matrix from `topo -m`."""
    out: dict[str, Any] = {}
    q = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    if q:
        rows = [[c.strip() for c in line.split(",")] for line in q.splitlines() if line.strip()]
        if rows:
            names = sorted({r[0] for r in rows})
            out["accelerator_model_name"] = ", ".join(names)
            out["accelerators_per_node"] = len(rows)
            if len(rows[0]) > 1:
                out["accelerator_memory_capacity"] = rows[0][1]
            if len(rows[0]) > 2:
                out["cuda_driver_version"] = rows[0][2]
    header = _run(["nvidia-smi"])
    if header:
        for line in header.splitlines():
            if "CUDA Version" in line:
                # the highest CUDA the driver supports (the toolkit the framework uses comes from the probe)
                out["cuda_driver_api_version"] = line.split("CUDA Version:")[-1].strip(" |")
                break
    topo = _run(["nvidia-smi", "topo", "-m"])
    if topo:
        out["accelerator_interconnect_topology"] = topo.rstrip()
        links = sorted({tok for tok in topo.split() if tok.startswith("NV") and tok[2:].isdigit()})
        if links:  # NV# = a bonded set of # NVLinks between two GPUs
            out["accelerator_interconnect"] = "NVLink (" + ", ".join(links) + ")"
        elif "PIX" in topo or "PXB" in topo or "PHB" in topo or "SYS" in topo:
            out["accelerator_interconnect"] = "PCIe"
    return out


def _cpu() -> dict[str, Any]:
    """CPU model, sockets and cores from /proc/cpuinfo (Linux), else `platform`."""
    out: dict[str, Any] = {
        "host_processor_model_name": None,
        "host_processors_per_node": None,
        "host_processor_core_count": None,
    }
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    models, sockets, cores = set(), set(), None
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "model name":
            models.add(val)
        elif key == "physical id":
            sockets.add(val)
        elif key == "cpu cores" and cores is None:
            cores = _safe(lambda: int(val))
    out["host_processor_model_name"] = ", ".join(sorted(models)) or platform.processor() or None
    out["host_processors_per_node"] = len(sockets) or (1 if models else None)
    out["host_processor_core_count"] = cores
    out["host_cpus_logical"] = os.cpu_count()
    out["host_cpus_available"] = _safe(lambda: len(os.sched_getaffinity(0)))
    return out


def _memory() -> str | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024**2:.1f} GB"
    return None


def _os() -> str:
    pretty = None
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    kernel = f"{platform.system()} {platform.release()}"
    return f"{pretty} ({kernel})" if pretty else kernel


def _in_row_environment(spec: Any, framework: str | None) -> tuple[list[str], dict[str, str]] | None:
    """The framework probe as the row's command runs: `python` inside the row's environment (the launcher's own
    interpreter first on PATH, a venv's or managed venv's activate, conda run, the container), with the row's env
    vars. None when SPEC is not a JobSpec (a dict from provenance's command line): the caller's Python then."""
    if not isinstance(spec, JobSpec):
        return None
    from .environment import EnvironmentSpecError, command_environ, wrap_command

    try:
        command = wrap_command(spec, f"python -c {shlex.quote(_PROBE)} {shlex.quote(framework or '')}")
    except EnvironmentSpecError:
        return None
    return ["bash", "-c", command], command_environ(spec)


def _same_interpreter_without_import(spec: Any, framework: str | None) -> bool:
    if not isinstance(spec, JobSpec) or (framework or "").lower() in framework_probe.IMPORTS:
        return False
    from .environment import EnvironmentSpecError, environment_for
    from .software import same_interpreter

    try:
        return same_interpreter(spec, environment_for(spec).kind)
    except EnvironmentSpecError:
        return False


def probe_framework(
    framework: str | None, python: str | None = None, timeout: float = 60, spec: Any = None
) -> dict[str, Any]:
    """Framework, CUDA, cuDNN and NCCL versions as the row's Python imports them (subprocess, timeout): PYTHON
    when given, else the row's own environment (SPEC), else this interpreter.

    A row that runs this very interpreter with a framework the probe does not import (a stand-in, say) is
    answered in-process: the subprocess would start a Python only to name it."""
    if python is None and _same_interpreter_without_import(spec, framework):
        return framework_probe.probe((framework or "").lower())
    cmd, env = (None if python else _in_row_environment(spec, framework)) or (None, None)
    out = _run(cmd or [python or sys.executable, "-c", _PROBE, framework or ""], timeout=timeout, env=env)
    if not out:
        return {}
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {}
    return data if isinstance(data, dict) else {}


def _get(spec: Any, name: str) -> Any:
    if spec is None:
        return None
    if isinstance(spec, dict):
        return spec.get(name)
    return getattr(spec, name, None)


def capture(
    spec: Any = None, *, python: str | None = None, probe: bool = True, probe_timeout: float = 60
) -> dict[str, Any]:
    """Describe this machine and job; `spec` (a JobSpec or its dict, or None) adds row, commit and recipe.

    Never raises: each probe that fails leaves its field None. `probe=False` skips the framework
    subprocess (the only probe that may take seconds).
    """
    environ = os.environ
    framework_name = _get(spec, "framework")
    prov: dict[str, Any] = {
        "schema": SCHEMA,
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "system_name": _safe(socket.gethostname),
        "host_name": _safe(socket.getfqdn),
        "number_of_nodes": _safe(lambda: int(environ[JOB_NUM_NODES_VAR])) or _get(spec, "nodes"),
        "accelerator_model_name": None,
        "accelerators_per_node": 0 if shutil.which("nvidia-smi") is None else None,
        "accelerator_memory_capacity": None,
        "accelerator_interconnect": None,
        "accelerator_interconnect_topology": None,
        "cuda_driver_version": None,
        "cuda_driver_api_version": None,
        "cuda_version": None,
        "cudnn_version": None,
        "nccl_version": None,
        "host_memory_capacity": _safe(_memory),
        "operating_system": _safe(_os),
        "python_version": platform.python_version(),
        "framework": None,
        "framework_name": framework_name,
        "framework_version": None,
        "environment": None,
        "container_image": None,
        "scheduler_job_id": None,
        "scheduler_node_list": None,
        "impl": _get(spec, "impl"),
        "hardware": _get(spec, "hardware"),
        "repo": _get(spec, "repo"),
        "commit": _get(spec, "commit_full") or _get(spec, "commit"),
        "pinned_commit": _get(spec, "pinned_commit"),
        "recipe_hash": _get(spec, "recipe_hash"),
        "launcher_version": None,
        "env": {
            **_safe(lambda: dict(json.loads(environ[SCHEDULER_ENV_VAR])), {}),
            **{k: environ[k] for k in CONTAINER_ENV if k in environ},
        },
    }
    prov.update(_safe(_cpu, {}))
    prov.update(_safe(_nvidia_smi, {}))
    prov["launcher_version"] = _safe(lambda: __import__("launcher").__version__)

    _add_scheduler(prov, environ)
    _add_environment(prov, _get(spec, "environment"), environ)
    if probe:
        found = _safe(lambda: probe_framework(framework_name, python, probe_timeout, spec), {})
        for key in ("framework_version", "cuda_version", "cudnn_version", "nccl_version", "framework_error"):
            if found.get(key) is not None:
                prov[key] = found[key]
        if found.get("python_version"):
            prov["python_version"] = found["python_version"]  # the row's Python, not the launcher's
            prov["python_executable"] = found.get("python_executable")
    if framework_name:
        prov["framework"] = (
            f"{framework_name} {prov['framework_version']}" if prov["framework_version"] else framework_name
        )
    return prov


def _add_scheduler(prov: dict[str, Any], environ: Any) -> None:
    """The scheduler's name for the job and its nodes, as the backend passed them to the node."""
    prov["scheduler_job_id"] = environ.get(JOB_ID_VAR) or None
    prov["scheduler_node_list"] = environ.get(JOB_NODES_VAR) or None


def _add_environment(prov: dict[str, Any], env_cfg: Any, environ: Any) -> None:
    """The environment the row runs in, as configured (impl.environment) and as seen (container, venv, conda)."""
    if isinstance(env_cfg, dict) and env_cfg:
        prov["environment"] = {k: env_cfg.get(k) for k in ("kind", "path", "runtime", "recipe") if env_cfg.get(k)}
        if env_cfg.get("kind") == "container":
            prov["container_image"] = env_cfg.get("path")
    for key in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", "PYXIS_CONTAINER_IMAGE"):
        if environ.get(key) and not prov["container_image"]:
            prov["container_image"] = environ[key]
    if prov["environment"] is None:
        seen = environ.get("VIRTUAL_ENV") or environ.get("CONDA_PREFIX")
        prov["environment"] = (
            {"kind": "venv" if environ.get("VIRTUAL_ENV") else "conda", "path": seen}
            if seen
            else {"kind": "host", "path": sys.prefix}
        )


def write(run_dir: str | os.PathLike, prov: dict[str, Any]) -> Path:
    """Save `provenance.json` atomically in the run dir."""
    path = Path(run_dir) / PROVENANCE_FILE
    atomic_write_json(path, prov)
    return path


if __name__ == "__main__":  # python -m launcher.node.provenance [RUN_DIR]: print what a job here would record
    spec = None
    if len(sys.argv) > 1:
        spec = JobSpec.load(sys.argv[1])
    print(json.dumps(capture(spec), indent=2, default=str))
