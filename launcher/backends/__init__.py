"""Backends: where a row runs. `local` (here, now), `slurm` (submitit), `ray` (Ray Jobs API).

The backend called NAME is the module (or package) `launcher.backends.NAME`: it defines `BACKEND`,
its `Backend` subclass, whose `Config` is its config dataclass, and `conf/backend/NAME.yaml` sets
that dataclass's keys. Nothing else lists the backends: `available()` finds them here, and
launcher/config.py registers each `Config` as the schema its yaml is merged onto.

A backend module imports its scheduler's client library (submitit, ray) inside the functions that
use it, never at module level, so registering every backend's config costs nothing and `ray` and
`submitit` load only in runs that use them, never in a login-node `gather`.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

from ..rundir import JobState, State
from ..spec import JobSpec
from .base import Backend, BackendConfig

__all__ = [
    "Backend",
    "BackendConfig",
    "JobState",
    "available",
    "backend_class",
    "get_backend",
    "job_state",
    "job_states",
    "backend_config_of",
]

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


def get_backend(name: str, config: Mapping[str, Any] | BackendConfig | None = None, *, wait: bool = True) -> Backend:
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
    """State of the job a manifest line describes (cancel and rerun ask this for one row)."""
    return job_states([entry])[0]


def job_states(entries: Sequence[dict]) -> list[JobState]:
    """States of the jobs manifest lines describe: one backend per backend name (and config), each asked
    once for all its rows (`Backend.states`), not one backend and one query per line."""
    out: list[JobState] = [JobState(State.UNKNOWN, "manifest line names no backend")] * len(entries)
    groups: dict[tuple[str, str], list[int]] = {}
    configs: dict[tuple[str, str], dict] = {}
    for i, entry in enumerate(entries):
        name = entry.get("backend")
        if name:
            config = backend_config_of(entry.get("run_dir"))
            key = (name, json.dumps(config, sort_keys=True, default=str))
            groups.setdefault(key, []).append(i)
            configs[key] = config
    for key, members in groups.items():
        try:
            backend = get_backend(key[0], configs[key])
        except (ImportError, ValueError) as e:
            for i in members:
                out[i] = JobState(State.UNKNOWN, f"cannot ask the {key[0]} backend for this row's state: {e}")
            continue
        found = backend.states([(entries[i].get("job_id"), entries[i].get("run_dir")) for i in members])
        for i, st in zip(members, found):
            out[i] = st
    return out
