"""The Hydra task: plan -> (dry run | rerun check) -> prepare -> hand the row to the sweep, for one row.

Hydra calls `task` once per row (once for a single run, once per row of a multirun) with the
composed config; the `Sweep` the entry point owns submits, follows and reports (launcher/sweep.py).
A row that cannot be prepared still becomes a table row, with the reason, and the command's exit
status says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .claim import RunDirTaken, claim_run_dir
from .credentials import mask
from .dryrun import remove_hydra_traces, render_plan
from .lease import LeaseHeld, acquire
from .node.script import job_script
from .plan import ConfigError, CredentialError, plan, runnable_problems
from .prepare import check_inputs
from .prepare.row import prepare_row, record_failure
from .rerun import skip_reason
from .rundir import atomic_write_text
from .spec import JobSpec
from .sweep import Sweep


def task(cfg: DictConfig, sweep: Sweep) -> int:
    """One row: returns its exit status (also folded into `sweep.exit_code`)."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    sweep_dir = Path(hc.sweep.dir).resolve() if multirun else None
    try:
        # unresolved: an override may name ${lx.run_dir:}, known only while plan() resolves the row
        spec = plan(cfg, run_dir, sweep_dir, list(OmegaConf.to_container(hc.overrides.task, resolve=False)))
    except CredentialError as e:  # Hydra has already copied the config: take those copies back
        _take_back_hydra_files(run_dir, sweep_dir)
        return sweep.fail(str(e))
    except ConfigError as e:
        return sweep.fail(str(e))
    problems = runnable_problems(spec)
    if cfg.dry_run:
        return _dry_run(spec, problems, run_dir, sweep, sweep_dir)
    if problems and not cfg.prepare_only:  # prepare_only is a login-node step: it warns about them (below)
        return sweep.fail("; ".join(problems))
    if cfg.rerun:
        why = skip_reason(cfg.rerun, run_dir, spec.impl)
        if why:
            print(f"launcher: {why}")
            return 0
    elif not cfg.prepare_only:
        try:
            claim_run_dir(spec)  # the run dir is this run's alone: another run's is refused, never written over
            acquire(run_dir, "launcher")  # held until the row ends: a rerun meanwhile leaves the row alone
        except (RunDirTaken, LeaseHeld) as e:
            return sweep.fail(str(e))
    try:
        spec, later = prepare_row(spec, cfg.cache_dir, prepare_only=bool(cfg.prepare_only))
    except Exception as e:  # the row still becomes a table row, with the reason
        if not cfg.prepare_only:
            record_failure(spec, e)
        return sweep.fail(f"{spec.impl}: prepare failed: {e}", 1)
    if cfg.prepare_only:
        print(
            f"prepared {spec.impl}: work tree {spec.exec_dir if spec.repo else '(none: no repository)'}\n"
            f"  commit {spec.commit_full or '-'}  recipe {spec.recipe_hash}"
        )
        for p in problems + later:
            print(f"warning: the node will need: {p}")
        return 0
    for w in later:
        print(f"warning: {w}")
    spec.save()
    if spec.scale == "smoke":
        print(
            f"launcher: no GPU here: {spec.impl} runs at CPU smoke scale (window {spec.window[0]}-{spec.window[1]}, "
            "small images). The figure shows the pipeline works; it is not comparable with the published rows."
        )
    if multirun:
        sweep.add(spec, sweep_dir, bool(cfg.wait))
        return 0
    return sweep.submit_and_report([spec], bool(cfg.wait), run_dir)


def _dry_run(spec: JobSpec, problems: list[str], run_dir: Path, sweep: Sweep, sweep_dir: Path | None) -> int:
    print(render_plan(spec, job_script(spec)))
    for p in problems:
        print(f"warning: {p}")
    if not spec.repo:  # a repo row's inputs are checked after its checkout (prepare), which a dry run does not make
        for p in check_inputs(spec):
            print(f"warning: before submission: {p}")
    remove_hydra_traces(run_dir)
    sweep.dry_run, sweep.directory = True, sweep_dir
    return 0


def _take_back_hydra_files(run_dir: Path, sweep_dir: Path | None) -> None:
    """A refused row's config held a secret, and Hydra wrote it into the row's .hydra/ (and the sweep's
    multirun.yaml) before the task ran: remove the row's directory as a dry run does, and mask what
    the sweep dir keeps for its other rows."""
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    remove_hydra_traces(run_dir)
    if sweep_dir is not None and (sweep_dir / "multirun.yaml").is_file():
        text = (sweep_dir / "multirun.yaml").read_text(encoding="utf-8")
        if mask(text) != text:
            atomic_write_text(sweep_dir / "multirun.yaml", mask(text))
