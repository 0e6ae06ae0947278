"""A row run at another commit than its pin (issue 19: matterport, whose 3deaec5 has no mirror here, runs from a
tree of 3deaec5 rebuilt and committed with its own hash) says so: the user passes that commit explicitly, and the
spec, result.json and the table keep the commit that ran beside the pin it stands in for; the pin's hash is never
claimed for it."""

from __future__ import annotations

import pytest

from launcher.catalog import load_rows, same_commit
from launcher.plan import plan
from launcher.rundir import Result

OTHER = "2fe13df79b0858b3fb372be601b8e9bf1f381729"
PIN = "3deaec5d902d16e1daf56b62d5971d428dc920bc"


def _plan(compose, tmp_path, *overrides):
    args = ["impl=matterport", "stack=today", *overrides]
    return plan(compose(*args), tmp_path / "run", overrides=list(overrides))


def test_the_catalog_knows_each_rows_pin():
    rows = load_rows()
    assert rows["matterport"].commit == "3deaec" and rows["detectron2"].commit == "v0.1.2"
    assert rows["torchvision"].commit is None
    assert same_commit("3deaec", PIN) and same_commit(PIN, "3DEAEC5") and not same_commit("3deaec", OTHER)


def test_another_commit_on_the_command_line_is_recorded_beside_the_pin(compose, tmp_path):
    spec = _plan(compose, tmp_path, f"impl.commit={OTHER}")
    assert spec.commit == OTHER and spec.pinned_commit == "3deaec"
    assert "in place of the row's pin 3deaec" in spec.commit_note
    result = Result.for_spec(spec, "failed", error="x")
    assert result.commit == OTHER and result.pinned_commit == "3deaec"


@pytest.mark.parametrize("overrides", [(), (f"impl.commit={PIN}",), ("impl.commit=3deaec5",)])
def test_the_pin_itself_is_no_replacement(compose, tmp_path, overrides):
    spec = _plan(compose, tmp_path, *overrides)
    assert spec.pinned_commit is None and "in place of" not in spec.commit_note


def test_the_table_shows_the_pin_beside_the_commit_that_ran():
    from launcher.gather.render import render
    from launcher.gather.table import runs_frame

    rec = {
        "impl": "matterport",
        "status": "ok",
        "throughput": 0.3,
        "hardware": "local",
        "scale": "smoke",
        "stack": "today",
        "commit": OTHER,
        "pinned_commit": "3deaec",
        "recipe_hash": "ab" * 32,
        "window": [5, 20],
        "window_requested": [5, 20],
        "images_per_iter": 1,
        "run_dir": "/r",
    }
    text = render(runs_frame([rec]), "md")
    assert f"{OTHER[:10]} (pin 3deaec)" in text


def test_prepare_keeps_the_pin_only_when_another_commit_runs(tmp_path):
    """A pin given by another name (a tag for the hash given, as detectron2's v0.1.2) is no replacement: cleared
    once both resolve in the repository; a commit the pin does not name keeps it."""
    from launcher.prepare import prepare
    from tests.test_prepare import make_spec, sh, write

    root = tmp_path / "src"
    root.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=root)
    write(root, {"train.py": "print(1)\n"})
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", "v1", cwd=root)
    sh("git", "tag", "v1", cwd=root)
    v1 = sh("git", "rev-parse", "HEAD", cwd=root)
    write(root, {"train.py": "print(2)\n"})
    sh("git", "commit", "-qam", "v2", cwd=root)
    v2 = sh("git", "rev-parse", "HEAD", cwd=root)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    same = prepare(make_spec(root, v1, pinned_commit="v1"), tmp_path / "c", jobs_dir=jobs)
    assert same.commit_full == v1 and same.pinned_commit is None
    other = prepare(make_spec(root, v2, pinned_commit="v1"), tmp_path / "c", jobs_dir=jobs)
    assert other.commit_full == v2 and other.pinned_commit == "v1"
    missing = prepare(make_spec(root, v2, pinned_commit="3deaec"), tmp_path / "c", jobs_dir=jobs)
    assert missing.pinned_commit == "3deaec"  # the pin is not in this repository at all: it stays
