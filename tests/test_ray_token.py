"""Issue 21, class 9: the Ray head the launcher starts (backend=ray without an address) demands a token that only
its user can read, and the launcher's own client presents it. As another local user would, a request without the
token (or with a wrong one) is refused; the launcher's row runs to its result. The head is the embedded one, on
free ports of its own (head.py's _free_port), so it never collides with another head here; never `ray stop`."""

from __future__ import annotations

import json
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from launcher.backends.ray import RayBackend, session_head
from launcher.rundir import read_result
from tests.test_backends_ray_head import probe_spec

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

PROBE = (
    "import time\nprint('tvbench run: probe', flush=True)\nfor i in range(1, 12):\n    time.sleep(0.1)\n"
    "    print(f'tvbench iter={i} t={time.time():.6f} images=2 loss=1.0', flush=True)\n"
)


def status_of(url: str, headers: dict | None = None, data: bytes | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_embedded_head_demands_a_token_only_its_user_can_read(tmp_path):
    spec = probe_spec(tmp_path, window=(2, 10), text=PROBE)
    run = Path(spec.run_dir)
    backend = RayBackend({"address": None})
    try:
        (job_id,) = backend.submit([spec])
        head = session_head()
        token_file = Path(head.token_file)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        token = token_file.read_text().strip()
        assert len(token) >= 32
        jobs = head.address + "/api/jobs/"
        # what any other local user can do: no token, a wrong one -> refused, nothing listed or submitted
        assert status_of(jobs) == 401
        assert status_of(jobs, {"Authorization": "Bearer not-the-token"}) == 403
        evil = json.dumps({"entrypoint": "touch /tmp/lx-should-not-exist"}).encode()
        assert status_of(jobs, {"Content-Type": "application/json"}, evil) in (401, 403)
        assert status_of(jobs, {"Authorization": f"Bearer {token}"}) == 200
        # the token is in no run dir file and on no command line of the head
        assert not any(token in p.read_text(errors="replace") for p in run.rglob("*") if p.is_file())
        assert token not in Path(f"/proc/{head.proc.pid}/cmdline").read_bytes().decode(errors="replace")
        deadline = time.monotonic() + 120
        while backend.state(job_id, str(run)).state in ("pending", "running"):  # the launcher's client gets in
            assert time.monotonic() < deadline, backend.state(job_id, str(run))
            time.sleep(0.5)
        assert read_result(run).status == "ok", read_result(run).error
    finally:
        backend.close()
    assert not Path("/tmp/lx-should-not-exist").exists()
