"""Issue 21: further cases of the eleven classes, found by probing other writers, readers and commands than the
issue's examples (each test names its class)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from launcher.gather import gather, report
from launcher.rundir import Result, read_small, write_result
from launcher.weights import WeightsError, check, fetch
from tests.conftest import ROOT
from tests.test_gather_trust import planned
from tests.test_clear_errors import read_only  # noqa: F401  (fixture)


# class 5 (other readers): a FIFO or a huge file planted as a state file never blocks or fills a reader
def test_a_fifo_planted_as_a_result_never_blocks_gather(tmp_path):
    planned(tmp_path / "sweep" / "0_detectron2")
    os.mkfifo(tmp_path / "sweep" / "0_detectron2" / "result.json")
    os.mkfifo(tmp_path / "sweep" / "manifest.jsonl")
    out: dict = {}
    t = threading.Thread(
        target=lambda: out.update(r=gather([tmp_path / "sweep"], db=None, job_state=False)), daemon=True
    )
    t.start()
    t.join(30)
    assert not t.is_alive(), "gather blocked on a FIFO"
    runs, problems = out["r"]
    assert any("not a regular file" in p.message for p in problems)
    with open(tmp_path / "big.json", "wb") as f:
        f.truncate(65 << 20)  # sparse: 65 MB of nothing
    with pytest.raises(OSError, match="more than any file the launcher writes"):
        read_small(tmp_path / "big.json")


# class 10 (other readers): a figure whose window outlasts the run that wrote it is not tabled
def test_gather_refuses_a_figure_longer_than_its_run(tmp_path):
    spec = planned(tmp_path / "sweep" / "0_detectron2")
    write_result(
        spec.run_dir,
        Result.for_spec(
            spec,
            "ok",
            throughput=0.0017,
            window=[100, 500],
            mean_step_time=9.0,
            error_bound=0.0,
            started_at="2026-01-01T00:00:00+00:00",
            finished_at="2026-01-01T00:00:02+00:00",
        ),
    )
    runs, problems = gather([tmp_path / "sweep"], db=None, job_state=False)
    assert runs.to_dict("records")[0]["status"] != "ok"
    assert any("lasted 3600.0 s" in p.message and "lasted 2 s" in p.message for p in problems)


# class 4 (other downloads): the published-md5 file is read bounded, from a source the step may read
def test_a_published_checksum_file_is_read_bounded(tmp_path):
    blob, md5 = tmp_path / "w.pkl", tmp_path / "w.pkl.md5sum"
    blob.write_bytes(b"weights")
    md5.write_bytes(b"0" * (1 << 20))
    for p in (blob, md5):
        p.chmod(0o644)
    with pytest.raises(WeightsError, match="not a checksum file"):
        fetch(
            tmp_path / "weights",
            {"dest": "x/w.pkl", "urls": [blob.as_uri()], "md5_url": md5.as_uri()},
            log=lambda s: None,
        )


# class 11 (other commands): a truncated weights lock is a clear error, not a traceback
def test_a_truncated_weights_lock_is_a_clear_error(tmp_path):
    wdir = tmp_path / "weights"
    (wdir / "x").mkdir(parents=True)
    (wdir / "x" / "w.pkl").write_bytes(b"weights")
    (wdir / "weights.lock.json").write_text('{"x/w.pkl": {"sha256": "ab')
    with pytest.raises(WeightsError, match="cannot be read .* move it aside"):
        check(wdir, {"dest": "x/w.pkl", "urls": []})


# class 7 (other writers at the end of a launch): table files that cannot be written do not fail the launch
def test_table_files_that_cannot_be_written_are_said_not_fatal(tmp_path, read_only):  # noqa: F811
    spec = planned(tmp_path / "sweep" / "0_detectron2")
    write_result(
        spec.run_dir,
        Result.for_spec(
            spec,
            "ok",
            throughput=61.0,
            window=[100, 500],
            mean_step_time=0.2,
            error_bound=0.001,
            started_at="2026-01-01T00:00:00+00:00",
            finished_at="2026-01-01T00:10:00+00:00",
        ),
    )
    text, problems = report([tmp_path / "sweep"], out_dir=read_only / "inside", db=None)
    assert "61" in text and problems and not any(p.fatal for p in problems)
    assert "table files not written" in str(problems[0])


# class 1 (other writers): a scheduler settling a row keeps the node's own result beside its own
def test_settling_a_row_keeps_the_nodes_result(tmp_path):
    from launcher.backends.slurm.job import settle_result

    spec = planned(tmp_path / "run")
    write_result(spec.run_dir, Result.for_spec(spec, "failed", error="command exited with status 1"))
    settle_result(tmp_path / "run", "timeout", "time limit reached")
    kept = list((tmp_path / "run").glob("result.json.*.previous"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "failed"


# class 8 (other keys): credentials in a Ray runtime_env's env_vars are refused too
def test_a_token_in_ray_env_vars_is_refused(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher",
            "backend=ray",
            "dry_run=true",
            "+backend.runtime_env.env_vars.WANDB_API_KEY=0123456789abcdef",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "impl.env_pass=[WANDB_API_KEY]" in p.stderr, p.stderr
    assert "0123456789abcdef" not in p.stderr


# class 11 (other commands): a truncated stage marker is a clear error
def test_a_truncated_stage_marker_is_a_clear_error(tmp_path, compose):
    from tests.coco_helpers import make_coco
    from launcher.data.stage import problems, stage
    from launcher.plan import plan

    coco = make_coco(tmp_path / "coco")
    spec = plan(
        compose("impl=detectron2", f"cache_dir={tmp_path / 'cache'}", f"data.coco_root={coco['coco_root']}"),
        tmp_path / "run",
    )
    stage(spec, log=lambda s: None)
    marker = next((tmp_path / "cache" / "data").glob("*.stage.json"))
    marker.write_text(marker.read_text()[:20])
    out, _ = problems(spec)
    assert out and "cannot be read" in out[0] and "--force" in out[0]


# class 11 (data stage): an annotation file cut short is not "complete"
def test_a_truncated_annotation_file_is_not_complete(tmp_path):
    from tests.coco_helpers import make_coco

    coco = make_coco(tmp_path / "coco")
    ann = coco["coco_root"] / "annotations" / "instances_train2017.json"
    text = ann.read_bytes()
    ann.write_bytes(text[: len(text) * 2 // 3])
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def stage() -> subprocess.CompletedProcess:
        cmd = [
            "-m",
            "launcher.data",
            "stage",
            "impl=detectron2",
            f"cache_dir={tmp_path / 'cache'}",
            f"data.coco_root={coco['coco_root']}",
        ]
        return subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    p = stage()
    assert p.returncode == 1 and "(complete)" not in p.stdout, p.stdout + p.stderr
    assert "not complete JSON" in p.stdout and "cut short" in p.stdout
    ann.write_bytes(text)
    time.sleep(0.01)
    p = stage()
    assert p.returncode == 0 and "(complete)" in p.stdout, p.stdout + p.stderr


# class 11 (launcher.data synth): an unwritable place is a clear error
def test_synth_into_an_unwritable_place_is_a_clear_error(tmp_path, read_only):  # noqa: F811
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [sys.executable, "-m", "launcher.data", "synth", "--out", str(read_only / "inside" / "syn")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "cannot write" in p.stderr and "--out" in p.stderr


# class 2 (other writers): a rerun never writes through a row's dir replaced by a link
def test_a_rerun_never_writes_through_a_row_dir_replaced_by_a_link(tmp_path):
    from launcher.rerun import skip_reason

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "result.json").write_text("precious\n")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "0_detectron2").symlink_to(elsewhere)
    why = skip_reason("failed", tmp_path / "sweep" / "0_detectron2", "detectron2")
    assert why and "symbolic link" in why
    assert (elsewhere / "result.json").read_text() == "precious\n" and len(list(elsewhere.iterdir())) == 1
