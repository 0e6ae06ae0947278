"""The one core abstraction of the submit side: a backend submits job specs and reports their states.

Every backend runs the same node entry point (`python -m launcher.node RUN_DIR`, or
`launcher.node.run_node(run_dir)` in-process), so a row behaves the same wherever it runs; a
backend only decides *where* and *when*.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..result import now_iso
from ..spec import JobSpec

MANIFEST_FILE = "manifest.jsonl"

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


def append_manifest(spec: JobSpec, job_id: str | None) -> dict:
    """Record row <-> backend <-> job id <-> run dir in the run dir and, for a sweep, the sweep dir."""
    entry = {"impl": spec.impl, "hardware": spec.hardware, "backend": spec.backend, "job_id": job_id,
             "run_dir": str(Path(spec.run_dir).resolve()), "submitted_at": now_iso()}
    line = json.dumps(entry, sort_keys=True) + "\n"
    dirs = [Path(spec.run_dir)]
    if spec.sweep_dir:
        dirs.append(Path(spec.sweep_dir))
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        with open(d / MANIFEST_FILE, "a", encoding="utf-8") as f:  # one short write: atomic under O_APPEND
            f.write(line)
    return entry


def read_manifest(directory: str | Path) -> list[dict]:
    path = Path(directory) / MANIFEST_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line from a killed writer; the rest stays usable
    return out


def state_dict(s: JobState) -> dict:
    return asdict(s)
