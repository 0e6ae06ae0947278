"""Checks of a row's inputs on the submit host, before anything waits in a queue.

`check_inputs` returns the problems it finds (an empty list means none): data and weight paths
from `impl.paths` that do not exist (relative paths resolve against the directory the command runs
in) and an environment that is visibly missing.  It never raises for a missing file; the caller
decides whether to stop (plan / app stop before submission).
"""

from __future__ import annotations

from pathlib import Path

from ..spec import JobSpec
from .environment import environment_problems


def check_inputs(spec: JobSpec) -> list[str]:
    problems = []
    for name, raw in sorted((spec.paths or {}).items()):
        if raw is None or str(raw).strip() == "":
            problems.append(f"impl.paths.{name} is empty")
            continue
        p = Path(str(raw)).expanduser()
        if not p.is_absolute():
            if spec.repo and not spec.checkout_dir:
                problems.append(f"impl.paths.{name}: {raw} is relative to the work dir, which does not exist "
                                f"until the checkout is prepared (run prepare first, or give an absolute path)")
                continue
            p = spec.exec_dir / p
        if not p.exists():
            problems.append(f"impl.paths.{name}: {p} does not exist (set it in the config, e.g. "
                            f"data.coco_root=/path/to/coco or impl.options.*, or put the file there)")
    problems += environment_problems(spec)
    return problems
