"""The gatherer's table: every status a row, the seed's RST layout, corrupt and partial files, formats."""

from __future__ import annotations

import csv
import io
import json

import pytest
from docutils import nodes
from docutils.core import publish_doctree
from gather_helpers import result, spec, submitted

import launcher.backends as backends
from launcher.backends.base import JobState
from launcher.gather import gather, render, summary, write_tables
from launcher.gather.__main__ import EXIT_SKIPPED, main
from launcher.rundir import Result

# The seed page's table, as published (labels and figures, in its order).
SEED_ROWS = [
    ("|D2| |PT|", 62),
    ("mmdetection_ |PT|", 53),
    ("maskrcnn-benchmark_ |PT|", 53),
    ("tensorpack_ |TF|", 50),
    ("simpledet_ |mxnet|", 39),
    ("Detectron_ |C2|", 19),
    ("`matterport/Mask_RCNN`__ |TF|", 14),
]
SEED_IMPLS = ["detectron2", "mmdetection", "maskrcnn_benchmark", "tensorpack", "simpledet", "detectron", "matterport"]


def parse_rst(text: str):
    """docutils, strict: any warning (a broken table, an unknown target or substitution) fails."""
    doc = publish_doctree(text, settings_overrides={"halt_level": 2, "report_level": 2, "warning_stream": False})
    table = doc.next_node(nodes.table)
    assert table is not None, "no table in the RST"
    rows = list(table.findall(nodes.row))
    header = [e.astext() for e in rows[0].findall(nodes.entry)]
    body = [[e.astext() for e in r.findall(nodes.entry)] for r in rows[1:]]
    return header, body


def first_column(rst: str) -> list[str]:
    """The raw RST of the first column, row by row (labels as written)."""
    lines = [ln for ln in rst.splitlines() if ln.startswith("|")]
    return [ln[1:].split(" | ")[0].strip() for ln in lines[1:]]


def test_no_runs_gives_the_seed_table_in_order(tmp_path):
    runs, problems = gather([tmp_path], job_state=False)
    assert problems == [] and len(runs) == 0
    text = render(runs, "rst")
    header, body = parse_rst(text)
    assert header[:2] == ["Implementation", "Throughput (img/s)"]
    assert first_column(text) == [label for label, _ in SEED_ROWS]
    table = summary(runs)
    assert list(table["impl"]) == SEED_IMPLS
    assert list(table["reference"]) == [ref for _, ref in SEED_ROWS]
    assert all(row[1] == "" for row in body)  # nothing measured, nothing shown
    assert set(table["status"]) == {"not run"}


def test_every_status_is_a_row(tmp_path):
    sweep = tmp_path / "sweep"
    result(sweep / "0_detectron2", "detectron2", "ok", 61.0, n=0)
    result(
        sweep / "1_mmdetection",
        "mmdetection",
        "failed",
        n=1,
        error="Traceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory",
    )
    result(sweep / "2_maskrcnn_benchmark", "maskrcnn_benchmark", "timeout", n=2, error="time limit 60 min")
    result(sweep / "3_tensorpack", "tensorpack", "incomplete", n=3, error="log stops at iteration 230")
    result(sweep / "4_simpledet", "simpledet", "cancelled", n=4, error="cancelled by user")
    submitted(sweep / "5_detectron", "detectron", running_marker=True, sweep_dir=sweep)
    submitted(sweep / "6_matterport", "matterport", sweep_dir=sweep)
    result(sweep / "7_torchvision", "torchvision", "ok", 3.2, hardware="local", gpus=0, scale="smoke", n=7)
    runs, problems = gather([sweep], job_state=False)
    assert problems == []
    assert len(runs) == 8
    table = summary(runs)
    by_impl = dict(zip(table["impl"], table["status"]))
    assert by_impl == {
        "detectron2": "ok",
        "mmdetection": "failed",
        "maskrcnn_benchmark": "timeout",
        "tensorpack": "incomplete",
        "simpledet": "cancelled",
        "detectron": "running",
        "matterport": "pending",
        "torchvision": "ok",
    }
    reasons = dict(zip(table["impl"], table["reason"]))
    assert reasons["mmdetection"] == "RuntimeError: CUDA out of memory"  # a traceback's last line
    assert "node7" in reasons["detectron"]
    text = render(runs, "rst")
    header, body = parse_rst(text)
    assert first_column(text) == [label for label, _ in SEED_ROWS] + ["torchvision (launcher) |PT|"]
    assert [r[1] for r in body] == ["61.00", "", "", "", "", "", "", "3.20"]
    status_col = header.index("Status")
    assert body[1][status_col].startswith("failed: RuntimeError")
    assert body[2][status_col] == "timeout: time limit 60 min"
    # the measured row's verdict, ratio and provenance sit beside its figure
    row0 = dict(zip(header, body[0]))
    assert row0["Published (img/s)"] == "62" and row0["Verdict"] == "reproduced"
    assert row0["Ratio"] == f"{61 / 62:.3f}" and row0["GPU"] == "Tesla V100-SXM2-32GB"
    assert row0["Driver"] == "535.54.03" and row0["Commit"] == "0123456789" and row0["Recipe"] == "r1"
    # smoke scale on a CPU machine: a figure, never a verdict against the V100 number
    assert dict(zip(header, body[-1]))["Verdict"] == "n/a: no published figure"


