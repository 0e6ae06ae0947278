"""`dry_run=true`: exactly what would run for a row, rendered from its plan; nothing is touched.

The plan is complete before anything is written (launcher/plan.py), so a dry run shows the very
script the node would run (launcher/node/script.py), the backend's placement, and removes the
directory Hydra made for it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import fit, weights
from .backends import get_backend
from .data import stage
from .spec import JobSpec
from .node.environment import EnvironmentSpecError, environment_for, environment_problems


def render_plan(spec: JobSpec, script: str | None) -> str:
    lines = [
        f"# dry run: {spec.title} ({spec.impl}) on {spec.hardware} via {spec.backend}; nothing is touched",
        f"repository:      {spec.repo or '(none: runs from the launcher package)'}",
        f"commit:          {spec.commit or '-'}" + (f"  ({spec.commit_note})" if spec.commit_note else ""),
        "patches:         " + (", ".join(f"{p['name']} ({p['kind']})" for p in spec.patches) or "none"),
        f"stack:           {spec.stack}"
        + (
            "; compat patches: " + ", ".join(f"{p['name']} ({p['kind']})" for p in spec.compat_patches)
            if spec.compat_patches
            else ""
        )
        + (f"; BLOCKED: {spec.blocker}" if spec.blocker else ""),
        "env vars:        " + (" ".join(f"{k}={v}" for k, v in spec.env.items()) or "none"),
        f"working dir:     {spec.workdir}" + ("" if spec.repo else " (the run directory)"),
        f"command:         {spec.command}",
        f"log:             {spec.log_format} format, read from {spec.log_path or 'the captured output (train.log)'}",
        f"window:          iterations {spec.window[0]}-{spec.window[1]} ({spec.window[1] - spec.window[0]} iterations "
        f"x {spec.images_per_iter} images)" + ("  [CPU smoke scale]" if spec.scale == "smoke" else ""),
        f"resources:       {spec.nodes} node, {spec.gpus} GPU ({spec.gpu_model}), {spec.cpus} CPUs, {spec.mem_gb} GB, "
        f"time limit {spec.time_limit_min} min",
        f"reference:       {spec.reference if spec.reference is not None else '-'} img/s on {spec.reference_hardware or '-'}",
        f"run dir:         {spec.run_dir} (not created)",
    ]
    if spec.paths:
        lines.append("inputs checked:  " + ", ".join(f"{k}={v}" for k, v in spec.paths.items()))
    lines += environment_lines(spec) + stage.describe(spec) + weights.describe(spec) + fit.describe(spec)
    try:
        lines += get_backend(spec.backend, spec.backend_config).describe(spec)
    except Exception as e:  # a dry run describes; it must not fail on an unreachable backend
        lines.append(f"{spec.backend}: cannot describe the placement ({e})")
    if script:
        lines += ["", "# the script the node runs:", script.rstrip()]
    return "\n".join(lines)


def environment_lines(spec: JobSpec) -> list[str]:
    """The row's environment: where, whether it is there, the software the node checks, how it is made."""
    env = spec.environment or {}
    try:
        where = environment_for(spec).describe()
    except EnvironmentSpecError as e:
        return [f"environment:     {e}"]
    missing = environment_problems(spec)
    lines = [
        f"environment:     {where}"
        + (" [MISSING: python -m launcher.env create impl=" + spec.impl + "]" if missing else "")
    ]
    if env.get("software"):
        lines.append(
            "  software       "
            + ", ".join(f"{k} {v}" for k, v in env["software"].items())
            + (
                "  (compared on the node before the command)"
                if env.get("check", True) is not False
                else "  (not checked: impl.environment.check=false)"
            )
        )
    for i, step in enumerate(env.get("create") or []):
        lines.append(f"  {'made by' if i == 0 else '':<15}{step}")
    return lines


def remove_hydra_traces(directory: Path, extra: tuple[str, ...] = ()) -> None:
    """A dry run touches nothing: remove the directory Hydra made for it (its .hydra/ and log only),
    and the parents that leaves empty, up to the current directory."""
    directory = directory.resolve()
    if not directory.is_dir():
        return
    ours = {".hydra", "multirun.yaml", *extra}
    entries = list(directory.iterdir())
    if any(e.name not in ours and not (e.suffix == ".log" and e.stat().st_size == 0) for e in entries):
        return
    for e in entries:
        shutil.rmtree(e) if e.is_dir() else e.unlink()
    cwd = Path.cwd().resolve()
    d = directory
    while d != cwd and cwd in d.parents and not any(d.iterdir()):
        d.rmdir()
        d = d.parent
