"""Hydra's basic sweeper without its second composition of every row, for sweeps sent to a scheduler.

Hydra's BasicSweeper composes every row's config once to validate the batch, and the launcher (Hydra's
BasicLauncher) composes each again to run it: on a 200-row sweep that is 200 compositions too many (about half of
the submit host's time per row, measured with bench/vs_plugin.py and cProfile: docs/benchmarks.md). When the rows go
to a scheduler (backend slurm or ray) they are planned one by one and submitted together only after the last one
is planned (launcher/sweep.py), so a row that cannot be composed still stops the sweep before anything is
submitted: the validation adds nothing there, and is skipped. A local sweep runs each row as it is planned, so
there the validation still runs first (a typo in the last row must not surface after the first rows ran).
"""

from __future__ import annotations

from typing import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class ComposeOnceSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        default = getattr(getattr(self.config, "backend", None), "name", None)
        for job in batch:
            named = [o.split("=", 1)[1] for o in job if o.split("=", 1)[0].lstrip("+~") == "backend" and "=" in o]
            if (named[-1] if named else default) in (None, "local"):  # a row that runs as it is planned
                super().validate_batch_is_legal(batch)
                return
