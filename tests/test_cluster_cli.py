"""The cluster workflow as a user types it, against the real Slurm and Ray that .ci/run starts:
submit a sweep (waiting or not), gather it later, rerun only the failed rows."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.rundir import read_manifest, read_result
from tests.conftest import ROOT, run_launcher

RAY_ADDRESS = os.environ.get("LAUNCHER_RAY_ADDRESS", "http://127.0.0.1:8265")


def slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def ray_up() -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{RAY_ADDRESS}/api/version", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


BACKENDS = [
    pytest.param(
        "slurm",
        marks=[
            pytest.mark.slurm,
            pytest.mark.skipif(
                not slurm_up(),
                reason="no Slurm cluster answers: run `bash .ci/services/slurm.sh start` (as .ci/run does)",
            ),
        ],
    ),
    pytest.param(
        "ray",
        marks=[
            pytest.mark.ray,
            pytest.mark.skipif(
                not ray_up(),
                reason=f"no Ray head at {RAY_ADDRESS}: run `bash .ci/services/ray.sh start` (as .ci/run does)",
            ),
        ],
    ),
]


def backend_args(backend: str) -> list[str]:
    args = [
        f"backend={backend}",
        "hydra.searchpath=[file://" + str(ROOT / "tests" / "conf") + "]",
        "impl=standin",
        "hardware=local",
        "hardware.gpus=1",
        "hardware.cpus=1",
        "hardware.mem_gb=1",
        "hardware.time_limit_min=5",
        "window.start=2",
        "window.end=10",
        "backend.poll_s=0.5",
    ]
    if backend == "ray":
        args.append(f"backend.address={RAY_ADDRESS}")
    if backend == "slurm":  # stand-ins share the CI node (a benchmark row takes the whole node: the default)
        args += ["backend.exclusive=false", "backend.mem=hardware"]
    return args


def gather_json(sweep: Path) -> dict:
    p = subprocess.run(
        [sys.executable, "-m", "launcher.gather", str(sweep), "--format", "json", "--no-record"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.returncode in (0, 3), p.stderr
    return json.loads(p.stdout)


def sweep_dir(stdout: str, cwd: Path) -> Path:
    sweeps = sorted((cwd / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sweep_without_waiting_then_gather(backend, tmp_path):
    t0 = time.monotonic()
    p = run_launcher("-m", "seed=1,2,3", "wait=false", *backend_args(backend), cwd=tmp_path, timeout=300)
    back_in = time.monotonic() - t0
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    sweep = sweep_dir(p.stdout, tmp_path)
    assert "python -m launcher.gather" in p.stdout and str(sweep) in p.stdout
    entries = read_manifest(sweep)
    assert len(entries) == 3 and all(e["job_id"] and e["backend"] == backend for e in entries)
    assert back_in < 60, f"the shell came back after {back_in:.1f} s"

    deadline = time.time() + 180
    while True:
        runs = gather_json(sweep)["runs"]
        mine = [r for r in runs if r.get("impl") == "standin"]
        if len(mine) == 3 and all(r["status"] == "ok" for r in mine):
            break
        assert time.time() < deadline, mine
        odd = [(r["status"], r.get("reason")) for r in mine if r["status"] not in ("ok", "pending", "running")]
        assert not odd, odd
        time.sleep(2)
    for d in sorted(p.parent for p in sweep.glob("*/result.json")):
        r = read_result(d)
        truth = json.loads((d / "standin-truth.json").read_text())["timed"]
        s, e = r.window
        true = r.images_per_iter * (e - s) / sum(truth[s:e])
        assert abs(r.throughput - true) / true <= r.error_bound + 1e-6
    # the rows ran side by side, not one after the other
    spans = sorted((read_result(d).started_at, read_result(d).finished_at) for d in sweep.glob("*_standin"))
    assert spans[-1][0] < spans[0][1], f"the rows did not overlap: {spans}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_sweep_waits_prints_the_table_and_reruns_only_failed_rows(backend, tmp_path):
    # seed=2 fails (its command exits 7); the other rows succeed
    script = tmp_path / "cmd.sh"
    script.write_text('test "$1" != 2 || { echo the seed-2 row breaks; exit 7; }\nshift; exec "$@"\n')
    cmd = (
        f"impl.command=bash {script} ${{seed}} python -m launcher.jobs.standin.standin_impl --format detectron2 "
        "--iters 12 --base 0.2 --seed ${seed} --images-per-iter 2 --truth standin-truth.json"
    )
    p = run_launcher("-m", "seed=1,2,3", cmd, *backend_args(backend), cwd=tmp_path, timeout=400)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]  # a row failed
    sweep = sweep_dir(p.stdout, tmp_path)
    assert "Throughput (img/s)" in p.stdout and "the seed-2 row breaks" in read_result(sweep / "1_standin").error
    assert (sweep / "table.rst").exists() and (sweep / "results.csv").exists()
    statuses = {d.name: read_result(d).status for d in sweep.glob("*_standin")}
    assert statuses == {"0_standin": "ok", "1_standin": "failed", "2_standin": "ok"}
    ok_before = {d: (sweep / d / "result.json").read_text() for d in ("0_standin", "2_standin")}

    # fixed: resubmit only what failed, into the same sweep
    fixed = cmd.replace(f"bash {script} ${{seed}} ", "")
    p = run_launcher(
        "-m",
        "seed=1,2,3",
        fixed,
        "rerun=failed",
        f"hydra.sweep.dir={sweep}",
        *backend_args(backend),
        cwd=tmp_path,
        timeout=400,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert {d.name: read_result(d).status for d in sweep.glob("*_standin")} == {
        "0_standin": "ok",
        "1_standin": "ok",
        "2_standin": "ok",
    }
    for d, text in ok_before.items():
        assert (sweep / d / "result.json").read_text() == text  # untouched
    assert list((sweep / "1_standin").glob("result.json.*.previous"))  # the failed attempt is kept
    assert [e["run_dir"].endswith("1_standin") for e in read_manifest(sweep)].count(True) == 2
