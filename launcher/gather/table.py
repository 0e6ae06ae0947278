"""Runs -> the comparison table: one frame per run, then one row per group of repeats or per unfinished run.

`runs_frame(records)` builds the per-run DataFrame once. `summary(runs)` turns it into the table's
rows: ok runs of the same impl, hardware, recipe hash and scale are aggregated (see stats.py); every
run that is not ok (pending, running, failed, timeout, incomplete, cancelled, unknown) is its own
row with its short reason; each of the seven published rows appears even when nothing ran.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable

import pandas as pd

from ..rundir import State
from . import stats
from ..catalog import RowInfo, hardware_gpus, load_rows, order_of
from ..defaults import TOLERANCE
from .telemetry import group_figures

#: Columns every run frame has (result.json's fields plus what gather adds), in this order.
RUN_COLUMNS = (
    "impl",
    "label",
    "hardware",
    "backend",
    "status",
    "throughput",
    "reason",
    "error",
    "window",
    "window_requested",
    "images_per_iter",
    "method",
    "error_bound",
    "reference",
    "reference_hardware",
    "tolerance",
    "gpus",
    "started_at",
    "finished_at",
    "submitted_at",
    "host",
    "job_id",
    "run_dir",
    "repo",
    "commit",
    "pinned_commit",
    "recipe_hash",
    "command",
    "returncode",
    "log_path",
    "data",
    "scale",
    "stack",
    "mean_step_time",
    "provenance",
    "source",
    "gpu_model",
    "driver",
)


class RowStatus(str, Enum):
    """A table row's status: its job's state (rundir.State), or what gather found instead of a job.
    In the order the table lists a row's attempts; flags (`unstable`, `window_moved`) are columns of their own."""

    OK = State.OK.value
    RUNNING = State.RUNNING.value
    PENDING = State.PENDING.value
    INCOMPLETE = State.INCOMPLETE.value
    TIMEOUT = State.TIMEOUT.value
    FAILED = State.FAILED.value
    CANCELLED = State.CANCELLED.value
    UNKNOWN = State.UNKNOWN.value
    UNREADABLE = "unreadable"  # its result.json is corrupt (gather lists it among the problems)
    NOT_RUN = "not run"  # a published row nothing has run for

    __str__ = str.__str__
    __format__ = str.__format__


STATUS_ORDER = {s.value: i for i, s in enumerate(RowStatus)}

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
        "tolerance": pick("tolerance", info.tolerance if info else TOLERANCE),
    }


@dataclass
class TableRow:
    """One row of the table: a group of ok repeats, one run that is not ok, or a published row nothing ran for.
    What it says about itself is typed: `status` a RowStatus, `unstable` and `window_moved` flags."""

    # the row (launcher/catalog.py, else what its runs recorded)
    impl: str
    label: str
    title: str
    order: int
    reference: float | None
    reference_hardware: str | None
    tolerance: float
    # what ran, and how it ended
    status: RowStatus
    reason: str | None = None
    hardware: str | None = None
    recipe_hash: str | None = None
    scale: str | None = None
    stack: str | None = None
    gpus: int | None = None
    gpu_model: str | None = None
    driver: str | None = None
    commit: str | None = None
    pinned_commit: str | None = None  # the row's pin, when the commit that ran is another
    data: str | None = None
    method: str | None = None
    finished_at: str | None = None
    run_dirs: list = field(default_factory=list)
    # the figure (stats.summarize)
    count: int = 0
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    olympic_mean: float | None = None
    throughput: float | None = None
    aggregate: str | None = None
    cv: float | None = None
    error_bound: float | None = None
    unstable: bool = False  # the runs disagree beyond their noise (cv > unstable_threshold)
    unstable_threshold: float | None = None
    # windows (`windows`)
    window: list | None = None
    window_requested: list | None = None
    windows: list = field(default_factory=list)
    window_moved: bool = False  # a run measured other iterations than it was asked for
    # against the published figure (`_finish`)
    verdict: str | None = None
    ratio: float | None = None
    verdict_note: str | None = None
    per_gpu: float | None = None
    reference_per_gpu: float | None = None
    # what the hardware did over the window (gather/telemetry.py: group_figures), None where nothing was sampled
    gpu_mem_peak_mib: float | None = None
    gpu_power_w: float | None = None
    energy_j_per_img: float | None = None
    telemetry_runs: int = 0

    def __post_init__(self) -> None:
        self.status = RowStatus(self.status)


