"""The gatherer: any set of run / sweep directories -> the seed's table with our figures beside it.

    runs, problems = gather(["outputs/sweeps/2024-05-01_02-00-00"], db=DEFAULT_DB)
    print(render(runs, "rst"))
    write_tables(runs, out_dir)          # table.rst, table.md, results.csv

`gather` reads every run (collect.py), builds one per-run DataFrame (table.py) and, given `db`,
appends the final results to the history store (history.py). `render` turns the per-run frame into
the table (repeats aggregated, verdicts, see stats.py for every rule). `problems` lists what could
not be read, by path; a caller should say so and exit non-zero.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from .collect import Problem, collect
from .fileset import write_set
from .history import DEFAULT_DB
from .render import FORMATS, render
from .table import runs_frame, summary
from . import history

__all__ = ["gather", "render", "summary", "write_tables", "report", "Problem", "DEFAULT_DB", "FORMATS"]

TABLE_FILES = {"rst": "table.rst", "md": "table.md", "csv": "results.csv"}


def gather(
    paths: Iterable[str | os.PathLike], *, db: str | os.PathLike | None = None, job_state: Callable | bool = True
) -> tuple[pd.DataFrame, list[Problem]]:
    """Every run under `paths` as one row of a DataFrame, and the problems met (corrupt files, by path).

    `db`: append the final results to this history store (idempotent); None leaves history alone.
    `job_state`: True asks `launcher.backends.job_state` for runs without a result (when it exists),
    False uses only the node's markers, a callable is used instead.
    """
    records, problems = collect(paths, job_state=job_state)
    if db is not None:
        try:
            history.append(db, records)
        except history.HistoryError as e:  # the table matters more than the archive: say so, go on
            problems.append(Problem(os.fspath(db), f"history not updated: {e}", fatal=False))
        except Exception as e:
            problems.append(Problem(os.fspath(db), f"history not updated ({type(e).__name__}: {e})", fatal=False))
    return runs_frame(records), problems


def write_tables(runs: pd.DataFrame, out_dir: str | os.PathLike, table: pd.DataFrame | None = None) -> list[Path]:
    """table.rst, table.md and results.csv in `out_dir`, replaced as one set (fileset.py): two gathers
    writing one directory, or one dying midway, never leave files of different gathers side by side.
    `table`: summary(runs), when the caller has it already."""
    table = summary(runs) if table is None else table
    return write_set(out_dir, {name: render(runs, fmt, table=table) for fmt, name in TABLE_FILES.items()})


def report(
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    *,
    fmt: str = "rst",
    db: str | os.PathLike | None = DEFAULT_DB,
) -> tuple[str, list[Problem]]:
    """What the app calls at the end of a run or multirun: gather, record history, write the table
    files next to the sweep, and return the text to print (problems listed below the table)."""
    runs, problems = gather(paths, db=db)
    table = summary(runs)  # once, for the files and the text
    if out_dir is not None:
        try:
            write_tables(runs, out_dir, table)
        except OSError as e:  # a full disk, a read-only sweep dir: the table is still printed, the rows ran as they ran
            problems.append(
                Problem(
                    os.fspath(out_dir),
                    f"table files not written ({e.strerror or e}); the table "
                    "below is complete: python -m launcher.gather SWEEP_DIR --out DIR writes them "
                    "once there is room",
                    fatal=False,
                )
            )
    text = render(runs, fmt, table=table)
    from .scaling import has_curve, plot_scaling, render_scaling, scaling_table

    scaling = scaling_table(runs)
    if has_curve(scaling):  # a sweep over nodes or ranks: its scaling table below the seed's, plot beside
        text += "\nScaling (python -m launcher.gather DIR --view scaling):\n" + render_scaling(scaling, "rst")
        if out_dir is not None:
            try:
                from ..rundir import atomic_write_text

                atomic_write_text(Path(out_dir) / "scaling.csv", render_scaling(scaling, "csv"))
                text += f"scaling plot: {plot_scaling(scaling, Path(out_dir) / 'scaling.png')}\n"
            except OSError as e:
                problems.append(Problem(os.fspath(out_dir), f"scaling table not written: {e}"))
    if problems:
        text += "\nSkipped (not in the table):\n" + "".join(f"  {p}\n" for p in problems)
    return text, problems
