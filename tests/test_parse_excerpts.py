"""The real excerpts (tests/fixtures/logs, sources in its README) parse to the records they contain."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.parse import ParseError, get_parser
from launcher.parse import tensorpack

FIX = Path(__file__).parent / "fixtures" / "logs"


def read(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


def test_detectron2_versions():
    recs = get_parser("detectron2").records(read("detectron2_issue195_v0.1.txt"))
    assert [(r.iter, r.time, r.data_time) for r in recs] == [
        (1259, 0.3322, 0.0334),
        (1279, 0.3323, 0.0418),
        (1299, 0.3323, 0.0353),
    ]
    recs = get_parser("detectron2").records(read("detectron2_issue3363_v0.4.txt"))
    assert [(r.iter, r.time) for r in recs] == [(9079, 0.4564), (9099, 0.4564), (9119, 0.4565)]
    text = read("detectron2_d2go524_v0.5.txt")
    recs = get_parser("detectron2").records(text)
    assert [r.iter for r in recs] == [19, 39, 59, 79, 99] and recs[-1].time == 0.2854
    # the reference's check: (0.2854 x 98 - 0.3636 x 18) / 80 = 0.2678 s/it over iterations 21..100
    m = get_parser("detectron2").measure(text, (20, 100), 16)
    assert m.window == (20, 100) and abs(m.mean_step_time - 0.267805) < 1e-9


def test_mmdetection_text_versions():
    recs = get_parser("mmdetection").records(read("mmdetection_issue2672.log"))
    assert [(r.epoch, r.iter, r.epoch_len, r.time) for r in recs] == [
        (1, 1200, 7517, 0.593),
        (1, 1250, 7517, 0.594),
        (1, 1300, 7517, 0.592),
    ]
    m = get_parser("mmdetection").measure(read("mmdetection_issue2672.log"), (1200, 1300), 16)
    assert abs(m.mean_step_time - 0.593) < 1e-9  # (0.594 + 0.592) / 2
    assert abs(m.details["timestamp_step_time"] - 59.300 / 100) < 1e-6  # 18:44:23,494 -> 18:45:22,794
    recs = get_parser("mmdetection").records(read("mmdetection_issue2785.log"))  # eta '1 day, 16:44:26', interval 1
    assert [(r.iter, r.time) for r in recs] == [(19, 1.413), (20, 2.304), (21, 1.686)]
    assert [(r.epoch, r.iter) for r in get_parser("mmdetection").records(read("mmdetection_issue3557.log"))] == [
        (9, 100),
        (9, 150),
        (9, 200),
    ]
    assert [(r.iter, r.time) for r in get_parser("mmdetection").records(read("mmdetection_issue4090_mmcv0.6.log"))] == [
        (2150, 0.391)
    ]


def test_maskrcnn_benchmark_variants():
    text = read("maskrcnn_benchmark_fcos55.txt")  # eta '5 days, 22:13:05'
    recs = get_parser("maskrcnn_benchmark").records(text)
    assert [(r.iter, r.median, r.avg) for r in recs] == [
        (20, 0.7022, 0.7111),
        (40, 0.6546, 0.6794),
        (60, 0.6337, 0.6858),
    ]
    m = get_parser("maskrcnn_benchmark").measure(text, (20, 60), 16)
    assert abs(m.mean_step_time - (0.6858 * 60 - 0.7111 * 20) / 40) < 1e-12
    assert [
        (r.iter, r.avg) for r in get_parser("maskrcnn_benchmark").records(read("maskrcnn_benchmark_issue825.txt"))
    ] == [(87940, 0.5132)]
    assert [
        (r.iter, r.median, r.avg)
        for r in get_parser("maskrcnn_benchmark").records(read("maskrcnn_benchmark_issue976.txt"))
    ] == [(1120, 0.5088, 0.4600), (1140, 0.4698, 0.4604), (1160, 0.4809, 0.4609)]
    assert [
        (r.iter, r.avg) for r in get_parser("maskrcnn_benchmark").records(read("maskrcnn_benchmark_nvidia_readme.txt"))
    ] == [(20, 0.3765)]


def test_tensorpack_excerpts():
    recs, finished = tensorpack.records(read("tensorpack_issue1440.log"))
    assert finished == [(30, 1500)] and [(r.epoch, r.global_step, r.throughput) for r in recs] == [(30, 1500, 3.1213)]
    recs, finished = tensorpack.records(read("tensorpack_issue1298.log"))
    assert finished == [(7, 3500)] and [(r.epoch, r.throughput) for r in recs] == [(7, 4.602)]
    recs, finished = tensorpack.records(read("tensorpack_issue1023.log"))  # tqdm bar line, no Throughput
    assert finished == [(135, 67500)] and recs == []
    # one epoch of 50 steps: 50 x 8 / 3.1213
    m = get_parser("tensorpack").measure(read("tensorpack_issue1440.log"), (1450, 1500), 8)
    assert m.window == (1450, 1500) and abs(m.throughput - 3.1213) < 1e-9


def test_simpledet_excerpts():
    recs = get_parser("simpledet").records(read("simpledet_issue226.txt"))  # frequent=20
    assert [(r.epoch, r.batch, r.speed, r.global_iter) for r in recs] == [
        (0, 20, 1.29, None),
        (0, 40, 1.60, None),
        (0, 60, 1.63, None),
    ]
    m = get_parser("simpledet").measure(read("simpledet_issue226.txt"), (21, 61), 1)
    assert m.window == (21, 61) and abs(m.throughput - 40 / (20 / 1.60 + 20 / 1.63)) < 1e-9
    recs = get_parser("simpledet").records(read("simpledet_later_format.txt"))
    assert [(r.epoch, r.batch, r.global_iter, r.speed) for r in recs] == [(5, 490, 2990, 1.71)]
    recs = get_parser("simpledet").records(read("simpledet_mx_maskrcnn_issue8.txt"))
    assert [(r.batch, r.speed, r.wall) for r in recs] == [(300, 2.84, None), (320, 2.76, None), (340, 2.82, None)]


def test_detectron_quoted_unquoted():
    assert [(r.iter, r.time) for r in get_parser("detectron").records(read("detectron_issue918_quoted.txt"))] == [
        (30140, 0.239992),
        (30160, 0.239992),
        (30180, 0.239988),
    ]
    assert [(r.iter, r.time) for r in get_parser("detectron").records(read("detectron_issue610_unquoted.txt"))] == [
        (55080, 0.266505)
    ]
    assert [(r.iter, r.time) for r in get_parser("detectron").records(read("detectron_tutorial_quoted.txt"))] == [
        (59999, 0.218661)
    ]
    with pytest.raises(ParseError, match="resumed"):  # a fragment: the timer's reset point is unknown
        get_parser("detectron").measure(read("detectron_issue918_quoted.txt"), (30140, 30180), 16)


def test_detectron_pretty_printed_multiline():
    text = (
        'json_stats: {"accuracy_cls": 0.923639, \n  "eta": "1 day, 13:30:44",\n  "iter": 120000,\n  "time": 0.562685}\n'
    )
    assert [(r.iter, r.time) for r in get_parser("detectron").records(text)] == [(120000, 0.562685)]


def test_matterport_excerpts():
    recs = get_parser("matterport").records(read("matterport_issue2026.txt"))
    assert [(r.epoch, r.steps, r.secs) for r in recs] == [(2, 100, 73), (3, 100, 74), (4, 100, 112)]
    assert [r.validated for r in recs] == [True, False, False]  # epochs 3 and 4: the excerpt elides their metrics
    with pytest.raises(ParseError, match="epoch 2 in the window .* carries val_loss"):  # its 73 s include validation
        get_parser("matterport").measure(read("matterport_issue2026.txt"), (100, 400), 2)
    m = get_parser("matterport").measure(read("matterport_issue2026.txt"), (200, 400), 2)
    assert m.window == (200, 400) and abs(m.throughput - 400 / (74 + 112)) < 1e-12
    assert [(r.epoch, r.secs) for r in get_parser("matterport").records(read("matterport_issue1112.txt"))] == [
        (30, 1797)
    ]
    assert get_parser("matterport").records(read("matterport_issue2023.txt")) == []  # mid-epoch lines carry no timing
