"""Window edges: the measured window never starts before the requested start, ends at the nearest record
boundary at or after the requested end, says so when it differs, and is refused where records are missing."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from launcher.jobs.standin.formats import FORMATS, TimeModel, simulate
from launcher.parse import BadRequest, ParseError, WindowNotCovered, get_parser, measure
from launcher.parse.base import Span, build_measurement

FIX = Path(__file__).parent / "fixtures" / "logs"
MODEL = TimeModel(base=0.3, warmup_iters=80, warmup_factor=5.0, noise=0.15, stall_every=37, stall=3.0, seed=11)
PERIOD = {
    "detectron2": 20,
    "maskrcnn_benchmark": 20,
    "detectron": 20,
    "mmdetection": 50,
    "simpledet": 10,
    "tensorpack": 50,
    "matterport": 50,
}


@pytest.mark.parametrize("window", [(100, 500), (105, 487), (233, 419)])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_window_starts_at_or_after_the_request(fmt, window):
    sim = simulate(fmt, 560, MODEL)
    m = get_parser(fmt).measure(sim.log_text(), window, sim.images_per_iter)
    s, e = window
    assert s <= m.window[0] < s + PERIOD[fmt], m.window  # never an iteration before the requested start
    assert e <= m.window[1] < e + PERIOD[fmt], m.window  # the nearest boundary at or after the requested end
    assert m.window_requested == window
    truth = sim.true_throughput(m.window)
    assert abs(m.throughput - truth) / truth <= m.error_bound
    if m.window != window:
        assert f"MEASURED WINDOW {m.window[0]}..{m.window[1]} differs from the requested {s}..{e}" in m.method
        assert m.details["window_shift"] == [m.window[0] - s, m.window[1] - e]
    else:
        assert "MEASURED WINDOW" not in m.method and "window_shift" not in m.details


def test_detectron_101_to_501_for_100_to_500():
    """Detectron logs completed iterations 1, 21, ..., 101, ..., 501: the old rule took 81..501 (warm-up side)."""
    sim = simulate("detectron", 520, MODEL)
    m = measure("detectron", sim.log_text(), (100, 500), 16)
    assert m.window == (101, 501) and m.window_requested == (100, 500)
    assert "shifted by +1 at the start, +1 at the end" in m.method


def test_simpledet_real_excerpt_20_to_60_takes_21_to_61():
    """A real SimpleDet log (frequent=20): 'Batch [n]' covers n-18..n+1, so 20..60 is measured as 21..61, not 1..61
    (which took in the first, warm-up block at 1.29 samples/s)."""
    text = (FIX / "simpledet_issue226.txt").read_text()
    m = get_parser("simpledet").measure(text, (20, 60), 1)
    assert m.window == (21, 61)
    assert abs(m.throughput - 40 / (20 / 1.60 + 20 / 1.63)) < 1e-12  # 1.6148, not the 1.49 of 1..61


def test_missing_records_at_an_edge_are_refused():
    """Lines missing around the start would move it far past the request: refuse, do not measure 320..500."""
    sim = simulate("maskrcnn_benchmark", 520, MODEL)
    text = "\n".join(
        ln for ln in sim.log_text().splitlines() if not any(f"iter: {i} " in ln for i in range(100, 320, 20))
    )
    with pytest.raises(ParseError, match=r"no record near the window's start \(100\).*iteration 320"):
        get_parser("maskrcnn_benchmark").measure(text, (100, 500), 16)


def test_window_shorter_than_the_record_spacing():
    sim = simulate("detectron2", 200, MODEL)
    with pytest.raises(ParseError, match="shorter than the log's record spacing"):
        get_parser("detectron2").measure(sim.log_text(), (105, 112), 16)
    with pytest.raises(ParseError, match=r"inside the one record of iterations 101\.\.150"):
        sim = simulate("mmdetection", 200, MODEL)
        get_parser("mmdetection").measure(sim.log_text(), (110, 140), 16)


def test_log_that_starts_after_the_window_is_not_covered():
    sim = simulate("detectron", 520, MODEL)  # timing starts at 21 (the timer reset)
    with pytest.raises(WindowNotCovered, match="timing starts after iteration 21"):
        get_parser("detectron").measure(sim.log_text(), (10, 500), 16)


@pytest.mark.parametrize("bad", [0, -16, 2.5, math.nan, math.inf, True, "16", None])
def test_images_per_iter_must_be_a_positive_whole_number(bad):
    sim = simulate("detectron2", 520, MODEL)
    with pytest.raises(BadRequest, match="images per iteration must be a positive whole number"):
        get_parser("detectron2").measure(sim.log_text(), (100, 500), bad)


@pytest.mark.parametrize("window", [(500, 100), (100, 100), (-1, 100)])
def test_bad_windows_are_a_bad_request(window):
    with pytest.raises(BadRequest):
        get_parser("detectron2").measure(simulate("detectron2", 520, MODEL).log_text(), window, 16)


def test_build_measurement_never_returns_a_non_finite_or_non_positive_figure():
    for elapsed, err in ((0.0, 0.0), (-3.0, 0.0), (math.nan, 0.0), (math.inf, 0.0), (10.0, math.nan), (10.0, 10.0)):
        with pytest.raises(ParseError):
            build_measurement(Span(100, 500, elapsed, err, 2, last_iter=500), (100, 500), 16, "m")
    m = build_measurement(Span(100, 500, 100.0, 0.01, 2, last_iter=500), (100, 500), 16, "m")
    assert m.throughput == 64.0 and 0 < m.error_bound < 1e-3


def test_a_nan_or_zero_rate_in_the_window_is_refused():
    text = (FIX / "tensorpack_nan_throughput_handmade.log").read_text()
    with pytest.raises(ParseError, match=r"iterations 51\.\.100 gives a time of nan"):
        get_parser("tensorpack").measure(text, (0, 150), 8)
    m = get_parser("tensorpack").measure(text, (100, 150), 8)  # epoch 3 alone is fine
    assert abs(m.throughput - 3.1207) < 1e-9
    sim = simulate("simpledet", 200, MODEL)
    zero = re.sub(r"(Batch \[110\]\tSpeed: )[\d.]+", r"\g<1>0.00", sim.log_text(), count=1)
    assert "Batch [110]\tSpeed: 0.00 samples/sec" in zero
    with pytest.raises(ParseError, match=r"iterations 102\.\.111 gives a time of inf"):
        get_parser("simpledet").measure(zero, (100, 150), 16)


def test_a_log_whose_running_mean_goes_back_is_refused():
    """Two edge records of a cumulative format whose totals decrease: no figure, never a negative throughput."""
    sim = simulate("maskrcnn_benchmark", 520, MODEL)
    text = sim.log_text()
    line500 = next(ln for ln in text.splitlines() if "iter: 500 " in ln)
    broken = text.replace(line500, line500.replace("time: ", "time: 0.0001 (0.0001)  was: ", 1))
    with pytest.raises(ParseError, match="non-positive or non-finite elapsed time"):
        get_parser("maskrcnn_benchmark").measure(broken, (100, 500), 16)
