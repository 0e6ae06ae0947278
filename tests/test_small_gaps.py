"""Small gaps (issue 13.10): values that can never work refused at plan time with the way out, gather's
silent outcomes made loud, the table files written as one set, control characters kept out of tables."""

from __future__ import annotations

import csv
import io
import re
import threading
from pathlib import Path

import pytest
from gather_helpers import result
from test_gather import parse_rst

import launcher.gather as gather_pkg
from launcher.gather import gather, render, write_tables
from launcher.gather.__main__ import main as gather_main
from launcher.jobs.standin.formats import FORMATS, TimeModel, simulate
from launcher.parse import WindowNotCovered, earliest_start, measure
from launcher.plan import ConfigError, plan

# ---------------------------------------------------------------- plan-time refusals


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_parser_knows_the_earliest_start_its_logs_can_cover(fmt):
    """The figure the plan asks for is the parser's own: a window from it is measured, one before it never."""
    sim = simulate(fmt, 300, TimeModel(base=0.3, noise=0.1, seed=3))
    first = earliest_start(fmt)
    m = measure(fmt, sim.log_text(), (first, 250), sim.images_per_iter)
    assert m.window[0] == first
    if first > 0:
        with pytest.raises(WindowNotCovered):
            measure(fmt, sim.log_text(), (first - 1, 250), sim.images_per_iter)


def test_torchvision_logs_start_covering_at_iteration_1():
    text = "".join(f"tvbench iter={i} t={1000 + 0.5 * i:.6f} images=2 loss=1.0\n" for i in range(1, 20))
    assert earliest_start("torchvision") == 1
    assert measure("torchvision", text, (1, 10), 2).window == (1, 10)
    with pytest.raises(WindowNotCovered):
        measure("torchvision", text, (0, 10), 2)


@pytest.mark.parametrize("row, start", [("detectron2", 1), ("detectron", 20), ("simpledet", 0), ("torchvision", 0)])
def test_a_window_start_the_format_can_never_cover_is_refused(compose, tmp_path, row, start):
    first = earliest_start(row)  # each row's log format is named after it
    with pytest.raises(ConfigError, match=rf"window.start={start} .*{row}.*window.start={first} or later"):
        plan(compose(f"impl={row}", "hardware=v100x8", f"window.start={start}"), tmp_path)
    assert plan(compose(f"impl={row}", "hardware=v100x8", f"window.start={first}"), tmp_path).window[0] == first


@pytest.mark.parametrize(
    "override, key",
    [
        ("hardware.gpus=-1", "hardware.gpus"),
        ("hardware.time_limit_min=0", "hardware.time_limit_min"),
        ("hardware.time_limit_min=-5", "hardware.time_limit_min"),
        ("hardware.cpus=0", "hardware.cpus"),
        ("hardware.nodes=0", "hardware.nodes"),
        ("hardware.mem_gb=-1", "hardware.mem_gb"),
    ],
)
def test_impossible_hardware_is_refused(compose, tmp_path, override, key):
    with pytest.raises(ConfigError, match=key) as e:
        plan(compose("impl=torchvision", override), tmp_path)
    assert "at least 0 GPU" not in str(e.value)


@pytest.mark.parametrize("repo", ["", "   "])
def test_an_empty_repository_is_not_no_repository(compose, tmp_path, repo):
    with pytest.raises(ConfigError, match="impl.repo"):
        plan(compose("impl=detectron2", "hardware=v100x8", f"impl.repo='{repo}'"), tmp_path)


# ---------------------------------------------------------------- gather


def test_since_that_is_not_a_date_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        gather_main(["--history", "--since", "notadate", "--db", str(tmp_path / "h.db")])
    assert e.value.code == 2 and "--since" in capsys.readouterr().err
    assert gather_main(["--history", "--since", "2024-05-01", "--db", str(tmp_path / "h.db")]) == 0
    assert gather_main(["--history", "--since", "2024-05-01T02:00:00+02:00", "--db", str(tmp_path / "h.db")]) == 0


