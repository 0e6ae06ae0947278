"""The backend template: a new backend is one module, one config dataclass and one yaml.

`echo` below is such a backend, written into a temporary directory that is put on the
`launcher.backends` package path: it is found, its yaml composes onto its dataclass (and rejects a
misspelt key), and the base class does the rest: spec check, manifest lines, state from the run dir
before the scheduler.
"""

from __future__ import annotations

import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import launcher.backends as backends
from launcher import CONF_DIR
from launcher.backends import available, get_backend, job_state
from launcher.config import register
from launcher.plan import plan
from launcher.rundir import Result, read_manifest, write_result

ECHO = '''
from dataclasses import dataclass
from launcher.backends.base import Backend, BackendConfig, JobState

@dataclass
class EchoConfig(BackendConfig):
    name: str = "echo"
    greeting: str = "hi"

class EchoBackend(Backend):
    """Queues nothing: each row gets a job id at once and stays pending as far as its scheduler knows."""
    name = "echo"
    Config = EchoConfig

    def _submit(self, specs):
        for i, spec in enumerate(specs):
            yield spec, f"{self.config.greeting}-{i}"

    def _scheduler_state(self, job_id, run_dir):
        return JobState("pending", f"{job_id} waits")

    def cancel(self, job_id):
        pass

BACKEND = EchoBackend
'''

ECHO_YAML = """\
defaults:
  - /backend_echo@_here_
  - _self_
name: echo
greeting: hello
"""


@pytest.fixture
def echo(tmp_path, monkeypatch):
    """The `echo` backend on the package path, its yaml on Hydra's search path; gone afterwards."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "echo.py").write_text(ECHO)
    conf = tmp_path / "conf" / "backend"
    conf.mkdir(parents=True)
    (conf / "echo.yaml").write_text(ECHO_YAML)
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(code)])
    monkeypatch.delitem(sys.modules, "launcher.backends.echo", raising=False)
    register()  # as importing launcher.config does, now that echo is there
    yield tmp_path / "conf"
    sys.modules.pop("launcher.backends.echo", None)


def compose_with(searchpath, *overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=[f"hydra.searchpath=[file://{searchpath}]", *overrides])


def test_a_backend_is_one_module_one_dataclass_one_yaml(echo, tmp_path):
    assert available() == ["echo", "local", "ray", "slurm"]
    cfg = compose_with(echo, "backend=echo", "hardware=local", "hardware.gpus=1")
    assert cfg.backend.greeting == "hello" and cfg.backend.poll_s == 2.0  # the yaml over its dataclass
    with pytest.raises(ConfigCompositionException, match="greting"):
        compose_with(echo, "backend=echo", "backend.greting=hey")

    spec = plan(cfg, tmp_path / "run")
    (tmp_path / "run").mkdir()
    b = get_backend("echo", spec.backend_config)
    with pytest.raises(FileNotFoundError, match="spec.json"):
        b.submit([spec])  # the base class checks the spec is saved
    spec.save()
    assert b.submit([spec]) == ["hello-0"]
    (line,) = read_manifest(spec.run_dir)  # the base class records it
    assert line["backend"] == "echo" and line["job_id"] == "hello-0"
    assert job_state(line).reason == "hello-0 waits"  # no result: the scheduler is asked
    write_result(spec.run_dir, Result.for_spec(spec, "failed", error="the node's own words"))
    assert job_state(line) == backends.JobState("failed", "the node's own words")  # the run dir first


def test_a_key_of_another_backend_is_refused(compose):
    with pytest.raises(ConfigCompositionException, match="partition"):
        compose("backend=ray", "backend.partition=gpu")
    assert compose("backend=slurm", "backend.partition=gpu").backend.partition == "gpu"


def test_wait_false_is_an_argument_not_a_config_key():
    from launcher.backends.ray import RayBackendError

    assert get_backend("ray", {"address": None, "wait": False}).wait  # a stray key is not read as `wait`
    with pytest.raises(RayBackendError, match="backend.address"):
        get_backend("ray", {"address": None}, wait=False)


def test_result_for_spec_names_the_row_the_same_way_everywhere(tmp_path, compose):
    spec = plan(compose("hardware=local", "hardware.gpus=2"), tmp_path / "run")
    r = Result.for_spec(spec, "failed", error="boom")
    assert (r.impl, r.hardware, r.backend, r.gpus, r.run_dir) == (spec.impl, "local", "local", 2, spec.run_dir)
    assert r.host and r.finished_at and r.window_requested == spec.window and r.error == "boom"
