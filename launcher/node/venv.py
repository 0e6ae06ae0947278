"""Launcher-managed virtual environments (`environment: {kind: venv, managed: true}`).

A row on `stack=today` needs packages the launcher's own interpreter must not get (detectron2 v0.1.2
needs `pillow<10`; its build installs itself and a dozen packages), and must still use the torch
already installed (a multi-GB download otherwise).  So the launcher makes one venv per recipe:

    <cache_dir>/envs/<row>-<16 hex of recipe>     beside <cache_dir>/trees/<the same name>

made on the node by `build_once` (under the build's lock) from the launcher's Python:

- `python -m venv --without-pip`, then a `.pth` file naming the launcher's site-packages *after* the
  venv's own (`host_packages: true`): torch and numpy come from the host, and whatever the venv installs
  shadows the host's copy.  `python -m pip` then runs the host's pip, which installs into the venv and
  refuses to uninstall anything outside it ("Not uninstalling ... outside environment"): the launcher's
  environment is never changed.  (A venv made *with* pip gets ensurepip's old setuptools, which cannot
  build a wheel: `error: invalid command 'bdist_wheel'`.)
- `host_packages: false`: an ordinary isolated venv with its own pip.
- then `pip install <requirements>`, and a marker (`launcher-venv.json`) written last: a venv without
  it is an interrupted one and is made again, and the recipe's build with it.

The next run of the same recipe finds the marker (and the build's) and reuses both.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import site
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Callable

from .. import JOBS_DIR
from ..rundir import atomic_write_json, now_iso
from ..spec import JobSpec


class BuildError(RuntimeError):
    """A build step or the managed venv failed (names the step, its exit status and the tail of its output)."""


MARKER = "launcher-venv.json"
HOST_PTH = "_launcher_host_packages.pth"


def is_managed(spec: JobSpec) -> bool:
    env = spec.environment or {}
    return env.get("kind") == "venv" and bool(env.get("managed"))


def managed_venv_path(spec: JobSpec) -> Path | None:
    """Where SPEC's managed venv lives: next to its prepared tree (None before prepare)."""
    if not spec.checkout_dir:
        return None
    tree = Path(spec.checkout_dir)
    return tree.parent.parent / "envs" / tree.name


def host_site_dirs() -> list[str]:
    """The launcher's own site-packages directories (those of the Python running this code)."""
    dirs = list(site.getsitepackages()) + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    out: list[str] = []
    for d in dirs:
        if d not in out and Path(d).is_dir():
            out.append(d)
    return out


def constraints_file(spec: JobSpec) -> Path | None:
    """The row's pip constraints file (impl.environment.constraints, under jobs/<row>/), or None."""
    name = (spec.environment or {}).get("constraints")
    if not name:
        return None
    path = Path(name) if Path(name).is_absolute() else Path(JOBS_DIR) / spec.impl / name  # jobs/<row>/
    if not path.is_file():
        raise BuildError(f"impl.environment.constraints of {spec.impl} names {path}, which does not exist")
    return path


def _wanted(spec: JobSpec) -> dict:
    env = spec.environment or {}
    out = {
        "requirements": list(env.get("requirements") or []),
        "host_packages": bool(env.get("host_packages", True)),
        "base_python": sys.executable,
        "host_site": host_site_dirs() if env.get("host_packages", True) else [],
    }
    cons = constraints_file(spec)
    if cons is not None:  # only when used: venvs made before constraints existed stay valid
        out["constraints_sha256"] = hashlib.sha256(cons.read_bytes()).hexdigest()
    return out


def venv_state(spec: JobSpec) -> str:
    """'ok', 'missing', or why the venv must be made again."""
    path = managed_venv_path(spec)
    if path is None or not path.exists():
        return "missing"
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "incomplete (no marker: an interrupted creation)"
    if not (path / "bin" / "python").exists():
        return "broken (no bin/python)"
    wanted = _wanted(spec)
    for key in ("requirements", "host_packages", "base_python", "constraints_sha256"):
        if marker.get(key) != wanted.get(key):
            return f"stale ({key} was {marker.get(key)!r}, now {wanted[key]!r})"
    return "ok"


def _run(cmd: list[str], write: Callable[[str], None], what: str) -> None:
    write(f"[launcher] venv: {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail = (tail + [line])[-30:]
        write(line)
    if proc.wait() != 0:
        raise BuildError(
            f"making the managed venv failed at {what} (exit {proc.returncode}): `{' '.join(cmd)}`; "
            "last lines:\n" + "\n".join(tail)
        )


def ensure_venv(spec: JobSpec, write: Callable[[str], None]) -> bool:
    """Make SPEC's managed venv unless it is already complete; True when it was (re)made.
    Call under the build lock (build_once holds it)."""
    path = managed_venv_path(spec)
    if path is None:
        raise BuildError(f"{spec.impl}: a managed venv belongs to a prepared work tree, and this spec has none")
    state = venv_state(spec)
    if state == "ok":
        write(f"[launcher] venv: reusing {path}")
        return False
    if path.exists():
        write(f"[launcher] venv: {path} is {state}; making it again")
        shutil.rmtree(path)
    t0 = time.time()
    wanted = _wanted(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    py = str(path / "bin" / "python")
    if wanted["host_packages"]:
        _run([sys.executable, "-m", "venv", "--without-pip", str(path)], write, "venv creation")
        purelib = subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        (Path(purelib) / HOST_PTH).write_text("".join(d + "\n" for d in wanted["host_site"]), encoding="utf-8")
        check = subprocess.run([py, "-m", "pip", "--version"], capture_output=True, text=True)
        if check.returncode != 0:
            raise BuildError(
                f"the launcher's Python ({sys.executable}) has no pip, which the managed venv {path} "
                "uses to install into itself: `python -m ensurepip` there, or set "
                "impl.environment.host_packages=false"
            )
    else:
        _run([sys.executable, "-m", "venv", str(path)], write, "venv creation")
    if wanted["requirements"]:
        cons = constraints_file(spec)
        _run(
            [py, "-m", "pip", "install", *(["-c", str(cons)] if cons else []), *wanted["requirements"]],
            write,
            "pip install of impl.environment.requirements",
        )
    atomic_write_json(
        path / MARKER, {**wanted, "python": py, "created_at": now_iso(), "seconds": round(time.time() - t0, 1)}
    )
    write(f"[launcher] venv: made {path} in {time.time() - t0:.1f} s")
    return True
