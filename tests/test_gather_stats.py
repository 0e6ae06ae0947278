"""Repeats, the olympic mean, instability and verdicts at the tolerance edges; history and the plot."""

from __future__ import annotations

import sqlite3
import statistics

import pytest
from gather_helpers import result

from launcher.gather import gather, render, summary
from launcher.gather import history as hist
from launcher.gather import stats
from launcher.gather.__main__ import main
from launcher.gather.plot import plot


# ---------------------------------------------------------------- repeats


def test_olympic_mean_drops_one_min_and_one_max():
    assert stats.olympic_mean([60, 61, 62, 63, 100]) == pytest.approx(62.0)
    assert stats.olympic_mean([1, 1, 1, 1]) is None  # fewer than five: no olympic mean
    assert stats.olympic_mean([5, 5, 1, 9, 5, 5]) == 5.0  # drops only one of each


def test_repeats_are_aggregated_with_spread(tmp_path):
    vals = [61.0, 61.5, 62.0, 62.5, 63.0]
    for i, v in enumerate(vals):
        result(tmp_path / "s" / f"{i}_detectron2", "detectron2", "ok", v, n=i)
    result(tmp_path / "s" / "9_detectron2", "detectron2", "ok", 30.0, recipe_hash="other", n=9)  # other recipe
    runs, _ = gather([tmp_path], job_state=False)
    t = summary(runs)
    d2 = t[t["impl"] == "detectron2"].set_index("recipe_hash")
    row = d2.loc["r1"]
    assert row["count"] == 5
    assert row["mean"] == pytest.approx(62.0) and row["std"] == pytest.approx(statistics.stdev(vals))
    assert (row["min"], row["max"]) == (61.0, 63.0)
    assert row["olympic_mean"] == pytest.approx(62.0) and row["throughput"] == row["olympic_mean"]
    assert "olympic" in row["aggregate"] and not row["unstable"]
    assert d2.loc["other", "count"] == 1  # another recipe is another group
    text = render(runs, "rst")
    assert "n=5, olympic, sd 0.79, 61.00–63.00" in text


def test_olympic_mean_is_the_figure_not_the_mean():
    s = stats.summarize([50, 60, 61, 62, 100])
    assert s["mean"] == pytest.approx(66.6) and s["throughput"] == pytest.approx(61.0)


def test_unstable_when_runs_disagree_beyond_their_noise():
    calm = stats.summarize([62.0, 62.3, 61.8], [0.001] * 3)
    assert not calm["unstable"]
    wild = stats.summarize([62.0, 55.0, 60.0], [0.001] * 3)  # CV ~6% > 2%
    assert wild["unstable"] and wild["cv"] > stats.UNSTABLE_CV
    # a coarse log (1% rounding) widens the noise: 3% CV is then within it
    coarse = stats.summarize([60.0, 62.0, 63.5], [0.01] * 3)
    assert 0.02 < coarse["cv"] < 0.03 and not coarse["unstable"]
    assert stats.summarize([60.0, 62.0, 63.5], [0.001] * 3)["unstable"]


def test_unstable_row_is_flagged_in_the_table(tmp_path):
    for i, v in enumerate([62.0, 50.0, 58.0]):
        result(tmp_path / "s" / str(i), "detectron2", "ok", v, n=i)
    runs, _ = gather([tmp_path], job_state=False)
    row = summary(runs).iloc[0]
    assert row["unstable"] and row["status"] == "ok"  # a flag, not a second status
    assert "ok, unstable (CV" in render(runs, "rst")


# ---------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    "measured,expected",
    [
        (50.0, "reproduced"),
        (52.5, "reproduced"),
        (47.5, "reproduced"),  # exactly on the edges: inclusive
        (52.5001, "faster"),
        (47.4999, "slower"),
        (60.0, "faster"),
        (30.0, "slower"),
    ],
)
def test_verdict_at_the_tolerance_edges(measured, expected):
    assert stats.verdict(measured, 50.0, 0.05, "v100x8", "v100x8", "full")[0] == expected


def test_verdict_edges_with_inexact_binary_fractions():
    # 62 * 1.05 = 65.1 and 62 * 0.95 = 58.9 are not exact in binary; the edge still counts
    assert stats.verdict(65.1, 62, 0.05)[0] == "reproduced"
    assert stats.verdict(58.9, 62, 0.05)[0] == "reproduced"
    assert stats.verdict(65.11, 62, 0.05)[0] == "faster"
    assert stats.verdict(58.89, 62, 0.05)[0] == "slower"


def test_verdict_na_cases():
    assert stats.verdict(10, None, 0.05)[0] == "n/a"
    assert stats.verdict(10, 62, 0.05, "a100x8", "v100x8")[0] == "n/a"
    assert stats.verdict(62, 62, 0.05, "v100x8", "v100x8", "smoke")[0] == "n/a"
    assert stats.verdict(None, 62, 0.05) == (None, None, None)


