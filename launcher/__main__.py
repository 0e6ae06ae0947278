"""`python -m launcher`: the Hydra entry point (thin: the task is launcher.app, the rows' fate launcher.sweep).

The entry point owns the `Sweep`: Hydra calls the task once per row, and when Hydra returns (after
the last row of a multirun) the sweep submits what the multirun planned, follows it and reports.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from . import CONF_DIR
from . import config as _config  # noqa: F401  (registers the schema and the ${lx.*} resolvers)
from . import app
from .credentials import check_argv
from .sweep import Sweep


def main() -> None:
    refusal = check_argv(sys.argv[1:])  # before Hydra writes the command line into .hydra/
    if refusal:
        print(f"launcher: error: {refusal}", file=sys.stderr)
        sys.exit(2)
    sweep = Sweep()

    @hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
    def _hydra_main(cfg: DictConfig) -> None:
        sweep.note(app.task(cfg, sweep))

    _hydra_main()
    sweep.finish()
    sys.exit(sweep.exit_code)


if __name__ == "__main__":
    main()
