"""The one core abstraction of the submit side, and the only code that knows a scheduler.

Every backend runs the same node entry point (`python -m launcher.node RUN_DIR`), so a backend only
decides *where* and *when*. `Backend` is a template: `submit`, `state` and `states` are done here once;
a backend implements the abstract `_submit`, `_scheduler_state` and `cancel`, and may refine `_settled`,
`_scheduler_states` (batched), `job_id_in_job` / `nodes_in_job` (read inside the job, by the node),
`describe`, `placement_problems` and `close`. Its `Config` dataclass is the schema of conf/backend/NAME.yaml.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Sequence

from ..lease import release
from ..rundir import (
    JOB_ID_VAR,
    JOB_NODES_VAR,
    JOB_NUM_NODES_VAR,
    RESULT_FILE,
    SCHEDULER_ENV_VAR,
    SPEC_FILE,
    CorruptResult,
    JobState,
    Result,
    State,
    append_manifest,
    read_result,
)
from ..spec import JobSpec
from ..trust import result_mismatch


@dataclass
class BackendConfig:
    """Keys every backend has. A backend's own dataclass adds its keys (conf/backend/<name>.yaml sets them)."""

    name: str = ""  # each backend's dataclass sets its own
    poll_s: float = 2.0  # how often a waiting launcher polls job states

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | "BackendConfig" | None) -> "BackendConfig":
        """This config from a row's `backend_config` (spec.json). Keys this backend does not know
        are left out: an older spec.json may carry another schema's keys, and reading it back must work."""
        if isinstance(data, cls):
            return data
        if isinstance(data, BackendConfig):
            data = dataclasses.asdict(data)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(data or {}).items() if k in names})

    def merged(self, overrides: Mapping[str, Any] | None) -> "BackendConfig":
        """A copy with the known, non-null keys of `overrides` (a row's own backend keys) laid over it."""
        names = {f.name for f in dataclasses.fields(self)}
        return dataclasses.replace(
            self, **{k: v for k, v in dict(overrides or {}).items() if k in names and v is not None}
        )


