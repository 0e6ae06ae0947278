"""`rerun=failed|missing`: which rows of an existing sweep are submitted again, and how the old attempt is kept.

A rerun never resubmits a row still pending or running, and never loses what an earlier attempt
wrote: its result.json and status.json are renamed `<file>.<time>.previous` beside the new attempt.
"""

from __future__ import annotations

from pathlib import Path

from .rundir import LIVE_STATES, RESULT_FILE, STATUS_FILE, CorruptResult, last_submission, read_result, set_aside
from .backends import job_state

MODES = ("failed", "missing")


def rerun_wanted(mode: str, has_result: bool, state: str | None) -> bool:
    """Should `rerun=mode` resubmit a row whose run dir holds `has_result` and whose state is `state`?

    Never a row still pending or running. `failed`: every row that did not end ok (failed, timeout,
    incomplete, cancelled, a job that died without a result) and rows never submitted. `missing`:
    only rows without a result.json (never submitted, or gone without writing one)."""
    if state in LIVE_STATES:
        return False
    if mode == "failed":
        return state != "ok"
    return not has_result


def previous_state(run_dir: Path) -> tuple[bool, str | None]:
    """(a result.json exists, the row's state: its result's status, else its job's state, else None)."""
    if (run_dir / RESULT_FILE).exists():
        try:
            return True, read_result(run_dir).status
        except CorruptResult:
            return True, None
    entry = last_submission(run_dir)
    if entry:
        return False, job_state(entry).state
    return False, None


def skip_reason(mode: str, run_dir: Path, impl: str) -> str | None:
    """Why `rerun=mode` leaves this row alone, or None to run it again (the old attempt's files then
    set aside, kept)."""
    from .lease import LeaseHeld, acquire, describe, live_holder

    if run_dir.is_symlink():  # a row's dir replaced by a link since: the rerun would write wherever it points
        return (
            f"rerun={mode}: {impl}: {run_dir} is a symbolic link to {run_dir.readlink()}, which the launcher did "
            "not make; it never writes through one. Not resubmitted: put the row's directory back"
        )
    holder = live_holder(run_dir)
    if holder is not None:  # planned or running by another launcher (a sweep still going): one attempt at a time
        return f"rerun={mode}: {impl} in {run_dir} is owned by a live attempt ({describe(holder)}); not resubmitted"
    has_result, prev = previous_state(run_dir)
    if not rerun_wanted(mode, has_result, prev):
        return (
            f"rerun={mode}: {impl} in {run_dir} is {prev or 'unknown'}"
            f"{'' if has_result else ' (no result yet)'}; not resubmitted"
        )
    try:
        acquire(run_dir, "launcher (rerun)")  # the row is this launcher's now; another rerun leaves it alone
    except LeaseHeld as e:
        return f"rerun={mode}: {impl}: {e}; not resubmitted"
    from .localcancel import CANCEL_FILE

    for stale in (RESULT_FILE, STATUS_FILE, CANCEL_FILE):  # an old cancel request must not stop the new attempt
        set_aside(run_dir, stale)
    return None
