"""Environments (issue 12): the node compares the software a row's environment really has with the row's
`software:` before the command and fails with a wanted-vs-found table (kept in provenance either way);
builds and commands run in the same environment; seed rows default to their own; `python -m launcher.env`."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.node.run import run_node
from launcher.node.software import check, matches
from launcher.spec import JobSpec
from tests.conftest import ROOT, run_launcher

PY = platform.python_version()


def spec(tmp_path: Path, command: str = "echo ran > ran.txt", **kw) -> JobSpec:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    base = dict(
        impl="toy",
        label="toy",
        title="toy",
        framework="none",
        command=command,
        images_per_iter=1,
        window=[1, 2],
        log_format="torchvision",
        run_dir=str(run_dir),
        stop_when_covered=False,
        min_gpus=0,
    )
    base.update(kw)
    s = JobSpec(**base)
    s.save()
    return s


@pytest.mark.parametrize(
    "key,wanted,found,ok",
    [
        ("python", "3.7", "3.7.12", True),
        ("python", "3.7", "3.11.7", False),
        ("python", ">=3.10", "3.11.7", True),
        ("tensorflow", "1.15.0", "1.15.5", False),
        ("tensorflow", "1.15.0", "1.15.0", True),
        ("pytorch", "1.5.0", "1.5.0+cu101", True),
        ("torch", ">=2.1,<3", "2.14.1+cu130", True),
        ("mmcv", "0.5.1", "0.5.9", False),
        ("cudnn", "7.6.5", "7.6.3", True),
        ("cudnn", "7.6.5", "8.0.5", False),
        ("cudnn", "7.6.5", "7", True),
        ("cuda", "10.1", "10.1.243", True),
        ("cuda", "10.0", "10.1", False),
        ("horovod", "0.18.2", None, False),
        ("mxnet_ops", "A B", "missing: B", False),
        ("mxnet_ops", "A B", "A B", True),
    ],
)
def test_matching_rules(key, wanted, found, ok):
    assert matches(key, wanted, found)[0] is ok
    if key == "cudnn" and ok and found != wanted:
        assert matches(key, wanted, found)[1]  # a patch difference, or a coarser version, is noted


def test_the_probe_runs_in_the_rows_environment(tmp_path):
    ok = check(spec(tmp_path, environment={"kind": "launcher", "software": {"python": PY.rsplit(".", 1)[0]}}))
    assert ok.ok and ok.items[0].found == PY and "launcher's own Python" in ok.where
    bad = check(
        spec(
            tmp_path,
            environment={
                "kind": "launcher",
                "software": {"python": "3.7", "tensorflow": "1.15.0", "launcher_no_such_module": "1.0"},
            },
        )
    )
    assert not bad.ok
    table = bad.table()
    assert "python" in table and "3.7" in table and PY in table and "MISMATCH" in table
    assert "import tensorflow failed" in table or "tensorflow" in table
    # a venv: its own python answers (here one made without pip, seeing nothing of the launcher's packages)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    v = check(spec(tmp_path, environment={"kind": "venv", "path": str(venv), "software": {"omegaconf": ">=2"}}))
    assert not v.ok and "import omegaconf failed" in v.items[0].note
    assert check(spec(tmp_path, environment={"kind": "launcher", "software": {"omegaconf": ">=2"}})).ok
    assert (
        check(spec(tmp_path, environment={"kind": "launcher", "software": {"python": "3.7"}, "check": False})) is None
    )


def test_a_row_whose_environment_differs_fails_before_its_command_with_the_table(tmp_path):
    s = spec(tmp_path, environment={"kind": "launcher", "software": {"python": "3.7", "omegaconf": ">=2"}})
    r = run_node(s.run_dir)
    assert r.status == "failed" and not (Path(s.run_dir) / "ran.txt").exists()  # the command never ran
    assert "does not have the software toy was measured with" in r.error
    assert "python     3.7     " in r.error and "MISMATCH" in r.error and "impl.environment.check=false" in r.error
    prov = json.loads((Path(s.run_dir) / "provenance.json").read_text())
    assert prov["software"]["ok"] is False and prov["software"]["found"]["python"] == PY
    assert r.provenance["software"]["wanted"] == {"python": "3.7", "omegaconf": ">=2"}


def test_a_row_whose_environment_matches_records_what_was_found(tmp_path):
    s = spec(
        tmp_path,
        command="python -c 'print(\"tvbench iter=1 t=1.0 images=1\")'",
        environment={"kind": "launcher", "software": {"python": PY, "omegaconf": ">=2"}},
    )
    r = run_node(s.run_dir)
    assert r.provenance["software"]["ok"] is True and r.provenance["software"]["found"]["python"] == PY
    assert json.loads((Path(s.run_dir) / "provenance.json").read_text())["software"]["ok"] is True


@pytest.mark.parametrize("kind", ["launcher", "host", "venv"])
def test_build_and_command_run_in_the_same_environment(tmp_path, kind):
    from launcher.node.build import build_once

    env = {"kind": kind}
    if kind == "venv":
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
        env["path"] = str(tmp_path / "venv")
    s = spec(
        tmp_path,
        command=f"command -v python > {tmp_path}/run.txt; echo 'tvbench iter=1 t=1.0 images=1'",
        build=[f"command -v python > {tmp_path}/build.txt"],
        environment=env,
    )
    build_once(s)
    run_node(s.run_dir)
    built, ran = (tmp_path / "build.txt").read_text().strip(), (tmp_path / "run.txt").read_text().strip()
    assert built == ran, (built, ran)
    if kind == "launcher":
        assert Path(ran).parent == Path(sys.executable).parent
    if kind == "venv":
        assert Path(ran).parent == tmp_path / "venv" / "bin"


def test_seed_rows_default_to_their_own_environment(compose, tmp_path):
    from launcher.plan import plan

    for row in (
        "detectron2",
        "mmdetection",
        "maskrcnn_benchmark",
        "tensorpack",
        "simpledet",
        "detectron",
        "matterport",
    ):
        s = plan(compose(f"impl={row}", "envs_dir=/envs"), tmp_path)
        env = s.environment
        assert env["kind"] == "conda" and env["path"] == f"/envs/{row}" and env["software"]["python"] == "3.7", row
        assert env["create"][
            0
        ] == f"conda env create -p /envs/{row} -f {ROOT / 'jobs' / row / 'environment.yml'}" or env["create"][
            0
        ].endswith(f"jobs/{row}/environment.yml")
    assert plan(compose("impl=torchvision"), tmp_path).environment["kind"] == "launcher"
    assert plan(compose("impl=detectron2", "impl.environment.kind=host"), tmp_path).environment["kind"] == "host"


def test_env_command_prints_creates_and_checks(tmp_path):
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "launcher.env", *a],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    p = run("create", "impl=mmdetection", f"envs_dir={tmp_path}", "--print")
    assert p.returncode == 0 and 'pip install --no-build-isolation "mmcv==0.5.1"' in p.stdout
    assert not list(tmp_path.iterdir())  # --print runs nothing
    made = tmp_path / "made"
    p = run(
        "create",
        "impl=detectron2",
        f"envs_dir={tmp_path}",
        "impl.environment.kind=venv",
        f"impl.environment.path={made}",
        f"impl.environment.create=[{sys.executable} -m venv --without-pip {made}]",
    )
    assert p.returncode == 0 and (made / "bin" / "activate").is_file(), p.stdout + p.stderr
    p = run(
        "create",
        "impl=detectron2",
        "impl.environment.kind=venv",
        f"impl.environment.path={made}",
        "impl.environment.create=[false]",
    )
    assert p.returncode == 0 and "is there already" in p.stdout  # not made twice
    p = run("check", "impl=detectron2", "impl.environment.kind=venv", f"impl.environment.path={made}")
    assert p.returncode == 1 and "NOT the published stack" in p.stdout and "import torch failed" in p.stdout


def test_a_seed_row_without_its_environment_is_refused_before_submission(tmp_path):
    p = run_launcher(
        "impl=detectron2",
        "hardware=v100x8",
        f"impl.repo={tmp_path / 'none'}",
        "dry_run=true",
        f"envs_dir={tmp_path / 'envs'}",
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0 and f"conda environment {tmp_path / 'envs' / 'detectron2'} [MISSING" in p.stdout


def test_a_container_sees_the_data_its_links_point_into_and_the_weights(compose, tmp_path):
    from launcher.plan import plan
    from launcher.node.environment import bind_paths, wrap_command

    s = plan(
        compose(
            "impl=matterport",
            "impl.environment.kind=container",
            "impl.environment.path=/img/mp.sif",
            "data.coco_root=/shared/coco",
            "data.coco2014_root=/shared/coco2014",
            "data.stage_dir=/scratch/stage",
            "weights_dir=/shared/weights",
        ),
        tmp_path / "run",
    )
    binds = bind_paths(s)
    for d in ("/shared/coco", "/shared/coco2014", "/scratch/stage", "/shared/weights", str(tmp_path / "run")):
        assert d in binds, (d, binds)
    assert "--bind" in wrap_command(s, "true") and "/scratch/stage" in wrap_command(s, "true")


def probe(keys: list[str], path: list[Path]) -> dict:
    from launcher.node.software import MARK, PROBE

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path))}
    p = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(keys), json.dumps({k: "1" for k in keys})],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=path[0],
    )
    return json.loads(next(ln for ln in p.stdout.splitlines() if ln.startswith(MARK))[len(MARK) :])


def installed(site: Path, name: str, version: str, init: str, stated: str | None = None) -> None:
    """A distribution as pip leaves it: the package, and a dist-info whose RECORD lists its files."""
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(init)
    files = [f"{name}/__init__.py"]
    if stated:
        (site / name / "version.py").write_text(f"__version__ = '{stated}'\ncuda = None\n")
        files.append(f"{name}/version.py")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files + [f"{info.name}/METADATA", f"{info.name}/RECORD"]))


def test_the_probe_reads_versions_without_importing_the_framework(tmp_path):
    """Importing torch takes seconds and the check runs before the command: a version comes from the metadata
    of the distribution that installed the very module Python would import (its version.py may say more,
    torch's "+cu130"); a module no distribution owns is imported, as before."""
    site, shadow = tmp_path / "site", tmp_path / "shadow"
    marker = tmp_path / "imported"
    installed(site, "fwk_a", "1.2.0", f"open({str(marker)!r}, 'w')\n__version__ = '9.9'\n", stated="1.2.0+cu999")
    installed(site, "fwk_b", "2.0", f"open({str(marker)!r}, 'w')\n__version__ = '2.0'\n")
    found = probe(["fwk_a", "fwk_b"], [site])
    assert found["fwk_a"]["found"] == "1.2.0+cu999" and found["fwk_b"]["found"] == "2.0"
    assert not marker.exists()  # neither was imported
    (shadow / "fwk_b").mkdir(parents=True)  # earlier on the path, no distribution: the import decides
    (shadow / "fwk_b" / "__init__.py").write_text("__version__ = '3.1'\n")
    assert probe(["fwk_b"], [shadow, site])["fwk_b"]["found"] == "3.1"


def test_a_launcher_row_is_checked_in_process_with_the_subprocess_answer(tmp_path, monkeypatch):
    """A row that runs the launcher's own Python (kind=launcher) is checked without starting a Python for the
    probe (its start-up delayed every row's command): the same found versions as the probe in a subprocess.
    A key that needs an import (cuda) or a row that changes Python's path (PYTHONPATH) still gets the subprocess."""
    want = {"python": PY.rsplit(".", 1)[0], "omegaconf": ">=2", "pytest": ">=7"}
    started: list = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: started.append(a) or real_run(*a, **k))
    fast = check(spec(tmp_path, environment={"kind": "launcher", "software": want}))
    assert fast.ok and not started
    slow = check(spec(tmp_path, environment={"kind": "launcher", "software": want}, env={"PYTHONPATH": "/nowhere"}))
    assert len(started) == 1 and [(i.key, i.found) for i in slow.items] == [(i.key, i.found) for i in fast.items]
    check(spec(tmp_path, environment={"kind": "launcher", "software": {**want, "cuda": "13.0"}}))
    assert len(started) == 2


def test_a_wheels_record_is_searched_as_the_distributions_file_list_says():
    """owned() reads a wheel's RECORD as text (torch's has ~15,000 lines: a path object for each cost the node 60 ms
    before every command); it must name exactly the files `Distribution.files` names, and nothing it does not."""
    from importlib import metadata

    from launcher.node.software_probe import lists

    for name in ("omegaconf", "pytest", "hydra-core"):
        dd = metadata.distribution(name)
        files = [str(f) for f in dd.files]
        for f in (files[0], files[len(files) // 2], files[-1]):
            assert lists(dd, f), (name, f)
        some = next(f for f in files if f.endswith(".py"))
        for absent in (some[:-1], some + "c", "x" + some, "no/such/module.py"):  # a prefix, longer, another dir
            assert lists(dd, absent) == (absent in files), (name, absent)
