"""Rows whose build compiles extensions (`impl.environment.cuda_extensions: true`): built where the network
is, checked where they run.

* **Where it is built.** A launcher-managed environment (`stack=today`) and the row's compiled extensions
  are made on the submit / login host, by `prepare_only=true` or by the submission itself, once per recipe
  under `cache_dir` (the shared filesystem on a cluster), for the hardware group's GPU architectures
  (`hardware.compute_capability`, TORCH_CUDA_ARCH_LIST; several: `hardware.compute_capability='8.0;9.0'`).
  The compute node never runs pip or a compiler: `built_problems` tells it, before the command takes the
  GPUs, that the build is missing or stale, and which command makes it.
* **Before the compiler** (`before_build`): the toolchain (launcher/node/toolchain.py) is found and checked:
  nvcc's CUDA against the framework's, the host gcc within nvcc's range, CUDA_HOME. On the seed stack (the
  row's own conda environment, built on the node) the same checks run inside that environment against the
  row's `software.cuda` (CUDA 10.1 needs gcc 5-8).
* **After** (`after_build`): every extension module holds device code for every target architecture, or
  the build fails (no marker is written, so nothing runs on a CPU-only `_C`).
"""

from __future__ import annotations

import importlib.metadata
import json
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..spec import JobSpec
from .environment import wrap_command
from .toolchain import (
    ToolchainError,
    Toolkit,
    arch_list,
    build_environ,
    device_code_problems,
    gcc_range,
    resolve_toolkit,
    toolchain_problems,
)


def is_compiled(spec: JobSpec) -> bool:
    return bool((spec.environment or {}).get("cuda_extensions"))


def cuda_archs(spec: JobSpec) -> list[str]:
    """The GPU architectures the row's extensions are compiled for ([] on a CPU hardware group)."""
    return arch_list(spec.compute_capability) if is_compiled(spec) else []


def builds_on_submit_host(spec: JobSpec) -> bool:
    """A launcher-managed environment (stack=today) and its build are made where the network is."""
    env = spec.environment or {}
    return env.get("kind") == "venv" and bool(env.get("managed"))


def cache_of(spec: JobSpec) -> Path:
    """cache_dir, as the prepared tree's place says (<cache_dir>/trees/<name>)."""
    return Path(spec.checkout_dir).parent.parent if spec.checkout_dir else Path.cwd()


def build_log_path(spec: JobSpec) -> Path:
    from .build import marker_path

    m = marker_path(spec)
    return m.with_name(m.name.replace(".json", ".log"))


def make_command(spec: JobSpec) -> str:
    """The command that makes SPEC's build on a host with the network (a login node)."""
    parts = ["python", "-m", "launcher", f"impl={spec.impl}", f"stack={spec.stack}", f"hardware={spec.hardware}"]
    if spec.compute_capability and spec.hardware == "local":
        parts.append(f"hardware.compute_capability={spec.compute_capability}")
    if spec.repo:
        parts.append(f"impl.repo={spec.repo}")
    parts += [f"cache_dir={cache_of(spec)}", "prepare_only=true"]
    return " ".join(shlex.quote(p) for p in parts)


