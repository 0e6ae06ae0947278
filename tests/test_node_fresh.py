"""Issue 10, item 1: every figure comes from this run's own log, never from an older run's.

Seed rows run in a work tree shared by every run of their recipe, and their logs land inside it
(detectron2 appends to output/log.txt, mmdetection leaves a *.log.json per run). These tests put two
runs of the stand-in row into one such tree (`impl.workdir` pointing at a shared directory) and check
that the second never reports the first one's figure.
"""

import time
from pathlib import Path

from launcher.rundir import read_result
from launcher.spec import JobSpec
from tests.conftest import ROOT, run_launcher

STANDIN = ["hydra.searchpath=[file://" + str(ROOT / "tests" / "conf") + "]", "impl=standin", "scale=full"]
MMDET_LOG = "work_dirs/mask_rcnn_r50_caffe_fpn_1x_coco/*.log.json"


def script(tmp_path: Path, text: str) -> str:
    """A command override: the shell text in a file (Hydra's grammar keeps `;` for itself)."""
    path = tmp_path / f"cmd{len(list(tmp_path.glob('cmd*')))}.sh"
    path.write_text(text + "\n")
    return f"impl.command=bash {path}"


def run_dirs(cwd: Path) -> list[Path]:
    return sorted(p.parent for p in (cwd / "outputs").rglob("result.json"))


def test_a_crashing_second_run_never_reports_the_first_runs_figure(tmp_path):
    """The issue's reproduction: a second run whose command is `sleep 8; exit 1`, in the same work tree,
    came back ok with the first run's figure (its "covered?" poll found the old output/log.txt)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    common = [*STANDIN, f"impl.workdir={tree}", "impl.stop_when_covered=true", "window.start=10", "window.end=30"]
    p = run_launcher(*common, "impl.options.iters=40", "impl.options.base=0.05", cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    first = read_result(run_dirs(tmp_path)[0])
    assert first.status == "ok" and (tree / "output" / "log.txt").exists()

    p = run_launcher(*common, script(tmp_path, "sleep 8; exit 1"), cwd=tmp_path, timeout=300)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    second = read_result([d for d in run_dirs(tmp_path) if read_result(d).started_at != first.started_at][0])
    assert second.status == "failed" and second.throughput is None
    assert "exited with status 1" in second.error
    assert second.returncode == 1  # the command ran to its end: nothing stopped it as "covered"


def test_a_log_file_older_than_the_run_is_refused(tmp_path):
    """mmdetection's *.log.json carries no wall-clock stamps: the file's age is what tells an old run's log."""
    tree = tmp_path / "tree"
    tree.mkdir()
    common = [
        *STANDIN,
        f"impl.workdir={tree}",
        "impl.options.format=mmdetection",
        f"impl.log.path={MMDET_LOG}",
        "window.start=50",
        "window.end=150",
        "impl.images_per_iter=16",
    ]
    p = run_launcher(*common, "impl.options.iters=200", "impl.options.extra=--fast", cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    old = next(tree.glob(MMDET_LOG))

    p = run_launcher(*common, script(tmp_path, "sleep 1; echo done"), cwd=tmp_path, timeout=300)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    second = [read_result(d) for d in run_dirs(tmp_path) if read_result(d).status != "ok"]
    assert len(second) == 1 and second[0].status == "failed" and second[0].throughput is None
    assert str(old) in second[0].error and "before this run started" in second[0].error


def test_a_log_an_older_run_appended_to_is_refused(tmp_path):
    """detectron2 opens output/log.txt for appending: a second run in the same tree writes its records
    after the first run's. The file then holds an older run's records, stamped before this run began."""
    tree = tmp_path / "tree"
    tree.mkdir()
    common = [
        *STANDIN,
        f"impl.workdir={tree}",
        "window.start=10",
        "window.end=30",
        "impl.options.iters=40",
        "impl.options.base=0.02",
    ]
    assert run_launcher(*common, cwd=tmp_path, timeout=300).returncode == 0
    time.sleep(1.1)  # the stamps have one-second resolution
    p = run_launcher(*common, "seed=1", cwd=tmp_path, timeout=300)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    second = [read_result(d) for d in run_dirs(tmp_path) if read_result(d).status != "ok"]
    assert len(second) == 1 and second[0].status == "failed"
    assert "older run" in second[0].error and "before this run started" in second[0].error


def node_spec(run: Path, command: str, log_path: str | None, fmt: str = "detectron2") -> JobSpec:
    spec = JobSpec(
        impl="standin",
        label="s",
        title="s",
        framework="none",
        command=command,
        images_per_iter=2,
        window=[10, 30],
        log_format=fmt,
        log_path=log_path,
        run_dir=str(run),
        stop_when_covered=False,
        min_gpus=0,
    )
    spec.save()
    return spec


def test_the_node_gives_each_attempt_a_fresh_log_in_its_run_dir(tmp_path, monkeypatch):
    """An attempt of a row in a run dir that already has one (rerun=failed, a requeue) starts a fresh train.log
    and a fresh log of its own inside the run dir; the earlier attempt's files are kept beside, renamed."""
    from launcher.node.run import run_node

    run = tmp_path / "run"
    cmd = "python -m launcher.jobs.standin.standin_impl --format detectron2 --iters {n} --base 0.01 --fast"
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    node_spec(run, cmd.format(n=20), "output/log.txt")
    assert run_node(run).status == "incomplete"  # 20 iterations do not cover 10..30
    time.sleep(1.1)  # the stamps have one-second resolution
    node_spec(run, cmd.format(n=40), "output/log.txt")
    r = run_node(run)
    assert r.status == "ok", r.error
    assert len(list((run / "output").glob("log.txt.*.previous"))) == 1
    assert len(list(run.glob("train.log.*.previous"))) == 1
    assert (run / "output" / "log.txt").read_text().count("Starting training") == 1


def test_rerun_failed_starts_a_fresh_train_log(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "impl=torchvision", "scale=full", "window.start=1", "window.end=2", f"hydra.sweep.dir={sweep}"]
    p = run_launcher(*args, script(tmp_path, "echo first-attempt-marker; exit 3"), cwd=tmp_path, timeout=300)
    assert p.returncode == 1
    p = run_launcher(
        *args, "rerun=failed", script(tmp_path, "echo second-attempt-marker; exit 4"), cwd=tmp_path, timeout=300
    )
    assert p.returncode == 1
    run = sweep / "0_torchvision"
    assert "second-attempt-marker" in (run / "train.log").read_text()
    assert "first-attempt-marker" not in (run / "train.log").read_text()
    kept = list(run.glob("train.log.*.previous"))
    assert len(kept) == 1 and "first-attempt-marker" in kept[0].read_text()
