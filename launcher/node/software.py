"""The software a row's environment really has, against the stack its figure was published with.

On the node, before the command, `check(spec)` runs one small probe *inside the row's environment* (the
same wrapper and process environment as the command: conda run, apptainer exec, a venv's activate) and
compares what it finds with `impl.environment.software`. A mismatch fails the row at once with a table of
wanted vs found, instead of a traceback deep in a 2020 framework (or, worse, a figure from other
software); what was found goes into provenance either way.

Keys the probe knows (anything else is looked up as an importable module or installed distribution):
`python`; `pytorch`/`torch`, `torchvision`, `tensorflow`, `keras`, `mxnet`, `mmcv`, `horovod` (the
module's version: from the metadata of the installed distribution that owns the file Python would import,
without importing it, since this runs in series before the command and torch alone takes seconds to
import; imported when no distribution owns it, a conda package without a RECORD say); `apex` (its
version, and `apex.amp` must import); `caffe2` (the PyTorch build that carries it, with GPU support and Detectron's ops library); `mxnet_ops` (operator names that must exist in
the MXNet build: SimpleDet's); `horovod_built` (what horovod was compiled with, e.g. "mpi nccl cuda": each
`hvd.<x>_built()` must be true, not just the package installed); `openmpi` (`mpirun --version`); `cuda`, `cudnn` (what the framework was
built with, else the libraries that load).

Matching: a plain version matches by its leading components (`3.7` matches 3.7.12, `1.15.0` does not match
1.15.5); a specifier (`>=2.1`, `>=1.4,<2`) is evaluated; `cuda` and `cudnn` match on major.minor and a
patch difference is noted, not failed (the conda PyTorch 1.5 build reports cuDNN 7.6.3, say); a value
known to fewer components (TensorFlow 1.15 reports cuDNN "7") matches on those it has, and says so.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import software_probe
from .environment import command_environ, environment_for, wrap_command
from .software_probe import MARK

TIMEOUT_S = 180.0

# launcher/node/software_probe.py, run with the row's own Python (3.6+) as `python -c SOURCE KEYS WANTED`:
# its text travels on the command line, so the row's environment (a conda env, a container) needs no launcher.
PROBE = Path(software_probe.__file__).read_text(encoding="utf-8")


@dataclass
class Item:
    key: str
    wanted: str
    found: str | None
    ok: bool
    note: str = ""


@dataclass
class Check:
    items: list[Item] = field(default_factory=list)
    error: str | None = None  # the probe itself could not run
    where: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and all(i.ok for i in self.items)

    def table(self) -> str:
        rows = [("item", "wanted", "found", "")] + [
            (i.key, i.wanted, i.found or "-", ("ok" if i.ok else "MISMATCH") + (f" ({i.note})" if i.note else ""))
            for i in self.items
        ]
        w = [max(len(r[c]) for r in rows) for c in range(3)]
        return "\n".join(f"  {a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}".rstrip() for a, b, c, d in rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "where": self.where,
            "error": self.error,
            "wanted": {i.key: i.wanted for i in self.items},
            "found": {i.key: i.found for i in self.items},
            "notes": {i.key: i.note for i in self.items if i.note},
        }


_OPS = re.compile(r"^\s*(==|!=|>=|<=|~=|>|<)\s*(\S+)\s*$")


def _num(v: str) -> tuple:
    """Leading numeric components: '1.15.0rc2' -> (1, 15, 0), '2.14.1+cpu' -> (2, 14, 1)."""
    out = []
    for part in v.split("+")[0].split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
        if m.group() != part:
            break
    return tuple(out)


def _spec_ok(wanted: str, found: str) -> bool:
    f = _num(found)
    for clause in wanted.split(","):
        m = _OPS.match(clause)
        if not m:
            return False
        op, v = m.group(1), _num(m.group(2))
        n = max(len(f), len(v))
        a, b = f + (0,) * (n - len(f)), v + (0,) * (n - len(v))
        ok = {
            "==": a == b,
            "!=": a != b,
            ">=": a >= b,
            "<=": a <= b,
            ">": a > b,
            "<": a < b,
            "~=": a >= b and a[: len(v) - 1] == b[: len(v) - 1],
        }[op]
        if not ok:
            return False
    return True


def matches(key: str, wanted: str, found: str | None) -> tuple[bool, str]:
    """(match, note) for one item; see the module docstring for the rules."""
    wanted = str(wanted).strip()
    if found is None:
        return False, ""
    if key in ("mxnet_ops", "horovod_built"):
        return found == wanted, ""
    if _OPS.match(wanted.split(",")[0]):
        return _spec_ok(wanted, found), ""
    w = [p for p in wanted.split("+")[0].split(".")]
    f = [p for p in str(found).split("+")[0].split(".")]
    if key in ("cuda", "cudnn"):
        common = min(len(w), len(f), 2)
        ok = w[:common] == f[:common]
        if ok and len(f) < min(len(w), 2):
            return True, f"only {'.'.join(f)} is known"
        if ok and w[:3] != f[:3] and len(f) >= 3 and len(w) >= 3:
            return True, "patch level differs"
        return ok, ""
    return f[: len(w)] == w, ""


def check(spec, timeout_s: float = TIMEOUT_S) -> Check | None:
    """Probe SPEC's environment for its `software`; None when the row declares none or opts out."""
    env_cfg = spec.environment or {}
    wanted = {str(k): str(v) for k, v in (env_cfg.get("software") or {}).items()}
    if not wanted or env_cfg.get("check") is False:
        return None
    env = environment_for(spec)
    result = Check(where=env.describe())
    found = software_probe.probe_metadata_only(list(wanted)) if same_interpreter(spec, env.kind) else None
    if found is not None:  # the row runs this very interpreter: no subprocess (it would start a Python to say the same)
        return _compare(result, wanted, found)
    cmd = f"python -c {shlex.quote(PROBE)} {shlex.quote(json.dumps(list(wanted)))} {shlex.quote(json.dumps(wanted))}"
    try:
        p = subprocess.run(
            ["bash", "-c", wrap_command(spec, cmd)],
            cwd=spec.exec_dir if spec.exec_dir.is_dir() else None,
            env=command_environ(spec),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        result.error = f"the software probe did not finish within {timeout_s:.0f} s in {result.where}"
        return result
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith(MARK)), None)
    if line is None:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-8:])
        result.error = f"the software probe could not run in {result.where} (exit {p.returncode}):\n{tail}"
        return result
    return _compare(result, wanted, json.loads(line[len(MARK) :]))


