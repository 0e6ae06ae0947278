"""The Hydra task: plan -> prepare -> submit (-> follow -> table) for one row of a run or a sweep.

In a multirun (`-m`) each row is planned and prepared when Hydra calls the task, and the rows are
submitted together at the end of the sweep (one job array on Slurm) by `SweepCallback`, so a
sweep of eight 8-GPU rows is queued in seconds and, with `wait=false`, the shell is back at once.
"""

from __future__ import annotations

import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from .backends import get_backend
from .backends.base import read_manifest
from .plan import ConfigError, plan, runnable_problems
from .result import RESULT_FILE, CorruptResult, Result, now_iso, read_result, write_result
from .spec import JobSpec

#: rows planned in this multirun, submitted together by SweepCallback.on_multirun_end
_PENDING: list[JobSpec] = []
#: exit status of the whole command (set by the task function and the callback)
EXIT = {"code": 0}

def rerun_wanted(mode: str, has_result: bool, state: str | None) -> bool:
    """Should `rerun=mode` resubmit a row whose run dir holds `has_result` and whose state is `state`?

    Never a row still pending or running. `failed`: every row that did not end ok (failed, timeout,
    incomplete, cancelled, a job that died without a result) and rows never submitted. `missing`:
    only rows without a result.json (never submitted, or gone without writing one)."""
    if state in ("pending", "running"):
        return False
    if mode == "failed":
        return state != "ok"
    return not has_result


def _fail(msg: str, code: int = 2) -> int:
    print(f"launcher: error: {msg}", file=sys.stderr)
    EXIT["code"] = max(EXIT["code"], code)
    return code


def render_plan(spec: JobSpec, script: str | None) -> str:
    lines = [
        f"# dry run: {spec.title} ({spec.impl}) on {spec.hardware} via {spec.backend}; nothing is touched",
        f"repository:      {spec.repo or '(none: runs from the launcher package)'}",
        f"commit:          {spec.commit or '-'}" + (f"  ({spec.commit_note})" if spec.commit_note else ""),
        "patches:         " + (", ".join(f"{p['name']} ({p['kind']})" for p in spec.patches) or "none"),
        f"stack:           {spec.stack}" + (f"; compat patches: " + ", ".join(f"{p['name']} ({p['kind']})"
                                                                          for p in spec.compat_patches)
                                            if spec.compat_patches else "")
        + (f"; BLOCKED: {spec.blocker}" if spec.blocker else ""),
        "env vars:        " + (" ".join(f"{k}={v}" for k, v in spec.env.items()) or "none"),
        f"working dir:     {spec.workdir}" + ("" if spec.repo else " (the run directory)"),
        f"command:         {spec.command}",
        f"log:             {spec.log_format} format, read from {spec.log_path or 'the captured output (train.log)'}",
        f"window:          iterations {spec.window[0]}-{spec.window[1]} ({spec.window[1] - spec.window[0]} iterations "
        f"x {spec.images_per_iter} images)" + ("  [CPU smoke scale]" if spec.scale == "smoke" else ""),
        f"resources:       {spec.nodes} node, {spec.gpus} GPU ({spec.gpu_model}), {spec.cpus} CPUs, {spec.mem_gb} GB, "
        f"time limit {spec.time_limit_min} min",
        f"reference:       {spec.reference if spec.reference is not None else '-'} img/s on {spec.reference_hardware or '-'}",
        f"run dir:         {spec.run_dir} (not created)",
    ]
    if spec.paths:
        lines.append("inputs checked:  " + ", ".join(f"{k}={v}" for k, v in spec.paths.items()))
    try:
        lines += get_backend(spec.backend, spec.backend_config).describe(spec)
    except Exception as e:  # a dry run describes; it must not fail on an unreachable backend
        lines.append(f"{spec.backend}: cannot describe the placement ({e})")
    if script:
        lines += ["", "# the script the node runs:", script.rstrip()]
    return "\n".join(lines)


