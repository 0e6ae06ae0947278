"""Cancel the jobs of a sweep or run: `python -m launcher.cancel SWEEP_OR_RUN_DIR [...]`.

Reads the directory's manifest (row <-> backend <-> job id <-> run dir), asks each row's backend
for its state, and cancels the rows still pending or running through that backend (scancel for
Slurm, the Jobs API for Ray). Rows already finished are left alone and said so. Results already
written are never touched: a cancelled row's node writes its own `cancelled` result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .backends import Backend, backend_config_of, get_backend
from .lease import live_holder
from .localcancel import CANCEL_FILE, cancel_local, cancel_requested
from .rundir import (
    LIVE_STATES,
    MANIFEST_FILE,
    RESULT_FILE,
    SPEC_FILE,
    UNKNOWN,
    JobState,
    State,
    atomic_write_json,
    now_iso,
    read_manifest,
)

#: states worth a cancel: still queued or running, or not known to have ended
ACTIVE = LIVE_STATES + (UNKNOWN,)


def latest_entries(directory: Path) -> list[dict]:
    """One manifest line per run dir: its latest submission (a rerun supersedes the earlier job)."""
    latest: dict[str, dict] = {}
    for entry in read_manifest(directory):
        latest[entry.get("run_dir") or str(entry.get("job_id"))] = entry
    return list(latest.values())


def planned_local_rows(directory: Path, entries: list[dict]) -> list[dict]:
    """Rows of a local sweep its launcher has planned but not started: no manifest line yet (a local row gets
    one when it starts), a spec.json and no result; pseudo-entries for them."""
    known = {str(Path(e.get("run_dir") or "")) for e in entries}
    out = []
    for d in sorted([directory, *[p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")]]):
        if str(d) in known or str(d.resolve()) in known or not (d / SPEC_FILE).is_file() or (d / RESULT_FILE).exists():
            continue
        try:
            spec = json.loads((d / SPEC_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(spec, dict) and spec.get("backend") == "local" and live_holder(d) is not None:
            out.append(
                {
                    "impl": spec.get("impl", "?"),
                    "backend": "local",
                    "job_id": "(not started)",
                    "run_dir": str(d),
                    "planned": True,
                }
            )
    return out


def cancel_dir(directory: Path, out=sys.stdout) -> int:
    """Cancel what is still queued or running under `directory`; return how many cancellations failed."""
    entries = latest_entries(directory)
    entries = planned_local_rows(directory, entries) + entries  # first: none of them may start meanwhile
    if not entries:
        print(
            f"{directory}: no {MANIFEST_FILE}, so nothing was submitted from here (a local run in the "
            "foreground is cancelled with Ctrl-C)",
            file=out,
        )
        return 1
    # one backend per backend name and config, asked once for all its rows
    groups: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(entries):
        if e.get("invalid") or e.get("planned"):  # never asked of a backend
            continue
        config = backend_config_of(e.get("run_dir"))
        groups.setdefault((e.get("backend", "?"), json.dumps(config, sort_keys=True, default=str)), []).append(i)
    found_states: dict[int, tuple[Backend | None, JobState | Exception]] = {}
    for (backend_name, config), members in groups.items():
        try:
            backend = get_backend(backend_name, json.loads(config))
            found = backend.states([(entries[i].get("job_id"), entries[i].get("run_dir")) for i in members])
            found_states.update((i, (backend, st)) for i, st in zip(members, found))
        except Exception as ex:  # one unreachable backend must not stop the others
            found_states.update((i, (None, ex)) for i in members)
    failures = 0
    for i, e in enumerate(entries):
        name, job_id, backend_name = e.get("impl", "?"), e.get("job_id"), e.get("backend", "?")
        where = f"{name} ({backend_name} job {job_id}, {e.get('run_dir')})"
        if e.get("invalid"):  # a manifest line that fails validation never reaches a backend or a command line
            print(f"failed    {where}: its manifest line was refused ({e['invalid']}); nothing was cancelled", file=out)
            failures += 1
            continue
        if e.get("planned"):  # a local row its launcher has planned but not started
            backend, state = None, JobState(State.PENDING, "planned, not started")
        else:
            backend, state = found_states[i]
        if not e.get("planned") and (backend is None or isinstance(state, Exception)):
            print(f"failed    {where}: cannot ask its state: {state}", file=out)
            failures += 1
            continue
        if state.state not in ACTIVE:
            print(f"skipped   {where}: already {state.state}", file=out)
            continue
        if backend_name == "local":  # no scheduler: the launcher running it is asked, and cancel waits to see it
            done, said = cancel_local(e.get("run_dir"), state.state)
            print(
                f"{'cancelled' if done and said.startswith('cancelled') else 'skipped  ' if done else 'failed   '} "
                f"{where}: {said}",
                file=out,
            )
            failures += 0 if done else 1
            continue
        requested = cancel_requested(e.get("run_dir")) if e.get("run_dir") else None
        if requested:  # a second cancel: the first one's claim is not repeated
            print(
                f"skipped   {where}: already asked to cancel at {requested.get('at')} (still {state.state}); "
                "not asked again",
                file=out,
            )
            continue
        try:
            backend.cancel(job_id)
        except Exception as ex:
            print(f"failed    {where}: {ex}", file=out)
            failures += 1
            continue
        try:
            atomic_write_json(Path(e["run_dir"]) / CANCEL_FILE, {"at": now_iso(), "job_id": job_id})
        except (OSError, KeyError, TypeError):
            pass
        print(f"cancelled {where} (was {state.state})", file=out)
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m launcher.cancel",
        description="Cancel every still-running job of the given sweep or run directories.",
    )
    p.add_argument("dirs", nargs="+", type=Path, metavar="SWEEP_OR_RUN_DIR")
    args = p.parse_args(argv)
    failures = 0
    for d in args.dirs:
        if not d.is_dir():
            print(f"{d}: not a directory; pass a sweep or run directory (outputs/...)", file=sys.stderr)
            failures += 1
            continue
        failures += cancel_dir(d)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
