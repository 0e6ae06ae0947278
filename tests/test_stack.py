"""Software stacks (`stack=seed|today`, launcher/stack.py), the launcher-managed venv (node/venv.py) and
`${lx.run_dir:}`: per-row data selected by the stack group, compat patches in the recipe hash, blocked rows
as failed rows with their reason, a venv that sees this Python's packages and never changes them."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.plan import ConfigError, plan, runnable_problems
from launcher.node.build import build_once, marker_path
from launcher.node.script import job_script
from launcher.prepare import recipe_document, recipe_hash
from launcher.prepare.errors import StackBlocked
from launcher.node.venv import HOST_PTH, MARKER, managed_venv_path, venv_state
from launcher.rundir import read_result
from tests.conftest import run_launcher

D2 = "60205f80f300a7000373ea2dd6ff73574bf16978"


def test_stack_today_selects_the_rows_own_entry(compose, tmp_path):
    seed = plan(compose("impl=detectron2", "hardware=v100x8"), tmp_path)
    today = plan(compose("impl=detectron2", "hardware=v100x8", "stack=today"), tmp_path)
    assert (seed.stack, today.stack) == ("seed", "today")
    assert seed.compat_patches == [] and seed.environment["kind"] == "conda"
    assert seed.build[-1] == "python -m pip install --no-build-isolation --no-deps -e ."  # the seed's own environment
    assert [p["name"] for p in today.compat_patches][:3] == [
        "tensor-type-is-cuda",
        "tensor-type-to-scalar-type",
        "thc-atomics-to-aten",
    ]  # then CPU ranks (gloo)
    assert today.patches == seed.patches  # the seed's own patches stay, separate
    assert today.environment["managed"] and today.environment["requirements"][-2:] == [
        "pillow==9.5.0",
        "pycocotools==2.0.11",
    ]
    assert today.build == ["python -m pip install --no-build-isolation -e ."]
    assert today.command == seed.command and today.scale == "full" and today.window == [100, 500]
    # on a machine without GPUs the seed stack cannot run the row; today's runs it at smoke scale
    cpu_seed = plan(compose("impl=detectron2", "hardware.gpus=0"), tmp_path)
    assert any("needs at least 1 GPU" in p for p in runnable_problems(cpu_seed))
    cpu = plan(compose("impl=detectron2", "hardware.gpus=0", "stack=today"), tmp_path)
    assert runnable_problems(cpu) == [] and cpu.scale == "smoke" and cpu.window == [20, 40]
    assert cpu.images_per_iter == 2 and "SOLVER.IMS_PER_BATCH 2 " in cpu.command and "MODEL.DEVICE cpu" in cpu.command


def test_compat_patches_and_the_stack_are_in_the_recipe_hash(compose, tmp_path):
    seed = dataclasses.replace(plan(compose("impl=detectron2", "hardware=v100x8"), tmp_path), commit_full=D2)
    today = dataclasses.replace(
        plan(compose("impl=detectron2", "hardware=v100x8", "stack=today"), tmp_path), commit_full=D2
    )
    assert "compat_patches" not in recipe_document(seed) and "stack" not in recipe_document(seed)
    assert (
        recipe_document(today)["stack"] == "today"
        and len(recipe_document(today)["compat_patches"]) == len(today.compat_patches) >= 3
    )
    assert recipe_hash(seed) != recipe_hash(today)
    other = dataclasses.replace(today, compat_patches=today.compat_patches[:1])
    assert recipe_hash(other) != recipe_hash(today)
    # the run directory (in the command, via ${lx.run_dir:}) is not part of the recipe
    elsewhere = dataclasses.replace(
        plan(compose("impl=detectron2", "hardware=v100x8", "stack=today"), tmp_path / "other"), commit_full=D2
    )
    assert elsewhere.command != today.command and recipe_hash(elsewhere) == recipe_hash(today)


def test_run_dir_is_resolved_into_command_and_log_path(compose, tmp_path):
    spec = plan(compose("impl=detectron2", "hardware=v100x8"), tmp_path / "run")
    assert f"OUTPUT_DIR {(tmp_path / 'run').resolve()}/output" in spec.command
    assert spec.log_path == f"{(tmp_path / 'run').resolve()}/output/log.txt"


def test_user_overrides_win_over_the_stack(compose, tmp_path):
    over = [
        "impl=detectron2",
        "stack=today",
        "hardware=v100x8",
        "impl.build=[make]",
        "impl.environment.requirements=[pycocotools]",
    ]
    spec = plan(compose(*over), tmp_path, overrides=over)
    assert spec.build == ["make"] and spec.environment["requirements"] == ["pycocotools"]
    assert spec.environment["managed"]  # the rest of the stack's environment still applies


def test_a_stack_entry_with_an_unknown_key_is_refused(compose, tmp_path):
    with pytest.raises(ConfigError, match=r"impl.stacks.today.bulid of 'detectron2' is not an impl key"):
        plan(compose("impl=detectron2", "stack=today", "+impl.stacks.today.bulid=[x]"), tmp_path)


def test_rows_without_the_stack_are_blocked_and_repo_less_rows_are_not(compose, tmp_path):
    cfg = compose("impl=mmdetection", "stack=today", "~impl.stacks.today", "hardware.gpus=0")
    spec = plan(cfg, tmp_path)
    assert "declares no such stack" in spec.blocker and runnable_problems(spec) == []
    from launcher.prepare import prepare

    with pytest.raises(StackBlocked, match="declares no such stack"):
        prepare(spec, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # nothing checked out
    tv = plan(compose("impl=torchvision", "stack=today"), tmp_path)
    assert tv.stack == "today" and not tv.blocker and not tv.compat_patches


@pytest.mark.parametrize(
    "row", ["detectron"]
)  # tensorpack, SimpleDet, matterport (issue 19), maskrcnn_benchmark (issue 18) run
def test_known_blockers_are_declared(compose, tmp_path, row):
    spec = plan(compose(f"impl={row}", "stack=today"), tmp_path)
    assert len(spec.blocker) > 80 and ("Not tried" in spec.blocker or "What would fix it" in spec.blocker)


def test_a_blocked_row_is_a_failed_row_saying_why(tmp_path):
    p = run_launcher("impl=detectron", "stack=today", f"cache_dir={tmp_path / 'cache'}", cwd=tmp_path, timeout=120)
    assert p.returncode == 1 and "Caffe2" in p.stderr
    (res,) = list((tmp_path / "outputs").rglob("result.json"))
    r = read_result(res)
    assert r.status == "failed" and r.stack == "today" and "Python <= 3.8" in r.error
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- the managed venv


def managed_spec(tmp_path: Path, **kw):
    tree = tmp_path / "cache" / "trees" / "toy-0123456789abcdef"
    tree.mkdir(parents=True)
    from launcher.spec import JobSpec

    base = dict(
        impl="toy",
        label="toy",
        title="Toy",
        framework="PyTorch",
        command="true",
        images_per_iter=1,
        window=[1, 2],
        log_format="torchvision",
        repo="/x",
        checkout_dir=str(tree),
        recipe_hash="ab" * 32,
        environment={"kind": "venv", "managed": True, "host_packages": True, "requirements": []},
        build=["python -c 'import sys, omegaconf; print(\"prefix\", sys.prefix)'"],
        run_dir=str(tmp_path / "run"),
    )
    base.update(kw)
    return JobSpec(**base)


def test_managed_venv_sees_the_host_packages_is_made_once_and_changes_nothing_here(tmp_path):
    s = managed_spec(tmp_path)
    venv = managed_venv_path(s)
    assert venv == tmp_path / "cache" / "envs" / "toy-0123456789abcdef"
    lines: list[str] = []
    assert build_once(s, lines.append) is True
    assert f"prefix {venv}" in lines  # the build ran inside it and imported a package of this Python's
    assert (venv / MARKER).is_file() and list(venv.rglob(HOST_PTH)) and venv_state(s) == "ok"
    # pip there installs there and refuses to touch this Python's packages
    py = venv / "bin" / "python"
    out = subprocess.run([str(py), "-m", "pip", "--version"], capture_output=True, text=True, check=True).stdout
    assert "pip" in out
    here = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True
    ).stdout
    assert str(venv) not in here
    lines.clear()
    assert build_once(s, lines.append) is False and any("venv: reusing" in x for x in lines)
    # a venv made again (here: its marker lost) means the build runs again into it
    (venv / MARKER).unlink()
    lines.clear()
    assert build_once(s, lines.append) is True and any("making it again" in x for x in lines)
    assert marker_path(s).is_file() and json.loads((venv / MARKER).read_text())["host_packages"] is True
    # the job script activates it
    text = job_script(s)
    assert f". {venv}/bin/activate && true" in text and "launcher-managed venv" in text