def job_environ(
    job_id: str | None,
    nodes: str | None = None,
    num_nodes: int | None = None,
    scheduler_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The LAUNCHER_JOB_* variables (launcher/rundir.py) a backend puts in the node's environment."""
    out = {
        JOB_ID_VAR: job_id,
        JOB_NODES_VAR: nodes,
        JOB_NUM_NODES_VAR: str(num_nodes) if num_nodes else None,
        SCHEDULER_ENV_VAR: json.dumps(dict(scheduler_env)) if scheduler_env else None,
    }
    return {k: v for k, v in out.items() if v}


class BackendError(RuntimeError):
    """A backend cannot do what was asked; the message names the problem and the way out."""


class Interrupted(KeyboardInterrupt):
    """A signal to the launcher (a terminal's Ctrl-C) ended the rows it runs itself: the running row is
    cancelled, the rest never start; the command exits 128 + the signal's number (130 for SIGINT)."""

    def __init__(self, signame: str, not_started: int = 0) -> None:
        super().__init__(signame)
        self.signame, self.not_started = signame, not_started

    @property
    def exit_code(self) -> int:
        try:
            return 128 + signal.Signals[self.signame].value
        except KeyError:
            return 130


class Backend(abc.ABC):
    name: ClassVar[str] = "base"
    Config: ClassVar[type[BackendConfig]] = BackendConfig
    #: runs each row in the launcher's own process, to its end, inside `submit` (nothing left to follow)
    foreground: ClassVar[bool] = False
    #: environment variables the node records in provenance (`env`) when it runs under this backend
    env_vars: ClassVar[tuple[str, ...]] = ()

    # ---------------------------------------------------------------- inside the job (the node asks)

    @classmethod
    def job_id_in_job(cls, environ: Mapping[str, str] = os.environ) -> str | None:
        """This job's id, read inside the job from the scheduler's variables, as `submit` returned it (so
        result.json's `job_id` matches the manifest line). Default: none a scheduler set."""
        return environ.get(JOB_ID_VAR) or None

    @classmethod
    def nodes_in_job(cls, environ: Mapping[str, str] = os.environ) -> tuple[str | None, int | None]:
        """(the scheduler's name for the job's nodes, how many), read inside the job; (None, None) if it says nothing."""
        return None, None

    @classmethod
    def job_environ(cls, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
        """What the backend's code inside the job adds to the node's environment: the job id and nodes as
        the hooks above read them, and the scheduler's `env_vars` that are set."""
        return job_environ(
            cls.job_id_in_job(environ),
            *cls.nodes_in_job(environ),
            {k: environ[k] for k in cls.env_vars if k in environ},
        )

    def __init__(self, config: Mapping[str, Any] | BackendConfig | None = None, *, wait: bool = True) -> None:
        """`config`: the backend config group's keys (a dict, e.g. a row's spec.backend_config, or the
        dataclass). `wait`: whether the launcher will wait for the rows it submits here (a backend
        whose jobs cannot outlive the launcher refuses `wait=False`)."""
        self.config = self.Config.from_mapping(config)
        self.wait = wait

    # ---------------------------------------------------------------- submit

    def submit(self, specs: Sequence[JobSpec]) -> list[str]:
        """Submit every spec (each already saved in its run dir); return one job id per spec, in order."""
        specs = list(specs)
        for spec in specs:
            path = Path(spec.run_dir) / SPEC_FILE
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: save the spec (JobSpec.save) before submitting it")
        ids: dict[int, str] = {}
        for spec, job_id in self._submit(specs):
            append_manifest(spec, job_id)
            ids[id(spec)] = str(job_id)
            if not self.foreground:  # queued elsewhere: the scheduler holds the row now, its node takes the lease
                release(spec.run_dir)
        missing = [s.impl for s in specs if id(s) not in ids]
        if missing:
            raise BackendError(f"the {self.name} backend returned no job id for {', '.join(missing)}")
        return [ids[id(s)] for s in specs]

    @abc.abstractmethod
    def _submit(self, specs: list[JobSpec]) -> Iterator[tuple[JobSpec, str]]:
        """Queue the rows; yield (spec, job id) for each as soon as it is queued (any order). The manifest
        line is written before the generator resumes, so a row that runs at once is on record while it runs."""

    # ---------------------------------------------------------------- state

    def state(self, job_id: str | None, run_dir: str | Path | None = None) -> JobState:
        """The row's state: its own result.json when this job wrote one, else the scheduler's word."""
        return self.states([(job_id, run_dir)])[0]

    def states(self, jobs: Sequence[tuple[str | None, str | Path | None]]) -> list[JobState]:
        """`state` of many (job id, run dir) pairs; the scheduler is asked once for all rows without a
        result (`_batch`, `_scheduler_states`), not once per row."""
        jobs = [(str(j) if j else None, r) for j, r in jobs]
        out: list[JobState] = [JobState(State.UNKNOWN, "no job id: the row was never submitted")] * len(jobs)
        with self._batch([j for j, _ in jobs if j]):
            ask: list[int] = []
            for i, (job_id, run_dir) in enumerate(jobs):
                if not job_id:
                    continue
                own = self.result_state(job_id, run_dir)
                if own is None:
                    ask.append(i)
                else:
                    out[i] = self._settled(job_id, run_dir, own)
            for i, st in zip(ask, self._scheduler_states([jobs[i] for i in ask])):  # type: ignore[misc]
                out[i] = st
        return out

    @contextmanager
    def _batch(self, job_ids: list[str]) -> Iterator[None]:
        """While `states` works through a batch: a backend may ask its scheduler once for all `job_ids`."""
        yield

    def _scheduler_states(self, jobs: list[tuple[str, str | Path | None]]) -> list[JobState]:
        """The scheduler's word on many jobs without a result; by default one `_scheduler_state` each."""
        return [self._scheduler_state(job_id, run_dir) for job_id, run_dir in jobs]

    def result_state(self, job_id: str, run_dir: str | Path | None) -> JobState | None:
        """The node's result.json as a state: None when there is none or another job wrote it;
        `failed` (naming the file) when it cannot be read."""
        if run_dir is None or not (Path(run_dir) / RESULT_FILE).exists():
            return None
        try:
            result = read_result(run_dir)
        except CorruptResult as e:
            return JobState(State.FAILED, str(e))
        if not self._owns(result, job_id):
            return None
        try:
            spec = JobSpec.load(run_dir).to_dict()
        except (OSError, ValueError, TypeError, AttributeError):
            spec = None
        if result_mismatch(run_dir, result.to_dict(), spec):  # copied in from another run: not this job's word
            return None
        return JobState(result.status, result.error if result.status != State.OK else None)

    def _owns(self, result: Result, job_id: str) -> bool:
        """Whether `result` was written by job `job_id` rather than an earlier submission of the row."""
        return True

    def _settled(self, job_id: str, run_dir: str | Path | None, own: JobState) -> JobState:
        """The state of a row whose node wrote its result; a scheduler may know more (who cancelled it)."""
        return own

    @abc.abstractmethod
    def _scheduler_state(self, job_id: str, run_dir: str | Path | None) -> JobState:
        """The scheduler's word on a job whose row has no result (yet)."""

    # ---------------------------------------------------------------- the rest

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Ask the scheduler to end the job (the node then writes `cancelled`)."""

    def describe(self, spec: JobSpec) -> list[str]:
        """How this backend would place the row (for `dry_run=true`); computed, never submitted."""
        return []

    def placement_problems(self, spec: JobSpec) -> list[str]:
        """Before submission: why no node of this scheduler could ever run the row as asked (none: [])."""
        return []

    def close(self) -> None:
        """Release what this backend started for the session (nothing, unless it says otherwise)."""
        return None
