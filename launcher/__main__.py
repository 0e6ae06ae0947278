"""`python -m launcher`: the Hydra entry point (thin: all the work is in launcher.app)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from . import CONF_DIR
from . import config as _config  # noqa: F401  (registers the schema and the ${lx.*} resolvers)
from . import app


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    code = app.task(cfg)
    app.EXIT["code"] = max(app.EXIT["code"], code)


def main() -> None:
    _hydra_main()
    sys.exit(app.EXIT["code"])


if __name__ == "__main__":
    main()
