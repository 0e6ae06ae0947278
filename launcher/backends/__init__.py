"""Backends: where a row runs. `local` (here, now), `slurm` (submitit), `ray` (Ray Jobs API).

The backend called NAME is the module (or package) `launcher.backends.NAME`: it defines `BACKEND`,
its `Backend` subclass, whose `Config` is its config dataclass, and `conf/backend/NAME.yaml` sets
that dataclass's keys. Nothing else lists the backends: `available()` finds them here, and
launcher/config.py registers each `Config` as the schema its yaml is merged onto.

A backend module imports its scheduler's client library (submitit, ray) inside the functions that
use it, never at module level, so registering every backend's config costs nothing and `ray` and
`submitit` are loaded only by the runs that use them, never by a login-node `gather`.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from .base import Backend, BackendConfig, JobState
from ..spec import JobSpec

__all__ = ["Backend", "BackendConfig", "JobState", "available", "backend_class", "get_backend", "job_state",
           "backend_config_of"]

#: modules of this package that are not backends
_NOT_BACKENDS = {"base"}


def _module(name: str) -> ModuleType | None:
    if not name.isidentifier() or name in _NOT_BACKENDS:
        return None
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{name}":
            return None
        raise
    return module if hasattr(module, "BACKEND") else None


def available() -> list[str]:
    """The names of every backend in this package, alphabetically."""
    names = (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return sorted(n for n in names if _module(n) is not None)


def backend_class(name: str) -> type[Backend]:
    module = _module(name)
    if module is None:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(available())}")
    return module.BACKEND


def get_backend(name: str, config: Mapping[str, Any] | BackendConfig | None = None, *,
                wait: bool = True) -> Backend:
    """The backend called `name`, configured with the `backend` config group's keys (a dict or its dataclass).

    `wait`: whether the caller will wait for what it submits (the app passes its `wait`; callers
    that only read states or cancel leave the default)."""
    return backend_class(name)(config, wait=wait)


def backend_config_of(run_dir: str | None) -> dict:
    """The backend keys a run was submitted with (its spec.json), e.g. a Ray row's cluster address."""
    if not run_dir:
        return {}

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
