"""The rows one `python -m launcher` command submits, and the command's exit status.

A `Sweep` is owned by the entry point (launcher/__main__.py) and handed to every call of the Hydra
task (launcher/app.py). A single run is submitted at once; in a multirun (`-m`) each row is planned
and prepared when Hydra calls the task and kept here, and `finish()` submits them together once
Hydra has planned them all (one job array on Slurm), so a sweep of eight 8-GPU rows is queued in
seconds and, with `wait=false`, the shell is back at once. Then it follows the rows and prints the
table.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from .backends import Backend, get_backend
from .rundir import RESULT_FILE, CorruptResult, read_result
from .spec import JobSpec
from .dryrun import remove_hydra_traces
from .follow import follow, reattach_hint


class Sweep:
    def __init__(self) -> None:
        self.exit_code = 0
        self.pending: list[JobSpec] = []  # rows of a multirun, planned and prepared, not submitted yet
        self.directory: Path | None = None  # the multirun's sweep dir
        self.wait = True
        self.dry_run = False

    def note(self, code: int) -> int:
        """Fold one step's exit status into the command's (the worst one wins); return it."""
        self.exit_code = max(self.exit_code, code)
        return code

    def fail(self, msg: str, code: int = 2) -> int:
        print(f"launcher: error: {msg}", file=sys.stderr)
        return self.note(code)

    def add(self, spec: JobSpec, directory: Path, wait: bool) -> None:
        """Keep a row of a multirun for `finish()`."""
        self.pending.append(spec)
        self.directory, self.wait = directory, wait

    def finish(self) -> None:
        """After Hydra's multirun: submit the rows it planned together, follow them, print the table."""
        if self.dry_run and self.directory is not None:
            remove_hydra_traces(self.directory)
        pending, self.pending = self.pending, []
        if not pending:
            return
        try:
            self.note(self.submit_and_report(pending, self.wait, self.directory or Path(pending[0].run_dir)))
        except Exception:
            traceback.print_exc()
            self.note(1)

    # ---------------------------------------------------------------- submit, follow, report

    def submit_and_report(self, specs: list[JobSpec], wait: bool, directory: Path) -> int:
        backends: dict[str, Backend] = {}
        ids: dict[str, str] = {}
        try:
            for name, group in _by_backend(specs).items():
                backends[name] = backend = get_backend(name, group[0].backend_config, wait=wait)
                try:
                    job_ids = backend.submit(group)
                except KeyboardInterrupt as e:
                    return self._interrupted(e, directory, specs)
                except Exception as e:
                    return self.fail(f"submitting to {name} failed: {e}", 1)
                ids.update((s.run_dir, j) for s, j in zip(group, job_ids))
                if not backend.foreground:
                    print(
                        f"launcher: submitted {len(group)} row(s) to {name}: "
                        + ", ".join(f"{s.impl}={j}" for s, j in zip(group, job_ids))
                    )
            code = self._follow(
                [s for s in specs if not backends[s.backend].foreground], ids, backends, wait, directory
            )
            if code is not None:
                return self.note(code)
            return self.report(directory, specs, sweep=len(specs) > 1 or specs[0].sweep_dir is not None)
        finally:
            for backend in backends.values():
                backend.close()

    def _interrupted(self, e: KeyboardInterrupt, directory: Path, specs: list[JobSpec]) -> int:
        """Ctrl-C while rows ran here: the running row is cancelled and nothing more starts; show the table
        and exit 130 (128 + the signal)."""
        signame, rest = getattr(e, "signame", "SIGINT"), getattr(e, "not_started", 0)
        print(
            f"\nlauncher: interrupted ({signame}): the running row was cancelled"
            + (f", {rest} row(s) not started" if rest else "")
            + (f"; rerun=failed hydra.sweep.dir={directory} runs them" if len(specs) > 1 else ""),
            file=sys.stderr,
        )
        try:
            self.report(directory, specs, sweep=len(specs) > 1 or specs[0].sweep_dir is not None)
        except Exception:  # the table is a courtesy here; the exit status is the point
            traceback.print_exc()
        return self.note(getattr(e, "exit_code", 130))

    def _follow(
        self, remote: list[JobSpec], ids: dict[str, str], backends: dict[str, Backend], wait: bool, directory: Path
    ) -> int | None:
        """Follow the rows queued elsewhere until they end; an exit status when the command ends here."""
        if not remote:
            return None

        if not wait:
            print(f"launcher: not waiting (wait=false). Results will be in {directory}\n{reattach_hint(directory)}")
            return 0
        try:
            follow(
                remote,
                [ids[s.run_dir] for s in remote],
                backends,
                poll_s=min(backends[s.backend].config.poll_s for s in remote),
            )
        except KeyboardInterrupt:
            print(f"\nlauncher: stopped following.\n{reattach_hint(directory)}")
            return 130
        return None

    def report(self, directory: Path, specs: list[JobSpec], sweep: bool = False) -> int:
        """Print the comparison table for `directory` (and record it in the history store; a sweep also
        gets table.rst / table.md / results.csv beside it); non-zero when a row did not end ok."""
        # imported here, not at the top: pandas takes 0.2-1 s to import, and every row's submission waited for it
        # (bench/vs_plugin.py); a blocking launch has it imported in the background while its rows run (follow)
        from .gather import report as gather_report

        text, problems = gather_report([directory], out_dir=directory if sweep else None, fmt="console")
        print()
        print(text)
        bad = [f"unreadable result ({p})" for p in problems if getattr(p, "fatal", True)]
        for p in problems:
            if not getattr(p, "fatal", True):  # the history store not updated: said, but the rows ran as they ran
                print(f"launcher: warning: {p}", file=sys.stderr)
        for s in specs:
            try:
                r = read_result(s.run_dir)
            except CorruptResult:
                bad.append(s.impl)
                continue
            if r.status != "ok":
                first = (r.error or "").strip().splitlines()[0] if (r.error or "").strip() else "no reason recorded"
                bad.append(f"{s.impl} ({r.status}): {first}")
            elif s.scale == "smoke":
                print(
                    f"launcher: {s.impl}: {r.throughput:.3f} img/s at CPU smoke scale, window {r.window}, "
                    f"{r.method}; result in {s.run_dir}"
                )
            else:
                asked = (
                    f" (asked {r.window_requested[0]}-{r.window_requested[1]})"
                    if r.window_requested and list(r.window_requested) != list(r.window)
                    else ""
                )
                print(
                    f"launcher: {s.impl}: {r.throughput:.2f} img/s over iterations {r.window[0]}-{r.window[1]}{asked} "
                    f"(+-{100 * (r.error_bound or 0):.3f}%); result in {s.run_dir}"
                )
        if bad:
            print(
                "launcher: not ok:\n  " + "\n  ".join(bad) + "\n(the whole reason and the output's tail: "
                f"{RESULT_FILE} in each run dir)",
                file=sys.stderr,
            )
            return self.note(1)
        return 0


def _by_backend(specs: list[JobSpec]) -> dict[str, list[JobSpec]]:
    groups: dict[str, list[JobSpec]] = {}
    for s in specs:
        groups.setdefault(s.backend, []).append(s)
    return groups
