"""History: every gathered final result, kept in an embedded SQLite store so scheduled runs accumulate.

Appending is idempotent: a run's key is ``run_dir | started_at | finished_at | job_id`` as the result
itself records them (so a moved sweep dir is still the same run), and rows go in with
``INSERT OR IGNORE``, one transaction per gather. Pending and running states are not stored (they
change); the result's full JSON is kept beside the indexed columns.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..rundir import FINAL_STATES
from . import stats
from ..catalog import order_of

DEFAULT_DB = os.path.join("outputs", "history.sqlite")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    impl TEXT, label TEXT, hardware TEXT, recipe_hash TEXT, scale TEXT, status TEXT,
    throughput REAL, error_bound REAL, reference REAL, reference_hardware TEXT, tolerance REAL,
    gpus INTEGER, gpu_model TEXT, driver TEXT, commit_hash TEXT,
    started_at TEXT, finished_at TEXT, run_dir TEXT, job_id TEXT,
    recorded_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    result TEXT
);
CREATE INDEX IF NOT EXISTS results_row ON results (impl, hardware, finished_at);
"""

_COLS = (
    "impl",
    "label",
    "hardware",
    "recipe_hash",
    "scale",
    "status",
    "throughput",
    "error_bound",
    "reference",
    "reference_hardware",
    "tolerance",
    "gpus",
    "gpu_model",
    "driver",
    "commit",
    "started_at",
    "finished_at",
    "run_dir",
    "job_id",
)


class HistoryError(RuntimeError):
    """The history store cannot be opened or read; the message names it and the way out."""


class HistoryBusy(HistoryError):
    """Another writer holds the store longer than `BUSY_WAIT_S`: nothing is wrong with it."""


class HistoryFull(HistoryError):
    """The file system holding the store has no room: nothing is wrong with the store."""


#: how long a writer waits for another one (a gather, a launcher recording its table) before saying busy
#: (LAUNCHER_HISTORY_WAIT_S overrides it: a store on a slow shared file system may want longer)
BUSY_WAIT_S = float(os.environ.get("LAUNCHER_HISTORY_WAIT_S") or 10.0)


def connect(db: str | os.PathLike) -> sqlite3.Connection:
    try:
        Path(db).parent.mkdir(parents=True, exist_ok=True)
        if Path(db).is_symlink():  # the store is written: never through a link planted in outputs/
            raise HistoryError(
                f"{db} is a symbolic link to {os.readlink(db)}, which the launcher did not make; it "
                "never writes through one. Remove the link (or name the real file with --db)"
            )
        con = sqlite3.connect(os.fspath(db), timeout=BUSY_WAIT_S)
        try:
            con.executescript(_SCHEMA)
        except BaseException:
            con.close()
            raise
    except (sqlite3.Error, OSError) as e:
        raise unreadable(db, e) from e
    return con


def unreadable(db: str | os.PathLike, error: Exception) -> HistoryError:
    """The error for `error` met on the store `db`: busy, full, or (only then) not a readable store."""
    name = getattr(error, "sqlite_errorname", "") or ""
    text = str(error).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return HistoryBusy(
            f"{db} is busy: another gather or launcher has been writing it for over {BUSY_WAIT_S:.0f} "
            "s. Nothing is wrong with it; nothing was recorded this time: gather the sweep again "
            "later (python -m launcher.gather SWEEP_DIR) to record it"
        )
    if name.startswith("SQLITE_FULL") or "disk is full" in text or getattr(error, "errno", None) == errno.ENOSPC:
        return HistoryFull(
            f"{db} could not be written: the file system holding it is full. Nothing is wrong with "
            "the store; free space there (or name another store with --db) and gather again"
        )
    if isinstance(error, HistoryError):
        return error
    return HistoryError(
        f"{db} is not a readable history store ({type(error).__name__}: {error}); move it aside "
        f"(mv {db} {db}.bad) and the next gather starts a new one, or name another with --db"
    )


