"""A run directory no other run shares, and a clear error where none can be made.

Hydra names a run's directory after the second it started (`outputs/<date>/<time>_<impl>`), so two
launches in one second used to share one: one manifest with two lines, an interleaved train.log, the
same figure twice. Three things keep runs apart:

* `${lx.unique_dir:BASE}` (conf/config.yaml's `hydra.run.dir` and `hydra.sweep.dir`) creates the
  directory itself, exclusively: BASE, else BASE-2, BASE-3, ... whichever `mkdir` creates first. Hydra
  resolves the run dir more than once in a process, so the answer is remembered per BASE.
* A directory given by hand (`hydra.run.dir=...`, a multirun's rows under a fixed `hydra.sweep.dir`) is
  claimed by creating the row's spec.json exclusively (`claim_run_dir`): a directory that already holds
  a run is refused, never written over, unless `rerun=` asks to run the row there again (the old
  attempt's files are then kept beside, see rerun.py).
* `RunDirCallback`, a Hydra callback, checks a fixed run dir before Hydra writes its `.hydra/` files
  into it, and turns a directory that cannot be created or written (a read-only mount) into an error
  that names it and the way out, instead of a traceback.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .rundir import RESULT_FILE, SPEC_FILE, atomic_create_text

#: BASE -> the directory this process claimed for it
_CLAIMED: dict[str, str] = {}


class RunDirTaken(RuntimeError):
    """The run directory already holds another run."""


def _refuse(message: str) -> NoReturn:
    print(f"launcher: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _unwritable(path: str, error: OSError, key: str = "hydra.run.dir (hydra.sweep.dir with -m)") -> NoReturn:
    _refuse(
        f"cannot write the run directory {path} (in {os.getcwd()}): {error.strerror or error}. Run from a "
        f"directory you can write to, or point {key} at one"
    )


def unique_dir(base: str) -> str:
    """`${lx.unique_dir:BASE}`: a new directory, BASE or BASE-2, BASE-3, ..., created by this call alone."""
    base = str(base)
    if base in _CLAIMED:
        return _CLAIMED[base]
    try:
        Path(base).parent.mkdir(parents=True, exist_ok=True)
        for k in itertools.count(1):
            candidate = base if k == 1 else f"{base}-{k}"
            try:
                os.mkdir(candidate)
            except FileExistsError:
                continue
            _CLAIMED[base] = candidate
            return candidate
    except OSError as e:
        _unwritable(base, e)
    raise AssertionError("unreachable")


def holds_a_run(directory: str | os.PathLike) -> bool:
    d = Path(directory)
    return (d / SPEC_FILE).exists() or (d / RESULT_FILE).exists()


def taken_message(run_dir: str | os.PathLike) -> str:
    return (
        f"{run_dir} already holds a run (its spec.json / result.json); the launcher never writes over one. "
        "Leave hydra.run.dir / hydra.sweep.dir to their defaults (a new directory per launch), choose a new "
        "one, or add rerun=failed (or rerun=missing) to run the row there again, the old attempt kept beside it"
    )


def claim_run_dir(spec: Any) -> None:
    """Save the planned `spec` as the run dir's spec.json, created exclusively: the run dir is this run's.

    Raises RunDirTaken when the directory holds another run (its spec.json or result.json)."""
    run_dir = Path(spec.run_dir)
    if (run_dir / RESULT_FILE).exists():
        raise RunDirTaken(taken_message(run_dir))
    try:
        atomic_create_text(
            run_dir / SPEC_FILE, json.dumps(spec.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
        )
    except FileExistsError:
        raise RunDirTaken(taken_message(run_dir)) from None


def check_writable(directory: str, key: str) -> None:
    """Create `directory` (and its parents) and prove a file can be written in it; else a clear error."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        _unwritable(directory, e, key)


class RunDirCallback(Callback):
    """conf/config.yaml's `hydra.callbacks.run_dir`: before Hydra writes a thing into the run (or sweep) dir."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = str(OmegaConf.select(config, "hydra.run.dir"))
        check_writable(run_dir, "hydra.run.dir")
        if not config.get("rerun") and not config.get("dry_run") and holds_a_run(run_dir):
            _refuse(taken_message(Path(run_dir).resolve()))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(str(OmegaConf.select(config, "hydra.sweep.dir")), "hydra.sweep.dir")
