"""Runs -> the comparison table: one frame per run, then one row per group of repeats or per unfinished run.

`runs_frame(records)` builds the per-run DataFrame once. `summary(runs)` turns it into the table's
rows: ok runs of the same impl, hardware, recipe hash and scale are aggregated (see stats.py); every
run that is not ok (pending, running, failed, timeout, incomplete, cancelled, unknown) is its own
row with its short reason; each of the seven published rows appears even when nothing ran.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

import pandas as pd

from . import stats
from .catalog import DEFAULT_TOLERANCE, RowInfo, load_rows, order_of

#: Columns every run frame has (result.json's fields plus what gather adds), in this order.
RUN_COLUMNS = ("impl", "label", "hardware", "backend", "status", "throughput", "reason", "error", "window",
               "window_requested", "images_per_iter", "method", "error_bound", "reference",
               "reference_hardware", "tolerance", "gpus", "started_at", "finished_at", "submitted_at",
               "host", "job_id", "run_dir", "repo", "commit", "recipe_hash", "command", "returncode",
               "log_path", "data", "scale", "stack", "mean_step_time", "provenance", "source", "gpu_model",
               "driver")

STATUS_ORDER = {"ok": 0, "running": 1, "pending": 2, "incomplete": 3, "timeout": 4, "failed": 5,
                "cancelled": 6, "unknown": 7, "unreadable": 8, "not run": 9}

#: Group key for repeats. `scale` keeps a smoke-scale figure from ever averaging with a full one.
GROUP_KEY = ("impl", "hardware", "recipe_hash", "scale", "nodes", "ranks")  # nodes, ranks: never average a
# 2-node run with a 1-node one (launcher/gather/scaling.py compares them)


def _prov(rec: dict, key: str) -> Any:
    prov = rec.get("provenance")
    return prov.get(key) if isinstance(prov, dict) else None


def runs_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One DataFrame for all runs, built once (no per-file pandas work)."""
    rows = []
    for rec in records:
        r = dict(rec)
        r["gpu_model"] = _prov(rec, "accelerator_model_name")
        if not r["gpu_model"] and isinstance(rec.get("provenance"), dict) and rec["provenance"]:
            cpu = _prov(rec, "host_processor_model_name")  # a CPU-only run says what it ran on instead
            r["gpu_model"] = f"none (CPU: {cpu})" if cpu else "none"
        r["driver"] = _prov(rec, "cuda_driver_version")
        if not r.get("reason") and r.get("status") != "ok":
            r["reason"] = r.get("error")
        rows.append(r)
    df = pd.DataFrame.from_records(rows)
    for col in RUN_COLUMNS:
        if col not in df.columns:
            df[col] = None
    extra = [c for c in df.columns if c not in RUN_COLUMNS]
    df = df[list(RUN_COLUMNS) + extra]
    # results from before hardware.nodes ran on one node; `ranks` stays unknown for them
    df["nodes"] = pd.to_numeric(df["nodes"], errors="coerce").fillna(1).astype(int) if "nodes" in df.columns else 1
    df["throughput"] = pd.to_numeric(df["throughput"], errors="coerce")
    df["error_bound"] = pd.to_numeric(df["error_bound"], errors="coerce")
    return df


