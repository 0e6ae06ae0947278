"""Recipe hash, environment wrappers, input checks, build_once and the job script (real bash runs)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.node.build import BuildError, build_once, marker_path
from launcher.node.environment import EnvironmentSpecError, bind_paths, wrap_command
from launcher.node.script import job_script
from launcher.prepare import check_inputs, recipe_hash
from launcher.spec import JobSpec

FULL = "3deaec5d902d16e1daf56b62d5971d428dc920bc"


@pytest.fixture
def jobs(tmp_path) -> Path:
    d = tmp_path / "jobs" / "toy"
    d.mkdir(parents=True)
    (d / "fix.diff").write_text("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    (d / "environment.yml").write_text("name: toy\ndependencies: [python=3.7]\n")
    return d.parent


def spec(**kw) -> JobSpec:
    base = dict(
        impl="toy",
        label="toy",
        title="Toy",
        framework="TensorFlow",
        command="python coco.py train --dataset=/data/coco/ --model=imagenet",
        images_per_iter=16,
        window=[100, 500],
        log_format="matterport",
        repo="https://github.com/matterport/Mask_RCNN.git",
        commit="3deaec",
        commit_full=FULL,
        env={"TF_CUDNN_USE_AUTOTUNE": "0"},
        workdir="samples/coco",
        patches=[{"name": "hp", "kind": "diff", "file": "fix.diff", "description": "prose"}],
        setup=["ln -sfn /data/coco coco"],
        build=["make"],
        environment={"kind": "host", "recipe": "environment.yml", "software": {"python": "3.7"}},
        data_root="/data/coco",
        run_dir="/runs/a",
        backend="local",
        hardware="v100x8",
    )
    base.update(kw)
    return JobSpec(**base)


# ---------------------------------------------------------------- recipe hash


def test_recipe_hash_changes_when_the_recipe_does(jobs):
    ref = recipe_hash(spec(), jobs)
    changed = {
        "commit": spec(commit_full="0" * 40),
        "env var": spec(env={"TF_CUDNN_USE_AUTOTUNE": "1"}),
        "extra env var": spec(env={"TF_CUDNN_USE_AUTOTUNE": "0", "X": "1"}),
        "command": spec(command="python coco.py train --dataset=/data/coco/ --model=coco"),
        "workdir": spec(workdir="."),
        "setup": spec(setup=[]),
        "build": spec(build=["make -j8"]),
        "patch list": spec(patches=[]),
        "replace text": spec(patches=[{"name": "r", "kind": "replace", "glob": "**/*.py", "old": "a", "new": "b"}]),
        "environment kind": spec(environment={"kind": "conda", "path": "/envs/x", "recipe": "environment.yml"}),
        "software": spec(environment={"kind": "host", "recipe": "environment.yml", "software": {"python": "3.8"}}),
    }
    for what, s in changed.items():
        assert recipe_hash(s, jobs) != ref, what
    # the contents of the files the recipe names count, not just their names
    (jobs / "toy" / "fix.diff").write_text("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+c\n")
    assert recipe_hash(spec(), jobs) != ref
    after_diff = recipe_hash(spec(), jobs)
    (jobs / "toy" / "environment.yml").write_text("name: toy\ndependencies: [python=3.8]\n")
    assert recipe_hash(spec(), jobs) != after_diff


def test_recipe_hash_does_not_change_when_the_recipe_does_not(jobs):
    ref = recipe_hash(spec(), jobs)
    same = {
        "run dir": spec(run_dir="/elsewhere/b"),
        "backend": spec(backend="slurm", backend_config={"partition": "gpu"}),
        "hardware name": spec(hardware="a100x8", gpu_model="A100"),
        "checkout dir": spec(checkout_dir="/cache/trees/toy-1234"),
        "configured spelling of the commit": spec(commit=FULL),
        "mirror instead of GitHub": spec(repo="/mirrors/Mask_RCNN.git"),
        "patch name and description": spec(
            patches=[{"name": "other", "kind": "diff", "file": "fix.diff", "description": "more prose"}]
        ),
        "data moved": spec(
            data_root="/scratch/coco",
            command="python coco.py train --dataset=/scratch/coco/ --model=imagenet",
            setup=["ln -sfn /scratch/coco coco"],
        ),
        "window": spec(window=[10, 50]),
    }
    for what, s in same.items():
        assert recipe_hash(s, jobs) == ref, what
    assert recipe_hash(spec(), jobs) == ref  # deterministic


def test_recipe_hash_of_a_repo_less_row_follows_its_files_under_jobs(jobs):
    s = spec(repo=None, commit=None, commit_full=None, patches=[], command=f"python {jobs}/toy/train.py")
    (jobs / "toy" / "train.py").write_text("print(1)\n")
    ref = recipe_hash(s, jobs)
    (jobs / "toy" / "__pycache__").mkdir()
    (jobs / "toy" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    assert recipe_hash(s, jobs) == ref  # caches are not code
    (jobs / "toy" / "train.py").write_text("print(2)\n")
    assert recipe_hash(s, jobs) != ref


# ---------------------------------------------------------------- environment wrappers


def test_host_runs_the_command_as_is():
    assert wrap_command(spec(), "python x.py --a 1") == "python x.py --a 1"


def test_venv_sources_its_activate_script():
    s = spec(environment={"kind": "venv", "path": "/opt/venvs/mrcnn py37"})
    assert wrap_command(s, "python x.py") == ". '/opt/venvs/mrcnn py37/bin/activate' && python x.py"


def test_conda_by_prefix_and_by_name():
    assert (
        wrap_command(spec(environment={"kind": "conda", "path": "/envs/tf115"}), "python x.py 'a b'")
        == "conda run -p /envs/tf115 --no-capture-output bash -c 'python x.py '\"'\"'a b'\"'\"''"
    )
    assert (
        wrap_command(spec(environment={"kind": "conda", "path": "tf115"}), "make")
        == "conda run -n tf115 --no-capture-output bash -c make"
    )


def test_apptainer_and_singularity_exec_with_gpu_binds_and_workdir():
    s = spec(
        environment={"kind": "container", "path": "/images/mrcnn.sif"},
        checkout_dir="/cache/trees/toy-ab",
        run_dir="/runs/a",
        paths={"weights": "/weights/r50.npz", "coco": "/data/coco/train2017"},
    )
    assert bind_paths(s) == ["/cache/trees/toy-ab", "/data/coco", "/runs/a", "/weights"]
    assert wrap_command(s, "python coco.py train") == (
        "apptainer exec --nv --bind /cache/trees/toy-ab,/data/coco,/runs/a,/weights "
        "--pwd /cache/trees/toy-ab/samples/coco /images/mrcnn.sif bash -c 'python coco.py train'"
    )
    s2 = dataclasses.replace(
        s, environment={"kind": "container", "path": "/images/mrcnn.sif", "runtime": "singularity"}
    )
    assert wrap_command(s2, "true").startswith("singularity exec --nv --bind ")


def test_pyxis_runs_one_task_per_node_in_the_image():
    s = spec(
        environment={"kind": "container", "path": "nvcr.io#nvidia/tensorflow:19.10-py3", "runtime": "pyxis"},
        checkout_dir="/cache/trees/toy-ab",
        run_dir="/runs/a",
    )
    assert wrap_command(s, "python coco.py") == (
        "srun --ntasks=1 --container-image='nvcr.io#nvidia/tensorflow:19.10-py3' "
        "--container-mounts=/cache/trees/toy-ab:/cache/trees/toy-ab,/data/coco:/data/coco,/runs/a:/runs/a "
        "--container-workdir=/cache/trees/toy-ab/samples/coco bash -c 'python coco.py'"
    )
    two = dataclasses.replace(s, nodes=2)
    assert wrap_command(two, "x").startswith("srun --nodes=2 --ntasks-per-node=1 ")


def test_bad_environment_specs_name_the_key():
    with pytest.raises(EnvironmentSpecError, match="impl.environment.kind='docker'"):
        wrap_command(spec(environment={"kind": "docker"}), "x")
    with pytest.raises(EnvironmentSpecError, match="needs impl.environment.path"):
        wrap_command(spec(environment={"kind": "venv"}), "x")
    with pytest.raises(EnvironmentSpecError, match="runtime='podman'"):
        wrap_command(spec(environment={"kind": "container", "path": "x.sif", "runtime": "podman"}), "x")


# ---------------------------------------------------------------- check_inputs


def test_check_inputs_reports_missing_paths_resolved_against_the_work_dir(tmp_path):
    tree = tmp_path / "tree"
    (tree / "samples" / "coco").mkdir(parents=True)
    (tree / "samples" / "coco" / "ImageNet-R50-AlignPadding.npz").write_bytes(b"x")
    (tmp_path / "coco" / "train2017").mkdir(parents=True)
    s = spec(
        checkout_dir=str(tree),
        paths={"coco_train": str(tmp_path / "coco" / "train2017"), "weights": "ImageNet-R50-AlignPadding.npz"},
    )
    assert check_inputs(s) == []
    s = dataclasses.replace(s, paths={"coco_train": str(tmp_path / "nope" / "train2017"), "weights": "missing.npz"})
    problems = check_inputs(s)
    assert len(problems) == 2
    assert any(f"{tmp_path}/nope/train2017 does not exist" in p and "impl.paths.coco_train" in p for p in problems)
    assert any(f"{tree}/samples/coco/missing.npz does not exist" in p for p in problems)
    # a relative path before the checkout exists cannot be checked: said so, not silently passed
    unprepared = dataclasses.replace(s, checkout_dir=None, paths={"weights": "w.npz"})
    assert "does not exist until the checkout is prepared" in check_inputs(unprepared)[0]


def test_check_inputs_reports_a_missing_environment(tmp_path):
    s = spec(paths={}, environment={"kind": "venv", "path": str(tmp_path / "venv")})
    assert "has no bin/activate" in check_inputs(s)[0]
    s = spec(paths={}, environment={"kind": "container", "path": str(tmp_path / "x.sif")})
    assert "container image" in check_inputs(s)[0]
    s = spec(paths={}, environment={"kind": "container", "path": "docker://nvcr.io/nvidia/pytorch:20.03-py3"})
    assert check_inputs(s) == []


# ---------------------------------------------------------------- build_once and the job script


def test_build_once_runs_steps_once_with_a_marker_and_fails_clearly(tmp_path):
    tree = tmp_path / "tree"
    (tree / ".git").mkdir(parents=True)
    s = spec(
        checkout_dir=str(tree),
        workdir=".",
        recipe_hash="ab" * 32,
        env={"GREETING": "hi"},
        build=["echo built-$GREETING >> count.txt", "test -f count.txt"],
    )
    lines = []
    assert build_once(s, lines.append) is True
    assert build_once(s, lines.append) is False
    assert (tree / "count.txt").read_text() == "built-hi\n"  # once, with the row's env vars
    assert marker_path(s) == tree / ".git" / f"launcher-built-{'ab' * 8}.json"
    assert any("already done" in line for line in lines)
    log = tmp_path / "build.log"
    bad = dataclasses.replace(
        s, recipe_hash="cd" * 32, build=["echo compiling", "echo 'error: nvcc missing' >&2; exit 3"]
    )
    with pytest.raises(BuildError) as err:
        build_once(bad, log)
    msg = str(err.value)
    assert "step 2/2" in msg and "exit 3" in msg and "error: nvcc missing" in msg
    assert not marker_path(bad).exists() and "compiling" in log.read_text()


def test_job_script_is_what_runs(tmp_path):
    tree = tmp_path / "tree"
    (tree / "samples" / "coco").mkdir(parents=True)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("export IN_VENV=yes\n")
    s = spec(
        checkout_dir=str(tree),
        recipe_hash="ef" * 32,
        env={"TF_CUDNN_USE_AUTOTUNE": "0", "MSG": "a b"},
        setup=["mkdir -p datasets && echo linked > datasets/coco"],
        environment={"kind": "venv", "path": str(venv)},
        command=f"{sys.executable} -c \"import os; print(os.getcwd(), os.environ['TF_CUDNN_USE_AUTOTUNE'], os.environ['MSG'], os.environ['IN_VENV'])\"",
    )
    text = job_script(s)
    assert text.startswith("#!/usr/bin/env bash\n") and "set -eo pipefail" in text
    assert f"cd {tree}/samples/coco\n" in text and "export TF_CUDNN_USE_AUTOTUNE=0\n" in text
    assert "# recipe: " + "ef" * 32 in text and "#   make" in text
    out = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True).stdout
    assert out == f"{tree}/samples/coco 0 a b yes\n"
    assert (tree / "samples" / "coco" / "datasets" / "coco").read_text() == "linked\n"
    # a failing setup line stops the script before the command
    failing = dataclasses.replace(s, setup=["false"], command="echo should-not-run")
    r = subprocess.run(["bash", "-c", job_script(failing)], capture_output=True, text=True)
    assert r.returncode != 0 and "should-not-run" not in r.stdout


def test_job_script_of_an_unprepared_repo_row_says_so():
    text = job_script(spec(commit_full=None, recipe_hash=None))
    assert "<not prepared: checkout of https://github.com/matterport/Mask_RCNN.git at 3deaec>/samples/coco" in text
    assert "not resolved: prepare has not run" in text
    with pytest.raises(ValueError, match="not a valid environment variable name"):
        job_script(spec(env={"BAD-NAME": "1"}))


def test_recipe_hash_ignores_where_weights_data_environments_and_runs_live(jobs):
    def moved(w="/w", s="/s", e="/envs", r="/runs/a", **kw):
        base = dict(
            weights_dir=w,
            run_dir=r,
            command=f"python train.py --load {w}/tp/R50.npz --logdir {r}/output",
            dataset={"layout": "coco2017", "stage_dir": s, "root": f"{s}/coco2017/coco", "reads": ["train2017"]},
            env={"DATA": f"{s}/coco2017"},
            weights=[{"dest": "tp/R50.npz", "path": f"{w}/tp/R50.npz"}],
            environment={
                "kind": "conda",
                "path": f"{e}/toy",
                "recipe": "environment.yml",
                "create": [f"conda env create -p {e}/toy -f environment.yml"],
            },
        )
        return spec(**{**base, **kw})

    ref = recipe_hash(moved(), jobs)
    assert recipe_hash(moved(w="/shared/weights", s="/scratch/stage", e="/opt/envs", r="/runs/b"), jobs) == ref
    assert recipe_hash(moved(weights=[{"dest": "tp/R101.npz"}]), jobs) != ref
    assert recipe_hash(moved(dataset={"layout": "coco2014", "stage_dir": "/s"}), jobs) != ref
    checked = moved()
    checked.environment = {**checked.environment, "check": False}
    assert recipe_hash(checked, jobs) == ref  # whether the node compares software is not the recipe