def run_key(rec: dict) -> str:
    """The identity of one run, from the result's own fields (not where the file lies now)."""
    parts = [rec.get("run_dir"), rec.get("started_at"), rec.get("finished_at"), rec.get("job_id")]
    if not rec.get("finished_at"):  # an old result without times: its content is its identity
        parts.append(hashlib.sha256(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest())
    return "|".join("" if p is None else str(p) for p in parts)


def _val(v):
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v.item() if hasattr(v, "item") else v


def append(db: str | os.PathLike, records: Iterable[dict]) -> int:
    """Add the final results among `records`; returns how many were new.

    Keys already stored are skipped before any serialising, so re-gathering a big tree stays cheap;
    INSERT OR IGNORE still guards against a concurrent writer.
    """
    final = [rec for rec in records if rec.get("source") == "result" and rec.get("status") in FINAL_STATES]
    if not final:
        return 0
    con = connect(db)
    try:
        have = {k for (k,) in con.execute("SELECT key FROM results")}
        rows = []
        for rec in final:
            original = {
                k: _val(v)
                for k, v in rec.items()
                if k not in ("source", "gpu_model", "driver", "reason", "result_run_dir")
            }
            original["run_dir"] = rec.get("result_run_dir") or rec.get("run_dir")
            key = run_key(original)
            if key in have:
                continue
            have.add(key)
            vals = [_val(rec.get(c)) for c in _COLS]
            rows.append((key, *vals, json.dumps(original, default=str, sort_keys=True)))
        if not rows:
            return 0
        with con:
            before = con.total_changes
            con.executemany(
                f"INSERT OR IGNORE INTO results (key, {', '.join('commit_hash' if c == 'commit' else c for c in _COLS)}, "
                f"result) VALUES ({', '.join('?' * (len(_COLS) + 2))})",
                rows,
            )
            return con.total_changes - before
    except (sqlite3.Error, OSError) as e:
        raise unreadable(db, e) from e
    finally:
        con.close()


def parse_since(text: str) -> str:
    """`--since` as the store compares it: a date stays `YYYY-MM-DD` (a prefix of every stamp that day),
    a time becomes UTC ISO 8601 like `finished_at` (one without an offset is taken as UTC).  Anything
    else raises ValueError: a filter that can match nothing must not pass silently."""
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r} is not an ISO 8601 date or time (e.g. 2024-05-01 or 2024-05-01T02:00:00+02:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def load(
    db: str | os.PathLike,
    since: str | None = None,
    impl: str | None = None,
    hardware: str | None = None,
    status: str | None = "ok",
) -> pd.DataFrame:
    """Stored results (ok only by default), oldest first, filtered by date (ISO prefix), row and hardware."""
    if not Path(db).exists():
        return pd.DataFrame(columns=list(_COLS))
    where, args = [], []
    if status:
        where.append("status = ?"), args.append(status)
    if since:
        where.append("finished_at >= ?"), args.append(since)
    if impl:
        where.append("impl = ?"), args.append(impl)
    if hardware:
        where.append("hardware = ?"), args.append(hardware)
    sql = (
        "SELECT key, impl, label, hardware, recipe_hash, scale, status, throughput, error_bound, reference, "
        "reference_hardware, tolerance, gpus, gpu_model, driver, commit_hash AS 'commit', started_at, finished_at, "
        "run_dir, job_id FROM results"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY finished_at, key"
    )
    con = connect(db)
    try:
        return pd.read_sql_query(sql, con, params=args)
    except (sqlite3.Error, pd.errors.DatabaseError) as e:
        raise unreadable(db, e.__cause__ if isinstance(e.__cause__, sqlite3.Error) else e) from e
    finally:
        con.close()


def trend(hist: pd.DataFrame) -> pd.DataFrame:
    """Per row (impl, hardware, scale): count, first/last date, latest figure vs the ones before it, regression."""
    out = []
    if hist.empty:
        return pd.DataFrame(
            columns=[
                "impl",
                "hardware",
                "scale",
                "count",
                "first",
                "last",
                "latest",
                "recent_mean",
                "recent_std",
                "change",
                "noise",
                "regression",
                "values",
            ]
        )

    for (impl, hw, scale), g in hist.groupby(["impl", "hardware", "scale"], dropna=False, sort=False):
        vals = g["throughput"].astype(float).tolist()
        latest, before = vals[-1], vals[:-1]
        bound = g["error_bound"].max()
        reg, noise = stats.regression(before, latest, None if pd.isna(bound) else float(bound))
        recent = before[-stats.RECENT :]
        rmean = sum(recent) / len(recent) if recent else None
        rstd = pd.Series(recent).std() if len(recent) >= 2 else None
        out.append(
            {
                "impl": impl,
                "label": g["label"].iloc[-1],
                "hardware": hw,
                "scale": scale,
                "count": len(vals),
                "first": g["finished_at"].iloc[0],
                "last": g["finished_at"].iloc[-1],
                "latest": latest,
                "recent_mean": rmean,
                "recent_std": rstd,
                "change": (latest / rmean - 1) if rmean else None,
                "noise": noise,
                "regression": bool(reg),
                "values": vals,
                "order": order_of(impl),
                "status": "regression" if reg else ("ok" if before else "first run"),
            }
        )
    df = pd.DataFrame(out).sort_values(["order", "impl", "hardware"], kind="stable").reset_index(drop=True)
    return df
