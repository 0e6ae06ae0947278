"""Runs that restart their averages, files that hold several runs, and logs a run cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.jobs.standin.formats import TimeModel, simulate
from launcher.parse import BadRequest, ParseError, SeveralRuns, UnknownFormat, WindowNotCovered, get_parser

FIX = Path(__file__).parent / "fixtures" / "logs"
MODEL = TimeModel(base=0.3, warmup_iters=80, warmup_factor=5.0, noise=0.15, stall_every=37, stall=3.0, seed=5)
OTHER = TimeModel(base=0.45, noise=0.05, seed=9)


def read(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


def within(m, truth):
    assert abs(m.throughput - truth) / truth <= m.error_bound, (m.throughput, truth, m.error_bound, m.method)


# ------------------------------------------------------------------ maskrcnn-benchmark resumed from a checkpoint


def test_maskrcnn_benchmark_resumed_uses_the_resume_point_as_origin():
    sim = simulate("maskrcnn_benchmark", 10600, MODEL, start_iter=10000)
    text = sim.log_text()
    assert "Loading checkpoint from ./model_0010000.pth" in text and "iter: 10020 " in text
    m = get_parser("maskrcnn_benchmark").measure(text, (10100, 10500), 16)
    assert m.window == (10100, 10500)
    within(m, sim.true_throughput((10100, 10500)))
    assert "resume from ./model_0010000.pth at iteration 10000" in m.method
    with pytest.raises(WindowNotCovered, match="timing starts after iteration 10000"):
        get_parser("maskrcnn_benchmark").measure(text, (100, 500), 16)


def test_maskrcnn_benchmark_resumed_handmade_fixture():
    """(0.5033 x 60 - 0.5200 x 20) / 40 s/it over 10021..10060; an origin at 0 would give a negative time."""
    m = get_parser("maskrcnn_benchmark").measure(read("maskrcnn_benchmark_resumed_handmade.txt"), (10020, 10060), 16)
    assert abs(m.mean_step_time - (0.5033 * 60 - 0.5200 * 20) / 40) < 1e-12
    assert abs(m.details["timestamp_step_time"] - (9.8 + 10.0) / 40) < 1e-6  # 10:00:45,290 -> 10:01:05,090


def test_maskrcnn_benchmark_resume_that_cannot_be_located_is_refused():
    sim = simulate("maskrcnn_benchmark", 10600, MODEL, start_iter=10000, checkpoint="/ckpt/last.pth")
    with pytest.raises(ParseError, match=r"first record is at iteration 10020.*not named model_NNNNNNN\.pth"):
        get_parser("maskrcnn_benchmark").measure(sim.log_text(), (10100, 10500), 16)
    fragment = "\n".join(
        ln
        for ln in simulate("maskrcnn_benchmark", 10600, MODEL, start_iter=10000).log_text().splitlines()
        if "iter: " in ln
    )
    with pytest.raises(ParseError, match="no 'Loading checkpoint from ...' line"):
        get_parser("maskrcnn_benchmark").measure(fragment, (10100, 10500), 16)


def test_maskrcnn_benchmark_log_appended_by_a_crash_and_its_resume():
    crashed = simulate("maskrcnn_benchmark", 10013, MODEL).log_text()  # checkpoint at 10000, died at 10013
    resumed = simulate("maskrcnn_benchmark", 10600, OTHER, start_iter=10000)
    text = crashed + resumed.log_text()
    with pytest.raises(
        SeveralRuns,
        match=r"holds 2 runs \(run 1: iterations 20\.\.10013 .*run 2: iterations "
        r"10020\.\.10600 .*--run K",
    ):
        get_parser("maskrcnn_benchmark").measure(text, (10100, 10500), 16)
    for k in (2, -1):
        m = get_parser("maskrcnn_benchmark").measure(text, (10100, 10500), 16, run=k)
        within(m, resumed.true_throughput((10100, 10500)))
        assert m.method.startswith("run 2 of the 2 in the file") and m.details["runs_in_file"] == 2


# ------------------------------------------------------------------ several runs in one file


def test_detectron2_log_txt_appended_by_two_runs():
    text = read("detectron2_two_runs_handmade.txt")
    with pytest.raises(SeveralRuns) as ei:
        get_parser("detectron2").measure(text, (20, 100), 16)
    msg = str(ei.value)
    assert "holds 2 runs" in msg and "iterations 20..60" in msg and "iterations 20..100" in msg
    assert "Starting training from iteration 0" in msg and "run=K" in msg and ei.value.count == 2
    m = get_parser("detectron2").measure(text, (20, 100), 16, run=2)
    assert abs(m.mean_step_time - (0.2854 * 98 - 0.3636 * 18) / 80) < 1e-12
    with pytest.raises(WindowNotCovered, match="last one seen is iteration 60"):
        get_parser("detectron2").measure(text, (20, 100), 16, run=1)
    with pytest.raises(BadRequest, match="holds 2 runs; choose 1..2"):
        get_parser("detectron2").measure(text, (20, 100), 16, run=3)


def test_detectron2_rerun_and_resume_in_one_file():
    first = simulate("detectron2", 5050, MODEL)
    resumed = simulate("detectron2", 5600, OTHER, start_iter=5000)
    text = first.sink.text("output/log.txt") + resumed.sink.text("output/log.txt")
    with pytest.raises(SeveralRuns, match="holds 2 runs"):
        get_parser("detectron2").measure(text, (5100, 5500), 16)
    m = get_parser("detectron2").measure(text, (5100, 5500), 16, run=2)
    within(m, resumed.true_throughput((5100, 5500)))
    assert "iterations 5003..c" in m.method  # IterationTimer's warm-up restarts with the run


@pytest.mark.parametrize(
    "fmt", ["detectron2", "maskrcnn_benchmark", "mmdetection", "simpledet", "tensorpack", "detectron", "matterport"]
)
def test_restarted_job_appending_its_output(fmt):
    """A job restarted from scratch appends a second copy of the run to the same captured output."""
    a, b = simulate(fmt, 320, MODEL), simulate(fmt, 560, OTHER)
    text = a.log_text() + b.log_text()
    with pytest.raises(SeveralRuns, match=f"{fmt} log holds 2 runs"):
        get_parser(fmt).measure(text, (100, 500), a.images_per_iter)
    m = get_parser(fmt).measure(text, (100, 500), a.images_per_iter, run=-1)
    within(m, b.true_throughput(m.window))
    assert get_parser(fmt).progress(text).last_iter >= 500  # live displays follow the last run


def test_torchvision_repeated_iteration_is_an_error_naming_it():
    text = read("torchvision_repeated_iter_handmade.txt")
    with pytest.raises(ParseError, match="two different records for iteration 4"):
        get_parser("torchvision").measure(text, (1, 6), 16)


def test_torchvision_two_runs():
    one = read("torchvision_repeated_iter_handmade.txt").splitlines()[:8]  # a run of 6 iterations
    text = "\n".join(one + one[:5]) + "\n"  # and a second that died after iteration 3
    with pytest.raises(SeveralRuns, match="holds 2 runs"):
        get_parser("torchvision").measure(text, (1, 6), 16)
    m = get_parser("torchvision").measure(text, (1, 6), 16, run=1)
    assert m.window == (1, 6) and abs(m.mean_step_time - 0.3) < 1e-6


# ------------------------------------------------------------------ logs that cannot time the window


def test_keras_epochs_with_validation_are_refused():
    sim = simulate("matterport", 520, MODEL, validation_s=20.0)
    text = sim.log_text()
    assert " - val_loss: " in text
    with pytest.raises(ParseError, match=r"epochs 3, 4, 5, 6, 7, 8, 9, 10 in the window .* carry val_loss"):
        get_parser("matterport").measure(text, (100, 500), 16)
    clean = get_parser("matterport").measure(simulate("matterport", 520, MODEL).log_text(), (100, 500), 16)
    assert "none of these epoch lines carries val_loss" in clean.method


def test_mmdetection_json_with_several_epochs_past_epoch_1():
    text = read("mmdetection_three_epochs_handmade.log.json")
    with pytest.raises(ParseError, match=r"holds epochs 1\.\.3.*no epoch length.*text log of the same run"):
        get_parser("mmdetection").measure(text, (100, 300), 16)
    m = get_parser("mmdetection").measure(text, (50, 200), 16)  # inside epoch 1: fine
    assert m.window == (50, 200) and abs(m.mean_step_time - (0.502 + 0.503 + 0.504) / 3) < 1e-12


def test_mmdetection_json_multi_epoch_from_the_writer():
    sim = simulate("mmdetection", 520, MODEL, epoch_len=230)
    assert sim.log_stream.endswith(".log.json")
    with pytest.raises(ParseError, match="no epoch length"):
        get_parser("mmdetection").measure(sim.log_text(), (250, 400), 16)


@pytest.mark.parametrize("name", ["mmengine_mmdet3_handmade.log", "mmengine_scalars_handmade.json"])
def test_mmengine_logs_are_named_in_the_refusal(name):
    with pytest.raises(UnknownFormat, match=r"mmengine log \(MMDetection 3\.x"):
        get_parser("mmdetection").measure(read(name), (50, 100), 16)


def test_detectron_resumed_run():
    sim = simulate("detectron", 20600, MODEL, start_iter=20000)
    assert "Resuming from checkpoint /out/model_iter19999.pkl at start iter 20000" in sim.log_text()
    m = get_parser("detectron").measure(sim.log_text(), (20100, 20500), 16)
    assert m.window == (20101, 20501)  # timer reset after iteration 20020 (0-based): records at 20041, 20061, ...
    within(m, sim.true_throughput(m.window))
    fragment = "\n".join(ln for ln in sim.log_text().splitlines() if "Resuming" not in ln)
    with pytest.raises(ParseError, match="starts at iteration 20000 and names no resume point"):
        get_parser("detectron").measure(fragment, (20100, 20500), 16)


def test_detectron2_fragment_without_its_start_is_refused():
    with pytest.raises(ParseError, match="no 'Starting training from iteration N' line"):
        get_parser("detectron2").measure(read("detectron2_issue195_v0.1.txt"), (1260, 1300), 16)
