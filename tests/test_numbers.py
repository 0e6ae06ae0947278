"""Issue 10, items 2 and 4: numbers that cannot be, and windows that moved, as the node and the table see them."""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3

import pytest
from gather_helpers import result, spec

from launcher.gather import gather, render
from launcher.gather.__main__ import EXIT_SKIPPED, main
from launcher.rundir import Result, read_result

BAD_THROUGHPUTS = [float("inf"), float("-inf"), float("nan"), 0.0, -16.0, "fast", True]


@pytest.mark.parametrize("bad", BAD_THROUGHPUTS)
def test_an_ok_result_needs_a_finite_positive_throughput(bad):
    with pytest.raises(ValueError, match="throughput"):
        Result(impl="x", hardware="local", backend="local", status="ok", throughput=bad)


def test_the_node_never_writes_an_impossible_figure(tmp_path, monkeypatch):
    """A parser bug that let an infinite figure through would still end as a failed row, not an ok one."""
    import launcher.node.run as node
    from launcher.parse import Measurement
    from launcher.spec import JobSpec

    spec_ = JobSpec(
        impl="torchvision",
        label="t",
        title="t",
        framework="PyTorch",
        command="true",
        images_per_iter=2,
        window=[1, 2],
        log_format="torchvision",
        run_dir=str(tmp_path / "run"),
        stop_when_covered=False,
        min_gpus=0,
    )
    spec_.save()
    monkeypatch.setattr(
        node,
        "measure",
        lambda *a, **k: Measurement(
            throughput=math.inf,
            window=(1, 2),
            window_requested=(1, 2),
            images_per_iter=2,
            method="m",
            error_bound=0.001,
            mean_step_time=0.0,
            last_iter=2,
        ),
    )
    r = node.run_node(tmp_path / "run")
    assert r.status == "failed" and r.throughput is None and "throughput" in r.error
    again = read_result(tmp_path / "run")  # what is on disk is a readable, valid result
    assert again.status == "failed" and "Infinity" not in (tmp_path / "run" / "result.json").read_text()


@pytest.mark.parametrize("raw", ["Infinity", "-Infinity", "NaN", "0", "-16.5", '"fast"'])
def test_gather_shows_an_impossible_figure_as_unreadable(tmp_path, capsys, raw):
    run = tmp_path / "sweep" / "0_detectron2"
    spec(run, "detectron2")
    result(run, "detectron2", "ok", 61.0)
    text = (run / "result.json").read_text().replace('"throughput": 61.0', f'"throughput": {raw}')
    (run / "result.json").write_text(text)
    db = tmp_path / "history.sqlite"
    code = main([str(tmp_path / "sweep"), "--format", "csv", "--db", str(db)])
    out, err = capsys.readouterr()
    assert code == EXIT_SKIPPED
    assert "Traceback" not in err and str(run / "result.json") in err
    rows = [r for r in csv.DictReader(io.StringIO(out)) if r["impl"] == "detectron2"]
    assert len(rows) == 1 and rows[0]["status"] == "unreadable" and rows[0]["throughput"] == ""
    if db.exists():
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0


def test_plan_refuses_images_per_iter_that_is_not_positive(compose, tmp_path):
    from launcher.plan import ConfigError, plan

    for bad in (0, -16):
        with pytest.raises(ConfigError, match="images_per_iter"):
            plan(compose(f"impl.images_per_iter={bad}"), tmp_path / "run")


def test_a_dry_run_also_refuses_images_per_iter_that_is_not_positive(tmp_path):
    from tests.conftest import run_launcher

    p = run_launcher("impl.images_per_iter=0", "dry_run=true", cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "images_per_iter" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("spec.json"))


# ---------------------------------------------------------------- a measured window that moved


def moved(tmp_path):
    """Detectron logs iterations 1, 21, ..., 101, ...: a request for 100..500 is measured over 101..501."""
    run = tmp_path / "sweep" / "0_detectron"
    result(
        run,
        "detectron",
        "ok",
        19.3,
        window=[101, 501],
        window_requested=[100, 500],
        method="... MEASURED WINDOW 101..501 differs from the requested 100..500 ...",
    )
    result(
        tmp_path / "sweep" / "1_detectron2",
        "detectron2",
        "ok",
        61.0,
        window=[100, 500],
        window_requested=[100, 500],
        n=1,
    )
    runs, problems = gather([tmp_path / "sweep"], job_state=False)
    assert not problems
    return runs


@pytest.mark.parametrize("fmt", ["console", "rst", "md"])
def test_a_moved_window_is_shown_in_the_text_tables(tmp_path, fmt):
    text = render(moved(tmp_path), fmt)
    detectron = [ln for ln in text.splitlines() if "Detectron" in ln and "19.3" in ln]
    assert len(detectron) == 1 and "101..501" in detectron[0] and "100..500" in detectron[0], text
    d2 = [ln for ln in text.splitlines() if "61.0" in ln]
    assert len(d2) == 1 and "..500" not in d2[0]  # a window as requested says nothing


def test_a_moved_window_is_in_the_csv_and_json(tmp_path):
    runs = moved(tmp_path)
    rows = {r["impl"]: r for r in csv.DictReader(io.StringIO(render(runs, "csv")))}
    assert rows["detectron"]["window"] == "101..501" and rows["detectron"]["window_requested"] == "100..500"
    assert rows["detectron2"]["window"] == "100..500"
    doc = json.loads(render(runs, "json"))
    table = {r["impl"]: r for r in doc["table"]}
    assert table["detectron"]["window"] == [101, 501] and table["detectron"]["window_requested"] == [100, 500]
    assert table["detectron"]["window_moved"] is True and table["detectron2"]["window_moved"] is False