def _isna(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _first(values: Iterable[Any]) -> Any:
    for v in values:
        if v is not None and not (isinstance(v, float) and pd.isna(v)):
            return v
    return None


def _joined(values: Iterable[Any]) -> str | None:
    seen: list[str] = []
    for v in values:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            continue
        s = str(v)
        if s not in seen:
            seen.append(s)
    return ", ".join(seen) if seen else None


def short_reason(text: Any, limit: int = 80) -> str | None:
    """First line of a reason, at most `limit` characters: the table stays readable, the JSON has it all."""
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return None
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    if not lines:
        return None
    # a traceback says what went wrong on its last line
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _pair(value: Any) -> tuple[int, int] | None:
    try:
        a, b = value
        return int(a), int(b)
    except (TypeError, ValueError):
        return None


def windows(group: list[dict]) -> dict:
    """The windows a row's runs were measured over, against the ones asked for.

    `window` / `window_requested`: the pair when every run agrees, else None; `windows`: every distinct
    (measured, requested) pair; `window_moved`: a run measured other iterations than it was asked for (the
    log's records fell off the requested edges: docs/architecture.md, Parsers), which the table shows."""
    pairs: list[tuple[tuple[int, int] | None, tuple[int, int] | None]] = []
    for r in group:
        pair = (_pair(r.get("window")), _pair(r.get("window_requested")))
        if pair not in pairs:
            pairs.append(pair)
    measured = {m for m, _ in pairs}
    requested = {q for _, q in pairs}
    return {
        "window": list(next(iter(measured))) if len(measured) == 1 and None not in measured else None,
        "window_requested": list(next(iter(requested))) if len(requested) == 1 and None not in requested else None,
        "windows": [[list(m) if m else None, list(q) if q else None] for m, q in pairs],
        "window_moved": any(m is not None and q is not None and m != q for m, q in pairs),
    }


def _row_base(impl: str, rows: dict[str, RowInfo], group: list[dict]) -> dict:
    """The row's identity and reference: the config's (conf/impl) first, else what its runs recorded."""
    info = rows.get(impl)

    def pick(col: str, default: Any) -> Any:
        v = _first(r.get(col) for r in group)
        return default if v is None else v

    return {
        "impl": impl,
        "label": info.label if info else pick("label", impl),
        "title": info.title if info else impl,
        "order": order_of(impl),
        "reference": pick("reference", info.reference if info else None),
        "reference_hardware": pick("reference_hardware", info.reference_hardware if info else None),
        "tolerance": pick("tolerance", info.tolerance if info else DEFAULT_TOLERANCE),
    }


def _finish(row: dict) -> dict:
    """Verdict, ratio and per-GPU figures from the row's measured figure."""
    v, ratio, why = stats.verdict(row.get("throughput"), row.get("reference"), row.get("tolerance"),
                                  row.get("hardware"), row.get("reference_hardware"), row.get("scale"))
    row["verdict"], row["ratio"], row["verdict_note"] = v, ratio, why
    gpus = row.get("gpus")
    row["per_gpu"] = row["throughput"] / gpus if row.get("throughput") is not None and gpus else None
    ref_gpus = _gpus_of(row.get("reference_hardware"))
    row["reference_per_gpu"] = row["reference"] / ref_gpus if row.get("reference") and ref_gpus else None
    return row


@lru_cache(maxsize=64)
def _gpus_of(hardware: str | None) -> int | None:
    """GPUs of a named hardware config (v100x8 -> 8), read from conf/hardware when it is there."""
    if not hardware:
        return None
    from .. import CONF_DIR
    import yaml

    try:
        data = yaml.safe_load((CONF_DIR / "hardware" / f"{hardware}.yaml").read_text())
        g = data.get("gpus")
        return int(g) if isinstance(g, (int, float)) else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def summary(runs: pd.DataFrame, rows: dict[str, RowInfo] | None = None) -> pd.DataFrame:
    """The table's rows, in the seed's order, every published row present."""
    rows = load_rows() if rows is None else rows
    out: list[dict] = []
    groups: dict[tuple, list[dict]] = {}
    rest: list[dict] = []
    for rec in runs.to_dict("records"):  # plain dicts: one pass, no per-group pandas objects
        rec = {k: (None if _isna(v) else v) for k, v in rec.items()}
        if rec.get("status") == "ok":
            groups.setdefault(tuple(rec.get(k) for k in GROUP_KEY), []).append(rec)
        else:
            rest.append(rec)
    for gk, g in groups.items():
        impl = gk[0]
        s = stats.summarize([float(r["throughput"]) for r in g], [r.get("error_bound") for r in g])
        row = _row_base(impl, rows, g)
        row.update(s)
        row.update(
            hardware=gk[1] if (gk[4] or 1) <= 1 else f"{gk[1]} x {gk[4]} nodes", recipe_hash=gk[2], scale=gk[3],
            status="ok", reason=None,
            gpus=_first(r.get("gpus") for r in g), gpu_model=_joined(r.get("gpu_model") for r in g),
            driver=_joined(r.get("driver") for r in g), commit=_joined(r.get("commit") for r in g),
            data=_joined(r.get("data") for r in g), method=_joined(r.get("method") for r in g),
            stack=_joined(r.get("stack") for r in g),
            finished_at=max((str(r["finished_at"]) for r in g if r.get("finished_at")), default=None),
            run_dirs=[r.get("run_dir") for r in g], **windows(g),
        )
        if row["unstable"]:
            row["status"] = "ok, unstable"
        out.append(_finish(row))
    for rec in rest:
        row = _row_base(rec.get("impl") or "?", rows, [rec])
        row.update(stats.summarize([]))
        row.update(
            hardware=rec.get("hardware"), recipe_hash=rec.get("recipe_hash"), scale=rec.get("scale"),
            status=rec.get("status") or "unknown", reason=short_reason(rec.get("reason")),
            gpus=rec.get("gpus"), gpu_model=rec.get("gpu_model"), driver=rec.get("driver"),
            commit=rec.get("commit"), data=rec.get("data"), method=None, stack=rec.get("stack"),
            finished_at=rec.get("finished_at"), run_dirs=[rec.get("run_dir")], count=0, **windows([]),
        )
        out.append(_finish(row))
    present = {r["impl"] for r in out}
    for impl, info in rows.items():
        if info.reference is not None and impl not in present:
            row = _row_base(impl, rows, [])
            row.update(stats.summarize([]))
            row.update(hardware=None, recipe_hash=None, scale=None, status="not run", reason=None, gpus=None,
                       gpu_model=None, driver=None, commit=None, data=None, method=None, finished_at=None,
                       run_dirs=[], **windows([]))
            out.append(_finish(row))
    df = pd.DataFrame.from_records(out)
    if df.empty:
        return df
    df["_status"] = df["status"].map(lambda s: STATUS_ORDER.get(str(s).split(",")[0], 9))
    df["_refhw"] = (df["hardware"] != df["reference_hardware"]).astype(int)
    df = df.sort_values(["order", "impl", "_refhw", "hardware", "_status", "finished_at"],
                        na_position="last", kind="stable").drop(columns=["_status", "_refhw"])
    return df.reset_index(drop=True)