def _remove_hydra_traces(directory: Path, extra: tuple[str, ...] = ()) -> None:
    """A dry run touches nothing: remove the directory Hydra made for it (its .hydra/ and log only),
    and the parents that leaves empty, up to the current directory."""
    directory = directory.resolve()
    if not directory.is_dir():
        return
    ours = {".hydra", "multirun.yaml", *extra}
    entries = list(directory.iterdir())
    if any(e.name not in ours and not (e.suffix == ".log" and e.stat().st_size == 0) for e in entries):
        return
    for e in entries:
        shutil.rmtree(e) if e.is_dir() else e.unlink()
    cwd = Path.cwd().resolve()
    d = directory
    while d != cwd and cwd in d.parents and not any(d.iterdir()):
        d.rmdir()
        d = d.parent


def _script_or_none(spec: JobSpec) -> str | None:
    try:
        from .prepare import job_script
    except ImportError:
        return None
    return job_script(spec)


def _previous_status(run_dir: Path) -> tuple[bool, str | None]:
    """(a result.json exists, the row's state: its result's status, else its job's state, else None)."""
    if (run_dir / RESULT_FILE).exists():
        try:
            return True, read_result(run_dir).status
        except CorruptResult:
            return True, None
    entries = read_manifest(run_dir)
    if entries:
        from .backends import job_state
        return False, job_state(entries[-1]).state
    return False, None


def _prepare(spec: JobSpec, cfg: DictConfig) -> JobSpec:
    from .prepare import check_inputs, prepare
    spec = prepare(spec, cfg.cache_dir)
    problems = check_inputs(spec)
    if problems:
        raise PrepareError("inputs missing before submission:\n  " + "\n  ".join(problems))
    return spec


class PrepareError(RuntimeError):
    pass


