"""Every format against the stand-in generator: true throughput within the stated bound, windows, refusals, robustness."""

from __future__ import annotations

import pytest

from launcher.jobs.standin.formats import FORMATS, TimeModel, simulate
from launcher.parse import ParseError, WindowNotCovered, get_parser

# warm-up 5x slower decaying over 80 iterations, 15% noise, a 3 s stall every 37 iterations: the mean over
# the whole run (or any average of printed numbers that includes the warm-up) lands far from the window's truth
MODEL = TimeModel(base=0.3, warmup_iters=80, warmup_factor=5.0, noise=0.15, stall_every=37, stall=3.0, seed=7)
WINDOW = (100, 500)
MAX_BOUND = {"matterport": 0.03}  # 0.5 s per epoch on ~15 s epochs of this fast model; the rest are < 0.1%
#: the record period of each format's stand-in: a measured edge lies at most this much - 1 after the requested one
PERIOD = {
    "detectron2": 20,
    "maskrcnn_benchmark": 20,
    "detectron": 20,
    "mmdetection": 50,
    "simpledet": 10,
    "tensorpack": 50,
    "matterport": 50,
}


def check(fmt, text, sim, window=WINDOW, max_bound=None):
    m = get_parser(fmt).measure(text, window, sim.images_per_iter)
    truth = sim.true_throughput(m.window)
    err = abs(m.throughput - truth) / truth
    assert err <= m.error_bound, (fmt, m.throughput, truth, err, m.error_bound, m.method)
    assert m.error_bound < (max_bound or MAX_BOUND.get(fmt, 1e-3))
    # never before the requested start; the nearest record boundaries at or after each requested edge
    assert window[0] <= m.window[0] < window[0] + PERIOD[fmt] and window[1] <= m.window[1] < window[1] + PERIOD[fmt]
    assert (m.window != window) == ("MEASURED WINDOW" in m.method)
    assert m.window_requested == window
    assert m.method and m.images_per_iter == sim.images_per_iter
    return m, truth


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_generator_truth_within_bound(fmt):
    sim = simulate(fmt, 520, MODEL)
    m, truth = check(fmt, sim.log_text(), sim)
    naive = sim.images_per_iter * len(sim.timed) / sum(sim.timed)  # whole-run average
    assert abs(naive - truth) / truth > 5 * m.error_bound  # the test can tell a naive average from the truth


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_incomplete_log_is_refused(fmt):
    sim = simulate(fmt, 300, MODEL)
    with pytest.raises(WindowNotCovered) as ei:
        get_parser(fmt).measure(sim.log_text(), WINDOW, sim.images_per_iter)
    msg = str(ei.value)
    assert "100..500" in msg and "last one seen is iteration" in msg
    assert ei.value.last_iter is not None and 250 <= ei.value.last_iter <= 300


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_window_edges_exact_where_the_period_allows(fmt):
    sim = simulate(fmt, 520, MODEL)
    m, _ = check(fmt, sim.log_text(), sim)
    expected = {"detectron": (101, 501), "simpledet": (101, 501)}.get(fmt, WINDOW)
    assert m.window == expected


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_progress(fmt):
    sim = simulate(fmt, 260, MODEL)
    p = get_parser(fmt).progress(sim.log_text())
    assert p is not None and 240 <= p.last_iter <= 300
    assert get_parser(fmt).progress("nothing here\n") is None


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_other_formats_logs_are_not_recognised(fmt):
    other = "detectron" if fmt != "detectron" else "detectron2"
    sim = simulate(other, 120, MODEL)
    with pytest.raises(ParseError):
        get_parser(fmt).measure(sim.log_text(), (20, 100), 16)


# ------------------------------------------------------------------ robustness: streams, variants, noise


def test_detectron2_coloured_stdout_and_versions():
    for variant in ("v0.1", "v0.1.2", "v0.3"):
        sim = simulate("detectron2", 520, MODEL, variant=variant)
        out = sim.sink.text("stdout")
        assert "\x1b[32m" in out
        check("detectron2", out, sim)
        check("detectron2", sim.sink.combined, sim)  # stdout + stderr warnings interleaved
        check("detectron2", sim.sink.text("output/log.txt"), sim)


def test_detectron2_one_day_eta_and_new_year():
    sim = simulate("detectron2", 520, MODEL, schedule_iters=400000)
    text = sim.log_text()
    assert "eta: 1 day, " in text or "days, " in text
    assert "[12/31 23:5" in text and "[01/01 00:" in text  # crosses midnight and the year without a year
    m, _ = check("detectron2", text, sim)
    true_step = sum(sim.timed[100:500]) / 400
    assert abs(m.details["timestamp_step_time"] - true_step) <= 2.0 / 400 + 1e-9


