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
