"""Pretrained weights, offline (issue 12): fetched into weights_dir from each row's URLs (here a local
http.server and file:// URLs: this machine has no internet), verified against what upstream publishes,
recorded in weights.lock.json when upstream publishes nothing, and checked before submission."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from launcher import weights
from launcher.weights import LOCK_FILE, WeightsError, check, fetch
from tests.conftest import ROOT

BLOB = b"\x80\x02pretend pickled ImageNet weights" * 100


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()


def test_no_published_checksum_records_the_sha256_on_first_fetch(tmp_path, server):
    url, www = server
    (www / "R-50.pkl").write_bytes(BLOB)
    wdir = tmp_path / "weights"
    w = {"dest": "detectron2/ImageNetPretrained/MSRA/R-50.pkl", "urls": [f"{url}/R-50.pkl"]}
    said = fetch(wdir, w, log=lambda s: None)
    sha = hashlib.sha256(BLOB).hexdigest()
    assert "no checksum is published" in said and f"recorded sha256 {sha}" in said
    assert (wdir / w["dest"]).read_bytes() == BLOB
    lock = json.loads((wdir / LOCK_FILE).read_text())[w["dest"]]
    assert lock["sha256"] == sha and lock["size"] == len(BLOB) and lock["url"] == f"{url}/R-50.pkl"
    assert lock["checksum"].startswith("recorded on first fetch")
    assert "present, sha256 matches" in fetch(wdir, w)  # not fetched again
    # the file changes on disk (or upstream): caught against the lock, nothing overwritten
    (wdir / w["dest"]).write_bytes(BLOB[:-1] + b"!")
    with pytest.raises(WeightsError, match=f"!= {sha} recorded in {LOCK_FILE}"):
        check(wdir, w)
    (www / "R-50.pkl").write_bytes(BLOB + b"changed upstream")
    with pytest.raises(WeightsError, match="nothing was written"):
        fetch(wdir, w, force=True, log=lambda s: None)


def test_published_md5_and_sha256_prefix_are_verified(tmp_path, server):
    url, www = server
    (www / "R-50.pkl").write_bytes(BLOB)
    (www / "R-50.pkl.md5sum").write_text(hashlib.md5(BLOB).hexdigest() + "  R-50.pkl\n")
    wdir = tmp_path / "weights"
    good = {"dest": "detectron/R-50.pkl", "urls": [f"{url}/R-50.pkl"], "md5_url": f"{url}/R-50.pkl.md5sum"}
    assert "md5 published" in fetch(wdir, good, log=lambda s: None)
    assert json.loads((wdir / LOCK_FILE).read_text())["detectron/R-50.pkl"]["checksum"].startswith("md5 published")
    bad = {"dest": "mmcv/resnet50_msra-5891d200.pth", "urls": [f"{url}/R-50.pkl"], "sha256_prefix": "5891d200"}
    with pytest.raises(WeightsError, match="does not start with 5891d200"):
        fetch(wdir, bad, log=lambda s: None)
    assert not (wdir / bad["dest"]).exists() and not list((wdir / "mmcv").glob(".*part*"))
    wrong = {"dest": "x/R-50.pkl", "urls": [f"{url}/R-50.pkl"], "md5": "0" * 32}
    with pytest.raises(WeightsError, match="!= published 0000"):
        fetch(wdir, wrong, log=lambda s: None)


def test_urls_are_tried_in_order_and_file_urls_work(tmp_path, server):
    url, www = server
    local = tmp_path / "mirror.npz"
    local.write_bytes(BLOB)
    w = {"dest": "tensorpack/ImageNet-R50-AlignPadding.npz", "urls": [f"{url}/gone.npz", f"file://{local}"]}
    fetch(tmp_path / "weights", w, log=lambda s: None)
    assert json.loads((tmp_path / "weights" / LOCK_FILE).read_text())[w["dest"]]["url"] == f"file://{local}"
    with pytest.raises(WeightsError, match=r"(?s)could not fetch a from any of its URLs.*gone.npz: HTTP Error 404"):
        fetch(tmp_path / "w2", {"dest": "a", "urls": [f"{url}/gone.npz"]}, log=lambda s: None)


def test_each_row_is_checked_before_submission(compose, tmp_path):
    from launcher.plan import plan

    spec = plan(compose("impl=detectron2", "hardware=v100x8", f"weights_dir={tmp_path / 'w'}"), tmp_path / "run")
    (missing,) = weights.problems(spec)
    assert "R-50.pkl is missing" in missing and "python -m launcher.weights fetch impl=detectron2" in missing
    path = tmp_path / "w" / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(BLOB)
    assert weights.problems(spec) == []
    assert "recorded sha256" in check(tmp_path / "w", spec.weights[0])  # placed by hand: recorded on first check
    path.write_bytes(BLOB[:10])
    assert "bytes, weights.lock.json recorded" in weights.problems(spec)[0]
    # a file placed by hand whose published md5 cannot be read (no internet here) is not taken on trust
    mrcnn = plan(compose("impl=maskrcnn_benchmark", f"weights_dir={tmp_path / 'w'}"), tmp_path / "run")
    hand = Path(mrcnn.weights[0]["path"])
    hand.parent.mkdir(parents=True)
    hand.write_bytes(BLOB)
    with pytest.raises(WeightsError, match=r"cannot read the published md5 .* at https://dl.fbaipublicfiles.com/"):
        check(tmp_path / "w", mrcnn.weights[0])
    comma = plan(compose("impl=mmdetection", "hardware=v100x8", "weights_dir='/shared/a,b'"), tmp_path / "run")
    assert any("comma" in p for p in weights.problems(comma))


def test_every_seed_rows_command_points_at_its_local_files(compose, tmp_path):
    """No seed row downloads at run time: each file it loads is under weights_dir, named in its command
    (or, for SimpleDet's fixed pretrain_model/ path, in the link its setup makes)."""
    from launcher.plan import plan

    for row in (
        "detectron2",
        "mmdetection",
        "maskrcnn_benchmark",
        "tensorpack",
        "simpledet",
        "detectron",
        "matterport",
    ):
        spec = plan(compose(f"impl={row}", "hardware=v100x8", "weights_dir=/w"), tmp_path / "run")
        assert spec.weights, row
        for w in spec.weights:
            assert w["urls"] and w["path"] == f"/w/{w['dest']}"
            where = " ".join([spec.command, *spec.setup])
            assert w["path"] in where or str(Path(w["path"]).parent) in where, (row, w["path"])
        for scheme in ("detectron2://", "catalog://", "open-mmlab://", "https://", "http://", "=imagenet"):
            assert scheme not in spec.command, (row, scheme)


def test_the_small_clis_plan_the_cluster_run_on_a_host_without_gpus():
    """`weights fetch`, `data stage` and `env create` run on a login node: they plan a row at full scale, whose
    files are the cluster run's, even where `scale=auto` would pick its CPU smoke scale (no pretrained file)."""
    from launcher.cli import plan_rows

    ((_, full),) = plan_rows(["impl=detectron2", "hardware.gpus=0"])
    assert full.scale == "full" and [w["dest"] for w in full.weights] == ["detectron2/ImageNetPretrained/MSRA/R-50.pkl"]
    ((_, smoke),) = plan_rows(["impl=detectron2", "hardware.gpus=0", "scale=smoke"])
    assert smoke.scale == "smoke" and smoke.weights == []


def test_fetch_command_fetches_every_named_rows_files_once(tmp_path, server):
    url, www = server
    (www / "R-50.pkl").write_bytes(BLOB)
    (www / "R-50.pkl.md5sum").write_text(hashlib.md5(BLOB).hexdigest() + "\n")
    args = [
        f"weights_dir={tmp_path / 'w'}",
        f"impl.weights.0.urls=[{url}/R-50.pkl]",
        f"impl.weights.0.md5_url={url}/R-50.pkl.md5sum",
    ]
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "launcher.weights", *a],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    p = run("list", "impl=maskrcnn_benchmark,detectron", *args)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 1 and "(maskrcnn_benchmark, detectron)" in p.stdout
    p = run("fetch", "impl=maskrcnn_benchmark,detectron", *args)
    assert p.returncode == 0 and p.stdout.count("fetched, md5 published") == 1, p.stdout + p.stderr
    p = run("check", "impl=detectron", *args)
    assert p.returncode == 0 and "sha256 matches" in p.stdout
