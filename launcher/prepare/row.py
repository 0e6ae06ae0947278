"""The prepare stage for one row, as the app runs it on the submit host: checkout and patches, the row's
data layout, then every check before submission."""

from __future__ import annotations

import sys
from pathlib import Path

from ..backends import get_backend
from ..data.stage import StageError, stage
from ..node.build import build_once
from ..node.compiled import builds_on_submit_host
from ..rundir import RESULT_FILE, Result, now_iso, set_aside, write_result
from ..spec import JobSpec
from .checkout import prepare
from .errors import PrepareError
from .inputs import check_inputs, input_warnings


def prepare_row(spec: JobSpec, cache_dir: str | Path, *, prepare_only: bool = False) -> tuple[JobSpec, list[str]]:
    """(the prepared spec, warnings). A run stops on a problem (PrepareError); `prepare_only` (a login-node
    step: no GPU, maybe no data) returns the problems among the warnings, as what the node will need."""
    spec = prepare(spec, cache_dir)
    staging = []
    try:
        stage(spec)
    except StageError as e:
        staging.append(f"data: {e}")
    problems = list(dict.fromkeys(staging + check_inputs(spec)))  # the staging error says why first
    problems += get_backend(spec.backend, spec.backend_config).placement_problems(spec)  # no node could run it
    if problems and not prepare_only:
        raise PrepareError("inputs missing before submission:\n  " + "\n  ".join(problems))
    if builds_on_submit_host(spec):  # a managed environment and its compiled extensions: made here, where the
        build_once(spec, sys.stdout)  # network is, before anything is submitted; the node only checks them
    return spec, problems + input_warnings(spec)


def record_failure(spec: JobSpec, error: Exception) -> None:
    """The row's run dir says why it never ran: its spec and a `failed` result."""
    Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
    spec.save()
    set_aside(spec.run_dir, RESULT_FILE)  # a result already here is kept, never overwritten
    write_result(spec.run_dir, Result.for_spec(spec, "failed", error=f"prepare failed: {error}", started_at=now_iso()))
