"""Rows on `stack=today` that cannot run there fail at once, naming what is missing (issue 19): never a
traceback, nothing checked out, a failed row whose reason says it."""

from __future__ import annotations

from launcher.rundir import read_result
from tests.conftest import run_launcher


def test_detectron_on_todays_stack_names_caffe2_and_stays_on_seed(tmp_path):
    p = run_launcher("impl=detectron", "stack=today", f"cache_dir={tmp_path / 'cache'}", cwd=tmp_path, timeout=120)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stdout + p.stderr
    for what in ("Caffe2", "Python <= 3.8", "caffe2", "stack=seed"):
        assert what in p.stderr, p.stderr
    (res,) = list((tmp_path / "outputs").rglob("result.json"))
    r = read_result(res)
    assert r.status == "failed" and r.stack == "today" and "Caffe2" in r.error
    assert not (tmp_path / "cache").exists()  # failed before any checkout or download
