"""The embedded default: run rows here, now, one after the other, in this process.

No scheduler means nothing can run side by side on one machine's GPUs, so rows run in turn; the
node entry point is the same one Slurm and Ray run, so a local row behaves like a cluster row.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, TextIO

from ..localcancel import cancel_requested, not_started as _not_started
from ..node.process import pid_alive
from ..rundir import STATUS_FILE, JobState, State, read_status
from ..spec import JobSpec
from .base import Backend, BackendConfig, Interrupted
from ..node.run import NodeRun, RunDirBusy


@dataclass
class LocalConfig(BackendConfig):
    """conf/backend/local.yaml: nothing to configure beyond the common keys."""

    name: str = "local"


class LocalBackend(Backend):
    name = "local"
    Config = LocalConfig
    foreground = True

    def __init__(
        self,
        config: Mapping[str, Any] | BackendConfig | None = None,
        *,
        wait: bool = True,
        echo: TextIO | None = sys.stdout,
    ) -> None:
        super().__init__(config, wait=wait)
        self.echo = echo

    def _submit(self, specs: list[JobSpec]) -> Iterator[tuple[JobSpec, str]]:
        """Run the rows in turn. A signal to the launcher while one runs (Ctrl-C) cancels that row and
        ends the sweep: the rows after it are recorded as cancelled, not started, and Interrupted is raised."""
        for i, spec in enumerate(specs):
            job_id = f"local-{os.getpid()}-{Path(spec.run_dir).name}"
            yield spec, job_id  # on record before it runs
            if cancel_requested(spec.run_dir):  # python -m launcher.cancel asked before it started
                _not_started(spec, "cancelled before it started (python -m launcher.cancel)")
                continue
            node = NodeRun(spec.run_dir, echo=self.echo, job_id=job_id)
            try:
                node.run()
            except RunDirBusy as e:  # another live attempt (a rerun) owns it now: leave it to that one
                print(f"launcher: {spec.impl}: not run here: {e}", file=sys.stderr)
                continue
            if node.interrupted_by:
                for rest in specs[i + 1 :]:
                    _not_started(
                        rest,
                        f"not started: the launcher received {node.interrupted_by} while {spec.impl} "
                        f"({Path(spec.run_dir).name}) ran; rerun=failed with the same hydra.sweep.dir runs it",
                    )
                raise Interrupted(node.interrupted_by, len(specs) - i - 1)

    def state(self, job_id: str | None, run_dir: str | Path | None = None) -> JobState:
        if run_dir is None:
            return JobState(State.UNKNOWN, "a local job is known only by its run directory")
        return super().state(job_id, run_dir)

    def _scheduler_state(self, job_id: str, run_dir: str | Path | None) -> JobState:
        """No scheduler: the node's marker, and whether the process it names still lives."""
        if not (Path(run_dir) / STATUS_FILE).exists():
            asked = cancel_requested(run_dir)
            if asked:  # its launcher will write it a cancelled result instead of starting it
                return JobState(State.CANCELLED, f"cancel requested at {asked.get('at')}; it will not start")
            return JobState(State.PENDING, None)
        status = read_status(run_dir)  # unreadable: being written, so running
        pid = status.get("pid")
        if status.get("state") == "running" and status.get("host") and status["host"] != socket.gethostname():
            # a pid of another host says nothing here (a shared outputs tree): its process cannot be checked
            return JobState(State.RUNNING, f"on {status['host']} (its process cannot be checked from here)")
        if status.get("state") == "running" and pid and not pid_alive(int(pid)):
            return JobState(State.FAILED, f"the local process {pid} ended without writing a result")
        return JobState(status.get("state", "running"), None)

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError("a local row is cancelled through its run dir: launcher.localcancel.cancel_local")


BACKEND = LocalBackend
