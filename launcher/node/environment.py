"""Software environments: how a row's command is wrapped so it runs with the row's stack.

One small class per kind, chosen by `impl.environment.kind`:

- `launcher`: the launcher's own Python (its bin directory first on PATH): rows that are the launcher's
  own code (torchvision, stand-ins). The default of the schema.
- `host`: the node's software as found on its PATH, unchanged (a seed row uses it only when asked).
- `venv`: a Python virtual environment; its `bin/activate` is sourced first.
- `conda`: `conda run -p PREFIX` (a path) or `-n NAME`, with `--no-capture-output` so the log streams.
- `container`: Apptainer / Singularity (`exec --nv --bind ... IMAGE bash -c ...`), or enroot via
  Slurm's pyxis plugin (`srun --container-image=... --container-mounts=...`).

The wrapped command is one shell line; `job_script` puts it in the script the node runs, and
`build_once` wraps each build step the same way, with the same process environment
(`command_environ`), so builds see the same compiler and Python as runs.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import JOBS_DIR
from ..spec import JobSpec
from .venv import managed_venv_path

KINDS = ("launcher", "host", "venv", "conda", "container")
RUNTIMES = ("apptainer", "singularity", "pyxis")


class EnvironmentSpecError(ValueError):
    """A row's environment spec that cannot be used (names the key and the allowed values)."""


def _q(s: str) -> str:
    return shlex.quote(str(s))


def _bash_c(command: str) -> str:
    return f"bash -c {_q(command)}"


def bind_paths(spec: JobSpec) -> list[str]:
    """Host directories a container must see: the checkout, the run dir, the data (the user's COCO folders
    and the staged layout whose links point into them, at the same paths), the weights, absolute input
    paths and (for repo-less rows) the launcher's jobs/ dir.  Nested paths are folded into their parent."""
    cands: list[str] = []
    ds = spec.dataset or {}
    for p in (
        spec.checkout_dir,
        spec.run_dir,
        spec.sweep_dir,
        spec.data_root,
        ds.get("stage_dir"),
        ds.get("coco2014_root"),
        spec.weights_dir if spec.weights else None,
    ):
        if p:
            cands.append(str(Path(p)))
    for p in (spec.paths or {}).values():
        if p and Path(p).is_absolute():
            cands.append(str(Path(p).parent))
    if not spec.repo:
        cands.append(str(JOBS_DIR.resolve()))
    out: list[str] = []
    for c in sorted(set(cands), key=len):
        if not any(c == o or c.startswith(o.rstrip("/") + "/") for o in out):
            out.append(c)
    return sorted(out)


@dataclass
class Environment:
    """Base: the `host` kind (no wrapping, the node's PATH as it is)."""

    spec: JobSpec
    kind: str = "host"
    path: str | None = None
    runtime: str = "apptainer"

    def wrap(self, command: str) -> str:
        return command

    def describe(self) -> str:
        return "the node's own software as found on its PATH (environment.kind=host)"


class Launcher(Environment):
    def describe(self) -> str:
        return f"the launcher's own Python ({sys.executable}; environment.kind=launcher)"


class Venv(Environment):
    def wrap(self, command: str) -> str:
        return f". {_q(str(Path(self.path) / 'bin' / 'activate'))} && {command}"

    def describe(self) -> str:
        if (self.spec.environment or {}).get("managed"):
            reqs = (self.spec.environment or {}).get("requirements") or []
            sees = (
                " that sees the launcher's packages" if (self.spec.environment or {}).get("host_packages", True) else ""
            )
            return f"launcher-managed venv {self.path}{sees}, made once per recipe before the build" + (
                f" with {' '.join(reqs)}" if reqs else ""
            )
        return f"Python virtual environment {self.path}"


class Conda(Environment):
    def wrap(self, command: str) -> str:
        flag = "-p" if ("/" in self.path or self.path.startswith(".")) else "-n"
        return f"conda run {flag} {_q(self.path)} --no-capture-output {_bash_c(command)}"

    def describe(self) -> str:
        return f"conda environment {self.path}"


