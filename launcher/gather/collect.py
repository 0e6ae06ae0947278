"""Find every run under a set of sweep / run directories and read each into one plain dict.

One record per run, whatever its state: a `result.json` gives the final state and figure; a run
without one (spec.json and a manifest line) gets its state from the backend that submitted it, or
from the node's `status.json` marker when no backend can be asked. A manifest line whose run
directory has vanished still gives a record. A corrupt result file is reported (by path) in
`problems` and skipped: nothing is dropped silently, nothing is invented.

Speed: 10,000 run directories must take seconds, so this walks with `os.scandir`, never descends into
a run directory (checkouts and logs live there), reads JSON with the `json` module into a list of
dicts, and leaves building the DataFrame to the caller, once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .. import backends
from ..rundir import (
    FINAL_STATES,
    LIVE_STATES,
    MANIFEST_FILE,
    RESULT_FILE,
    SPEC_FILE,
    Result,
    last_submission,
    read_manifest,
    read_status,
)

#: The spec fields a run without a result contributes to its row.
SPEC_FIELDS = (
    "impl",
    "label",
    "hardware",
    "backend",
    "reference",
    "reference_hardware",
    "tolerance",
    "gpus",
    "repo",
    "pinned_commit",
    "recipe_hash",
    "command",
    "scale",
    "images_per_iter",
    "window",
    "stack",
)


@dataclass
class Problem:
    """Something that could not be read; printed by path, makes the exit status non-zero."""

    path: str
    message: str
    #: False for what does not touch the table (the history store not updated): said, never a failed launch
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> tuple[list[tuple[str, frozenset]], list[str], list[Problem]]:
    """Run dirs (spec.json or result.json inside, with the names of their files) and manifest-bearing
    dirs under `paths`.

    A run dir is not descended into. Hidden dirs (`.hydra`, `.git`) are skipped. Only symlinked
    directories are resolved (to avoid visiting one twice or looping): resolving every path costs
    more than reading the files.
    """
    runs: list[tuple[str, frozenset]] = []
    manifests: list[str] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    stack = []
    for p in paths:
        p = os.path.abspath(os.fspath(p))
        if not os.path.isdir(p):
            problems.append(Problem(p, "not a directory (give sweep or run directories)"))
            continue
        stack.append((p, True))
    while stack:
        d, resolve = stack.pop()
        if resolve:
            real = os.path.realpath(d)
            if real in seen:
                continue
            seen.add(real)
        subdirs, files = [], set()
        try:
            with os.scandir(d) as it:
                for e in it:
                    name = e.name
                    try:
                        if e.is_dir():
                            if not name.startswith("."):
                                subdirs.append((e.path, e.is_symlink()))
                        else:
                            files.add(name)
                    except OSError:
                        continue
        except OSError as e:
            problems.append(Problem(d, f"cannot list directory ({e.strerror or e})"))
            continue
        if MANIFEST_FILE in files:
            manifests.append(d)
        if RESULT_FILE in files or SPEC_FILE in files:
            runs.append((d, frozenset(files)))
            continue  # a run dir: what is below it is the run's own (checkout, logs)
        stack.extend(sorted(subdirs, reverse=True))
    runs.sort()
    return runs, manifests, problems


def _foreign(run_dir: str, data: dict) -> str | None:
    """Why a readable result.json is not this run dir's own (trust.result_mismatch), or None."""
    from ..trust import figure_outlasts_run, result_mismatch

    written_for = data.get("run_dir")
    if not written_for or os.path.normpath(str(written_for)) == os.path.normpath(os.path.abspath(run_dir)):
        return figure_outlasts_run(data)  # written here (the common case): no need to read the spec
    try:
        spec = _load_json(os.path.join(run_dir, SPEC_FILE))
    except (OSError, ValueError):
        spec = None
    return result_mismatch(run_dir, data, spec if isinstance(spec, dict) else None) or figure_outlasts_run(data)


def _load_json(path: str) -> Any:
    from ..rundir import read_small  # regular files of sane size only: a planted FIFO never blocks a gather

    return json.loads(read_small(path))


