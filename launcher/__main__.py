"""`python -m launcher`: the Hydra entry point (thin: the task is launcher.app, the rows' fate launcher.sweep).

The entry point owns the `Sweep`: Hydra calls the task once per row, and when Hydra returns (after
the last row of a multirun) the sweep submits what the multirun planned, follows it and reports.
"""

from __future__ import annotations

import gc
import signal
import sys

import hydra
from omegaconf import DictConfig

from . import CONF_DIR
from . import config as _config  # noqa: F401  (registers the schema and the ${lx.*} resolvers)
from . import app
from .credentials import check_argv
from .sweep import Sweep


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    refusal = check_argv(sys.argv[1:])  # before Hydra writes the command line into .hydra/
    if refusal:
        print(f"launcher: error: {refusal}", file=sys.stderr)
        sys.exit(2)
    sweep = Sweep()
    # SIGHUP (a closed terminal, a dropped SSH session) and SIGTERM end the launcher as Ctrl-C does: while a
    # local row runs, the node's own handlers stop it (result.json says cancelled); while it follows rows queued
    # elsewhere, KeyboardInterrupt lets it say so and stop its embedded Ray head's jobs cleanly (issue 21)
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _interrupt)

    @hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
    def _hydra_main(cfg: DictConfig) -> None:
        sweep.note(app.task(cfg, sweep))

    try:
        _hydra_main()
        sweep.finish()
    except KeyboardInterrupt as e:  # a signal outside a row (planning, following, the table): no traceback
        name = str(e.args[0]) if e.args and str(e.args[0]).startswith("SIG") else "SIGINT"
        print(
            f"\nlauncher: interrupted ({name}); rows already written keep their results "
            "(python -m launcher.gather shows them)",
            file=sys.stderr,
        )
        sys.exit(128 + signal.Signals[name].value)
    # The work is done and written (atomically, files closed): spare the interpreter's last garbage collection
    # over every object pandas and Hydra made (0.1 s of a blocking launch's tail, bench/vs_plugin.py). Objects
    # are still freed by reference count, and atexit handlers (leases, a session's Ray head) still run.
    gc.freeze()
    sys.exit(sweep.exit_code)


if __name__ == "__main__":
    main()
