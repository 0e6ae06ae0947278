"""What is read back from run and sweep dirs is checked before it is believed (issue 21, class 10).

Run and sweep dirs are plain files anyone with write access can change or copy, and a sweep is copied
(`cp -a`) to archive or share it.  So:

* a manifest line's `run_dir` is taken relative to where the manifest lies *now* (`rel_run_dir`, written
  since; older lines: the run dir itself, or the sweep dir's entry of that name), never the absolute path it
  was written with: a copied sweep gathered or cancelled in its new place reads and acts on its own rows,
  not the original's;
* job ids, row and backend names are checked against what the launcher itself writes before they reach
  a table, a backend module lookup or a command line (`scancel`, the Ray Jobs API): a line that fails is
  kept, its bad value dropped and the reason noted (`invalid`);
* a result.json is this run dir's own only when the run dir it names is this one (where it was planned,
  or where it lies now) and its row is the spec's: a result copied in from another run is not tabled as
  this row (`result_mismatch`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@-]{0,199}")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def valid_job_id(value: Any) -> bool:
    return isinstance(value, str) and bool(JOB_ID_RE.fullmatch(value))


def valid_name(value: Any) -> bool:
    return isinstance(value, str) and bool(NAME_RE.fullmatch(value)) and ".." not in value


def checked_entry(entry: dict, directory: Path) -> dict:
    """A manifest line read from `directory`, validated and with `run_dir` where the row lies now."""
    entry = dict(entry)
    invalid = []
    job_id = entry.get("job_id")
    if job_id is not None and not valid_job_id(job_id):
        invalid.append(
            f"its job id ({len(str(job_id))} characters) is not one the launcher writes (letters, digits "
            "and ._:+@- only, not starting with -)"
        )
        entry["job_id"] = None
    for key in ("impl", "backend", "hardware"):
        if entry.get(key) is not None and not valid_name(entry[key]):
            invalid.append(f"its {key} is not a row/backend name the launcher writes")
            entry[key] = "?" if key != "backend" else None
    recorded = entry.get("run_dir")
    here = _where_now(entry, directory)
    if here is not None:
        entry["recorded_run_dir"] = recorded
        entry["run_dir"] = here
    elif recorded is not None and not isinstance(recorded, str):
        invalid.append("run_dir is not a path")
        entry["run_dir"] = None
    if invalid:
        entry["invalid"] = "; ".join(invalid)
    return entry


def _where_now(entry: dict, directory: Path) -> str | None:
    rel = entry.get("rel_run_dir")
    directory = Path(os.path.abspath(directory))
    if isinstance(rel, str) and rel and not os.path.isabs(rel) and "\0" not in rel:
        cand = os.path.normpath(directory / rel)
        # the row is the manifest's own dir or one below it: never a path outside the sweep
        if cand == str(directory) or cand.startswith(str(directory) + os.sep):
            return cand
        return None
    recorded = entry.get("run_dir")
    if not isinstance(recorded, str) or not recorded:
        return None
    if any((directory / f).exists() for f in ("spec.json", "result.json")):
        return str(directory)  # a run dir's own manifest: its lines are about itself
    if os.path.normpath(os.path.dirname(recorded)) == str(directory):
        return recorded
    name = os.path.basename(os.path.normpath(recorded))
    if (directory / name).is_dir():  # a sweep moved or copied since: its own row of that name
        return str(directory / name)
    return None


def figure_outlasts_run(result: dict) -> str | None:
    """Why an `ok` result's figure cannot be this run's: its window (mean step time x iterations) lasted longer
    than the run that wrote it (started_at..finished_at) - the node's clock check, for results written without
    it or edited since. None when it fits (or the result does not say enough to tell)."""
    import datetime as dt

    try:
        if result.get("status") != "ok" or "SIMULATED CLOCK" in str(result.get("method") or ""):
            return None
        a, b = result["window"]
        window_s = float(result["mean_step_time"]) * (int(b) - int(a))
        run_s = (
            dt.datetime.fromisoformat(result["finished_at"]) - dt.datetime.fromisoformat(result["started_at"])
        ).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None
    bound = min(float(result.get("error_bound") or 0.0), 0.5)
    if window_s * (1 - bound) <= run_s + 2.0:  # started_at / finished_at are whole seconds
        return None
    return (
        f"its figure's window lasted {window_s:.1f} s, but the run that wrote it lasted {run_s:.0f} s "
        f"({result['started_at']} to {result['finished_at']}): a clock that jumped, or a result edited since"
    )


def result_mismatch(run_dir: str | os.PathLike, result: dict, spec: dict | None) -> str | None:
    """Why `result` (a result.json's fields) is not the run in `run_dir` (whose spec.json is `spec`), or None."""
    written_for = result.get("run_dir")
    if not written_for:
        return None  # an old result without it: nothing to compare
    here = {os.path.normpath(os.path.abspath(run_dir)), os.path.realpath(run_dir)}
    if spec and spec.get("run_dir"):
        here.add(os.path.normpath(str(spec["run_dir"])))
    if os.path.normpath(str(written_for)) not in here:
        return (
            f"result.json was written for the run dir {written_for}, not this one: copied in from another run, "
            "it is not this row's figure (move it back, or rerun=failed to run this row)"
        )
    if spec and spec.get("impl") and result.get("impl") != spec.get("impl"):
        return (
            f"result.json is a result of {result.get('impl')!r}, but this run dir's spec.json is {spec.get('impl')!r}"
        )
    return None
