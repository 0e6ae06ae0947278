"""Every seed row's pip pins exist on the package index for the row's Python (3.7) and platform, without
installing anything: a pin that cannot install (tensorflow-gpu==1.15.0rc2, mxnet-cu101==1.6.0b20190820)
fails here rather than on a login node a week later.

Pins come from each row's jobs/<row>/environment.yml `pip:` section and the `pip install` lines of its
`impl.environment.create`. One pip call per row answers for every wheel pin (`pip install --dry-run --no-deps
--python-version 3.7 --platform manylinux2014_x86_64 --only-binary=:all:`: it reads the wheels' metadata,
downloads nothing large); pins that exist only as source distributions (`SDIST_ONLY`, which `--platform`
cannot see) are matched against `pip index versions`. Rows run in parallel. Skipped, saying so, when the
package index cannot be reached. Conda packages (python, pytorch, cudatoolkit, cudnn, openmpi) are not
checked here (no conda on this machine); docs/cluster.md says which channels they come from.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import pytest
import yaml
from omegaconf import OmegaConf

from launcher import CONF_DIR, JOBS_DIR

PY, PLATFORM = "3.7", "manylinux2014_x86_64"
#: on the index only as source distributions for Python 3.7 (checked: no cp37 wheel)
SDIST_ONLY = {"fvcore", "mmcv", "horovod"}
SEED_ROWS = ["detectron2", "mmdetection", "maskrcnn_benchmark", "tensorpack", "simpledet", "detectron", "matterport"]
_SPEC = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*((?:==|!=|<=|>=|~=|<|>)\s*[^,;\s]+"
    r"(?:\s*,\s*(?:==|!=|<=|>=|~=|<|>)\s*[^,;\s]+)*)?$"
)


def pip(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@lru_cache(maxsize=1)
def index_unreachable() -> str | None:
    try:
        p = pip("index", "versions", "six", "--python-version", PY, timeout=90)
    except subprocess.TimeoutExpired:
        return "pip index versions six timed out after 90 s"
    return None if p.returncode == 0 and "Available versions" in p.stdout else (p.stderr or p.stdout).strip()[-300:]


def _pins_of_create(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        words = shlex.split(line)
        if "install" not in words or not any(w == "pip" or w.endswith("/pip") for w in words):
            continue
        for w in words[words.index("install") + 1 :]:
            if not w.startswith("-") and "://" not in w and "/" not in w and _SPEC.match(w):
                out.append(w)
    return out


def row_pins(row: str) -> list[str]:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "impl" / f"{row}.yaml"), resolve=False)
    env = cfg.get("environment") or {}
    pins = []
    recipe = JOBS_DIR / row / (env.get("recipe") or "environment.yml")
    if recipe.suffix in (".yml", ".yaml") and recipe.is_file():
        for dep in yaml.safe_load(recipe.read_text()).get("dependencies") or []:
            if isinstance(dep, dict):
                pins += [str(p) for p in dep.get("pip") or []]
    return pins + _pins_of_create(env.get("create") or [])


def _name(pin: str) -> str:
    return re.split(r"[\[<>=!~;\s]", pin, maxsplit=1)[0].lower().replace("_", "-")


def unresolved(pins: list[str]) -> list[str]:
    """The pins that do not resolve for Python 3.7 on manylinux2014_x86_64, each with pip's reason."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    wheels = [p for p in pins if _name(p) not in SDIST_ONLY]
    sdists = [p for p in pins if _name(p) in SDIST_ONLY]
    bad = []
    if wheels:
        p = pip(
            "install",
            "--dry-run",
            "--no-deps",
            "--ignore-installed",
            "--python-version",
            PY,
            "--platform",
            PLATFORM,
            "--only-binary=:all:",
            "--target",
            "/nonexistent-launcher-pin-check",
            *wheels,
        )
        if p.returncode != 0:
            why = [ln for ln in p.stderr.splitlines() if "ERROR" in ln] or p.stderr.strip().splitlines()[-2:]
            bad.append(f"{' '.join(wheels)}: {' '.join(why)[:500]}")

    def versions(pin: str) -> str | None:
        out = pip("index", "versions", _name(pin), "--python-version", PY).stdout
        m = re.search(r"Available versions: (.*)", out)
        listed = []
        for v in m.group(1).split(", ") if m else []:
            try:
                listed.append(Version(v.strip()))
            except InvalidVersion:
                pass
        spec = SpecifierSet(_SPEC.match(pin).group(3) or "")
        return (
            None
            if any(v in spec for v in listed)
            else f"{pin}: no release on the index matches (has: {m.group(1)[:200] if m else 'none'})"
        )

    with ThreadPoolExecutor(8) as pool:
        bad += [r for r in pool.map(versions, sdists) if r]
    return bad


@pytest.fixture(scope="module")
def index():
    why = index_unreachable()
    if why:
        pytest.skip(f"the package index cannot be reached from here, so pins cannot be checked: {why}")


def test_every_seed_row_declares_its_pins():
    for row in SEED_ROWS:
        pins = row_pins(row)
        assert pins, row
        assert all(_SPEC.match(p) for p in pins), [p for p in pins if not _SPEC.match(p)]
    assert "mmcv==0.5.1" in row_pins("mmdetection") and "horovod==0.18.2" in row_pins("tensorpack")
    assert "tensorflow-gpu==1.15.0" in row_pins("tensorpack") and "tensorflow-gpu==1.15.0" in row_pins("matterport")
    assert "pyyaml>=5.1,<6" in yaml.safe_load((JOBS_DIR / "detectron" / "environment.yml").read_text())["dependencies"]


def test_every_seed_rows_pip_pins_resolve_on_the_index(index):
    with ThreadPoolExecutor(len(SEED_ROWS)) as pool:
        results = dict(zip(SEED_ROWS, pool.map(lambda r: unresolved(row_pins(r)), SEED_ROWS)))
    assert {r: b for r, b in results.items() if b} == {}


def test_the_check_catches_pins_that_do_not_exist(index):
    """The 2020 pins the seed page's stack named, which the index no longer (or never) had for 3.7."""
    bad = unresolved(["tensorflow-gpu==1.15.0rc2", "six", "mmcv==0.5.2"])
    assert len(bad) == 2, bad
    assert any("satisfies the requirement tensorflow-gpu==1.15.0rc2" in b for b in bad), bad
    assert any(b.startswith("mmcv==0.5.2: no release") for b in bad), bad
