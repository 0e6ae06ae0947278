"""The one core abstraction of the submit side: a backend submits job specs and reports their states.

Every backend runs the same node entry point (`python -m launcher.node RUN_DIR`, or
`launcher.node.run_node(run_dir)` in-process), so a row behaves the same wherever it runs; a
backend only decides *where* and *when*. `Backend` is a template: what every backend does the
same way is done here, once, and a backend fills in only what is its own:

    submit(specs)     checks each spec is saved, then `_submit` (yours) queues them; each job id is
                      recorded in the manifest as soon as it is known
    state(job_id)     the run dir first (the node's result.json: it knows best how the row ended),
                      refined by `_settled` (yours, optional); only a row without a result is asked
                      of the scheduler (`_scheduler_state`, yours)
    cancel(job_id)    yours
    describe(spec)    yours, optional: how the row would be placed (dry_run=true)
    placement_problems(spec)
                      yours, optional: why no node could ever run the row as asked (before submission)
    close()           yours, optional: release what the backend started (a session's Ray head)

Each backend has one config dataclass (`Config`, a `BackendConfig`), the schema of its yaml in
conf/backend/: Hydra merges the yaml onto it, so a misspelt key fails at composition.
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Sequence

from ..rundir import RESULT_FILE, SPEC_FILE, UNKNOWN, CorruptResult, Result, append_manifest, read_result
from ..spec import JobSpec


@dataclass
class JobState:
    state: str  # one of rundir.JOB_STATES
    reason: str | None = None


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
        return dataclasses.replace(self, **{k: v for k, v in dict(overrides or {}).items()
                                            if k in names and v is not None})


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


class Backend:
    name: ClassVar[str] = "base"
    Config: ClassVar[type[BackendConfig]] = BackendConfig

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
            if self.name != "local":  # queued elsewhere: the scheduler holds the row now, its node takes the lease
                from ..lease import release

                release(spec.run_dir)
        missing = [s.impl for s in specs if id(s) not in ids]
        if missing:
            raise BackendError(f"the {self.name} backend returned no job id for {', '.join(missing)}")
        return [ids[id(s)] for s in specs]

    def _submit(self, specs: list[JobSpec]) -> Iterator[tuple[JobSpec, str]]:
        """Queue the rows; yield (spec, job id) for each as soon as it is queued (any order).

        The manifest line is written before the generator is resumed, so a row that runs at once
        (the local backend) is on record while it runs."""
        raise NotImplementedError

    # ---------------------------------------------------------------- state

    def state(self, job_id: str | None, run_dir: str | Path | None = None) -> JobState:
        """The row's state: its own result.json when this job wrote one, else the scheduler's word."""
        if not job_id:
            return JobState(UNKNOWN, "no job id: the row was never submitted")
        job_id = str(job_id)
        own = self.result_state(job_id, run_dir)
        if own is not None:
            return self._settled(job_id, run_dir, own)
        return self._scheduler_state(job_id, run_dir)

    def result_state(self, job_id: str, run_dir: str | Path | None) -> JobState | None:
        """The node's result.json as a state: None when there is none or another job wrote it;
        `failed` (naming the file) when it cannot be read."""
        if run_dir is None or not (Path(run_dir) / RESULT_FILE).exists():
            return None
        try:
            result = read_result(run_dir)
        except CorruptResult as e:
            return JobState("failed", str(e))
        if not self._owns(result, job_id):
            return None
        from ..trust import result_mismatch

        try:
            spec = JobSpec.load(run_dir).to_dict()
        except (OSError, ValueError, TypeError, AttributeError):
            spec = None
        if result_mismatch(run_dir, result.to_dict(), spec):  # copied in from another run: not this job's word
            return None
        return JobState(result.status, result.error if result.status != "ok" else None)

    def _owns(self, result: Result, job_id: str) -> bool:
        """Whether `result` was written by job `job_id` rather than an earlier submission of the row."""
        return True

    def _settled(self, job_id: str, run_dir: str | Path | None, own: JobState) -> JobState:
        """The state of a row whose node wrote its result; a scheduler may know more (who cancelled it)."""
        return own

    def _scheduler_state(self, job_id: str, run_dir: str | Path | None) -> JobState:
        """The scheduler's word on a job whose row has no result (yet)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the rest

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def describe(self, spec: JobSpec) -> list[str]:
        """How this backend would place the row (for `dry_run=true`); computed, never submitted."""
        return []

    def placement_problems(self, spec: JobSpec) -> list[str]:
        """Before submission: why no node of this scheduler could ever run the row as asked (none: [])."""
        return []

    def close(self) -> None:
        """Release what this backend started for the session (nothing, unless it says otherwise)."""