def test_mmdetection_text_json_and_stderr():
    sim = simulate("mmdetection", 520, MODEL)
    files = {k: v.getvalue() for k, v in sim.sink.streams.items()}
    text_log = next(v for k, v in files.items() if k.endswith(".log"))
    m_json, _ = check("mmdetection", sim.log_text(), sim)
    m_text, _ = check("mmdetection", text_log, sim, max_bound=2e-3)  # {:.3f}: <= 0.17% (reference 2.5)
    check("mmdetection", sim.sink.combined, sim, max_bound=2e-3)
    assert m_json.error_bound < m_text.error_bound  # 5 decimals vs {:.3f}
    assert abs(m_text.details["timestamp_step_time"] - sum(sim.timed[100:500]) / 400) < 0.005 / 400 + 1e-6
    sim6 = simulate("mmdetection", 520, MODEL, variant="mmcv0.6", schedule_iters=2_000_000)
    t6 = sim6.sink.combined
    assert "lr: 2.000e-02" in t6 and " day" in t6
    check("mmdetection", t6, sim6, max_bound=2e-3)


def test_mmdetection_epochs():
    sim = simulate("mmdetection", 520, MODEL, epoch_len=230)
    text_log = next(v.getvalue() for k, v in sim.sink.streams.items() if k.endswith(".log"))
    m, _ = check("mmdetection", text_log, sim, (250, 400), max_bound=2e-3)  # epoch 2 (231..460) mapped to global
    assert m.window == (280, 430)  # blocks of 50 from the epoch start: the first boundary at or after 250
    with pytest.raises(ParseError, match="epoch boundary"):
        get_parser("mmdetection").measure(text_log, (100, 400), 16)  # the epoch's last 30 iterations are never logged


def test_maskrcnn_benchmark_stdout_duplicated_by_ranks():
    sim = simulate("maskrcnn_benchmark", 520, MODEL)
    eight = "".join(line * 8 for line in sim.sink.text("stdout").splitlines(keepends=True))
    check("maskrcnn_benchmark", eight, sim)
    check("maskrcnn_benchmark", sim.sink.combined, sim)


def test_tensorpack_mpirun_stdout_and_tqdm():
    sim = simulate("tensorpack", 520, MODEL)
    out = sim.sink.text("stdout")
    assert out.count("Epoch 3 (global_step 150) finished") == 8
    check("tensorpack", out, sim)
    check("tensorpack", sim.sink.combined, sim)  # with the eight ranks' tqdm bars (\r) on stderr
    assert "\x1b[32m" in sim.log_text()


def test_simpledet_variants_and_epochs():
    sim = simulate("simpledet", 520, MODEL, variant="later", epoch_len=230)
    text = sim.log_text()
    assert "Iter: " in text and "Lr: " in text and "Time cost=" in text
    m, _ = check("simpledet", text, sim, (300, 440))  # epoch 1 (global 231..460) located through Iter:
    assert m.window == (301, 441)
    with pytest.raises(ParseError, match="epoch boundary"):  # the Speedometer restarts each epoch: a gap
        get_parser("simpledet").measure(text, (100, 400), 16)
    old = simulate("simpledet", 520, MODEL, epoch_len=230)
    with pytest.raises(ParseError):  # without Iter:, epoch 1's batches cannot be placed (epoch length unknown)
        get_parser("simpledet").measure(old.log_text(), (300, 500), 16)
    check("simpledet", old.sink.combined, old, (100, 200))
    m, _ = check("simpledet", simulate("simpledet", 520, MODEL).log_text(), sim := simulate("simpledet", 520, MODEL))
    assert abs(m.details["timestamp_step_time"] - sum(sim.timed[101:501]) / 400) <= 2.0 / 400 + 1e-9


def test_detectron_quoted_and_unquoted():
    for variant in ("quoted", "unquoted"):
        sim = simulate("detectron", 520, MODEL, variant=variant)
        text = sim.log_text()
        assert ('"time": "' in text) == (variant == "quoted")
        check("detectron", text, sim)


def test_matterport_tty_and_pipe():
    for tty in (False, True):
        sim = simulate("matterport", 520, MODEL, tty=tty)
        text = sim.log_text()
        assert ("\b" in text) == tty
        check("matterport", text, sim)


def test_conflicting_records_are_an_error():
    """Two runs with nothing that marks where the second begins (the trainer lines only, interleaved)."""
    a = [ln for ln in simulate("maskrcnn_benchmark", 520, MODEL).log_text().splitlines() if "iter: " in ln]
    b = [
        ln for ln in simulate("maskrcnn_benchmark", 520, TimeModel(base=0.5)).log_text().splitlines() if "iter: " in ln
    ]
    mixed = "\n".join(x for pair in zip(a, b) for x in pair)
    with pytest.raises(ParseError, match="two different records for iteration 20.*more than one run"):
        get_parser("maskrcnn_benchmark").measure(mixed, WINDOW, 16)
