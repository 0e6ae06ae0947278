"""A repository URL with credentials in it is refused before anything is written (issue 13.8).

The launcher would print the URL and write it into spec.json and result.json, and Hydra writes the
command line into .hydra/overrides.yaml, hydra.yaml and config.yaml before any task code runs, so the
only safe answer is to refuse such a URL (the message masks it and points at git's credential
helpers) before Hydra starts, and for one that comes out of a config file or an environment variable,
to refuse at plan time and take back what Hydra wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.credentials import credential_problems, mask
from tests.conftest import ROOT

TOKEN = "s3cr3tT0kenValue9f8e7d"
GH_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def launch(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "launcher", *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=300
    )


def assert_nowhere(secret: str, p: subprocess.CompletedProcess, cwd: Path) -> None:
    assert secret not in p.stdout and secret not in p.stderr, p.stdout + p.stderr
    for f in cwd.rglob("*"):
        if f.is_file() and not f.is_relative_to(cwd / "userconf"):
            assert secret.encode() not in f.read_bytes(), f"{f} holds the secret"


@pytest.mark.parametrize(
    "url, secret",
    [
        (f"https://alice:{TOKEN}@git.example.invalid/org/repo.git", TOKEN),
        (f"https://oauth2:{TOKEN}@gitlab.example.invalid/org/repo.git", TOKEN),
        (f"https://{GH_TOKEN}@github.com/org/repo.git", GH_TOKEN),
        (f"ssh://git:{TOKEN}@git.example.invalid/org/repo.git", TOKEN),
    ],
)
@pytest.mark.parametrize("mode", [[], ["-m"], ["dry_run=true"]])
def test_a_url_with_credentials_on_the_command_line_is_refused_and_never_written(tmp_path, url, secret, mode):
    p = launch(
        *mode,
        "impl=maskrcnn_benchmark",
        "hardware=v100x8",
        f"impl.repo={url}",
        f"cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert "credential" in p.stderr and "credential.helper" in p.stderr and "***" in p.stderr
    assert_nowhere(secret, p, tmp_path)
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a directory


def test_a_url_with_credentials_from_the_environment_is_refused_at_plan_time(tmp_path):
    url = f"https://alice:{TOKEN}@git.example.invalid/org/repo.git"
    p = launch(
        "impl=maskrcnn_benchmark",
        "hardware=v100x8",
        "impl.repo=${oc.env:LX_TEST_REPO}",
        f"cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
        env={"LX_TEST_REPO": url},
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert "impl.repo" in p.stderr and "credential.helper" in p.stderr
    assert_nowhere(TOKEN, p, tmp_path)
    assert not (tmp_path / "outputs").exists()  # what Hydra made for the row is taken back


@pytest.mark.parametrize("mode", [[], ["-m"]])
def test_a_url_with_credentials_from_a_config_file_leaves_no_copy(tmp_path, mode):
    """A row file of the user's own (--config-dir) with a token in its repo: Hydra copies the config
    into .hydra/ before the task runs; the refusal takes those copies back."""
    conf = tmp_path / "userconf" / "impl"
    conf.mkdir(parents=True)
    row = (ROOT / "conf" / "impl" / "maskrcnn_benchmark.yaml").read_text()
    row = row.replace("repo: https://github.com/", f"repo: https://alice:{TOKEN}@github.com/")
    row = row.replace("name: maskrcnn_benchmark", "name: private_row")
    (conf / "private_row.yaml").write_text(row)
    p = launch(
        *mode,
        "--config-dir",
        str(tmp_path / "userconf"),
        "impl=private_row",
        "hardware=v100x8",
        f"cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert "impl.repo" in p.stderr and "credential.helper" in p.stderr
    assert_nowhere(TOKEN, p, tmp_path)


def test_plain_urls_and_user_names_pass():
    for url in [
        "https://github.com/facebookresearch/detectron2.git",
        "git@github.com:org/repo.git",
        "ssh://git@github.com/org/repo.git",
        "https://myorg@dev.azure.com/myorg/proj/_git/repo",
        "/shared/mirrors/detectron2.git",
        "file:///shared/mirrors/x.git",
    ]:
        assert credential_problems({"impl": {"repo": url}}) == [], url
    problems = credential_problems({"impl": {"repo": f"https://bob:{TOKEN}@host/x.git", "options": {"w": "a"}}})
    assert len(problems) == 1 and "impl.repo" in problems[0] and TOKEN not in problems[0]
    assert mask(f"clone https://bob:{TOKEN}@host/x.git failed") == "clone https://***@host/x.git failed"