def test_backend_job_state_is_asked_for_runs_without_result(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    submitted(sweep / "0_detectron2", "detectron2", job_id="7", sweep_dir=sweep)
    submitted(sweep / "1_mmdetection", "mmdetection", job_id="8", sweep_dir=sweep)
    submitted(sweep / "2_tensorpack", "tensorpack", job_id="9", sweep_dir=sweep)
    answers = {"7": JobState("pending", "Priority"), "8": JobState("failed", "NODE_FAIL"), "9": JobState("ok")}
    asked = []

    def job_state(entry):
        asked.append(entry["job_id"])
        return answers[entry["job_id"]]

    batches = []

    def job_states(entries):
        batches.append(len(entries))
        return [job_state(e) for e in entries]

    monkeypatch.setattr(backends, "job_states", job_states)
    runs, problems = gather([sweep])  # default: launcher.backends.job_states, all rows in one batch
    assert sorted(asked) == ["7", "8", "9"] and batches == [3]
    st = dict(zip(runs["impl"], zip(runs["status"], runs["reason"])))
    assert st["detectron2"] == ("pending", "Priority")
    assert st["mmdetection"] == ("failed", "NODE_FAIL")
    assert st["tensorpack"][0] == "incomplete" and "without writing result.json" in st["tensorpack"][1]


def test_backend_query_failure_falls_back_to_marker(tmp_path):
    sweep = tmp_path / "sweep"
    submitted(sweep / "0_detectron2", "detectron2", running_marker=True, sweep_dir=sweep)

    def broken(entry):
        raise RuntimeError("sacct: connection refused")

    runs, _ = gather([sweep], job_state=broken)
    assert runs.loc[0, "status"] == "running"
    assert "sacct: connection refused" in runs.loc[0, "reason"]


def test_missing_run_dir_in_sweep_manifest_is_still_a_row(tmp_path):
    sweep = tmp_path / "sweep"
    s = submitted(sweep / "0_detectron2", "detectron2", sweep_dir=sweep)
    import shutil

    shutil.rmtree(s.run_dir)
    runs, problems = gather([sweep], job_state=False)
    assert len(runs) == 1 and runs.loc[0, "status"] == "unknown"
    assert "run directory missing" in runs.loc[0, "reason"]


def test_resubmitted_run_shows_the_live_job(tmp_path):
    d = tmp_path / "sweep" / "0_detectron2"
    result(d, "detectron2", "failed", n=0)  # finished 2024-05-01
    submitted(d, "detectron2", job_id="99")  # resubmitted now (rerun=failed)
    runs, _ = gather([d], job_state=lambda e: JobState("pending", "Resources"))
    assert runs.loc[0, "status"] == "pending"
    assert "previous attempt failed" in runs.loc[0, "reason"]


@pytest.mark.parametrize(
    "content",
    [
        '{"impl": "detectron2", "sta',
        "",
        "[1, 2]",
        '{"impl": "detectron2", "hardware": "v100x8", "backend": "local", "status": "ok"}',
        '{"impl": "detectron2", "hardware": "v100x8", "backend": "local", "status": "won"}',
    ],
)
def test_corrupt_result_is_reported_by_path_and_the_rest_prints(tmp_path, capsys, content):
    sweep = tmp_path / "sweep"
    result(sweep / "0_detectron2", "detectron2", "ok", 60.0, n=0)
    bad = sweep / "1_mmdetection" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    runs, problems = gather([sweep], job_state=False)
    assert [p.path for p in problems] == [str(bad)]
    assert len(runs) == 1 and runs.loc[0, "impl"] == "detectron2"
    rc = main([str(sweep), "--no-record"])
    out, err = capsys.readouterr()
    assert rc == EXIT_SKIPPED
    assert str(bad) in err and "corrupt" in err
    assert "60.00" in out  # the good row still prints
    parse_rst(out)


def test_corrupt_result_with_spec_keeps_its_row_as_unreadable(tmp_path):
    d = tmp_path / "sweep" / "0_simpledet"
    spec(d, "simpledet")
    (d / "result.json").write_text('{"truncated": ')
    runs, problems = gather([tmp_path / "sweep"], job_state=False)
    assert len(problems) == 1
    assert runs.loc[0, "status"] == "unreadable"  # not "not run": something ran, its result is broken
    assert summary(runs).set_index("impl").loc["simpledet", "status"] == "unreadable"


def test_half_written_temp_file_is_ignored_and_not_a_run(tmp_path):
    d = tmp_path / "sweep" / "0_detectron2"
    result(d, "detectron2", "ok", 61.0)
    (d / ".result.json.abc.tmp").write_text('{"half')
    runs, problems = gather([tmp_path], job_state=False)
    assert problems == [] and len(runs) == 1


def test_run_dir_is_not_descended_and_nested_sweeps_are_found(tmp_path):
    d = tmp_path / "a" / "b" / "sweep" / "0_detectron2"
    result(d, "detectron2", "ok", 61.0)
    result(d / "checkout" / "nested", "mmdetection", "ok", 50.0)  # inside a run dir: not a run of ours
    runs, _ = gather([tmp_path], job_state=False)
    assert list(runs["impl"]) == ["detectron2"]


def test_not_a_directory_is_a_problem(tmp_path):
    runs, problems = gather([tmp_path / "nope"], job_state=False)
    assert len(problems) == 1 and "not a directory" in problems[0].message


def test_markdown_csv_json_carry_the_same_rows(tmp_path):
    sweep = tmp_path / "sweep"
    result(sweep / "0_detectron2", "detectron2", "ok", 61.0, n=0)
    result(sweep / "1_detectron2", "detectron2", "ok", 63.0, n=1)
    result(sweep / "2_mmdetection", "mmdetection", "failed", n=2)
    runs, _ = gather([sweep], job_state=False)
    table = summary(runs)
    md = render(runs, "md").splitlines()
    assert md[0].startswith("| Implementation | Throughput (img/s) |")
    assert len(md) == 2 + len(table)
    assert "| Detectron2 | 62.00 |" in md[2]
    rows = list(csv.DictReader(io.StringIO(render(runs, "csv"))))
    assert len(rows) == len(table)
    assert rows[0]["implementation"] == "Detectron2" and float(rows[0]["throughput"]) == 62.0
    assert rows[0]["count"] == "2" and float(rows[0]["std"]) == pytest.approx(2**0.5)
    doc = json.loads(render(runs, "json"))
    assert len(doc["runs"]) == 3 and len(doc["table"]) == len(table)
    fields = set(Result.__dataclass_fields__)
    assert all(fields <= set(r) for r in doc["runs"])  # every field of every run
    written = write_tables(runs, tmp_path / "out")
    assert sorted(p.name for p in written) == ["results.csv", "table.md", "table.rst"]
    assert (tmp_path / "out" / "table.rst").read_text() == render(runs, "rst")


def test_cli_out_and_formats(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    result(sweep / "0_detectron2", "detectron2", "ok", 61.0)
    assert main([str(sweep), "--format", "csv", "--out", str(tmp_path / "o"), "--db", str(tmp_path / "h.db")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("implementation,impl,label,throughput")
    assert (tmp_path / "o" / "table.rst").exists() and (tmp_path / "h.db").exists()
    with pytest.raises(SystemExit):
        main([])  # neither paths nor --history


def test_other_hardware_shows_per_gpu(tmp_path):
    result(tmp_path / "s" / "0", "detectron2", "ok", 120.0, hardware="a100x8", gpus=8)
    result(tmp_path / "s" / "1", "detectron2", "ok", 20.0, hardware="local", gpus=1)
    runs, _ = gather([tmp_path], job_state=False)
    header, body = parse_rst(render(runs, "rst"))
    rows = [dict(zip(header, b)) for b in body if b[header.index("Hardware")] in ("a100x8", "local")]
    a100 = next(r for r in rows if r["Hardware"] == "a100x8")
    assert a100["Verdict"] == "n/a: other hardware"
    assert a100["Per GPU (img/s)"] == "15.00 vs 7.75"  # 120/8 against the published 62/8 (62 +-0.5 -> 7.75 +-0.06)
    local = next(r for r in rows if r["Hardware"] == "local")
    assert local["Per GPU (img/s)"].startswith("20.0")


def test_moved_sweep_does_not_invent_missing_rows(tmp_path):
    sweep = tmp_path / "sweep"
    submitted(sweep / "0_detectron2", "detectron2", sweep_dir=sweep)
    result(sweep / "0_detectron2", "detectron2", "ok", 61.0)
    submitted(sweep / "1_mmdetection", "mmdetection", sweep_dir=sweep)
    moved = tmp_path / "archive" / "sweep"
    moved.parent.mkdir()
    sweep.rename(moved)  # manifest lines still name the old paths
    runs, problems = gather([moved], job_state=False)
    assert problems == [] and sorted(runs["impl"]) == ["detectron2", "mmdetection"]
    assert "missing" not in " ".join(str(r) for r in runs["reason"])


def test_a_figure_of_another_stack_is_labelled_and_never_averaged_with_the_seeds(tmp_path):
    result(tmp_path / "a", "detectron2", throughput=60.0, n=1)  # an older result: no stack recorded (= seed)
    result(tmp_path / "b", "detectron2", throughput=90.0, n=2, stack="today", recipe_hash="r2")
    runs, problems = gather([tmp_path], job_state=False)
    table = summary(runs)
    d2 = table[table["impl"] == "detectron2"]
    assert sorted(d2["throughput"]) == [60.0, 90.0] and sorted(d2["stack"].fillna("-")) == ["-", "today"]
    labels = first_column(render(runs, "rst"))
    assert "|D2| |PT| (stack=today)" in labels and "|D2| |PT|" in labels
    assert "Detectron2 (stack=today)" in render(runs, "md") and json.loads(render(runs, "json"))