class BatchedStates:
    """Backend states of manifest lines: the lines of runs without a result are asked in one batch
    (`backends.job_states`: one backend per backend name, one scheduler query each), then served from it."""

    def __init__(self) -> None:
        self.known: dict[tuple, Any] = {}

    @staticmethod
    def _key(entry: dict) -> tuple:
        return entry.get("backend"), entry.get("job_id"), entry.get("run_dir")

    def prefetch(self, entries: list[dict]) -> None:
        if entries:
            self.known.update(zip(map(self._key, entries), backends.job_states(entries)))

    def __call__(self, entry: dict) -> Any:
        known = self.known.pop(self._key(entry), None)
        return known if known is not None else backends.job_states([entry])[0]


def _marker_state(run_dir: str) -> tuple[str, str | None]:
    """Fallback when no backend can be asked: the node's status.json says running, else pending."""
    marker = read_status(run_dir)
    if marker.get("state") == "running":
        where = " on " + str(marker["host"]) if marker.get("host") else ""
        since = " since " + str(marker["started_at"]) if marker.get("started_at") else ""
        return "running", f"node marker: running{where}{since} (backend state not available)"
    return "pending", "no result yet (backend state not available)"


def _backend_state(entry: dict | None, run_dir: str, job_state: Callable | None) -> tuple[str, str | None]:
    if entry is not None and entry.get("invalid"):  # never handed to a backend (a command line, an API)
        return "unknown", f"manifest line refused: {entry['invalid']}"
    if entry is None:
        state, reason = _marker_state(run_dir)
        if state == "pending":
            reason = "planned, never submitted (no manifest line)"
        return state, reason
    if job_state is not None:
        try:
            js = job_state(entry)
            state, reason = str(getattr(js, "state", js)), getattr(js, "reason", None)
        except Exception as e:  # a backend that cannot answer must not cost the table
            state, reason = "unknown", f"backend state query failed: {type(e).__name__}: {e}"
        if state == "ok":  # the job says it ended well, yet it left no result
            return "incomplete", reason or "job ended without writing result.json"
        if state in FINAL_STATES and not reason:
            reason = f"{entry.get('backend', 'backend')} job {entry.get('job_id')} ended {state}, no result.json"
        if state != "unknown":
            return state, reason
        marker, mreason = _marker_state(run_dir)
        return (marker if marker == "running" else "unknown"), (reason or mreason)
    return _marker_state(run_dir)


def read_run(
    run_dir: str, job_state: Callable | None, files: frozenset | None = None
) -> tuple[dict | None, Problem | None]:
    """One run dir -> one record (or a problem). The record is result.json's fields, plus `source`.

    `files`: the names in the run dir when the caller listed it already (saves a stat per file).
    """
    rpath = os.path.join(run_dir, RESULT_FILE)
    entry = None
    if (RESULT_FILE in files) if files is not None else os.path.exists(rpath):
        try:
            data = _load_json(rpath)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, found {type(data).__name__}")
            Result.from_dict(data)  # the schema's own checks
            foreign = _foreign(run_dir, data)
        except (OSError, ValueError, TypeError) as e:
            foreign, problem = (
                None,
                Problem(rpath, f"corrupt or half-written result, skipped ({e}); re-run the row or delete the file"),
            )
        else:
            problem = Problem(rpath, f"refused, not tabled: {foreign}") if foreign else None
        if problem is not None:
            # its figure is skipped; its row stays when the spec says which row it was
            try:
                spec = _load_json(os.path.join(run_dir, SPEC_FILE))
            except (OSError, ValueError):
                spec = None
            if not isinstance(spec, dict) or not spec.get("impl"):
                return None, problem
            rec = {k: spec.get(k) for k in SPEC_FIELDS if k in spec}
            rec.update(
                run_dir=run_dir,
                source="spec",
                status="unreadable",  # table.RowStatus.UNREADABLE
                reason=("result.json refused" if foreign else "corrupt result.json")
                + " (skipped, see the list of problems)",
            )
            return rec, problem
        rec = dict(data)
        rec["source"] = "result"
        rec["result_run_dir"] = data.get("run_dir")  # where it was written: part of the run's identity
        rec["run_dir"] = run_dir  # where it is now
        rec.setdefault("reason", rec.get("error"))
        if rec.get("status") != "ok" and (files is None or MANIFEST_FILE in files):
            entry = last_submission(run_dir)
        # resubmitted after this result was written (rerun=failed): the live job is the row now
        if (
            entry
            and rec.get("status") != "ok"
            and entry.get("submitted_at")
            and rec.get("finished_at")
            and str(entry["submitted_at"]) > str(rec["finished_at"])
        ):
            state, reason = _backend_state(entry, run_dir, job_state)
            if state in LIVE_STATES:
                rec.update(
                    status=state,
                    source="backend",
                    reason=f"resubmitted; previous attempt {data.get('status')}: {data.get('error')}",
                )
        return rec, None
    rec: dict[str, Any] = {"run_dir": run_dir, "source": "backend"}
    try:
        spec = _load_json(os.path.join(run_dir, SPEC_FILE))
        if isinstance(spec, dict):
            rec.update({k: spec.get(k) for k in SPEC_FIELDS if k in spec})
            rec["commit"] = spec.get("commit_full") or spec.get("commit")
    except (OSError, ValueError) as e:
        return None, Problem(os.path.join(run_dir, SPEC_FILE), f"unreadable spec and no result, skipped ({e})")
    entry = last_submission(run_dir)
    if entry:
        rec["job_id"] = entry.get("job_id")
        rec.setdefault("backend", entry.get("backend"))
        rec["submitted_at"] = entry.get("submitted_at")
    rec["status"], rec["reason"] = _backend_state(entry, run_dir, job_state)
    if rec["status"] not in LIVE_STATES and os.path.exists(os.path.join(run_dir, RESULT_FILE)):
        # the job ended between our look for result.json and the backend's answer: read what it wrote
        return read_run(run_dir, job_state, None)
    return rec, None