def same_interpreter(spec, kind: str) -> bool:
    """Whether the row's `python` is this process's interpreter with this process's import path: a launcher row
    whose env vars leave Python's search path alone (command_environ puts this interpreter first on PATH)."""
    return kind == "launcher" and not any(k.startswith("PYTHON") and k != "PYTHONUNBUFFERED" for k in spec.env or {})


def _compare(result: Check, wanted: dict[str, str], found: dict[str, Any]) -> Check:
    for key, want in wanted.items():
        got = found.get(key, {})
        ok, note = matches(key, want, got.get("found"))
        if got.get("problem"):
            ok, note = False, got["problem"]
        result.items.append(Item(key, want, got.get("found"), ok, note))
    return result


def failure_message(spec, result: Check) -> str:
    """The row's error when its environment does not have its software: what, where, and the way out."""
    recipe = (spec.environment or {}).get("recipe") or "environment.yml"
    head = f"the environment does not have the software {spec.impl} was measured with ({result.where}):"
    body = result.error if result.error else result.table()
    return (
        f"{head}\n{body}\nBuild the row's environment (python -m launcher.env create impl={spec.impl}; recipe "
        f"jobs/{spec.impl}/{recipe}; docs/cluster.md, 'Environments'), point impl.environment at it, or run "
        f"anyway with impl.environment.check=false (the figure is then not the published stack's)"
    )
