"""Issue 13, items 1 and 7: every run has a directory of its own, nothing written is overwritten, and
written files follow the umask."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from launcher.rundir import Result, atomic_write_text, read_manifest, read_result, write_result
from tests.conftest import ROOT

TICKS = (
    "for i in $(seq 1 {n}); do printf 'tvbench iter=%d t=%s images=2 loss=1.0\\n' $i $(date +%s.%N); sleep {s}; done"
)


def launcher_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def launch(cwd: Path, *args: str, umask: int | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "launcher", *args],
        cwd=cwd,
        env=launcher_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def command(tmp_path: Path, text: str, name: str) -> str:
    path = tmp_path / f"{name}.sh"
    path.write_text(text + "\n")
    return f"impl.command=bash {path}"


TINY = ["scale=full", "window.start=1", "window.end=4"]


def test_two_launches_at_once_get_two_run_dirs(tmp_path):
    """Hydra's default run dir has one-second resolution: two launches in one second used to share it
    (one manifest with two lines, an interleaved train.log, the same figure twice)."""
    cmds = [command(tmp_path, f"echo launch-{k}; " + TICKS.format(n=6, s=0.1 * k), f"c{k}") for k in (1, 2)]
    while time.time() % 1 > 0.2:  # start both early in a second: on main they then share a directory
        time.sleep(0.02)
    procs = [launch(tmp_path, cmd, *TINY) for cmd in cmds]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = sorted(p.parent for p in (tmp_path / "outputs").rglob("result.json"))
    assert len(runs) == 2, runs
    figures = set()
    for run in runs:
        log = (run / "train.log").read_text()
        assert (log.count("launch-1") + log.count("launch-2")) == 1, log  # one command's output, whole
        assert len(read_manifest(run)) == 1
        r = read_result(run)
        figures.add(r.throughput)
        stamps = {int(m[0]): float(m[1]) for m in re.findall(r"iter=(\d+) t=(\S+)", log)}
        own = 2 * 3 / (stamps[4] - stamps[1])  # iterations 2..4 of its own log, 2 images each
        assert abs(r.throughput - own) / own < 1e-6
    assert len(figures) == 2


def test_the_claimed_directory_is_new_even_when_its_name_is_taken(tmp_path, monkeypatch):
    from launcher import claim

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(claim, "_CLAIMED", {})
    first = OmegaConf.create({"d": "${lx.unique_dir:outputs/2024-05-01/02-00-00_x}"}).d
    monkeypatch.setattr(claim, "_CLAIMED", {})  # another process asking for the same name
    second = OmegaConf.create({"d": "${lx.unique_dir:outputs/2024-05-01/02-00-00_x}"}).d
    assert first == "outputs/2024-05-01/02-00-00_x" and second == "outputs/2024-05-01/02-00-00_x-2"
    assert Path(first).is_dir() and Path(second).is_dir()
    again = OmegaConf.create({"d": "${lx.unique_dir:outputs/2024-05-01/02-00-00_x}"}).d
    assert again == second  # Hydra resolves the run dir more than once in one process: the same answer


def test_the_default_run_and_sweep_dirs_are_claimed(compose):
    from hydra import compose as hcompose, initialize_config_dir
    from launcher import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = hcompose("config", return_hydra_config=True)
    raw = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert raw["run"]["dir"].startswith("${lx.unique_dir:") and raw["sweep"]["dir"].startswith("${lx.unique_dir:")


def test_a_fixed_run_dir_never_loses_the_result_already_in_it(tmp_path):
    run = tmp_path / "fixed"
    p = launch(
        tmp_path, command(tmp_path, "echo first; " + TICKS.format(n=5, s=0.05), "a"), *TINY, f"hydra.run.dir={run}"
    )
    out = p.communicate(timeout=300)
    assert p.returncode == 0, out
    before = (run / "result.json").read_text()
    p = launch(
        tmp_path, command(tmp_path, "echo second; " + TICKS.format(n=5, s=0.05), "b"), *TINY, f"hydra.run.dir={run}"
    )
    out, err = p.communicate(timeout=300)
    assert p.returncode == 2, out + err
    assert str(run) in err and "rerun=failed" in err and "Traceback" not in err
    assert (run / "result.json").read_text() == before
    assert "second" not in (run / "train.log").read_text() and len(read_manifest(run)) == 1


def test_two_launches_into_one_fixed_run_dir_never_mix(tmp_path):
    run = tmp_path / "fixed"
    procs = [
        launch(
            tmp_path,
            command(tmp_path, f"echo launch-{k}; " + TICKS.format(n=8, s=0.1), f"c{k}"),
            *TINY,
            f"hydra.run.dir={run}",
        )
        for k in (1, 2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 2], outs
    log = (run / "train.log").read_text()
    assert log.count("launch-") == 1 and len(read_manifest(run)) == 1
    assert read_result(run).status == "ok"


def test_the_node_keeps_a_result_it_finds_in_its_run_dir(tmp_path):
    from launcher.node.run import run_node
    from launcher.spec import JobSpec

    run = tmp_path / "run"
    spec = JobSpec(
        impl="torchvision",
        label="t",
        title="t",
        framework="PyTorch",
        command="exit 3",
        images_per_iter=2,
        window=[1, 2],
        log_format="torchvision",
        run_dir=str(run),
        min_gpus=0,
    )
    spec.save()
    write_result(run, Result(impl="torchvision", hardware="local", backend="local", status="ok", throughput=7.0))
    assert run_node(run).status == "failed"
    kept = list(run.glob("result.json.*.previous"))
    assert len(kept) == 1 and read_result(kept[0]).throughput == 7.0


# ---------------------------------------------------------------- the umask (item 7)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~mask


def test_a_run_writes_files_the_group_can_read(tmp_path):
    """docs/cluster.md's shared-filesystem setup: results must be readable by whoever gathers them."""
    p = launch(tmp_path, "-m", "seed=1", command(tmp_path, TICKS.format(n=5, s=0.05), "a"), *TINY, umask=0o002)
    out = p.communicate(timeout=300)
    assert p.returncode == 0, out
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    run = next(sweep.glob("0_*"))
    for path in [
        run / n
        for n in ("spec.json", "status.json", "result.json", "provenance.json", "train.log", "manifest.jsonl", "job.sh")
    ] + [sweep / "table.rst", sweep / "results.csv"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path