def test_since_with_an_offset_compares_in_utc(tmp_path):
    from launcher.gather import history

    assert history.parse_since("2024-05-01T02:00:00+02:00") == "2024-05-01T00:00:00+00:00"
    assert history.parse_since("2024-05-01") == "2024-05-01"
    with pytest.raises(ValueError):
        history.parse_since("yesterday")


def test_gather_of_a_directory_without_runs_says_so(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = gather_main([str(tmp_path / "empty"), "--db", str(tmp_path / "h.db")])
    err = capsys.readouterr().err
    assert code != 0 and "no runs" in err and str(tmp_path / "empty") in err


def _runs(tmp_path: Path, name: str, throughput: float):
    result(tmp_path / name / "0_detectron2", "detectron2", "ok", throughput)
    return gather([tmp_path / name], job_state=False)[0]


def _figures(out: Path) -> set[str]:
    """The detectron2 figure each of the three files shows."""
    rst = next(line for line in (out / "table.rst").read_text().splitlines() if "|D2|" in line)
    md = next(line for line in (out / "table.md").read_text().splitlines() if "Detectron2" in line)
    row = next(r for r in csv.DictReader(io.StringIO((out / "results.csv").read_text())) if r["impl"] == "detectron2")
    figure = re.compile(r"\b\d+\.\d\d\b")
    return {figure.search(rst)[0], figure.search(md)[0], f"{float(row['throughput']):.2f}"}


def test_a_gather_that_dies_midway_leaves_the_previous_set_whole(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_tables(_runs(tmp_path, "a", 61.0), out)
    assert _figures(out) == {"61.00"}
    real = gather_pkg.render

    def dies_on_markdown(runs, fmt="rst", table=None):
        if fmt == "md":
            raise OSError(28, "No space left on device")
        return real(runs, fmt, table)

    monkeypatch.setattr(gather_pkg, "render", dies_on_markdown)
    with pytest.raises(OSError):
        write_tables(_runs(tmp_path, "b", 63.0), out)
    assert _figures(out) == {"61.00"}  # not the new table.rst beside the old table.md
    monkeypatch.setattr(gather_pkg, "render", real)
    write_tables(_runs(tmp_path, "b", 63.0), out)
    assert _figures(out) == {"63.00"}


def test_two_gathers_writing_one_out_leave_one_set(tmp_path):
    out = tmp_path / "out"
    sets = {61.0: _runs(tmp_path, "a", 61.0), 63.0: _runs(tmp_path, "b", 63.0)}
    for _ in range(15):
        barrier = threading.Barrier(2)

        def write(runs):
            barrier.wait()
            write_tables(runs, out)

        threads = [threading.Thread(target=write, args=(r,)) for r in sets.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(_figures(out)) == 1, _figures(out)


def test_control_characters_in_labels_and_reasons_do_not_reach_the_tables(tmp_path):
    evil = "D2 \x1b[31mRED\x1b[0m \u202egnp.exe\u202c \x07bell\x00"
    result(tmp_path / "s" / "0_custom", "custom_row", "ok", 61.0, label=evil)  # not a catalog row: its own label
    result(
        tmp_path / "s" / "1_mmdetection",
        "mmdetection",
        "failed",
        n=1,
        error="\x1b]0;owned\x07boom \x1b[1;32mgreen\x1b[0m\u2066x\u2069\r\nsecond line",
    )
    runs, _ = gather([tmp_path / "s"], job_state=False)
    for fmt in ("rst", "md", "csv", "console"):
        text = render(runs, fmt)
        bad = [
            c
            for c in text
            if (ord(c) < 32 and c not in "\n")
            or 0x7F <= ord(c) < 0xA0
            or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
        ]
        assert not bad, (fmt, bad)
        if fmt in ("rst", "csv"):
            assert "RED" in text and "gnp.exe" in text  # the label's text is kept, its controls are not
        assert "boom" in text and "green" in text
    parse_rst(render(runs, "rst"))  # still a valid table
