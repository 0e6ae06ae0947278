"""Issue 21, classes 2, 3 and 11 on the node: planted links are never written through, a figure whose window
outlasts the command is refused, a truncated spec.json and a SIGHUP still end in a result.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from launcher.node.run import run_node
from launcher.locks import locked
from launcher.rundir import append_manifest, read_result, read_status
from launcher.safeio import PlantedFile
from tests.conftest import ROOT
from tests.nodespec import node_cli, node_spec

# ---------------------------------------------------------------- class 3: clocks


def test_a_window_longer_than_the_command_is_refused_naming_both_durations(tmp_path):
    """The issue's case: stamps jump an hour inside the window of a command that ran a second."""
    node_spec(tmp_path / "run", jump=3600.0)
    r = run_node(tmp_path / "run")
    assert r.status == "failed" and r.throughput is None
    assert "took 3600" in r.error and "the command ran only" in r.error and "monotonic" in r.error


def test_a_steady_clock_still_gives_its_figure(tmp_path):
    node_spec(tmp_path / "run")
    r = run_node(tmp_path / "run")
    assert r.status == "ok" and 10 < r.throughput < 60, r.error  # 2 images per ~0.05 s


# ---------------------------------------------------------------- class 11: a truncated spec, SIGHUP


def test_a_truncated_spec_makes_a_failed_result_not_a_traceback(tmp_path):
    spec = node_spec(tmp_path / "run")
    text = (tmp_path / "run" / "spec.json").read_text()
    cut = max(len(text) // 2, text.index("\n", text.index('"impl"')) + 1)  # truncated after the row's name
    (tmp_path / "run" / "spec.json").write_text(text[:cut])
    p = node_cli(tmp_path / "run")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "cannot be read as a job spec" in p.stderr
    r = read_result(tmp_path / "run")
    assert r.status == "failed" and "truncated" in r.error and r.impl == spec.impl


def test_sighup_to_the_launcher_ends_the_row_cancelled_with_a_result(tmp_path):
    slow = tmp_path / "slow.sh"
    slow.write_text("for i in $(seq 1 300); do echo waiting $i; sleep 0.2; done\n")
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launcher",
            "hydra.searchpath=[file://" + str(ROOT / "tests" / "conf") + "]",
            "impl=standin",
            f"impl.command=bash {slow}",
        ],
        cwd=tmp_path,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    status = None
    while time.monotonic() < deadline:
        found = list((tmp_path / "outputs").rglob("status.json"))
        if (
            found
            and read_status(found[0].parent).get("state") == "running"
            and (found[0].parent / "train.log").exists()
            and "waiting" in (found[0].parent / "train.log").read_text()
        ):
            status = found[0].parent
            break
        time.sleep(0.2)
    assert status is not None, p.communicate(timeout=60)
    p.send_signal(signal.SIGHUP)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGHUP, err[-2000:]
    r = read_result(status)
    assert r.status == "cancelled" and "SIGHUP" in r.error
    assert read_status(status)["state"] == "cancelled"


# ---------------------------------------------------------------- class 2: planted links


def test_links_planted_in_the_run_dir_are_never_written_through(tmp_path):
    victims = {name: tmp_path / f"victim-{name.strip('.')}" for name in ("job.sh", ".space-reserve", "train.log")}
    node_spec(tmp_path / "run")
    for name, victim in victims.items():
        victim.write_text(f"precious {name}\n")
        (tmp_path / "run" / name).symlink_to(victim)
    r = run_node(tmp_path / "run")
    assert r.status == "ok", r.error
    for name, victim in victims.items():
        assert victim.read_text() == f"precious {name}\n", name
    assert not (tmp_path / "run" / "job.sh").is_symlink()  # the link itself was replaced by our file


def test_a_planted_manifest_link_is_refused(tmp_path):
    spec = node_spec(tmp_path / "run")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "run" / "manifest.jsonl").symlink_to(victim)
    with pytest.raises(PlantedFile, match="symbolic link"):
        append_manifest(spec, "local-1")
    assert victim.read_text() == "precious\n"


def test_a_planted_lock_file_link_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / ".weights.lock").symlink_to(victim)
    with pytest.raises(PlantedFile):
        with locked(tmp_path / ".weights.lock"):
            pass
    assert victim.read_text() == "precious\n"


def test_a_hard_link_to_another_file_is_refused(tmp_path):
    """A hard link cannot be told from the file by its name: the link count tells it."""
    spec = node_spec(tmp_path / "run")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.link(victim, tmp_path / "run" / "manifest.jsonl")
    with pytest.raises(PlantedFile, match="hard link"):
        append_manifest(spec, "local-1")
    assert victim.read_text() == "precious\n"
    assert json.loads((tmp_path / "run" / "spec.json").read_text())["impl"] == "standin"
