"""The embedded default: run rows here, now, one after the other, in this process.

No scheduler means nothing can run side by side on one machine's GPUs, so rows run in turn; the
node entry point is the same one Slurm and Ray run, so a local row behaves like a cluster row.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Sequence

from ..rundir import RESULT_FILE, STATUS_FILE, CorruptResult, read_result
from ..spec import JobSpec
from .base import Backend, JobState, append_manifest


class LocalBackend(Backend):
    name = "local"

    def __init__(self, config: dict | None = None, echo=sys.stdout):
        self.config = config or {}
        self.echo = echo

    def submit(self, specs: Sequence[JobSpec]) -> list[str]:
        from ..node import run_node

        ids = []
        for spec in specs:
            job_id = f"local-{os.getpid()}-{Path(spec.run_dir).name}"
            append_manifest(spec, job_id)
            ids.append(job_id)
            run_node(spec.run_dir, echo=self.echo)
        return ids

    def state(self, job_id: str, run_dir: str | Path | None = None) -> JobState:
        if run_dir is None:
            return JobState("unknown", "a local job is known only by its run directory")
        run_dir = Path(run_dir)
        if (run_dir / RESULT_FILE).exists():
            try:
                r = read_result(run_dir)
            except CorruptResult as e:
                return JobState("unknown", str(e))
            return JobState(r.status, r.error)
        status = run_dir / STATUS_FILE
        if status.exists():
            try:
                st = json.loads(status.read_text())
            except (OSError, json.JSONDecodeError):
                st = {}
            pid = st.get("pid")
            if st.get("state") == "running" and pid and not _alive(int(pid)):
                return JobState("failed", f"the local process {pid} ended without writing a result")
            return JobState(st.get("state", "running"), None)
        return JobState("pending", None)

    def cancel(self, job_id: str) -> None:
        pass  # local rows run in the foreground: Ctrl-C cancels them


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
