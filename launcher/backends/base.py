"""The one core abstraction of the submit side: a backend submits job specs and reports their states.

Every backend runs the same node entry point (`python -m launcher.node RUN_DIR`, or
`launcher.node.run_node(run_dir)` in-process), so a row behaves the same wherever it runs; a
backend only decides *where* and *when*.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..rundir import append_manifest, read_manifest  # noqa: F401  (the backends' manifest, in the run dir contract)
from ..spec import JobSpec

#: job states a backend can report; the final ones match result.json's status
STATES = ("pending", "running", "ok", "failed", "timeout", "cancelled", "incomplete", "unknown")


@dataclass
class JobState:
    state: str
    reason: str | None = None


class Backend:
    name = "base"

    def submit(self, specs: Sequence[JobSpec]) -> list[str]:
        """Submit every spec (each already saved in its run dir) and return one job id per spec."""
        raise NotImplementedError

    def state(self, job_id: str, run_dir: str | Path | None = None) -> JobState:
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def describe(self, spec: JobSpec) -> list[str]:
        """How this backend would place the row (for `dry_run=true`); computed, never submitted."""
        return []


def state_dict(s: JobState) -> dict:
    return asdict(s)
