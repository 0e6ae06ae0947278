"""Issue 21, class 4: what `launcher.weights` downloads is whole, bounded in time, from sources it may copy,
and lands inside weights_dir. A local HTTP server stands in for upstream (this machine has no internet);
its misbehaviours (a short body, a trickle) are the cases."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from launcher.weights import LOCK_FILE, WeightsError, fetch
from tests.conftest import ROOT
from tests.test_clear_errors import read_only  # noqa: F401  (fixture)


class Misbehaving(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/short":  # promises 100,000 bytes, sends 7, closes
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"7 bytes")
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/trickle":  # one byte every 0.2 s, for ever
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leftovers(wdir: Path) -> list[Path]:
    return [p for p in wdir.rglob("*") if p.is_file() and p.name != LOCK_FILE] if wdir.exists() else []


def test_a_short_download_is_a_failure_and_nothing_is_locked(tmp_path, server):
    wdir = tmp_path / "weights"
    w = {"dest": "detectron2/R-50.pkl", "urls": [f"{server}/short"]}
    with pytest.raises(WeightsError, match="promised 100000 bytes .* sent 7"):
        fetch(wdir, w, log=lambda s: None)
    assert leftovers(wdir) == []  # neither the file nor its .part
    assert not (wdir / LOCK_FILE).exists() or "detectron2/R-50.pkl" not in json.loads((wdir / LOCK_FILE).read_text())


def test_a_trickling_server_meets_the_whole_download_deadline(tmp_path, server):
    wdir = tmp_path / "weights"
    w = {"dest": "x/slow.pkl", "urls": [f"{server}/trickle"]}
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match="longer than its deadline of 2 s"):
        fetch(wdir, w, log=lambda s: None, timeout=30, deadline_s=2.0)
    assert time.monotonic() - t0 < 10  # the per-read timeout (30 s) never came into it
    assert leftovers(wdir) == []  # its .part removed


def test_file_urls_copy_only_files_everyone_may_read(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$secret\n")
    secret.chmod(0o600)
    wdir = tmp_path / "weights"
    with pytest.raises(WeightsError, match="private"):
        fetch(wdir, {"dest": "x/copy", "urls": [secret.as_uri()]}, log=lambda s: None)
    assert leftovers(wdir) == []
    public = tmp_path / "mirror.pkl"
    public.write_bytes(b"public weights")
    public.chmod(0o644)
    assert "fetched" in fetch(wdir, {"dest": "x/public.pkl", "urls": [public.as_uri()]}, log=lambda s: None)


@pytest.mark.parametrize("dest", ["../outside.pkl", "a/../../outside.pkl", "ABSOLUTE", ""])
def test_a_dest_outside_weights_dir_is_refused(tmp_path, dest):
    dest = str(tmp_path / "abs.pkl") if dest == "ABSOLUTE" else dest
    src = tmp_path / "w.pkl"
    src.write_bytes(b"weights")
    src.chmod(0o644)
    wdir = tmp_path / "weights"
    wdir.mkdir()
    with pytest.raises(WeightsError, match="relative path inside weights_dir"):
        fetch(wdir, {"dest": dest, "urls": [src.as_uri()]}, log=lambda s: None)
    assert not (tmp_path / "outside.pkl").exists() and not (tmp_path / "abs.pkl").exists()


def test_a_link_out_of_weights_dir_is_refused(tmp_path):
    src = tmp_path / "w.pkl"
    src.write_bytes(b"weights")
    src.chmod(0o644)
    wdir, elsewhere = tmp_path / "weights", tmp_path / "elsewhere"
    wdir.mkdir()
    elsewhere.mkdir()
    (wdir / "detectron2").symlink_to(elsewhere)
    with pytest.raises(WeightsError, match="leads out of weights_dir"):
        fetch(wdir, {"dest": "detectron2/R-50.pkl", "urls": [src.as_uri()]}, log=lambda s: None)
    assert list(elsewhere.iterdir()) == []


def test_fetch_into_an_unwritable_place_is_a_clear_error(tmp_path, read_only):  # noqa: F811
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher.weights",
            "fetch",
            "impl=detectron2",
            f"weights_dir={read_only / 'inside' / 'weights'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "cannot write" in p.stderr and "weights_dir" in p.stderr
