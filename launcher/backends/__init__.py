"""Backends: where a row runs. `local` (here, now), `slurm` (submitit), `ray` (Ray Jobs API).

Each backend module is imported only when asked for, so `ray` (heavy) and `submitit` are loaded by
the runs that use them and never by a login-node `gather`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import Backend, JobState

_BACKENDS = {"local": "local:LocalBackend", "slurm": "slurm:SlurmBackend", "ray": "ray:RayBackend"}


def get_backend(name: str, config: dict | None = None) -> Backend:
    """The backend called `name`, configured with the `backend` config group's keys (a dict)."""
    try:
        mod, cls = _BACKENDS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(_BACKENDS)}") from None
    return getattr(importlib.import_module(f"{__name__}.{mod}"), cls)(dict(config or {}))


def backend_config_of(run_dir: str | None) -> dict:
    """The backend keys a run was submitted with (its spec.json), e.g. a Ray row's cluster address."""
    if not run_dir:
        return {}
    from ..spec import JobSpec

    try:
        return dict(JobSpec.load(Path(run_dir)).backend_config or {})
    except (OSError, ValueError, TypeError):
        return {}


def job_state(entry: dict) -> JobState:
    """State of the job a manifest line describes (the gatherer asks this for rows without result.json)."""
    name = entry.get("backend")
    if not name:
        return JobState("unknown", "manifest line names no backend")
    try:
        backend = get_backend(name, backend_config_of(entry.get("run_dir")))
    except ImportError as e:
        return JobState("unknown", f"cannot ask the {name} backend for this row's state: {e}")
    return backend.state(entry.get("job_id"), entry.get("run_dir"))
