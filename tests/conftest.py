import os
import subprocess
import sys
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
    return subprocess.run([sys.executable, "-m", "launcher", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=timeout)