class Container(Environment):
    def wrap(self, command: str) -> str:
        binds = bind_paths(self.spec)
        workdir = str(self.spec.exec_dir) if (self.spec.checkout_dir or self.spec.run_dir) else None
        if self.runtime in ("apptainer", "singularity"):
            parts = [self.runtime, "exec", "--nv"]
            if binds:
                parts += ["--bind", _q(",".join(binds))]
            if workdir:
                parts += ["--pwd", _q(workdir)]
            return " ".join(parts + [_q(self.path), _bash_c(command)])
        # pyxis: one task per node; the row's own launcher (torch.distributed, mpirun, ...) starts the
        # per-GPU processes inside the container
        parts = ["srun"]
        parts += ["--ntasks=1"] if self.spec.nodes <= 1 else [f"--nodes={self.spec.nodes}", "--ntasks-per-node=1"]
        parts.append(f"--container-image={_q(self.path)}")
        if binds:
            parts.append(f"--container-mounts={_q(','.join(f'{b}:{b}' for b in binds))}")
        if workdir:
            parts.append(f"--container-workdir={_q(workdir)}")
        return " ".join(parts + [_bash_c(command)])

    def describe(self) -> str:
        return f"container image {self.path} ({self.runtime})"


_CLASSES = {"launcher": Launcher, "host": Environment, "venv": Venv, "conda": Conda, "container": Container}


def environment_for(spec: JobSpec) -> Environment:
    """The Environment for SPEC's `environment` dict; raises EnvironmentSpecError on an unusable spec."""
    env: dict[str, Any] = dict(spec.environment or {})
    kind = env.get("kind") or "launcher"
    if kind not in _CLASSES:
        raise EnvironmentSpecError(f"impl.environment.kind={kind!r} for {spec.impl}; use one of {', '.join(KINDS)}")
    path = env.get("path")
    if env.get("managed"):
        if kind != "venv":
            raise EnvironmentSpecError(
                f"impl.environment.managed=true for {spec.impl} needs kind=venv (it is {kind!r})"
            )
        where = managed_venv_path(spec)
        path = str(where) if where else "<managed venv: made beside the prepared tree>"
    if kind not in ("host", "launcher") and not path:
        what = {"venv": "the venv directory", "conda": "the env name or prefix", "container": "the image"}[kind]
        raise EnvironmentSpecError(f"impl.environment.kind={kind} for {spec.impl} needs impl.environment.path ({what})")
    runtime = env.get("runtime") or "apptainer"
    if kind == "container" and runtime not in RUNTIMES:
        raise EnvironmentSpecError(
            f"impl.environment.runtime={runtime!r} for {spec.impl}; use one of {', '.join(RUNTIMES)}"
        )
    return _CLASSES[kind](spec=spec, kind=kind, path=path, runtime=runtime)


def wrap_command(spec: JobSpec, command: str) -> str:
    """COMMAND wrapped to run in SPEC's environment (see the module docstring)."""
    return environment_for(spec).wrap(command)


def command_environ(spec: JobSpec, base: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment a row's build steps and its command both start with: this process's, the
    row's env vars, unbuffered Python, and for `launcher` rows this interpreter's bin directory first on
    PATH (so `python` / `torchrun` are the launcher's). Every other kind leaves PATH to its wrapper."""
    env = dict(os.environ if base is None else base)
    env.update({k: str(v) for k, v in (spec.env or {}).items()})
    env["PYTHONUNBUFFERED"] = "1"
    if (spec.environment or {}).get("kind", "launcher") in ("launcher", None, ""):
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def environment_problems(spec: JobSpec) -> list[str]:
    """What is visibly wrong with the environment on this (submit) host: a bad spec, a venv without
    bin/activate, a container image file that is not there.  Registry images and conda env names
    cannot be checked here and are not reported."""
    try:
        env = environment_for(spec)
    except EnvironmentSpecError as exc:
        return [str(exc)]
    problems = []
    managed = bool((spec.environment or {}).get("managed"))  # made on the node by build_once
    recipe = f"jobs/{spec.impl}/{(spec.environment or {}).get('recipe') or 'environment.yml'}"
    make = (
        f"make it on a host with internet: python -m launcher.env create impl={spec.impl} ({recipe})"
        if (spec.environment or {}).get("create")
        else f"build it from {recipe}"
    )
    if env.kind == "venv" and not managed and not (Path(env.path) / "bin" / "activate").is_file():
        problems.append(f"environment: venv {env.path} has no bin/activate ({make}, or fix impl.environment.path)")
    if env.kind == "conda" and "/" in env.path and not (Path(env.path) / "conda-meta").is_dir():
        problems.append(
            f"environment: conda prefix {env.path} does not exist (no conda-meta/): {make}, or point "
            f"impl.environment.path at yours (impl.environment.kind=host runs on the node's own software)"
        )
    if env.kind == "container" and env.runtime != "pyxis" and "://" not in env.path and not Path(env.path).exists():
        problems.append(
            f"environment: container image {env.path} does not exist ({make}, or fix impl.environment.path)"
        )
    return problems
