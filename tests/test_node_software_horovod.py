"""The node's software check asks horovod what it was compiled with (issue 19): `horovod_built: "mpi nccl cuda"`
passes only when each `hvd.<x>_built()` is true, so a horovod 0.18.2 built without CUDA or NCCL (which installs,
and whose package metadata says 0.18.2) fails the check before the command instead of at `hvd.init()`.

A CUDA/NCCL horovod cannot exist on this machine, so the horovod modules here are stand-ins (named so): the
probe's own code runs for real against them, in a subprocess, as on a node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.node.software import MARK, PROBE, matches


def standin_horovod(site: Path, **built: object) -> None:
    """A stand-in `horovod.tensorflow` whose <x>_built() return BUILT's values (absent keys: no such function,
    as in horovod 0.18.2, which has nccl_built() and mpi_built() but no cuda_built())."""
    (site / "horovod").mkdir(parents=True)
    (site / "horovod" / "__init__.py").write_text("# stand-in for a compiled horovod (tests only)\n")
    body = "".join(f"def {k}_built():\n    return {v!r}\n" for k, v in built.items())
    (site / "horovod" / "tensorflow.py").write_text(body)


def probe(site: Path, wanted: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(site)}
    p = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(["horovod_built"]), json.dumps({"horovod_built": wanted})],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return json.loads(next(ln for ln in p.stdout.splitlines() if ln.startswith(MARK))[len(MARK) :])["horovod_built"]


@pytest.mark.parametrize(
    "built,found",
    [
        ({"mpi": True, "nccl": 2406, "cuda": True}, "mpi nccl cuda"),  # horovod >= 0.20: NCCL_VERSION_CODE
        ({"mpi": True, "nccl": True}, "mpi nccl cuda"),  # 0.18.2: no cuda_built(); NCCL implies it
        ({"mpi": True, "nccl": False}, "not built: nccl cuda"),  # built without HOROVOD_NCCL_HOME
        ({"mpi": True, "nccl": 0, "cuda": False}, "not built: nccl cuda"),
        ({"gloo": True, "nccl": True, "cuda": True}, "not built: mpi"),  # no mpi_built(): not built
    ],
)
def test_the_probe_reports_what_horovod_was_built_with(tmp_path, built, found):
    standin_horovod(tmp_path / "site", **built)
    got = probe(tmp_path / "site", "mpi nccl cuda")
    assert got["found"] == found and got["problem"] is None
    assert matches("horovod_built", "mpi nccl cuda", got["found"])[0] is (found == "mpi nccl cuda")


def test_no_horovod_is_a_problem_not_a_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    got = probe(tmp_path / "empty", "nccl")
    assert got["found"] is None and "import horovod.tensorflow failed" in got["problem"]
