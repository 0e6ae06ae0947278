"""A row whose data step runs its own script in a launcher-managed venv (SimpleDet on stack=today, issue 19): the
venv is made by the data step, under the build's lock, before the script runs in it; the node's build then
finds it complete and reuses it (it used to fail: the venv did not exist before the node's build)."""

from __future__ import annotations

import json

from launcher.data.stage import stage
from launcher.node.venv import MARKER, managed_venv_path
from tests.test_data_stage import coco, plan_row, simpledet_repo  # noqa: F401  (coco: the fixture)


def test_the_data_step_makes_the_managed_venv_it_runs_in(compose, tmp_path, coco):  # noqa: F811
    from launcher.prepare import prepare

    repo = simpledet_repo(tmp_path)
    spec = prepare(
        plan_row(
            compose,
            tmp_path,
            "simpledet",
            f"data.coco_root={coco['coco_root']}",
            f"impl.repo={repo}",
            "impl.commit=HEAD",
            "impl.environment.kind=venv",
            "impl.environment.managed=true",
            "impl.environment.host_packages=true",
            "impl.environment.requirements=[]",
        ),
        tmp_path / "cache",
    )
    venv = managed_venv_path(spec)
    assert venv is not None and not venv.exists()
    said: list[str] = []
    stage(spec, log=said.append)
    assert (tmp_path / "cache" / "data" / "simpledet" / "data" / "cache" / "coco_train2017.roidb").stat().st_size > 0
    marker = json.loads((venv / MARKER).read_text())
    assert marker["requirements"] == [] and (venv / "bin" / "python").exists()
    assert any("venv: made" in line for line in said)
    said.clear()
    stage(spec, log=said.append, force=True)  # again: the same venv, reused
    assert any("venv: reusing" in line for line in said)
