"""`not_before`: a record stamped before the run started means the file is (or contains) an older run's log.

The stand-in writers print detectron2, maskrcnn-benchmark, mmdetection and tensorpack stamps in UTC and
SimpleDet's in Asia/Shanghai, starting 2020-12-31 23:58:30 UTC; logs print the machine's local time, so
these tests run with TZ=UTC.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from launcher.jobs.standin.formats import DEFAULT_START, TimeModel, simulate
from launcher.parse import BadRequest, StaleLog, get_parser

MODEL = TimeModel(base=0.3, noise=0.1, seed=2)
START = dt.datetime.fromtimestamp(DEFAULT_START, dt.timezone.utc)  # 2020-12-31 23:58:30 UTC
STAMPED = ["detectron2", "maskrcnn_benchmark", "simpledet", "tensorpack"]


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def mmdet_text_log(sim) -> str:
    return next(v.getvalue() for k, v in sim.sink.streams.items() if k.endswith(".log"))


@pytest.mark.parametrize("fmt", STAMPED + ["mmdetection"])
def test_fresh_log_passes_across_new_year(fmt):
    sim = simulate(fmt, 560, MODEL)
    text = mmdet_text_log(sim) if fmt == "mmdetection" else sim.log_text()
    # the run started 2 s before its first stamp; its records cross midnight into 2021 (yearless for most)
    m = get_parser(fmt).measure(text, (100, 500), sim.images_per_iter, not_before=START - dt.timedelta(seconds=2))
    assert m.throughput > 0


@pytest.mark.parametrize("fmt", STAMPED + ["mmdetection"])
def test_older_log_is_refused(fmt):
    sim = simulate(fmt, 560, MODEL)
    text = mmdet_text_log(sim) if fmt == "mmdetection" else sim.log_text()
    later = START + dt.timedelta(days=3)  # a rerun three days later finds this file
    with pytest.raises(
        StaleLog, match=f"{fmt} log is an older run's log: .* before this run started at 2021-01-03T23:58:30"
    ):
        get_parser(fmt).measure(text, (100, 500), sim.images_per_iter, not_before=later)


def test_file_that_contains_an_older_run():
    old = simulate("detectron2", 560, MODEL).sink.text("output/log.txt")
    new_start = START + dt.timedelta(hours=2)
    new = simulate("detectron2", 560, MODEL, start=new_start.timestamp() + 1).sink.text("output/log.txt")
    with pytest.raises(StaleLog) as ei:
        get_parser("detectron2").measure(old + new, (100, 500), 16, run=2, not_before=new_start)
    assert "contains an older run's log" in str(ei.value) and "[12/31" not in str(ei.value)
    assert ei.value.read_as < new_start and "read as 2020-12-31T23:5" in str(ei.value)
    m = get_parser("detectron2").measure(new, (100, 500), 16, not_before=new_start)
    assert m.throughput > 0


def test_yearless_stamp_read_in_the_year_nearest_the_start():
    """A run starting 2021-01-01 00:00:10 must read '12/31 23:59:50' as 2020 (10 s before: stale), not 2021."""
    sim = simulate("detectron2", 560, MODEL)
    with pytest.raises(StaleLog, match=r"read as 2020-12-31T23:5"):
        get_parser("detectron2").measure(
            sim.log_text(), (100, 500), 16, not_before=dt.datetime(2021, 1, 1, 0, 0, 10, tzinfo=dt.timezone.utc)
        )


def test_simpledet_stamps_are_shanghai_time():
    sim = simulate("simpledet", 560, MODEL)
    assert "01-01 07:5" in sim.log_text()  # 23:58:30 UTC printed as 07:58:30 the next day, Asia/Shanghai
    get_parser("simpledet").measure(sim.log_text(), (100, 500), 16, not_before=START - dt.timedelta(seconds=1))
    with pytest.raises(StaleLog):
        get_parser("simpledet").measure(sim.log_text(), (100, 500), 16, not_before=START + dt.timedelta(hours=1))


def test_torchvision_stamps_are_posix_seconds():
    t0 = 1_700_000_000.0
    text = "tvbench run: x\n" + "".join(
        f"tvbench iter={i} t={t0 + 0.3 * i:.6f} images=16 loss=1.0\n" for i in range(1, 11)
    )
    nb = dt.datetime.fromtimestamp(t0, dt.timezone.utc)
    assert get_parser("torchvision").measure(text, (2, 10), 16, not_before=nb).window == (2, 10)
    with pytest.raises(StaleLog, match="iteration 1 is stamped 't=1700000000.300000'"):
        get_parser("torchvision").measure(text, (2, 10), 16, not_before=nb + dt.timedelta(seconds=60))


@pytest.mark.parametrize("fmt", ["detectron", "matterport", "mmdetection"])
def test_formats_without_stamps_ignore_not_before(fmt):
    sim = simulate(fmt, 560, MODEL)  # mmdetection: the .log.json, which has no stamps
    m = get_parser(fmt).measure(sim.log_text(), (100, 500), 16, not_before=START + dt.timedelta(days=30))
    assert m.throughput > 0


def test_not_before_must_be_timezone_aware():
    sim = simulate("detectron2", 560, MODEL)
    with pytest.raises(BadRequest, match="timezone-aware"):
        get_parser("detectron2").measure(sim.log_text(), (100, 500), 16, not_before=dt.datetime(2021, 1, 1))


def test_ambiguous_local_time_at_the_end_of_dst(monkeypatch):
    """01:30 happens twice on 2020-11-01 in New York; a fresh record may be the second one (EST)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    head = "[11/01 01:10:00] d2.engine.train_loop INFO: Starting training from iteration 0\n"
    line = (
        "[11/01 {}] d2.utils.events INFO:  eta: 0:01:00  iter: {}  total_loss: 1.000  time: {:.4f}  "
        "data_time: 0.0100  lr: 0.000400  max_mem: 3961M\n"
    )
    text = head + line.format("01:30:00", 19, 0.3) + line.format("01:30:06", 39, 0.3)
    after_first_0130 = dt.datetime(2020, 11, 1, 5, 45, tzinfo=dt.timezone.utc)  # 01:45 EDT, before 01:30 EST
    m = get_parser("detectron2").measure(text, (20, 40), 16, not_before=after_first_0130)
    assert m.window == (20, 40)
    with pytest.raises(StaleLog):
        get_parser("detectron2").measure(text, (20, 40), 16, not_before=after_first_0130 + dt.timedelta(hours=1))
