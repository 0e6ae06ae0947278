"""Issue 13, item 9: what used to end in a traceback ends in an error that names the problem and the way out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gather_helpers import result

from tests.conftest import ROOT, run_launcher, tmpfs

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def py(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


@pytest.fixture
def read_only(tmp_path):
    """A directory nothing can be written to, not even by root: a read-only tmpfs (or, without the right to
    mount, a directory without write permission when we are not root)."""
    where = tmp_path / "ro"
    where.mkdir()
    (where / "inside").mkdir()
    if os.geteuid() != 0:
        (where / "inside").chmod(0o555)
        where.chmod(0o555)
        try:
            yield where
        finally:
            where.chmod(0o755)
            (where / "inside").chmod(0o755)
        return
    with tmpfs(where, "", read_only_after=lambda w: (w / "inside").mkdir()):
        yield where


def test_history_from_a_corrupt_database(tmp_path):
    db = tmp_path / "history.sqlite"
    db.write_bytes(b"this is not a database\n" * 100)
    p = py("-m", "launcher.gather", "--history", "--db", str(db))
    assert p.returncode == 3 and "Traceback" not in p.stderr, p.stderr
    assert str(db) in p.stderr and "not a readable history" in p.stderr and "move it aside" in p.stderr


def test_a_table_with_a_corrupt_history_database_still_prints(tmp_path):
    db = tmp_path / "history.sqlite"
    db.write_bytes(b"this is not a database\n" * 100)
    result(tmp_path / "sweep" / "0_detectron2", "detectron2", "ok", 61.0)
    p = py("-m", "launcher.gather", str(tmp_path / "sweep"), "--history", "--db", str(db))
    assert p.returncode == 3 and "Traceback" not in p.stderr, p.stderr
    assert "61.0" in p.stdout and str(db) in p.stderr


def test_parse_given_a_directory(tmp_path):
    (tmp_path / "output").mkdir()
    p = py("-m", "launcher.parse", "--impl", "detectron2", str(tmp_path / "output"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "is a directory" in p.stderr and "log.txt" in p.stderr  # names the file a detectron2 row logs to


def test_gather_out_on_a_read_only_path_prints_the_table_first(tmp_path, read_only):
    result(tmp_path / "sweep" / "0_detectron2", "detectron2", "ok", 61.0)
    p = py(
        "-m", "launcher.gather", str(tmp_path / "sweep"), "--out", str(read_only / "inside" / "tables"), "--no-record"
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "61.0" in p.stdout  # the table came first
    assert str(read_only / "inside" / "tables") in p.stderr and "--out" in p.stderr


def test_outputs_on_a_read_only_mount(read_only):
    p = run_launcher("impl=torchvision", cwd=read_only / "inside", timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "HYDRA_FULL_ERROR" not in p.stderr, p.stderr
    assert "outputs" in p.stderr and "hydra.run.dir" in p.stderr


def test_a_fixed_run_dir_on_a_read_only_mount(read_only):
    p = run_launcher("impl=torchvision", f"hydra.run.dir={read_only / 'inside'}", cwd=read_only, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "HYDRA_FULL_ERROR" not in p.stderr, p.stderr
    assert str(read_only / "inside") in p.stderr and "hydra.run.dir" in p.stderr
