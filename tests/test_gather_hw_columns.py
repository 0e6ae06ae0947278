"""The table's optional hardware columns (GPU peak memory, power, J/img) from each run's telemetry."""

from __future__ import annotations

import csv
import io

from launcher.gather import gather, render
from tests.gather_helpers import result

TEL = {"gpu_sampled": True, "memory_used_peak_mib": 14220.0, "power_mean_w": 1852.0, "energy_j_per_img": 29.86}


def test_columns_appear_with_telemetry_and_aggregate_over_repeats(tmp_path):
    result(tmp_path / "a", "detectron2", "ok", 61.0, n=1, telemetry=TEL)
    result(
        tmp_path / "b",
        "detectron2",
        "ok",
        62.0,
        n=2,
        telemetry={**TEL, "memory_used_peak_mib": 15000.0, "power_mean_w": 1848.0, "energy_j_per_img": 29.0},
    )
    result(tmp_path / "c", "mmdetection", "ok", 53.0, n=3, telemetry={"gpu_sampled": False, "note": "no GPU sampled"})
    runs, problems = gather([tmp_path], db=None)
    assert problems == []
    md = render(runs, "md")
    header = md.splitlines()[0]
    assert header.endswith("| GPU mem peak (MiB) | GPU power (W) | Energy (J/img) |")
    d2 = next(line for line in md.splitlines() if line.startswith("| Detectron2"))
    # the largest peak of the group's runs; the mean power and J/img of its runs
    assert d2.endswith("| 15000 | 1850 | 29.4 |")
    mm = next(line for line in md.splitlines() if line.startswith("| mmdetection"))
    assert mm.endswith("|  |  |  |")  # no GPU sampled: nothing shown, nothing invented
    rows = list(csv.DictReader(io.StringIO(render(runs, "csv"))))
    d2 = next(r for r in rows if r["impl"] == "detectron2")
    assert float(d2["gpu_mem_peak_mib"]) == 15000 and float(d2["energy_j_per_img"]) == (29.86 + 29.0) / 2
    assert "Energy (J/img)" in render(runs, "rst").splitlines()[1] and "Energy" in render(runs, "console")


def test_no_columns_without_telemetry(tmp_path):
    result(tmp_path / "a", "detectron2", "ok", 61.0, n=1)
    runs, _ = gather([tmp_path], db=None)
    for fmt in ("md", "rst", "console"):
        assert "J/img" not in render(runs, fmt)
    assert "energy_j_per_img" in render(runs, "csv").splitlines()[0]  # CSV keeps fixed columns, empty here
