"""What a stack=today build is pinned to (issue 18): the row's pip constraints file reaches every pip of the
managed venv and its build, is part of the recipe, and the architectures a build compiles for are too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from launcher.plan import plan
from launcher.node.build import build_once
from launcher.prepare import recipe_document, recipe_hash
from launcher.node.venv import venv_state
from tests.test_stack import managed_spec

D2 = "60205f80f300a7000373ea2dd6ff73574bf16978"


def test_every_pip_of_the_build_obeys_the_rows_constraints(tmp_path, monkeypatch):
    jobs = tmp_path / "jobs"
    (jobs / "toy").mkdir(parents=True)
    (jobs / "toy" / "pins.txt").write_text("setuptools==69.5.1\n")
    monkeypatch.setattr("launcher.node.venv.JOBS_DIR", jobs)
    s = managed_spec(tmp_path, build=['python -c \'import os; print("constraint", os.environ["PIP_CONSTRAINT"])\''])
    s.environment["constraints"] = "pins.txt"
    lines: list[str] = []
    assert build_once(s, lines.append) is True
    assert f"constraint {jobs / 'toy' / 'pins.txt'}" in lines
    assert venv_state(s) == "ok"
    # another constraints file is another environment: the venv is stale and made again
    (jobs / "toy" / "pins.txt").write_text("setuptools==69.5.0\n")
    assert venv_state(s).startswith("stale (constraints_sha256")


def test_the_constraints_and_the_target_architectures_are_in_the_recipe(compose, tmp_path):
    h100 = dataclasses.replace(
        plan(compose("impl=detectron2", "stack=today", "hardware=h100x8"), tmp_path), commit_full=D2
    )
    a100 = dataclasses.replace(
        plan(compose("impl=detectron2", "stack=today", "hardware=a100x8"), tmp_path), commit_full=D2
    )
    cpu = dataclasses.replace(
        plan(compose("impl=detectron2", "stack=today", "hardware.gpus=0", "scale=full"), tmp_path), commit_full=D2
    )
    doc = recipe_document(h100)
    assert doc["cuda_archs"] == ["9.0"] and recipe_document(a100)["cuda_archs"] == ["8.0"]
    assert recipe_document(cpu)["cuda_archs"] == []
    assert len({recipe_hash(h100), recipe_hash(a100), recipe_hash(cpu)}) == 3  # one tree / build per target
    assert (
        doc["environment"]["constraints"] == "today-constraints.txt"
        and len(doc["environment"]["constraints_sha256"]) == 64
    )
    # every pin of the requirements is exact
    for row in ("detectron2", "mmdetection", "maskrcnn_benchmark"):
        spec = plan(compose(f"impl={row}", "stack=today", "hardware=h100x8"), tmp_path)
        assert all("==" in r for r in spec.environment["requirements"]), (row, spec.environment["requirements"])
        assert spec.environment["cuda_extensions"] and Path("jobs", row, spec.environment["constraints"]).is_file()
    # the seed stack's recipes carry no architectures (built on the node, in the row's own environment)
    seed = dataclasses.replace(plan(compose("impl=detectron2", "hardware=v100x8"), tmp_path), commit_full=D2)
    assert "cuda_archs" not in recipe_document(seed)
