"""The embedded default: run rows here, now, one after the other, in this process.

No scheduler means nothing can run side by side on one machine's GPUs, so rows run in turn; the
node entry point is the same one Slurm and Ray run, so a local row behaves like a cluster row.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, TextIO

from ..node.process import pid_alive
from ..rundir import STATUS_FILE, JobState, Result, State, read_status, write_result
from ..spec import JobSpec
from .base import Backend, BackendConfig, Interrupted
from ..node.run import NodeRun


@dataclass
class LocalConfig(BackendConfig):
    """conf/backend/local.yaml: nothing to configure beyond the common keys."""

    name: str = "local"


class LocalBackend(Backend):
    name = "local"
    Config = LocalConfig
    foreground = True

    def __init__(self, config: Mapping[str, Any] | BackendConfig | None = None, *, wait: bool = True,
                 echo: TextIO | None = sys.stdout) -> None:
        super().__init__(config, wait=wait)
        self.echo = echo

    def _submit(self, specs: list[JobSpec]) -> Iterator[tuple[JobSpec, str]]:
        """Run the rows in turn. A signal to the launcher while one runs (Ctrl-C) cancels that row and
        ends the sweep: the rows after it are recorded as cancelled, not started, and Interrupted is raised."""
        for i, spec in enumerate(specs):
            job_id = f"local-{os.getpid()}-{Path(spec.run_dir).name}"
            yield spec, job_id  # on record before it runs
            node = NodeRun(spec.run_dir, echo=self.echo, job_id=job_id)
            node.run()
            if node.interrupted_by:
                for rest in specs[i + 1:]:
                    write_result(rest.run_dir, Result.for_spec(
                        rest, "cancelled", started_at=None,
                        error=f"not started: the launcher received {node.interrupted_by} while {spec.impl} "
                              f"({Path(spec.run_dir).name}) ran; rerun=failed with the same hydra.sweep.dir runs it"))
                raise Interrupted(node.interrupted_by, len(specs) - i - 1)

    def state(self, job_id: str | None, run_dir: str | Path | None = None) -> JobState:
        if run_dir is None:
            return JobState(State.UNKNOWN, "a local job is known only by its run directory")
        return super().state(job_id, run_dir)

    def _scheduler_state(self, job_id: str, run_dir: str | Path | None) -> JobState:
        """No scheduler: the node's marker, and whether the process it names still lives."""
        if not (Path(run_dir) / STATUS_FILE).exists():
            return JobState(State.PENDING, None)
        status = read_status(run_dir)  # unreadable: being written, so running
        pid = status.get("pid")
        if status.get("state") == "running" and pid and not pid_alive(int(pid)):
            return JobState(State.FAILED, f"the local process {pid} ended without writing a result")
        return JobState(status.get("state", "running"), None)

    def cancel(self, job_id: str) -> None:
        pass  # local rows run in the foreground: Ctrl-C cancels them


BACKEND = LocalBackend
