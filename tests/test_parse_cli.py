"""`python -m launcher.parse`: a real subprocess, on stand-in logs written to disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.jobs.standin.formats import TimeModel, simulate

ROOT = Path(__file__).resolve().parents[1]
MODEL = TimeModel(base=0.3, warmup_iters=80, warmup_factor=5.0, noise=0.1, stall_every=41, stall=2.0, seed=3)


def run(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "launcher.parse", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def d2_log(tmp_path_factory):
    sim = simulate("detectron2", 520, MODEL)
    p = tmp_path_factory.mktemp("d2") / "log.txt"
    p.write_text(sim.log_text())
    return p, sim


def test_defaults_from_the_row_config(d2_log):
    path, sim = d2_log
    r = run("--impl", "detectron2", path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["window"] == [100, 500] and out["images_per_iter"] == 16  # conf/impl/detectron2.yaml on v100x8
    truth = sim.true_throughput((100, 500))
    assert abs(out["throughput"] - truth) / truth <= out["error_bound"]
    assert {"method", "error_bound", "window_requested"} <= set(out)


def test_row_images_per_iter_follow_hardware_v100x8(tmp_path):
    sim = simulate("tensorpack", 520, MODEL)
    p = tmp_path / "log.log"
    p.write_text(sim.log_text())
    r = run("--impl", "tensorpack", p)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["images_per_iter"] == 8  # ${hardware.gpus} on v100x8


def test_overrides_and_format_flag(d2_log):
    path, sim = d2_log
    r = run("--format", "detectron2", "--window", 200, 400, "--images-per-iter", 16, path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["window"] == [200, 400]
    assert abs(out["throughput"] - sim.true_throughput((200, 400))) / out["throughput"] <= out["error_bound"]


def test_window_not_covered_exits_nonzero(d2_log):
    path, _ = d2_log
    r = run("--impl", "detectron2", "--window", 100, 900, path)
    assert r.returncode == 3 and r.stdout == ""
    assert "100..900" in r.stderr and "iteration 520" in r.stderr


def test_unrecognised_format_exits_nonzero(d2_log):
    path, _ = d2_log
    r = run("--impl", "mmdetection", path)
    assert r.returncode == 4 and "does not look like a mmdetection log" in r.stderr
    r = run("--format", "nosuch", "--images-per-iter", 16, path)
    assert r.returncode != 0 and "no parser for log format 'nosuch'" in r.stderr
    r = run("--impl", "nosuch", path)
    assert r.returncode == 2 and "nosuch" in r.stderr


def test_standin_command_writes_where_the_row_reads(tmp_path):
    """The stand-in CLI puts the log at the row's log.path; the parse CLI reads it back to the truth."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher.jobs.standin.standin_impl",
            "--format",
            "simpledet",
            "--iters",
            "520",
            "--base",
            "0.3",
            "--warmup-iters",
            "80",
            "--warmup-factor",
            "5",
            "--noise",
            "0.1",
            "--fast",
            "--truth",
            tmp_path / "truth.json",
            "--cwd",
            tmp_path,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "standin-truth: " in r.stderr
    log = tmp_path / "experiments/mask_r50v1_fpn_1x/log.txt"
    out = run("--impl", "simpledet", log)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    timed = json.loads((tmp_path / "truth.json").read_text())["timed"]
    s, e = res["window"]
    truth = 16 * (e - s) / sum(timed[s:e])
    assert abs(res["throughput"] - truth) / truth <= res["error_bound"]


@pytest.mark.parametrize("bad", ["0", "-16"])
def test_images_per_iter_zero_or_negative_is_refused(d2_log, bad):
    path, _ = d2_log
    r = run("--impl", "detectron2", "--images-per-iter", bad, path)
    assert r.returncode == 2 and r.stdout == ""
    assert f"images per iteration must be a positive whole number, got {bad}" in r.stderr


def test_run_choice_and_exit_codes(tmp_path):
    first = simulate("detectron2", 300, MODEL).sink.text("output/log.txt")
    second = simulate("detectron2", 520, TimeModel(base=0.4, seed=4))
    p = tmp_path / "log.txt"
    p.write_text(first + second.sink.text("output/log.txt"))
    r = run("--impl", "detectron2", p)
    assert r.returncode == 6 and "holds 2 runs" in r.stderr and "--run K" in r.stderr
    r = run("--impl", "detectron2", "--run", 2, p)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    truth = second.true_throughput((100, 500))
    assert abs(out["throughput"] - truth) / truth <= out["error_bound"] and out["details"]["run"] == 2
    r = run("--impl", "detectron2", "--run", 1, p)
    assert r.returncode == 3 and "last one seen is iteration 300" in r.stderr
    r = run("--impl", "detectron2", "--run", 9, p)
    assert r.returncode == 2 and "choose 1..2" in r.stderr
    r = run("--impl", "detectron2", "--run", 2, "--not-before", "2021-01-05T00:00:00+00:00", p)
    assert r.returncode == 5 and "older run's log" in r.stderr


def test_help_documents_the_exit_codes():
    r = run("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for part in (
        "exits 0",
        "2 a bad request",
        "3 the log does not cover the window",
        "4 the log is not in the expected format",
        "5 any other reason",
        "6 the file holds several runs",
    ):
        assert part in text, part


def test_standin_rerun_in_the_same_directory_appends_like_detectron2(tmp_path):
    """detectron2 opens output/log.txt for appending: a rerun in the same work tree leaves two runs in it."""
    for seed in (1, 2):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "launcher.jobs.standin.standin_impl",
                "--format",
                "detectron2",
                "--iters",
                "520",
                "--base",
                "0.3",
                "--seed",
                str(seed),
                "--fast",
                "--cwd",
                tmp_path,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
    log = tmp_path / "output/log.txt"
    assert log.read_text().count("Starting training from iteration 0") == 2
    r = run("--impl", "detectron2", log)
    assert r.returncode == 6 and "holds 2 runs" in r.stderr
    assert run("--impl", "detectron2", "--run", -1, log).returncode == 0
