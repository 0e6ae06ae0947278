import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

import launcher.config  # noqa: E402,F401  (schema + resolvers)


@pytest.fixture
def compose():
    """Compose the launcher's config as `python -m launcher` would, with overrides."""
    from hydra import compose as hcompose, initialize_config_dir
    from launcher import CONF_DIR

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return hcompose("config", overrides=list(overrides))

    return _compose


def run_launcher(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m launcher ARGS` in `cwd` the way a user does (the package from this checkout)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "launcher", *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout
    )


def mirrors_dir() -> Path | None:
    """The seed repositories' git bundles: $LAUNCHER_MIRRORS, else ../shared/mirrors beside the checkout (or
    beside the main checkout when this is a git worktree); None when none is here."""
    cands = [os.environ.get("LAUNCHER_MIRRORS"), ROOT.parent / "shared" / "mirrors"]
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=ROOT, capture_output=True, text=True
    )
    if common.returncode == 0 and common.stdout.strip():
        cands.append(Path(common.stdout.strip()).parent.parent / "shared" / "mirrors")
    for c in cands:
        if c and Path(c).is_dir() and any(Path(c).glob("*.bundle")):
            return Path(c)
    return None


def mirror(name: str) -> Path | None:
    """One bundle (e.g. `detectron2.bundle`) from mirrors_dir(), or None."""
    d = mirrors_dir()
    return d / name if d is not None and (d / name).is_file() else None


@pytest.fixture(scope="session")
def coco_venv(tmp_path_factory) -> Path:
    """A venv with pycocotools and numpy from the package index, as a SimpleDet environment would have them
    for its roidb script (made once a session; skipped with the reason when the index is unreachable)."""
    venv = tmp_path_factory.mktemp("coco-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "pycocotools", "numpy"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if pip.returncode != 0:
        pytest.skip(f"cannot install pycocotools into a venv (package index unreachable?): {pip.stderr[-500:]}")
    return venv


@contextmanager
def tmpfs(where: Path, why: str, *, read_only_after=None):
    """Mount a 1 MiB tmpfs on `where` for the block (needs the right to mount: root in CI), or skip the test
    saying `why` it matters. `read_only_after(where)` runs before the tmpfs is remounted read-only."""
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip()}){why}")
    try:
        if read_only_after is not None:
            read_only_after(where)
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
