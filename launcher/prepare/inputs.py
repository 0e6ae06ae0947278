"""Checks of a row's inputs on the submit host, before anything waits in a queue.

`check_inputs` returns the problems it finds (an empty list means none): the row's staged COCO layout
and every file its code reads there (launcher/data/stage.py), its pretrained files in weights_dir
(launcher/weights.py), other paths from `impl.paths` that do not exist (relative paths resolve against
the directory the command runs in) and an environment that is visibly missing. `input_warnings` lists
what the row reads only after its benchmark window. Neither raises for a missing file; the caller
decides whether to stop (a run stops before submission; `prepare_only=true` warns).
"""

from __future__ import annotations

from pathlib import Path

from .. import weights
from ..data import stage
from ..spec import JobSpec
from ..node.environment import environment_problems


def check_inputs(spec: JobSpec) -> list[str]:
    problems = []
    for name, raw in sorted((spec.paths or {}).items()):
        if raw is None or str(raw).strip() == "":
            problems.append(f"impl.paths.{name} is empty")
            continue
        p = Path(str(raw)).expanduser()
        if not p.is_absolute():
            if spec.repo and not spec.checkout_dir:
                problems.append(
                    f"impl.paths.{name}: {raw} is relative to the work dir, which does not exist "
                    f"until the checkout is prepared (run prepare first, or give an absolute path)"
                )
                continue
            p = spec.exec_dir / p
        if not p.exists():
            problems.append(
                f"impl.paths.{name}: {p} does not exist (set it in the config, e.g. "
                f"data.coco_root=/path/to/coco or impl.options.*, or put the file there)"
            )
    problems += stage.problems(spec)[0]
    problems += weights.problems(spec)
    problems += environment_problems(spec)
    return problems


def input_warnings(spec: JobSpec) -> list[str]:
    """What the row reads only after its window (a final evaluation): missing is worth a warning, no more."""
    return stage.problems(spec)[1]
