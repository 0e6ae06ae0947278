"""Issue 21, class 5: logs are parsed as a stream, in bounded memory, and only regular files are read.

The streamed parse must find exactly what the whole-text parse finds (every real excerpt, every format);
a big log and one very long line must not be held in memory; a FIFO and /dev/zero are refused clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.parse import ParseError, formats, get_parser, read_log
from tests.conftest import ROOT

FIX = Path(__file__).parent / "fixtures" / "logs"


def outcome(fn):
    try:
        return ("ok", repr(fn()))
    except ParseError as e:
        return (type(e).__name__, str(e))


@pytest.mark.parametrize("name", sorted(p.name for p in FIX.iterdir() if p.is_file() and p.name != "README.md"))
def test_the_streamed_parse_finds_what_the_whole_text_parse_finds(name):
    text = (FIX / name).read_text(encoding="utf-8", errors="replace")
    for fmt in formats():
        p = get_parser(fmt)
        assert outcome(lambda: p.runs(read_log(FIX / name))) == outcome(lambda: p.runs(text)), (fmt, name)
        assert outcome(lambda: p.measure(read_log(FIX / name), (20, 100), 16)) == outcome(
            lambda: p.measure(text, (20, 100), 16)
        ), (fmt, name)


def _parse_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # VmHWM: this process's own peak (ru_maxrss may carry the forking parent's, a big pytest)
    code = (
        "import re, sys; from launcher.parse.__main__ import main; rc = main(sys.argv[1:]); "
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
        "print('MAXRSS_KB', hwm, file=sys.stderr); sys.exit(rc)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _maxrss_mb(p: subprocess.CompletedProcess) -> float:
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("MAXRSS_KB")][-1]
    return int(line.split()[1]) / 1024


def test_a_big_log_with_a_huge_line_is_parsed_in_bounded_memory(tmp_path):
    log = tmp_path / "train.log"
    noise = ("W warning: a very chatty data loader says the same thing again " * 16 + "\n").encode()
    with open(log, "wb") as f:
        f.write(b"tvbench run: test\n")
        for i in range(1, 11):
            f.write(noise * 12000)  # ~12 MB of noise between records: 120 MB in all
            f.write(f"tvbench iter={i} t={1000 + i * 0.5:.6f} images=2 loss=0.5\n".encode())
        f.write(b"x" * (80 << 20))  # one 80 MB line, never ended
    assert log.stat().st_size > 190 << 20
    p = _parse_cli("--format", "torchvision", "--images-per-iter", "2", "--window", "2", "8", str(log))
    assert p.returncode == 0, p.stderr[-2000:]
    assert '"throughput": 4.0' in p.stdout  # 2 images per 0.5 s
    assert _maxrss_mb(p) < 150, f"{_maxrss_mb(p):.0f} MB resident for a {log.stat().st_size >> 20} MB log"


def test_a_fifo_and_a_device_are_refused_not_read(tmp_path):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    for path, what in ((fifo, "FIFO"), ("/dev/zero", "character device")):
        p = _parse_cli("--format", "detectron2", "--images-per-iter", "16", str(path), timeout=30)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert what in p.stderr and "not a regular file" in p.stderr
