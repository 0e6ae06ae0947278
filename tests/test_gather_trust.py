"""Issue 21, class 10: what gather (and cancel) read back from run and sweep dirs is checked first. A result.json
copied from another run is not tabled as this row; a sweep copied elsewhere shows its own rows, not the
original's; job ids and names from a manifest are validated before they reach a table or a command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from launcher.gather import gather
from launcher.rundir import Result, append_manifest, read_manifest, write_result
from launcher.spec import JobSpec
from tests.conftest import ROOT


def planned(run_dir, impl="detectron2", sweep=None) -> JobSpec:
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = JobSpec(
        impl=impl,
        label=impl,
        title=impl,
        framework="none",
        command="true",
        images_per_iter=16,
        window=[100, 500],
        log_format="detectron2",
        run_dir=str(run_dir.resolve()),
        sweep_dir=str(sweep.resolve()) if sweep else None,
    )
    spec.save()
    return spec


def finished(spec: JobSpec, status="ok", throughput=61.0) -> None:
    write_result(
        spec.run_dir,
        Result.for_spec(
            spec,
            status,
            throughput=throughput if status == "ok" else None,
            started_at="2026-01-01T00:00:00+00:00",
            error=None if status == "ok" else "command exited with status 1",
        ),
    )


def rows(path) -> dict:
    runs, problems = gather([path], db=None, job_state=True)
    return {r["run_dir"].split("/")[-1]: (r["status"], r.get("throughput")) for r in runs.to_dict("records")}, problems


def test_a_result_copied_in_from_another_run_is_not_tabled_as_this_row(tmp_path):
    sweep = tmp_path / "sweep"
    good = planned(sweep / "0_detectron2", sweep=sweep)
    bad = planned(sweep / "1_detectron2", sweep=sweep)
    finished(good)
    finished(bad, "failed")
    shutil.copy(sweep / "0_detectron2" / "result.json", sweep / "1_detectron2" / "result.json")
    table, problems = rows(sweep)
    assert table["0_detectron2"][0] == "ok"
    assert table["1_detectron2"][0] != "ok" and table["1_detectron2"][1] != 61.0
    assert any("written for the run dir" in p.message and "0_detectron2" in p.message for p in problems)


def test_a_copied_sweep_shows_its_own_rows_not_the_originals(tmp_path):
    sweep = tmp_path / "sweep"
    spec = planned(sweep / "0_detectron2", sweep=sweep)
    append_manifest(spec, "local-1-0_detectron2")  # submitted, then copied before it ended
    shutil.copytree(sweep, tmp_path / "copy", symlinks=True)
    finished(spec)  # the original ends ok
    table, _ = rows(tmp_path / "copy")
    assert table["0_detectron2"] != ("ok", 61.0), table
    entry = read_manifest(tmp_path / "copy")[0]
    assert entry["run_dir"] == str(tmp_path / "copy" / "0_detectron2")  # where it lies now
    old = read_manifest(tmp_path / "copy" / "0_detectron2")[0]
    assert old["run_dir"] == str(tmp_path / "copy" / "0_detectron2")


def test_a_copied_sweep_of_old_manifest_lines_is_rebased_too(tmp_path):
    """Lines written before `rel_run_dir` existed: the row of that name under the sweep where it lies now."""
    sweep = tmp_path / "sweep"
    spec = planned(sweep / "0_detectron2", sweep=sweep)
    line = {
        "impl": "detectron2",
        "hardware": "local",
        "backend": "local",
        "job_id": "local-1-0_detectron2",
        "run_dir": spec.run_dir,
        "submitted_at": "2026-01-01T00:00:00+00:00",
    }
    for d in (sweep, sweep / "0_detectron2"):
        (d / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    shutil.copytree(sweep, tmp_path / "copy")
    finished(spec)
    assert read_manifest(tmp_path / "copy")[0]["run_dir"] == str(tmp_path / "copy" / "0_detectron2")
    table, _ = rows(tmp_path / "copy")
    assert table["0_detectron2"] != ("ok", 61.0), table


def test_job_ids_and_names_from_a_manifest_are_validated(tmp_path):
    run = tmp_path / "sweep" / "0_detectron2"
    planned(run)
    evil = {
        "impl": "detectron2",
        "hardware": "local",
        "backend": "slurm",
        "job_id": "--signal=KILL;rm -rf ~",
        "run_dir": str(run),
        "submitted_at": "2026-01-01T00:00:00+00:00",
    }
    (run / "manifest.jsonl").write_text(json.dumps(evil) + "\n")
    entry = read_manifest(run)[0]
    assert (
        entry["job_id"] is None and "not one the launcher writes" in entry["invalid"] and "rm" not in entry["invalid"]
    )
    runs, _ = gather([run], db=None, job_state=True)
    rec = runs.to_dict("records")[0]
    assert "manifest line refused" in str(rec["reason"]) and "rm -rf" not in json.dumps(rec, default=str)
    p = subprocess.run(
        [sys.executable, "-m", "launcher.cancel", str(run)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert p.returncode == 1 and "refused" in p.stdout and "rm -rf" not in p.stdout, p.stdout + p.stderr
