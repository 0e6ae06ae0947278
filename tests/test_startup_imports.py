"""What the submit host and the node import before a row starts (issue 20: the makespan against
hydra-submitit-launcher, bench/vs_plugin.py): nothing heavy that is only needed after the rows ran."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def imported(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_entry_point_plans_and_submits_without_the_gatherer():
    """pandas (the table) is imported once the rows are submitted, not before the first row is planned."""
    mods = imported("launcher.__main__")
    assert "pandas" not in mods and "matplotlib" not in mods and "launcher.gather" not in mods


def test_the_node_starts_without_the_gatherer_or_the_schedulers():
    mods = imported("launcher.node.run")
    assert not {"pandas", "matplotlib", "ray", "submitit", "hydra"} & mods