def test_per_row_tolerance_from_the_result(tmp_path):
    result(tmp_path / "s" / "0", "detectron2", "ok", 55.8, tolerance=0.10)  # ratio 0.9: reproduced at 10%
    result(tmp_path / "s" / "1", "mmdetection", "ok", 47.7, tolerance=0.05)  # ratio 0.9: slower at 5%
    runs, _ = gather([tmp_path], job_state=False)
    v = dict(zip(summary(runs)["impl"], summary(runs)["verdict"]))
    assert v["detectron2"] == "reproduced" and v["mmdetection"] == "slower"


# ---------------------------------------------------------------- history


def test_history_is_idempotent(tmp_path):
    db = tmp_path / "h.sqlite"
    for i in range(3):
        result(tmp_path / "s" / str(i), "detectron2", "ok", 60.0 + i, n=i)
    result(tmp_path / "s" / "3", "mmdetection", "failed", n=3)
    gather([tmp_path / "s"], db=db, job_state=False)
    gather([tmp_path / "s"], db=db, job_state=False)
    gather([tmp_path / "s" / "0"], db=db, job_state=False)
    assert hist.append(db, gather([tmp_path / "s"], job_state=False)[0].to_dict("records")) == 0
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 4
    assert len(hist.load(db)) == 3  # ok only
    # the same run, moved elsewhere, is still the same run
    import shutil

    shutil.copytree(tmp_path / "s", tmp_path / "moved")
    gather([tmp_path / "moved"], db=db, job_state=False)
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 4


def test_history_flags_a_regression(tmp_path):
    db = tmp_path / "h.sqlite"
    for i, v in enumerate([60.0, 60.5, 59.8, 60.2, 55.0]):
        result(tmp_path / "s" / str(i), "detectron2", "ok", v, n=i)
    for i, v in enumerate([50.0, 50.4, 49.9, 49.6]):
        result(tmp_path / "s" / f"m{i}", "mmdetection", "ok", v, n=i)
    gather([tmp_path / "s"], db=db, job_state=False)
    t = hist.trend(hist.load(db)).set_index("impl")
    assert bool(t.loc["detectron2", "regression"]) and t.loc["detectron2", "latest"] == 55.0
    assert not bool(t.loc["mmdetection", "regression"])  # 49.6 is within the noise of 50.0-50.4
    assert t.loc["detectron2", "status"] == "regression"
    assert list(hist.trend(hist.load(db, impl="mmdetection"))["impl"]) == ["mmdetection"]
    assert hist.load(db, since="2099-01-01").empty


def test_regression_rule_edges():
    assert not stats.regression([], 10)[0]
    assert stats.regression([100.0], 97.9)[0]  # one run before: 2% floor
    assert not stats.regression([100.0], 98.0)[0]
    assert not stats.regression([100, 110, 90, 105, 95], 85)[0]  # noisy history: sd 7.9, noise 15.8


def test_cli_history(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    for i, v in enumerate([60.0, 60.5, 59.8, 52.0]):
        result(tmp_path / "s" / str(i), "detectron2", "ok", v, n=i)
    assert main([str(tmp_path / "s"), "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["--history", "--db", str(db), "--impl", "detectron2"]) == 0
    out = capsys.readouterr().out
    assert "regression" in out and "|D2| |PT|" in out
    from test_gather import parse_rst

    header, body = parse_rst(out)
    assert header[0] == "Implementation" and len(body) == 1


# ---------------------------------------------------------------- plot


def test_plot_is_a_png_written_by_matplotlib(tmp_path):
    db = tmp_path / "h.sqlite"
    for i, v in enumerate([60.0, 61.0, 62.0]):
        result(tmp_path / "s" / str(i), "detectron2", "ok", v, n=i)
    result(tmp_path / "s" / "t", "torchvision", "ok", 3.0, hardware="local", scale="smoke")
    runs, _ = gather([tmp_path / "s"], db=db, job_state=False)
    out = plot(summary(runs), tmp_path / "p" / "table.png", hist.load(db))
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"IEND" in data[-12:]
    assert b"Matplotlib" in data[:400]  # the Software text chunk matplotlib writes
    assert main([str(tmp_path / "s"), "--no-record", "--plot", str(tmp_path / "cli.png")]) == 0
    assert open(tmp_path / "cli.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_scale_bench_runs_and_reports(tmp_path):
    """The bench script itself works (a small tree here; 10,000 runs is `python bench/gather_scale.py`)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "gather_scale.py"
    p = subprocess.run(
        [sys.executable, str(script), "--runs", "300", "--target", "60"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PASS" in p.stdout and "for 300 runs" in p.stdout