def task(cfg: DictConfig) -> int:
    """Hydra task function for one row."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    sweep_dir = Path(hc.sweep.dir).resolve() if multirun else None
    try:
        spec = plan(cfg, run_dir, sweep_dir, list(hc.overrides.task))
    except ConfigError as e:
        return _fail(str(e))
    problems = runnable_problems(spec)
    if cfg.dry_run:
        print(render_plan(spec, _script_or_none(spec)))
        for p in problems:
            print(f"warning: {p}")
        _remove_hydra_traces(run_dir)
        return 0
    if problems:
        return _fail("; ".join(problems))
    if cfg.rerun:
        has_result, prev = _previous_status(run_dir)
        if not rerun_wanted(cfg.rerun, has_result, prev):
            print(f"launcher: rerun={cfg.rerun}: {spec.impl} in {run_dir} is {prev or 'unknown'}"
                  f"{'' if has_result else ' (no result yet)'}; not resubmitted")
            return 0
        for stale in ("result.json", "status.json"):
            p = run_dir / stale
            if p.exists():
                p.rename(run_dir / f"{stale}.{now_iso().replace(':', '')}.previous")  # keep, never lose
    try:
        spec = _prepare(spec, cfg)
    except Exception as e:  # the row still becomes a table row, with the reason
        if cfg.prepare_only:
            return _fail(f"{spec.impl}: prepare failed: {e}", 1)
        run_dir.mkdir(parents=True, exist_ok=True)
        spec.save()
        write_result(run_dir, Result(impl=spec.impl, label=spec.label, hardware=spec.hardware, backend=spec.backend,
                                     status="failed", error=f"prepare failed: {e}", window_requested=spec.window,
                                     images_per_iter=spec.images_per_iter, reference=spec.reference,
                                     reference_hardware=spec.reference_hardware, tolerance=spec.tolerance,
                                     started_at=now_iso(), finished_at=now_iso(), run_dir=str(run_dir),
                                     repo=spec.repo, commit=spec.commit, command=spec.command, scale=spec.scale,
                                     stack=spec.stack))
        return _fail(f"{spec.impl}: prepare failed: {e}", 1)
    if cfg.prepare_only:
        print(f"prepared {spec.impl}: work tree {spec.exec_dir if spec.repo else '(none: no repository)'}\n"
              f"  commit {spec.commit_full or '-'}  recipe {spec.recipe_hash}")
        return 0
    spec.save()
    if spec.scale == "smoke":
        print(f"launcher: no GPU here: {spec.impl} runs at CPU smoke scale (window {spec.window[0]}-{spec.window[1]}, "
              "small images). The figure shows the pipeline works; it is not comparable with the published rows.")
    if multirun:
        _PENDING.append(spec)
        return 0
    return submit_and_report([spec], cfg.wait, run_dir)


def submit_and_report(specs: list[JobSpec], wait: bool, directory: Path) -> int:
    by_backend: dict[str, list[JobSpec]] = {}
    for s in specs:
        by_backend.setdefault(s.backend, []).append(s)
    ids: dict[str, str | None] = {}
    for name, group in by_backend.items():
        backend = get_backend(name, {**group[0].backend_config, "wait": wait})
        try:
            job_ids = backend.submit(group)
        except Exception as e:
            return _fail(f"submitting to {name} failed: {e}", 1)
        for s, j in zip(group, job_ids):
            ids[s.run_dir] = j
        if name != "local":
            print(f"launcher: submitted {len(group)} row(s) to {name}: " +
                  ", ".join(f"{s.impl}={j}" for s, j in zip(group, job_ids)))
    remote = [s for s in specs if s.backend != "local"]
    if remote and not wait:
        from .follow import reattach_hint
        print(f"launcher: not waiting (wait=false). Results will be in {directory}\n{reattach_hint(directory)}")
        return 0
    if remote:
        from .follow import follow, reattach_hint
        try:
            follow(remote, [ids[s.run_dir] for s in remote], poll_s=remote[0].backend_config.get("poll_s", 2.0))
        except KeyboardInterrupt:
            print(f"\nlauncher: stopped following.\n{reattach_hint(directory)}")
            return 130
    return report(directory, specs, sweep=len(specs) > 1 or specs[0].sweep_dir is not None)


def report(directory: Path, specs: list[JobSpec], sweep: bool = False) -> int:
    """Print the comparison table for `directory` (and record it in the history store; a sweep also
    gets table.rst / table.md / results.csv beside it); non-zero when a row did not end ok."""
    from .gather import report as gather_report
    text, problems = gather_report([directory], out_dir=directory if sweep else None, fmt="console")
    print()
    print(text)
    bad = [f"unreadable result ({p})" for p in problems]
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
            print(f"launcher: {s.impl}: {r.throughput:.3f} img/s at CPU smoke scale, window {r.window}, "
                  f"{r.method}; result in {s.run_dir}")
        else:
            print(f"launcher: {s.impl}: {r.throughput:.2f} img/s over iterations {r.window[0]}-{r.window[1]} "
                  f"(+-{100 * (r.error_bound or 0):.3f}%); result in {s.run_dir}")
    if bad:
        EXIT["code"] = max(EXIT["code"], 1)
        print("launcher: not ok:\n  " + "\n  ".join(bad) + "\n(the whole reason and the output's tail: result.json in "
              "each run dir)", file=sys.stderr)
        return 1
    return 0


class SweepCallback(Callback):
    """Submits the rows of a multirun together when Hydra has planned them all, then follows them."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _PENDING.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("dry_run"):
            _remove_hydra_traces(Path(config.hydra.sweep.dir))
        if not _PENDING or config.get("dry_run") or config.get("prepare_only"):
            return
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        try:
            code = submit_and_report(list(_PENDING), bool(config.wait), sweep_dir)
            EXIT["code"] = max(EXIT["code"], code)  # e.g. 130 after Ctrl-C while following
        except Exception:
            traceback.print_exc()
            EXIT["code"] = max(EXIT["code"], 1)
        finally:
            _PENDING.clear()
