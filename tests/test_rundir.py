"""result.json: validated, atomic, and a corrupt one is named, never half-read."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from launcher.rundir import CorruptResult, Result, read_result, write_result


def ok_result(**kw):
    base = dict(
        impl="torchvision",
        hardware="local",
        backend="local",
        status="ok",
        throughput=1.5,
        window=[2, 8],
        images_per_iter=2,
        method="m",
        error_bound=1e-6,
    )
    base.update(kw)
    return Result(**base)


def test_roundtrip(tmp_path):
    write_result(tmp_path, ok_result())
    r = read_result(tmp_path / "result.json")
    assert r.status == "ok" and r.throughput == 1.5 and r.window == [2, 8]


@pytest.mark.parametrize(
    "kw", [dict(throughput=None), dict(throughput=0.0), dict(status="failed"), dict(status="finished")]
)
def test_invalid_results_are_refused(kw):
    with pytest.raises(ValueError):
        ok_result(**kw)


@pytest.mark.parametrize("content", ["", '{"impl": "x", ', "[1, 2]", '{"impl": 3}', "\x00\x01"])
def test_corrupt_file_is_named(tmp_path, content):
    (tmp_path / "result.json").write_text(content)
    with pytest.raises(CorruptResult, match=str(tmp_path / "result.json")):
        read_result(tmp_path)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    write_result(tmp_path, ok_result(throughput=1.0))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_result(tmp_path, ok_result(throughput=2.0))
    monkeypatch.undo()
    assert read_result(tmp_path).throughput == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left behind


WRITER = """
import sys
from launcher.rundir import Result, write_result
i = 0
while True:
    i += 1
    write_result(sys.argv[1], Result(impl="x" * 200000, hardware="local", backend="local", status="ok",
                                     throughput=float(i)))
"""


def test_never_half_written_even_when_the_writer_is_killed(tmp_path):
    """A reader racing a writer (with large files) and a SIGKILL mid-stream only ever sees whole results."""
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env)
    try:
        deadline = time.time() + 30
        while not (tmp_path / "result.json").exists() and time.time() < deadline:
            time.sleep(0.01)
        seen = set()
        for _ in range(300):
            seen.add(read_result(tmp_path).throughput)  # raises CorruptResult on a torn file
        assert len(seen) > 1, "the writer made no progress while we read"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "ok"
