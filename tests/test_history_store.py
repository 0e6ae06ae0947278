"""Issue 21, class 7: the history store busy means a bounded wait and then "busy", full means "full", never the
"move it aside" advice that would lose the history; and a launch whose row ran ok is not turned into a
failure because its history could not be written."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from launcher.gather import history
from tests.conftest import ROOT, run_launcher, tmpfs

STANDIN = ["hydra.searchpath=[file://" + str(ROOT / "tests" / "conf") + "]", "impl=standin", "scale=full"]
REC = {
    "source": "result",
    "status": "ok",
    "impl": "detectron2",
    "hardware": "v100x8",
    "throughput": 61.0,
    "run_dir": "/runs/a",
    "started_at": "2026-01-01T00:00:00+00:00",
    "finished_at": "2026-01-01T01:00:00+00:00",
}


def hold(db: Path) -> sqlite3.Connection:
    """Another writer in the middle of a long transaction."""
    history.append(db, [])  # nothing to add: does not even open it
    con = sqlite3.connect(db, isolation_level=None)
    con.executescript(history._SCHEMA)
    con.execute("BEGIN EXCLUSIVE")
    return con


def test_a_busy_store_is_waited_for_then_said_busy(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "BUSY_WAIT_S", 1.0)
    db = tmp_path / "history.sqlite"
    con = hold(db)
    t0 = time.monotonic()
    with pytest.raises(history.HistoryBusy) as e:
        history.append(db, [REC])
    assert 0.9 < time.monotonic() - t0 < 10
    assert "busy" in str(e.value) and "move it aside" not in str(e.value) and "not a readable" not in str(e.value)
    con.execute("ROLLBACK")
    assert history.append(db, [REC]) == 1  # nothing was wrong with it


@pytest.fixture
def full_disk(tmp_path):
    where = tmp_path / "small"
    where.mkdir()
    with tmpfs(where, ": the full-disk case needs a small file system") as w:
        yield w


def test_a_full_disk_is_said_full(full_disk):
    db = full_disk / "history.sqlite"
    history.append(db, [REC])
    subprocess.run(["dd", "if=/dev/zero", f"of={full_disk / 'filler'}", "bs=64k"], capture_output=True)
    many = [{**REC, "run_dir": f"/runs/{i}", "impl": "x" * 2000} for i in range(2000)]
    with pytest.raises(history.HistoryFull) as e:
        history.append(db, many)
    assert "full" in str(e.value) and "move it aside" not in str(e.value)


def test_a_planted_link_as_the_store_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "history.sqlite").symlink_to(victim)
    with pytest.raises(history.HistoryError, match="symbolic link"):
        history.append(tmp_path / "history.sqlite", [REC])
    assert victim.read_text() == "precious\n"


def test_an_ok_row_exits_0_when_its_history_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "outputs").mkdir()
    con = hold(tmp_path / "outputs" / "history.sqlite")  # busy for the whole launch (waited for 2 s, then given up)
    try:
        p = run_launcher(
            *STANDIN,
            "impl.options.iters=40",
            "impl.options.base=0.02",
            "window.start=10",
            "window.end=30",
            cwd=tmp_path,
            timeout=300,
            env={"LAUNCHER_HISTORY_WAIT_S": "2"},
        )
    finally:
        con.execute("ROLLBACK")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "busy" in p.stderr and "move it aside" not in p.stdout + p.stderr
