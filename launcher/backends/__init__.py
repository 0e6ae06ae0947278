"""Backends: where a row runs. `local` (here, now), `slurm` (submitit), `ray` (Ray Jobs API)."""

from __future__ import annotations

import importlib

from .base import Backend, JobState

_BACKENDS = {"local": "local:LocalBackend", "slurm": "slurm:SlurmBackend", "ray": "ray:RayBackend"}


def get_backend(name: str, config: dict | None = None) -> Backend:
    try:
        mod, cls = _BACKENDS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(_BACKENDS)}") from None
    return getattr(importlib.import_module(f"{__name__}.{mod}"), cls)(config or {})


def job_state(entry: dict) -> JobState:
    """State of the job a manifest line describes."""
    return get_backend(entry["backend"]).state(entry.get("job_id"), entry.get("run_dir"))