def collect(
    paths: Iterable[str | os.PathLike], job_state: Callable | None | bool = True
) -> tuple[list[dict], list[Problem]]:
    """Every run under `paths` as a record, and what could not be read.

    `job_state`: True asks the backends (`BatchedStates`); False never asks (node markers only); a
    callable (manifest line -> JobState) is used as is.
    """
    run_dirs, manifest_dirs, problems = find_run_dirs(paths)
    if job_state is True:
        job_state = BatchedStates()
        try:
            job_state.prefetch(
                [
                    e
                    for d, files in run_dirs
                    if RESULT_FILE not in files and MANIFEST_FILE in files
                    if (e := last_submission(d))
                ]
            )
        except Exception:  # a backend that cannot answer: each row is asked again, and says why
            pass
    elif job_state is False:
        job_state = None
    records: list[dict] = []
    for d, files in run_dirs:
        rec, problem = read_run(d, job_state, files)
        if rec is not None:
            records.append(rec)
        if problem is not None:
            problems.append(problem)
    # manifest lines whose run dir was not found: still a row (the backend may know what became of it)
    found = {d for d, _ in run_dirs}
    found_real: set[str] | None = None
    for m in manifest_dirs:
        if m in found:
            continue
        for line in read_manifest(m):
            rd = line.get("run_dir")
            if not rd:
                continue
            cand = os.path.normpath(rd if os.path.isabs(rd) else os.path.join(m, rd))
            # the same dir by path, or by name under this sweep (a sweep moved after submission)
            if cand in found or os.path.join(m, os.path.basename(cand)) in found:
                continue
            if os.path.isdir(cand):
                if found_real is None:  # only now pay for resolving every path (symlinked trees)
                    found_real = {os.path.realpath(d) for d in found}
                if os.path.realpath(cand) in found_real:
                    continue
                found.add(cand)
                rec, problem = read_run(cand, job_state)
            else:
                found.add(cand)
                rec = {k: line.get(k) for k in ("impl", "hardware", "backend", "job_id", "submitted_at")}
                rec.update(run_dir=cand, source="manifest")
                state, reason = _backend_state(line, cand, job_state) if job_state else ("unknown", None)
                rec["status"] = state
                rec["reason"] = (reason + "; " if reason else "") + "run directory missing"
                problem = None
            if rec is not None:
                records.append(rec)
            if problem is not None:
                problems.append(problem)
    return records, problems