def _in_env(spec: JobSpec, env: dict[str, str], line: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", wrap_command(spec, line)],
        cwd=spec.exec_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _torch_info(spec: JobSpec, env: dict[str, str]) -> dict:
    out = _in_env(
        spec,
        env,
        'python -c \'import json, torch; print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda}))\'',
    )
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ToolchainError(
            f"cannot import torch in {spec.impl}'s environment to read its CUDA version (exit "
            f"{out.returncode}): {(out.stdout + out.stderr).strip()[-800:]}"
        ) from None


def host_torch_version() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def _seed_checks(spec: JobSpec, env: dict[str, str], archs: list[str], write: Callable[[str], None]) -> dict:
    """A row's own (seed) environment: its nvcc and the host gcc against its software.cuda, inside it."""
    want = str(((spec.environment or {}).get("software") or {}).get("cuda") or "")
    out = _in_env(
        spec,
        env,
        'nvcc --version 2>&1 | tail -2; echo "@cxx $(${CXX:-c++} -dumpfullversion -dumpversion 2>&1)"; '
        'echo "@home ${CUDA_HOME:-}"',
    )
    text = out.stdout
    from .toolchain import _version_of

    nv = _version_of(text)
    cxx = next((ln[5:].strip() for ln in text.splitlines() if ln.startswith("@cxx ")), "")
    problems = []
    if nv is None:
        problems.append(
            f"no nvcc in {spec.impl}'s environment: its build compiles CUDA ops; install the CUDA "
            f"{want or ''} toolkit into it (docs/cluster.md, 'CUDA 10 toolkit') or set CUDA_HOME"
        )
    elif want and _version_of(want) and (nv[0], nv[1]) != _version_of(want):
        problems.append(
            f"nvcc in {spec.impl}'s environment is CUDA {nv[0]}.{nv[1]} and its stack was built with CUDA "
            f"{want}: put the CUDA {want} toolkit first on PATH (and CUDA_HOME)"
        )
    if nv is not None:
        low, high = gcc_range(Toolkit(home=Path("/nonexistent"), nvcc=Path("nvcc"), version=nv, source="env"))
        gv = _version_of(cxx)
        if gv is None:
            problems.append(
                f"no host C++ compiler in {spec.impl}'s environment ({cxx!r}): nvcc {nv[0]}.{nv[1]} needs "
                f"gcc {low}-{high}"
            )
        elif gv[0] < low or (high is not None and gv[0] > high):
            problems.append(
                f"the host compiler is gcc {cxx} and CUDA {nv[0]}.{nv[1]}'s nvcc accepts gcc {low} to "
                f"{high}: load a gcc in that range (`module load gcc/{high}`, or conda's gxx_linux-64="
                f"{high}) and set CXX/CC to it"
            )
    if problems:
        raise ToolchainError("the toolchain cannot build this row's CUDA ops:\n  " + "\n  ".join(problems))
    if archs:
        env["TORCH_CUDA_ARCH_LIST"] = ";".join(archs)
    write(f"[launcher] toolchain: nvcc {nv[0]}.{nv[1]}, gcc {cxx} in {spec.impl}'s environment")
    return {"archs": archs, "cuda": f"{nv[0]}.{nv[1]}", "host_compiler": f"gcc {cxx}"}


def before_build(spec: JobSpec, env: dict[str, str], write: Callable[[str], None]) -> dict:
    """Find and check the toolchain (raises ToolchainError), set ENV for the build; what the marker records."""
    archs = cuda_archs(spec)
    if not builds_on_submit_host(spec):
        return _seed_checks(spec, env, archs, write) if archs else {"archs": []}
    info: dict = {"archs": archs, "torch": host_torch_version()}
    if not archs:
        write(
            f"[launcher] build: {spec.impl} for CPU (hardware {spec.hardware} has no compute_capability): "
            "its extensions get no device code"
        )
        env["FORCE_CUDA"] = "0"
        env["CUDA_VISIBLE_DEVICES"] = ""
        return info
    fw = _torch_info(spec, env)
    toolkit = resolve_toolkit(spec.cuda_toolkit, fw.get("cuda"), cache_of(spec), write, env)
    from .toolchain import host_compiler

    compiler = host_compiler(env)
    problems = toolchain_problems(toolkit, fw.get("cuda"), compiler)
    if problems:
        raise ToolchainError(
            f"the toolchain cannot build {spec.impl}'s CUDA extensions for "
            f"{', '.join('sm_' + a.replace('.', '') for a in archs)}:\n  " + "\n  ".join(problems)
        )
    env.update(build_environ(toolkit, archs))
    write(
        f"[launcher] toolchain: {toolkit.describe()}; torch {fw.get('torch')} (CUDA {fw.get('cuda')}); host "
        f"compiler {compiler[0]} ({compiler[2]} {'.'.join(map(str, compiler[1] or ()))}); "
        f"TORCH_CUDA_ARCH_LIST={env['TORCH_CUDA_ARCH_LIST']}"
        + (f", MAX_JOBS={env['MAX_JOBS']}" if env.get("MAX_JOBS") else "")
    )
    info.update(
        cuda=toolkit.version_text,
        toolkit=toolkit.describe(),
        framework_cuda=fw.get("cuda"),
        host_compiler=f"{compiler[2]} {'.'.join(map(str, compiler[1] or ()))}",
    )
    return info


def after_build(spec: JobSpec, write: Callable[[str], None]) -> dict:
    """Proof of device code for every target architecture (raises ToolchainError); what the marker records."""
    archs = cuda_archs(spec)
    if not archs:
        return {}
    host_only = list((spec.environment or {}).get("host_only_extensions") or ())
    problems, report = device_code_problems(Path(spec.checkout_dir or spec.exec_dir), archs, host_only)
    for mod, sms in report.items():
        write(f"[launcher] device code: {mod}: {', '.join(sms) or 'none'}")
    if problems:
        raise ToolchainError("the build is not usable on hardware " + spec.hardware + ":\n  " + "\n  ".join(problems))
    return {"device_code": report}


def built_problems(spec: JobSpec) -> str | None:
    """On the node, before the command: why SPEC's build cannot be used here (None: it can).
    The node never builds a launcher-managed environment: missing or stale, it says which command makes it."""
    if not builds_on_submit_host(spec):
        return None
    from .build import marker_path
    from .venv import managed_venv_path, venv_state

    how = f"build it where the network is (a login node), into the same cache_dir: {make_command(spec)}"
    state = venv_state(spec)
    if state != "ok":
        return f"the row's environment {managed_venv_path(spec)} is {state}: the node installs nothing; {how}"
    marker = marker_path(spec)
    if not (spec.build or is_compiled(spec)):
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"recipe {(spec.recipe_hash or '')[:16]} of {spec.impl} is not built ({marker} is missing): {how}"
    archs = cuda_archs(spec)
    if is_compiled(spec) and data.get("archs") is not None and data.get("archs") != archs:
        return (
            f"{spec.impl} was built for {data.get('archs') or 'CPU'} and hardware {spec.hardware} needs "
            f"{archs or 'CPU'}: {how}"
        )
    torch_now = host_torch_version()
    if data.get("torch") and torch_now and data["torch"] != torch_now:
        return f"{spec.impl} was built against torch {data['torch']} and this Python has torch {torch_now}: {how}"
    return None