def _finish(row: dict) -> TableRow:
    """The row's record, with its verdict, ratio and per-GPU figures from its measured figure."""
    r = TableRow(**row)
    r.verdict, r.ratio, r.verdict_note = stats.verdict(
        r.throughput, r.reference, r.tolerance, r.hardware, r.reference_hardware, r.scale
    )
    r.per_gpu = r.throughput / r.gpus if r.throughput is not None and r.gpus else None
    ref_gpus = hardware_gpus(r.reference_hardware)
    r.reference_per_gpu = r.reference / ref_gpus if r.reference and ref_gpus else None
    return r


def summary(runs: pd.DataFrame, rows: dict[str, RowInfo] | None = None) -> pd.DataFrame:
    """The table's rows, in the seed's order, every published row present."""
    rows = load_rows() if rows is None else rows
    out: list[TableRow] = []
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
            hardware=gk[1] if (gk[4] or 1) <= 1 else f"{gk[1]} x {gk[4]} nodes",
            recipe_hash=gk[2],
            scale=gk[3],
            status=RowStatus.OK,
            reason=None,
            gpus=_first(r.get("gpus") for r in g),
            gpu_model=_joined(r.get("gpu_model") for r in g),
            driver=_joined(r.get("driver") for r in g),
            commit=_joined(r.get("commit") for r in g),
            pinned_commit=_joined(r.get("pinned_commit") for r in g),
            data=_joined(r.get("data") for r in g),
            method=_joined(r.get("method") for r in g),
            stack=_joined(r.get("stack") for r in g),
            finished_at=max((str(r["finished_at"]) for r in g if r.get("finished_at")), default=None),
            run_dirs=[r.get("run_dir") for r in g],
            **windows(g),
            **group_figures(g),
        )
        out.append(_finish(row))
    for rec in rest:
        row = _row_base(rec.get("impl") or "?", rows, [rec])
        row.update(stats.summarize([]))
        row.update(
            hardware=rec.get("hardware"),
            recipe_hash=rec.get("recipe_hash"),
            scale=rec.get("scale"),
            status=RowStatus(rec.get("status") or RowStatus.UNKNOWN),
            reason=short_reason(rec.get("reason")),
            gpus=rec.get("gpus"),
            gpu_model=rec.get("gpu_model"),
            driver=rec.get("driver"),
            commit=rec.get("commit"),
            pinned_commit=rec.get("pinned_commit"),
            data=rec.get("data"),
            method=None,
            stack=rec.get("stack"),
            finished_at=rec.get("finished_at"),
            run_dirs=[rec.get("run_dir")],
            count=0,
            **windows([]),
            **group_figures([]),
        )
        out.append(_finish(row))
    present = {r.impl for r in out}
    for impl, info in rows.items():
        if info.reference is not None and impl not in present:
            row = _row_base(impl, rows, [])
            row.update(stats.summarize([]))
            row.update(
                hardware=None,
                recipe_hash=None,
                scale=None,
                status=RowStatus.NOT_RUN,
                reason=None,
                gpus=None,
                gpu_model=None,
                driver=None,
                commit=None,
                data=None,
                method=None,
                finished_at=None,
                run_dirs=[],
                **windows([]),
            )
            out.append(_finish(row))
    df = pd.DataFrame.from_records([dataclasses.asdict(r) for r in out])
    if df.empty:
        return df
    df["status"] = df["status"].map(str)  # validated as RowStatus above; plain text for pandas' writers
    df["_status"] = df["status"].map(lambda s: STATUS_ORDER.get(str(s), len(STATUS_ORDER)))
    df["_refhw"] = (df["hardware"] != df["reference_hardware"]).astype(int)
    df = df.sort_values(
        ["order", "impl", "_refhw", "hardware", "_status", "finished_at"], na_position="last", kind="stable"
    ).drop(columns=["_status", "_refhw"])
    return df.reset_index(drop=True)
